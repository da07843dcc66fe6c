package validate

import (
	"errors"
	"net/http"
	"net/url"
	"strings"
	"testing"
	"time"

	"github.com/gantry-dev/gantry/internal/problem"
)

func TestEvents(t *testing.T) {
	t.Parallel()
	now := time.Date(2026, 12, 7, 12, 0, 0, 0, time.UTC)
	cases := []struct {
		name, query, lastID string
		want                EventsQuery
		detail              string // a 400 whose detail contains this
	}{
		{name: "none"},
		{name: "rfc 3339", query: "since=2026-12-07T11:00:00Z", want: EventsQuery{Since: now.Add(-time.Hour)}},
		{name: "rfc 3339 with offset", query: "since=2026-12-07T13:00:00%2B02:00", want: EventsQuery{Since: now.Add(-time.Hour)}},
		{name: "duration", query: "since=10m", want: EventsQuery{Since: now.Add(-10 * time.Minute)}},
		{name: "compound duration", query: "since=1h30m&follow=true&limit=5", want: EventsQuery{Since: now.Add(-90 * time.Minute), Follow: true, Limit: 5}},
		{name: "last event id", lastID: "42", query: "follow=1", want: EventsQuery{After: 42, Follow: true}},
		{name: "days", query: "since=7d", want: EventsQuery{Since: now.Add(-7 * 24 * time.Hour)}},
		{name: "days and hours", query: "since=1d12h", want: EventsQuery{Since: now.Add(-36 * time.Hour)}},
		{name: "weeks", query: "since=2w", detail: `since "2w" is invalid: use an RFC 3339 time such as 2026-01-02T15:04:05Z or a duration back from now such as 10m, 1h30m or 7d`},
		{name: "days then a sign", query: "since=1d-3h", detail: `since "1d-3h" is invalid`},
		{name: "too many days", query: "since=4000d", detail: "at most ten years"},
		{name: "date only", query: "since=2026-12-07", detail: "since \"2026-12-07\" is invalid"},
		{name: "empty since", query: "since=", detail: "since \"\" is invalid"},
		{name: "negative", query: "since=-5m", detail: "is not positive"},
		{name: "too far", query: "since=100000h", detail: "at most ten years"},
		{name: "bad follow", query: "follow=yes", detail: "follow \"yes\" is invalid: use true or false"},
		{name: "bad limit", query: "limit=0", detail: "limit \"0\" is invalid: use a whole number from 1 to 10000"},
		{name: "limit too big", query: "limit=10001", detail: "from 1 to 10000"},
		{name: "misspelt", query: "sinse=10m", detail: "query parameter \"sinse\" is unknown: use since, follow or limit"},
		{name: "repeated", query: "since=1m&since=2m", detail: "since is given 2 times"},
		{name: "bad last event id", lastID: "abc", detail: "header Last-Event-ID \"abc\" is invalid"},
		{name: "every problem at once", query: "since=x&limit=-1", detail: "; limit"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			q, err := url.ParseQuery(tc.query)
			if err != nil {
				t.Fatal(err)
			}
			got, err := Events(q, tc.lastID, now)
			if tc.detail != "" {
				var pe *problem.Error
				if !errors.As(err, &pe) || pe.Status != http.StatusBadRequest || !strings.Contains(pe.Detail, tc.detail) {
					t.Fatalf("err %v, want a 400 with %q", err, tc.detail)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if !got.Since.Equal(tc.want.Since) || got.After != tc.want.After || got.Limit != tc.want.Limit || got.Follow != tc.want.Follow {
				t.Errorf("got %+v, want %+v", got, tc.want)
			}
		})
	}
}

// FuzzEventsQuery feeds arbitrary query strings and Last-Event-ID headers
// to the events query decoder: it never panics, refuses with a 400 only,
// and what it accepts is in bounds.
func FuzzEventsQuery(f *testing.F) {
	for _, s := range []string{"since=10m", "since=2026-12-07T11:00:00Z&follow=true", "limit=10000", "since=-1s", "since=9223372036854775807ns", "follow=T&limit=1"} {
		f.Add(s, "")
	}
	f.Add("follow=true", "18446744073709551615")
	f.Add("", "0")
	now := time.Date(2026, 12, 7, 12, 0, 0, 0, time.UTC)
	f.Fuzz(func(t *testing.T, query, lastID string) {
		q, err := url.ParseQuery(query)
		if err != nil {
			return
		}
		got, err := Events(q, lastID, now)
		if err != nil {
			var pe *problem.Error
			if !errors.As(err, &pe) || pe.Status != http.StatusBadRequest {
				t.Fatalf("not a 400: %v", err)
			}
			return
		}
		if got.Limit < 0 || got.Limit > MaxEventsLimit {
			t.Fatalf("limit %d", got.Limit)
		}
		if q.Has("since") && !strings.ContainsAny(q.Get("since"), "T") && got.Since.After(now) {
			t.Fatalf("a duration since %q is after now: %v", q.Get("since"), got.Since)
		}
	})
}
