package controlplane

import (
	"context"
	"errors"
	"fmt"
	"sync/atomic"
	"time"

	"github.com/gantry-dev/gantry/internal/auth"
	"github.com/gantry-dev/gantry/internal/bus"
	"github.com/gantry-dev/gantry/internal/events"
)

// Events configures the platform event stream (package events) and who
// may read it over the bus.
type Events struct {
	// MaxAge drops events older than this (default 7 days).
	MaxAge time.Duration
	// MaxBytes bounds the stream (default 1 GiB); the oldest go first.
	MaxBytes int64
	// MQTTListen, when set (host:port), serves MQTT on the embedded NATS:
	// clients give an API key or admin token as their password and may
	// subscribe to gantry/events/<their account>/# only.
	MQTTListen string
}

// busUsers admits user credentials on the embedded NATS (MQTT passwords,
// NATS tokens) through the same chain as the REST API, for reading their
// account's events. The chain is set once the issuer and API keys are up;
// until then every user is refused.
type busUsers struct {
	chain atomic.Pointer[auth.Chain]
}

var _ bus.UserVerifier = (*busUsers)(nil)

// VerifyUser implements bus.UserVerifier. Its errors say why without the
// credential, for the server log.
func (b *busUsers) VerifyUser(token string) (string, time.Time, error) {
	c := b.chain.Load()
	if c == nil {
		return "", time.Time{}, errors.New("the server is still starting")
	}
	ctx, cancel := context.WithTimeout(context.Background(), 1500*time.Millisecond)
	defer cancel()
	p, err := c.Verify(ctx, token)
	if err != nil {
		return "", time.Time{}, errors.New("credential not accepted: it is malformed, expired, revoked or unknown")
	}
	if !p.Has(auth.ScopeListFunctions) && !p.Has(auth.ScopeListFunctionsDetails) {
		return "", time.Time{}, fmt.Errorf("credential %s lacks list_functions or list_functions_details, which reading events needs", p.CredentialID)
	}
	if p.Functions() != nil {
		return "", time.Time{}, fmt.Errorf("credential %s is limited to some functions, and the bus cannot narrow events to them: read GET /v1/gantry/events instead", p.CredentialID)
	}
	return p.Account, p.ExpiresAt, nil
}

// userSubjects are what a user of account may subscribe to: its events
// (and the subject of the topic gantry/events/<account> itself, so that an
// MQTT subscription to gantry/events/<account>/# is granted whole).
func userSubjects(account string) []string {
	return []string{events.SubjectPrefix + account, events.AccountSubjects(account)}
}
