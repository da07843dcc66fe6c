package ui

import (
	"context"
	"crypto/rand"
	"crypto/sha256"
	"encoding/base64"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"time"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/gantry-dev/gantry/internal/auth"
)

// Bucket is the JetStream KV bucket that holds the dashboard's login codes
// and sessions, by the SHA-256 of their values (never the values), so that
// any control-plane replica redeems a code another one issued. Memory
// storage: a NATS restart logs every browser out, which `gantry dashboard`
// undoes.
const Bucket = "gantry_ui"

// CookieName is the dashboard's session cookie.
const CookieName = "gantry_session"

// KindSession marks a principal authenticated by a dashboard session
// cookie rather than a bearer credential.
const KindSession auth.Kind = "dashboard-session"

// ReadScopes are what a dashboard session may do: read functions, their
// deployments, queues and events, and cluster groups. Nothing the session
// reaches changes anything, so a stolen cookie cannot deploy, delete or
// invoke.
var ReadScopes = []string{auth.ScopeListFunctions, auth.ScopeListFunctionsDetails, auth.ScopeQueueDetails, auth.ScopeListClusterGroups}

// Errors of the session store.
var (
	// ErrCodeUsed is a login code that is unknown, already exchanged or
	// expired; the three are not told apart.
	ErrCodeUsed = errors.New("ui: login code unknown, used or expired")
	// ErrNoSession is a request without a live session cookie.
	ErrNoSession = errors.New("ui: no session")
)

// record is what the bucket keeps for a code or a session.
type record struct {
	Account   string    `json:"account"`
	Subject   string    `json:"subject"`
	ExpiresAt time.Time `json:"expiresAt"`
}

// sessions issues and checks login codes and session cookies.
type sessions struct {
	kv         jetstream.KeyValue
	codeTTL    time.Duration
	sessionTTL time.Duration
	now        func() time.Time
}

func openSessions(ctx context.Context, js jetstream.JetStream, codeTTL, sessionTTL time.Duration, now func() time.Time) (*sessions, error) {
	kv, err := js.CreateOrUpdateKeyValue(ctx, jetstream.KeyValueConfig{
		Bucket:      Bucket,
		Description: "dashboard login codes and sessions, by hash",
		TTL:         max(codeTTL, sessionTTL),
		Storage:     jetstream.MemoryStorage,
		History:     1,
	})
	if err != nil {
		return nil, fmt.Errorf("ui: bucket %s: %w", Bucket, err)
	}
	return &sessions{kv: kv, codeTTL: codeTTL, sessionTTL: sessionTTL, now: now}, nil
}

// newSecret is 32 random bytes, base64url.
func newSecret() (string, error) {
	b := make([]byte, 32)
	if _, err := rand.Read(b); err != nil {
		return "", fmt.Errorf("ui: random: %w", err)
	}
	return base64.RawURLEncoding.EncodeToString(b), nil
}

func key(kind, secret string) string {
	sum := sha256.Sum256([]byte(secret))
	return kind + "." + hex.EncodeToString(sum[:])
}

func (s *sessions) put(ctx context.Context, kind string, rec record) (string, error) {
	secret, err := newSecret()
	if err != nil {
		return "", err
	}
	b, err := json.Marshal(rec)
	if err != nil {
		return "", err
	}
	if _, err := s.kv.Create(ctx, key(kind, secret), b); err != nil {
		return "", fmt.Errorf("ui: store %s: %w", kind, err)
	}
	return secret, nil
}

// issueCode stores a login code for account and returns it with its expiry.
func (s *sessions) issueCode(ctx context.Context, account, subject string) (string, time.Time, error) {
	exp := s.now().Add(s.codeTTL)
	code, err := s.put(ctx, "code", record{Account: account, Subject: subject, ExpiresAt: exp})
	return code, exp, err
}

// redeem exchanges a code for a new session: the code's record is deleted
// on the condition that it is still the revision read, so of two
// concurrent exchanges (on any replicas) exactly one wins.
func (s *sessions) redeem(ctx context.Context, code string) (string, record, error) {
	if code == "" || len(code) > 128 {
		return "", record{}, ErrCodeUsed
	}
	k := key("code", code)
	e, err := s.kv.Get(ctx, k)
	if errors.Is(err, jetstream.ErrKeyNotFound) || errors.Is(err, jetstream.ErrKeyDeleted) {
		return "", record{}, ErrCodeUsed
	}
	if err != nil {
		return "", record{}, fmt.Errorf("ui: read code: %w", err)
	}
	var rec record
	if err := json.Unmarshal(e.Value(), &rec); err != nil {
		return "", record{}, ErrCodeUsed
	}
	if err := s.kv.Delete(ctx, k, jetstream.LastRevision(e.Revision())); err != nil {
		var apiErr *jetstream.APIError
		if errors.As(err, &apiErr) && (apiErr.ErrorCode == jetstream.JSErrCodeStreamWrongLastSequence || apiErr.ErrorCode == jetstream.JSErrCodeStreamWrongLastSequenceConstant) {
			return "", record{}, ErrCodeUsed
		}
		return "", record{}, fmt.Errorf("ui: use code: %w", err)
	}
	if !s.now().Before(rec.ExpiresAt) {
		return "", record{}, ErrCodeUsed
	}
	sess := record{Account: rec.Account, Subject: rec.Subject, ExpiresAt: s.now().Add(s.sessionTTL)}
	v, err := s.put(ctx, "session", sess)
	return v, sess, err
}

// lookup returns the live session whose cookie value is v.
func (s *sessions) lookup(ctx context.Context, v string) (record, error) {
	if v == "" || len(v) > 128 {
		return record{}, ErrNoSession
	}
	e, err := s.kv.Get(ctx, key("session", v))
	if errors.Is(err, jetstream.ErrKeyNotFound) || errors.Is(err, jetstream.ErrKeyDeleted) {
		return record{}, ErrNoSession
	}
	if err != nil {
		return record{}, fmt.Errorf("ui: read session: %w", err)
	}
	var rec record
	if err := json.Unmarshal(e.Value(), &rec); err != nil || !s.now().Before(rec.ExpiresAt) {
		return record{}, ErrNoSession
	}
	return rec, nil
}

// end deletes the session whose cookie value is v.
func (s *sessions) end(ctx context.Context, v string) error {
	if v == "" || len(v) > 128 {
		return nil
	}
	if err := s.kv.Delete(ctx, key("session", v)); err != nil && !errors.Is(err, jetstream.ErrKeyNotFound) {
		return fmt.Errorf("ui: end session: %w", err)
	}
	return nil
}

// Authenticate implements auth.Authenticator for the dashboard's reads: the
// session cookie, never a bearer credential, gives a read-only principal of
// the account that logged in.
func (u *UI) Authenticate(r *http.Request) (auth.Principal, error) {
	c, err := r.Cookie(CookieName)
	if err != nil {
		return auth.Principal{}, auth.ErrNoCredential
	}
	rec, err := u.sessions.lookup(r.Context(), c.Value)
	if errors.Is(err, ErrNoSession) {
		return auth.Principal{}, auth.ErrBadCredential
	}
	if err != nil {
		return auth.Principal{}, err
	}
	p := auth.NewPrincipal(rec.Account, rec.Subject, ReadScopes)
	p.Kind = KindSession
	p.ExpiresAt = rec.ExpiresAt
	return p, nil
}

var _ auth.Authenticator = (*UI)(nil)
