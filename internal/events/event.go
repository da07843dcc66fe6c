// Package events is Gantry's platform event log: every state change a user
// cares about (a function created or deleted, a deployment's status, an
// instance started, stopped or failed, a scaling decision, a cluster READY
// or NOT_READY, a key rotated) as a CloudEvents-shaped JSON message on
// gantry.events.<account>.<kind> in the GANTRY_EVENTS JetStream stream.
//
// The leading control-plane replica derives the events from etcd's history
// (Source): one watch over the installation's keys, each change compared
// with the value it replaced, so every path that changes state (API,
// reconciler, autoscaler, agent reports, key rotation) is covered without a
// hook in each. An event's id is the etcd revision and key of its change,
// sent as the JetStream message id, so a new leader that replays changes
// the old one already published adds nothing (see Source). Readers (Log)
// see one account's subjects only.
package events

import (
	"encoding/json"
	"errors"
	"fmt"
	"strings"
	"time"
)

// Kinds of event: the subject tokens after the account, and the CloudEvents
// type after "gantry.".
const (
	KindFunctionCreated   = "function.created"
	KindFunctionDeleted   = "function.deleted"
	KindDeploymentStatus  = "deployment.status_changed"
	KindDeploymentDeleted = "deployment.deleted"
	KindDeploymentScaled  = "deployment.scaled"
	KindInstanceStarted   = "instance.started"
	KindInstanceStopped   = "instance.stopped"
	KindInstanceFailed    = "instance.failed"
	KindClusterReady      = "cluster.ready"
	KindClusterNotReady   = "cluster.not_ready"
	KindKeyRotated        = "key.rotated"
)

// Kinds lists every kind, in the order docs/architecture.md gives them.
var Kinds = []string{
	KindFunctionCreated, KindFunctionDeleted,
	KindDeploymentStatus, KindDeploymentDeleted, KindDeploymentScaled,
	KindInstanceStarted, KindInstanceStopped, KindInstanceFailed,
	KindClusterReady, KindClusterNotReady,
	KindKeyRotated,
}

// Names on the bus.
const (
	// Stream is the JetStream stream holding every account's events.
	Stream = "GANTRY_EVENTS"
	// SubjectPrefix starts every event subject.
	SubjectPrefix = "gantry.events."
	// Subjects matches every event subject.
	Subjects = SubjectPrefix + ">"
	// TypePrefix starts every CloudEvents type.
	TypePrefix = "gantry."
	// SpecVersion is the CloudEvents version of the events.
	SpecVersion = "1.0"
	// ContentType is the datacontenttype of every event's data.
	ContentType = "application/json"
	// HeaderRevision carries the etcd revision an event was derived from,
	// so a new leader knows where the previous one stopped.
	HeaderRevision = "Gantry-Revision"
	// SystemAccount receives the events of no single account; the REST
	// route never shows them (it is not an account anyone's key is for).
	SystemAccount = "_gantry"
)

// Subject is where an event of kind for account is published.
func Subject(account, kind string) string { return SubjectPrefix + account + "." + kind }

// AccountSubjects matches every event of account.
func AccountSubjects(account string) string { return SubjectPrefix + account + ".>" }

// Type is the CloudEvents type of kind.
func Type(kind string) string { return TypePrefix + kind }

// Event is one platform event: a CloudEvent in structured JSON mode (spec
// 1.0), with Gantry's extension attributes gantryaccount and, for events
// about a function, gantryfunction.
type Event struct {
	SpecVersion     string    `json:"specversion"`
	ID              string    `json:"id"`
	Source          string    `json:"source"`
	Type            string    `json:"type"`
	Time            time.Time `json:"time"`
	Subject         string    `json:"subject,omitempty"`
	DataContentType string    `json:"datacontenttype"`
	// Account owns the event; only its credentials read it.
	Account string `json:"gantryaccount"`
	// Function is the function the event is about, if any: an API key
	// limited to some functions sees only their events.
	Function string          `json:"gantryfunction,omitempty"`
	Data     json.RawMessage `json:"data"`
}

// Kind is the event's kind: its type without "gantry.".
func (e Event) Kind() string { return strings.TrimPrefix(e.Type, TypePrefix) }

// ErrInvalid marks a message on an event subject that is not a Gantry event
// (see Decode).
var ErrInvalid = errors.New("events: not a gantry event")

// maxEventSize bounds what Decode reads; Gantry's events are well under a
// KiB.
const maxEventSize = 64 << 10

// Decode parses and checks one event as read from the stream. The stream
// can hold messages Gantry did not publish (NATS does not authorise reply
// subjects, so a client may aim a server's answer at an event subject; see
// bus.FromAgent), so readers decode every message and drop what fails: a
// valid event has spec version 1.0, an id, a source, a gantry.<kind> type of
// a known kind, a time, an account that is one subject token, and JSON
// object data.
func Decode(b []byte) (Event, error) {
	var e Event
	if len(b) > maxEventSize {
		return e, fmt.Errorf("%w: %d bytes", ErrInvalid, len(b))
	}
	if err := json.Unmarshal(b, &e); err != nil {
		return Event{}, fmt.Errorf("%w: %v", ErrInvalid, err)
	}
	switch {
	case e.SpecVersion != SpecVersion:
		return Event{}, fmt.Errorf("%w: specversion %q", ErrInvalid, e.SpecVersion)
	case e.ID == "" || e.Source == "":
		return Event{}, fmt.Errorf("%w: no id or source", ErrInvalid)
	case !knownKind(e.Kind()) || !strings.HasPrefix(e.Type, TypePrefix):
		return Event{}, fmt.Errorf("%w: type %q", ErrInvalid, e.Type)
	case e.Time.IsZero():
		return Event{}, fmt.Errorf("%w: no time", ErrInvalid)
	case !IsSubjectToken(e.Account):
		return Event{}, fmt.Errorf("%w: account %q", ErrInvalid, e.Account)
	case e.DataContentType != ContentType || len(e.Data) == 0 || e.Data[0] != '{':
		return Event{}, fmt.Errorf("%w: data is not a JSON object", ErrInvalid)
	}
	return e, nil
}

// DecodeAt decodes a message read from subject: Decode, and the subject
// must be the one the event's account and kind give.
func DecodeAt(subject string, b []byte) (Event, error) {
	e, err := Decode(b)
	if err != nil {
		return e, err
	}
	if subject != Subject(e.Account, e.Kind()) {
		return Event{}, fmt.Errorf("%w: %s on subject %q", ErrInvalid, e.Type, subject)
	}
	return e, nil
}

func knownKind(k string) bool {
	for _, x := range Kinds {
		if x == k {
			return true
		}
	}
	return false
}

// IsSubjectToken reports whether s can stand as one literal subject token:
// non-empty, and only letters, digits, '-' and '_'. Account ids are
// validated to letters, digits and '-'; the system account has a '_'.
func IsSubjectToken(s string) bool {
	if s == "" || len(s) > 128 {
		return false
	}
	for i := 0; i < len(s); i++ {
		switch b := s[i]; {
		case b >= 'a' && b <= 'z', b >= 'A' && b <= 'Z', b >= '0' && b <= '9', b == '-', b == '_':
		default:
			return false
		}
	}
	return true
}
