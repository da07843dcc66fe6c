package bench

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"net"
	"net/http"
	"os"
	"os/exec"
	"strconv"
	"strings"
	"time"
)

// stopGrace is how long a child gets after SIGINT before it is killed.
const stopGrace = 30 * time.Second

// freeAddr returns a loopback address with a port that was free a moment
// ago. Another process could take it before the caller binds it; on a
// benchmark machine that race is rare enough to report rather than retry.
func freeAddr() (string, error) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return "", fmt.Errorf("bench: find a free port: %w", err)
	}
	defer ln.Close()
	return ln.Addr().String(), nil
}

// child is a subprocess the benchmark started, with a channel that closes
// when it exits, so waits can fail fast on a crash instead of timing out.
type child struct {
	cmd    *exec.Cmd
	exited chan struct{}
	err    error // Wait's result, valid once exited is closed
}

// startChild starts cmd and watches for its exit.
func startChild(cmd *exec.Cmd) (*child, error) {
	if err := cmd.Start(); err != nil {
		return nil, fmt.Errorf("bench: start %s: %w", strings.Join(cmd.Args, " "), err)
	}
	c := &child{cmd: cmd, exited: make(chan struct{})}
	go func() {
		c.err = cmd.Wait()
		close(c.exited)
	}()
	return c, nil
}

// stop sends SIGINT, the signal gantry shuts down in order on, and kills
// the child if it has not exited within stopGrace. It returns how long the
// child took to exit.
func (c *child) stop() (time.Duration, error) {
	began := time.Now()
	select {
	case <-c.exited:
		return 0, fmt.Errorf("bench: %s had already exited: %v", c.cmd.Path, c.err)
	default:
	}
	_ = c.cmd.Process.Signal(os.Interrupt)
	select {
	case <-c.exited:
		return time.Since(began), nil
	case <-time.After(stopGrace):
		_ = c.cmd.Process.Kill()
		<-c.exited
		return time.Since(began), fmt.Errorf("bench: %s did not stop within %s of SIGINT; killed it", c.cmd.Path, stopGrace)
	}
}

// waitOK polls url with GET every interval until it answers 200, ctx ends
// or the child exits. It returns when the first 200 arrived.
func waitOK(ctx context.Context, c *child, url string, interval time.Duration) (time.Time, error) {
	hc := &http.Client{Timeout: time.Second, Transport: &http.Transport{DisableKeepAlives: true}}
	defer hc.CloseIdleConnections()
	t := time.NewTicker(interval)
	defer t.Stop()
	var last error
	for {
		resp, err := hc.Get(url)
		if err == nil {
			resp.Body.Close()
			if resp.StatusCode == http.StatusOK {
				return time.Now(), nil
			}
			err = fmt.Errorf("HTTP %d", resp.StatusCode)
		}
		last = err
		select {
		case <-ctx.Done():
			return time.Time{}, fmt.Errorf("bench: %s not ready (last try: %v): %w", url, last, ctx.Err())
		case <-c.exited:
			return time.Time{}, fmt.Errorf("bench: %s exited before %s answered: %v", c.cmd.Path, url, c.err)
		case <-t.C:
		}
	}
}

// readRSS returns a process's resident set size from /proc/<pid>/status
// (VmRSS), in bytes.
func readRSS(pid int) (int64, error) {
	f, err := os.Open(fmt.Sprintf("/proc/%d/status", pid))
	if err != nil {
		return 0, fmt.Errorf("bench: read RSS: %w", err)
	}
	defer f.Close()
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		rest, ok := strings.CutPrefix(sc.Text(), "VmRSS:")
		if !ok {
			continue
		}
		// The kernel writes "VmRSS:     123456 kB".
		kb, err := strconv.ParseInt(strings.TrimSpace(strings.TrimSuffix(strings.TrimSpace(rest), "kB")), 10, 64)
		if err != nil {
			return 0, fmt.Errorf("bench: parse VmRSS %q: %w", rest, err)
		}
		return kb << 10, nil
	}
	if err := sc.Err(); err != nil {
		return 0, fmt.Errorf("bench: read RSS: %w", err)
	}
	return 0, errors.New("bench: no VmRSS in /proc status (not Linux, or the process is a zombie)")
}
