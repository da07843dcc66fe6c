package bus_test

import (
	"errors"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/nats-io/nats.go"

	"github.com/gantry-dev/gantry/internal/bus"
)

// usersForTest admits a fixed set of user tokens.
type usersForTest map[string]struct {
	account string
	expires time.Time
}

func (u usersForTest) VerifyUser(token string) (string, time.Time, error) {
	if e, ok := u[token]; ok {
		return e.account, e.expires, nil
	}
	return "", time.Time{}, errors.New("unknown credential")
}

// TestUserConnections runs an embedded server that admits users besides
// the control plane and agents: a user may subscribe to its account's
// subjects only and publish nothing, its connection ends when its
// credential expires, and a refused one is reported without the
// credential.
func TestUserConnections(t *testing.T) {
	var mu sync.Mutex
	var refusals []string
	users := usersForTest{
		"user-a-secret":     {account: "acct-a"},
		"user-b-secret":     {account: "acct-b"},
		"user-soon-expired": {account: "acct-a", expires: time.Now().Add(1500 * time.Millisecond)},
		"user-bad-account":  {account: "a.b"},
	}
	e, err := bus.StartEmbedded(bus.EmbeddedConfig{Dir: t.TempDir(), Auth: bus.NewAuthenticator(internalToken, newStaticVerifierForTest()),
		Users: users, UserSubjects: func(account string) []string { return []string{"gantry.events." + account + ".>"} },
		UserRefused: func(remote, reason string) {
			mu.Lock()
			defer mu.Unlock()
			refusals = append(refusals, remote+" "+reason)
		}}, 30*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { e.Close() })
	internal, err := e.Connect("internal")
	if err != nil {
		t.Fatalf("the control plane no longer connects: %v", err)
	}
	defer internal.Close()
	agent, err := nats.Connect(e.URL(), bus.AgentOptions("a", tokenA)...)
	if err != nil {
		t.Fatalf("an agent no longer connects: %v", err)
	}
	agent.Close()

	errs := make(chan error, 10)
	a, err := nats.Connect(e.URL(), nats.Token("user-a-secret"), nats.ErrorHandler(func(_ *nats.Conn, _ *nats.Subscription, err error) { errs <- err }))
	if err != nil {
		t.Fatal(err)
	}
	defer a.Close()
	own, err := a.SubscribeSync("gantry.events.acct-a.>")
	if err != nil {
		t.Fatal(err)
	}
	if _, err := a.SubscribeSync("gantry.events.acct-b.>"); err != nil {
		t.Fatal(err)
	}
	if err := a.Publish("gantry.events.acct-a.x", []byte("forged")); err != nil {
		t.Fatal(err)
	}
	_ = a.Flush()
	for range 2 {
		select {
		case err := <-errs:
			if !strings.Contains(err.Error(), "Permissions Violation") {
				t.Errorf("error %v", err)
			}
		case <-time.After(10 * time.Second):
			t.Fatal("a user's subscription to another account and its publish were not both refused")
		}
	}
	if err := internal.Publish("gantry.events.acct-a.function.created", []byte("real")); err != nil {
		t.Fatal(err)
	}
	m, err := own.NextMsg(5 * time.Second)
	if err != nil || string(m.Data) != "real" {
		t.Fatalf("own subject: %v %v", m, err)
	}

	// Refused: unknown, none, and an account that is not one subject token.
	for _, opt := range []nats.Option{nats.Token("user-unknown-secret"), nats.Token("user-bad-account")} {
		if nc, err := nats.Connect(e.URL(), opt, nats.MaxReconnects(0)); err == nil {
			nc.Close()
			t.Error("connected")
		}
	}
	if nc, err := nats.Connect(e.URL(), nats.MaxReconnects(0)); err == nil {
		nc.Close()
		t.Error("connected without a credential")
	}
	mu.Lock()
	got := strings.Join(refusals, "\n")
	mu.Unlock()
	if !strings.Contains(got, "unknown credential") || !strings.Contains(got, "no credential") || !strings.Contains(got, "cannot name a subject") {
		t.Errorf("refusals:\n%s", got)
	}
	if strings.Contains(got, "secret") {
		t.Errorf("a refusal names the credential:\n%s", got)
	}

	// A credential that expires ends its connection.
	closed := make(chan struct{})
	soon, err := nats.Connect(e.URL(), nats.Token("user-soon-expired"), nats.NoReconnect(),
		nats.ClosedHandler(func(*nats.Conn) { close(closed) }))
	if err != nil {
		t.Fatal(err)
	}
	defer soon.Close()
	select {
	case <-closed:
	case <-time.After(15 * time.Second):
		t.Fatal("the connection outlived its credential")
	}
}
