package e2e

import (
	"bufio"
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/gantry-dev/gantry/internal/auth"
	"github.com/gantry-dev/gantry/internal/client"
	"github.com/gantry-dev/gantry/internal/controlplane"
	"github.com/gantry-dev/gantry/internal/dev"
	"github.com/gantry-dev/gantry/internal/events"
	"github.com/gantry-dev/gantry/internal/model"
	"github.com/gantry-dev/gantry/internal/testutil"
)

// eventsAbout returns the kinds of the events in es whose data names
// function id fnID, in order.
func eventsAbout(es []events.Event, fnID string) []string {
	var out []string
	for _, e := range es {
		if e.Function == fnID {
			out = append(out, e.Kind())
		}
	}
	return out
}

// waitEvent waits until c lists an event that match accepts, and returns
// every event listed then.
func waitEvent(t *testing.T, c *client.Client, what string, match func(events.Event) bool) []events.Event {
	t.Helper()
	var list client.EventList
	testutil.WaitFor(t, 60*time.Second, func() error {
		var err error
		if list, err = c.ListEvents(testutil.Context(t), client.EventsQuery{}); err != nil {
			return err
		}
		if !slices.ContainsFunc(list.Events, match) {
			return fmt.Errorf("no %s among %d events", what, len(list.Events))
		}
		return nil
	})
	return list.Events
}

func created(fnID string) func(events.Event) bool {
	return func(e events.Event) bool { return e.Kind() == events.KindFunctionCreated && e.Function == fnID }
}

// TestEventsAPI drives the platform and reads its events back through GET
// /v1/gantry/events: a deployment's life as events, each account (and each
// API key) seeing only its own, the SSE stream with its resumption, and the
// problems of bad queries.
func TestEventsAPI(t *testing.T) {
	t.Parallel()
	p := startPlatform(t, t.TempDir())
	ctx := testutil.Context(t)
	admin := p.c
	account := controlplane.DefaultAccount

	fn, err := admin.CreateFunction(ctx, selfFunction(t, "events", "echo"))
	if err != nil {
		t.Fatal(err)
	}
	p.deploy(t, fn, model.GPUSpec{GPU: "H100", MinInstances: 1, MaxInstances: 1}, model.StatusActive)
	all := waitEvent(t, admin, "instance.started", func(e events.Event) bool {
		return e.Kind() == events.KindInstanceStarted && e.Function == fn.ID
	})
	if got := eventsAbout(all, fn.ID); !slices.Equal(got, []string{events.KindFunctionCreated,
		events.KindDeploymentStatus, events.KindInstanceStarted, events.KindDeploymentStatus}) &&
		!slices.Equal(got, []string{events.KindFunctionCreated, events.KindDeploymentStatus, events.KindDeploymentStatus, events.KindInstanceStarted}) {
		t.Errorf("events of the function: %v", got)
	}
	// The local cluster turned READY when its agent first reported, which
	// may have been before the first leader got going: the first leader
	// derives every change etcd still holds.
	if !slices.ContainsFunc(all, func(e events.Event) bool {
		return e.Kind() == events.KindClusterReady && e.Subject == "clusters/local"
	}) {
		t.Errorf("no cluster.ready of the local cluster among %v", kinds(all))
	}
	for _, e := range all {
		if e.Account != account || e.SpecVersion != "1.0" || e.Type != "gantry."+e.Kind() || e.Time.IsZero() || e.ID == "" {
			t.Errorf("event %+v", e)
		}
	}

	// Another account: its own admin token and API key see its events and
	// none of the first account's; the first sees none of its.
	otherTok, err := admin.MintAdminToken(ctx, model.AdminKeyRequest{NCAID: "other-account"})
	if err != nil {
		t.Fatal(err)
	}
	other := client.New(p.URL(), otherTok.Value)
	theirs, err := other.CreateFunction(ctx, selfFunction(t, "theirs", "echo"))
	if err != nil {
		t.Fatal(err)
	}
	otherKey, err := other.CreateAPIKey(ctx, model.APIKeyRequest{Description: "other"}, client.KeyIssuer{})
	if err != nil {
		t.Fatal(err)
	}
	for name, c := range map[string]*client.Client{"other admin": other, "other api key": client.New(p.URL(), otherKey.Value)} {
		got := waitEvent(t, c, "their function.created", created(theirs.ID))
		for _, e := range got {
			if e.Account != "other-account" || e.Function == fn.ID || strings.Contains(string(e.Data), fn.ID) {
				t.Errorf("%s sees %+v", name, e)
			}
		}
	}
	mine, err := admin.ListEvents(ctx, client.EventsQuery{})
	if err != nil {
		t.Fatal(err)
	}
	for _, e := range mine.Events {
		if e.Account != account || e.Function == theirs.ID {
			t.Errorf("the first account sees %+v", e)
		}
	}

	// An API key limited to one function sees that function's events only:
	// not the others', nor the account's clusters.
	only, err := admin.CreateFunction(ctx, selfFunction(t, "only", "echo"))
	if err != nil {
		t.Fatal(err)
	}
	limited, err := admin.CreateAPIKey(ctx, model.APIKeyRequest{Description: "one function",
		Authorizations: &model.APIKeyAuthorizations{Policies: []model.APIKeyPolicy{{Scopes: auth.DefaultAPIKeyScopes,
			Resources: []model.APIKeyResource{{ID: only.ID, Type: model.ResourceFunction}}}}}}, client.KeyIssuer{})
	if err != nil {
		t.Fatal(err)
	}
	for _, e := range waitEvent(t, client.New(p.URL(), limited.Value), "the limited key's function.created", created(only.ID)) {
		if e.Function != only.ID {
			t.Errorf("the key limited to %s sees %+v", only.ID, e)
		}
	}

	// Follow, with a default API key of the first account: what happens in
	// its account arrives, what happens in the other does not.
	key, err := admin.CreateAPIKey(ctx, model.APIKeyRequest{Description: "follow"}, client.KeyIssuer{})
	if err != nil {
		t.Fatal(err)
	}
	follower := client.New(p.URL(), key.Value)
	type got struct {
		id string
		e  events.Event
	}
	follow := func(ctx context.Context, lastID string) <-chan got {
		ch := make(chan got, 100)
		// From now, by this clock: the server's default "now" is when the
		// request arrives, which may be after what the test does next.
		q := client.EventsQuery{Since: time.Now().UTC().Format(time.RFC3339Nano)}
		go func() {
			defer close(ch)
			err := follower.FollowEvents(ctx, q, lastID, func(id string, e events.Event) error {
				ch <- got{id, e}
				return nil
			})
			if err != nil {
				t.Errorf("follow: %v", err)
			}
		}()
		return ch
	}
	fctx, cancel := context.WithTimeout(ctx, 60*time.Second)
	defer cancel()
	stream := follow(fctx, "")
	next := func(stream <-chan got, fnID string) got {
		t.Helper()
		for {
			select {
			case g, ok := <-stream:
				if !ok {
					t.Fatalf("the stream ended before %s's function.created", fnID)
				}
				if g.e.Account != account {
					t.Errorf("the follower sees %+v", g.e)
				}
				if created(fnID)(g.e) {
					return g
				}
			case <-fctx.Done():
				t.Fatalf("no function.created of %s followed", fnID)
			}
		}
	}
	if _, err := other.CreateFunction(ctx, selfFunction(t, "theirs-2", "echo")); err != nil {
		t.Fatal(err)
	}
	a1, err := admin.CreateFunction(ctx, selfFunction(t, "followed", "echo"))
	if err != nil {
		t.Fatal(err)
	}
	first := next(stream, a1.ID)
	if first.id == "" {
		t.Error("an SSE event without an id: browsers could not resume")
	}
	cancel()
	for range stream {
	}
	// Resuming after that id (Last-Event-ID) starts after it.
	a2, err := admin.CreateFunction(ctx, selfFunction(t, "after", "echo"))
	if err != nil {
		t.Fatal(err)
	}
	fctx, cancel = context.WithTimeout(ctx, 60*time.Second)
	defer cancel()
	resumed := follow(fctx, first.id)
	select {
	case g := <-resumed:
		if created(a1.ID)(g.e) {
			t.Errorf("resuming after %s repeated it", first.id)
		}
		if !created(a2.ID)(g.e) {
			next(resumed, a2.ID)
		}
	case <-fctx.Done():
		t.Fatal("nothing after resuming")
	}
	cancel()
	for range resumed {
	}

	// Bad queries are problems that say what to do; no credential is a
	// 401, a key without a function-reading scope a 403.
	invokeOnly, err := admin.CreateAPIKey(ctx, model.APIKeyRequest{Description: "invoke only",
		Authorizations: &model.APIKeyAuthorizations{Policies: []model.APIKeyPolicy{{Scopes: []string{auth.ScopeInvokeFunction},
			Resources: []model.APIKeyResource{{ID: "*", Type: model.ResourceAccountFunctions}}}}}}, client.KeyIssuer{})
	if err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		name, query, bearer string
		status              int
		detail              string
	}{
		{"since yesterday", "?since=yesterday", p.AdminToken(), 400, `since \"yesterday\" is invalid: use an RFC 3339 time such as 2026-01-02T15:04:05Z or a duration back from now such as 10m, 1h30m or 7d`},
		{"since in weeks", "?since=2w", key.Value, 400, `since \"2w\" is invalid`},
		{"since in days", "?since=7d", key.Value, 200, `"events":`},
		{"misspelt", "?sinse=10m", key.Value, 400, `query parameter \"sinse\" is unknown`},
		{"follow maybe", "?follow=maybe", key.Value, 400, `follow \"maybe\" is invalid: use true or false`},
		{"no credential", "", "", 401, "missing credential"},
		{"invoke-only key", "", invokeOnly.Value, 403, "lacks the scope"},
	} {
		status, body := call(t, p.URL(), "GET", "/v1/gantry/events"+tc.query, tc.bearer, "")
		if status != tc.status || (status >= 400 && !strings.Contains(body, `"status":`)) || !strings.Contains(body, tc.detail) {
			t.Errorf("%s: %d %s, want %d with %q", tc.name, status, body, tc.status, tc.detail)
		}
	}
}

func kinds(es []events.Event) []string {
	out := make([]string, 0, len(es))
	for _, e := range es {
		out = append(out, e.Kind())
	}
	return out
}

// TestEventsServerSentForBrowsers reads the stream as a browser's
// EventSource does: Accept: text/event-stream and nothing else, the frames
// as the SSE format has them.
func TestEventsServerSentForBrowsers(t *testing.T) {
	t.Parallel()
	p := startPlatform(t, t.TempDir())
	ctx, cancel := context.WithTimeout(testutil.Context(t), 60*time.Second)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, "GET", p.URL()+"/v1/gantry/events?since=1h", nil)
	if err != nil {
		t.Fatal(err)
	}
	req.Header.Set("Accept", "text/event-stream")
	req.Header.Set("Authorization", "Bearer "+p.AdminToken())
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	if resp.StatusCode != 200 || resp.Header.Get("Content-Type") != "text/event-stream" || resp.Header.Get("Cache-Control") != "no-cache" {
		t.Fatalf("%d %v", resp.StatusCode, resp.Header)
	}
	fn, err := p.c.CreateFunction(ctx, selfFunction(t, "browser", "echo"))
	if err != nil {
		t.Fatal(err)
	}
	sc := bufio.NewScanner(resp.Body)
	var frame []string
	for sc.Scan() {
		line := sc.Text()
		if line != "" {
			frame = append(frame, line)
			continue
		}
		if len(frame) == 3 && strings.HasPrefix(frame[0], "id: ") && frame[1] == "event: gantry.function.created" &&
			strings.HasPrefix(frame[2], "data: {") && strings.Contains(frame[2], fn.ID) {
			var e events.Event
			if err := json.Unmarshal([]byte(strings.TrimPrefix(frame[2], "data: ")), &e); err != nil || e.Function != fn.ID {
				t.Fatalf("data %s: %v", frame[2], err)
			}
			return
		}
		frame = nil
	}
	t.Fatalf("the stream ended without the function's event: %v", sc.Err())
}

// TestEventsSurviveRestart stops the platform and starts it again on the
// same data: the events from before are still there, once, and new ones
// follow (the new leader resumes where the stream ends).
func TestEventsSurviveRestart(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	p := startPlatform(t, dir)
	ctx := testutil.Context(t)
	before, err := p.c.CreateFunction(ctx, selfFunction(t, "before", "echo"))
	if err != nil {
		t.Fatal(err)
	}
	waitEvent(t, p.c, "function.created before the restart", created(before.ID))
	p.Close()

	p = startPlatform(t, dir)
	after, err := p.c.CreateFunction(ctx, selfFunction(t, "after", "echo"))
	if err != nil {
		t.Fatal(err)
	}
	all := waitEvent(t, p.c, "function.created after the restart", created(after.ID))
	ids := map[string]bool{}
	for _, e := range all {
		if ids[e.ID] {
			t.Errorf("event %s (%s) twice", e.ID, e.Kind())
		}
		ids[e.ID] = true
	}
	if n := len(eventsAbout(all, before.ID)); n != 1 {
		t.Errorf("%d events about the function from before the restart, want 1", n)
	}
}

// TestEventsStreamEndsWithServer follows the events and stops the server:
// the stream ends at once (the browser would reconnect elsewhere) instead of
// holding the HTTP shutdown to its timeout.
func TestEventsStreamEndsWithServer(t *testing.T) {
	t.Parallel()
	p := startPlatform(t, t.TempDir())
	ctx, cancel := context.WithTimeout(testutil.Context(t), 60*time.Second)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, "GET", p.URL()+"/v1/gantry/events?follow=true", nil)
	if err != nil {
		t.Fatal(err)
	}
	req.Header.Set("Authorization", "Bearer "+p.AdminToken())
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	r := bufio.NewReader(resp.Body)
	if line, err := r.ReadString('\n'); err != nil || line != ": gantry events\n" {
		t.Fatalf("first line %q, %v", line, err)
	}
	began := time.Now()
	ended := make(chan struct{})
	go func() {
		defer close(ended)
		for {
			if _, err := r.ReadString('\n'); err != nil {
				return
			}
		}
	}()
	p.Close()
	select {
	case <-ended:
	case <-ctx.Done():
		t.Fatal("the stream outlived the server")
	}
	if took := time.Since(began); took > 5*time.Second {
		t.Errorf("closing with a followed stream took %v", took)
	}
}

// TestEventsOfScaling deploys at zero instances and calls the function: the
// autoscaler's decision to start one, the instance starting, and, after the
// scale-down delay, the decision to go back to zero and the instance
// stopping are events, in that order.
func TestEventsOfScaling(t *testing.T) {
	t.Parallel()
	p := startPlatformWith(t, t.TempDir(), func(c *dev.Config) { c.Autoscale.ScaleDownDelay = 2 * time.Second })
	ctx := testutil.Context(t)
	f, err := p.c.CreateFunction(ctx, selfFunction(t, "scaled", "echo"))
	if err != nil {
		t.Fatal(err)
	}
	p.deploy(t, f, model.GPUSpec{GPU: "H100", MinInstances: 0, MaxInstances: 1}, model.StatusActive)
	inv, err := p.c.Invoke(ctx, client.InvokeRequest{FunctionID: f.ID})
	if err != nil || inv.StatusCode != http.StatusOK {
		t.Fatalf("invoke: %v %v", inv, err)
	}
	all := waitEvent(t, p.c, "instance.stopped", func(e events.Event) bool {
		return e.Kind() == events.KindInstanceStopped && e.Function == f.ID
	})
	var seq []string
	for _, e := range all {
		if e.Function != f.ID {
			continue
		}
		s := e.Kind()
		if e.Kind() == events.KindDeploymentScaled {
			var d events.ScaleData
			if err := json.Unmarshal(e.Data, &d); err != nil {
				t.Fatal(err)
			}
			s += fmt.Sprintf(" %d->%d", d.From, d.To)
			if d.Reason == "" || d.GPU != "H100" || d.At.IsZero() {
				t.Errorf("decision %+v", d)
			}
		}
		seq = append(seq, s)
	}
	want := []string{"deployment.scaled 0->1", events.KindInstanceStarted, "deployment.scaled 1->0", events.KindInstanceStopped}
	var got []string
	for _, s := range seq {
		if slices.Contains(want, s) {
			got = append(got, s)
		}
	}
	if !slices.Equal(got, want) {
		t.Errorf("events of the function: %v, want %v in that order", seq, want)
	}
}
