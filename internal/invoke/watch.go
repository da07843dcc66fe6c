package invoke

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"strings"
	"sync"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/gantry-dev/gantry/internal/bus"
	"github.com/gantry-dev/gantry/internal/stream"
)

// A call answered 202 while it runs straight on a worker slot (the fast
// path) is in no durable queue: only its worker has it. So that the 202 is
// never lost, the gateway records the call — headers, body and the address
// of the worker's endpoint — in the watch stream before it detaches. The
// gateways' watcher (every replica shares one consumer) checks each record
// every watchRecheck: while the worker's endpoint answers, the call runs
// there; once the call has ended with a stored answer, the record goes;
// when the endpoint is gone (the worker or its agent died) or ended without
// an answer, the watcher puts the call in the work queue, where another
// worker runs it and stores the answer. A call can thus run twice only when
// its worker was cut off from NATS but kept running: duplicates are bounded
// by the detached calls in flight at that moment.
const (
	watchRecheck = 5 * time.Second
	probeTimeout = 2 * time.Second
	// watchParallel bounds the probes under way at once.
	watchParallel = 64
)

// watcher re-queues detached fast-path calls whose worker went away.
type watcher struct {
	js      jetstream.JetStream
	nc      *nats.Conn
	mux     *stream.Mux // the gateway's: probe answers come back to it
	results jetstream.KeyValue
	log     *slog.Logger
	recheck time.Duration

	consume jetstream.ConsumeContext
	slots   chan struct{}
	wg      sync.WaitGroup
}

func startWatcher(ctx context.Context, js jetstream.JetStream, nc *nats.Conn, mux *stream.Mux, results jetstream.KeyValue, recheck time.Duration, log *slog.Logger) (*watcher, error) {
	if recheck <= 0 {
		recheck = watchRecheck
	}
	cons, err := js.CreateOrUpdateConsumer(ctx, bus.WatchStream, jetstream.ConsumerConfig{
		Durable:       bus.WatchConsumer,
		Description:   "gateways checking detached fast-path calls",
		AckPolicy:     jetstream.AckExplicitPolicy,
		AckWait:       30 * time.Second,
		MaxDeliver:    -1,
		MaxAckPending: 10_000,
	})
	if err != nil {
		return nil, fmt.Errorf("invoke: watch consumer: %w", err)
	}
	w := &watcher{js: js, nc: nc, mux: mux, results: results, log: log, recheck: recheck, slots: make(chan struct{}, watchParallel)}
	if w.consume, err = cons.Consume(w.receive); err != nil {
		return nil, fmt.Errorf("invoke: watch consumer: %w", err)
	}
	return w, nil
}

func (w *watcher) stop() {
	w.consume.Stop()
	w.wg.Wait()
}

// receive runs on the consumer's goroutine; probes, which can take
// probeTimeout, run beside it.
func (w *watcher) receive(msg jetstream.Msg) {
	w.slots <- struct{}{}
	w.wg.Add(1)
	go func() {
		defer func() { <-w.slots; w.wg.Done() }()
		w.check(msg)
	}()
}

func (w *watcher) check(msg jetstream.Msg) {
	hdr := msg.Headers()
	reqID := hdr.Get(bus.HeaderReqID)
	ctx, cancel := context.WithTimeout(context.Background(), probeTimeout)
	defer cancel()
	live, err := w.mux.Probe(ctx, hdr.Get(bus.HeaderWorker))
	switch {
	case err != nil || live == stream.Running:
		_ = msg.NakWithDelay(w.recheck)
		return
	case live == stream.Ended && w.answered(ctx, reqID):
		_ = msg.Ack()
		return
	}
	if err := w.requeue(ctx, msg); err != nil {
		w.log.Warn("invoke: could not re-queue a detached call whose worker went away; will retry", "requestId", reqID, "err", err)
		_ = msg.NakWithDelay(time.Second)
		return
	}
	w.log.Info("invoke: re-queued a detached call whose worker went away", "requestId", reqID, "worker", live)
	_ = msg.Ack()
}

// answered reports whether reqID's answer is stored.
func (w *watcher) answered(ctx context.Context, reqID string) bool {
	e, err := w.results.Get(ctx, reqID)
	if err != nil {
		return false
	}
	res, err := bus.DecodeResult(e.Value())
	return err == nil && !res.Pending
}

// requeue puts the watched call in its version's work queue as a call
// nobody waits for: the worker that takes it stores the answer.
func (w *watcher) requeue(ctx context.Context, msg jetstream.Msg) error {
	fnID, versionID, ok := bus.ParseWatchSubject(msg.Subject())
	if !ok {
		return errors.New("invoke: watch record on an unexpected subject " + msg.Subject())
	}
	out := nats.NewMsg(bus.InvokeSubject(fnID, versionID))
	for k, vs := range msg.Headers() {
		if k != bus.HeaderWorker && k != bus.HeaderReply && !strings.HasPrefix(k, "Nats-") {
			out.Header[k] = vs
		}
	}
	out.Data = msg.Data()
	reqID := out.Header.Get(bus.HeaderReqID)
	// The dedupe id makes a second re-queue of the same call (the ack
	// below lost) a no-op.
	if _, err := w.js.PublishMsg(ctx, out, jetstream.WithMsgID(reqID+"-rerun")); err != nil {
		return err
	}
	_ = w.nc.Publish(bus.QueuedSubject(fnID, versionID), nil)
	return nil
}
