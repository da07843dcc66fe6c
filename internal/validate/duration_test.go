package validate

import (
	"math"
	"testing"
	"time"
)

func TestParseISODuration(t *testing.T) {
	t.Parallel()
	tests := []struct {
		in   string
		want time.Duration
		err  string // substring of the detail; empty when the input is valid
	}{
		{"PT10S", 10 * time.Second, ""},
		{"PT1M30S", 90 * time.Second, ""},
		{"PT0.5S", 500 * time.Millisecond, ""},
		{"PT0,5S", 500 * time.Millisecond, ""},
		{"P1DT2H", 26 * time.Hour, ""},
		{"PT1H", time.Hour, ""},
		{"P2D", 48 * time.Hour, ""},
		{"PT1H2M3.000000004S", time.Hour + 2*time.Minute + 3*time.Second + 4, ""},
		{"PT0S", 0, ""},
		{"pt10s", 10 * time.Second, ""},
		{"PT90M", 90 * time.Minute, ""},
		{"PT0000000000000000000000010S", 10 * time.Second, ""},
		{"PT9223372036.854775807S", math.MaxInt64, ""},
		{"P106751DT23H47M16.854775807S", math.MaxInt64, ""},

		{"", 0, `duration "" is invalid: it is empty`},
		{"P", 0, "it has no value"},
		{"PT", 0, "it has no value"},
		{"P1DT", 0, "T must be followed by hours, minutes or seconds"},
		{"-PT10S", 0, "it must not carry a sign"},
		{"+PT10S", 0, "it must not carry a sign"},
		{"PT-10S", 0, "expected a number before '-'"},
		{"10S", 0, "it must start with P"},
		{"10s", 0, `duration "10s" is invalid: it must start with P; use an ISO-8601 duration such as PT10S`},
		{"garbage", 0, "it must start with P"},
		{"PT10", 0, "the last number has no unit"},
		{"PTS", 0, "expected a number before 'S'"},
		{"PT10X", 0, "unexpected 'X'"},
		{"PT10S ", 0, "expected a number before ' '"},
		{"P1Y", 0, "years, months and weeks are not supported"},
		{"P1M", 0, "years, months and weeks are not supported"},
		{"P1W", 0, "years, months and weeks are not supported"},
		{"P10S", 0, "hours, minutes and seconds must come after T"},
		{"PT1D", 0, "days must come before T"},
		{"PT1S1M", 0, "each unit may appear once, in the order D, T, H, M, S"},
		{"PT1S1S", 0, "each unit may appear once"},
		{"PT1HT1M", 0, "T appears twice"},
		{"PT1.5M", 0, "only seconds may have a fraction"},
		{"PT1.S", 0, "a decimal point must be followed by digits"},
		{"PT.5S", 0, "expected a number before 'S'"},
		{"PT0.1234567891S", 0, "at most 9 digits"},
		{"PT9223372037S", 0, "it is too long"},
		{"PT9223372036.854775808S", 0, "it is too long"},
		{"P106752D", 0, "it is too long"},
		{"P106751DT24H", 0, "it is too long"},
		{"PT99999999999999999999999S", 0, "it is too long"},
		{"PT1\x00S", 0, "unexpected byte 0x00"},
	}
	for _, tc := range tests {
		t.Run(tc.in, func(t *testing.T) {
			t.Parallel()
			got, err := ParseISODuration(tc.in)
			if tc.err != "" {
				wantProblem(t, err, 400, tc.err)
				return
			}
			if err != nil {
				t.Fatalf("ParseISODuration(%q): %v", tc.in, err)
			}
			if got != tc.want {
				t.Errorf("ParseISODuration(%q) = %v, want %v", tc.in, got, tc.want)
			}
		})
	}
}
