// Package echo is Gantry's built-in example function: a small HTTP server that
// answers every request with a description of that request. It exists so that
// a fresh install, the end-to-end tests and the latency benchmarks all have a
// function to deploy without building a container image; headers let a caller
// make it slow (Echo-Delay) or fail (Echo-Status) on demand.
package echo

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"strconv"
	"sync/atomic"
	"time"
)

// Request headers that change how the echo function answers.
const (
	// HeaderDelay holds a Go duration (e.g. "2s") to wait before answering
	// (also before an Echo-Bytes answer), so tests can build a slow function
	// without a second binary.
	HeaderDelay = "Echo-Delay"
	// HeaderStatus holds the HTTP status code to answer with, so tests can
	// make the function fail without a second binary.
	HeaderStatus = "Echo-Status"
	// HeaderInflight is set on every echo response to the number of echo
	// requests being handled when this one arrived, this one included, so a
	// load test can read off the peak concurrency the function saw.
	HeaderInflight = "Echo-Inflight"
	// HeaderEvents makes the answer a text/event-stream of this many events
	// ("data: <n>"), each flushed as written, so tests and benchmarks can
	// watch a streamed response arrive the way an LLM's tokens do.
	HeaderEvents = "Echo-Events"
	// HeaderInterval is a Go duration to wait before each event after the
	// first (default 0).
	HeaderInterval = "Echo-Interval"
	// HeaderBytes makes the answer an application/octet-stream of exactly
	// this many bytes, written in 64 KiB pieces without being held in memory.
	HeaderBytes = "Echo-Bytes"
	// HeaderDiscard makes the function read the request body to its end
	// without keeping it, whatever its size, and answer its length as
	// {"bytes": n}.
	HeaderDiscard = "Echo-Discard"
)

// MaxBodyBytes caps the request body the function reads, so a runaway client
// cannot make it buffer without bound; larger bodies get 413.
const MaxBodyBytes = 10 << 20

// DefaultAddr is where Run listens when neither an address nor $PORT is given,
// matching the port NVCF containers conventionally serve on.
const DefaultAddr = "127.0.0.1:8000"

// Response is the JSON body of an echo answer. It is exported so that tests
// and benchmarks in other packages decode the same shape the function writes.
type Response struct {
	Method string `json:"method"`
	Path   string `json:"path"`
	// Query is the parsed query string; values that fail to parse are dropped.
	Query   map[string][]string `json:"query"`
	Headers map[string][]string `json:"headers"`
	// Body is the request body as a string, even when it is itself JSON: one
	// shape for every body keeps clients simple. Bytes that are not valid
	// UTF-8 come back as U+FFFD.
	Body string `json:"body"`
	// Inflight is the number of echo requests being handled when this one
	// arrived, this one included. Health checks are not counted.
	Inflight int64 `json:"inflight"`
}

// healthBody is the fixed answer to GET /health, encoded once.
var healthBody = []byte(`{"status":"ok"}` + "\n")

// handler counts requests in flight; one per Handler call so that two servers
// in one process (as in tests) do not share a count.
type handler struct {
	inflight atomic.Int64
}

var _ http.Handler = (*handler)(nil)

// Handler returns the echo function's HTTP handler. Each call returns a handler
// with its own in-flight counter.
func Handler() http.Handler { return &handler{} }

// ServeHTTP answers GET /health directly and echoes everything else.
func (h *handler) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	if r.URL.Path == "/health" && (r.Method == http.MethodGet || r.Method == http.MethodHead) {
		w.Header().Set("Content-Type", "application/json")
		w.Header().Set("Content-Length", strconv.Itoa(len(healthBody)))
		w.WriteHeader(http.StatusOK)
		if r.Method == http.MethodGet {
			_, _ = w.Write(healthBody)
		}
		return
	}

	// The count only rises when a request enters, so whenever concurrency
	// reaches its peak P it is the entry of some request that raised it to P,
	// and that request reads P here. No request can read more than the number
	// running at its entry. Hence the maximum of Echo-Inflight over all
	// responses is exactly the peak concurrency, with no sampling needed.
	n := h.inflight.Add(1)
	defer h.inflight.Add(-1)

	status := http.StatusOK
	if v := r.Header.Get(HeaderStatus); v != "" {
		code, err := strconv.Atoi(v)
		if err != nil || code < 200 || code > 599 {
			writeError(w, http.StatusBadRequest, fmt.Sprintf("echo: %s must be an HTTP status code from 200 to 599, got %q", HeaderStatus, v))
			return
		}
		status = code
	}
	var delay time.Duration
	if v := r.Header.Get(HeaderDelay); v != "" {
		d, err := time.ParseDuration(v)
		if err != nil || d < 0 {
			writeError(w, http.StatusBadRequest, fmt.Sprintf("echo: %s must be a non-negative Go duration such as 250ms, got %q", HeaderDelay, v))
			return
		}
		delay = d
	}

	switch {
	case r.Header.Get(HeaderEvents) != "":
		h.events(w, r)
		return
	case r.Header.Get(HeaderBytes) != "":
		if wait(r, delay) {
			h.bytes(w, r)
		}
		return
	case r.Header.Get(HeaderDiscard) != "":
		n, err := io.Copy(io.Discard, r.Body)
		if err != nil {
			writeError(w, http.StatusBadRequest, "echo: read request body: "+err.Error())
			return
		}
		w.Header().Set("Content-Type", "application/json")
		_, _ = fmt.Fprintf(w, "{\"bytes\":%d}\n", n)
		return
	}

	body, err := io.ReadAll(http.MaxBytesReader(w, r.Body, MaxBodyBytes))
	if err != nil {
		var tooBig *http.MaxBytesError
		if errors.As(err, &tooBig) {
			writeError(w, http.StatusRequestEntityTooLarge, fmt.Sprintf("echo: request body larger than %d bytes", MaxBodyBytes))
			return
		}
		writeError(w, http.StatusBadRequest, "echo: read request body: "+err.Error())
		return
	}

	if !wait(r, delay) {
		return // the client is gone; nobody is left to answer
	}

	out, err := json.Marshal(Response{
		Method:   r.Method,
		Path:     r.URL.Path,
		Query:    r.URL.Query(),
		Headers:  r.Header,
		Body:     string(body),
		Inflight: n,
	})
	if err != nil {
		writeError(w, http.StatusInternalServerError, "echo: encode response: "+err.Error())
		return
	}
	out = append(out, '\n')
	hdr := w.Header()
	hdr.Set("Content-Type", "application/json")
	hdr.Set("Content-Length", strconv.Itoa(len(out)))
	hdr.Set(HeaderInflight, strconv.FormatInt(n, 10))
	w.WriteHeader(status)
	_, _ = w.Write(out)
}

// events streams Echo-Events server-sent events, Echo-Interval apart, and
// stops early when the caller goes away.
func (h *handler) events(w http.ResponseWriter, r *http.Request) {
	n, err := strconv.Atoi(r.Header.Get(HeaderEvents))
	if err != nil || n < 0 {
		writeError(w, http.StatusBadRequest, fmt.Sprintf("echo: %s must be a non-negative count, got %q", HeaderEvents, r.Header.Get(HeaderEvents)))
		return
	}
	var every time.Duration
	if v := r.Header.Get(HeaderInterval); v != "" {
		if every, err = time.ParseDuration(v); err != nil || every < 0 {
			writeError(w, http.StatusBadRequest, fmt.Sprintf("echo: %s must be a non-negative Go duration such as 400ms, got %q", HeaderInterval, v))
			return
		}
	}
	_, _ = io.Copy(io.Discard, r.Body)
	w.Header().Set("Content-Type", "text/event-stream")
	w.Header().Set("Cache-Control", "no-cache")
	w.WriteHeader(http.StatusOK)
	rc := http.NewResponseController(w)
	_ = rc.Flush()
	t := time.NewTimer(0)
	defer t.Stop()
	for i := 1; i <= n; i++ {
		if i > 1 {
			t.Reset(every)
			select {
			case <-t.C:
			case <-r.Context().Done():
				return
			}
		}
		if _, err := fmt.Fprintf(w, "id: %d\ndata: %d\n\n", i, i); err != nil {
			return
		}
		if err := rc.Flush(); err != nil {
			return
		}
	}
}

// chunk is what bytes writes, shared by every request and never modified.
var chunk = func() []byte {
	b := make([]byte, 64<<10)
	for i := range b {
		b[i] = byte('a' + i%26)
	}
	return b
}()

// bytes streams Echo-Bytes bytes of filler.
func (h *handler) bytes(w http.ResponseWriter, r *http.Request) {
	n, err := strconv.ParseInt(r.Header.Get(HeaderBytes), 10, 64)
	if err != nil || n < 0 {
		writeError(w, http.StatusBadRequest, fmt.Sprintf("echo: %s must be a non-negative byte count, got %q", HeaderBytes, r.Header.Get(HeaderBytes)))
		return
	}
	_, _ = io.Copy(io.Discard, r.Body)
	w.Header().Set("Content-Type", "application/octet-stream")
	w.Header().Set("Content-Length", strconv.FormatInt(n, 10))
	w.WriteHeader(http.StatusOK)
	for n > 0 {
		p := chunk[:min(int64(len(chunk)), n)]
		if _, err := w.Write(p); err != nil {
			return
		}
		n -= int64(len(p))
	}
}

// writeError answers with a small JSON error so that a misused header is
// easy to tell apart from a status the caller asked for.
func writeError(w http.ResponseWriter, status int, msg string) {
	b, _ := json.Marshal(map[string]string{"error": msg})
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(status)
	_, _ = w.Write(append(b, '\n'))
}

// Run serves the echo function on addr until ctx is done, then shuts down
// gracefully. An empty addr means ":"+$PORT, the port the process runtime
// assigns, or DefaultAddr when PORT is unset too. It returns nil after a
// shutdown caused by ctx, and the listen or serve error otherwise.
func Run(ctx context.Context, addr string) error {
	if addr == "" {
		if port := os.Getenv("PORT"); port != "" {
			addr = ":" + port
		} else {
			addr = DefaultAddr
		}
	}
	ln, err := net.Listen("tcp", addr)
	if err != nil {
		return fmt.Errorf("echo: listen on %s: %w", addr, err)
	}
	srv := &http.Server{
		Handler:           Handler(),
		ReadHeaderTimeout: 10 * time.Second,
	}
	errc := make(chan error, 1)
	go func() { errc <- srv.Serve(ln) }()

	select {
	case err := <-errc:
		return fmt.Errorf("echo: serve: %w", err)
	case <-ctx.Done():
	}
	shutdownCtx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	if err := srv.Shutdown(shutdownCtx); err != nil {
		_ = srv.Close()
	}
	if err := <-errc; err != nil && !errors.Is(err, http.ErrServerClosed) {
		return fmt.Errorf("echo: serve: %w", err)
	}
	return nil
}

// wait waits d, or reports false when the request ends first.
func wait(r *http.Request, d time.Duration) bool {
	if d <= 0 {
		return true
	}
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-t.C:
		return true
	case <-r.Context().Done():
		return false
	}
}
