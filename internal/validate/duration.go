package validate

import (
	"math"
	"time"

	"github.com/gantry-dev/gantry/internal/problem"
)

// durationForms is the hint every duration error ends with.
const durationForms = "use an ISO-8601 duration such as PT10S, PT1M30S, PT0.5S or P1DT2H"

// ParseISODuration parses an ISO-8601 duration the way NVCF writes them
// (health.timeout "PT10S"): P, then optional days, then T and optional hours,
// minutes and seconds, each at most once and in that order, e.g. PT10S,
// PT1M30S, PT0.5S, P1DT2H, PT1H. Letters may be lower case.
//
// Years, months and weeks are refused because NVCF's own parser (Java's
// Duration) refuses them, and years and months have no fixed length. Only
// seconds may carry a fraction, with at most 9 digits (nanoseconds). Signs,
// an empty duration ("P", "PT"), and values beyond time.Duration's ~292 years
// are refused. Zero ("PT0S") parses; callers that need a positive duration
// check for it. Errors are 400 *problem.Error values.
func ParseISODuration(s string) (time.Duration, error) {
	d, why := parseISODuration(s)
	if why != "" {
		return 0, problem.BadRequest("duration %s is invalid: %s; %s", quote(s), why, durationForms)
	}
	return d, nil
}

// parseISODuration returns the duration or, when s is not one, why not.
func parseISODuration(s string) (time.Duration, string) {
	if s == "" {
		return 0, "it is empty"
	}
	if s[0] == '-' || s[0] == '+' {
		return 0, "it must not carry a sign; durations here are never negative"
	}
	if upper(s[0]) != 'P' {
		return 0, "it must start with P"
	}
	var (
		total     time.Duration
		inTime    bool // after T
		sawT      bool
		units     int  // components seen
		timeUnits int  // components seen after T
		last      = -1 // rank of the last designator, to enforce order and uniqueness
	)
	// rank orders designators: D < T < H < M(inute) < S.
	const (
		rankD = iota
		rankH
		rankM
		rankS
	)
	i := 1
	for i < len(s) {
		c := upper(s[i])
		if c == 'T' {
			if sawT {
				return 0, "T appears twice"
			}
			sawT, inTime = true, true
			i++
			continue
		}
		// A component: digits, an optional fraction, a designator.
		start := i
		var whole int64
		for i < len(s) && isDigit(s[i]) {
			if whole > (math.MaxInt64-9)/10 {
				return 0, "it is too long; the longest allowed is about 292 years"
			}
			whole = whole*10 + int64(s[i]-'0')
			i++
		}
		digits := i - start
		var frac int64 // nanoseconds
		fracDigits := -1
		if i < len(s) && (s[i] == '.' || s[i] == ',') {
			i++
			fstart := i
			for i < len(s) && isDigit(s[i]) {
				i++
			}
			fracDigits = i - fstart
			if fracDigits == 0 {
				return 0, "a decimal point must be followed by digits"
			}
			if fracDigits > 9 {
				return 0, "a fraction may have at most 9 digits (nanoseconds)"
			}
			for k := fstart; k < i; k++ {
				frac = frac*10 + int64(s[k]-'0')
			}
			for k := fracDigits; k < 9; k++ {
				frac *= 10
			}
		}
		if digits == 0 {
			if i >= len(s) {
				return 0, "it ends without a number"
			}
			return 0, "expected a number before " + quoteByte(s[i])
		}
		if i >= len(s) {
			return 0, "the last number has no unit; end it with D, H, M or S"
		}
		var unit time.Duration
		var rank int
		switch d := upper(s[i]); {
		case d == 'D' && !inTime:
			unit, rank = 24*time.Hour, rankD
		case d == 'H' && inTime:
			unit, rank = time.Hour, rankH
		case d == 'M' && inTime:
			unit, rank = time.Minute, rankM
		case d == 'S' && inTime:
			unit, rank = time.Second, rankS
		case (d == 'Y' || d == 'M' || d == 'W') && !inTime:
			return 0, "years, months and weeks are not supported because they have no fixed length; use days (D) or, after T, hours, minutes and seconds"
		case (d == 'H' || d == 'S') && !inTime:
			return 0, "hours, minutes and seconds must come after T (PT...)"
		case d == 'D' && inTime:
			return 0, "days must come before T (P1DT2H)"
		default:
			return 0, "unexpected " + quoteByte(s[i])
		}
		i++
		if rank <= last {
			return 0, "each unit may appear once, in the order D, T, H, M, S"
		}
		last = rank
		if fracDigits >= 0 && rank != rankS {
			return 0, "only seconds may have a fraction"
		}
		if whole > int64(math.MaxInt64/unit) {
			return 0, "it is too long; the longest allowed is about 292 years"
		}
		part := time.Duration(whole) * unit
		if time.Duration(frac) > math.MaxInt64-part {
			return 0, "it is too long; the longest allowed is about 292 years"
		}
		part += time.Duration(frac)
		if total > math.MaxInt64-part {
			return 0, "it is too long; the longest allowed is about 292 years"
		}
		total += part
		units++
		if inTime {
			timeUnits++
		}
	}
	switch {
	case units == 0:
		return 0, "it has no value; give at least one number and unit"
	case sawT && timeUnits == 0:
		return 0, "T must be followed by hours, minutes or seconds"
	}
	return total, ""
}

// upper maps an ASCII letter to upper case.
func upper(c byte) byte {
	if c >= 'a' && c <= 'z' {
		return c - 'a' + 'A'
	}
	return c
}

// quoteByte renders one byte of input for a message.
func quoteByte(c byte) string {
	if c >= 0x20 && c < 0x7f {
		return "'" + string(rune(c)) + "'"
	}
	return "byte 0x" + string("0123456789abcdef"[c>>4]) + string("0123456789abcdef"[c&15])
}
