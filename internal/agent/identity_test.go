package agent

import (
	"context"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/gantry-dev/gantry/internal/model"
)

func TestEnrollOnceThenReuse(t *testing.T) {
	dir := t.TempDir()
	calls := 0
	src := func(ctx context.Context, tok string) (model.AgentCredential, error) {
		calls++
		if tok != "gantry-bootstrap.c1.secret" {
			return model.AgentCredential{}, ErrRefused
		}
		return model.AgentCredential{ClusterID: "c1", Credential: "gantry-cluster.c1.x", ExpiresAt: time.Now().Add(time.Hour), NATSURL: "nats://n"}, nil
	}
	ctx := context.Background()
	with := func(tok string) func(context.Context) (model.AgentCredential, error) {
		return func(ctx context.Context) (model.AgentCredential, error) { return src(ctx, tok) }
	}
	if _, err := Enroll(ctx, FileIdentity(dir), with("wrong")); err == nil {
		t.Fatal("enrolled with a refused token")
	}
	id, err := Enroll(ctx, FileIdentity(dir), with("gantry-bootstrap.c1.secret"))
	if err != nil || id.ClusterID != "c1" {
		t.Fatalf("enroll: %+v %v", id, err)
	}
	st, err := os.Stat(filepath.Join(dir, identityFile))
	if err != nil || st.Mode().Perm() != 0o600 {
		t.Fatalf("identity file: %v %v", st, err)
	}
	// A restart with the (now used) bootstrap token reuses the identity.
	again, err := Enroll(ctx, FileIdentity(dir), with("gantry-bootstrap.c1.secret"))
	if err != nil || again.Credential != id.Credential || !again.ExpiresAt.Equal(id.ExpiresAt) || calls != 2 {
		t.Fatalf("restart re-enrolled: %+v %v, %d exchanges", again, err, calls)
	}
	if err := os.WriteFile(filepath.Join(dir, identityFile), []byte("{"), 0o600); err != nil {
		t.Fatal(err)
	}
	if _, err := Enroll(ctx, FileIdentity(dir), with("")); err == nil {
		t.Fatal("a damaged identity was accepted")
	}
}

func TestKeepRenewedStopsWhenRefused(t *testing.T) {
	dir := t.TempDir()
	renewed := make(chan Identity, 1)
	n := 0
	src := func(ctx context.Context, tok string) (model.AgentCredential, error) {
		n++
		if n > 1 {
			return model.AgentCredential{}, ErrRefused
		}
		return model.AgentCredential{ClusterID: "c1", Credential: "gantry-cluster.c1.new", ExpiresAt: time.Now()}, nil
	}
	id := Identity{ClusterID: "c1", Credential: "gantry-cluster.c1.old", ExpiresAt: time.Now()}
	err := KeepRenewed(context.Background(), FileIdentity(dir), id, src, func(i Identity) { renewed <- i })
	if err == nil {
		t.Fatal("a refused renewal did not stop renewing")
	}
	if got := <-renewed; got.Credential != "gantry-cluster.c1.new" {
		t.Fatalf("renewed to %+v", got)
	}
	saved, ok, _ := LoadIdentity(dir)
	if !ok || saved.Credential != "gantry-cluster.c1.new" {
		t.Fatalf("renewal not saved: %+v", saved)
	}
}
