package bench

import (
	"context"
	"fmt"
	"io"
	"net/http"
	"strconv"
	"sync"
	"time"

	"github.com/gantry-dev/gantry/internal/example/echo"
)

// Poll windows of the async measurement: the shortest pexec window there is,
// so calls turn into 202s as soon as the function runs past it, and a status
// window long enough that each GET waits for the result rather than
// returning 202 again.
const (
	asyncPollSeconds  = 1
	statusPollSeconds = 10
)

// AsyncResult is the polled calls through the gateway: each a pexec with
// NVCF-POLL-SECONDS 1 of a function that answers after Delay, so it is
// answered 202 with NVCF-REQID, then GET /v2/nvcf/pexec/status/{requestId}
// until 200.
type AsyncResult struct {
	Concurrency int           `json:"concurrency"`
	PollSeconds int           `json:"pollSeconds"`
	Delay       time.Duration `json:"delayNs"`
	// Duration is how long calls were started for; Elapsed runs until the
	// last one completed.
	Duration time.Duration `json:"durationNs"`
	Elapsed  time.Duration `json:"elapsedNs"`
	// Calls completed with a 200; Accepted of them were answered 202 first
	// (the rest came back within the poll window); StatusPolls counts the
	// status GETs.
	Calls       int `json:"calls"`
	Accepted    int `json:"accepted"`
	StatusPolls int `json:"statusPolls"`
	Errors      int `json:"errors"`
	// FirstError describes one failure.
	FirstError string `json:"firstError,omitempty"`
	// CallsPerSecond is Calls over Elapsed; Ideal is Concurrency over Delay,
	// the rate if the async path took no time of its own.
	CallsPerSecond float64 `json:"callsPerSecond"`
	Ideal          float64 `json:"idealCallsPerSecond"`
	// Latency is from sending the pexec to reading the final 200, over the
	// completed calls.
	Latency Summary `json:"latency"`
}

// measureAsync runs cfg.AsyncConcurrency closed loops of polled calls
// through the gateway for cfg.AsyncDuration.
func (r *rig) measureAsync(ctx context.Context) (AsyncResult, error) {
	c := r.cfg.AsyncConcurrency
	res := AsyncResult{Concurrency: c, PollSeconds: asyncPollSeconds, Delay: r.cfg.AsyncDelay, Duration: r.cfg.AsyncDuration,
		Ideal: float64(c) / r.cfg.AsyncDelay.Seconds()}
	fmt.Fprintf(r.cfg.Progress, "Async: %d polled calls in flight for %s (NVCF-POLL-SECONDS %d, the echo answers after %s)\n",
		c, r.cfg.AsyncDuration, asyncPollSeconds, r.cfg.AsyncDelay)
	newReq := r.newRequest(PathGateway, map[string]string{
		"NVCF-POLL-SECONDS": strconv.Itoa(asyncPollSeconds),
		echo.HeaderDelay:    r.cfg.AsyncDelay.String(),
	})
	statusURL := r.p.URL() + "/v2/nvcf/pexec/status/"

	var (
		mu      sync.Mutex
		samples []time.Duration
		wg      sync.WaitGroup
	)
	start := time.Now()
	deadline := start.Add(r.cfg.AsyncDuration)
	for range c {
		wg.Go(func() {
			var mine []time.Duration
			var accepted, polls, errs int
			var firstErr string
			for ctx.Err() == nil && time.Now().Before(deadline) {
				took, wasAccepted, n, err := r.asyncCall(ctx, newReq, statusURL)
				polls += n
				switch {
				case ctx.Err() != nil:
				case err != nil:
					errs++
					if firstErr == "" {
						firstErr = err.Error()
					}
				default:
					mine = append(mine, took)
					if wasAccepted {
						accepted++
					}
				}
			}
			mu.Lock()
			defer mu.Unlock()
			samples = append(samples, mine...)
			res.Accepted += accepted
			res.StatusPolls += polls
			res.Errors += errs
			if res.FirstError == "" {
				res.FirstError = firstErr
			}
		})
	}
	wg.Wait()
	if err := ctx.Err(); err != nil {
		return res, err
	}
	res.Elapsed = time.Since(start)
	res.Calls = len(samples)
	res.Latency = Summarize(samples, res.Elapsed)
	res.CallsPerSecond = res.Latency.RPS
	note := ""
	if res.Errors > 0 {
		note = fmt.Sprintf("  !! %d ERRORS (%s)", res.Errors, res.FirstError)
	}
	fmt.Fprintf(r.cfg.Progress, "  %d calls (%d answered 202 first, %d status GETs) in %.1fs: %.1f calls/s (ideal %.1f), p50 %sms%s\n",
		res.Calls, res.Accepted, res.StatusPolls, res.Elapsed.Seconds(), res.CallsPerSecond, res.Ideal, Millis(res.Latency.P50), note)
	return res, nil
}

// asyncCall makes one polled call: the pexec, then, if it is answered 202,
// status GETs until one answers 200. It returns the time from sending the
// pexec to reading the final answer, whether there was a 202, and how many
// status GETs it made.
func (r *rig) asyncCall(ctx context.Context, newReq func(context.Context) (*http.Request, error), statusURL string) (time.Duration, bool, int, error) {
	ctx, cancel := context.WithTimeout(ctx, r.cfg.AsyncDelay+time.Minute)
	defer cancel()
	req, err := newReq(ctx)
	if err != nil {
		return 0, false, 0, err
	}
	began := time.Now()
	status, hdr, body, err := r.do(req)
	if err != nil {
		return 0, false, 0, err
	}
	switch status {
	case http.StatusOK:
		return time.Since(began), false, 0, nil
	case http.StatusAccepted:
	default:
		return 0, false, 0, fmt.Errorf("pexec: HTTP %d: %s", status, firstLine(body))
	}
	reqID := hdr.Get("NVCF-REQID")
	if reqID == "" {
		return 0, true, 0, fmt.Errorf("pexec: 202 without NVCF-REQID")
	}
	for polls := 1; ; polls++ {
		req, err := http.NewRequestWithContext(ctx, http.MethodGet, statusURL+reqID, nil)
		if err != nil {
			return 0, true, polls, err
		}
		req.Header.Set("Authorization", "Bearer "+r.token)
		req.Header.Set("NVCF-POLL-SECONDS", strconv.Itoa(statusPollSeconds))
		status, _, body, err := r.do(req)
		if err != nil {
			return 0, true, polls, fmt.Errorf("status: %w", err)
		}
		switch status {
		case http.StatusOK:
			return time.Since(began), true, polls, nil
		case http.StatusAccepted:
		default:
			return 0, true, polls, fmt.Errorf("status: HTTP %d: %s", status, firstLine(body))
		}
	}
}

// do sends req with the load client and reads the whole answer.
func (r *rig) do(req *http.Request) (int, http.Header, []byte, error) {
	resp, err := r.client.Do(req)
	if err != nil {
		return 0, nil, nil, err
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		return 0, nil, nil, fmt.Errorf("reading the answer: %w", err)
	}
	return resp.StatusCode, resp.Header, b, nil
}
