package agent

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/gantry-dev/gantry/internal/bus"
	"github.com/gantry-dev/gantry/internal/model"
	"github.com/gantry-dev/gantry/internal/problem"
)

// worker feeds one running instance from its function version's work queue.
// It runs exactly maxRequestConcurrency slots; each slot pulls one message,
// forwards it to the instance and answers, so the function never sees more
// concurrent requests than the deployment allows, and idle instances of the
// same version compete fairly for queued work (nothing is prefetched).
type worker struct {
	inst     model.DesiredInstance
	endpoint string
	nc       *nats.Conn
	js       jetstream.JetStream
	client   *http.Client
	log      *slog.Logger

	cancel context.CancelFunc
	wg     sync.WaitGroup
	// inFlight counts requests the instance is working on; a running
	// instance with none is idle in the agent's report.
	inFlight atomic.Int32
}

// consumerConfig is the one durable consumer every worker of a version shares.
// All workers create it with identical settings, so creation is idempotent.
func consumerConfig(inst model.DesiredInstance) jetstream.ConsumerConfig {
	return jetstream.ConsumerConfig{
		Durable:       bus.ConsumerName(inst.FunctionVersionID),
		FilterSubject: bus.InvokeSubject(inst.FunctionID, inst.FunctionVersionID),
		AckPolicy:     jetstream.AckExplicitPolicy,
		AckWait:       30 * time.Second, // extended with InProgress while a request runs
		MaxDeliver:    5,
		MaxWaiting:    16384,
		MaxAckPending: -1,
	}
}

func startWorker(parent context.Context, js jetstream.JetStream, nc *nats.Conn,
	inst model.DesiredInstance, endpoint string, log *slog.Logger) (*worker, error) {
	cctx, cancelCreate := context.WithTimeout(parent, 10*time.Second)
	defer cancelCreate()
	if _, err := js.CreateOrUpdateConsumer(cctx, bus.InvokeStream, consumerConfig(inst)); err != nil {
		return nil, fmt.Errorf("agent: work queue consumer for %s: %w", inst.FunctionVersionID, err)
	}
	ctx, cancel := context.WithCancel(parent)
	slots := max(1, inst.MaxRequestConcurrency)
	w := &worker{
		inst: inst, endpoint: endpoint, nc: nc, js: js, cancel: cancel,
		log: log.With("instance", inst.InstanceID),
		client: &http.Client{Transport: &http.Transport{
			DialContext:         (&net.Dialer{Timeout: 5 * time.Second}).DialContext,
			MaxIdleConns:        slots,
			MaxIdleConnsPerHost: slots,
			IdleConnTimeout:     90 * time.Second,
			DisableCompression:  true,
		}},
	}
	for i := 0; i < slots; i++ {
		p, err := newPuller(nc, bus.InvokeStream, bus.ConsumerName(inst.FunctionVersionID))
		if err != nil {
			w.stop()
			return nil, err
		}
		w.wg.Add(1)
		go w.slot(ctx, p)
	}
	return w, nil
}

// stop stops pulling and waits for in-flight requests to finish.
func (w *worker) stop() {
	w.cancel()
	w.wg.Wait()
	w.client.CloseIdleConnections()
}

func (w *worker) slot(ctx context.Context, p *puller) {
	defer w.wg.Done()
	defer p.close()
	for ctx.Err() == nil {
		msg, err := p.next(ctx)
		if err != nil {
			if ctx.Err() != nil || errors.Is(err, errNoMessage) {
				continue
			}
			w.log.Warn("agent: pulling work failed; retrying", "err", err)
			select {
			case <-ctx.Done():
			case <-time.After(500 * time.Millisecond):
			}
			continue
		}
		w.inFlight.Add(1)
		w.handle(ctx, msg)
		w.inFlight.Add(-1)
	}
}

// handle forwards one request to the instance and delivers the answer.
func (w *worker) handle(ctx context.Context, msg *nats.Msg) {
	hdr := msg.Header
	reqID := hdr.Get(bus.HeaderReqID)

	// Keep the message ours while the function works on it: every 10s tell
	// JetStream we are still on it. A timer costs the typical short request
	// nothing; finished stops a callback already under way from re-arming.
	var (
		mu       sync.Mutex
		keep     *time.Timer
		finished bool
	)
	mu.Lock()
	keep = time.AfterFunc(10*time.Second, func() {
		mu.Lock()
		defer mu.Unlock()
		if !finished {
			_ = inProgress(msg)
			keep.Reset(10 * time.Second)
		}
	})
	mu.Unlock()
	defer func() {
		mu.Lock()
		finished = true
		keep.Stop()
		mu.Unlock()
	}()

	req, err := http.NewRequestWithContext(context.WithoutCancel(ctx), hdr.Get(bus.HeaderMethod),
		w.endpoint+hdr.Get(bus.HeaderPath), bytes.NewReader(msg.Data))
	if err != nil {
		w.answer(msg, reqID, errorAnswer(http.StatusBadRequest, "the request cannot be forwarded: "+err.Error()))
		return
	}
	for k, vs := range hdr {
		// Gantry-* are our control headers and Nats-* the bus's own.
		if !strings.HasPrefix(k, "Gantry-") && !strings.HasPrefix(k, "Nats-") {
			req.Header[k] = vs
		}
	}
	req.ContentLength = int64(len(msg.Data))
	resp, err := w.client.Do(req)
	if err != nil {
		var op *net.OpError
		if errors.As(err, &op) && op.Op == "dial" {
			// Nothing reached the function: another instance, or this one
			// after its restart, can take the request safely.
			_ = nakAfter(msg, time.Second)
			return
		}
		w.answer(msg, reqID, errorAnswer(http.StatusBadGateway, "the function instance failed while handling the request: "+err.Error()))
		return
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(io.LimitReader(resp.Body, bus.MaxResponseBody+1))
	switch {
	case err != nil:
		w.answer(msg, reqID, errorAnswer(http.StatusBadGateway, "reading the function's response failed: "+err.Error()))
		return
	case len(body) > bus.MaxResponseBody:
		w.answer(msg, reqID, errorAnswer(http.StatusRequestEntityTooLarge,
			fmt.Sprintf("the function's response exceeds the %d MiB inline limit; return a smaller body or stream it as text/event-stream", bus.MaxResponseBody>>20)))
		return
	}
	out := nats.Header{}
	for k, vs := range resp.Header {
		out[k] = vs
	}
	out.Set(bus.HeaderStatus, strconv.Itoa(resp.StatusCode))
	w.answer(msg, reqID, answer{header: out, body: body})
}

type answer struct {
	header nats.Header
	body   []byte
}

// errorAnswer is a problem body for failures on the worker's side.
func errorAnswer(status int, detail string) answer {
	b := problem.Body{Type: problem.TypeURI(status), Title: http.StatusText(status), Status: status, Detail: detail}
	h := nats.Header{}
	h.Set("Content-Type", problem.ContentType)
	h.Set(bus.HeaderStatus, strconv.Itoa(status))
	h.Set(bus.HeaderError, "1")
	body, _ := json.Marshal(b) // a problem.Body always encodes
	return answer{header: h, body: body}
}

// answer hands the result to the waiting gateway; if no gateway takes it (the
// caller got a 202, or the gateway restarted) it goes to the results bucket
// for polling. Only then is the work message acknowledged.
func (w *worker) answer(msg *nats.Msg, reqID string, a answer) {
	hdr := msg.Header
	reply := nats.NewMsg(hdr.Get(bus.HeaderReply))
	reply.Header = a.header
	reply.Data = a.body
	taken := false
	if reply.Subject != "" {
		resp, err := w.nc.RequestMsg(reply, 5*time.Second)
		taken = err == nil && string(resp.Data) == "1"
	}
	if !taken {
		status, _ := strconv.Atoi(a.header.Get(bus.HeaderStatus))
		res := bus.Result{Account: hdr.Get(bus.HeaderAccount), Status: status, Header: http.Header(a.header), Body: a.body}
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		_, err := w.js.Publish(ctx, bus.ResultSubject(reqID), res.Encode())
		cancel()
		if err != nil {
			w.log.Error("agent: could not store result; the request will be retried", "requestId", reqID, "err", err)
			_ = nakAfter(msg, 0)
			return
		}
	}
	_ = ack(msg)
}
