package cli

import (
	"bytes"
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/gantry-dev/gantry/internal/api"
	"github.com/gantry-dev/gantry/internal/model"
	"github.com/gantry-dev/gantry/internal/secrets"
	"github.com/gantry-dev/gantry/internal/store"
	"github.com/gantry-dev/gantry/internal/testutil"
	"github.com/gantry-dev/gantry/internal/web"
)

// TestKeysCommands runs gantry keys against the real key routes over a real
// secret store on embedded etcd.
func TestKeysCommands(t *testing.T) {
	st := testutil.StartEtcd(t)
	ctx := testutil.Context(t)
	svc := secrets.NewService(st, secrets.NewFileMEK(filepath.Join(t.TempDir(), "keys")), nil)
	if err := svc.Start(ctx); err != nil {
		t.Fatal(err)
	}
	place := secrets.Place{Account: "acct", FunctionID: "fn", VersionID: "fn-v1", Name: "TOKEN"}
	sealed, err := svc.Seal(ctx, place, []byte("value"))
	if err != nil {
		t.Fatal(err)
	}
	if err := st.CreateFunction(ctx, &model.Function{ID: "fn", VersionID: "fn-v1", NCAID: "acct"}, []store.SealedSecret{
		{Name: "TOKEN", Account: "acct", NEK: sealed.NEK, Ciphertext: sealed.Ciphertext, HeadRevision: sealed.HeadRevision}}); err != nil {
		t.Fatal(err)
	}
	var gated atomic.Int64
	gate := func(h http.Handler) http.Handler {
		return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			gated.Add(1)
			h.ServeHTTP(w, r)
		})
	}
	mux := http.NewServeMux()
	api.NewESS(svc, gate, nil).Register(mux)
	srv := httptest.NewServer(web.ProblemFallback(mux))
	t.Cleanup(srv.Close)

	cfg := filepath.Join(t.TempDir(), "config.yaml")
	if err := os.WriteFile(cfg, nil, 0o600); err != nil {
		t.Fatal(err)
	}
	keys := func(args ...string) (string, string, error) {
		root := NewRoot()
		var out, errb bytes.Buffer
		root.SetArgs(append([]string{"--server", srv.URL, "--token", "any-token", "--config", cfg, "keys"}, args...))
		root.SetOut(&out)
		root.SetErr(&errb)
		root.SetContext(ctx)
		err := root.Execute()
		return out.String(), errb.String(), err
	}

	for _, tc := range []struct {
		name    string
		args    []string
		want    []string
		wantErr string
	}{
		{"mek rotate", []string{"mek", "rotate"}, []string{"Rotated the master key: v1 -> v2; re-wrapped 1 NEKs, re-encrypted 0 secrets; retired v1"}, ""},
		{"nek rotate", []string{"nek", "rotate", "--account", "acct"}, []string{"Rotated the key of account acct: v1 -> v2; re-encrypted 1 secrets; retired v1"}, ""},
		{"status", []string{"status"}, []string{"v2    active    1", "v1    retired   0", "acct      v2    active    v2    1", "No rotation is running"}, ""},
		{"nek rotate needs an account", []string{"nek", "rotate"}, nil, "--account is required"},
		{"nek rotate of an account without a key", []string{"nek", "rotate", "--account", "nobody"}, nil, "404 Not Found: account nobody has no key yet"},
		{"nek rotate of a malformed account", []string{"nek", "rotate", "--account", "a/b"}, nil, "400 Bad Request"},
		{"nek rotate of the system account", []string{"nek", "rotate", "--account", secrets.SystemAccount}, nil, "not rotated on its own"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			out, _, err := keys(tc.args...)
			if tc.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tc.wantErr) {
					t.Fatalf("got %v, want an error with %q", err, tc.wantErr)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			for _, w := range tc.want {
				if !strings.Contains(out, w) {
					t.Errorf("output lacks %q:\n%s", w, out)
				}
			}
		})
	}
	if gated.Load() < 4 {
		t.Fatalf("the gate saw %d requests", gated.Load())
	}

	out, _, err := keys("-o", "json", "mek", "rotate")
	if err != nil {
		t.Fatal(err)
	}
	var res model.KeyRotationResult
	if err := json.Unmarshal([]byte(out), &res); err != nil || res.Kind != "mek" || res.Target != 3 || res.Rewrapped != 1 {
		t.Fatalf("json result %+v %v:\n%s", res, err, out)
	}
	out, _, err = keys("-o", "yaml", "status")
	if err != nil {
		t.Fatal(err)
	}
	var status model.KeyStatus
	if err := unmarshalOutput("yaml", out, &status); err != nil || status.ActiveMEK != 3 || !status.Counted || len(status.Accounts) != 1 {
		t.Fatalf("yaml status %+v %v:\n%s", status, err, out)
	}
	got, err := svc.Open(ctx, place, secrets.Sealed{NEK: 2, Ciphertext: mustSecret(t, st).Ciphertext})
	if err != nil || string(got) != "value" {
		t.Fatalf("the secret after both rotations: %q %v", got, err)
	}
}

func mustSecret(t *testing.T, st *store.Store) store.SealedSecret {
	t.Helper()
	sec, err := st.GetSecret(testutil.Context(t), "fn", "fn-v1", "TOKEN")
	if err != nil {
		t.Fatal(err)
	}
	return sec
}

func TestKeyProgressAndStatusText(t *testing.T) {
	now := time.Now()
	st := model.KeyStatus{ActiveMEK: 2,
		MEKs: []model.MEKStatus{{Version: 1, Status: "retiring", NEKs: 40}, {Version: 2, Status: "active", NEKs: 60}},
		Rotations: []model.KeyRotationProgress{
			{Kind: "mek", From: 1, Target: 2, Done: 40000, Total: 100000, State: model.RotationRunning, UpdatedAt: now},
			{Kind: "nek", Account: "acct", From: 3, Target: 4, Done: 10, Total: 50, Changed: 2, State: model.RotationInterrupted, UpdatedAt: now},
		}}
	for _, tc := range []struct {
		kind, account, want string
	}{
		{"mek", "", "re-wrapped 40000/100000 NEKs (MEK v1 -> v2)"},
		{"nek", "acct", "checked 10/50 secrets, re-encrypted 2 (account acct, NEK v3 -> v4)"},
		{"nek", "other", ""},
	} {
		t.Run(tc.kind+tc.account, func(t *testing.T) {
			if got := progressLine(st, tc.kind, tc.account); got != tc.want {
				t.Fatalf("got %q, want %q", got, tc.want)
			}
		})
	}
	var b bytes.Buffer
	if err := writeKeyStatus(&b, st, now); err != nil {
		t.Fatal(err)
	}
	for _, want := range []string{"40000/100000 NEKs", "running", "10/50 secrets checked, 2 re-encrypted", "interrupted",
		"finish it with `gantry keys nek rotate --account acct`"} {
		if !strings.Contains(b.String(), want) {
			t.Errorf("status lacks %q:\n%s", want, b.String())
		}
	}
}
