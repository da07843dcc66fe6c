package ui

import (
	"errors"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/gantry-dev/gantry/internal/testutil"
)

// newTestSessions opens the session store on a real embedded NATS, with a
// clock the test moves.
func newTestSessions(t *testing.T, now *time.Time) *sessions {
	t.Helper()
	nc, err := nats.Connect(testutil.StartNATS(t))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(nc.Close)
	js, err := jetstream.New(nc)
	if err != nil {
		t.Fatal(err)
	}
	s, err := openSessions(testutil.Context(t), js, time.Minute, time.Hour, func() time.Time { return *now })
	if err != nil {
		t.Fatal(err)
	}
	return s
}

// TestSessions: a login code is good once, and not after it expires; the
// session it gives lasts its time and ends on logout; neither code nor
// session is stored under its own value.
func TestSessions(t *testing.T) {
	now := time.Now()
	s := newTestSessions(t, &now)
	ctx := testutil.Context(t)

	code, _, err := s.issueCode(ctx, "acct", "admin")
	if err != nil {
		t.Fatal(err)
	}
	// Two redeem at once: exactly one wins.
	var (
		wg    sync.WaitGroup
		mu    sync.Mutex
		won   []string
		spent int
	)
	for range 2 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			v, _, err := s.redeem(ctx, code)
			mu.Lock()
			defer mu.Unlock()
			switch {
			case err == nil:
				won = append(won, v)
			case errors.Is(err, ErrCodeUsed):
				spent++
			default:
				t.Errorf("redeem: %v", err)
			}
		}()
	}
	wg.Wait()
	if len(won) != 1 || spent != 1 {
		t.Fatalf("two redeems of one code: %d sessions, %d refusals; want 1 and 1", len(won), spent)
	}
	sess := won[0]
	if _, _, err := s.redeem(ctx, code); !errors.Is(err, ErrCodeUsed) {
		t.Fatalf("code used again: %v, want ErrCodeUsed", err)
	}

	// Neither secret is a key in the bucket: only their hashes are.
	keys, err := s.kv.ListKeys(ctx)
	if err != nil {
		t.Fatal(err)
	}
	for k := range keys.Keys() {
		if strings.Contains(k, code) || strings.Contains(k, sess) {
			t.Errorf("key %q holds a secret in plaintext", k)
		}
	}

	rec, err := s.lookup(ctx, sess)
	if err != nil || rec.Account != "acct" {
		t.Fatalf("lookup: %+v %v", rec, err)
	}
	now = now.Add(2 * time.Hour)
	if _, err := s.lookup(ctx, sess); !errors.Is(err, ErrNoSession) {
		t.Fatalf("expired session: %v, want ErrNoSession", err)
	}

	// An expired code gives nothing.
	late, _, err := s.issueCode(ctx, "acct", "admin")
	if err != nil {
		t.Fatal(err)
	}
	now = now.Add(2 * time.Minute)
	if _, _, err := s.redeem(ctx, late); !errors.Is(err, ErrCodeUsed) {
		t.Fatalf("expired code: %v, want ErrCodeUsed", err)
	}

	// Logout ends a session.
	c2, _, _ := s.issueCode(ctx, "acct", "admin")
	v2, _, err := s.redeem(ctx, c2)
	if err != nil {
		t.Fatal(err)
	}
	if err := s.end(ctx, v2); err != nil {
		t.Fatal(err)
	}
	if _, err := s.lookup(ctx, v2); !errors.Is(err, ErrNoSession) {
		t.Fatalf("session after logout: %v, want ErrNoSession", err)
	}
	for _, bad := range []string{"", strings.Repeat("x", 200), "not-a-code"} {
		if _, _, err := s.redeem(ctx, bad); !errors.Is(err, ErrCodeUsed) {
			t.Errorf("redeem(%.10q): %v, want ErrCodeUsed", bad, err)
		}
	}
}
