package e2e

import (
	"bufio"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"os"
	"strconv"
	"strings"
	"testing"
	"time"
)

// The "stream" helper mode is a function that tells the test what it did,
// by appending lines to the file named in $STREAM_LOG:
//
//	sent <i> <unix ns>   it wrote and flushed server-sent event i
//	closed <unix ns>     the caller's connection closed before the end
//	done <unix ns>       it wrote every event
//	call <id> <instance> instance <instance> ran the call with Call-Id <id>
//
// A request with Stream-Events n streams n events Stream-Interval apart
// (Stream-Exit-After k: the process dies after event k); one with Call-Id
// answers the id after Call-Delay; any other call to /generate answers
// {"path": ..., "body": ...} in JSON, as the echo helper does.
const streamLogEnv = "STREAM_LOG"

func serveStream() {
	logf := func(format string, args ...any) {
		f, err := os.OpenFile(os.Getenv(streamLogEnv), os.O_APPEND|os.O_CREATE|os.O_WRONLY, 0o600)
		if err != nil {
			fmt.Fprintln(os.Stderr, err)
			os.Exit(1)
		}
		defer f.Close()
		fmt.Fprintf(f, format+"\n", args...) // one write: appends do not interleave
	}
	mux := http.NewServeMux()
	mux.HandleFunc("/health", func(w http.ResponseWriter, r *http.Request) {})
	mux.HandleFunc("/", func(w http.ResponseWriter, r *http.Request) {
		if id := r.Header.Get("Call-Id"); id != "" {
			logf("call %s %s", id, os.Getenv("NVCF_INSTANCE_ID"))
			delay, _ := time.ParseDuration(r.Header.Get("Call-Delay"))
			select {
			case <-time.After(delay):
			case <-r.Context().Done():
			}
			fmt.Fprint(w, id)
			return
		}
		if r.URL.Path == "/generate" && r.Header.Get("Stream-Events") == "" {
			body, _ := io.ReadAll(r.Body)
			w.Header().Set("Content-Type", "application/json")
			_ = json.NewEncoder(w).Encode(map[string]string{"path": r.URL.Path, "body": string(body)})
			return
		}
		n, _ := strconv.Atoi(r.Header.Get("Stream-Events"))
		every, _ := time.ParseDuration(r.Header.Get("Stream-Interval"))
		exitAfter, _ := strconv.Atoi(r.Header.Get("Stream-Exit-After"))
		w.Header().Set("Content-Type", "text/event-stream")
		rc := http.NewResponseController(w)
		for i := range n {
			if i > 0 {
				select {
				case <-time.After(every):
				case <-r.Context().Done():
					logf("closed %d", time.Now().UnixNano())
					return
				}
			}
			fmt.Fprintf(w, "data: %d\n\n", i)
			if err := rc.Flush(); err != nil {
				logf("closed %d", time.Now().UnixNano())
				return
			}
			logf("sent %d %d", i, time.Now().UnixNano())
			if exitAfter > 0 && i+1 == exitAfter {
				os.Exit(1)
			}
		}
		logf("done %d", time.Now().UnixNano())
	})
	if err := http.ListenAndServe("127.0.0.1:"+os.Getenv("PORT"), mux); err != nil {
		os.Exit(1)
	}
}

// streamLog is what a "stream" function wrote to its log.
type streamLog struct {
	sent   map[int]time.Time
	closed time.Time
	done   bool
	calls  map[string]int
	ranOn  map[string][]string // call id -> instances that ran it
}

func readStreamLog(t testing.TB, path string) streamLog {
	t.Helper()
	l := streamLog{sent: map[int]time.Time{}, calls: map[string]int{}, ranOn: map[string][]string{}}
	f, err := os.Open(path)
	if os.IsNotExist(err) {
		return l
	}
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		fields := strings.Fields(sc.Text())
		at := func(s string) time.Time {
			ns, err := strconv.ParseInt(s, 10, 64)
			if err != nil {
				t.Fatalf("stream log line %q: %v", sc.Text(), err)
			}
			return time.Unix(0, ns)
		}
		switch {
		case len(fields) == 3 && fields[0] == "sent":
			i, _ := strconv.Atoi(fields[1])
			l.sent[i] = at(fields[2])
		case len(fields) == 2 && fields[0] == "closed":
			l.closed = at(fields[1])
		case len(fields) == 2 && fields[0] == "done":
			l.done = true
		case len(fields) == 3 && fields[0] == "call":
			l.calls[fields[1]]++
			l.ranOn[fields[1]] = append(l.ranOn[fields[1]], fields[2])
		default:
			t.Fatalf("stream log line %q", sc.Text())
		}
	}
	return l
}
