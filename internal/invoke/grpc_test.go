package invoke

import (
	"net/http"
	"testing"

	"google.golang.org/grpc/codes"
)

func TestIsGRPC(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name        string
		major       int
		contentType string
		want        bool
	}{
		{"grpc", 2, "application/grpc", true},
		{"grpc with codec", 2, "application/grpc+proto", true},
		{"grpc with parameters", 2, "application/grpc;charset=utf-8", true},
		{"grpc-web is not grpc", 2, "application/grpc-web", false},
		{"json over http/2", 2, "application/json", false},
		{"grpc content type over http/1", 1, "application/grpc", false},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			r := &http.Request{ProtoMajor: tc.major, Header: http.Header{"Content-Type": {tc.contentType}}}
			if got := isGRPC(r); got != tc.want {
				t.Errorf("isGRPC = %v, want %v", got, tc.want)
			}
		})
	}
}

// TestGRPCCodes pins the status each of Gantry's refusals becomes on the
// gRPC listener.
func TestGRPCCodes(t *testing.T) {
	t.Parallel()
	tests := []struct {
		status int
		want   codes.Code
	}{
		{http.StatusBadRequest, codes.InvalidArgument},
		{http.StatusUnauthorized, codes.Unauthenticated},
		{http.StatusForbidden, codes.PermissionDenied},
		{http.StatusNotFound, codes.NotFound},
		{http.StatusPreconditionFailed, codes.FailedPrecondition},
		{http.StatusRequestEntityTooLarge, codes.ResourceExhausted},
		{http.StatusTooManyRequests, codes.ResourceExhausted},
		{http.StatusNotImplemented, codes.Unimplemented},
		{http.StatusBadGateway, codes.Unavailable},
		{http.StatusServiceUnavailable, codes.Unavailable},
		{http.StatusGatewayTimeout, codes.DeadlineExceeded},
		{http.StatusInternalServerError, codes.Internal},
	}
	for _, tc := range tests {
		if got := grpcCode(tc.status); got != tc.want {
			t.Errorf("grpcCode(%d) = %v, want %v", tc.status, got, tc.want)
		}
	}
}

func TestGRPCMessageIsPercentEncoded(t *testing.T) {
	t.Parallel()
	tests := []struct{ in, want string }{
		{"plain text: ok", "plain text: ok"},
		{"100% done", "100%25 done"},
		{"line\nbreak", "line%0Abreak"},
		{"café", "caf%C3%A9"},
	}
	for _, tc := range tests {
		if got := grpcMessage(tc.in); got != tc.want {
			t.Errorf("grpcMessage(%q) = %q, want %q", tc.in, got, tc.want)
		}
	}
}
