package agent

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"sync"
	"time"

	"github.com/nats-io/nats.go"

	"github.com/gantry-dev/gantry/internal/agent/runtime"
	"github.com/gantry-dev/gantry/internal/bus"
	"github.com/gantry-dev/gantry/internal/model"
)

// Defaults of LogsConfig.
const (
	DefaultLogRingLines    = 1000
	DefaultLogRingBytes    = 256 << 10
	DefaultLogInstances    = 256
	DefaultLogFlush        = 100 * time.Millisecond
	DefaultLogExport       = time.Second
	maxLogLine             = 16 << 10 // longer lines are cut into pieces
	maxLogPending          = 4096     // lines waiting to be published, per instance
	maxLogExportQueue      = 4096     // lines waiting for the telemetry endpoint, per instance
	maxLogExportBatch      = 512
	telemetryRetry         = 30 * time.Second
	telemetryRequestWait   = 10 * time.Second
	telemetryExportTimeout = 10 * time.Second
	// MaxLogTail bounds how many recent lines of an instance one request
	// returns.
	MaxLogTail = DefaultLogRingLines
)

// LogsConfig configures Logs. Zero values take the defaults above.
type LogsConfig struct {
	ClusterID string
	// Conn is the agent's connection: the telemetry request must come
	// from its inbox (bus.FromAgent).
	Conn *nats.Conn
	// RingLines and RingBytes bound the recent lines kept per instance;
	// Instances bounds how many instances are kept (the one written to
	// longest ago goes first). Memory is at most about
	// Instances x (RingBytes + the pending and export queues).
	RingLines, RingBytes, Instances int
	// Flush is how often new lines are published; Export how often they
	// are sent to a telemetry endpoint.
	Flush, Export time.Duration
	// HTTPClient sends OTLP requests; nil uses one with a 10 s timeout.
	HTTPClient *http.Client
	Logger     *slog.Logger
}

// Logs is the agent's view of its instances' output. A runtime copies
// each instance's stdout and stderr into Output; Logs cuts it into lines,
// keeps the last RingLines of each instance in memory, publishes new
// lines on the instance's bus.LogsSubject for followers, answers the
// control plane's requests for recent lines, and ships lines to the
// function's logs telemetry (OTLP/HTTP, JSON) with the telemetry's
// secret as the request's credential. Neither the secret nor an
// instance's environment is ever logged.
//
// Lifecycle: NewLogs -> Start (after the connection is up, before the
// agent starts instances) -> Close (after the agent closed, so the last
// lines of stopped instances are flushed).
type Logs struct {
	cfg  LogsConfig
	log  *slog.Logger
	http *http.Client

	mu     sync.Mutex
	insts  map[string]*instanceLog
	writes uint64     // counts writes, to tell which instance wrote last
	conn   *nats.Conn // set by Start; nil before: lines are kept, not sent

	wake   chan struct{}
	sub    *nats.Subscription
	cancel context.CancelFunc
	done   chan struct{}
}

// instanceLog is one instance's lines. Guarded by Logs.mu.
type instanceLog struct {
	src       runtime.LogSource
	ring      []model.LogLine // oldest first
	ringBytes int
	seq       uint64
	partial   map[string][]byte // per stream: bytes after the last newline
	lastWrite uint64            // Logs.writes at its last write

	pending []model.LogLine // to publish

	// Telemetry: asked for once the instance first writes, again after
	// telemetryRetry when the control plane could not answer.
	teleAsked   time.Time
	teleKnown   bool
	target      *model.TelemetryTarget
	export      []model.LogLine
	dropped     int  // export lines dropped since the last send
	exportFails bool // the last send failed (logged once per change)
}

// NewLogs builds the agent's log component; Start runs it.
func NewLogs(cfg LogsConfig) *Logs {
	if cfg.RingLines <= 0 {
		cfg.RingLines = DefaultLogRingLines
	}
	if cfg.RingBytes <= 0 {
		cfg.RingBytes = DefaultLogRingBytes
	}
	if cfg.Instances <= 0 {
		cfg.Instances = DefaultLogInstances
	}
	if cfg.Flush <= 0 {
		cfg.Flush = DefaultLogFlush
	}
	if cfg.Export <= 0 {
		cfg.Export = DefaultLogExport
	}
	log := cfg.Logger
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	hc := cfg.HTTPClient
	if hc == nil {
		hc = &http.Client{Timeout: telemetryExportTimeout}
	}
	return &Logs{cfg: cfg, log: log.With("component", "logs"), http: hc, insts: map[string]*instanceLog{},
		wake: make(chan struct{}, 1), done: make(chan struct{})}
}

// Start answers the control plane's requests for recent lines and begins
// publishing and exporting.
func (l *Logs) Start(ctx context.Context) error {
	if l.cfg.Conn == nil {
		return errors.New("agent: logs need a NATS connection")
	}
	sub, err := l.cfg.Conn.Subscribe(bus.LogsRequestSubject(l.cfg.ClusterID), l.onRequest)
	if err != nil {
		return fmt.Errorf("agent: logs: %w", err)
	}
	ctx, cancel := context.WithCancel(context.WithoutCancel(ctx))
	l.mu.Lock()
	l.conn, l.sub, l.cancel = l.cfg.Conn, sub, cancel
	l.mu.Unlock()
	go l.run(ctx)
	return nil
}

// Close stops answering, publishes and exports what is pending once more,
// and stops. Safe to call more than once, and without Start.
func (l *Logs) Close() error {
	l.mu.Lock()
	sub, cancel := l.sub, l.cancel
	l.sub, l.cancel = nil, nil
	l.mu.Unlock()
	if cancel == nil {
		return nil
	}
	_ = sub.Unsubscribe()
	cancel()
	<-l.done
	return nil
}

// Output is a runtime.LogOutput: the writer for one stream of one
// instance's output.
func (l *Logs) Output(src runtime.LogSource, stream string) io.Writer {
	return &logWriter{l: l, src: src, stream: stream}
}

var _ runtime.LogOutput = (*Logs)(nil).Output

type logWriter struct {
	l      *Logs
	src    runtime.LogSource
	stream string
}

func (w *logWriter) Write(p []byte) (int, error) {
	w.l.write(w.src, w.stream, p)
	return len(p), nil
}

func (l *Logs) write(src runtime.LogSource, stream string, p []byte) {
	now := time.Now().UTC()
	l.mu.Lock()
	l.writes++
	in := l.insts[src.InstanceID]
	if in == nil {
		in = &instanceLog{src: src, partial: map[string][]byte{}, lastWrite: l.writes}
		l.insts[src.InstanceID] = in
		l.evictLocked()
	}
	in.src, in.lastWrite = src, l.writes
	buf := append(in.partial[stream], p...)
	for {
		i := bytes.IndexByte(buf, '\n')
		if i < 0 {
			break
		}
		line := bytes.TrimSuffix(buf[:i], []byte("\r"))
		for len(line) > maxLogLine {
			l.addLocked(in, stream, now, line[:maxLogLine])
			line = line[maxLogLine:]
		}
		l.addLocked(in, stream, now, line)
		buf = buf[i+1:]
	}
	for len(buf) >= maxLogLine {
		l.addLocked(in, stream, now, buf[:maxLogLine])
		buf = buf[maxLogLine:]
	}
	in.partial[stream] = append([]byte(nil), buf...)
	l.mu.Unlock()
	select {
	case l.wake <- struct{}{}:
	default:
	}
}

func (l *Logs) addLocked(in *instanceLog, stream string, now time.Time, b []byte) {
	in.seq++
	line := model.LogLine{Time: now, InstanceID: in.src.InstanceID, FunctionID: in.src.FunctionID,
		FunctionVersionID: in.src.FunctionVersionID, Stream: stream, Seq: in.seq, Line: string(bytes.ToValidUTF8(b, []byte("\uFFFD")))}
	in.ring = append(in.ring, line)
	in.ringBytes += len(line.Line)
	for len(in.ring) > l.cfg.RingLines || (in.ringBytes > l.cfg.RingBytes && len(in.ring) > 1) {
		in.ringBytes -= len(in.ring[0].Line)
		in.ring[0] = model.LogLine{}
		in.ring = in.ring[1:]
	}
	if len(in.ring) < cap(in.ring)/4 && cap(in.ring) > 64 {
		in.ring = append([]model.LogLine(nil), in.ring...)
	}
	in.pending = appendBounded(in.pending, line, maxLogPending, nil)
	if !in.teleKnown || in.target != nil {
		in.export = appendBounded(in.export, line, maxLogExportQueue, &in.dropped)
	}
}

// appendBounded appends v, dropping the oldest element beyond limit.
func appendBounded(s []model.LogLine, v model.LogLine, limit int, dropped *int) []model.LogLine {
	if len(s) >= limit {
		s = append(s[:0], s[len(s)-limit+1:]...)
		if dropped != nil {
			*dropped++
		}
	}
	return append(s, v)
}

// evictLocked forgets the instances written to longest ago beyond the
// limit (stopped instances, in practice).
func (l *Logs) evictLocked() {
	for len(l.insts) > l.cfg.Instances {
		var oldest string
		var at uint64
		for id, in := range l.insts {
			if oldest == "" || in.lastWrite < at {
				oldest, at = id, in.lastWrite
			}
		}
		delete(l.insts, oldest)
	}
}

// Recent returns up to tail of an instance's last lines, oldest first.
func (l *Logs) Recent(instanceID string, tail int) []model.LogLine {
	l.mu.Lock()
	defer l.mu.Unlock()
	in := l.insts[instanceID]
	if in == nil {
		return nil
	}
	n := min(max(tail, 0), len(in.ring))
	return append([]model.LogLine(nil), in.ring[len(in.ring)-n:]...)
}

func (l *Logs) onRequest(msg *nats.Msg) {
	if msg.Reply == "" {
		return
	}
	var req model.LogsRequest
	var out model.LogBatch
	if err := json.Unmarshal(msg.Data, &req); err != nil {
		out.Error = "undecodable logs request"
	} else {
		tail := min(max(req.Tail, 0), MaxLogTail)
		for _, id := range req.InstanceIDs {
			out.Lines = append(out.Lines, l.Recent(id, tail)...)
		}
	}
	b, _ := json.Marshal(out)
	_ = msg.Respond(b)
}

func (l *Logs) run(ctx context.Context) {
	defer close(l.done)
	flush := time.NewTicker(l.cfg.Flush)
	defer flush.Stop()
	export := time.NewTicker(l.cfg.Export)
	defer export.Stop()
	for {
		select {
		case <-ctx.Done():
			l.publish()
			final, cancel := context.WithTimeout(context.Background(), 2*time.Second)
			l.exportAll(final)
			cancel()
			return
		case <-flush.C:
			l.publish()
			l.askTelemetry(ctx)
		case <-export.C:
			l.exportAll(ctx)
		}
	}
}

// publish sends every instance's new lines, one message per instance.
func (l *Logs) publish() {
	type batch struct {
		subject string
		lines   []model.LogLine
	}
	var out []batch
	l.mu.Lock()
	conn := l.conn
	for _, in := range l.insts {
		if len(in.pending) == 0 {
			continue
		}
		out = append(out, batch{bus.LogsSubject(l.cfg.ClusterID, in.src.FunctionID, in.src.FunctionVersionID, in.src.InstanceID), in.pending})
		in.pending = nil
	}
	l.mu.Unlock()
	if conn == nil {
		return
	}
	for _, b := range out {
		// At most about 1 MiB a message, well under NATS's default limit.
		for len(b.lines) > 0 {
			n, size := 0, 0
			for n < len(b.lines) && size < 1<<20 {
				size += len(b.lines[n].Line) + 160
				n++
			}
			data, _ := json.Marshal(model.LogBatch{Lines: b.lines[:n]})
			if err := conn.Publish(b.subject, data); err != nil {
				l.log.Debug("agent: publishing log lines", "err", err)
			}
			b.lines = b.lines[n:]
		}
	}
}

// askTelemetry asks the control plane, once per instance that wrote,
// where its logs go.
func (l *Logs) askTelemetry(ctx context.Context) {
	var ask []string
	now := time.Now()
	l.mu.Lock()
	for id, in := range l.insts {
		if !in.teleKnown && now.Sub(in.teleAsked) >= telemetryRetry {
			in.teleAsked = now
			ask = append(ask, id)
		}
	}
	conn := l.conn
	l.mu.Unlock()
	if conn == nil {
		return
	}
	for _, id := range ask {
		go l.fetchTelemetry(ctx, conn, id)
	}
}

func (l *Logs) fetchTelemetry(ctx context.Context, conn *nats.Conn, instanceID string) {
	req, _ := json.Marshal(model.InstanceSecretsRequest{InstanceID: instanceID, Telemetry: true})
	rctx, cancel := context.WithTimeout(ctx, telemetryRequestWait)
	defer cancel()
	msg, err := conn.RequestWithContext(rctx, bus.SecretsSubject(l.cfg.ClusterID), req)
	if err != nil {
		l.log.Warn("agent: asking where an instance's logs go", "instance", instanceID, "err", err)
		return
	}
	var out struct {
		model.InstanceTelemetry
		Error string `json:"error"`
	}
	if err := json.Unmarshal(msg.Data, &out); err != nil || out.Error != "" {
		l.log.Warn("agent: the control plane did not say where an instance's logs go", "instance", instanceID, "err", out.Error)
		return
	}
	t := out.Logs
	if t != nil && t.Protocol != model.TelemetryHTTP {
		l.log.Warn("agent: logs telemetry is not exported: only protocol HTTP (OTLP/HTTP) is", "instance", instanceID,
			"telemetry", t.TelemetryID, "protocol", t.Protocol)
		t = nil
	}
	l.mu.Lock()
	defer l.mu.Unlock()
	in := l.insts[instanceID]
	if in == nil {
		return
	}
	in.teleKnown, in.target = true, t
	if t == nil {
		in.export, in.dropped = nil, 0
		return
	}
	l.log.Info("agent: exporting an instance's logs", "instance", instanceID, "telemetry", t.TelemetryID,
		"endpoint", redactEndpoint(t.Endpoint), "provider", t.Provider)
}

// exportAll sends each instance's queued lines to its logs telemetry.
func (l *Logs) exportAll(ctx context.Context) {
	type job struct {
		id     string
		src    runtime.LogSource
		target model.TelemetryTarget
		lines  []model.LogLine
	}
	var jobs []job
	l.mu.Lock()
	for id, in := range l.insts {
		if in.target == nil || len(in.export) == 0 {
			continue
		}
		n := min(len(in.export), maxLogExportBatch)
		jobs = append(jobs, job{id, in.src, *in.target, append([]model.LogLine(nil), in.export[:n]...)})
		in.export = append(in.export[:0], in.export[n:]...)
	}
	l.mu.Unlock()
	for _, j := range jobs {
		err := l.send(ctx, j.src, j.target, j.lines)
		l.mu.Lock()
		in := l.insts[j.id]
		if in != nil {
			if err != nil && !in.exportFails {
				l.log.Warn("agent: sending logs to the telemetry endpoint failed; lines are dropped until it answers",
					"instance", j.id, "telemetry", j.target.TelemetryID, "endpoint", redactEndpoint(j.target.Endpoint), "err", err)
			} else if err == nil && in.exportFails {
				l.log.Info("agent: the telemetry endpoint takes logs again", "instance", j.id, "telemetry", j.target.TelemetryID)
			}
			in.exportFails = err != nil
		}
		l.mu.Unlock()
	}
}

func (l *Logs) send(ctx context.Context, src runtime.LogSource, t model.TelemetryTarget, lines []model.LogLine) error {
	body, err := json.Marshal(otlpLogs(l.cfg.ClusterID, src, lines))
	if err != nil {
		return err
	}
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, otlpLogsURL(t.Endpoint), bytes.NewReader(body))
	if err != nil {
		return errors.New("the endpoint is not a URL")
	}
	req.Header.Set("Content-Type", "application/json")
	for k, v := range telemetryHeaders(t.Secret) {
		req.Header.Set(k, v)
	}
	resp, err := l.http.Do(req)
	if err != nil {
		// The URL in the error is the endpoint's; redact what it may carry.
		var ue interface{ Unwrap() error }
		if errors.As(err, &ue) {
			return fmt.Errorf("POST %s: %w", redactEndpoint(t.Endpoint), ue.Unwrap())
		}
		return err
	}
	defer resp.Body.Close()
	_, _ = io.Copy(io.Discard, io.LimitReader(resp.Body, 64<<10))
	if resp.StatusCode/100 != 2 {
		return fmt.Errorf("the endpoint answered %s", resp.Status)
	}
	return nil
}
