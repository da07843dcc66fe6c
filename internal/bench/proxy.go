package bench

import (
	"errors"
	"fmt"
	"io"
	"log"
	"log/slog"
	"net"
	"net/http"
	"net/http/httputil"
	"net/url"
	"time"
)

// reverseProxy is the httputil baseline: Go's httputil.ReverseProxy in front
// of one upstream, on a loopback listener in this process. It is what "an
// HTTP hop that only forwards" costs in Go, with the standard library's
// defaults except for a connection pool as large as the load's, so it never
// dials during a timed run, and full duplex turned on (see fullDuplex).
// Server-sent events are flushed as they come (ReverseProxy does so for
// text/event-stream by itself).
type reverseProxy struct {
	addr string
	srv  *http.Server
	tr   *http.Transport
	done chan error
}

// startProxy listens on a free loopback port and forwards every request to
// upstream (a base URL such as http://127.0.0.1:8000).
func startProxy(upstream string, maxConcurrency int, logger *slog.Logger) (*reverseProxy, error) {
	u, err := url.Parse(upstream)
	if err != nil {
		return nil, fmt.Errorf("bench: proxy upstream: %w", err)
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return nil, fmt.Errorf("bench: proxy listen: %w", err)
	}
	tr := &http.Transport{
		Proxy:               nil,
		DialContext:         (&net.Dialer{Timeout: 5 * time.Second, KeepAlive: 30 * time.Second}).DialContext,
		MaxIdleConns:        4 * maxConcurrency,
		MaxIdleConnsPerHost: 2 * maxConcurrency,
		IdleConnTimeout:     90 * time.Second,
		DisableCompression:  true,
	}
	errLog := log.New(io.Discard, "", 0)
	if logger != nil {
		errLog = slog.NewLogLogger(logger.Handler(), slog.LevelWarn)
	}
	rp := &httputil.ReverseProxy{
		Rewrite:   func(pr *httputil.ProxyRequest) { pr.SetURL(u) },
		Transport: tr,
		ErrorLog:  errLog,
	}
	p := &reverseProxy{
		addr: ln.Addr().String(),
		srv:  &http.Server{Handler: fullDuplex(rp), ReadHeaderTimeout: 10 * time.Second, ErrorLog: errLog},
		tr:   tr,
		done: make(chan error, 1),
	}
	go func() { p.done <- p.srv.Serve(ln) }()
	return p, nil
}

// startH2CProxy is startProxy for gRPC: the same httputil.ReverseProxy,
// serving HTTP/2 without TLS (h2c) and calling upstream the same way, and
// flushing every write, as a gRPC stream needs.
func startH2CProxy(upstream string, logger *slog.Logger) (*reverseProxy, error) {
	u, err := url.Parse(upstream)
	if err != nil {
		return nil, fmt.Errorf("bench: proxy upstream: %w", err)
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return nil, fmt.Errorf("bench: proxy listen: %w", err)
	}
	var h2c http.Protocols
	h2c.SetUnencryptedHTTP2(true)
	tr := &http.Transport{Protocols: &h2c, DisableCompression: true,
		DialContext: (&net.Dialer{Timeout: 5 * time.Second, KeepAlive: 30 * time.Second}).DialContext}
	errLog := log.New(io.Discard, "", 0)
	if logger != nil {
		errLog = slog.NewLogLogger(logger.Handler(), slog.LevelWarn)
	}
	rp := &httputil.ReverseProxy{
		Rewrite:       func(pr *httputil.ProxyRequest) { pr.SetURL(u) },
		Transport:     tr,
		FlushInterval: -1,
		ErrorLog:      errLog,
	}
	p := &reverseProxy{
		addr: ln.Addr().String(),
		srv:  &http.Server{Handler: rp, Protocols: &h2c, ReadHeaderTimeout: 10 * time.Second, ErrorLog: errLog},
		tr:   tr,
		done: make(chan error, 1),
	}
	go func() { p.done <- p.srv.Serve(ln) }()
	return p, nil
}

// fullDuplex lets next read the request body after it has begun the
// response, as any proxy must. Without it, net/http's HTTP/1 server drains
// and closes the body when the response headers go out; the proxy's
// transport, which reads the body once more after its declared length to
// find its end, then fails the request write and closes the upstream
// connection under the response it is still copying (golang/go#40747). In
// this benchmark that cut about one 1 GiB response in five after a few
// hundred KiB, with "ReverseProxy read error during body copy: use of
// closed network connection".
func fullDuplex(next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		_ = http.NewResponseController(w).EnableFullDuplex()
		next.ServeHTTP(w, r)
	})
}

// URL is the proxy's base URL.
func (p *reverseProxy) URL() string { return "http://" + p.addr }

// close stops serving, cutting any call in flight, then drops the pooled
// upstream connections.
func (p *reverseProxy) close() error {
	err := p.srv.Close()
	if serveErr := <-p.done; !errors.Is(serveErr, http.ErrServerClosed) {
		err = errors.Join(err, serveErr)
	}
	p.tr.CloseIdleConnections()
	return err
}
