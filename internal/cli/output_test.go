package cli

import (
	"bytes"
	"encoding/json"
	"strings"
	"testing"
	"time"

	"github.com/gantry-dev/gantry/internal/model"
)

func TestAge(t *testing.T) {
	t.Parallel()
	now := time.Date(2024, 5, 1, 12, 0, 0, 0, time.UTC)
	tests := []struct {
		name string
		ago  time.Duration
		want string
	}{
		{"seconds", 42 * time.Second, "42s"},
		{"minutes", 5*time.Minute + 59*time.Second, "5m"},
		{"hours", 2*time.Hour + 30*time.Minute, "2h"},
		{"days", 3*24*time.Hour + 5*time.Hour, "3d"},
		{"future clock skew", -time.Minute, "0s"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			if got := age(now.Add(-tc.ago), now); got != tc.want {
				t.Errorf("age(%s ago) = %q, want %q", tc.ago, got, tc.want)
			}
		})
	}
	if age(time.Time{}, now) != "" {
		t.Error("zero time should have no age")
	}
}

func TestOutputFormatFlag(t *testing.T) {
	t.Parallel()
	tests := []struct {
		in   string
		want outputFormat
		ok   bool
	}{
		{"table", formatTable, true},
		{"JSON", formatJSON, true},
		{"yaml", formatYAML, true},
		{"xml", "", false},
		{"", "", false},
	}
	for _, tc := range tests {
		var f outputFormat
		err := f.Set(tc.in)
		if (err == nil) != tc.ok || (tc.ok && f != tc.want) {
			t.Errorf("Set(%q) = %v, format %q; want ok=%v %q", tc.in, err, f, tc.ok, tc.want)
		}
	}
}

func TestPrinterFormats(t *testing.T) {
	t.Parallel()
	now := time.Date(2024, 5, 1, 12, 0, 0, 0, time.UTC)
	fns := []model.Function{
		{ID: "fn-1", VersionID: "v-1", Name: "echo", Status: model.StatusActive, InferenceURL: "/",
			ContainerImage: "process://gantry", CreatedAt: now.Add(-5 * time.Minute)},
		{ID: "fn-2", VersionID: "v-2", Name: "helm\tname", Status: model.StatusInactive, InferenceURL: "/",
			HelmChart: "oci://charts/x", CreatedAt: now.Add(-50 * time.Hour)},
		{ID: "fn-3", VersionID: "v-3", Name: "noimage", Status: model.StatusInactive},
	}
	tests := []struct {
		name   string
		format outputFormat
		want   string
	}{
		{"table", formatTable, "" +
			"ID     VERSION   NAME        STATUS     IMAGE              AGE\n" +
			"fn-1   v-1       echo        ACTIVE     process://gantry   5m\n" +
			"fn-2   v-2       helm name   INACTIVE   oci://charts/x     2d\n" +
			"fn-3   v-3       noimage     INACTIVE   -                  -\n"},
		{"json", formatJSON, `"containerImage": "process://gantry"`},
		{"yaml", formatYAML, "- containerImage: process://gantry\n  createdAt: \"2024-05-01T11:55:00Z\"\n  id: fn-1\n"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			var buf bytes.Buffer
			p := printer{w: &buf, format: tc.format, now: now}
			if err := p.print(fns, func() table { return functionTable(fns, now) }); err != nil {
				t.Fatal(err)
			}
			if tc.format == formatTable {
				if buf.String() != tc.want {
					t.Errorf("table:\n%s\nwant:\n%s", buf.String(), tc.want)
				}
				return
			}
			if !strings.Contains(buf.String(), tc.want) {
				t.Errorf("output lacks %q:\n%s", tc.want, buf.String())
			}
			if tc.format == formatJSON {
				var back []model.Function
				if err := json.Unmarshal(buf.Bytes(), &back); err != nil || len(back) != 3 || back[0].ID != "fn-1" {
					t.Errorf("JSON output does not round-trip: %v", err)
				}
			}
		})
	}
}

func TestDeploymentTable(t *testing.T) {
	t.Parallel()
	now := time.Date(2024, 5, 1, 12, 0, 0, 0, time.UTC)
	d := model.Deployment{ID: "dep-1", FunctionID: "fn-1", FunctionVersionID: "v-1", FunctionStatus: model.StatusDeploying,
		CreatedAt: now.Add(-3 * time.Hour), Specs: []model.GPUSpec{
			{GPU: "L40S", InstanceType: "ON-PREM.GPU.L40S_1x", MinInstances: 1, MaxInstances: 2,
				DesiredInstances: model.Int(2), RunningInstances: model.Int(1), ScalingDecisions: []model.ScalingDecision{
					{At: now.Add(-5 * time.Minute), From: 1, To: 2, Reason: "utilization 120%"}}},
			{GPU: "H100", MinInstances: 0, MaxInstances: 1},
		}}
	var buf bytes.Buffer
	if err := writeTable(&buf, deploymentTable([]model.Deployment{d}, now)); err != nil {
		t.Fatal(err)
	}
	want := "" +
		"DEPLOYMENT   FUNCTION   VERSION   STATUS      GPU    INSTANCE TYPE         MIN   MAX   DESIRED   RUNNING   LAST SCALED                      AGE\n" +
		"dep-1        fn-1       v-1       DEPLOYING   L40S   ON-PREM.GPU.L40S_1x   1     2     2         1         1->2 utilization 120% (5m ago)   3h\n" +
		"dep-1        fn-1       v-1       DEPLOYING   H100   -                     0     1     -         -         -                                3h\n"
	if buf.String() != want {
		t.Errorf("table:\n%s\nwant:\n%s", buf.String(), want)
	}
}

func TestPrintMessage(t *testing.T) {
	t.Parallel()
	v := deletedVersion{"fn-1", "v-1", true}
	tests := []struct {
		format outputFormat
		want   string
	}{
		{formatTable, "Deleted fn-1\n"},
		{formatJSON, "{\n  \"functionId\": \"fn-1\",\n  \"versionId\": \"v-1\",\n  \"deleted\": true\n}\n"},
		{formatYAML, "deleted: true\nfunctionId: fn-1\nversionId: v-1\n"},
	}
	for _, tc := range tests {
		var buf bytes.Buffer
		if err := (printer{w: &buf, format: tc.format}).printMessage(v, "Deleted %s", "fn-1"); err != nil {
			t.Fatal(err)
		}
		if buf.String() != tc.want {
			t.Errorf("%s: got %q, want %q", tc.format, buf.String(), tc.want)
		}
	}
}
