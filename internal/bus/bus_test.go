package bus_test

import (
	"testing"

	"github.com/gantry-dev/gantry/internal/bus"
)

func TestParseWatchSubject(t *testing.T) {
	tests := []struct {
		subject     string
		fn, version string
		ok          bool
	}{
		{bus.WatchSubject("f1", "v1"), "f1", "v1", true},
		{"gantry.watch.f1", "", "", false},
		{"gantry.watch.f1.v1.x", "", "", false},
		{"gantry.watch..v1", "", "", false},
		{bus.InvokeSubject("f1", "v1"), "", "", false},
	}
	for _, tc := range tests {
		fn, version, ok := bus.ParseWatchSubject(tc.subject)
		if ok != tc.ok || (ok && (fn != tc.fn || version != tc.version)) {
			t.Errorf("ParseWatchSubject(%q) = %q %q %v, want %q %q %v", tc.subject, fn, version, ok, tc.fn, tc.version, tc.ok)
		}
	}
}
