package bench

import (
	"strings"
	"testing"
	"time"
)

// level builds a LevelResult from path -> (p50, requests/s).
func level(c int, paths map[string][2]float64) LevelResult {
	l := LevelResult{Concurrency: c}
	for _, name := range []string{PathDirect, PathProxy, PathNginx, PathGateway, PathGatewayNoMetrics} {
		if v, ok := paths[name]; ok {
			l.Paths = append(l.Paths, PathResult{Path: name, P50: time.Duration(v[0] * float64(time.Millisecond)), RPS: v[1]})
		}
	}
	return l
}

// streams builds a StreamResult with the direct and gateway SSE first-event
// p50s and the gateway's large response.
func streams(directFirst, gatewayFirst time.Duration, gateway LargeResult) *StreamResult {
	gateway.Path = PathGateway
	return &StreamResult{
		LargeBytes: 1 << 30,
		SSE: []SSEResult{
			{Path: PathDirect, Calls: 20, FirstEvent: Summary{P50: directFirst}},
			{Path: PathGateway, Calls: 20, FirstEvent: Summary{P50: gatewayFirst}},
		},
		Large: []LargeResult{{Path: PathDirect, Transfers: 1, Rate: 3e9}, gateway},
	}
}

func TestInvokeTargets(t *testing.T) {
	t.Parallel()
	good := []LevelResult{
		level(1, map[string][2]float64{PathDirect: {0.08, 10000}, PathProxy: {0.20, 4000}, PathNginx: {0.18, 4500}, PathGateway: {0.30, 3000}}),
		level(32, map[string][2]float64{PathDirect: {1, 23000}, PathProxy: {3, 8000}, PathNginx: {2.5, 9000}, PathGateway: {3.2, 9500}}),
	}
	fast := LargeResult{Transfers: 1, Rate: 1.5e9, RSSGrowth: 10 << 20}
	tests := []struct {
		name   string
		levels []LevelResult
		stream *StreamResult
		// want maps each target's name (a prefix of it) to whether it
		// passes and, if not empty, a part of its Got; only these targets
		// may be present.
		want map[string]struct {
			pass bool
			got  string
		}
	}{
		{
			name: "all met", levels: good, stream: streams(2*time.Millisecond, 2500*time.Microsecond, fast),
			want: map[string]struct {
				pass bool
				got  string
			}{
				"gateway/httputil throughput at concurrency 32":        {true, "1.19"},
				"gateway/nginx throughput at concurrency 32 (stretch)": {true, "1.06"},
				"gateway p50 over httputil at concurrency 1":           {true, "+0.100 ms"},
				"SSE first event, gateway over direct":                 {true, "+0.500 ms"},
				"1 GiB response through the gateway":                   {true, "1.50 GB/s"},
				"RSS growth during the gateway's 1 GiB response":       {true, "10.0 MiB"},
			},
		},
		{
			name: "all missed",
			levels: []LevelResult{
				level(1, map[string][2]float64{PathDirect: {0.08, 10000}, PathProxy: {0.20, 4000}, PathNginx: {0.18, 4500}, PathGateway: {0.50, 1800}}),
				level(32, map[string][2]float64{PathDirect: {1, 23000}, PathProxy: {3, 8000}, PathNginx: {2.5, 9000}, PathGateway: {6, 5000}}),
			},
			stream: streams(2*time.Millisecond, 4*time.Millisecond, LargeResult{Transfers: 1, Rate: 0.4e9, RSSGrowth: 900 << 20}),
			want: map[string]struct {
				pass bool
				got  string
			}{
				"gateway/httputil throughput at concurrency 32":        {false, "0.62"},
				"gateway/nginx throughput at concurrency 32 (stretch)": {false, "0.56"},
				"gateway p50 over httputil at concurrency 1":           {false, "+0.300 ms"},
				"SSE first event, gateway over direct":                 {false, "+2.000 ms"},
				"1 GiB response through the gateway":                   {false, "0.40 GB/s"},
				"RSS growth during the gateway's 1 GiB response":       {false, "900.0 MiB"},
			},
		},
		{
			name: "exactly at the limits",
			levels: []LevelResult{
				level(1, map[string][2]float64{PathDirect: {0.08, 10000}, PathProxy: {0.20, 4000}, PathGateway: {0.35, 3000}}),
				level(32, map[string][2]float64{PathDirect: {1, 23000}, PathProxy: {3, 8000}, PathGateway: {3.2, 7200}}),
			},
			stream: streams(2*time.Millisecond, 3*time.Millisecond, LargeResult{Transfers: 1, Rate: 1e9, RSSGrowth: 64 << 20}),
			want: map[string]struct {
				pass bool
				got  string
			}{
				"gateway/httputil throughput at concurrency 32":  {true, "0.90"},
				"gateway p50 over httputil at concurrency 1":     {true, "+0.150 ms"},
				"SSE first event, gateway over direct":           {true, "+1.000 ms"},
				"1 GiB response through the gateway":             {true, "1.00 GB/s"},
				"RSS growth during the gateway's 1 GiB response": {true, "64.0 MiB"},
			},
		},
		{
			name: "nginx skipped, no streaming, judged at the highest level",
			levels: []LevelResult{
				level(1, map[string][2]float64{PathDirect: {0.08, 10000}, PathProxy: {0.20, 4000}, PathGateway: {0.25, 3000}}),
				level(8, map[string][2]float64{PathDirect: {0.5, 20000}, PathProxy: {1, 7000}, PathGateway: {1.5, 6000}}),
			},
			want: map[string]struct {
				pass bool
				got  string
			}{
				"gateway/httputil throughput at concurrency 8": {false, "0.86"},
				"gateway p50 over httputil at concurrency 1":   {true, "+0.050 ms"},
			},
		},
		{
			name: "metrics compared, costing more than 5%",
			levels: []LevelResult{
				level(32, map[string][2]float64{PathDirect: {1, 23000}, PathProxy: {3, 8000}, PathGateway: {3.2, 7500}, PathGatewayNoMetrics: {3.1, 8000}}),
			},
			want: map[string]struct {
				pass bool
				got  string
			}{
				"gateway/httputil throughput at concurrency 32":                {true, "0.94"},
				"gateway with metrics / without, throughput at concurrency 32": {false, "0.94"},
				"gateway p50 over httputil at concurrency 32":                  {false, "+0.200 ms"},
			},
		},
		{
			name:   "failed streams",
			levels: good,
			stream: func() *StreamResult {
				s := streams(2*time.Millisecond, 0, LargeResult{Transfers: 1, Failed: 1, FirstError: "HTTP 502: response too large", RSSGrowth: 6 << 20})
				s.SSE[1].Errors, s.SSE[1].FirstError = 20, "HTTP 500: boom"
				return s
			}(),
			want: map[string]struct {
				pass bool
				got  string
			}{
				"gateway/httputil throughput at concurrency 32":        {true, ""},
				"gateway/nginx throughput at concurrency 32 (stretch)": {true, ""},
				"gateway p50 over httputil at concurrency 1":           {true, ""},
				"SSE first event, gateway over direct":                 {false, "failed: 20 of 20 streams: HTTP 500: boom"},
				"1 GiB response through the gateway":                   {false, "failed: HTTP 502: response too large"},
				"RSS growth during the gateway's 1 GiB response":       {false, "failed: HTTP 502"},
			},
		},
		{
			name:   "buffered events miss",
			levels: good,
			stream: func() *StreamResult {
				s := streams(2*time.Millisecond, 2*time.Millisecond, fast)
				s.SSE[1].Buffered = 3
				return s
			}(),
			want: map[string]struct {
				pass bool
				got  string
			}{
				"gateway/httputil throughput at concurrency 32":        {true, ""},
				"gateway/nginx throughput at concurrency 32 (stretch)": {true, ""},
				"gateway p50 over httputil at concurrency 1":           {true, ""},
				"SSE first event, gateway over direct":                 {false, "3 of 20 streams arrived buffered"},
				"1 GiB response through the gateway":                   {true, ""},
				"RSS growth during the gateway's 1 GiB response":       {true, ""},
			},
		},
		{name: "nothing measured"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			got := invokeTargets(tc.levels, tc.stream)
			if len(got) != len(tc.want) {
				t.Errorf("%d targets, want %d: %+v", len(got), len(tc.want), got)
			}
			for _, tg := range got {
				w, ok := tc.want[tg.Name]
				if !ok {
					t.Errorf("unexpected target %q", tg.Name)
					continue
				}
				if tg.Pass != w.pass {
					t.Errorf("%s: pass = %v, want %v (want %s, got %s)", tg.Name, tg.Pass, w.pass, tg.Want, tg.Got)
				}
				if !strings.Contains(tg.Got, w.got) {
					t.Errorf("%s: got %q, want it to contain %q", tg.Name, tg.Got, w.got)
				}
				if tg.Want == "" {
					t.Errorf("%s: no Want", tg.Name)
				}
			}
		})
	}
}

func TestCompare(t *testing.T) {
	t.Parallel()
	l := level(32, map[string][2]float64{PathDirect: {1, 20000}, PathProxy: {3, 8000}, PathGateway: {4, 6000}})
	a, ok := l.Compare(PathGateway, PathProxy)
	if !ok || a.AddedP50 != time.Millisecond || a.ThroughputRatio != 0.75 {
		t.Errorf("gateway against httputil = %+v, %v; want +1ms, 0.75", a, ok)
	}
	if _, ok := l.Compare(PathGateway, PathNginx); ok {
		t.Error("compared against nginx, which was not measured")
	}
	zero := level(1, map[string][2]float64{PathProxy: {1, 0}, PathGateway: {1, 10}})
	if a, _ := zero.Compare(PathGateway, PathProxy); a.ThroughputRatio != 0 {
		t.Errorf("ratio over a baseline of 0 req/s = %v, want 0", a.ThroughputRatio)
	}

	// With rounds, each round is a pair: the load of round 2 halved both
	// paths alike, which the medians of each path alone would misread
	// (6000/8000 = 0.75 where every round says 0.9 or more).
	round := func(p50ms, rps float64) RunResult {
		return RunResult{Latency: Summary{P50: time.Duration(p50ms * float64(time.Millisecond)), RPS: rps}}
	}
	paired := LevelResult{Concurrency: 32, Paths: []PathResult{
		{Path: PathProxy, P50: 3 * time.Millisecond, RPS: 8000, Rounds: []RunResult{round(2, 10000), round(6, 4000), round(3, 8000)}},
		{Path: PathGateway, P50: 4 * time.Millisecond, RPS: 6000, Rounds: []RunResult{round(2.5, 9000), round(7, 3800), round(3.5, 6000*1.25)}},
	}}
	a, _ = paired.Compare(PathGateway, PathProxy)
	if a.ThroughputRatio != 0.9375 || a.AddedP50 != 500*time.Microsecond {
		t.Errorf("paired rounds = %+v, want the median of the rounds' ratios 0.9375 and differences +0.5ms", a)
	}
}

func TestByteSize(t *testing.T) {
	t.Parallel()
	for n, want := range map[int64]string{1 << 30: "1 GiB", 5 << 30: "5 GiB", 3 << 20: "3 MiB", 2048: "2 KiB", 1536: "1536 bytes", 1000: "1000 bytes", 0: "0 bytes"} {
		if got := ByteSize(n); got != want {
			t.Errorf("ByteSize(%d) = %q, want %q", n, got, want)
		}
	}
}

func TestSignedMillis(t *testing.T) {
	t.Parallel()
	for d, want := range map[time.Duration]string{150 * time.Microsecond: "+0.150", 0: "+0.000", -15 * time.Microsecond: "-0.015"} {
		if got := SignedMillis(d); got != want {
			t.Errorf("SignedMillis(%s) = %q, want %q", d, got, want)
		}
	}
}
