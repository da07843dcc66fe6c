package invoke

import (
	"context"
	"errors"
	"net/http"

	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/codes"
	"go.opentelemetry.io/otel/trace"

	"github.com/gantry-dev/gantry/internal/catalog"
	"github.com/gantry-dev/gantry/internal/problem"
	"github.com/gantry-dev/gantry/internal/tracing"
)

// Traces (docs/architecture.md, "Traces"): each call is one server span
// here, the child of the caller's traceparent when it sent one. Its
// context replaces the caller's in the headers the call carries, so the
// worker's span (bus calls) or the function's own (direct calls) is its
// child. With tracing off g.tracer is nil and none of this runs.

// Call paths, as the span's gantry.call.path says.
const (
	pathDirect = "direct"
	pathOffer  = "offer"
	pathQueue  = "queue"
)

// startSpan starts the call's server span and returns r with it in its
// context.
func (g *Gateway) startSpan(r *http.Request, e catalog.Entry, method string) (*http.Request, trace.Span) {
	f := e.Function
	ctx, span := g.tracer.Start(tracing.Extract(r.Context(), r.Header), "invoke "+f.Name,
		trace.WithSpanKind(trace.SpanKindServer),
		trace.WithAttributes(
			attribute.String("http.request.method", method),
			attribute.String("gantry.function.id", f.ID),
			attribute.String("gantry.function.version.id", f.VersionID),
		))
	return r.WithContext(ctx), span
}

// traceCall notes the call's request id and path on its span, if any.
func (g *Gateway) traceCall(ctx context.Context, reqID, path string) {
	if g.tracer == nil {
		return
	}
	if span := trace.SpanFromContext(ctx); span.IsRecording() {
		span.SetAttributes(attribute.String("gantry.request.id", reqID), attribute.String("gantry.call.path", path))
	}
}

// traceStatus notes the status the caller is answered.
func (g *Gateway) traceStatus(ctx context.Context, status int) {
	if g.tracer == nil {
		return
	}
	if span := trace.SpanFromContext(ctx); span.IsRecording() {
		span.SetAttributes(attribute.Int("http.response.status_code", status))
		if status >= 500 {
			span.SetStatus(codes.Error, http.StatusText(status))
		}
	}
}

// endSpan ends the call's span with the error invoke returned, if any.
func endSpan(span trace.Span, err error) {
	if err != nil {
		status := http.StatusInternalServerError
		var pe *problem.Error
		switch {
		case errors.As(err, &pe):
			status = pe.Status
		case errors.Is(err, context.Canceled):
			status = 499 // the caller went away
		}
		span.SetAttributes(attribute.Int("http.response.status_code", status))
		if status >= 500 {
			span.SetStatus(codes.Error, err.Error())
		}
	}
	span.End()
}
