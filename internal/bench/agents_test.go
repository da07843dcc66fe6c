package bench

import (
	"encoding/json"
	"os"
	"testing"
	"time"

	"github.com/gantry-dev/gantry/internal/model"
)

func TestParseProcStatTicks(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name    string
		line    string
		want    int64
		wantErr bool
	}{
		{"plain", "1234 (gantry) S 1 1234 1234 0 -1 4194560 100 0 0 0 250 75 0 0 20 0 12 0 100 0 0", 325, false},
		{"name with spaces and parens", "42 (a (b) c) R 1 42 42 0 -1 0 0 0 0 0 7 3 0 0 20 0", 10, false},
		{"no name", "42 S 1", 0, true},
		{"too short", "42 (x) S 1 2 3", 0, true},
		{"not a number", "42 (x) S 1 1 1 0 -1 0 0 0 0 0 x 3 0", 0, true},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			got, err := parseProcStatTicks([]byte(tc.line))
			if (err != nil) != tc.wantErr {
				t.Fatalf("err = %v, want error %v", err, tc.wantErr)
			}
			if got != tc.want {
				t.Fatalf("got %d ticks, want %d", got, tc.want)
			}
		})
	}
}

func TestParseMachineBusy(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name    string
		stat    string
		want    int64
		wantErr bool
	}{
		// user nice system idle iowait irq softirq steal guest guest_nice:
		// busy is everything but idle and iowait, guest not added twice.
		{"two cpus", "cpu  100 2 30 5000 40 5 6 7 50 0\ncpu0 50 1 15 2500 20 2 3 3 25 0\ncpu1 50 1 15 2500 20 3 3 4 25 0\nintr 1\n", 150, false},
		{"cpu line not first", "intr 1\ncpu  1 1 1 1 1 1 1 1\n", 6, false},
		{"no cpu line", "cpu0 1 1 1 1 1 1 1 1\n", 0, true},
		{"short", "cpu  1 2 3\n", 0, true},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			got, err := parseMachineBusy([]byte(tc.stat))
			if (err != nil) != tc.wantErr {
				t.Fatalf("err = %v, want error %v", err, tc.wantErr)
			}
			if got != tc.want {
				t.Fatalf("got %d ticks, want %d", got, tc.want)
			}
		})
	}
}

func TestParseStatusBytes(t *testing.T) {
	t.Parallel()
	status := "Name:\tgantry\nVmPeak:\t 2000 kB\nVmHWM:\t   61234 kB\nVmRSS:\t   51200 kB\n"
	tests := []struct {
		field   string
		want    int64
		wantErr bool
	}{
		{"VmRSS", 51200 << 10, false},
		{"VmHWM", 61234 << 10, false},
		{"VmSwap", 0, true},
	}
	for _, tc := range tests {
		t.Run(tc.field, func(t *testing.T) {
			t.Parallel()
			got, err := parseStatusBytes([]byte(status), tc.field)
			if (err != nil) != tc.wantErr {
				t.Fatalf("err = %v, want error %v", err, tc.wantErr)
			}
			if got != tc.want {
				t.Fatalf("got %d, want %d", got, tc.want)
			}
		})
	}
}

// The live /proc of this process must parse, or the benchmark cannot run
// here at all.
func TestProcReadsThisProcess(t *testing.T) {
	t.Parallel()
	if _, err := os.Stat("/proc/self/stat"); err != nil {
		t.Skip("no /proc")
	}
	if _, err := markCPU(os.Getpid()); err != nil {
		t.Fatal(err)
	}
	if rss, err := procStatusBytes(os.Getpid(), "VmHWM"); err != nil || rss <= 0 {
		t.Fatalf("VmHWM = %d, %v", rss, err)
	}
}

func TestStaggerOffset(t *testing.T) {
	t.Parallel()
	const n, interval = 1000, 5 * time.Second
	prev := time.Duration(-1)
	for i := range n {
		off := staggerOffset(i, n, interval)
		if off <= prev || off < 0 || off >= interval {
			t.Fatalf("offset %d = %s after %s: want strictly increasing within [0, %s)", i, off, prev, interval)
		}
		prev = off
	}
	if got := staggerOffset(500, n, interval); got != interval/2 {
		t.Fatalf("agent 500 of 1000 starts at %s, want %s", got, interval/2)
	}
	if got := staggerOffset(0, 0, interval); got != 0 {
		t.Fatalf("no agents: offset %s", got)
	}
}

func TestCheckReportAnswer(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name, answer string
		wantErr      bool
	}{
		{"ok", `{"status":"ok"}`, false},
		{"error", `{"error":"controller: cluster is not registered: x"}`, true},
		{"not json", `nope`, true},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			if err := checkReportAnswer([]byte(tc.answer)); (err != nil) != tc.wantErr {
				t.Fatalf("err = %v, want error %v", err, tc.wantErr)
			}
		})
	}
}

func TestTallySamplesCountsOnlyTheWindow(t *testing.T) {
	t.Parallel()
	t0 := time.Date(2026, 11, 21, 12, 0, 0, 0, time.UTC)
	at := func(s int) time.Time { return t0.Add(time.Duration(s) * time.Second) }
	samples := []reportSample{
		{at: at(0), took: time.Millisecond},                   // warmup: before the window
		{at: at(10), took: 2 * time.Millisecond},              // first instant of the window
		{at: at(20), took: 5 * time.Second, err: "timeout"},   // failed
		{at: at(30), took: 3 * time.Millisecond},              //
		{at: at(40), took: 4 * time.Millisecond, err: "late"}, // at the end: outside
	}
	reports, errs, first, ok := tallySamples(samples, at(10), at(40))
	if reports != 3 || errs != 1 || first != "timeout" || len(ok) != 2 || ok[0] != 2*time.Millisecond || ok[1] != 3*time.Millisecond {
		t.Fatalf("got reports=%d errs=%d first=%q ok=%v", reports, errs, first, ok)
	}
}

func TestBenchReport(t *testing.T) {
	t.Parallel()
	rep := benchReport("c1", 5*time.Second, 3)
	b, err := json.Marshal(rep)
	if err != nil {
		t.Fatal(err)
	}
	var back model.AgentReport
	if err := json.Unmarshal(b, &back); err != nil {
		t.Fatal(err)
	}
	if back.ClusterID != "c1" || back.HeartbeatMillis != 5000 || back.Inventory.GPUTotals()["H100"] != 8 || len(back.Instances) != 3 {
		t.Fatalf("report = %+v", back)
	}
	for _, st := range back.Instances {
		if st.ClusterID != "c1" || st.Status != model.InstanceRunning {
			t.Fatalf("instance state = %+v", st)
		}
	}
}
