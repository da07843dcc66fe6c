package bench

import (
	"context"
	"fmt"
	"io"
	"net/http"
	"strings"
	"sync"
	"sync/atomic"
	"time"
)

// Load is a closed-loop HTTP load: Concurrency workers, each sending its next
// request as soon as the previous one is answered, for Duration or until
// Requests requests have been sent in all.
type Load struct {
	Client      *http.Client
	Concurrency int
	// Duration bounds the run when Requests is 0: no request starts after it,
	// and the ones in flight finish.
	Duration time.Duration
	// Requests, when positive, runs exactly this many requests instead.
	Requests int
	// NewRequest builds each request; it is called from many goroutines.
	NewRequest func(ctx context.Context) (*http.Request, error)
}

// RunResult is one timed run of a load against one path.
type RunResult struct {
	// Requests counts every request answered or failed; Errors those that
	// did not get a 200.
	Requests int `json:"requests"`
	Errors   int `json:"errors"`
	// FirstError describes one failure, so a report can say why.
	FirstError string        `json:"firstError,omitempty"`
	Elapsed    time.Duration `json:"elapsedNs"`
	// Latency covers the successful requests only: a fast 503 must not make
	// a path look quick.
	Latency Summary `json:"latency"`
}

// Run runs the load and returns its latencies, measured from sending each
// request to reading the last byte of its answer. It stops early, with what
// it measured so far, when ctx ends.
func (l Load) Run(ctx context.Context) RunResult {
	var (
		issued atomic.Int64
		wg     sync.WaitGroup
	)
	workers := make([]loadWorker, max(1, l.Concurrency))
	start := time.Now()
	// The deadline only stops new requests; it is not the requests' context,
	// because cancelling one in flight would close its connection and make
	// the next run pay for new ones.
	deadline := start.Add(l.Duration)
	more := func() bool {
		if ctx.Err() != nil {
			return false
		}
		if l.Requests > 0 {
			return issued.Add(1) <= int64(l.Requests)
		}
		return time.Now().Before(deadline)
	}
	for i := range workers {
		wg.Add(1)
		go func(w *loadWorker) {
			defer wg.Done()
			for more() {
				w.do(ctx, l)
			}
		}(&workers[i])
	}
	wg.Wait()
	elapsed := time.Since(start)

	var res RunResult
	var samples []time.Duration
	for _, w := range workers {
		res.Requests += len(w.samples) + w.errors
		res.Errors += w.errors
		if res.FirstError == "" {
			res.FirstError = w.firstError
		}
		samples = append(samples, w.samples...)
	}
	res.Elapsed = elapsed
	res.Latency = Summarize(samples, elapsed)
	return res
}

// loadWorker is one closed loop's tally; each worker owns its own, so the
// hot path shares nothing but the request counter.
type loadWorker struct {
	samples    []time.Duration
	errors     int
	firstError string
}

func (w *loadWorker) do(ctx context.Context, l Load) {
	req, err := l.NewRequest(ctx)
	if err != nil {
		w.fail(err.Error())
		return
	}
	began := time.Now()
	resp, err := l.Client.Do(req)
	if err != nil {
		if ctx.Err() != nil {
			return // the run ended while this request was in flight
		}
		w.fail(err.Error())
		return
	}
	body, err := io.ReadAll(resp.Body)
	resp.Body.Close()
	took := time.Since(began)
	switch {
	case err != nil:
		w.fail("reading the answer: " + err.Error())
	case resp.StatusCode != http.StatusOK:
		w.fail(fmt.Sprintf("HTTP %d: %s", resp.StatusCode, firstLine(body)))
	default:
		w.samples = append(w.samples, took)
	}
}

func (w *loadWorker) fail(msg string) {
	w.errors++
	if w.firstError == "" {
		w.firstError = msg
	}
}

// firstLine shortens an error body to something a report line can hold.
func firstLine(b []byte) string {
	s, _, _ := strings.Cut(strings.TrimSpace(string(b)), "\n")
	if len(s) > 200 {
		s = s[:200] + "..."
	}
	return s
}
