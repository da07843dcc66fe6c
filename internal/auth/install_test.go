package auth

import (
	"bytes"
	"encoding/json"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"

	"github.com/gantry-dev/gantry/internal/problem"
)

func TestInstallGate(t *testing.T) {
	const secret = "bootstrap-secret-0123456789"
	gates := map[InstallMode]*InstallGate{}
	for _, m := range []InstallMode{InstallLoopback, InstallBootstrap, InstallOpen} {
		g, err := NewInstallGate(m, secret, slog.New(slog.DiscardHandler))
		if err != nil {
			t.Fatal(err)
		}
		gates[m] = g
	}
	const local4, local4b, local6, mapped, remote, remote6 = "127.0.0.1:5000", "127.8.9.10:1", "[::1]:5000", "[::ffff:127.0.0.1]:80", "10.1.2.3:5000", "[2001:db8::1]:443"
	tests := []struct {
		name       string
		mode       InstallMode
		remote     string
		auth       string
		wantStatus int
		wantDetail string
	}{
		{"loopback admits 127.0.0.1", InstallLoopback, local4, "", http.StatusOK, ""},
		{"loopback admits all of 127/8", InstallLoopback, local4b, "", http.StatusOK, ""},
		{"loopback admits ::1", InstallLoopback, local6, "", http.StatusOK, ""},
		{"loopback admits v4-mapped 127.0.0.1", InstallLoopback, mapped, "", http.StatusOK, ""},
		{"loopback refuses a remote v4 client", InstallLoopback, remote, "", http.StatusForbidden, "gantry token admin"},
		{"loopback refuses a remote v6 client", InstallLoopback, remote6, "", http.StatusForbidden, "loopback"},
		{"loopback is not fooled by the secret", InstallLoopback, remote, "Bearer " + secret, http.StatusForbidden, "loopback"},
		{"loopback refuses an unparsable address", InstallLoopback, "@", "", http.StatusForbidden, "loopback"},
		{"bootstrap admits the secret from afar", InstallBootstrap, remote, "Bearer " + secret, http.StatusOK, ""},
		{"bootstrap needs the secret locally too", InstallBootstrap, local4, "", http.StatusUnauthorized, "--bootstrap-secret-file"},
		{"bootstrap refuses a wrong secret", InstallBootstrap, remote, "Bearer " + secret + "x", http.StatusUnauthorized, "wrong"},
		{"bootstrap refuses a prefix of the secret", InstallBootstrap, remote, "Bearer " + secret[:10], http.StatusUnauthorized, "wrong"},
		{"open admits anyone", InstallOpen, remote6, "", http.StatusOK, ""},
	}
	ok := http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { w.WriteHeader(http.StatusOK) })
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			r := httptest.NewRequest("POST", "/v1/admin/keys", nil)
			r.RemoteAddr = tc.remote
			if tc.auth != "" {
				r.Header.Set("Authorization", tc.auth)
			}
			w := httptest.NewRecorder()
			gates[tc.mode].Gate(ok).ServeHTTP(w, r)
			if w.Code != tc.wantStatus {
				t.Fatalf("status %d, want %d: %s", w.Code, tc.wantStatus, w.Body)
			}
			if tc.wantStatus == http.StatusOK {
				return
			}
			var body problem.Body
			if w.Header().Get("Content-Type") != problem.ContentType || json.Unmarshal(w.Body.Bytes(), &body) != nil ||
				body.Status != tc.wantStatus || !strings.Contains(body.Detail, tc.wantDetail) || body.RequestID == "" {
				t.Fatalf("problem %s %s", w.Header(), w.Body)
			}
			if strings.Contains(w.Body.String(), secret) {
				t.Fatal("the answer repeats the secret")
			}
			if tc.wantStatus == http.StatusUnauthorized && w.Header().Get("WWW-Authenticate") == "" {
				t.Fatal("401 without WWW-Authenticate")
			}
		})
	}
}

func TestNewInstallGate(t *testing.T) {
	var logs bytes.Buffer
	log := slog.New(slog.NewTextHandler(&logs, nil))
	tests := []struct {
		name    string
		mode    InstallMode
		secret  string
		wantErr bool
	}{
		{"loopback needs no secret", InstallLoopback, "", false},
		{"bootstrap needs a secret", InstallBootstrap, "", true},
		{"bootstrap refuses a short secret", InstallBootstrap, "short", true},
		{"bootstrap with a secret", InstallBootstrap, strings.Repeat("s", MinBootstrapSecretLen), false},
		{"open", InstallOpen, "", false},
		{"unknown mode", InstallMode("closed"), "", true},
		{"empty mode", InstallMode(""), "", true},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			g, err := NewInstallGate(tc.mode, tc.secret, log)
			if (err != nil) != tc.wantErr {
				t.Fatalf("NewInstallGate: %v", err)
			}
			if err == nil && g.Mode() != tc.mode {
				t.Fatalf("mode %q", g.Mode())
			}
		})
	}
	if !strings.Contains(logs.String(), "level=WARN") || !strings.Contains(logs.String(), "OPEN") {
		t.Fatalf("open mode was not logged loudly: %q", logs.String())
	}
	if strings.Count(logs.String(), "\n") != 1 {
		t.Fatalf("only open mode should log: %q", logs.String())
	}
	for _, s := range []string{"loopback", "bootstrap", "open"} {
		if m, err := ParseInstallMode(s); err != nil || string(m) != s {
			t.Fatalf("ParseInstallMode(%q) = %q, %v", s, m, err)
		}
	}
	if _, err := ParseInstallMode("LOOPBACK"); err == nil {
		t.Fatal("ParseInstallMode accepted an unknown spelling")
	}
}
