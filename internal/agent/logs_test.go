package agent

import (
	"bytes"
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/nats-io/nats.go"

	"github.com/gantry-dev/gantry/internal/agent/runtime"
	"github.com/gantry-dev/gantry/internal/bus"
	"github.com/gantry-dev/gantry/internal/model"
	"github.com/gantry-dev/gantry/internal/testutil"
)

func TestLogsRingBounds(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name              string
		lines, ringLines  int
		ringBytes, length int
		wantKept          int
	}{
		{"by lines", 50, 10, 1 << 20, 5, 10},
		{"by bytes", 50, 1000, 100, 10, 10},
		{"under both", 5, 10, 1 << 20, 5, 5},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			l := NewLogs(LogsConfig{ClusterID: "c", RingLines: tc.ringLines, RingBytes: tc.ringBytes})
			w := l.Output(runtime.LogSource{InstanceID: "i", FunctionID: "f", FunctionVersionID: "v"}, runtime.StreamStdout)
			for i := range tc.lines {
				fmt.Fprintf(w, "%0*d\n", tc.length, i)
			}
			got := l.Recent("i", 1000)
			if len(got) != tc.wantKept {
				t.Fatalf("kept %d lines, want %d", len(got), tc.wantKept)
			}
			if last := got[len(got)-1]; last.Line != fmt.Sprintf("%0*d", tc.length, tc.lines-1) || last.Seq != uint64(tc.lines) {
				t.Errorf("last line %+v", last)
			}
		})
	}
}

func TestLogsSplitsLines(t *testing.T) {
	t.Parallel()
	l := NewLogs(LogsConfig{ClusterID: "c", Instances: 2})
	src := runtime.LogSource{InstanceID: "i", FunctionID: "f", FunctionVersionID: "v"}
	out, errw := l.Output(src, runtime.StreamStdout), l.Output(src, runtime.StreamStderr)
	io.WriteString(out, "hel")
	io.WriteString(errw, "oops\r\n")
	io.WriteString(out, "lo\nwor")
	io.WriteString(out, "ld\n"+strings.Repeat("x", maxLogLine+3)+"\n")
	var got []string
	for _, ln := range l.Recent("i", 10) {
		got = append(got, ln.Stream+":"+ln.Line[:min(len(ln.Line), 5)])
	}
	want := []string{"stderr:oops", "stdout:hello", "stdout:world", "stdout:xxxxx", "stdout:xxx"}
	if fmt.Sprint(got) != fmt.Sprint(want) {
		t.Errorf("lines %q, want %q", got, want)
	}
	// Instances beyond the bound go, the one written to longest ago first.
	for _, id := range []string{"j", "k"} {
		io.WriteString(l.Output(runtime.LogSource{InstanceID: id}, runtime.StreamStdout), "x\n")
	}
	if l.Recent("i", 10) != nil || l.Recent("k", 10) == nil {
		t.Errorf("eviction kept the wrong instances")
	}
}

// otlpReceiver is an OTLP/HTTP logs endpoint that records what it gets.
type otlpReceiver struct {
	mu      sync.Mutex
	auth    []string
	records []string
	attrs   map[string]string
}

func (o *otlpReceiver) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	if r.URL.Path != "/otlp/v1/logs" || r.Header.Get("Content-Type") != "application/json" {
		http.Error(w, "wrong path or type", http.StatusBadRequest)
		return
	}
	var req otlpExportLogs
	if err := json.NewDecoder(r.Body).Decode(&req); err != nil {
		http.Error(w, err.Error(), http.StatusBadRequest)
		return
	}
	o.mu.Lock()
	defer o.mu.Unlock()
	o.auth = append(o.auth, r.Header.Get("Authorization"))
	for _, rl := range req.ResourceLogs {
		o.attrs = map[string]string{}
		for _, kv := range rl.Resource.Attributes {
			o.attrs[kv.Key] = kv.Value.StringValue
		}
		for _, sl := range rl.ScopeLogs {
			for _, rec := range sl.LogRecords {
				o.records = append(o.records, rec.Body.StringValue)
			}
		}
	}
}

func (o *otlpReceiver) snapshot() ([]string, []string, map[string]string) {
	o.mu.Lock()
	defer o.mu.Unlock()
	return append([]string(nil), o.records...), append([]string(nil), o.auth...), o.attrs
}

// TestLogsOverNATSAndOTLP: recent lines are answered on the agent's
// request subject, new ones are published on the instance's subject, and
// lines reach the telemetry endpoint the control plane names, with the
// secret as the credential and never in the agent's log.
func TestLogsOverNATSAndOTLP(t *testing.T) {
	t.Parallel()
	ctx := testutil.Context(t)
	nc, err := nats.Connect(testutil.StartNATS(t))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(nc.Close)
	recv := &otlpReceiver{}
	srv := httptest.NewServer(recv)
	t.Cleanup(srv.Close)
	const secret = "otlp-s3cr3t-token"
	// The control plane's part: answer the telemetry request.
	_, err = nc.Subscribe(bus.SecretsSubject("c1"), func(m *nats.Msg) {
		var req model.InstanceSecretsRequest
		_ = json.Unmarshal(m.Data, &req)
		if !req.Telemetry || req.InstanceID != "i1" {
			_ = m.Respond([]byte(`{"error":"unexpected request"}`))
			return
		}
		b, _ := json.Marshal(model.InstanceTelemetry{Logs: &model.TelemetryTarget{TelemetryID: "t1",
			Endpoint: srv.URL + "/otlp", Protocol: model.TelemetryHTTP, Provider: "OTEL_COLLECTOR", Secret: json.RawMessage(`"` + secret + `"`)}})
		_ = m.Respond(b)
	})
	if err != nil {
		t.Fatal(err)
	}
	var agentLog bytes.Buffer
	var logMu sync.Mutex
	l := NewLogs(LogsConfig{ClusterID: "c1", Conn: nc, Flush: 10 * time.Millisecond, Export: 20 * time.Millisecond,
		Logger: slog.New(slog.NewTextHandler(&lockedWriter{w: &agentLog, mu: &logMu}, &slog.HandlerOptions{Level: slog.LevelDebug}))})
	if err := l.Start(ctx); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { l.Close() })
	follow, err := nc.SubscribeSync(bus.VersionLogsSubjects("f1", ""))
	if err != nil {
		t.Fatal(err)
	}
	w := l.Output(runtime.LogSource{InstanceID: "i1", FunctionID: "f1", FunctionVersionID: "v1", FunctionName: "echo", NCAID: "acct"}, runtime.StreamStdout)
	io.WriteString(w, "first line\nsecond line\n")

	msg, err := follow.NextMsg(5 * time.Second)
	if err != nil {
		t.Fatalf("no published lines: %v", err)
	}
	var batch model.LogBatch
	if err := json.Unmarshal(msg.Data, &batch); err != nil || len(batch.Lines) != 2 || msg.Subject != bus.LogsSubject("c1", "f1", "v1", "i1") {
		t.Fatalf("published %s on %s", msg.Data, msg.Subject)
	}

	req, _ := json.Marshal(model.LogsRequest{InstanceIDs: []string{"i1", "unknown"}, Tail: 1})
	ans, err := nc.Request(bus.LogsRequestSubject("c1"), req, 5*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	if err := json.Unmarshal(ans.Data, &batch); err != nil || len(batch.Lines) != 1 || batch.Lines[0].Line != "second line" {
		t.Fatalf("recent lines %s", ans.Data)
	}

	io.WriteString(w, "third line\n")
	testutil.WaitFor(t, 10*time.Second, func() error {
		got, _, _ := recv.snapshot()
		if len(got) < 3 {
			return fmt.Errorf("the receiver has %q", got)
		}
		return nil
	})
	got, auths, attrs := recv.snapshot()
	if fmt.Sprint(got) != fmt.Sprint([]string{"first line", "second line", "third line"}) {
		t.Errorf("receiver got %q", got)
	}
	for _, a := range auths {
		if a != "Bearer "+secret {
			t.Errorf("Authorization %q", a)
		}
	}
	for k, v := range map[string]string{"service.name": "echo", "nvcf.function.id": "f1", "nvcf.function.version.id": "v1",
		"nvcf.instance.id": "i1", "service.instance.id": "i1", "nvcf.nca.id": "acct", "gantry.cluster.id": "c1"} {
		if attrs[k] != v {
			t.Errorf("resource attribute %s = %q, want %q", k, attrs[k], v)
		}
	}
	logMu.Lock()
	defer logMu.Unlock()
	if strings.Contains(agentLog.String(), secret) {
		t.Errorf("the agent logged the telemetry secret:\n%s", agentLog.String())
	}
}

func TestTelemetryHeaders(t *testing.T) {
	t.Parallel()
	tests := []struct{ secret, header, want string }{
		{`"tok"`, "Authorization", "Bearer tok"},
		{`"Basic dXNlcjpwdw=="`, "Authorization", "Basic dXNlcjpwdw=="},
		{`{"username":"user","password":"pw"}`, "Authorization", "Basic dXNlcjpwdw=="},
		{`{"apiKey":"k"}`, "Authorization", "Bearer k"},
		{`{"DD-API-KEY":"k"}`, "DD-API-KEY", "k"},
	}
	for _, tc := range tests {
		if got := telemetryHeaders(json.RawMessage(tc.secret))[tc.header]; got != tc.want {
			t.Errorf("%s: %s = %q, want %q", tc.secret, tc.header, got, tc.want)
		}
	}
	if got := otlpLogsURL("https://h:4318"); got != "https://h:4318/v1/logs" {
		t.Errorf("logs URL %s", got)
	}
	if got := otlpLogsURL("https://h/otlp/v1/logs?x=1"); got != "https://h/otlp/v1/logs?x=1" {
		t.Errorf("logs URL %s", got)
	}
}

type lockedWriter struct {
	w  io.Writer
	mu *sync.Mutex
}

func (l *lockedWriter) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.w.Write(p)
}
