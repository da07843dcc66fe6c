package e2e

import (
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/gantry-dev/gantry/internal/client"
	"github.com/gantry-dev/gantry/internal/controlplane"
	"github.com/gantry-dev/gantry/internal/model"
	"github.com/gantry-dev/gantry/internal/testutil"
)

// TestBusTLSWithBinary drives the built binary as an operator would:
// `gantry bus gen-secrets` makes the CA and certificates, `gantry server`
// serves NATS over mTLS with them, and `gantry agent` of a site connects
// with its own certificate and the CA, and its cluster turns READY. Agents
// with the wrong CA, or without a client certificate, exit with an error
// that says what to fix; and a server asked to listen beyond loopback
// without TLS refuses to start.
func TestBusTLSWithBinary(t *testing.T) {
	t.Parallel()
	if testing.Short() {
		t.Skip("builds the binary and runs a server and agents")
	}
	bin := buildGantry(t)
	env := isolatedEnv(t.TempDir())
	pki, otherPKI := filepath.Join(t.TempDir(), "bus"), filepath.Join(t.TempDir(), "other")
	out := runGantry(t, bin, env, "bus", "gen-secrets", "--out", pki, "--hostname", "127.0.0.1", "--cpc", "site-a,site-b")
	if !strings.Contains(out, "wrote cpc/site-a/tls/tls.key (0600)") || strings.Contains(out, "PRIVATE KEY") {
		t.Fatalf("gen-secrets printed:\n%s", out)
	}
	runGantry(t, bin, env, "bus", "gen-secrets", "--out", otherPKI, "--hostname", "127.0.0.1", "--cpc", "site-a")
	f := func(dir, p string) string { return filepath.Join(dir, filepath.FromSlash(p)) }

	dataDir := t.TempDir()
	apiAddr, natsAddr := freeAddr(t), freeAddr(t)
	url := "http://" + apiAddr
	server := startAgentProcess(t, bin, "gantry server", "server", "--data-dir", dataDir, "--listen", apiAddr, "--grpc-listen", "127.0.0.1:0",
		"--nats-listen", natsAddr, "--admin-keys", "open", "--log-level", "warn",
		"--nats-tls-cert", f(pki, "csc/tls/tls.crt"), "--nats-tls-key", f(pki, "csc/tls/tls.key"), "--nats-tls-ca", f(pki, "csc/tls/ca.crt"))
	waitHealthy(t, url, server)
	if !strings.Contains(server.output(), "NATS:  tls://"+natsAddr) {
		t.Fatalf("the server does not advertise TLS:\n%s", server.output())
	}

	ctx := testutil.Context(t)
	tok, err := client.New(url, "").MintAdminToken(ctx, model.AdminKeyRequest{})
	if err != nil {
		t.Fatal(err)
	}
	c := client.New(url, tok.Value)
	register := func(name string) (id, bootstrapFile string) {
		t.Helper()
		reg, err := c.RegisterCluster(ctx, controlplane.DefaultAccount, model.ClusterRequest{ClusterName: name, ClusterGroupName: name})
		if err != nil {
			t.Fatal(err)
		}
		bootstrapFile = filepath.Join(t.TempDir(), "bootstrap")
		if err := os.WriteFile(bootstrapFile, []byte(reg.BootstrapToken), 0o600); err != nil {
			t.Fatal(err)
		}
		return reg.ClusterID, bootstrapFile
	}
	agentArgs := func(bootstrap string, tlsArgs ...string) []string {
		return append([]string{"agent", "--server", url, "--bootstrap-token-file", bootstrap, "--state-dir", t.TempDir(),
			"--gpus", "1", "--heartbeat", "1s", "--log-level", "warn"}, tlsArgs...)
	}

	// The site's own certificate and the CA: it connects and reports.
	id, bootstrap := register("site-a")
	startAgentProcess(t, bin, "gantry agent site-a", agentArgs(bootstrap,
		"--nats-tls-ca", f(pki, "cpc/site-a/tls/ca.crt"), "--nats-tls-cert", f(pki, "cpc/site-a/tls/tls.crt"), "--nats-tls-key", f(pki, "cpc/site-a/tls/tls.key"))...)
	testutil.WaitFor(t, binWaitTimeout, func() error {
		cl, err := c.GetCluster(ctx, controlplane.DefaultAccount, id)
		if err != nil {
			return err
		}
		if cl.Status != model.ClusterReady {
			return fmt.Errorf("cluster is %s", cl.Status)
		}
		return nil
	})

	// Wrong ones: the agent exits and says what to do.
	for _, tc := range []struct {
		name    string
		tlsArgs []string
		want    string
	}{
		{"the wrong CA", []string{"--nats-tls-ca", f(otherPKI, "ca/ca.crt"),
			"--nats-tls-cert", f(pki, "cpc/site-b/tls/tls.crt"), "--nats-tls-key", f(pki, "cpc/site-b/tls/tls.key")},
			"the server's certificate is not signed by a CA this client trusts: give the CA that signed it with --nats-tls-ca"},
		{"no client certificate", []string{"--nats-tls-ca", f(pki, "ca/ca.crt")},
			// Or, when the server's alert is lost to the closed socket (TLS 1.3):
			"the server requires a client certificate: give --nats-tls-cert and --nats-tls-key|it refused this client's certificate: give --nats-tls-cert and --nats-tls-key if none was given"},
		{"a client certificate of another CA", []string{"--nats-tls-ca", f(pki, "ca/ca.crt"),
			"--nats-tls-cert", f(otherPKI, "cpc/site-a/tls/tls.crt"), "--nats-tls-key", f(otherPKI, "cpc/site-a/tls/tls.key")},
			"refused this client's certificate"},
		{"a key that is not the certificate's", []string{"--nats-tls-ca", f(pki, "ca/ca.crt"),
			"--nats-tls-cert", f(pki, "cpc/site-b/tls/tls.crt"), "--nats-tls-key", f(pki, "cpc/site-a/tls/tls.key")},
			"are they a pair?"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, bootstrap := register("bad-" + strings.ReplaceAll(tc.name, " ", "-")[:12])
			p := startAgentProcess(t, bin, "gantry agent ("+tc.name+")", agentArgs(bootstrap, tc.tlsArgs...)...)
			select {
			case <-p.done:
			case <-time.After(binWaitTimeout):
				t.Fatalf("the agent kept running:\n%s", p.output())
			}
			found := false
			for _, want := range strings.Split(tc.want, "|") {
				found = found || strings.Contains(p.output(), want)
			}
			if !found {
				t.Fatalf("the agent said:\n%s\nwant it to say %q", p.output(), tc.want)
			}
			if strings.Contains(p.output(), "PRIVATE KEY") {
				t.Fatalf("the agent's output holds key material:\n%s", p.output())
			}
		})
	}

	// Plaintext beyond loopback is refused, with what to do.
	wide := startAgentProcess(t, bin, "gantry server (0.0.0.0)", "server", "--data-dir", t.TempDir(), "--listen", freeAddr(t), "--grpc-listen", "127.0.0.1:0",
		"--nats-listen", "0.0.0.0:0", "--admin-keys", "open", "--log-level", "warn")
	select {
	case <-wide.done:
	case <-time.After(binWaitTimeout):
		t.Fatalf("a server listening on 0.0.0.0 without TLS kept running:\n%s", wide.output())
	}
	if want := "would listen beyond loopback without TLS"; !strings.Contains(wide.output(), want) || !strings.Contains(wide.output(), "--nats-insecure") {
		t.Fatalf("the server said:\n%s\nwant %q and the flags that fix it", wide.output(), want)
	}
}
