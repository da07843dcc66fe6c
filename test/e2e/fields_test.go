package e2e

import (
	"errors"
	"io"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/gantry-dev/gantry/internal/client"
	"github.com/gantry-dev/gantry/internal/controlplane"
	"github.com/gantry-dev/gantry/internal/model"
	"github.com/gantry-dev/gantry/internal/testutil"
)

// TestFieldsHonouredOrRefused: every NVCF field of a function or a
// deployment specification is either honoured or refused with a 400
// problem saying Gantry does not support it yet and what to do instead,
// never stored and ignored. Through the real API of a control plane with
// two clusters: each refused field is sent alone (and all at once, to see
// them listed together), nothing refused is stored, and attributes are
// honoured as capabilities the cluster must have.
func TestFieldsHonouredOrRefused(t *testing.T) {
	t.Parallel()
	f := startFleet(t)
	// plain has fewer GPUs, so bin-packing alone would fill it first.
	plain := f.join("plain", "prod", "r1", 2, "H100")
	fast := f.join("fast", "prod", "r2", 4, "H100")
	setCapabilities(t, f, fast, []string{"nvlink"})
	ctx := testutil.Context(t)

	live := f.deployEcho("live", model.GPUSpec{GPU: "H100", MinInstances: 0, MaxInstances: 1})
	dep := f.waitStatus(live, model.StatusActive)
	idle, err := f.c.CreateFunction(ctx, selfFunction(t, "idle", "echo"))
	if err != nil {
		t.Fatal(err)
	}

	t.Run("refused", func(t *testing.T) {
		var (
			fnPath      = "/v2/nvcf/functions"
			versionPath = fnPath + "/" + idle.ID + "/versions"
			idleDeploy  = "/v2/nvcf/deployments/functions/" + idle.ID + "/versions/" + idle.VersionID
			liveDeploy  = "/v2/nvcf/deployments/functions/" + live.ID + "/versions/" + live.VersionID
			patchPath   = "/v2/nvcf/deployments/" + dep.ID + "/gpu-specifications/" + dep.Specs[0].ID
		)
		before, err := f.c.ListFunctions(ctx)
		if err != nil {
			t.Fatal(err)
		}
		selector := func(field string) []string {
			return []string{"deploymentSpecifications[0]." + field + " is not supported", "Gantry does not select instances by", "attributes"}
		}
		cases := []validationCase{
			// Function bodies.
			{name: "models", body: fnBody(func(m jsonObj) {
				m["models"] = []jsonObj{{"name": "llama", "version": "1", "uri": "ngc://models/llama:1"}}
			}),
				detail: []string{`models[0].uri "ngc://models/llama:1" is not supported: Gantry's agents do not pull from the NGC model registry yet`, "https URL"}},
			{name: "models on a new version", path: versionPath, body: fnBody(func(m jsonObj) { m["models"] = []jsonObj{{"name": "m", "version": "1", "uri": "u"}} }),
				detail: []string{`models[0].uri "u" has no scheme`}},
			{name: "resources", body: fnBody(func(m jsonObj) { m["resources"] = []jsonObj{{"name": "r", "version": "1", "uri": "ngc://r:1"}} }),
				detail: []string{`resources[0].uri "ngc://r:1" is not supported`}},
			{name: "helmChart with containerImage", body: fnBody(func(m jsonObj) {
				m["helmChart"], m["helmChartServiceName"] = "oci://registry.example/charts/echo-1.0.tgz", "echo"
			}), detail: []string{"containerImage cannot be combined with helmChart: the chart says what runs"}},
			{name: "helmChartServiceName", body: fnBody(func(m jsonObj) { m["helmChartServiceName"] = "echo" }),
				detail: []string{"helmChartServiceName is set without helmChart"}},
			{name: "functionType LLM", body: fnBody(func(m jsonObj) { m["functionType"] = "LLM" }),
				detail: []string{`functionType "LLM" is not supported: Gantry does not support LLM functions yet`, `use "DEFAULT" or "STREAMING"`}},
			{name: "telemetries", body: fnBody(func(m jsonObj) {
				m["telemetries"] = jsonObj{"logsTelemetryId": "l-1", "metricsTelemetryId": "m-1", "tracesTelemetryId": "t-1"}
			}), detail: []string{"telemetries.logsTelemetryId l-1 is not a telemetry of this account", "POST /v2/nvcf/telemetries"}},
			{name: "llmInvocationConfig", body: fnBody(func(m jsonObj) { m["llmInvocationConfig"] = jsonObj{"chatTemplate": "x"} }),
				detail: []string{"llmInvocationConfig is not supported", "remove it"}},
			{name: "utilsContainerImage", body: fnBody(func(m jsonObj) { m["utilsContainerImage"] = "nvcr.io/nvidia/utils:1" }),
				detail: []string{"utilsContainerImage is not supported", "remove it"}},
			{name: "every function field at once", body: fnBody(func(m jsonObj) {
				m["models"] = []jsonObj{{"name": "m", "version": "1", "uri": "u"}}
				m["resources"] = []jsonObj{{"name": "r", "version": "1", "uri": "u"}}
				m["functionType"] = "LLM"
				m["llmInvocationConfig"] = jsonObj{"a": 1}
				m["utilsContainerImage"] = "u"
			}), detail: []string{`models[0].uri "u" has no scheme`, `; resources[0].uri "u" has no scheme`, `; functionType "LLM" is not supported`,
				"; llmInvocationConfig is not supported", "; utilsContainerImage is not supported"}},

			// Deployment specifications.
			{name: "configuration", path: idleDeploy, body: deployBody(func(s jsonObj) { s["configuration"] = jsonObj{"replicas": 2} }),
				detail: []string{"deploymentSpecifications[0].configuration is a Helm chart's values", "not a Helm chart", "containerEnvironment"}},
			{name: "preferredOrder", path: idleDeploy, body: deployBody(func(s jsonObj) { s["preferredOrder"] = 1 }),
				detail: []string{"deploymentSpecifications[0].preferredOrder is not supported", "fillAndSpill", "/v1/gantry/policies"}},
			{name: "cpuArch", path: idleDeploy, body: deployBody(func(s jsonObj) { s["cpuArch"] = "arm64" }), detail: selector("cpuArch")},
			{name: "os", path: idleDeploy, body: deployBody(func(s jsonObj) { s["os"] = "linux" }), detail: selector("os")},
			{name: "driverVersion", path: idleDeploy, body: deployBody(func(s jsonObj) { s["driverVersion"] = "550.54" }), detail: selector("driverVersion")},
			{name: "storage", path: idleDeploy, body: deployBody(func(s jsonObj) { s["storage"] = "100Gi" }), detail: selector("storage")},
			{name: "systemMemory", path: idleDeploy, body: deployBody(func(s jsonObj) { s["systemMemory"] = "512Gi" }), detail: selector("systemMemory")},
			{name: "gpuMemory", path: idleDeploy, body: deployBody(func(s jsonObj) { s["gpuMemory"] = "80GB" }), detail: selector("gpuMemory")},
			{name: "every spec field at once, on PUT", method: "PUT", path: liveDeploy, body: deployBody(func(s jsonObj) {
				s["minInstances"] = 0
				s["preferredOrder"], s["configuration"], s["os"], s["gpuMemory"] = 2, jsonObj{"a": 1}, "linux", "80GB"
			}), detail: []string{"preferredOrder is not supported",
				"; deploymentSpecifications[0].os is not supported", "; deploymentSpecifications[0].gpuMemory is not supported"}},

			// PATCH gpu-specifications: what cannot change in place is named.
			{name: "patch gpu", method: "PATCH", path: patchPath, body: `{"maxInstances":2,"gpu":"A100"}`,
				detail: []string{`gpu cannot change in place (it is "H100"): PUT the deployment`}},
			{name: "patch instanceType", method: "PATCH", path: patchPath, body: `{"maxInstances":2,"instanceType":"ON-PREM.GPU.H100_2x"}`,
				detail: []string{"instanceType cannot change in place (it is unset)"}},
			{name: "patch backend", method: "PATCH", path: patchPath, body: `{"maxInstances":2,"backend":"prod"}`,
				detail: []string{"backend cannot change in place"}},
			{name: "patch placement", method: "PATCH", path: patchPath,
				body: `{"maxInstances":2,"clusters":["fast"],"regions":["r2"],"attributes":["nvlink"],"availabilityZones":["r2-a"]}`,
				detail: []string{"clusters cannot change in place", "; regions cannot change in place", "; attributes cannot change in place",
					"; availabilityZones cannot change in place", "PUT the deployment"}},
			{name: "patch unsupported", method: "PATCH", path: patchPath, body: `{"maxInstances":2,"preferredOrder":1,"configuration":{"a":1},"gpuMemory":"80GB"}`,
				detail: []string{"preferredOrder is not supported", "; configuration cannot change in place", "; gpuMemory is not supported"}},
		}
		t.Run("each", func(t *testing.T) {
			for _, tc := range cases {
				t.Run(tc.name, func(t *testing.T) {
					t.Parallel()
					if tc.method == "" {
						tc.method = "POST"
					}
					if tc.path == "" {
						tc.path = fnPath
					}
					tc.status = http.StatusBadRequest
					checkProblem(t, sendFleet(t, f, tc), tc)
				})
			}
		})
		t.Run("nothing refused was stored", func(t *testing.T) {
			after, err := f.c.ListFunctions(ctx)
			if err != nil {
				t.Fatal(err)
			}
			if len(after) != len(before) {
				t.Errorf("%d function versions after the refused creates, %d before", len(after), len(before))
			}
			if _, err := f.c.GetDeployment(ctx, idle.ID, idle.VersionID); !client.IsNotFound(err) {
				t.Errorf("the never-deployed version has a deployment (%v)", err)
			}
			d, err := f.c.GetDeployment(ctx, live.ID, live.VersionID)
			if err != nil {
				t.Fatal(err)
			}
			if s := d.Specs[0]; s.MaxInstances != 1 || s.GPU != "H100" || s.InstanceType != "" || len(s.Clusters) > 0 || s.PreferredOrder != 0 || len(s.Configuration) > 0 {
				t.Errorf("a refused PUT or PATCH changed the spec: %+v", s)
			}
		})
	})

	t.Run("attributes", func(t *testing.T) {
		// The capability only fast has: both instances go there.
		nv := f.deployEcho("nvlink", model.GPUSpec{GPU: "H100", MinInstances: 2, MaxInstances: 2, Attributes: []string{"nvlink"}})
		f.waitStatus(nv, model.StatusActive)
		if got := f.placements(nv); got[fast.clusterID] != 2 || len(got) != 1 {
			t.Fatalf("placed %v, want both instances on %s (the only cluster with capability nvlink)", got, fast.clusterID)
		}

		// A capability no cluster has: pending, and the reason names it.
		gd := f.deployEcho("gpudirect", model.GPUSpec{GPU: "H100", MinInstances: 1, MaxInstances: 1, Attributes: []string{"gpudirect"}})
		var d model.Deployment
		testutil.WaitFor(t, 30*time.Second, func() error {
			var err error
			if d, err = f.c.GetDeployment(ctx, gd.ID, gd.VersionID); err != nil {
				return err
			}
			if len(d.HealthInfo) == 0 || !strings.Contains(d.HealthInfo[0].Error, "attributes gpudirect (cluster capabilities)") ||
				!strings.Contains(d.HealthInfo[0].Error, "missing: gpudirect") {
				return testutil.Errorf("healthInfo %+v", d.HealthInfo)
			}
			return nil
		})
		if d.FunctionStatus != model.StatusDeploying {
			t.Fatalf("status %s while pending", d.FunctionStatus)
		}

		// At zero instances, a call says why none can start.
		ib := f.deployEcho("infiniband", model.GPUSpec{GPU: "H100", MinInstances: 0, MaxInstances: 1, Attributes: []string{"infiniband"}})
		f.waitStatus(ib, model.StatusActive)
		_, err := f.c.Invoke(ctx, client.InvokeRequest{FunctionID: ib.ID, Body: strings.NewReader("{}")})
		var apiErr *client.APIError
		if !errors.As(err, &apiErr) || apiErr.StatusCode != http.StatusServiceUnavailable {
			t.Fatalf("a call at zero instances: %v, want a 503 problem", err)
		}
		for _, want := range []string{"none can be started", "attributes infiniband (cluster capabilities)", "missing: infiniband"} {
			if !strings.Contains(apiErr.Problem.Detail, want) {
				t.Errorf("detail %q does not contain %q", apiErr.Problem.Detail, want)
			}
		}

		// Once a cluster has the capability, the pending instance is placed
		// there.
		setCapabilities(t, f, plain, []string{"gpudirect"})
		f.waitStatus(gd, model.StatusActive)
		if got := f.placements(gd); got[plain.clusterID] != 1 || len(got) != 1 {
			t.Fatalf("placed %v, want the instance on %s, which now has capability gpudirect", got, plain.clusterID)
		}
	})
}

// setCapabilities sets a fleet cluster's capabilities through the cluster
// API (PUT, the same body as its registration).
func setCapabilities(t *testing.T, f *fleet, m *member, caps []string) {
	t.Helper()
	ctx := testutil.Context(t)
	c, err := f.c.GetCluster(ctx, controlplane.DefaultAccount, m.clusterID)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := f.c.UpdateCluster(ctx, controlplane.DefaultAccount, m.clusterID, model.ClusterRequest{
		ClusterName: c.Name, ClusterGroupName: c.GroupName, Region: c.Region, Zone: c.Zone, Labels: c.Labels,
		Capabilities: caps, AuthorizedNCAIDs: c.AuthorizedNCAIDs,
	}); err != nil {
		t.Fatal(err)
	}
}

// sendFleet is sendCase against a fleet's control plane.
func sendFleet(t *testing.T, f *fleet, tc validationCase) *http.Response {
	t.Helper()
	req := newRequest(t, tc.method, f.cp.URL()+tc.path, f.cp.AdminToken())
	if tc.body != "" {
		req.Body = io.NopCloser(strings.NewReader(tc.body))
		req.ContentLength = int64(len(tc.body))
		req.Header.Set("Content-Type", "application/json")
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	return resp
}
