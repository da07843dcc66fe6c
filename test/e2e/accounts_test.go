package e2e

import (
	"fmt"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/gantry-dev/gantry/internal/client"
	"github.com/gantry-dev/gantry/internal/controlplane"
	"github.com/gantry-dev/gantry/internal/dev"
	"github.com/gantry-dev/gantry/internal/model"
	"github.com/gantry-dev/gantry/internal/testutil"
)

// TestClustersServeOnlyTheirAccount: a second account can deploy, but its
// instance never lands on the first account's cluster, and it sees no
// cluster groups or GPUs, until the cluster's owner lists it in
// authorizedNCAIds; removing it again moves the instance off.
func TestClustersServeOnlyTheirAccount(t *testing.T) {
	t.Parallel()
	p := startPlatform(t, t.TempDir())
	ctx := testutil.Context(t)
	tok, err := p.c.MintAdminToken(ctx, model.AdminKeyRequest{NCAID: "other-account"})
	if err != nil {
		t.Fatal(err)
	}
	other := client.New(p.URL(), tok.Value)
	f, err := other.CreateFunction(ctx, selfFunction(t, "guest", "echo"))
	if err != nil {
		t.Fatal(err)
	}
	if _, err := other.CreateDeployment(ctx, f.ID, f.VersionID, model.DeploymentRequest{Specs: []model.GPUSpec{
		{GPU: "H100", MinInstances: 1, MaxInstances: 1}}}); err != nil {
		t.Fatal(err)
	}
	// Pending, and saying why.
	testutil.WaitFor(t, 30*time.Second, func() error {
		d, err := other.GetDeployment(ctx, f.ID, f.VersionID)
		if err != nil {
			return err
		}
		for _, h := range d.HealthInfo {
			if strings.Contains(h.Error, "no registered cluster serves account other-account") {
				return nil
			}
		}
		return fmt.Errorf("deployment %s, healthInfo %+v", d.FunctionStatus, d.HealthInfo)
	})
	if n := len(versionProcesses(t, f.VersionID)); n != 0 {
		t.Fatalf("the other account's instance runs on the first account's cluster (%d processes)", n)
	}
	if groups, err := other.ClusterGroups(ctx); err != nil || len(groups) != 0 {
		t.Fatalf("the other account sees cluster groups %+v (%v)", groups, err)
	}
	resp, err := http.DefaultClient.Do(p.pexecRequestAs(t, f, tok.Value))
	if err != nil {
		t.Fatal(err)
	}
	assertProblem(t, resp, http.StatusServiceUnavailable, "")

	// The owner authorizes the other account on its cluster.
	setAuthorized := func(accounts ...string) {
		t.Helper()
		cl, err := p.c.GetCluster(ctx, controlplane.DefaultAccount, dev.LocalCluster)
		if err != nil {
			t.Fatal(err)
		}
		if _, err := p.c.UpdateCluster(ctx, controlplane.DefaultAccount, cl.ID, model.ClusterRequest{
			ClusterName: cl.Name, ClusterGroupName: cl.GroupName, AuthorizedNCAIDs: accounts}); err != nil {
			t.Fatal(err)
		}
	}
	setAuthorized("other-account")
	(&platform{c: other}).waitStatus(t, f, model.StatusActive)
	testutil.WaitFor(t, 30*time.Second, func() error {
		resp, err := http.DefaultClient.Do(p.pexecRequestAs(t, f, tok.Value))
		if err != nil {
			return err
		}
		resp.Body.Close()
		if resp.StatusCode != http.StatusOK {
			return fmt.Errorf("invoke as the authorized account: %d", resp.StatusCode)
		}
		return nil
	})
	if groups, err := other.ClusterGroups(ctx); err != nil || len(groups) != 1 {
		t.Fatalf("the authorized account sees cluster groups %+v (%v), want the one", groups, err)
	}

	// Authorization withdrawn: the instance leaves the cluster.
	setAuthorized()
	testutil.WaitFor(t, 30*time.Second, func() error {
		if n := len(versionProcesses(t, f.VersionID)); n != 0 {
			return fmt.Errorf("%d processes of the other account still run", n)
		}
		return nil
	})
}

// pexecRequestAs is a pexec call of f with another credential.
func (p *platform) pexecRequestAs(t *testing.T, f model.Function, token string) *http.Request {
	t.Helper()
	req := newRequest(t, http.MethodPost, p.URL()+"/v2/nvcf/pexec/functions/"+f.ID, token)
	req.Header.Set("NVCF-POLL-SECONDS", "5")
	return req
}
