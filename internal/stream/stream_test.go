package stream

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"strconv"
	"testing"
	"time"

	"github.com/nats-io/nats.go"

	"github.com/gantry-dev/gantry/internal/testutil"
)

// pair is two muxes on two connections to one real nats-server, as the
// gateway and a worker have.
type pair struct {
	a, b *Mux
	nc   *nats.Conn
}

func newPair(t *testing.T, opts Options) pair {
	t.Helper()
	url := testutil.StartNATS(t)
	conn := func() *nats.Conn {
		nc, err := nats.Connect(url)
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(nc.Close)
		return nc
	}
	nca, ncb := conn(), conn()
	a, err := NewMux(nca, "test.a", opts)
	if err != nil {
		t.Fatal(err)
	}
	b, err := NewMux(ncb, "test.b", opts)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { a.Close(); b.Close() })
	if err := nca.Flush(); err != nil {
		t.Fatal(err)
	}
	if err := ncb.Flush(); err != nil {
		t.Fatal(err)
	}
	return pair{a: a, b: b, nc: nca}
}

// connect opens call id on both sides, each the other's peer.
func (p pair) connect(t *testing.T, id string) (ea, eb *Endpoint) {
	t.Helper()
	ea, err := p.a.Open(id)
	if err != nil {
		t.Fatal(err)
	}
	eb, err = p.b.Open(id)
	if err != nil {
		t.Fatal(err)
	}
	ea.SetPeer(eb.Addr())
	eb.SetPeer(ea.Addr())
	t.Cleanup(func() { ea.Close(); eb.Close() })
	return ea, eb
}

func TestStreamCarriesHeadAndBodyInOrder(t *testing.T) {
	body := make([]byte, 1<<20+77)
	for i := range body {
		body[i] = byte(i * 7)
	}
	tests := []struct {
		name      string
		opts      Options
		inHead    int // bytes sent with the head
		writeSize int
	}{
		{"one frame", Options{}, len(body), 0},
		{"tiny window and chunks", Options{Window: 2, ChunkSize: 1024}, 10, 3000},
		{"default window, big writes", Options{}, 0, 300 << 10},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			p := newPair(t, tc.opts)
			ea, eb := p.connect(t, "call-1")
			errc := make(chan error, 1)
			go func() {
				hdr := nats.Header{"X-Test": []string{"yes"}}
				if err := ea.SendHead(hdr, body[:tc.inHead], tc.inHead == len(body)); err != nil || tc.inHead == len(body) {
					errc <- err
					return
				}
				for rest := body[tc.inHead:]; len(rest) > 0; {
					n := min(tc.writeSize, len(rest))
					if _, err := ea.Write(rest[:n]); err != nil {
						errc <- err
						return
					}
					rest = rest[n:]
				}
				errc <- ea.CloseWrite()
			}()
			ctx := testutil.Context(t)
			f, err := eb.Next(ctx)
			if err != nil {
				t.Fatal(err)
			}
			if f.Header.Get("X-Test") != "yes" {
				t.Fatalf("head frame %v lost its header: %v", f.Kind, f.Header)
			}
			window := uint64(p.a.Options().Window)
			var got bytes.Buffer
			buf := make([]byte, 4096)
			for {
				n, err := eb.Body().Read(buf)
				got.Write(buf[:n])
				// The writer never gets more than a window ahead of what
				// this reader has consumed.
				ea.mu.Lock()
				ahead := ea.sendSeq - eb.credited
				ea.mu.Unlock()
				if ahead > window+window/2+1 {
					t.Fatalf("writer is %d frames ahead of the reader's credit; window is %d", ahead, window)
				}
				if err == io.EOF {
					break
				}
				if err != nil {
					t.Fatal(err)
				}
			}
			if err := <-errc; err != nil {
				t.Fatal(err)
			}
			if !bytes.Equal(got.Bytes(), body) {
				t.Fatalf("body differs: got %d bytes, want %d", got.Len(), len(body))
			}
		})
	}
}

func TestFailFrameReachesReader(t *testing.T) {
	p := newPair(t, Options{})
	ea, eb := p.connect(t, "call-1")
	if err := ea.SendHead(nil, []byte("partial"), false); err != nil {
		t.Fatal(err)
	}
	if err := ea.Fail("the function exited"); err != nil {
		t.Fatal(err)
	}
	if _, err := eb.Next(testutil.Context(t)); err != nil {
		t.Fatal(err)
	}
	got, err := io.ReadAll(eb.Body())
	var remote *RemoteError
	if string(got) != "partial" || !errors.As(err, &remote) || remote.Reason != "the function exited" {
		t.Fatalf("read %q, %v; want the partial body then the remote reason", got, err)
	}
}

func TestCancelStopsABlockedWriter(t *testing.T) {
	p := newPair(t, Options{Window: 1, ChunkSize: 16})
	ea, eb := p.connect(t, "call-1")
	errc := make(chan error, 1)
	go func() {
		// Nobody reads: the second frame waits for credit until the
		// cancel arrives.
		if err := ea.SendHead(nil, nil, false); err != nil {
			errc <- err
			return
		}
		_, err := ea.Write(make([]byte, 64))
		errc <- err
	}()
	eb.Cancel()
	select {
	case err := <-errc:
		if !errors.Is(err, ErrCanceled) {
			t.Fatalf("blocked write ended with %v, want ErrCanceled", err)
		}
	case <-testutil.Context(t).Done():
		t.Fatal("the blocked writer never saw the cancel")
	}
	<-ea.Done()
	if !errors.Is(ea.Err(), ErrCanceled) {
		t.Fatalf("Err() = %v, want ErrCanceled", ea.Err())
	}
}

func TestSilentPeerIsGone(t *testing.T) {
	p := newPair(t, Options{Keepalive: 20 * time.Millisecond})
	ea, eb := p.connect(t, "call-1")
	// b disappears without a word, as a process killed with -9 would.
	eb.Close()
	start := time.Now()
	_, err := ea.Next(testutil.Context(t))
	if !errors.Is(err, ErrPeerGone) {
		t.Fatalf("Next = %v, want ErrPeerGone", err)
	}
	if waited := time.Since(start); waited > time.Second {
		t.Fatalf("noticed the silent peer after %v", waited)
	}
}

func TestKeepalivesHoldAQuietCall(t *testing.T) {
	p := newPair(t, Options{Keepalive: 10 * time.Millisecond})
	ea, eb := p.connect(t, "call-1")
	// Nothing but pings for 20 intervals: neither side may give up.
	ctx, cancel := context.WithTimeout(context.Background(), 200*time.Millisecond)
	defer cancel()
	if _, err := ea.Next(ctx); !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("Next = %v, want the deadline (a live, quiet peer)", err)
	}
	if ea.Err() != nil || eb.Err() != nil {
		t.Fatalf("a quiet call ended: %v / %v", ea.Err(), eb.Err())
	}
}

func TestDetachIsAtomicWithTheHead(t *testing.T) {
	t.Run("detach before head", func(t *testing.T) {
		p := newPair(t, Options{})
		ea, eb := p.connect(t, "call-1")
		if err := eb.Send(KindDetach, nil); err != nil {
			t.Fatal(err)
		}
		f, err := eb.Next(testutil.Context(t))
		if err != nil || f.Kind != KindDetached {
			t.Fatalf("Next = %v %v, want detached", f.Kind, err)
		}
		if err := ea.SendHead(nil, []byte("late"), true); !errors.Is(err, ErrDetached) {
			t.Fatalf("SendHead after detach = %v, want ErrDetached", err)
		}
		if !ea.Detached() {
			t.Fatal("Detached() = false")
		}
	})
	t.Run("head before detach", func(t *testing.T) {
		p := newPair(t, Options{})
		ea, eb := p.connect(t, "call-1")
		if err := ea.SendHead(nil, []byte("ok"), true); err != nil {
			t.Fatal(err)
		}
		if err := eb.Send(KindDetach, nil); err != nil {
			t.Fatal(err)
		}
		f, err := eb.Next(testutil.Context(t))
		if err != nil || f.Kind != KindHeadEnd {
			t.Fatalf("Next = %v %v, want the head", f.Kind, err)
		}
		if ea.Detached() {
			t.Fatal("detached after the head was sent")
		}
	})
}

func TestMuxAnswersAcceptsForCallsItDoesNotHave(t *testing.T) {
	p := newPair(t, Options{})
	gone, err := p.a.Open("left")
	if err != nil {
		t.Fatal(err)
	}
	gone.Abandon()
	tests := []struct {
		id      string
		want    Kind
		wantErr error
	}{
		{"never-opened", KindUnknown, nil},
		{"left", 0, ErrCanceled},
	}
	for _, tc := range tests {
		t.Run(tc.id, func(t *testing.T) {
			eb, err := p.b.Open("w-" + tc.id)
			if err != nil {
				t.Fatal(err)
			}
			defer eb.Close()
			if err := eb.SendTo(p.a.Addr(tc.id), KindAccept, []byte(eb.Addr())); err != nil {
				t.Fatal(err)
			}
			f, err := eb.Next(testutil.Context(t))
			if !errors.Is(err, tc.wantErr) || (err == nil && f.Kind != tc.want) {
				t.Fatalf("answer %v %v, want %v %v", f.Kind, err, tc.want, tc.wantErr)
			}
		})
	}
}

func TestOfferWithoutSubscribersIsNoResponders(t *testing.T) {
	p := newPair(t, Options{})
	ea, err := p.a.Open("call-1")
	if err != nil {
		t.Fatal(err)
	}
	defer ea.Close()
	if err := ea.Offer("test.nobody.here", nats.Header{"K": []string{"v"}}); err != nil {
		t.Fatal(err)
	}
	if _, err := ea.Next(testutil.Context(t)); !errors.Is(err, ErrNoResponders) {
		t.Fatalf("Next = %v, want ErrNoResponders", err)
	}
}

func TestLostFrameEndsTheStream(t *testing.T) {
	p := newPair(t, Options{})
	_, eb := p.connect(t, "call-1")
	// Frame 2 where frame 1 is due: something was lost on the way.
	if err := p.nc.Publish(eb.Addr(), encode(KindHead, 2, nil)); err != nil {
		t.Fatal(err)
	}
	var perr *ProtocolError
	if _, err := eb.Next(testutil.Context(t)); !errors.As(err, &perr) {
		t.Fatalf("Next = %v, want a ProtocolError", err)
	}
}

func FuzzDecode(f *testing.F) {
	f.Add(encode(KindData, 1, []byte("hello")))
	f.Add([]byte{})
	f.Add([]byte("h"))
	f.Fuzz(func(t *testing.T, b []byte) {
		k, seq, data, err := decode(b)
		if err != nil {
			if len(b) >= frameHeader {
				t.Fatalf("decode rejected a %d-byte frame: %v", len(b), err)
			}
			return
		}
		if got := encode(k, seq, data); !bytes.Equal(got, b) {
			t.Fatalf("encode(decode(b)) = %x, want %x", got, b)
		}
	})
}

func TestProbeTellsRunningFromEndedFromOrphaned(t *testing.T) {
	p := newPair(t, Options{})
	open, err := p.b.Open("open")
	if err != nil {
		t.Fatal(err)
	}
	defer open.Close()
	closed, err := p.b.Open("closed")
	if err != nil {
		t.Fatal(err)
	}
	closed.Close()
	abandoned, err := p.b.Open("abandoned")
	if err != nil {
		t.Fatal(err)
	}
	abandoned.Abandon()
	tests := []struct {
		name, addr string
		want       Liveness
	}{
		{"an open endpoint", open.Addr(), Running},
		{"a closed endpoint", p.b.Addr("closed"), Ended},
		{"an abandoned endpoint", p.b.Addr("abandoned"), Ended},
		{"a call never opened", p.b.Addr("never"), Ended},
		{"nothing listening", "test.gone.call-1", Orphaned},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			got, err := p.a.Probe(testutil.Context(t), tc.addr)
			if err != nil || got != tc.want {
				t.Fatalf("Probe = %v %v, want %v", got, err, tc.want)
			}
		})
	}
}

func TestClosingAMuxCancelsItsPeers(t *testing.T) {
	p := newPair(t, Options{})
	_, eb := p.connect(t, "call-1")
	p.a.Close()
	if _, err := eb.Next(testutil.Context(t)); !errors.Is(err, ErrCanceled) {
		t.Fatalf("peer's Next = %v, want ErrCanceled", err)
	}
}

func TestWriteLastEndsTheStreamWithItsBytes(t *testing.T) {
	p := newPair(t, Options{ChunkSize: 4})
	for _, body := range []string{"", "abc", "abcdefghij"} {
		t.Run(fmt.Sprintf("%d bytes", len(body)), func(t *testing.T) {
			ea, eb := p.connect(t, "call-"+strconv.Itoa(len(body)))
			go func() { _ = ea.WriteLast([]byte(body)) }()
			got, err := io.ReadAll(eb.Body())
			if err != nil || string(got) != body {
				t.Fatalf("read %q %v, want %q", got, err, body)
			}
		})
	}
}

// TestWholeTakesAOneFrameBody: a body that came in one frame is handed out
// whole; a longer one is not, and Body still reads all of it.
func TestWholeTakesAOneFrameBody(t *testing.T) {
	p := newPair(t, Options{ChunkSize: 4})
	tests := []struct {
		body      string
		wantWhole bool
	}{{"", true}, {"abc", true}, {"abcdefghij", false}}
	for _, tc := range tests {
		t.Run(fmt.Sprintf("%d bytes", len(tc.body)), func(t *testing.T) {
			ea, eb := p.connect(t, "whole-"+strconv.Itoa(len(tc.body)))
			go func() { _ = ea.WriteLast([]byte(tc.body)) }()
			if _, err := eb.Next(testutil.Context(t)); err != nil {
				t.Fatal(err)
			}
			b, whole := eb.Whole()
			if whole != tc.wantWhole {
				t.Fatalf("whole %v, want %v", whole, tc.wantWhole)
			}
			rest, err := io.ReadAll(eb.Body())
			if err != nil || string(b)+string(rest) != tc.body {
				t.Fatalf("whole %q then body %q %v, want %q in all", b, rest, err, tc.body)
			}
			if whole && len(rest) != 0 {
				t.Fatalf("Body read %q after Whole took the body", rest)
			}
		})
	}
}

func TestEndFrameCarriesTrailers(t *testing.T) {
	tests := []struct {
		name    string
		trailer nats.Header
		data    []byte // sent with the head; the end frame follows alone
	}{
		{"grpc status after a body", nats.Header{"Grpc-Status": {"0"}, "Grpc-Message": {""}}, []byte("reply")},
		{"status details, no body", nats.Header{"Grpc-Status": {"3"}, "Grpc-Status-Details-Bin": {"CAMSBGJhZCE"}}, nil},
		{"no trailers", nil, []byte("x")},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			p := newPair(t, Options{})
			ea, eb := p.connect(t, "call-1")
			go func() {
				if ea.SendHead(nats.Header{"Content-Type": {"application/grpc"}}, tc.data, false) == nil {
					_ = ea.CloseWriteTrailer(tc.trailer)
				}
			}()
			if _, err := eb.Next(testutil.Context(t)); err != nil {
				t.Fatal(err)
			}
			if eb.Trailer() != nil {
				t.Fatal("trailers before the body was read")
			}
			got, err := io.ReadAll(eb.Body())
			if err != nil || !bytes.Equal(got, tc.data) {
				t.Fatalf("body %q, %v; want %q", got, err, tc.data)
			}
			tr := eb.Trailer()
			if len(tr) != len(tc.trailer) {
				t.Fatalf("trailers %v, want %v", tr, tc.trailer)
			}
			for k := range tc.trailer {
				if tr.Get(k) != tc.trailer.Get(k) {
					t.Fatalf("trailer %s = %q, want %q", k, tr.Get(k), tc.trailer.Get(k))
				}
			}
		})
	}
}

// TestPingPongOverOneStreamPair is a bidirectional call whose sides take
// turns, as a gRPC bidi stream where the client sends message N+1 only once
// it has read reply N: each side must see every frame as it is sent (no
// batching, no credit held back until a window fills), or the exchange
// stalls at once.
func TestPingPongOverOneStreamPair(t *testing.T) {
	p := newPair(t, Options{Window: 4})
	ea, eb := p.connect(t, "call-1")
	const rounds = 1000
	errc := make(chan error, 1)
	go func() { // the function: echo each message
		if _, err := eb.Next(testutil.Context(t)); err != nil {
			errc <- err
			return
		}
		buf := make([]byte, 64)
		first := true
		for {
			n, err := eb.Body().Read(buf)
			if n > 0 {
				if first {
					err = eb.SendHead(nil, buf[:n], false)
					first = false
				} else {
					_, err = eb.Write(buf[:n])
				}
				if err != nil {
					errc <- err
					return
				}
			}
			if err == io.EOF {
				errc <- eb.CloseWriteTrailer(nats.Header{"Grpc-Status": {"0"}})
				return
			}
			if err != nil {
				errc <- err
				return
			}
		}
	}()
	buf := make([]byte, 64)
	for i := range rounds {
		msg := []byte(strconv.Itoa(i))
		var err error
		if i == 0 {
			err = ea.SendHead(nil, msg, false)
		} else {
			_, err = ea.Write(msg)
		}
		if err != nil {
			t.Fatal(err)
		}
		if i == 0 {
			ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
			_, err := ea.Next(ctx)
			cancel()
			if err != nil {
				t.Fatalf("no reply head: %v", err)
			}
		}
		n, err := ea.Body().Read(buf)
		if err != nil || string(buf[:n]) != string(msg) {
			t.Fatalf("round %d: reply %q, %v", i, buf[:n], err)
		}
	}
	if err := ea.CloseWrite(); err != nil {
		t.Fatal(err)
	}
	if n, err := ea.Body().Read(buf); err != io.EOF {
		t.Fatalf("after the last reply: %d bytes, %v; want EOF", n, err)
	}
	if ea.Trailer().Get("Grpc-Status") != "0" {
		t.Fatalf("trailer %v", ea.Trailer())
	}
	if err := <-errc; err != nil {
		t.Fatal(err)
	}
}

func TestReadyTellsWhetherAReadWaits(t *testing.T) {
	p := newPair(t, Options{})
	ea, eb := p.connect(t, "call-1")
	if err := ea.SendHead(nil, []byte("ab"), false); err != nil {
		t.Fatal(err)
	}
	if _, err := eb.Next(testutil.Context(t)); err != nil {
		t.Fatal(err)
	}
	if !eb.Ready() {
		t.Fatal("the head's bytes are unread, yet Ready says a read waits")
	}
	buf := make([]byte, 8)
	if n, err := eb.Body().Read(buf); n != 2 || err != nil {
		t.Fatalf("read %d, %v", n, err)
	}
	if eb.Ready() {
		t.Fatal("nothing more has come, yet Ready says a read returns at once")
	}
	if err := ea.CloseWriteTrailer(nats.Header{"Grpc-Status": {"0"}}); err != nil {
		t.Fatal(err)
	}
	testutil.WaitFor(t, 5*time.Second, func() error {
		if !eb.Ready() {
			return errors.New("the end frame is not in yet")
		}
		return nil
	})
	if n, err := eb.Body().Read(buf); n != 0 || err != io.EOF {
		t.Fatalf("read %d, %v; want EOF", n, err)
	}
	if !eb.Ready() {
		t.Fatal("at the end a read returns at once")
	}
}
