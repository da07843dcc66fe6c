package invoke

import (
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"strings"
)

// copyBody copies an answer to its caller as it comes, a read at a time,
// flushing whenever flushNow says nothing more is at hand (nil: after every
// read), so that what the function wrote reaches the caller when written
// and a fast body is not flushed in pieces. It reports gone when the caller
// could not be written to, and the body's error other than its end.
func copyBody(w http.ResponseWriter, rc *http.ResponseController, body io.Reader, buf []byte, flushNow func() bool) (gone bool, err error) {
	for {
		n, err := body.Read(buf)
		if n > 0 {
			if _, werr := w.Write(buf[:n]); werr != nil {
				return true, nil
			}
			if flushNow == nil || flushNow() {
				_ = rc.Flush()
			}
		}
		if err == io.EOF {
			return false, nil
		}
		if err != nil {
			return false, err
		}
	}
}

// breakOff ends an answer that broke off mid-stream: a server-sent event
// stream with an error event saying why, any other body cut short, so that
// the caller sees the connection close before the end rather than what
// looks like a complete answer.
func breakOff(w http.ResponseWriter, rc *http.ResponseController, reason string) {
	if strings.HasPrefix(w.Header().Get("Content-Type"), "text/event-stream") {
		b, _ := json.Marshal(map[string]string{"error": reason})
		_, _ = fmt.Fprintf(w, "event: error\ndata: %s\n\n", b)
		_ = rc.Flush()
		return
	}
	panic(http.ErrAbortHandler)
}
