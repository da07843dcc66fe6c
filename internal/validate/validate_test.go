package validate

import (
	"errors"
	"fmt"
	"net/http"
	"strings"
	"testing"

	"github.com/gantry-dev/gantry/internal/problem"
)

// wantProblem fails unless err is a *problem.Error with status whose Detail
// contains substr.
func wantProblem(t *testing.T, err error, status int, substr string) {
	t.Helper()
	if err == nil {
		t.Fatalf("got nil error, want %d containing %q", status, substr)
	}
	var pe *problem.Error
	if !errors.As(err, &pe) {
		t.Fatalf("error %v (%T) is not a *problem.Error", err, err)
	}
	if pe.Status != status {
		t.Errorf("status = %d, want %d (detail %q)", pe.Status, status, pe.Detail)
	}
	if !strings.Contains(pe.Detail, substr) {
		t.Errorf("detail %q does not contain %q", pe.Detail, substr)
	}
}

// wantClientError fails unless err is nil or a *problem.Error with status 400
// or 413: the property every fuzz target checks.
func wantClientError(t *testing.T, err error) {
	t.Helper()
	if err == nil {
		return
	}
	var pe *problem.Error
	if !errors.As(err, &pe) {
		t.Fatalf("error %v (%T) is not a *problem.Error", err, err)
	}
	if pe.Status != http.StatusBadRequest && pe.Status != http.StatusRequestEntityTooLarge {
		t.Fatalf("status = %d, want 400 or 413 (detail %q)", pe.Status, pe.Detail)
	}
	if pe.Detail == "" {
		t.Fatal("problem has an empty detail")
	}
}

func TestProblemsJoinAndCap(t *testing.T) {
	t.Parallel()
	var p problems
	if err := p.err(); err != nil {
		t.Fatalf("empty problems: got %v, want nil", err)
	}
	p.addf("a")
	p.addf("b")
	wantProblem(t, p.err(), 400, "a; b")

	var many problems
	for i := range maxProblems + 5 {
		many.addf("p%d", i)
	}
	err := many.err()
	wantProblem(t, err, 400, fmt.Sprintf("p%d; and 5 more problems", maxProblems-1))
	if strings.Contains(err.Error(), fmt.Sprintf("p%d", maxProblems)) {
		t.Errorf("detail lists more than %d problems: %v", maxProblems, err)
	}
}

func TestQuote(t *testing.T) {
	t.Parallel()
	tests := []struct{ name, in, want string }{
		{"short", "abc", `"abc"`},
		{"control characters escaped", "a\nb", `"a\nb"`},
		{"long cut", strings.Repeat("x", 100), `"` + strings.Repeat("x", maxQuoted) + `"…`},
		{"long multibyte cut on rune boundary", strings.Repeat("é", 100), `"` + strings.Repeat("é", maxQuoted) + `"…`},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			if got := quote(tc.in); got != tc.want {
				t.Errorf("quote(%q) = %s, want %s", tc.in, got, tc.want)
			}
		})
	}
}
