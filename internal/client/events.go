package client

import (
	"bufio"
	"context"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"strconv"
	"strings"

	"github.com/gantry-dev/gantry/internal/events"
)

// EventsQuery selects events: Since is what the server's since takes (an
// RFC 3339 time, or a duration back from now such as "10m"); Limit bounds a
// listing (0: the server's default).
type EventsQuery struct {
	Since string
	Limit int
}

func (q EventsQuery) values(follow bool) url.Values {
	v := url.Values{}
	if q.Since != "" {
		v.Set("since", q.Since)
	}
	if q.Limit > 0 {
		v.Set("limit", strconv.Itoa(q.Limit))
	}
	if follow {
		v.Set("follow", "true")
	}
	return v
}

// EventList is the answer of ListEvents.
type EventList struct {
	Events    []events.Event `json:"events"`
	Truncated bool           `json:"truncated"`
}

// ListEvents returns the credential's account's events (GET
// /v1/gantry/events), oldest first.
func (c *Client) ListEvents(ctx context.Context, q EventsQuery) (EventList, error) {
	var out EventList
	path := "/v1/gantry/events"
	if v := q.values(false).Encode(); v != "" {
		path += "?" + v
	}
	err := c.doJSON(ctx, http.MethodGet, path, nil, &out)
	return out, err
}

// FollowEvents streams the account's events as they happen (Server-Sent
// Events), calling fn with each and its id, until ctx ends (nil), fn fails
// (its error) or the stream does. lastID, when not empty, resumes after the
// event of that id, as a browser's EventSource does when it reconnects.
func (c *Client) FollowEvents(ctx context.Context, q EventsQuery, lastID string, fn func(id string, e events.Event) error) error {
	req, err := c.newRequest(ctx, http.MethodGet, "/v1/gantry/events?"+q.values(true).Encode(), nil)
	if err != nil {
		return err
	}
	req.Header.Set("Accept", "text/event-stream")
	if lastID != "" {
		req.Header.Set("Last-Event-ID", lastID)
	}
	resp, err := c.http.Do(req)
	if err != nil {
		if ctx.Err() != nil {
			return nil
		}
		return err
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		data, _ := readBody(resp.Body)
		return newAPIError(resp, data)
	}
	err = readSSE(resp.Body, func(id, data string) error {
		e, err := events.Decode([]byte(data))
		if err != nil {
			return fmt.Errorf("client: event stream: %w", err)
		}
		return fn(id, e)
	})
	if ctx.Err() != nil {
		return nil
	}
	return err
}

// maxSSELine bounds one line of the event stream; events are well under it.
const maxSSELine = 1 << 20

// readSSE calls fn with the id and data of each event of a text/event-stream
// body (comments and other fields are skipped) until it ends.
func readSSE(r io.Reader, fn func(id, data string) error) error {
	sc := bufio.NewScanner(r)
	sc.Buffer(make([]byte, 0, 64<<10), maxSSELine)
	var id string
	var data []string
	for sc.Scan() {
		line := sc.Text()
		if line == "" {
			if len(data) > 0 {
				if err := fn(id, strings.Join(data, "\n")); err != nil {
					return err
				}
			}
			data = data[:0]
			continue
		}
		field, value, _ := strings.Cut(line, ":")
		value = strings.TrimPrefix(value, " ")
		switch field {
		case "id":
			id = value
		case "data":
			data = append(data, value)
		}
	}
	if err := sc.Err(); err != nil {
		return fmt.Errorf("client: event stream: %w", err)
	}
	return nil
}
