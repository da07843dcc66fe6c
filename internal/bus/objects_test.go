package bus_test

import (
	"bytes"
	"crypto/rand"
	"errors"
	"io"
	"testing"
	"testing/iotest"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/gantry-dev/gantry/internal/bus"
	"github.com/gantry-dev/gantry/internal/testutil"
)

func objectEnv(t *testing.T) (jetstream.JetStream, jetstream.ObjectStore) {
	t.Helper()
	nc, err := nats.Connect(testutil.StartNATS(t))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(nc.Close)
	js, err := jetstream.New(nc)
	if err != nil {
		t.Fatal(err)
	}
	ctx := testutil.Context(t)
	if err := bus.Setup(ctx, js, bus.Config{}); err != nil {
		t.Fatal(err)
	}
	obs, err := js.ObjectStore(ctx, bus.AssetsBucket)
	if err != nil {
		t.Fatal(err)
	}
	return js, obs
}

// TestObjectsInTheObjectStoreFormat: what PutObject stores, the object
// store reads (GetInfo, Get, List, Delete), and OpenObject reads back, for
// sizes around the chunk size; a second put replaces the first and leaves
// none of its chunks.
func TestObjectsInTheObjectStoreFormat(t *testing.T) {
	js, obs := objectEnv(t)
	ctx := testutil.Context(t)
	const c = bus.ObjectChunkSize
	for _, size := range []int{0, 1, c - 1, c, c + 1, 20*c + 7} {
		data := make([]byte, size)
		_, _ = rand.Read(data)
		// One byte per read: chunks are still whole.
		info, err := bus.PutObject(ctx, js, obs, "acct/a", iotest.OneByteReader(bytes.NewReader(data)))
		if err != nil {
			t.Fatalf("%d bytes: %v", size, err)
		}
		if want := uint32((size + c - 1) / c); info.Size != uint64(size) || info.Chunks != want || info.ModTime.IsZero() {
			t.Fatalf("%d bytes: info %+v, want %d chunks", size, info, want)
		}
		got, err := obs.GetBytes(ctx, "acct/a")
		if err != nil || !bytes.Equal(got, data) {
			t.Fatalf("%d bytes: the object store reads %d bytes (%v)", size, len(got), err)
		}
		r, err := bus.OpenObject(ctx, js, obs, "acct/a")
		if err != nil {
			t.Fatal(err)
		}
		got, err = io.ReadAll(r)
		r.Close()
		if err != nil || !bytes.Equal(got, data) {
			t.Fatalf("%d bytes: OpenObject reads %d bytes (%v)", size, len(got), err)
		}
	}
	st, err := js.Stream(ctx, "OBJ_"+bus.AssetsBucket)
	if err != nil {
		t.Fatal(err)
	}
	si, err := st.Info(ctx)
	if err != nil || si.State.Msgs != 21+1 { // the last put's chunks and its meta
		t.Fatalf("stream holds %d messages (%v): replaced objects left chunks", si.State.Msgs, err)
	}
	if err := obs.Delete(ctx, "acct/a"); err != nil {
		t.Fatal(err)
	}
	if _, err := bus.OpenObject(ctx, js, obs, "acct/a"); !errors.Is(err, jetstream.ErrObjectNotFound) {
		t.Fatalf("open after delete: %v", err)
	}
}

// TestPutObjectThatBreaksOffKeepsTheOldOne: a reader that fails is not an
// end; what was stored of it is purged and the earlier object stays whole.
func TestPutObjectThatBreaksOffKeepsTheOldOne(t *testing.T) {
	js, obs := objectEnv(t)
	ctx := testutil.Context(t)
	old := bytes.Repeat([]byte("old"), 100)
	if _, err := bus.PutObject(ctx, js, obs, "acct/a", bytes.NewReader(old)); err != nil {
		t.Fatal(err)
	}
	broken := io.MultiReader(bytes.NewReader(make([]byte, 3*bus.ObjectChunkSize)), iotest.ErrReader(io.ErrUnexpectedEOF))
	if _, err := bus.PutObject(ctx, js, obs, "acct/a", broken); !errors.Is(err, io.ErrUnexpectedEOF) {
		t.Fatalf("broken put: %v, want the reader's error", err)
	}
	got, err := obs.GetBytes(ctx, "acct/a")
	if err != nil || !bytes.Equal(got, old) {
		t.Fatalf("after a broken put the object is %d bytes (%v), want the old one", len(got), err)
	}
	st, _ := js.Stream(ctx, "OBJ_"+bus.AssetsBucket)
	if si, err := st.Info(ctx); err != nil || si.State.Msgs != 2 {
		t.Fatalf("stream holds %d messages (%v), want the old chunk and meta", si.State.Msgs, err)
	}
}
