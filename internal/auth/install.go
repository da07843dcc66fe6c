package auth

import (
	"crypto/sha256"
	"crypto/subtle"
	"fmt"
	"log/slog"
	"net/http"
	"net/netip"

	"github.com/google/uuid"

	"github.com/gantry-dev/gantry/internal/problem"
)

// InstallMode says who may mint admin tokens (POST /v1/admin/keys) and use
// the other installation-level endpoints, such as signing-key rotation.
type InstallMode string

// Installation modes.
const (
	// InstallLoopback admits requests from this machine only (127.0.0.0/8
	// or ::1): whoever can run commands on the server host is its admin.
	// The default for `gantry dev`. Behind a reverse proxy on the same
	// host every request looks local; use InstallBootstrap there.
	InstallLoopback InstallMode = "loopback"
	// InstallBootstrap admits requests whose bearer credential is the
	// installation's bootstrap secret. The default for `gantry server`.
	InstallBootstrap InstallMode = "bootstrap"
	// InstallOpen admits everyone: anyone who reaches the API can make
	// themselves admin. Only for explicit opt-in on isolated networks.
	InstallOpen InstallMode = "open"
)

// MinBootstrapSecretLen is the shortest bootstrap secret accepted; a
// bootstrap secret guards admin rights, so it must not be guessable.
const MinBootstrapSecretLen = 16

// ParseInstallMode reads a mode name as a flag or config file gives it.
func ParseInstallMode(s string) (InstallMode, error) {
	switch m := InstallMode(s); m {
	case InstallLoopback, InstallBootstrap, InstallOpen:
		return m, nil
	}
	return "", fmt.Errorf("auth: installation mode %q: use loopback, bootstrap or open", s)
}

// InstallGate guards the installation-level endpoints by the configured
// mode. It keeps only the bootstrap secret's SHA-256.
type InstallGate struct {
	mode InstallMode
	sum  [sha256.Size]byte
}

// NewInstallGate builds a gate. Bootstrap mode needs a secret of at least
// MinBootstrapSecretLen characters; the others ignore it. Open mode is
// logged as a warning here, once, where an operator reading the start-up
// log will see it.
func NewInstallGate(mode InstallMode, bootstrapSecret string, log *slog.Logger) (*InstallGate, error) {
	if _, err := ParseInstallMode(string(mode)); err != nil {
		return nil, err
	}
	g := &InstallGate{mode: mode}
	switch mode {
	case InstallBootstrap:
		if len(bootstrapSecret) < MinBootstrapSecretLen {
			return nil, fmt.Errorf("auth: installation mode bootstrap needs a bootstrap secret of at least %d characters", MinBootstrapSecretLen)
		}
		g.sum = sha256.Sum256([]byte(bootstrapSecret))
	case InstallOpen:
		if log == nil {
			log = slog.Default()
		}
		log.Warn("auth: INSTALLATION GATE IS OPEN: anyone who can reach this API can mint admin tokens " +
			"and take over every account. Use installation mode loopback or bootstrap unless this network is isolated.")
	}
	return g, nil
}

// Mode returns the gate's mode.
func (g *InstallGate) Mode() InstallMode { return g.mode }

// Gate returns h guarded by the gate. Refusals are problem bodies: 403 when
// the request does not come from this machine (loopback mode), 401 when the
// bootstrap secret is missing or wrong (bootstrap mode), each saying what
// to do instead.
func (g *InstallGate) Gate(h http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if err := g.check(r); err != nil {
			id := r.Header.Get("X-Request-Id")
			if id == "" || len(id) > 64 {
				id = uuid.NewString()
			}
			w.Header().Set("X-Request-Id", id)
			if err.Status == http.StatusUnauthorized {
				w.Header().Set("WWW-Authenticate", `Bearer realm="gantry-installation"`)
			}
			problem.Write(w, r, id, err)
			return
		}
		h.ServeHTTP(w, r)
	})
}

// check answers nil when r may pass.
func (g *InstallGate) check(r *http.Request) *problem.Error {
	switch g.mode {
	case InstallOpen:
		return nil
	case InstallLoopback:
		if isLoopback(r.RemoteAddr) {
			return nil
		}
		return problem.Errorf(http.StatusForbidden,
			"this installation mints admin tokens only for requests from the server's own machine (installation mode loopback); "+
				"run `gantry token admin` on the server host, or restart the server with installation mode bootstrap and pass its bootstrap secret")
	}
	tok, ok := BearerToken(r)
	if !ok || tok == "" {
		return problem.Errorf(http.StatusUnauthorized,
			"this installation mints admin tokens only for holders of its bootstrap secret (installation mode bootstrap): "+
				"send 'Authorization: Bearer <bootstrap secret>', e.g. `gantry token admin --bootstrap-secret-file <file>` or GANTRY_BOOTSTRAP_SECRET")
	}
	sum := sha256.Sum256([]byte(tok))
	if subtle.ConstantTimeCompare(sum[:], g.sum[:]) != 1 {
		return problem.Errorf(http.StatusUnauthorized,
			"the bootstrap secret is wrong: use the one the server was started with (installation mode bootstrap)")
	}
	return nil
}

// isLoopback reports whether a RemoteAddr ("ip:port") is this machine.
func isLoopback(remoteAddr string) bool {
	ap, err := netip.ParseAddrPort(remoteAddr)
	if err != nil {
		return false
	}
	return ap.Addr().Unmap().IsLoopback()
}
