package bus

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"hash"
	"io"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"github.com/nats-io/nuid"
)

// Streaming an object in and out of an object store with bounded memory.
// jetstream.ObjectStore's Put publishes every chunk asynchronously with up
// to 4,000 unacknowledged, which the server queues in memory while its disk
// lags (a 2 GiB upload grew the process by 140 MiB), and its Get reads
// through a push consumer the server runs up to 32 MiB ahead. PutObject and
// OpenObject write and read the same format (NATS ADR-20: chunks on
// $O.<bucket>.C.<nuid>, the ObjectInfo on $O.<bucket>.M.<base64url name>),
// so the object store's GetInfo, List and Delete work on what they store,
// with at most objectWindow chunks in flight.

// Object chunking and flow.
const (
	// ObjectChunkSize is the size of every chunk but the last.
	ObjectChunkSize = 128 << 10
	// objectWindow is how many chunks are in flight: published and not yet
	// acknowledged, or pulled and not yet read (1 MiB).
	objectWindow = 8
)

func objectStream(bucket string) string     { return "OBJ_" + bucket }
func objectChunks(bucket, id string) string { return "$O." + bucket + ".C." + id }
func objectMetaSubject(bucket, n string) string {
	return "$O." + bucket + ".M." + base64.URLEncoding.EncodeToString([]byte(n))
}

// PutObject stores r as object name of obs, replacing any object of that
// name once the new one is complete. When r fails (its error is returned,
// wrapped) or ctx ends, what was stored of the new object is purged and the
// old one, if any, stays.
func PutObject(ctx context.Context, js jetstream.JetStream, obs jetstream.ObjectStore, name string, r io.Reader) (*jetstream.ObjectInfo, error) {
	return putObject(ctx, js, obs, name, r, true)
}

// putObject is PutObject; without modTime it leaves the object's ModTime
// unread, which takes a stream message get that agents may not make.
func putObject(ctx context.Context, js jetstream.JetStream, obs jetstream.ObjectStore, name string, r io.Reader, modTime bool) (*jetstream.ObjectInfo, error) {
	status, err := obs.Status(ctx)
	if err != nil {
		return nil, err
	}
	bucket := status.Bucket()
	old, err := obs.GetInfo(ctx, name, jetstream.GetObjectInfoShowDeleted())
	if err != nil && !errors.Is(err, jetstream.ErrObjectNotFound) {
		return nil, err
	}
	st, err := js.Stream(ctx, objectStream(bucket))
	if err != nil {
		return nil, err
	}
	id := nuid.Next()
	subject := objectChunks(bucket, id)
	var inflight []jetstream.PubAckFuture
	// purge removes what was stored of the new object, once every chunk
	// in flight has landed (or failed): one stored after the purge would
	// stay for good.
	purge := func() {
		pctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 30*time.Second)
		defer cancel()
		for _, f := range inflight {
			select {
			case <-f.Ok():
			case <-f.Err():
			case <-pctx.Done():
			}
		}
		_ = st.Purge(pctx, jetstream.WithPurgeSubject(subject))
	}
	info := &jetstream.ObjectInfo{ObjectMeta: jetstream.ObjectMeta{Name: name,
		Opts: &jetstream.ObjectMetaOptions{ChunkSize: ObjectChunkSize}}, Bucket: bucket, NUID: id}
	h := sha256.New()
	wait := func(f jetstream.PubAckFuture) error {
		select {
		case <-f.Ok():
			return nil
		case err := <-f.Err():
			return err
		case <-ctx.Done():
			return ctx.Err()
		}
	}
	// A ring of buffers, one per chunk in flight: a chunk's buffer is
	// filled again only once the server has acknowledged it.
	var bufs [objectWindow][]byte
	for k := 0; ; k++ {
		if len(inflight) == objectWindow {
			if err := wait(inflight[0]); err != nil {
				purge()
				return nil, err
			}
			inflight = inflight[1:]
		}
		if bufs[k%objectWindow] == nil {
			bufs[k%objectWindow] = make([]byte, ObjectChunkSize)
		}
		chunk := bufs[k%objectWindow]
		n, rerr := fill(r, chunk)
		if rerr != nil && rerr != io.EOF {
			purge()
			return nil, fmt.Errorf("bus: object %s: %w", name, rerr)
		}
		if n > 0 {
			h.Write(chunk[:n])
			f, err := js.PublishMsgAsync(&nats.Msg{Subject: subject, Data: chunk[:n]})
			if err != nil {
				purge()
				return nil, err
			}
			inflight = append(inflight, f)
			info.Size += uint64(n)
			info.Chunks++
		}
		if rerr == io.EOF {
			break
		}
	}
	for _, f := range inflight {
		if err := wait(f); err != nil {
			purge()
			return nil, err
		}
	}
	info.Digest = jetstream.GetObjectDigestValue(h)
	meta, err := json.Marshal(info)
	if err != nil {
		purge()
		return nil, err
	}
	m := nats.NewMsg(objectMetaSubject(bucket, name))
	m.Header.Set(jetstream.MsgRollup, jetstream.MsgRollupSubject)
	m.Data = meta
	ack, err := js.PublishMsg(ctx, m)
	if err != nil {
		purge()
		return nil, err
	}
	if old != nil && !old.Deleted {
		_ = st.Purge(context.WithoutCancel(ctx), jetstream.WithPurgeSubject(objectChunks(bucket, old.NUID)))
	}
	if !modTime {
		return info, nil
	}
	if msg, err := st.GetMsg(ctx, ack.Sequence); err == nil {
		info.ModTime = msg.Time
	}
	return info, nil
}

// fill reads into p until it is full or r ends: io.EOF only at r's own
// end, and r's error as it is otherwise (a body that broke off must not
// look like one that ended, as it would through io.ReadFull).
func fill(r io.Reader, p []byte) (int, error) {
	n := 0
	for n < len(p) {
		m, err := r.Read(p[n:])
		n += m
		if err != nil {
			return n, err
		}
	}
	return n, nil
}

// OpenObject opens object name of obs for reading, objectWindow chunks
// pulled at a time. Read checks the SHA-256 at the end and fails with
// jetstream.ErrDigestMismatch if it differs; ctx ending stops the reads.
func OpenObject(ctx context.Context, js jetstream.JetStream, obs jetstream.ObjectStore, name string) (*ObjectReader, error) {
	info, err := obs.GetInfo(ctx, name)
	if err != nil {
		return nil, err
	}
	want, err := jetstream.DecodeObjectDigest(info.Digest)
	if err != nil {
		return nil, fmt.Errorf("bus: object %s: %w", name, err)
	}
	cons, err := js.OrderedConsumer(ctx, objectStream(info.Bucket), jetstream.OrderedConsumerConfig{
		FilterSubjects: []string{objectChunks(info.Bucket, info.NUID)}})
	if err != nil {
		return nil, fmt.Errorf("bus: object %s: %w", name, err)
	}
	it, err := cons.Messages(jetstream.PullMaxMessages(objectWindow))
	if err != nil {
		return nil, fmt.Errorf("bus: object %s: %w", name, err)
	}
	r := &ObjectReader{Info: info, it: it, left: int64(info.Size), h: sha256.New(), want: want}
	r.stop = context.AfterFunc(ctx, it.Stop)
	return r, nil
}

// ObjectReader reads an object's chunks in order.
type ObjectReader struct {
	Info *jetstream.ObjectInfo
	it   jetstream.MessagesContext
	stop func() bool
	cur  []byte
	left int64 // bytes of the object not yet taken from a chunk
	h    hash.Hash
	want []byte
}

func (r *ObjectReader) Read(p []byte) (int, error) {
	for len(r.cur) == 0 {
		if r.left == 0 {
			if !bytes.Equal(r.h.Sum(nil), r.want) {
				return 0, jetstream.ErrDigestMismatch
			}
			return 0, io.EOF
		}
		msg, err := r.it.Next()
		if err != nil {
			return 0, err
		}
		if r.cur = msg.Data(); int64(len(r.cur)) > r.left {
			return 0, errors.New("bus: an object's chunks are longer than its size")
		}
		r.left -= int64(len(r.cur))
		r.h.Write(r.cur)
	}
	n := copy(p, r.cur)
	r.cur = r.cur[n:]
	return n, nil
}

// Close stops reading.
func (r *ObjectReader) Close() error {
	r.stop()
	r.it.Stop()
	return nil
}
