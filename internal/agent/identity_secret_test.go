package agent_test

import (
	"context"
	"testing"
	"time"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/gantry-dev/gantry/internal/agent"
	"github.com/gantry-dev/gantry/internal/model"
	"github.com/gantry-dev/gantry/internal/testutil"
	"github.com/gantry-dev/gantry/internal/testutil/kubetest"
)

// TestSecretIdentity keeps an identity in a Secret of a real API server: the
// first start enrolls and saves it, a restart reuses it, and a renewal
// updates it in place.
func TestSecretIdentity(t *testing.T) {
	env := kubetest.Start(t, kubetest.Options{NoScheduler: true, NoControllerManager: true, NoKwok: true})
	ctx := testutil.Context(t)
	store := agent.SecretIdentity{Secrets: env.Client.CoreV1().Secrets("default"), Namespace: "default", Name: "gantry-agent-identity"}
	exchanges := 0
	enroll := func(ctx context.Context) (model.AgentCredential, error) {
		exchanges++
		return model.AgentCredential{ClusterID: "c1", Credential: "gantry-cluster.c1.first", ExpiresAt: time.Now().Add(time.Hour)}, nil
	}
	first, err := agent.Enroll(ctx, store, enroll)
	if err != nil || first.ClusterID != "c1" {
		t.Fatalf("enroll: %+v %v", first, err)
	}
	again, err := agent.Enroll(ctx, store, enroll)
	if err != nil || again.Credential != first.Credential || exchanges != 1 {
		t.Fatalf("a restart enrolled again: %+v %v (%d exchanges)", again, err, exchanges)
	}
	next := first
	next.Credential = "gantry-cluster.c1.renewed"
	if err := store.Save(ctx, next); err != nil {
		t.Fatal(err)
	}
	got, ok, err := store.Load(ctx)
	if err != nil || !ok || got.Credential != next.Credential {
		t.Fatalf("after renewal: %+v %v %v", got, ok, err)
	}
	sec, err := env.Client.CoreV1().Secrets("default").Get(ctx, "gantry-agent-identity", metav1.GetOptions{})
	if err != nil || len(sec.Data) != 1 {
		t.Fatalf("secret: %v %v", sec, err)
	}
}
