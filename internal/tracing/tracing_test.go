package tracing_test

import (
	"context"
	"fmt"
	"net/http"
	"strings"
	"testing"
	"time"

	"go.opentelemetry.io/otel/trace"

	"github.com/gantry-dev/gantry/internal/testutil"
	"github.com/gantry-dev/gantry/internal/tracing"
	"github.com/gantry-dev/gantry/internal/tracing/otlpsink"
)

func TestFromEnv(t *testing.T) {
	env := map[string]string{
		"OTEL_EXPORTER_OTLP_ENDPOINT": "http://collector:4318",
		"OTEL_EXPORTER_OTLP_PROTOCOL": "grpc",
		"OTEL_SERVICE_NAME":           "edge",
		"OTEL_TRACES_SAMPLER":         "traceidratio",
		"OTEL_TRACES_SAMPLER_ARG":     "0.25",
		"OTEL_BSP_SCHEDULE_DELAY":     "200",
	}
	c := tracing.FromEnv(func(k string) string { return env[k] })
	want := tracing.Config{Endpoint: "http://collector:4318", Protocol: "grpc", ServiceName: "edge",
		Sampler: "traceidratio", SamplerArg: "0.25", BatchTimeout: 200 * time.Millisecond}
	if c != want {
		t.Fatalf("tracing: FromEnv = %+v, want %+v", c, want)
	}
	env["OTEL_EXPORTER_OTLP_TRACES_PROTOCOL"] = "http/protobuf"
	if c := tracing.FromEnv(func(k string) string { return env[k] }); c.Protocol != "http/protobuf" {
		t.Fatalf("tracing: the traces protocol should win, got %q", c.Protocol)
	}
}

func TestEnabled(t *testing.T) {
	for _, tc := range []struct {
		name string
		cfg  tracing.Config
		want bool
	}{
		{"no endpoint", tracing.Config{}, false},
		{"endpoint", tracing.Config{Endpoint: "http://c:4318"}, true},
		{"traces endpoint", tracing.Config{TracesEndpoint: "http://c:4318/v1/traces"}, true},
		{"exporter none", tracing.Config{Endpoint: "http://c:4318", Exporter: "none"}, false},
		{"sdk disabled", tracing.Config{Endpoint: "http://c:4318", Disabled: true}, false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if got := tc.cfg.Enabled(); got != tc.want {
				t.Fatalf("tracing: Enabled = %v, want %v", got, tc.want)
			}
			tr, err := tracing.New(tc.cfg, "gantry")
			if err != nil {
				t.Fatal(err)
			}
			defer tr.Close(context.Background())
			if (tr.Provider() != nil) != tc.want {
				t.Fatalf("tracing: provider %v with Enabled %v", tr.Provider(), tc.want)
			}
		})
	}
}

func TestNewRefuses(t *testing.T) {
	for _, tc := range []struct {
		name string
		cfg  tracing.Config
		msg  string
	}{
		{"exporter", tracing.Config{Endpoint: "http://c:4318", Exporter: "zipkin"}, "OTEL_TRACES_EXPORTER"},
		{"protocol", tracing.Config{Endpoint: "http://c:4318", Protocol: "http/json"}, "protocol"},
		{"sampler", tracing.Config{Endpoint: "http://c:4318", Sampler: "sometimes"}, "OTEL_TRACES_SAMPLER"},
		{"ratio", tracing.Config{Endpoint: "http://c:4318", Sampler: "traceidratio", SamplerArg: "2"}, "SAMPLER_ARG"},
		{"url", tracing.Config{Endpoint: "collector:4318"}, "http(s) URL"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, err := tracing.New(tc.cfg, "gantry")
			if err == nil || !strings.Contains(err.Error(), tc.msg) || !strings.HasPrefix(err.Error(), "tracing: ") {
				t.Fatalf("tracing: New(%+v) = %v, want an error naming %s", tc.cfg, err, tc.msg)
			}
		})
	}
}

// TestExportAndPropagate: a span's context crosses a header map and its
// child, with the parent, reaches the collector under the service name.
func TestExportAndPropagate(t *testing.T) {
	sink, err := otlpsink.Start(true)
	if err != nil {
		t.Fatal(err)
	}
	defer sink.Close()
	tr, err := tracing.New(tracing.Config{Endpoint: sink.URL(), ServiceName: "edge", ResourceAttributes: "deployment.environment=test"}, "gantry")
	if err != nil {
		t.Fatal(err)
	}
	tracer := tracing.Tracer(tr.Provider(), "test")
	ctx, parent := tracer.Start(context.Background(), "parent")
	h := http.Header{"Traceparent": {"00-00000000000000000000000000000001-0000000000000001-01"}, "Tracestate": {"stale=1"}}
	tracing.Inject(ctx, h)
	if got := h.Get("Traceparent"); !strings.Contains(got, parent.SpanContext().TraceID().String()) || h.Get("Tracestate") != "" {
		t.Fatalf("tracing: injected %v, want the parent's trace and no stale tracestate", h)
	}
	_, child := tracer.Start(tracing.Extract(context.Background(), h), "child", trace.WithSpanKind(trace.SpanKindServer))
	child.End()
	parent.End()
	if err := tr.Close(context.Background()); err != nil {
		t.Fatal(err)
	}
	testutil.WaitFor(t, 5*time.Second, func() error {
		if n := len(sink.Trace(parent.SpanContext().TraceID().String())); n != 2 {
			return fmt.Errorf("tracing: %d spans of the trace received", n)
		}
		return nil
	})
	for _, sp := range sink.Trace(parent.SpanContext().TraceID().String()) {
		if sp.Service != "edge" {
			t.Fatalf("tracing: span %s of service %q, want edge", sp.Name, sp.Service)
		}
		if sp.Name == "child" && sp.ParentID != parent.SpanContext().SpanID().String() {
			t.Fatalf("tracing: child's parent %s, want %s", sp.ParentID, parent.SpanContext().SpanID())
		}
	}
}
