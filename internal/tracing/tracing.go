// Package tracing is Gantry's OpenTelemetry tracing: one tracer provider
// per component that exports spans over OTLP, configured the standard way
// (OTEL_* variables, read by FromEnv), and the W3C trace context
// (traceparent, tracestate) that carries a call's trace from the gateway
// over the bus to the worker and into the function's request.
//
// Tracing is off unless an OTLP endpoint is configured. Off, New returns a
// nil *Tracing whose Provider is nil, and the components then skip every
// tracing call: the invoke path pays one nil check.
//
// A Config is a value, not process state, so that tests run several
// platforms in one process, each exporting where it is told; only the
// binary's commands call FromEnv.
package tracing

import (
	"context"
	"errors"
	"fmt"
	"net/url"
	"strconv"
	"strings"
	"time"

	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/exporters/otlp/otlptrace/otlptracegrpc"
	"go.opentelemetry.io/otel/exporters/otlp/otlptrace/otlptracehttp"
	"go.opentelemetry.io/otel/propagation"
	"go.opentelemetry.io/otel/sdk/resource"
	sdktrace "go.opentelemetry.io/otel/sdk/trace"
	"go.opentelemetry.io/otel/trace"
)

// Protocols of the OTLP exporter (OTEL_EXPORTER_OTLP_PROTOCOL).
const (
	ProtocolHTTP = "http/protobuf"
	ProtocolGRPC = "grpc"
)

// Config says where spans go. The zero Config is tracing off.
type Config struct {
	// Endpoint is the collector's base URL (OTEL_EXPORTER_OTLP_ENDPOINT):
	// over HTTP spans go to <Endpoint>/v1/traces, over gRPC to Endpoint.
	Endpoint string
	// TracesEndpoint is the full URL for traces
	// (OTEL_EXPORTER_OTLP_TRACES_ENDPOINT); it wins over Endpoint.
	TracesEndpoint string
	// Protocol is ProtocolHTTP (the default) or ProtocolGRPC
	// (OTEL_EXPORTER_OTLP_TRACES_PROTOCOL, else OTEL_EXPORTER_OTLP_PROTOCOL).
	Protocol string
	// Exporter "none" turns tracing off whatever the endpoint
	// (OTEL_TRACES_EXPORTER); "" and "otlp" export over OTLP.
	Exporter string
	// Disabled turns tracing off (OTEL_SDK_DISABLED=true).
	Disabled bool
	// ServiceName is the resource's service.name (OTEL_SERVICE_NAME);
	// empty: the component's default ("gantry", "gantry-agent").
	ServiceName string
	// ResourceAttributes are extra resource attributes, key=value,...
	// (OTEL_RESOURCE_ATTRIBUTES).
	ResourceAttributes string
	// Sampler and SamplerArg choose which traces are kept
	// (OTEL_TRACES_SAMPLER, OTEL_TRACES_SAMPLER_ARG): always_on,
	// always_off, traceidratio, parentbased_always_on (the default),
	// parentbased_always_off, parentbased_traceidratio.
	Sampler, SamplerArg string
	// BatchTimeout is the longest a finished span waits to be exported
	// (OTEL_BSP_SCHEDULE_DELAY, in milliseconds; default 5s).
	BatchTimeout time.Duration
}

// FromEnv reads the standard OTEL_* variables through getenv (os.Getenv).
func FromEnv(getenv func(string) string) Config {
	c := Config{
		Endpoint:           getenv("OTEL_EXPORTER_OTLP_ENDPOINT"),
		TracesEndpoint:     getenv("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT"),
		Protocol:           getenv("OTEL_EXPORTER_OTLP_TRACES_PROTOCOL"),
		Exporter:           getenv("OTEL_TRACES_EXPORTER"),
		Disabled:           strings.EqualFold(strings.TrimSpace(getenv("OTEL_SDK_DISABLED")), "true"),
		ServiceName:        getenv("OTEL_SERVICE_NAME"),
		ResourceAttributes: getenv("OTEL_RESOURCE_ATTRIBUTES"),
		Sampler:            getenv("OTEL_TRACES_SAMPLER"),
		SamplerArg:         getenv("OTEL_TRACES_SAMPLER_ARG"),
	}
	if c.Protocol == "" {
		c.Protocol = getenv("OTEL_EXPORTER_OTLP_PROTOCOL")
	}
	if ms, err := strconv.Atoi(getenv("OTEL_BSP_SCHEDULE_DELAY")); err == nil && ms > 0 {
		c.BatchTimeout = time.Duration(ms) * time.Millisecond
	}
	return c
}

// Enabled reports whether c exports spans at all.
func (c Config) Enabled() bool {
	return !c.Disabled && c.Exporter != "none" && (c.Endpoint != "" || c.TracesEndpoint != "")
}

// Tracing is a running tracer provider. A nil *Tracing is tracing off.
type Tracing struct {
	tp *sdktrace.TracerProvider
}

// New builds the exporter and tracer provider cfg describes, named
// service unless cfg.ServiceName says otherwise. It returns nil, nil when
// cfg exports nothing. Nothing connects yet: an unreachable collector
// costs dropped spans and a logged error, never a failed start.
func New(cfg Config, service string) (*Tracing, error) {
	if !cfg.Enabled() {
		return nil, nil
	}
	switch cfg.Exporter {
	case "", "otlp":
	default:
		return nil, fmt.Errorf("tracing: OTEL_TRACES_EXPORTER %q is not served: use otlp or none", cfg.Exporter)
	}
	sampler, err := newSampler(cfg.Sampler, cfg.SamplerArg)
	if err != nil {
		return nil, err
	}
	exp, err := newExporter(cfg)
	if err != nil {
		return nil, err
	}
	if cfg.ServiceName != "" {
		service = cfg.ServiceName
	}
	attrs := append(parseAttributes(cfg.ResourceAttributes), attribute.String("service.name", service))
	bsp := []sdktrace.BatchSpanProcessorOption{}
	if cfg.BatchTimeout > 0 {
		bsp = append(bsp, sdktrace.WithBatchTimeout(cfg.BatchTimeout))
	}
	tp := sdktrace.NewTracerProvider(
		sdktrace.WithBatcher(exp, bsp...),
		sdktrace.WithSampler(sampler),
		sdktrace.WithResource(resource.NewSchemaless(attrs...)),
	)
	return &Tracing{tp: tp}, nil
}

// Provider is the tracer provider, or nil when tracing is off.
func (t *Tracing) Provider() trace.TracerProvider {
	if t == nil {
		return nil
	}
	return t.tp
}

// Flush exports every span ended so far.
func (t *Tracing) Flush(ctx context.Context) error {
	if t == nil {
		return nil
	}
	return t.tp.ForceFlush(ctx)
}

// Close exports the spans still buffered and stops the exporter. Call it
// after the components that start spans have stopped.
func (t *Tracing) Close(ctx context.Context) error {
	if t == nil {
		return nil
	}
	return t.tp.Shutdown(ctx)
}

// Tracer is tp's tracer for a component, or nil when tp is nil (off).
func Tracer(tp trace.TracerProvider, component string) trace.Tracer {
	if tp == nil {
		return nil
	}
	return tp.Tracer("github.com/gantry-dev/gantry/" + component)
}

// Propagator carries the W3C trace context, traceparent and tracestate, in
// HTTP and NATS headers alike (both are map[string][]string with
// canonical keys).
var Propagator propagation.TextMapPropagator = propagation.TraceContext{}

// Header names of the W3C trace context, canonicalized.
const (
	HeaderTraceparent = "Traceparent"
	HeaderTracestate  = "Tracestate"
)

// Inject replaces h's trace context with ctx's span.
func Inject(ctx context.Context, h map[string][]string) {
	delete(h, HeaderTraceparent)
	delete(h, HeaderTracestate)
	Propagator.Inject(ctx, propagation.HeaderCarrier(h))
}

// Extract returns ctx with h's trace context as its remote parent, if h
// carries a valid one.
func Extract(ctx context.Context, h map[string][]string) context.Context {
	return Propagator.Extract(ctx, propagation.HeaderCarrier(h))
}

func newExporter(cfg Config) (sdktrace.SpanExporter, error) {
	ctx := context.Background()
	switch cfg.Protocol {
	case "", ProtocolHTTP:
		u := cfg.TracesEndpoint
		if u == "" {
			u = strings.TrimRight(cfg.Endpoint, "/") + "/v1/traces"
		}
		if err := checkURL(u); err != nil {
			return nil, err
		}
		return otlptracehttp.New(ctx, otlptracehttp.WithEndpointURL(u))
	case ProtocolGRPC:
		u := cfg.TracesEndpoint
		if u == "" {
			u = cfg.Endpoint
		}
		if err := checkURL(u); err != nil {
			return nil, err
		}
		return otlptracegrpc.New(ctx, otlptracegrpc.WithEndpointURL(u))
	default:
		return nil, fmt.Errorf("tracing: OTLP protocol %q is not served: use %s or %s", cfg.Protocol, ProtocolHTTP, ProtocolGRPC)
	}
}

// checkURL refuses an endpoint the exporter would silently ignore (it
// falls back to localhost on a URL it cannot parse).
func checkURL(s string) error {
	u, err := url.Parse(s)
	if err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
		return fmt.Errorf("tracing: OTLP endpoint %q is not an http(s) URL with a host, e.g. http://localhost:4318", s)
	}
	return nil
}

func newSampler(name, arg string) (sdktrace.Sampler, error) {
	ratio := func() (float64, error) {
		if arg == "" {
			return 1, nil
		}
		r, err := strconv.ParseFloat(arg, 64)
		if err != nil || r < 0 || r > 1 {
			return 0, fmt.Errorf("tracing: OTEL_TRACES_SAMPLER_ARG %q is not a ratio between 0 and 1", arg)
		}
		return r, nil
	}
	switch name {
	case "", "parentbased_always_on":
		return sdktrace.ParentBased(sdktrace.AlwaysSample()), nil
	case "always_on":
		return sdktrace.AlwaysSample(), nil
	case "always_off":
		return sdktrace.NeverSample(), nil
	case "parentbased_always_off":
		return sdktrace.ParentBased(sdktrace.NeverSample()), nil
	case "traceidratio", "parentbased_traceidratio":
		r, err := ratio()
		if err != nil {
			return nil, err
		}
		if name == "traceidratio" {
			return sdktrace.TraceIDRatioBased(r), nil
		}
		return sdktrace.ParentBased(sdktrace.TraceIDRatioBased(r)), nil
	}
	return nil, errors.New("tracing: OTEL_TRACES_SAMPLER " + strconv.Quote(name) +
		" is not served: use always_on, always_off, traceidratio or their parentbased_ forms")
}

// parseAttributes reads OTEL_RESOURCE_ATTRIBUTES (key=value pairs, comma
// separated, values percent-encoded); malformed pairs are skipped, as the
// specification says.
func parseAttributes(s string) []attribute.KeyValue {
	var kvs []attribute.KeyValue
	for pair := range strings.SplitSeq(s, ",") {
		k, v, ok := strings.Cut(pair, "=")
		k = strings.TrimSpace(k)
		if !ok || k == "" {
			continue
		}
		if dv, err := url.PathUnescape(strings.TrimSpace(v)); err == nil {
			kvs = append(kvs, attribute.String(k, dv))
		}
	}
	return kvs
}
