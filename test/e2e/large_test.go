package e2e

import (
	"bufio"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"os"
	"runtime"
	"runtime/metrics"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/gantry-dev/gantry/internal/controlplane"
	"github.com/gantry-dev/gantry/internal/dev"
	"github.com/gantry-dev/gantry/internal/example/echo"
	"github.com/gantry-dev/gantry/internal/model"
	"github.com/gantry-dev/gantry/internal/testutil"
)

// TestLargeBodiesStream moves a 100 MiB request and a 1 GiB response (256
// MiB under the race detector) through the gateway, which runs in this
// process, and checks that this process's memory stays within 64 MiB of
// where it started: the bodies stream, nothing holds them.
//
// Not parallel: it measures this process's memory, which platforms beside it would grow.
func TestLargeBodiesStream(t *testing.T) {
	if testing.Short() {
		t.Skip("moves 1.1 GiB")
	}
	onCallPaths(t, func(c *dev.Config) {
		c.Invocation = controlplane.Invocation{MaxRequestBody: 128 << 20}
	}, testLargeBodiesStream)
}

func testLargeBodiesStream(t *testing.T, p *platform) {
	ctx := testutil.Context(t)
	f, err := p.c.CreateFunction(ctx, selfFunction(t, "echo", "echo"))
	if err != nil {
		t.Fatal(err)
	}
	p.deploy(t, f, model.GPUSpec{GPU: "H100", MinInstances: 1, MaxInstances: 1, MaxRequestConcurrency: model.Int(2)}, model.StatusActive)

	const maxGrowth = 64 << 20
	// Under the race detector (CI) the response is a quarter as large, to
	// take seconds rather than half a minute; the bound is the same.
	response := int64(1 << 30)
	if raceEnabled() {
		response = 256 << 20
	}
	tests := []struct {
		name      string
		hdr       http.Header
		body      int64
		wantBytes int64 // the response's size, or -1 for {"bytes": n} of the request
	}{
		{"100 MiB request", http.Header{echo.HeaderDiscard: {"1"}}, 100 << 20, -1},
		{byteCount(response) + " response", http.Header{echo.HeaderBytes: {strconv.FormatInt(response, 10)}}, 0, response},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			req := p.pexecRequest(t, ctx, f, tc.hdr)
			if tc.body > 0 {
				req.Body = io.NopCloser(io.LimitReader(zeros{}, tc.body))
				req.ContentLength = tc.body
			}
			rss := watchRSS(t)
			began := time.Now()
			resp, err := http.DefaultClient.Do(req)
			if err != nil {
				t.Fatal(err)
			}
			defer resp.Body.Close()
			if resp.StatusCode != http.StatusOK {
				b, _ := io.ReadAll(io.LimitReader(resp.Body, 4096))
				t.Fatalf("status %d: %s", resp.StatusCode, b)
			}
			if tc.wantBytes >= 0 {
				n, err := io.Copy(io.Discard, resp.Body)
				if err != nil || n != tc.wantBytes {
					t.Fatalf("read %d bytes (%v), want %d", n, err, tc.wantBytes)
				}
			} else {
				var got struct{ Bytes int64 }
				if err := json.NewDecoder(resp.Body).Decode(&got); err != nil || got.Bytes != tc.body {
					t.Fatalf("function read %d bytes (%v), want %d", got.Bytes, err, tc.body)
				}
			}
			took := time.Since(began)
			growth := rss()
			t.Logf("%s in %v (%.0f MB/s); this process's memory grew by %d MiB", tc.name, took.Round(time.Millisecond),
				float64(max(tc.body, tc.wantBytes))/took.Seconds()/1e6, growth>>20)
			if growth > maxGrowth {
				t.Errorf("memory grew by %d MiB moving %s, want <= %d MiB", growth>>20, tc.name, maxGrowth>>20)
			}
		})
	}
}

func byteCount(n int64) string {
	if n >= 1<<30 {
		return strconv.FormatInt(n>>30, 10) + " GiB"
	}
	return strconv.FormatInt(n>>20, 10) + " MiB"
}

// zeros reads as an endless run of zero bytes.
type zeros struct{}

func (zeros) Read(b []byte) (int, error) {
	clear(b)
	return len(b), nil
}

// watchRSS samples this process's memory until the returned func is
// called, which reports the peak's growth over the amount at the start.
//
// The amount is the resident set size, except under the race detector: its
// shadow memory grows with every byte the program ever allocated, garbage
// included, so there it is the Go runtime's own footprint (memory it has
// mapped and not returned to the OS), which is what RSS would be without
// the detector.
func watchRSS(t testing.TB) func() int64 {
	t.Helper()
	read := readRSS
	if raceEnabled() {
		read = goFootprint
	} else if _, err := os.Stat("/proc/self/status"); err != nil {
		t.Skip("no /proc/self/status to read the resident set size from")
	}
	runtime.GC()
	start := read(t)
	var (
		mu   sync.Mutex
		peak = start
		stop = make(chan struct{})
		done = make(chan struct{})
	)
	go func() {
		defer close(done)
		tick := time.NewTicker(10 * time.Millisecond)
		defer tick.Stop()
		for {
			select {
			case <-stop:
				return
			case <-tick.C:
				n := read(t)
				mu.Lock()
				peak = max(peak, n)
				mu.Unlock()
			}
		}
	}()
	return func() int64 {
		close(stop)
		<-done
		mu.Lock()
		defer mu.Unlock()
		return max(peak, read(t)) - start
	}
}

// goFootprint is the memory the Go runtime holds from the OS: all it has
// mapped less the heap it has released.
func goFootprint(testing.TB) int64 {
	m := []metrics.Sample{{Name: "/memory/classes/total:bytes"}, {Name: "/memory/classes/heap/released:bytes"}}
	metrics.Read(m)
	return int64(m[0].Value.Uint64() - m[1].Value.Uint64())
}

// readRSS is VmRSS of /proc/self/status, in bytes.
func readRSS(t testing.TB) int64 {
	f, err := os.Open("/proc/self/status")
	if err != nil {
		t.Error(err)
		return 0
	}
	defer f.Close()
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		if rest, ok := strings.CutPrefix(sc.Text(), "VmRSS:"); ok {
			kb, err := strconv.ParseInt(strings.TrimSuffix(strings.TrimSpace(rest), " kB"), 10, 64)
			if err != nil {
				t.Error(err)
			}
			return kb << 10
		}
	}
	t.Error("no VmRSS in /proc/self/status")
	return 0
}

// TestLargePolledResult: a 202'd call whose answer is larger than a result
// record holds is kept in the object store; the status poll answers 302 to
// where it streams, for the same credential only.
//
// Not parallel: with busy platforms beside it, storing its 12 MiB answer
// has stalled past the 30s wait.
func TestLargePolledResult(t *testing.T) {
	onCallPaths(t, nil, testLargePolledResult)
}

func testLargePolledResult(t *testing.T, p *platform) {
	ctx := testutil.Context(t)
	f, err := p.c.CreateFunction(ctx, selfFunction(t, "echo", "echo"))
	if err != nil {
		t.Fatal(err)
	}
	p.deploy(t, f, model.GPUSpec{GPU: "H100", MinInstances: 1, MaxInstances: 1, MaxRequestConcurrency: model.Int(2)}, model.StatusActive)
	const size = 12 << 20
	req := p.pexecRequest(t, ctx, f, http.Header{echo.HeaderBytes: {strconv.Itoa(size)}, echo.HeaderDelay: {"1500ms"},
		"NVCF-POLL-SECONDS": {"1"}})
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	reqID := resp.Header.Get("NVCF-REQID")
	if resp.StatusCode != http.StatusAccepted || reqID == "" {
		t.Fatalf("status %d, want 202 with a request id", resp.StatusCode)
	}
	noFollow := &http.Client{CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }}
	var location string
	testutil.WaitFor(t, 30*time.Second, func() error {
		st, err := noFollow.Do(newRequest(t, http.MethodGet, p.URL()+"/v2/nvcf/pexec/status/"+reqID, p.AdminToken()))
		if err != nil {
			return err
		}
		st.Body.Close()
		if st.StatusCode != http.StatusFound {
			return fmt.Errorf("status %d, want 302", st.StatusCode)
		}
		location = st.Header.Get("Location")
		return nil
	})
	got, err := http.DefaultClient.Do(newRequest(t, http.MethodGet, p.URL()+location, p.AdminToken()))
	if err != nil {
		t.Fatal(err)
	}
	n, err := io.Copy(io.Discard, got.Body)
	got.Body.Close()
	if got.StatusCode != http.StatusOK || n != size || err != nil || got.Header.Get("Content-Type") != "application/octet-stream" {
		t.Fatalf("%s: status %d, %d bytes (%v), type %q; want 200 with %d bytes", location, got.StatusCode, n, err, got.Header.Get("Content-Type"), size)
	}
	// Without the credential: refused; another request id: not found.
	for _, tc := range []struct {
		path, token string
		want        int
	}{
		{location, "", http.StatusUnauthorized},
		{"/v2/nvcf/pexec/results/00000000-0000-0000-0000-000000000000", p.AdminToken(), http.StatusNotFound},
		{"/v2/nvcf/pexec/results/not..an-id", p.AdminToken(), http.StatusBadRequest},
	} {
		r, err := http.DefaultClient.Do(newRequest(t, http.MethodGet, p.URL()+tc.path, tc.token))
		if err != nil {
			t.Fatal(err)
		}
		r.Body.Close()
		if r.StatusCode != tc.want {
			t.Errorf("GET %s: %d, want %d", tc.path, r.StatusCode, tc.want)
		}
	}
}
