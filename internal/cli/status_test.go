package cli

import (
	"bytes"
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/gantry-dev/gantry/internal/model"
	"github.com/gantry-dev/gantry/internal/problem"
	"github.com/gantry-dev/gantry/internal/testutil"
	"github.com/gantry-dev/gantry/internal/web"
)

// TestStatusCommand renders canned answers of GET /v1/gantry/status and
// checks the exit code: 0 unless a check failed.
func TestStatusCommand(t *testing.T) {
	healthy := model.PlatformStatus{Status: model.CheckOK, Healthy: true, Checks: []model.StatusCheck{
		{Name: "etcd", Status: model.CheckOK, Message: "1 member(s), all up"},
		{Name: "agents", Status: model.CheckOK, Message: "1 of 1 agents connected"},
	}}
	warned := model.PlatformStatus{Status: model.CheckWarn, Healthy: true, Checks: []model.StatusCheck{
		{Name: "clusters", Status: model.CheckWarn, Message: "no clusters connected: register one"},
	}}
	failed := model.PlatformStatus{Status: model.CheckFail, Healthy: false, Checks: []model.StatusCheck{
		{Name: "etcd", Status: model.CheckOK, Message: "1 member(s), all up"},
		{Name: "agents", Status: model.CheckFail, Message: "no agents connected (0 of 1): start `gantry agent`",
			Details: []string{"edge (c1): last heartbeat 20s ago"}},
	}}
	for _, tc := range []struct {
		name     string
		answer   *model.PlatformStatus // nil: a problem answer
		args     []string
		code     int
		stdout   []string
		stderr   string
		jsonBack bool
	}{
		{name: "healthy", answer: &healthy, code: 0, stdout: []string{"CHECK", "etcd", "OK", "1 of 1 agents connected", "Overall: OK"}},
		{name: "warnings exit 0", answer: &warned, code: 0, stdout: []string{"WARN", "no clusters connected", "Overall: WARN"}},
		{name: "failed", answer: &failed, code: 1, stdout: []string{"FAIL", "edge (c1): last heartbeat 20s ago", "Overall: FAIL"}, stderr: "the platform is unhealthy: failed: agents"},
		{name: "json healthy", answer: &healthy, args: []string{"-o", "json"}, code: 0, jsonBack: true},
		{name: "json failed", answer: &failed, args: []string{"-o", "json"}, code: 1, jsonBack: true, stderr: "unhealthy"},
		{name: "yaml", answer: &healthy, args: []string{"-o", "yaml"}, code: 0, stdout: []string{"healthy: true", "name: etcd"}},
		{name: "refused by the gate", code: 1, stderr: "403"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			mux := http.NewServeMux()
			mux.Handle("GET /v1/gantry/status", web.Unguarded(nil, func(w http.ResponseWriter, r *http.Request) error {
				if tc.answer == nil {
					return problem.Errorf(http.StatusForbidden, "installation routes answer only this machine")
				}
				return web.JSON(w, http.StatusOK, tc.answer)
			}))
			srv := httptest.NewServer(web.ProblemFallback(mux))
			t.Cleanup(srv.Close)
			cfg := filepath.Join(t.TempDir(), "config.yaml")
			if err := os.WriteFile(cfg, nil, 0o600); err != nil {
				t.Fatal(err)
			}
			var out, errb bytes.Buffer
			args := append([]string{"--server", srv.URL, "--config", cfg, "status"}, tc.args...)
			code := run(testutil.Context(t), args, strings.NewReader(""), &out, &errb)
			if code != tc.code {
				t.Fatalf("exit code %d, want %d; stdout:\n%s\nstderr:\n%s", code, tc.code, out.String(), errb.String())
			}
			for _, want := range tc.stdout {
				if !strings.Contains(out.String(), want) {
					t.Errorf("stdout lacks %q:\n%s", want, out.String())
				}
			}
			if !strings.Contains(errb.String(), tc.stderr) {
				t.Errorf("stderr lacks %q:\n%s", tc.stderr, errb.String())
			}
			if tc.jsonBack {
				var got model.PlatformStatus
				if err := json.Unmarshal(out.Bytes(), &got); err != nil {
					t.Fatalf("-o json is not JSON: %v\n%s", err, out.String())
				}
				if got.Healthy != tc.answer.Healthy || len(got.Checks) != len(tc.answer.Checks) {
					t.Errorf("-o json gave %+v, want %+v", got, *tc.answer)
				}
			}
		})
	}
}
