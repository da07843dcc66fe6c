package e2e

import (
	"bytes"
	"context"
	"io"
	"net/http"
	"os/exec"
	"testing"
	"time"

	dto "github.com/prometheus/client_model/go"
	"github.com/prometheus/common/expfmt"
	pmodel "github.com/prometheus/common/model"

	"github.com/gantry-dev/gantry/internal/controlplane"
	"github.com/gantry-dev/gantry/internal/model"
	"github.com/gantry-dev/gantry/internal/testutil"
)

// TestMetrics scrapes GET /metrics as a deployment becomes ACTIVE, calls
// run and a cluster is lost, and checks each shows: instances, desired vs
// running, GPUs, invocation counts and latency, heartbeat age and cluster
// status. The API listener's /metrics needs an admin token; the
// --metrics-listen one does not.
func TestMetrics(t *testing.T) {
	t.Parallel()
	f := startFleetWith(t, func(c *controlplane.Config) { c.MetricsListen = "127.0.0.1:0" })
	scrapeURL := f.cp.MetricsURL()
	if scrapeURL == "" {
		t.Fatal("no metrics URL with MetricsListen set")
	}

	// The API listener: 401 without a credential, 200 with the admin token.
	resp, err := http.Get(f.cp.URL() + "/metrics")
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusUnauthorized {
		t.Fatalf("GET /metrics without a token: %d, want 401", resp.StatusCode)
	}
	req, _ := http.NewRequest(http.MethodGet, f.cp.URL()+"/metrics", nil)
	req.Header.Set("Authorization", "Bearer "+f.cp.AdminToken())
	resp, err = http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	body, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if resp.StatusCode != http.StatusOK || !bytes.Contains(body, []byte("gantry_invocations_in_flight")) {
		t.Fatalf("GET /metrics with the admin token: %d %.200s", resp.StatusCode, body)
	}

	a := f.join("a", "prod", "r1", 4, "H100")
	fn := f.deployEcho("metered", model.GPUSpec{GPU: "H100", MinInstances: 1, MaxInstances: 1})
	f.waitStatus(fn, model.StatusActive)
	fnLabels := map[string]string{"function_id": fn.ID, "version_id": fn.VersionID, "gpu": "H100"}
	testutil.WaitFor(t, 30*time.Second, func() error {
		m := scrape(t, scrapeURL)
		for name, want := range map[string]float64{
			"gantry_deployment_instances_desired": 1,
			"gantry_deployment_instances_running": 1,
		} {
			if got, ok := value(m, name, fnLabels); !ok || got != want {
				return testutil.Errorf("%s = %v (%v), want %v", name, got, ok, want)
			}
		}
		if got, _ := value(m, "gantry_instances", map[string]string{"state": "RUNNING"}); got != 1 {
			return testutil.Errorf("RUNNING instances %v", got)
		}
		if got, _ := value(m, "gantry_gpus", map[string]string{"cluster": a.clusterID, "gpu": "H100"}); got != 4 {
			return testutil.Errorf("gpus %v", got)
		}
		if got, _ := value(m, "gantry_gpus_allocated", map[string]string{"cluster": a.clusterID, "gpu": "H100"}); got < 1 {
			return testutil.Errorf("gpus allocated %v", got)
		}
		if got, _ := value(m, "gantry_clusters", map[string]string{"status": "READY"}); got != 1 {
			return testutil.Errorf("READY clusters %v", got)
		}
		return nil
	})

	const calls = 3
	for range calls {
		if err := f.invokeOK(fn); err != nil {
			t.Fatal(err)
		}
	}
	m := scrape(t, scrapeURL)
	// pexec without a version in the path: version_id is what the caller named.
	if got, _ := value(m, "gantry_invocations_total", map[string]string{"function_id": fn.ID, "status": "200"}); got != calls {
		t.Errorf("gantry_invocations_total = %v, want %d", got, calls)
	}
	for _, h := range []string{"gantry_invocation_duration_seconds", "gantry_invocation_time_to_first_byte_seconds"} {
		if n := histogramCount(m, h, map[string]string{"function_id": fn.ID}); n != calls {
			t.Errorf("%s count = %d, want %d", h, n, calls)
		}
	}
	if got, ok := value(m, "gantry_queue_depth", map[string]string{"function_id": fn.ID, "version_id": fn.VersionID}); !ok || got != 0 {
		t.Errorf("queue depth after the calls: %v (%v), want 0", got, ok)
	}
	if got, ok := value(m, "gantry_secret_store_active_mek_version", nil); !ok || got < 1 {
		t.Errorf("active MEK version %v (%v), want >= 1", got, ok)
	}
	if got, _ := value(m, "gantry_invocations_in_flight", nil); got != 0 {
		t.Errorf("in flight after the calls: %v", got)
	}

	// A call for a function that does not exist is counted without its id.
	if err := f.invokeOK(model.Function{ID: "00000000-0000-0000-0000-000000000000"}); err == nil {
		t.Fatal("invoking a missing function succeeded")
	}
	if got, _ := value(scrape(t, scrapeURL), "gantry_invocations_total", map[string]string{"function_id": "unknown", "status": "404"}); got != 1 {
		t.Errorf("unknown-function calls counted %v, want 1", got)
	}

	// Lose the cluster: NOT_READY, and its heartbeat ages.
	a.proxy.Cut()
	testutil.WaitFor(t, 30*time.Second, func() error {
		m := scrape(t, scrapeURL)
		if got, _ := value(m, "gantry_clusters", map[string]string{"status": "NOT_READY"}); got != 1 {
			return testutil.Errorf("NOT_READY clusters %v", got)
		}
		if age, ok := value(m, "gantry_cluster_heartbeat_age_seconds", map[string]string{"cluster": a.clusterID}); !ok || age < (3*fleetHeartbeat).Seconds() {
			return testutil.Errorf("heartbeat age %v (%v)", age, ok)
		}
		return nil
	})

	promtool, err := exec.LookPath("promtool")
	if err != nil {
		t.Skip("promtool not installed (Debian package prometheus): skipping `promtool check metrics`")
	}
	raw := scrapeRaw(t, scrapeURL)
	cmd := exec.Command(promtool, "check", "metrics")
	cmd.Stdin = bytes.NewReader(raw)
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("promtool check metrics: %v\n%s", err, out)
	}
}

func scrapeRaw(t *testing.T, url string) []byte {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	req, _ := http.NewRequestWithContext(ctx, http.MethodGet, url, nil)
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(resp.Body)
	if err != nil || resp.StatusCode != http.StatusOK {
		t.Fatalf("scrape %s: %d %v", url, resp.StatusCode, err)
	}
	return body
}

// scrape reads url and parses it with the Prometheus text parser.
func scrape(t *testing.T, url string) map[string]*dto.MetricFamily {
	t.Helper()
	p := expfmt.NewTextParser(pmodel.UTF8Validation)
	m, err := p.TextToMetricFamilies(bytes.NewReader(scrapeRaw(t, url)))
	if err != nil {
		t.Fatalf("parse metrics: %v", err)
	}
	return m
}

// matching returns the series of family name whose labels include want.
func matching(m map[string]*dto.MetricFamily, name string, want map[string]string) []*dto.Metric {
	var out []*dto.Metric
	fam, ok := m[name]
	if !ok {
		return nil
	}
next:
	for _, s := range fam.GetMetric() {
		have := map[string]string{}
		for _, l := range s.GetLabel() {
			have[l.GetName()] = l.GetValue()
		}
		for k, v := range want {
			if have[k] != v {
				continue next
			}
		}
		out = append(out, s)
	}
	return out
}

// value sums the gauge or counter series of name matching want.
func value(m map[string]*dto.MetricFamily, name string, want map[string]string) (float64, bool) {
	ss := matching(m, name, want)
	sum := 0.0
	for _, s := range ss {
		switch {
		case s.Gauge != nil:
			sum += s.GetGauge().GetValue()
		case s.Counter != nil:
			sum += s.GetCounter().GetValue()
		}
	}
	return sum, len(ss) > 0
}

func histogramCount(m map[string]*dto.MetricFamily, name string, want map[string]string) uint64 {
	var n uint64
	for _, s := range matching(m, name, want) {
		n += s.GetHistogram().GetSampleCount()
	}
	return n
}
