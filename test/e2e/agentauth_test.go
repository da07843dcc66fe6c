package e2e

import (
	"crypto/rand"
	"crypto/rsa"
	"encoding/base64"
	"encoding/json"
	"math/big"
	"strings"
	"testing"
	"time"

	"github.com/golang-jwt/jwt/v5"
	"github.com/nats-io/nats.go"

	"github.com/gantry-dev/gantry/internal/bus"
	"github.com/gantry-dev/gantry/internal/client"
	"github.com/gantry-dev/gantry/internal/controlplane"
	"github.com/gantry-dev/gantry/internal/model"
	"github.com/gantry-dev/gantry/internal/registry"
	"github.com/gantry-dev/gantry/internal/testutil"
)

// TestAgentAuthModes: an agent proves its cluster with the one-time
// bootstrap token or with a JWT of the cluster's own issuer (both over the
// HTTP API), and a credential for cluster A can act neither as cluster B
// over HTTP nor over NATS.
func TestAgentAuthModes(t *testing.T) {
	t.Parallel()
	f := startFleet(t)
	ctx := testutil.Context(t)
	a := f.join("a", "prod", "r1", 4, "H100") // bootstrap mode, as gantry agent does it

	// JWT mode: register a cluster with its issuer's JWKS, then exchange a
	// service-account-like token for a credential over HTTP.
	key, err := rsa.GenerateKey(rand.Reader, 2048)
	if err != nil {
		t.Fatal(err)
	}
	jwks, _ := json.Marshal(map[string]any{"keys": []map[string]string{{"kty": "RSA", "kid": "sa-1",
		"n": base64.RawURLEncoding.EncodeToString(key.N.Bytes()), "e": base64.RawURLEncoding.EncodeToString(big.NewInt(int64(key.E)).Bytes())}}})
	reg, err := f.c.RegisterCluster(ctx, controlplane.DefaultAccount, model.ClusterRequest{ClusterName: "k8s", ClusterGroupName: "prod",
		Region: "r2", OIDCIssuer: "https://kubernetes.default.svc", JWKS: jwks})
	if err != nil {
		t.Fatal(err)
	}
	tok := jwt.NewWithClaims(jwt.SigningMethodRS256, jwt.MapClaims{"iss": "https://kubernetes.default.svc",
		"aud": registry.JWTAudience, "sub": "system:serviceaccount:gantry:agent", "exp": time.Now().Add(time.Hour).Unix()})
	tok.Header["kid"] = "sa-1"
	signed, err := tok.SignedString(key)
	if err != nil {
		t.Fatal(err)
	}
	cred, err := client.New(f.cp.URL(), signed).AgentCredentialWithJWT(ctx, reg.ClusterID)
	if err != nil || cred.ClusterID != reg.ClusterID || cred.NATSURL == "" {
		t.Fatalf("JWT exchange: %+v %v", cred, err)
	}
	// The same JWT does not open cluster a.
	_, err = client.New(f.cp.URL(), signed).AgentCredentialWithJWT(ctx, a.clusterID)
	if client.StatusCode(err) != 401 || !strings.Contains(err.Error(), "jwks") {
		t.Fatalf("k8s cluster's JWT for cluster a: %v", err)
	}

	// Over HTTP, a's credential renews as a, never as anything else.
	aID := mustIdentity(t, a)
	renewed, err := client.New(f.cp.URL(), aID.Credential).AgentCredential(ctx)
	if err != nil || renewed.ClusterID != a.clusterID {
		t.Fatalf("renewal of a: %+v %v", renewed, err)
	}

	// Over NATS, a's credential cannot report for the k8s cluster, watch
	// its desired state, or ask for its secrets.
	errs := make(chan error, 16)
	nc, err := nats.Connect(f.cp.NATSURL(), append(bus.AgentOptions(a.clusterID, renewed.Credential),
		nats.ErrorHandler(func(_ *nats.Conn, _ *nats.Subscription, err error) { errs <- err }))...)
	if err != nil {
		t.Fatal(err)
	}
	defer nc.Close()
	for _, subject := range []string{bus.ReportSubject(reg.ClusterID), bus.SecretsSubject(reg.ClusterID), "$KV." + bus.DesiredBucket + "." + reg.ClusterID} {
		if err := nc.Publish(subject, []byte(`{}`)); err != nil {
			t.Fatal(err)
		}
		if err := nc.Flush(); err != nil {
			t.Fatal(err)
		}
		select {
		case err := <-errs:
			if !strings.Contains(err.Error(), "Permissions Violation") || !strings.Contains(err.Error(), subject) {
				t.Fatalf("publishing to %s: %v", subject, err)
			}
		case <-time.After(5 * time.Second):
			t.Fatalf("cluster a's credential published to %s without a permissions violation", subject)
		}
	}
	// And a's own subjects work.
	if _, err := nc.Request(bus.ReportSubject(a.clusterID), []byte(`{"clusterId":"`+a.clusterID+`"}`), 5*time.Second); err != nil {
		t.Fatalf("a reporting for itself: %v", err)
	}
}
