package web

import (
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"

	"github.com/gantry-dev/gantry/internal/auth"
)

// scopesFromHeader authenticates every request as a principal holding the
// scopes its Test-Scopes header lists: only the guard's scope logic is under
// test here, not a credential.
type scopesFromHeader struct{}

func (scopesFromHeader) Authenticate(r *http.Request) (auth.Principal, error) {
	v, ok := r.Header["Test-Scopes"]
	if !ok {
		return auth.Principal{}, auth.ErrNoCredential
	}
	return auth.NewPrincipal("acct", "tester", strings.Fields(strings.Join(v, " "))), nil
}

func TestRouteScopes(t *testing.T) {
	g := Guard{Auth: scopesFromHeader{}}
	ok := func(w http.ResponseWriter, r *http.Request, p auth.Principal) error { return nil }
	tests := []struct {
		name   string
		route  http.Handler
		scopes []string // nil: no credential
		status int
		detail string
	}{
		{"no credential", g.Route("list_functions", ok), nil, 401, "missing credential"},
		{"any credential", g.Route("", ok), []string{}, 200, ""},
		{"the scope", g.Route("list_functions", ok), []string{"list_functions"}, 200, ""},
		{"another scope", g.Route("list_functions", ok), []string{"invoke_function"}, 403, `lacks scope "list_functions"`},
		{"first of two", g.RouteAny([]string{"list_functions", "list_functions_details"}, ok), []string{"list_functions"}, 200, ""},
		{"second of two", g.RouteAny([]string{"list_functions", "list_functions_details"}, ok), []string{"list_functions_details"}, 200, ""},
		{"neither of two", g.RouteAny([]string{"list_functions", "list_functions_details"}, ok), []string{"invoke_function"}, 403,
			"one of list_functions, list_functions_details"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			req := httptest.NewRequest("GET", "/x", nil)
			if tc.scopes != nil {
				req.Header["Test-Scopes"] = []string{strings.Join(tc.scopes, " ")}
			}
			rec := httptest.NewRecorder()
			tc.route.ServeHTTP(rec, req)
			if rec.Code != tc.status {
				t.Fatalf("status %d, want %d: %s", rec.Code, tc.status, rec.Body)
			}
			if tc.detail == "" {
				return
			}
			var p struct {
				Detail string `json:"detail"`
			}
			if err := json.Unmarshal(rec.Body.Bytes(), &p); err != nil || !strings.Contains(p.Detail, tc.detail) {
				t.Fatalf("detail %q, want %q (%v)", p.Detail, tc.detail, err)
			}
		})
	}
}
