package validate

import (
	"strconv"
	"strings"

	"github.com/gantry-dev/gantry/internal/problem"
)

// PollSecondsHeader is the invocation header that bounds how long a call
// waits before answering 202.
const PollSecondsHeader = "NVCF-POLL-SECONDS"

// Poll-seconds range from the API contract.
const (
	MinPollSeconds = 1
	MaxPollSeconds = 3600
)

// PollSeconds parses the NVCF-POLL-SECONDS header value. An empty (or blank)
// header yields def, which the caller picks (60, or longer for streaming) and
// which is not checked here; anything else must be a whole number of seconds
// from 1 to 3600.
func PollSeconds(header string, def int) (int, error) {
	v := strings.TrimSpace(header)
	if v == "" {
		return def, nil
	}
	n, err := strconv.Atoi(v)
	if err != nil || !allBytes(v, isDigit) || n < MinPollSeconds || n > MaxPollSeconds {
		return 0, problem.BadRequest("header %s %s is invalid: use a whole number of seconds from %d to %d",
			PollSecondsHeader, quote(header), MinPollSeconds, MaxPollSeconds)
	}
	return n, nil
}

// MaxIDLen is the longest id accepted in a path.
const MaxIDLen = 64

// ID checks an id taken from a request path; kind names it in the message
// ("function id", "version id", "deployment id", "request id"). Ids are 1-64
// letters, digits and '-', which every UUID satisfies. Checking before any
// lookup makes a malformed id a 400, never a 500 from a store that cannot
// key on it.
func ID(kind, s string) error {
	if s == "" || len(s) > MaxIDLen ||
		!allBytes(s, func(c byte) bool { return isLetter(c) || isDigit(c) || c == '-' }) {
		return problem.BadRequest("%s %s is not a valid id: use 1-%d letters, digits and '-', such as a UUID", kind, quote(s), MaxIDLen)
	}
	return nil
}
