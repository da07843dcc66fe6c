package bench

import (
	"bufio"
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"net/http"
	"os"
	"runtime/debug"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/gantry-dev/gantry/internal/example/echo"
)

// StreamResult is the streaming measurements of RunInvoke: the first event
// of server-sent event streams and a large streamed response on every path,
// and polled (202) calls through the gateway.
type StreamResult struct {
	// SSEEvents and SSEInterval are the shape of each event stream
	// (Echo-Events, Echo-Interval).
	SSEEvents   int           `json:"sseEvents"`
	SSEInterval time.Duration `json:"sseIntervalNs"`
	SSE         []SSEResult   `json:"sse"`
	// LargeBytes is the size of the large response (Echo-Bytes).
	LargeBytes int64         `json:"largeBytes"`
	Large      []LargeResult `json:"large"`
	Async      AsyncResult   `json:"async"`
}

func (s *StreamResult) sse(path string) *SSEResult {
	for i := range s.SSE {
		if s.SSE[i].Path == path {
			return &s.SSE[i]
		}
	}
	return nil
}

func (s *StreamResult) large(path string) *LargeResult {
	for i := range s.Large {
		if s.Large[i].Path == path {
			return &s.Large[i]
		}
	}
	return nil
}

// SSEResult is the event streams timed on one path.
type SSEResult struct {
	Path       string `json:"path"`
	Calls      int    `json:"calls"`
	Errors     int    `json:"errors"`
	FirstError string `json:"firstError,omitempty"`
	// FirstEvent is the time from sending the request to reading the first
	// "data:" line, over the streams that succeeded; LastEvent the same to
	// the last one.
	FirstEvent Summary `json:"firstEvent"`
	LastEvent  Summary `json:"lastEvent"`
	// AddedFirstEvent is FirstEvent.P50 minus the direct path's.
	AddedFirstEvent time.Duration `json:"addedFirstEventNs"`
	// Buffered counts streams whose events arrived less than half the
	// function's spacing apart: something on the path held them back.
	Buffered int `json:"buffered"`
}

// failure says why the path's streams cannot be judged, or "".
func (s *SSEResult) failure() string {
	switch {
	case s.Errors > 0:
		return fmt.Sprintf("%d of %d streams: %s", s.Errors, s.Calls, s.FirstError)
	case s.Buffered > 0:
		return fmt.Sprintf("%d of %d streams arrived buffered", s.Buffered, s.Calls)
	}
	return ""
}

// LargeResult is the large response on one path, once per round.
type LargeResult struct {
	Path string `json:"path"`
	// Transfers were attempted; Failed did not deliver every byte with a 200.
	Transfers  int    `json:"transfers"`
	Failed     int    `json:"failed"`
	FirstError string `json:"firstError,omitempty"`
	// Elapsed (send to last byte) and Rate (bytes/s) are medians over the
	// transfers that succeeded.
	Elapsed time.Duration `json:"elapsedNs"`
	Rate    float64       `json:"bytesPerSecond"`
	// RSSGrowth is the most this process's VmRSS rose above its value at
	// the start of a transfer, over every transfer, failed ones included.
	RSSGrowth int64      `json:"rssGrowthBytes"`
	Runs      []LargeRun `json:"runs"`
}

// LargeRun is one large response.
type LargeRun struct {
	// Bytes is what arrived, all of it or up to the failure.
	Bytes   int64         `json:"bytes"`
	Elapsed time.Duration `json:"elapsedNs"`
	Rate    float64       `json:"bytesPerSecond"`
	// RSSBefore is this process's VmRSS at the start, after garbage of
	// earlier runs was returned to the kernel; RSSPeak the most it held
	// while the response streamed: the kernel's VmHWM, reset at the start,
	// when RSSPeakExact, else the highest VmRSS sampled.
	RSSBefore    int64  `json:"rssBeforeBytes"`
	RSSPeak      int64  `json:"rssPeakBytes"`
	RSSPeakExact bool   `json:"rssPeakExact"`
	Error        string `json:"error,omitempty"`
}

// streaming runs the streaming measurements: the event streams first, then
// the async calls, and the large responses last, since a gateway that fails
// one of those may leave its instance busy writing for a while.
func (r *rig) streaming(ctx context.Context) (*StreamResult, error) {
	res := &StreamResult{SSEEvents: r.cfg.SSEEvents, SSEInterval: r.cfg.SSEInterval, LargeBytes: r.cfg.StreamBytes}
	var err error
	if res.SSE, err = r.measureSSE(ctx); err != nil {
		return nil, err
	}
	if res.Async, err = r.measureAsync(ctx); err != nil {
		return nil, err
	}
	if res.Large, err = r.measureLarge(ctx); err != nil {
		return nil, err
	}
	return res, nil
}

// measureSSE times cfg.SSECalls event streams on every path, one at a time
// and the paths in turn, after one unmeasured stream per path.
func (r *rig) measureSSE(ctx context.Context) ([]SSEResult, error) {
	hdr := map[string]string{
		echo.HeaderEvents:   strconv.Itoa(r.cfg.SSEEvents),
		echo.HeaderInterval: r.cfg.SSEInterval.String(),
	}
	// Events spaced less than half their interval apart were held back.
	minSpread := time.Duration(r.cfg.SSEEvents-1) * r.cfg.SSEInterval / 2
	fmt.Fprintf(r.cfg.Progress, "SSE: %d streams per path of %d events %s apart\n", r.cfg.SSECalls, r.cfg.SSEEvents, r.cfg.SSEInterval)
	res := make([]SSEResult, len(r.order))
	first := make([][]time.Duration, len(r.order))
	last := make([][]time.Duration, len(r.order))
	for i, path := range r.order {
		res[i].Path = path
		_ = sseCall(ctx, r.client, r.newRequest(path, hdr), r.cfg.SSEEvents) // warm the connection
	}
	began := time.Now()
	for range r.cfg.SSECalls {
		for i, path := range r.order {
			c := sseCall(ctx, r.client, r.newRequest(path, hdr), r.cfg.SSEEvents)
			if err := ctx.Err(); err != nil {
				return nil, err
			}
			s := &res[i]
			s.Calls++
			if c.err != nil {
				s.Errors++
				if s.FirstError == "" {
					s.FirstError = c.err.Error()
				}
				continue
			}
			if c.last-c.first < minSpread {
				s.Buffered++
			}
			first[i], last[i] = append(first[i], c.first), append(last[i], c.last)
		}
	}
	elapsed := time.Since(began)
	for i := range res {
		s := &res[i]
		s.FirstEvent, s.LastEvent = Summarize(first[i], elapsed), Summarize(last[i], elapsed)
		s.AddedFirstEvent = s.FirstEvent.P50 - res[0].FirstEvent.P50
		fmt.Fprintf(r.cfg.Progress, "  %-8s first event p50 %sms  last event p50 %sms%s\n", s.Path, Millis(s.FirstEvent.P50), Millis(s.LastEvent.P50), failNote(s.failure()))
	}
	return res, nil
}

// sseTimes is one event stream: when its first and last events arrived,
// counted from sending the request.
type sseTimes struct {
	first, last time.Duration
	err         error
}

// sseCall sends one request and reads its event stream to the end, noting
// when each "data:" line arrives. It fails unless the answer is a 200
// text/event-stream of exactly want events.
func sseCall(ctx context.Context, hc *http.Client, newReq func(context.Context) (*http.Request, error), want int) sseTimes {
	var t sseTimes
	req, err := newReq(ctx)
	if err != nil {
		t.err = err
		return t
	}
	began := time.Now()
	resp, err := hc.Do(req)
	if err != nil {
		t.err = err
		return t
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		b, _ := io.ReadAll(io.LimitReader(resp.Body, 4<<10))
		t.err = fmt.Errorf("HTTP %d: %s", resp.StatusCode, firstLine(b))
		return t
	}
	if ct := resp.Header.Get("Content-Type"); !strings.HasPrefix(ct, "text/event-stream") {
		t.err = fmt.Errorf("Content-Type %q, want text/event-stream", ct)
		return t
	}
	n := 0
	br := bufio.NewReader(resp.Body)
	for {
		line, err := br.ReadSlice('\n')
		if bytes.HasPrefix(line, []byte("data:")) {
			at := time.Since(began)
			if n == 0 {
				t.first = at
			}
			t.last = at
			n++
		}
		if errors.Is(err, io.EOF) {
			break
		}
		if err != nil && !errors.Is(err, bufio.ErrBufferFull) {
			t.err = fmt.Errorf("reading the stream after %d events: %w", n, err)
			return t
		}
	}
	if n != want {
		t.err = fmt.Errorf("%d events, want %d", n, want)
	}
	return t
}

// measureLarge streams cfg.StreamBytes on every path, once per round, each
// path in turn, and records this process's RSS while it does. A failure is
// recorded against its path; the other paths still run.
func (r *rig) measureLarge(ctx context.Context) ([]LargeResult, error) {
	hdr := map[string]string{echo.HeaderBytes: strconv.FormatInt(r.cfg.StreamBytes, 10)}
	size := ByteSize(r.cfg.StreamBytes)
	res := make([]LargeResult, len(r.order))
	for i, path := range r.order {
		res[i].Path = path
	}
	for round := 1; round <= r.cfg.Rounds; round++ {
		for i, path := range r.order {
			tctx, cancel := context.WithTimeout(ctx, r.cfg.StreamTimeout)
			run := largeCall(tctx, r.client, r.newRequest(path, hdr), r.cfg.StreamBytes)
			cancel()
			if err := ctx.Err(); err != nil {
				return nil, err
			}
			if run.Error == "" {
				fmt.Fprintf(r.cfg.Progress, "  %s round %d/%d  %-8s %.2f GB/s  RSS +%.1f MiB\n", size, round, r.cfg.Rounds, path, run.Rate/1e9, MiB(run.RSSPeak-run.RSSBefore))
			} else {
				fmt.Fprintf(r.cfg.Progress, "  %s round %d/%d  %-8s FAILED after %d bytes: %s\n", size, round, r.cfg.Rounds, path, run.Bytes, run.Error)
			}
			res[i].Runs = append(res[i].Runs, run)
		}
	}
	for i := range res {
		res[i].summarize()
	}
	return res, nil
}

// summarize fills the medians, counts and growth from the runs.
func (l *LargeResult) summarize() {
	var elapsed []time.Duration
	var rates []float64
	for _, run := range l.Runs {
		l.Transfers++
		l.RSSGrowth = max(l.RSSGrowth, run.RSSPeak-run.RSSBefore)
		if run.Error != "" {
			l.Failed++
			if l.FirstError == "" {
				l.FirstError = run.Error
			}
			continue
		}
		elapsed, rates = append(elapsed, run.Elapsed), append(rates, run.Rate)
	}
	l.Elapsed, l.Rate = Median(elapsed), Median(rates)
}

// rssSampleEvery is how often largeCall reads VmRSS when the kernel's
// high-water mark cannot be reset: often enough to catch a peak that lasts
// a fraction of the transfer.
const rssSampleEvery = 5 * time.Millisecond

// largeCall sends one request and reads its answer to the end into a fixed
// buffer, and records how far this process's RSS rose meanwhile. It fails
// unless the answer is a 200 of exactly want bytes.
//
// Before it starts, it returns the garbage of earlier runs to the kernel:
// otherwise a heap the Go runtime still holds from them (a path that
// buffered a whole response, say) would be reused without the RSS rising,
// and the growth of this transfer would not show.
func largeCall(ctx context.Context, hc *http.Client, newReq func(context.Context) (*http.Request, error), want int64) LargeRun {
	pid := os.Getpid()
	debug.FreeOSMemory()
	exact := resetPeakRSS()
	before, err := readRSS(pid)
	if err != nil {
		return LargeRun{Error: err.Error()}
	}
	stop := sampleRSS(pid, before)
	run := transfer(ctx, hc, newReq, want)
	run.RSSBefore, run.RSSPeak, run.RSSPeakExact = before, stop(), exact
	if exact {
		hwm, err := procStatusBytes(pid, "VmHWM")
		run.RSSPeak, run.RSSPeakExact = max(run.RSSPeak, hwm), err == nil
	}
	return run
}

// sampleRSS reads pid's VmRSS every rssSampleEvery until the function it
// returns is called, which returns the highest value read (at least floor).
func sampleRSS(pid int, floor int64) (stop func() int64) {
	done := make(chan struct{})
	var wg sync.WaitGroup
	peak := floor
	wg.Go(func() {
		t := time.NewTicker(rssSampleEvery)
		defer t.Stop()
		for {
			if rss, err := readRSS(pid); err == nil {
				peak = max(peak, rss)
			}
			select {
			case <-done:
				return
			case <-t.C:
			}
		}
	})
	return func() int64 {
		close(done)
		wg.Wait()
		return peak
	}
}

// transfer is largeCall's request: the bytes, time and rate of the answer,
// or why it failed.
func transfer(ctx context.Context, hc *http.Client, newReq func(context.Context) (*http.Request, error), want int64) LargeRun {
	var run LargeRun
	req, err := newReq(ctx)
	if err != nil {
		run.Error = err.Error()
		return run
	}
	began := time.Now()
	resp, err := hc.Do(req)
	if err != nil {
		run.Error = err.Error()
		return run
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		b, _ := io.ReadAll(io.LimitReader(resp.Body, 4<<10))
		run.Error = fmt.Sprintf("HTTP %d: %s", resp.StatusCode, firstLine(b))
		return run
	}
	buf := make([]byte, 256<<10)
	for {
		n, err := resp.Body.Read(buf)
		run.Bytes += int64(n)
		if errors.Is(err, io.EOF) {
			break
		}
		if err != nil {
			run.Error = "reading the answer: " + err.Error()
			return run
		}
	}
	run.Elapsed = time.Since(began)
	if run.Bytes != want {
		run.Error = fmt.Sprintf("%d bytes arrived, want %d", run.Bytes, want)
		return run
	}
	run.Rate = float64(run.Bytes) / run.Elapsed.Seconds()
	return run
}

// resetPeakRSS makes the kernel's high-water mark of this process's RSS
// (VmHWM) start again from its current RSS, by writing 5 to
// /proc/self/clear_refs (Linux 4.0 and later). It reports whether that
// worked; when it did, VmHWM after a transfer is the transfer's exact peak,
// which sampling can miss.
func resetPeakRSS() bool {
	return os.WriteFile("/proc/self/clear_refs", []byte("5"), 0) == nil
}

// failNote is a progress line's suffix for a failure, if any.
func failNote(why string) string {
	if why == "" {
		return ""
	}
	return "  !! " + why
}
