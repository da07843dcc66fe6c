// Package validate checks and normalises request bodies, path ids and headers
// of Gantry's NVCF-compatible API before any handler acts on them.
//
// Every function returns nil or a *problem.Error (400, or 413 for an oversized
// body) whose Detail names the JSON field and says what is allowed, so that a
// user can fix the request without reading the docs. When several fields are
// wrong, all of them are reported in one Detail, joined with "; ", in the
// order the fields appear in the request type; that order is stable so tests
// and clients can rely on it.
//
// Messages quote what the user sent (shortened when long) so they can find it,
// with one exception: secret values are never echoed, not even in part.
package validate

import (
	"fmt"
	"strconv"
	"strings"
	"unicode"
	"unicode/utf8"

	"github.com/gantry-dev/gantry/internal/problem"
)

// maxProblems caps how many problems one Detail lists. A body with thousands
// of bad entries would otherwise produce a Detail far larger than the body;
// the first ones are enough for a user to see the pattern.
const maxProblems = 20

// problems collects the field errors of one request in the order they are
// found.
type problems struct {
	list []string
}

// addf records one problem.
func (p *problems) addf(format string, args ...any) {
	p.list = append(p.list, fmt.Sprintf(format, args...))
}

// err returns nil when nothing was recorded, else one 400 listing every
// problem. It returns an untyped nil so callers can compare with nil.
func (p *problems) err() error {
	if len(p.list) == 0 {
		return nil
	}
	list := p.list
	if len(list) > maxProblems {
		more := len(list) - maxProblems
		list = append(list[:maxProblems:maxProblems], fmt.Sprintf("and %d more problems", more))
	}
	return problem.BadRequest("%s", strings.Join(list, "; "))
}

// maxQuoted is how many characters of a user's value a message repeats.
const maxQuoted = 64

// quote renders a user-supplied value for a message: Go-quoted so control
// characters stay visible and cannot forge log lines, and cut short so that a
// megabyte-long name does not come back as a megabyte-long error.
func quote(s string) string {
	if utf8.RuneCountInString(s) <= maxQuoted {
		return fmt.Sprintf("%q", s)
	}
	n := 0
	for i := range s {
		if n == maxQuoted {
			return fmt.Sprintf("%q", s[:i]) + "…"
		}
		n++
	}
	return fmt.Sprintf("%q", s)
}

func isLetter(c byte) bool { return c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' }
func isDigit(c byte) bool  { return c >= '0' && c <= '9' }

// allBytes reports whether every byte of s satisfies ok. Non-ASCII bytes are
// handed to ok like any other, and every predicate here rejects them.
func allBytes(s string, ok func(c byte) bool) bool {
	for i := 0; i < len(s); i++ {
		if !ok(s[i]) {
			return false
		}
	}
	return true
}

// validEnvName reports whether s is a portable environment variable name:
// [A-Za-z_][A-Za-z0-9_]*.
func validEnvName(s string) bool {
	if s == "" || isDigit(s[0]) {
		return false
	}
	return allBytes(s, func(c byte) bool { return isLetter(c) || isDigit(c) || c == '_' })
}

// hasSpaceOrControl reports whether s holds whitespace, control characters or
// invalid UTF-8, none of which belong in an image reference, URL path or id.
func hasSpaceOrControl(s string) bool {
	for _, r := range s {
		if unicode.IsSpace(r) || unicode.IsControl(r) || r == utf8.RuneError {
			return true
		}
	}
	return false
}

// Tag rules, shared by function creation and the metadata endpoint.
const (
	// MaxTags is the most tags one function version may carry.
	MaxTags = 64
	// MaxTagLen is the longest tag, in characters.
	MaxTagLen = 128
	tagRule   = "use 1-128 characters of letters, digits, '_', ':', '=' and '-'"
)

// checkTags applies the tag rules to tags, naming the field "tags".
func checkTags(p *problems, tags []string) {
	if len(tags) > MaxTags {
		p.addf("tags has %d entries: at most %d tags are allowed", len(tags), MaxTags)
	}
	for i, t := range tags {
		if t == "" || len(t) > MaxTagLen || !allBytes(t, func(c byte) bool {
			return isLetter(c) || isDigit(c) || c == '_' || c == ':' || c == '=' || c == '-'
		}) {
			p.addf("tags[%d] %s is invalid: %s", i, quote(t), tagRule)
		}
	}
}

// itoa is strconv.Itoa, kept short for building field names.
func itoa(i int) string { return strconv.Itoa(i) }
