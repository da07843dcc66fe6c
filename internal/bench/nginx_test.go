package bench

import (
	"context"
	"net/http/httptest"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"github.com/gantry-dev/gantry/internal/example/echo"
)

func TestRenderNginxConfig(t *testing.T) {
	t.Parallel()
	conf := renderNginxConfig(nginxConfig{Dir: "/tmp/n", Listen: "127.0.0.1:8081", Upstream: "127.0.0.1:9000", Keepalive: 64})
	// Each directive the baseline depends on, and why.
	for _, want := range []string{
		"daemon off;",             // a subprocess the bench stops
		"error_log stderr warn;",  // nothing under /var/log
		`pid "/tmp/n/nginx.pid";`, // nothing under /run
		`client_body_temp_path "/tmp/n/client_body";`,
		`proxy_temp_path "/tmp/n/proxy";`,
		"access_log off;",        // no disk write per request
		"server 127.0.0.1:9000;", // the upstream
		"keepalive 64;",          // idle upstream connections kept
		"listen 127.0.0.1:8081;",
		"proxy_http_version 1.1;",         // keepalive needs HTTP/1.1 upstream
		`proxy_set_header Connection "";`, // and no "Connection: close"
		"proxy_buffering off;",            // events pass as written
		"proxy_request_buffering off;",    // bodies are not spooled first
		"keepalive_requests 1000000;",     // no reconnects in a timed run
	} {
		if !strings.Contains(conf, want) {
			t.Errorf("config lacks %q:\n%s", want, conf)
		}
	}
	if strings.Count(conf, "{") != strings.Count(conf, "}") {
		t.Errorf("unbalanced braces:\n%s", conf)
	}
	if c := renderNginxConfig(nginxConfig{Dir: "/tmp/n", Listen: "a:1", Upstream: "b:2"}); !strings.Contains(c, "keepalive 1;") {
		t.Errorf("keepalive 0 should become 1, the least nginx takes:\n%s", c)
	}
}

func TestNginxQuote(t *testing.T) {
	t.Parallel()
	for in, want := range map[string]string{
		"/tmp/a":      `"/tmp/a"`,
		`/tmp/a b"c`:  `"/tmp/a b\"c"`,
		`/tmp/back\s`: `"/tmp/back\\s"`,
	} {
		if got := nginxQuote(in); got != want {
			t.Errorf("nginxQuote(%q) = %s, want %s", in, got, want)
		}
	}
}

func TestFindNginx(t *testing.T) {
	t.Parallel()
	if _, err := findNginx(filepath.Join(t.TempDir(), "no-such-nginx")); err == nil {
		t.Error("found an nginx that does not exist")
	}
	if _, err := exec.LookPath(DefaultNginx); err == nil {
		if got, err := findNginx(""); err != nil || got != DefaultNginx {
			t.Errorf("findNginx() = %q, %v; want %s", got, err, DefaultNginx)
		}
	}
}

// nginxOrSkip returns the installed nginx, or skips the test.
func nginxOrSkip(t *testing.T) string {
	t.Helper()
	exe, err := findNginx("")
	if err != nil {
		t.Skip(err)
	}
	return exe
}

// TestNginxConfigAccepted has the installed nginx check the rendered
// configuration (nginx -t), so a directive it does not know fails here
// rather than as a skipped baseline.
func TestNginxConfigAccepted(t *testing.T) {
	t.Parallel()
	exe := nginxOrSkip(t)
	dir := t.TempDir()
	conf := filepath.Join(dir, "nginx.conf")
	if err := os.WriteFile(conf, []byte(renderNginxConfig(nginxConfig{Dir: dir, Listen: "127.0.0.1:1", Upstream: "127.0.0.1:2", Keepalive: 8})), 0o644); err != nil {
		t.Fatal(err)
	}
	if out, err := exec.Command(exe, "-t", "-p", dir, "-c", conf, "-e", "stderr").CombinedOutput(); err != nil {
		t.Fatalf("nginx -t: %v\n%s", err, out)
	}
}

// TestNginxBaseline starts the baseline in front of an echo and checks
// that it forwards plain calls, passes events as they are written and
// streams a response larger than any of its buffers.
func TestNginxBaseline(t *testing.T) {
	t.Parallel()
	exe := nginxOrSkip(t)
	srv := httptest.NewServer(echo.Handler())
	t.Cleanup(srv.Close)
	n, err := startNginx(context.Background(), exe, srv.Listener.Addr().String(), 4)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(n.close)
	checkPath(t, n.URL())
}
