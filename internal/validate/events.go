package validate

import (
	"net/url"
	"slices"
	"strconv"
	"strings"
	"time"
)

// EventsQuery is what GET /v1/gantry/events asks for.
type EventsQuery struct {
	// Since is the earliest event wanted; zero: the oldest retained (or,
	// when following, only new ones).
	Since time.Time
	// After resumes just after this stream sequence (SSE's
	// Last-Event-ID); zero: not given.
	After uint64
	// Limit bounds a listing; zero: the server's default.
	Limit int
	// Follow keeps the answer open as Server-Sent Events.
	Follow bool
}

// Bounds of the events query.
const (
	MaxEventsLimit = 10000
	// maxSinceBack is the longest duration since accepts: further back
	// than any retention.
	maxSinceBack = 10 * 365 * 24 * time.Hour
)

var eventsParams = []string{"since", "follow", "limit"}

// Events decodes the query of GET /v1/gantry/events and its Last-Event-ID
// header (which a browser's EventSource sends back when it reconnects):
// since is an RFC 3339 time or a duration back from now ("10m", "1h30m",
// "7d"), follow a boolean, limit 1-10000. Unknown or repeated parameters
// are refused, so a misspelt "sinse" is a 400 rather than every event.
func Events(q url.Values, lastEventID string, now time.Time) (EventsQuery, error) {
	var out EventsQuery
	var p problems
	keys := make([]string, 0, len(q))
	for k := range q {
		keys = append(keys, k)
	}
	slices.Sort(keys)
	for _, k := range keys {
		if !slices.Contains(eventsParams, k) {
			p.addf("query parameter %s is unknown: use since, follow or limit", quote(k))
			continue
		}
		if len(q[k]) > 1 {
			p.addf("query parameter %s is given %d times: give it once", k, len(q[k]))
		}
	}
	if v := q.Get("since"); q.Has("since") {
		t, err := Since(v, now)
		if err != nil {
			p.addf("%s", err.Error())
		}
		out.Since = t
	}
	if v := q.Get("follow"); q.Has("follow") {
		b, err := strconv.ParseBool(v)
		if err != nil {
			p.addf("follow %s is invalid: use true or false", quote(v))
		}
		out.Follow = b
	}
	if v := q.Get("limit"); q.Has("limit") {
		n, err := strconv.Atoi(v)
		if err != nil || !allBytes(v, isDigit) || n < 1 || n > MaxEventsLimit {
			p.addf("limit %s is invalid: use a whole number from 1 to %d", quote(v), MaxEventsLimit)
		}
		out.Limit = n
	}
	if v := strings.TrimSpace(lastEventID); v != "" {
		n, err := strconv.ParseUint(v, 10, 64)
		if err != nil || !allBytes(v, isDigit) || n == 0 {
			p.addf("header Last-Event-ID %s is invalid: send back the id of the last event received, a positive whole number", quote(v))
		}
		out.After = n
	}
	if err := p.err(); err != nil {
		return EventsQuery{}, err
	}
	return out, nil
}

// sinceError is the message of a since that is neither a time nor a
// duration.
type sinceError struct{ value string }

func (e sinceError) Error() string {
	return "since " + quote(e.value) + " is invalid: use an RFC 3339 time such as 2026-01-02T15:04:05Z " +
		"or a duration back from now such as 10m, 1h30m or 7d"
}

// Since parses a since value: an RFC 3339 time, or a positive duration (up
// to ten years) counted back from now: Go's form, optionally after a whole
// number of days ("7d", "1d12h").
func Since(v string, now time.Time) (time.Time, error) {
	if t, err := time.Parse(time.RFC3339Nano, v); err == nil {
		return t.UTC(), nil
	}
	d, err := sinceDuration(v)
	switch {
	case err != nil || v == "" || strings.ContainsAny(v, " \t"):
		return time.Time{}, sinceError{v}
	case d <= 0:
		return time.Time{}, errorString("since " + quote(v) + " is not positive: a duration counts back from now, such as 10m")
	case d > maxSinceBack:
		return time.Time{}, errorString("since " + quote(v) + " is too long: at most ten years back")
	}
	return now.Add(-d).UTC(), nil
}

// sinceDuration parses [<days>d][<Go duration>].
func sinceDuration(v string) (time.Duration, error) {
	days, rest, ok := strings.Cut(v, "d")
	if !ok || days == "" || !allBytes(days, isDigit) || len(days) > 4 {
		return time.ParseDuration(v)
	}
	n, _ := strconv.Atoi(days) // at most 4 digits
	d := time.Duration(n) * 24 * time.Hour
	if rest == "" {
		return d, nil
	}
	if !isDigit(rest[0]) {
		return 0, sinceError{v}
	}
	r, err := time.ParseDuration(rest)
	return d + r, err
}

type errorString string

func (e errorString) Error() string { return string(e) }
