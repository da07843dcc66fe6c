package invoke

import (
	"errors"
	"net/http"
	"testing"
	"time"

	"github.com/gantry-dev/gantry/internal/auth"
	"github.com/gantry-dev/gantry/internal/catalog"
	"github.com/gantry-dev/gantry/internal/model"
	"github.com/gantry-dev/gantry/internal/problem"
	"github.com/gantry-dev/gantry/internal/testutil"
)

// TestTargetHonoursKeyResources resolves functions through a real catalog
// over a real etcd, as principals whose API keys reach different functions.
func TestTargetHonoursKeyResources(t *testing.T) {
	st := testutil.StartEtcd(t)
	ctx := testutil.Context(t)
	for _, id := range []string{"fn-a", "fn-b"} {
		f := &model.Function{ID: id, VersionID: id + "-v1", NCAID: "acct", Name: id, CreatedAt: time.Now()}
		if err := st.CreateFunction(ctx, f, nil); err != nil {
			t.Fatal(err)
		}
	}
	cat := catalog.New(st, nil)
	cat.Start(ctx)
	<-cat.Ready()
	g := New(Config{Catalog: cat})

	base := auth.NewPrincipal("acct", "k", auth.DefaultAPIKeyScopes)
	onlyA := base.LimitFunctions([]string{"fn-a"})
	tests := []struct {
		name       string
		p          auth.Principal
		fn, ver    string
		wantStatus int
	}{
		// The functions exist but are not deployed: 503 proves they resolved.
		{"unrestricted key reaches fn-a", base, "fn-a", "", http.StatusServiceUnavailable},
		{"unrestricted key reaches fn-b", base, "fn-b", "fn-b-v1", http.StatusServiceUnavailable},
		{"key for fn-a reaches fn-a", onlyA, "fn-a", "", http.StatusServiceUnavailable},
		{"key for fn-a does not see fn-b", onlyA, "fn-b", "", http.StatusNotFound},
		{"key for fn-a does not see fn-b's version", onlyA, "fn-b", "fn-b-v1", http.StatusNotFound},
		{"another account does not see fn-a", auth.NewPrincipal("other", "k", nil), "fn-a", "", http.StatusNotFound},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			_, err := g.target(ctx, tc.p, tc.fn, tc.ver)
			var pe *problem.Error
			if !errors.As(err, &pe) || pe.Status != tc.wantStatus {
				t.Fatalf("target: %v, want status %d", err, tc.wantStatus)
			}
		})
	}
}
