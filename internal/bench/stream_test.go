package bench

import (
	"context"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/gantry-dev/gantry/internal/example/echo"
)

// echoRequest returns a builder of POSTs to url with hdr set.
func echoRequest(url string, hdr map[string]string) func(context.Context) (*http.Request, error) {
	return func(ctx context.Context) (*http.Request, error) {
		req, err := post(ctx, url, "", jsonBody(64))
		if err != nil {
			return nil, err
		}
		for k, v := range hdr {
			req.Header.Set(k, v)
		}
		return req, nil
	}
}

// checkPath checks a path whose base URL ends in an echo: a plain call
// answers 200, events arrive spread out as the echo writes them, and a
// response many times any proxy buffer arrives whole.
func checkPath(t *testing.T, base string) {
	t.Helper()
	hc := loadClient(4)
	t.Cleanup(hc.CloseIdleConnections)
	url := base + "/echo"
	if err := firstOK(context.Background(), hc, "test", echoRequest(url, nil)); err != nil {
		t.Fatal(err)
	}
	const events, interval = 3, 100 * time.Millisecond
	s := sseCall(context.Background(), hc, echoRequest(url, map[string]string{
		echo.HeaderEvents: strconv.Itoa(events), echo.HeaderInterval: interval.String(),
	}), events)
	if s.err != nil {
		t.Fatal(s.err)
	}
	if spread := s.last - s.first; spread < (events-1)*interval/2 {
		t.Errorf("events arrived %s apart from first to last, want about %s: the path buffers them", spread, (events-1)*interval)
	}
	const size = 64 << 20
	run := largeCall(context.Background(), hc, echoRequest(url, map[string]string{echo.HeaderBytes: strconv.Itoa(size)}), size)
	if run.Error != "" || run.Bytes != size || run.Rate <= 0 {
		t.Errorf("large response: %+v", run)
	}
	if run.RSSBefore <= 0 || run.RSSPeak < run.RSSBefore {
		t.Errorf("RSS before %d, peak %d", run.RSSBefore, run.RSSPeak)
	}
}

func TestPaths(t *testing.T) {
	t.Parallel()
	srv := httptest.NewServer(echo.Handler())
	t.Cleanup(srv.Close)
	p, err := startProxy(srv.URL, 4, nil)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = p.close() })
	for _, tc := range []struct{ name, base string }{
		{PathDirect, srv.URL},
		{PathProxy, p.URL()},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			checkPath(t, tc.base)
		})
	}
}

// TestProxyFullDuplex checks that the httputil baseline keeps reading a
// request body after the response has begun: an upstream that answers
// before it reads echoes each piece of the body back, and the client sends
// the second piece only once the first has come back. A proxy whose server
// drains the body when the headers go out stalls here, and one that closes
// it cuts the response; both fail within the timeout.
func TestProxyFullDuplex(t *testing.T) {
	t.Parallel()
	upstream := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		rc := http.NewResponseController(w)
		if err := rc.EnableFullDuplex(); err != nil {
			t.Error(err)
		}
		w.WriteHeader(http.StatusOK)
		_ = rc.Flush()
		buf := make([]byte, 64)
		for {
			n, err := r.Body.Read(buf)
			if n > 0 {
				_, _ = w.Write(buf[:n])
				_ = rc.Flush()
			}
			if err != nil {
				return
			}
		}
	}))
	t.Cleanup(upstream.Close)
	p, err := startProxy(upstream.URL, 1, nil)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = p.close() })

	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	pr, pw := io.Pipe()
	// A stalled proxy must fail the test, not hang it: the transport waits
	// for the body it is writing, which only a closed pipe ends.
	stop := context.AfterFunc(ctx, func() { pw.CloseWithError(ctx.Err()) })
	defer stop()
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, p.URL()+"/echo", pr)
	if err != nil {
		t.Fatal(err)
	}
	req.ContentLength = int64(len("ping") + len("pong"))
	go func() { _, _ = pw.Write([]byte("ping")) }()
	hc := loadClient(1)
	t.Cleanup(hc.CloseIdleConnections)
	resp, err := hc.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	got := make([]byte, 4)
	if _, err := io.ReadFull(resp.Body, got); err != nil || string(got) != "ping" {
		t.Fatalf("first piece %q, %v; want ping", got, err)
	}
	go func() {
		_, _ = pw.Write([]byte("pong"))
		_ = pw.Close()
	}()
	rest, err := io.ReadAll(resp.Body)
	if err != nil || string(rest) != "pong" {
		t.Fatalf("rest %q, %v; want pong", rest, err)
	}
}

// TestStreamFailures checks that a path failing a stream is told apart
// from one that succeeds, with a reason a report can print.
func TestStreamFailures(t *testing.T) {
	t.Parallel()
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		switch r.URL.Path {
		case "/status":
			http.Error(w, "response too large\nsecond line", http.StatusBadGateway)
		case "/json":
			w.Header().Set("Content-Type", "application/json")
			fmt.Fprintln(w, `{"data: 1":true}`)
		case "/few":
			w.Header().Set("Content-Type", "text/event-stream")
			fmt.Fprint(w, "data: 1\n\n")
		case "/short":
			// Claims more than it sends, as a gateway that gives up midway.
			w.Header().Set("Content-Length", "1000")
			fmt.Fprint(w, strings.Repeat("x", 10))
		}
	}))
	t.Cleanup(srv.Close)
	hc := srv.Client()
	tests := []struct {
		name, path string
		large      bool
		want       string
	}{
		{name: "SSE error status", path: "/status", want: "HTTP 502: response too large"},
		{name: "SSE not an event stream", path: "/json", want: `Content-Type "application/json"`},
		{name: "SSE too few events", path: "/few", want: "1 events, want 3"},
		{name: "large error status", path: "/status", large: true, want: "HTTP 502: response too large"},
		{name: "large cut short", path: "/short", large: true, want: "reading the answer: unexpected EOF"},
		{name: "large wrong size", path: "/json", large: true, want: "bytes arrived, want 1000"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			var got string
			if tc.large {
				got = largeCall(context.Background(), hc, echoRequest(srv.URL+tc.path, nil), 1000).Error
			} else if err := sseCall(context.Background(), hc, echoRequest(srv.URL+tc.path, nil), 3).err; err != nil {
				got = err.Error()
			}
			if !strings.Contains(got, tc.want) {
				t.Errorf("error %q, want it to contain %q", got, tc.want)
			}
			if strings.Contains(got, "second line") {
				t.Errorf("error %q holds more than the first line of the body", got)
			}
		})
	}
}

// TestLargeCallRSS checks that the RSS growth largeCall reports is this
// process's: a handler in it that holds the whole answer in memory, as a
// buffering gateway would, must show as growth of about that size. It is
// not parallel, so no other test's memory moves the numbers.
func TestLargeCallRSS(t *testing.T) {
	const size = 64 << 20
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		b := make([]byte, size)
		for i := range b {
			b[i] = 'x' // touched, so resident
		}
		_, _ = w.Write(b)
	}))
	t.Cleanup(srv.Close)
	run := largeCall(context.Background(), srv.Client(), echoRequest(srv.URL, nil), size)
	if run.Error != "" {
		t.Fatal(run.Error)
	}
	if growth := run.RSSPeak - run.RSSBefore; growth < size/2 {
		t.Errorf("RSS grew %.1f MiB (before %.1f, peak %.1f, exact %v) while a %d MiB answer was held in memory",
			MiB(growth), MiB(run.RSSBefore), MiB(run.RSSPeak), run.RSSPeakExact, size>>20)
	}
}

func TestLargeSummarize(t *testing.T) {
	t.Parallel()
	l := LargeResult{Runs: []LargeRun{
		{Bytes: 100, Rate: 3e9, Elapsed: time.Second, RSSBefore: 100 << 20, RSSPeak: 110 << 20},
		{Bytes: 5, Error: "HTTP 502: too large", RSSBefore: 100 << 20, RSSPeak: 140 << 20},
		{Bytes: 100, Rate: 1e9, Elapsed: 3 * time.Second, RSSBefore: 120 << 20, RSSPeak: 121 << 20},
	}}
	l.summarize()
	if l.Transfers != 3 || l.Failed != 1 || l.FirstError != "HTTP 502: too large" {
		t.Errorf("transfers %d, failed %d (%q)", l.Transfers, l.Failed, l.FirstError)
	}
	if l.Rate != 2e9 || l.Elapsed != 2*time.Second {
		t.Errorf("rate %v, elapsed %s; want the medians of the successful runs, 2e9 and 2s", l.Rate, l.Elapsed)
	}
	if l.RSSGrowth != 40<<20 {
		t.Errorf("RSS growth %d MiB, want 40 (the failed run's counts)", l.RSSGrowth>>20)
	}
}
