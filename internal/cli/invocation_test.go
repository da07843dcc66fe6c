package cli

import "testing"

func TestByteSizeFlag(t *testing.T) {
	for _, tc := range []struct {
		in   string
		want int64
		str  string
	}{
		{"5MiB", 5 << 20, "5MiB"},
		{"100 MiB", 100 << 20, "100MiB"},
		{"1GiB", 1 << 30, "1GiB"},
		{"2048", 2048, "2KiB"},
		{"1500B", 1500, "1500B"},
		{"10MB", 10e6, "10000000B"},
		{"3KB", 3000, "3000B"},
	} {
		var b byteSizeFlag
		if err := b.Set(tc.in); err != nil || int64(b) != tc.want || b.String() != tc.str {
			t.Errorf("Set(%q) = %d %q %v, want %d %q", tc.in, b, b.String(), err, tc.want, tc.str)
		}
	}
	for _, bad := range []string{"", "MiB", "-1", "0", "5 TiB", "1.5MiB", "99999999999GiB"} {
		var b byteSizeFlag
		if err := b.Set(bad); err == nil {
			t.Errorf("Set(%q) accepted %d", bad, b)
		}
	}
}
