// Package otlpsink is an in-process OTLP/HTTP trace receiver: the
// collector of the tests that check which spans Gantry exports, and of
// gantry bench invoke --traces, which measures what exporting costs
// without a collector of its own.
package otlpsink

import (
	"compress/gzip"
	"encoding/hex"
	"errors"
	"io"
	"net"
	"net/http"
	"strconv"
	"sync"
	"sync/atomic"

	coltrace "go.opentelemetry.io/proto/otlp/collector/trace/v1"
	commonpb "go.opentelemetry.io/proto/otlp/common/v1"
	tracepb "go.opentelemetry.io/proto/otlp/trace/v1"
	"google.golang.org/protobuf/proto"
)

// Span is one received span, flattened.
type Span struct {
	Service  string // the resource's service.name
	Name     string
	TraceID  string // hex
	SpanID   string // hex
	ParentID string // hex; "" for a root span
	Kind     tracepb.Span_SpanKind
	// Attributes holds the string, int and bool attributes, formatted.
	Attributes map[string]string
}

// Sink receives OTLP/HTTP protobuf exports on /v1/traces.
type Sink struct {
	keep bool
	lis  net.Listener
	srv  *http.Server

	requests atomic.Int64
	received atomic.Int64 // spans
	mu       sync.Mutex
	spans    []Span
}

// Start listens on a random loopback port. With keep, the sink decodes
// every export and keeps its spans for Spans; without, it only counts
// requests and reads their bodies, as cheaply as a receiver can.
func Start(keep bool) (*Sink, error) {
	lis, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return nil, err
	}
	s := &Sink{keep: keep, lis: lis}
	mux := http.NewServeMux()
	mux.HandleFunc("POST /v1/traces", s.export)
	s.srv = &http.Server{Handler: mux}
	go func() { _ = s.srv.Serve(lis) }()
	return s, nil
}

// URL is the base endpoint, as OTEL_EXPORTER_OTLP_ENDPOINT names it.
func (s *Sink) URL() string { return "http://" + s.lis.Addr().String() }

// Requests counts the exports received.
func (s *Sink) Requests() int64 { return s.requests.Load() }

// Received counts the spans received (kept or not, once decoded; 0
// without keep).
func (s *Sink) Received() int64 { return s.received.Load() }

// Spans returns a copy of the spans kept so far.
func (s *Sink) Spans() []Span {
	s.mu.Lock()
	defer s.mu.Unlock()
	return append([]Span(nil), s.spans...)
}

// Trace returns the kept spans of one trace.
func (s *Sink) Trace(traceID string) []Span {
	var out []Span
	for _, sp := range s.Spans() {
		if sp.TraceID == traceID {
			out = append(out, sp)
		}
	}
	return out
}

// Close stops the listener.
func (s *Sink) Close() error { return s.srv.Close() }

func (s *Sink) export(w http.ResponseWriter, r *http.Request) {
	s.requests.Add(1)
	var body io.Reader = r.Body
	if r.Header.Get("Content-Encoding") == "gzip" {
		zr, err := gzip.NewReader(r.Body)
		if err != nil {
			http.Error(w, "otlpsink: bad gzip body", http.StatusBadRequest)
			return
		}
		defer zr.Close()
		body = zr
	}
	if !s.keep {
		_, _ = io.Copy(io.Discard, body)
		w.Header().Set("Content-Type", "application/x-protobuf")
		return
	}
	b, err := io.ReadAll(body)
	var req coltrace.ExportTraceServiceRequest
	if err == nil {
		err = proto.Unmarshal(b, &req)
	}
	if err != nil {
		http.Error(w, "otlpsink: "+errors.Join(errors.New("cannot decode the export"), err).Error(), http.StatusBadRequest)
		return
	}
	var got []Span
	for _, rs := range req.GetResourceSpans() {
		service := ""
		for _, kv := range rs.GetResource().GetAttributes() {
			if kv.GetKey() == "service.name" {
				service = kv.GetValue().GetStringValue()
			}
		}
		for _, ss := range rs.GetScopeSpans() {
			for _, sp := range ss.GetSpans() {
				got = append(got, flatten(service, sp))
			}
		}
	}
	s.received.Add(int64(len(got)))
	s.mu.Lock()
	s.spans = append(s.spans, got...)
	s.mu.Unlock()
	out, _ := proto.Marshal(&coltrace.ExportTraceServiceResponse{})
	w.Header().Set("Content-Type", "application/x-protobuf")
	_, _ = w.Write(out)
}

func flatten(service string, sp *tracepb.Span) Span {
	out := Span{Service: service, Name: sp.GetName(), TraceID: hex.EncodeToString(sp.GetTraceId()),
		SpanID: hex.EncodeToString(sp.GetSpanId()), Kind: sp.GetKind(), Attributes: map[string]string{}}
	if p := sp.GetParentSpanId(); len(p) > 0 {
		out.ParentID = hex.EncodeToString(p)
	}
	for _, kv := range sp.GetAttributes() {
		out.Attributes[kv.GetKey()] = value(kv.GetValue())
	}
	return out
}

func value(v *commonpb.AnyValue) string {
	switch x := v.GetValue().(type) {
	case *commonpb.AnyValue_StringValue:
		return x.StringValue
	case *commonpb.AnyValue_IntValue:
		return strconv.FormatInt(x.IntValue, 10)
	case *commonpb.AnyValue_BoolValue:
		return strconv.FormatBool(x.BoolValue)
	case *commonpb.AnyValue_DoubleValue:
		return strconv.FormatFloat(x.DoubleValue, 'g', -1, 64)
	}
	return ""
}
