package process

import (
	"bytes"
	"io"
	"strings"
	"sync"
	"unicode/utf8"
)

const (
	// tailBytes is how much of a stream's end is kept in memory: enough for a
	// stack trace's last lines, small enough to keep per instance.
	tailBytes = 2 << 10
	// tailLines and tailMaxReason bound what goes into a Status.Reason.
	tailLines     = 3
	tailMaxReason = 512
)

// tailWriter copies a process's output to its log file and keeps the last
// tailBytes in memory, so that a crash can be explained in Status.Reason
// without reading the log back. Errors writing the file are ignored: a full
// disk must not break the process's stdout or stderr pipe.
type tailWriter struct {
	file io.Writer

	mu        sync.Mutex
	buf       []byte
	truncated bool // bytes were dropped from the front of buf
}

var _ io.Writer = (*tailWriter)(nil)

func newTailWriter(file io.Writer) *tailWriter {
	return &tailWriter{file: file, buf: make([]byte, 0, tailBytes)}
}

func (w *tailWriter) Write(p []byte) (int, error) {
	if w.file != nil {
		_, _ = w.file.Write(p)
	}
	w.mu.Lock()
	defer w.mu.Unlock()
	if len(p) >= tailBytes {
		w.buf = append(w.buf[:0], p[len(p)-tailBytes:]...)
		w.truncated = true
		return len(p), nil
	}
	if over := len(w.buf) + len(p) - tailBytes; over > 0 {
		n := copy(w.buf, w.buf[over:])
		w.buf = w.buf[:n]
		w.truncated = true
	}
	w.buf = append(w.buf, p...)
	return len(p), nil
}

// lastLines returns up to tailLines of the last non-empty lines, joined with
// " | " and cut to tailMaxReason bytes from the end.
func (w *tailWriter) lastLines() string {
	w.mu.Lock()
	b := bytes.Clone(w.buf)
	truncated := w.truncated
	w.mu.Unlock()

	lines := strings.Split(string(b), "\n")
	if truncated && len(lines) > 1 {
		lines = lines[1:] // the first line was cut somewhere in its middle
	}
	var keep []string
	for i := len(lines) - 1; i >= 0 && len(keep) < tailLines; i-- {
		if l := strings.TrimSpace(lines[i]); l != "" {
			keep = append(keep, l)
		}
	}
	for i, j := 0, len(keep)-1; i < j; i, j = i+1, j-1 {
		keep[i], keep[j] = keep[j], keep[i]
	}
	s := strings.Join(keep, " | ")
	if len(s) > tailMaxReason {
		s = s[len(s)-tailMaxReason:]
		for len(s) > 0 && !utf8.RuneStart(s[0]) {
			s = s[1:]
		}
		s = "..." + s
	}
	return strings.ToValidUTF8(s, "\uFFFD")
}
