package invoke

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"strconv"
	"strings"
	"time"

	"google.golang.org/grpc/codes"

	"github.com/gantry-dev/gantry/internal/auth"
	"github.com/gantry-dev/gantry/internal/bus"
	"github.com/gantry-dev/gantry/internal/problem"
	"github.com/gantry-dev/gantry/internal/stream"
	"github.com/gantry-dev/gantry/internal/validate"
)

// gRPC calls, as NVCF's gRPC proxy takes them: the caller dials the gRPC
// listener and calls any method of the function's own service, naming the
// function in its metadata (function-id, optionally function-version-id)
// and its key in authorization. A gRPC call is an HTTP/2 POST to
// /<service>/<method> with content type application/grpc, length-prefixed
// messages in both bodies and the status in the response's trailers, so the
// gateway carries it as it carries any pass-through call, without knowing
// the protos: the request body streams to the worker while the answer
// streams back (full duplex, every frame flushed), and the trailers travel
// on the stream's end frame. Failures before the function answers are gRPC
// statuses, never problem bodies.

// gRPC metadata names, as NVCF reads them (HTTP/2 header names; Go's
// server canonicalises them as Function-Id and so on).
const (
	metaFunctionID        = "function-id"
	metaFunctionVersionID = "function-version-id"
)

// isGRPC reports whether r is a gRPC call: HTTP/2 with gRPC's content type
// (application/grpc, or application/grpc+<codec>).
func isGRPC(r *http.Request) bool {
	if r.ProtoMajor != 2 {
		return false
	}
	rest, ok := strings.CutPrefix(r.Header.Get("Content-Type"), "application/grpc")
	return ok && (rest == "" || rest[0] == '+' || rest[0] == ';')
}

// GRPC serves the gRPC listener: every request is a gRPC call of a
// function. It authenticates the authorization metadata with the same
// credentials and scope (invoke_function) as HTTP invocation, resolves the
// function as HTTP invocation does, and refuses functions that do not serve
// gRPC (model.ServesGRPC).
func (g *Gateway) GRPC() http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if !isGRPC(r) {
			// Not gRPC at all: the gRPC spec's answer for a wrong content
			// type, which HTTP clients understand too.
			w.Header().Set("Content-Type", "text/plain; charset=utf-8")
			w.WriteHeader(http.StatusUnsupportedMediaType)
			_, _ = io.WriteString(w, "this is Gantry's gRPC listener: it takes gRPC calls (HTTP/2, content-type application/grpc) with function-id metadata; HTTP calls go to the API address\n")
			return
		}
		if err := g.grpcCall(w, r); err != nil {
			g.grpcFail(w, r, err)
		}
	})
}

func (g *Gateway) grpcCall(w http.ResponseWriter, r *http.Request) error {
	p, err := g.cfg.Auth.Authenticate(r)
	if err != nil {
		detail := "missing credential: send authorization metadata 'Bearer <API key>'"
		if !errors.Is(err, auth.ErrNoCredential) {
			detail = "credential not accepted: it is malformed, expired, revoked or unknown"
		}
		return problem.Errorf(http.StatusUnauthorized, "%s", detail)
	}
	if !p.Has(auth.ScopeInvokeFunction) {
		return problem.Errorf(http.StatusForbidden, "the credential lacks scope %q that invoking a function needs", auth.ScopeInvokeFunction)
	}
	fnID, versionID := r.Header.Get(metaFunctionID), r.Header.Get(metaFunctionVersionID)
	if fnID == "" {
		return problem.BadRequest("missing function-id metadata: name the function to call in function-id (and optionally its version in function-version-id)")
	}
	if err := validate.ID("function-id metadata", fnID); err != nil {
		return err
	}
	if versionID != "" {
		if err := validate.ID("function-version-id metadata", versionID); err != nil {
			return err
		}
	}
	// nvcf-poll-seconds, when sent, bounds the wait for the answer to
	// start, as on pexec; a gRPC call cannot turn into a 202, so the call
	// then fails with DeadlineExceeded. Without it the call waits as long
	// as a Host-routed one.
	poll, err := validate.PollSeconds(r.Header.Get(validate.PollSecondsHeader), 0)
	if err != nil {
		return err
	}
	wait := g.cfg.HostCallLimit
	if poll > 0 {
		wait = time.Duration(poll) * time.Second
	}
	// A function that does not serve gRPC is refused whatever its state
	// (FailedPrecondition: the call is well formed, the function is not
	// one it can reach); one the caller cannot see is NotFound, one not
	// deployed Unavailable.
	e, err := g.target(r.Context(), p, fnID, versionID)
	var pe *problem.Error
	found := err == nil || (errors.As(err, &pe) && pe.Status == http.StatusServiceUnavailable)
	if f := e.Function; found && !f.ServesGRPC() {
		return problem.Errorf(http.StatusPreconditionFailed,
			"function %s version %s does not serve gRPC: NVCF marks a gRPC function with inferenceUrl /grpc (and a gRPC health check); "+
				"call this one over HTTP (POST /v2/nvcf/pexec/functions/%s)", f.ID, f.VersionID, f.ID)
	}
	if err != nil {
		return err
	}
	return g.invoke(w, r, p, e, r.Method, r.URL.RequestURI(), wait, false)
}

// grpcFail answers a call that failed before the function answered with a
// trailers-only gRPC status.
func (g *Gateway) grpcFail(w http.ResponseWriter, r *http.Request, err error) {
	var pe *problem.Error
	switch {
	case errors.As(err, &pe):
	case errors.Is(err, context.Canceled):
		return // the caller went away
	default:
		g.log.Error("invoke: gRPC call failed", "path", r.URL.Path, "err", err)
		pe = problem.Errorf(http.StatusInternalServerError, "internal error")
	}
	h := w.Header()
	for k, v := range pe.Headers {
		h.Set(k, v)
	}
	writeGRPCStatus(h, grpcCode(pe.Status), pe.Detail)
	w.WriteHeader(http.StatusOK)
}

// writeGRPCStatus sets a trailers-only answer's headers: with no message
// and nothing flushed, Go's HTTP/2 server sends them as the one HEADERS
// frame that ends the stream, which gRPC clients read as the status.
func writeGRPCStatus(h http.Header, code codes.Code, msg string) {
	h.Set("Content-Type", "application/grpc")
	h.Set("Grpc-Status", strconv.Itoa(int(code)))
	h.Set("Grpc-Message", grpcMessage(msg))
}

// grpcCode maps an HTTP status Gantry answers to the gRPC code that means
// the same (the reverse of gRPC's HTTP-to-gRPC table, with Gantry's own
// statuses placed where they belong).
func grpcCode(status int) codes.Code {
	switch status {
	case http.StatusBadRequest:
		return codes.InvalidArgument
	case http.StatusUnauthorized:
		return codes.Unauthenticated
	case http.StatusForbidden:
		return codes.PermissionDenied
	case http.StatusNotFound:
		return codes.NotFound
	case http.StatusConflict, http.StatusPreconditionFailed:
		return codes.FailedPrecondition
	case http.StatusTooManyRequests, http.StatusRequestEntityTooLarge:
		return codes.ResourceExhausted
	case http.StatusNotImplemented:
		return codes.Unimplemented
	case http.StatusGatewayTimeout:
		return codes.DeadlineExceeded
	case http.StatusBadGateway, http.StatusServiceUnavailable:
		return codes.Unavailable
	}
	return codes.Internal
}

// grpcMessage percent-encodes a status message as the gRPC wire format
// wants: printable ASCII but '%' as is, everything else as %XX of its
// UTF-8 bytes.
func grpcMessage(s string) string {
	var b strings.Builder
	for i := 0; i < len(s); i++ {
		c := s[i]
		if c >= ' ' && c <= '~' && c != '%' {
			b.WriteByte(c)
			continue
		}
		fmt.Fprintf(&b, "%%%02X", c)
	}
	return b.String()
}

// relayGRPC writes the function's gRPC answer to the caller: its headers,
// every message as it arrives and its trailers, flushing whenever nothing
// more is at hand (so headers that come alone reach a caller that waits for
// them before it sends, and a unary answer goes in one write). An answer the worker made
// itself (the instance failed or could not be reached) becomes a status.
func (g *Gateway) relayGRPC(w http.ResponseWriter, r *http.Request, ep *stream.Endpoint, reqID string, head stream.Frame) error {
	status, _ := strconv.Atoi(head.Header.Get(bus.HeaderStatus))
	if head.Header.Get(bus.HeaderError) != "" {
		b, _ := io.ReadAll(ep.Body())
		var pb problem.Body
		if json.Unmarshal(b, &pb) != nil || pb.Detail == "" {
			pb.Detail = "the call failed on Gantry's side"
		}
		return &problem.Error{Status: status, Detail: pb.Detail,
			Headers: map[string]string{"NVCF-REQID": reqID, "NVCF-STATUS": statusErrored}}
	}
	h := w.Header()
	status = answerHeader(h, http.Header(head.Header), status, reqID)
	h.Del("Content-Length")
	if head.Kind == stream.KindHeadEnd {
		// A trailers-only answer (its status is in the headers): sent as
		// it came, one HEADERS frame.
		b, _ := io.ReadAll(ep.Body())
		w.WriteHeader(status)
		if len(b) > 0 {
			_, _ = w.Write(b)
		}
		return nil
	}
	w.WriteHeader(status)
	rc := http.NewResponseController(w)
	if !ep.Ready() {
		// Headers alone: the caller may wait for them before it sends.
		_ = rc.Flush()
	}
	pb := g.mux.Buffer()
	defer g.mux.Recycle(pb)
	// Flushed when nothing more is at hand: the caller gets what came
	// (what is at hand, such as the trailers, goes with it).
	gone, err := copyBody(w, rc, ep.Body(), *pb, func() bool { return !ep.Ready() })
	switch {
	case gone:
		ep.Cancel() // the caller is gone; nothing left to tell it
	case err != nil && r.Context().Err() == nil:
		g.log.Warn("invoke: gRPC answer broke off mid-stream", "requestId", reqID, "err", err)
		h[http.TrailerPrefix+"Grpc-Status"] = []string{strconv.Itoa(int(codes.Unavailable))}
		h[http.TrailerPrefix+"Grpc-Message"] = []string{grpcMessage(streamReason(err))}
	case err == nil:
		for k, vs := range ep.Trailer() {
			h[http.TrailerPrefix+k] = vs
		}
	}
	return nil
}
