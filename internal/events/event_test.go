package events

import (
	"encoding/json"
	"errors"
	"testing"
	"time"
)

func validEvent() Event {
	return Event{SpecVersion: SpecVersion, ID: "12:functions/f/v:0", Source: "/gantry", Type: Type(KindFunctionCreated),
		Time: time.Date(2026, 1, 2, 3, 4, 5, 0, time.UTC), Subject: "functions/f/versions/v", DataContentType: ContentType,
		Account: "acct-a", Function: "f", Data: json.RawMessage(`{"functionId":"f"}`)}
}

func TestDecode(t *testing.T) {
	t.Parallel()
	cases := []struct {
		name    string
		edit    func(*Event)
		subject string
		ok      bool
	}{
		{name: "valid", ok: true},
		{name: "other spec version", edit: func(e *Event) { e.SpecVersion = "0.3" }},
		{name: "no id", edit: func(e *Event) { e.ID = "" }},
		{name: "no source", edit: func(e *Event) { e.Source = "" }},
		{name: "foreign type", edit: func(e *Event) { e.Type = "io.nats.jetstream.api.v1.pub_ack_response" }},
		{name: "unknown kind", edit: func(e *Event) { e.Type = "gantry.function.exploded" }},
		{name: "no time", edit: func(e *Event) { e.Time = time.Time{} }},
		{name: "account with a dot", edit: func(e *Event) { e.Account = "a.b" }},
		{name: "account wildcard", edit: func(e *Event) { e.Account = "*" }},
		{name: "data not an object", edit: func(e *Event) { e.Data = json.RawMessage(`[1]`) }},
		{name: "other content type", edit: func(e *Event) { e.DataContentType = "text/plain" }},
		{name: "another account's subject", subject: "gantry.events.acct-b.function.created"},
		{name: "another kind's subject", subject: "gantry.events.acct-a.function.deleted"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			e := validEvent()
			if tc.edit != nil {
				tc.edit(&e)
			}
			b, _ := json.Marshal(e)
			subject := tc.subject
			if subject == "" {
				subject = "gantry.events.acct-a.function.created"
			}
			got, err := DecodeAt(subject, b)
			if tc.ok != (err == nil) {
				t.Fatalf("DecodeAt: %v, want ok %v", err, tc.ok)
			}
			if err != nil && !errors.Is(err, ErrInvalid) {
				t.Errorf("error %v is not ErrInvalid", err)
			}
			if tc.ok && (got.ID != e.ID || got.Kind() != KindFunctionCreated) {
				t.Errorf("decoded %+v", got)
			}
		})
	}
}

// FuzzDecode feeds arbitrary messages to the decoder every reader runs on
// what the stream holds (which may include messages Gantry did not
// publish): it never panics, and what it accepts re-encodes to an event it
// accepts again on the subject its account and kind name.
func FuzzDecode(f *testing.F) {
	b, _ := json.Marshal(validEvent())
	f.Add(b)
	f.Add([]byte(`{"type":"io.nats.jetstream.api.v1.stream_info_response"}`))
	f.Add([]byte(`{"specversion":"1.0","id":"x","source":"s","type":"gantry.key.rotated","time":"2026-01-01T00:00:00Z","datacontenttype":"application/json","gantryaccount":"a","data":{}}`))
	f.Fuzz(func(t *testing.T, b []byte) {
		e, err := Decode(b)
		if err != nil {
			return
		}
		if !IsSubjectToken(e.Account) || !knownKind(e.Kind()) {
			t.Fatalf("accepted %+v", e)
		}
		again, _ := json.Marshal(e)
		if _, err := DecodeAt(Subject(e.Account, e.Kind()), again); err != nil {
			t.Fatalf("re-encoded event refused: %v", err)
		}
	})
}
