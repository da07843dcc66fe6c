package validate

import (
	"strings"
	"testing"
)

func TestPollSeconds(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name   string
		header string
		want   int
		err    string
	}{
		{"empty gives default", "", 60, ""},
		{"blank gives default", "  ", 60, ""},
		{"one", "1", 1, ""},
		{"max", "3600", 3600, ""},
		{"padded", " 30 ", 30, ""},
		{"leading zeros", "0005", 5, ""},
		{"zero", "0", 0, `header NVCF-POLL-SECONDS "0" is invalid: use a whole number of seconds from 1 to 3600`},
		{"too big", "3601", 0, `NVCF-POLL-SECONDS "3601" is invalid`},
		{"negative", "-5", 0, `NVCF-POLL-SECONDS "-5" is invalid`},
		{"plus sign", "+5", 0, `NVCF-POLL-SECONDS "+5" is invalid`},
		{"fraction", "1.5", 0, `NVCF-POLL-SECONDS "1.5" is invalid`},
		{"unit", "10s", 0, `NVCF-POLL-SECONDS "10s" is invalid`},
		{"overflow", "99999999999999999999999", 0, "is invalid: use a whole number of seconds from 1 to 3600"},
		{"long garbage is cut", strings.Repeat("x", 1000), 0, `"` + strings.Repeat("x", maxQuoted) + `"…`},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			got, err := PollSeconds(tc.header, 60)
			if tc.err != "" {
				wantProblem(t, err, 400, tc.err)
				return
			}
			if err != nil || got != tc.want {
				t.Errorf("PollSeconds(%q) = %d, %v; want %d", tc.header, got, err, tc.want)
			}
		})
	}
}

func TestID(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name string
		id   string
		ok   bool
	}{
		{"uuid", "0b6f2f4e-5d6a-4c1e-9a43-2f0d1c6b7e8a", true},
		{"upper-case uuid", "0B6F2F4E-5D6A-4C1E-9A43-2F0D1C6B7E8A", true},
		{"short", "a", true},
		{"64 characters", strings.Repeat("a", 64), true},
		{"empty", "", false},
		{"65 characters", strings.Repeat("a", 65), false},
		{"slash", "a/b", false},
		{"dot dot", "..", false},
		{"underscore", "a_b", false},
		{"space", "a b", false},
		{"percent", "a%20b", false},
		{"non-ASCII", "ünï", false},
		{"NUL", "a\x00", false},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			err := ID("function id", tc.id)
			if tc.ok {
				if err != nil {
					t.Errorf("ID(%q) = %v, want nil", tc.id, err)
				}
				return
			}
			wantProblem(t, err, 400, "function id "+quote(tc.id)+" is not a valid id: use 1-64 letters, digits and '-', such as a UUID")
		})
	}
}
