package bench

import (
	"context"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"time"
)

// DefaultNginx is where Debian's nginx package installs the binary.
const DefaultNginx = "/usr/sbin/nginx"

// errNoNginx says how to get the nginx baseline when it is missing.
var errNoNginx = errors.New("bench: nginx is not installed (no " + DefaultNginx + " and none on $PATH); install it (apt-get install nginx) to measure the nginx baseline")

// findNginx resolves the nginx executable: path when given, else
// DefaultNginx, else nginx on $PATH.
func findNginx(path string) (string, error) {
	if path != "" {
		p, err := exec.LookPath(path)
		if err != nil {
			return "", fmt.Errorf("bench: nginx %s: %w", path, err)
		}
		return p, nil
	}
	if p, err := exec.LookPath(DefaultNginx); err == nil {
		return p, nil
	}
	if p, err := exec.LookPath("nginx"); err == nil {
		return p, nil
	}
	return "", errNoNginx
}

// nginxConfig is what renderNginxConfig needs.
type nginxConfig struct {
	// Dir is nginx's prefix: its pid file and temp directories go there.
	Dir string
	// Listen and Upstream are host:port addresses.
	Listen   string
	Upstream string
	// Keepalive is how many idle upstream connections each worker keeps.
	Keepalive int
}

// renderNginxConfig writes the nginx baseline's configuration: one reverse
// proxy, in the foreground, logging errors to stderr and nothing else, with
// every path it may write under Dir so it needs no root and touches nothing
// of a system nginx. It is set up the way one would for streaming function
// calls: HTTP/1.1 upstream connections kept alive, and neither responses
// nor request bodies buffered (so server-sent events pass as written and a
// large body is never spooled to disk). The keepalive_requests limits are
// raised so a timed run never pays for a reconnect the other paths do not.
func renderNginxConfig(c nginxConfig) string {
	dir := func(name string) string { return nginxQuote(filepath.Join(c.Dir, name)) }
	var b strings.Builder
	fmt.Fprintf(&b, `# Written by gantry bench invoke: the nginx baseline, a reverse proxy
# in front of the echo at %[1]s.
daemon off;
master_process on;
worker_processes auto;
pid %[2]s;
error_log stderr warn;

events {
    worker_connections 4096;
}

http {
    access_log off;
    client_body_temp_path %[3]s;
    proxy_temp_path %[4]s;
    fastcgi_temp_path %[5]s;
    uwsgi_temp_path %[6]s;
    scgi_temp_path %[7]s;
    client_max_body_size 0;
    keepalive_requests 1000000;
    keepalive_timeout 75s;

    upstream echo {
        server %[1]s;
        keepalive %[8]d;
        keepalive_requests 1000000;
        keepalive_timeout 75s;
    }

    server {
        listen %[9]s;
        location / {
            proxy_pass http://echo;
            proxy_http_version 1.1;
            proxy_set_header Connection "";
            proxy_buffering off;
            proxy_request_buffering off;
            proxy_buffer_size 64k;
            proxy_buffers 4 64k;
            proxy_read_timeout 300s;
            proxy_send_timeout 300s;
        }
    }
}
`, c.Upstream, dir("nginx.pid"), dir("client_body"), dir("proxy"), dir("fastcgi"), dir("uwsgi"), dir("scgi"),
		max(c.Keepalive, 1), c.Listen)
	return b.String()
}

// nginxQuote quotes s for an nginx configuration file.
func nginxQuote(s string) string {
	return `"` + strings.NewReplacer(`\`, `\\`, `"`, `\"`).Replace(s) + `"`
}

// nginxProc is a running nginx baseline.
type nginxProc struct {
	*child
	addr   string
	dir    string
	stderr *cappedBuffer
}

// startNginx runs exe as a reverse proxy in front of upstream, with its
// configuration and files in a new temporary directory, and waits until a
// GET /health through it answers 200. On error it has cleaned up, and the
// error carries what nginx wrote to stderr.
func startNginx(ctx context.Context, exe, upstream string, keepalive int) (_ *nginxProc, err error) {
	addr, err := freeAddr()
	if err != nil {
		return nil, err
	}
	dir, err := os.MkdirTemp("", "gantry-bench-nginx-")
	if err != nil {
		return nil, fmt.Errorf("bench: %w", err)
	}
	n := &nginxProc{addr: addr, dir: dir, stderr: &cappedBuffer{max: 16 << 10}}
	defer func() {
		if err != nil {
			n.close()
		}
	}()
	// Started as root, nginx's workers run as nobody; they must be able to
	// reach the temp directories the master creates (and chowns) here.
	if err := os.Chmod(dir, 0o755); err != nil {
		return nil, fmt.Errorf("bench: %w", err)
	}
	conf := filepath.Join(dir, "nginx.conf")
	text := renderNginxConfig(nginxConfig{Dir: dir, Listen: addr, Upstream: upstream, Keepalive: keepalive})
	if err := os.WriteFile(conf, []byte(text), 0o644); err != nil {
		return nil, fmt.Errorf("bench: %w", err)
	}
	// -e stderr: nginx opens its compiled-in error log before it reads the
	// configuration; this keeps it off /var/log/nginx.
	cmd := exec.Command(exe, "-p", dir, "-c", conf, "-e", "stderr")
	cmd.Stdout, cmd.Stderr = n.stderr, n.stderr
	if n.child, err = startChild(cmd); err != nil {
		return nil, err
	}
	hctx, cancel := context.WithTimeout(ctx, 15*time.Second)
	defer cancel()
	if _, err := waitOK(hctx, n.child, "http://"+addr+"/health", 10*time.Millisecond); err != nil {
		return nil, fmt.Errorf("%w; nginx said: %s", err, n.output())
	}
	return n, nil
}

// URL is nginx's base URL.
func (n *nginxProc) URL() string { return "http://" + n.addr }

// output is what nginx wrote, on one line, or a placeholder.
func (n *nginxProc) output() string {
	if n.child != nil {
		select {
		case <-n.exited:
		case <-time.After(time.Second): // still running: what it wrote so far
		}
	}
	s := strings.Join(strings.Fields(n.stderr.String()), " ")
	if s == "" {
		return "(nothing)"
	}
	return s
}

// close stops nginx (SIGINT: a fast shutdown) and removes its directory.
func (n *nginxProc) close() {
	if n.child != nil {
		_, _ = n.child.stop()
	}
	_ = os.RemoveAll(n.dir)
}

// cappedBuffer keeps the first max bytes written to it and drops the rest,
// so a chatty subprocess cannot grow the benchmark's memory.
type cappedBuffer struct {
	mu  sync.Mutex
	b   []byte
	max int
}

func (c *cappedBuffer) Write(p []byte) (int, error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if room := c.max - len(c.b); room > 0 {
		c.b = append(c.b, p[:min(len(p), room)]...)
	}
	return len(p), nil
}

func (c *cappedBuffer) String() string {
	c.mu.Lock()
	defer c.mu.Unlock()
	return string(c.b)
}
