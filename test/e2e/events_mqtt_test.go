package e2e

import (
	"fmt"
	"io"
	"log/slog"
	"strings"
	"sync"
	"testing"
	"time"

	mqtt "github.com/eclipse/paho.mqtt.golang"
	"github.com/nats-io/nats.go"

	"github.com/gantry-dev/gantry/internal/auth"
	"github.com/gantry-dev/gantry/internal/client"
	"github.com/gantry-dev/gantry/internal/controlplane"
	"github.com/gantry-dev/gantry/internal/dev"
	"github.com/gantry-dev/gantry/internal/events"
	"github.com/gantry-dev/gantry/internal/model"
	"github.com/gantry-dev/gantry/internal/testutil"
)

// inbox collects the messages an MQTT subscription receives.
type inbox struct {
	mu   sync.Mutex
	msgs []mqtt.Message
}

func (b *inbox) handle(_ mqtt.Client, m mqtt.Message) {
	b.mu.Lock()
	defer b.mu.Unlock()
	b.msgs = append(b.msgs, m)
}

func (b *inbox) all() []mqtt.Message {
	b.mu.Lock()
	defer b.mu.Unlock()
	return append([]mqtt.Message(nil), b.msgs...)
}

// created finds the function.created of fnID among the messages, and
// checks topic and payload agree.
func (b *inbox) created(t *testing.T, fnID string) (mqtt.Message, bool) {
	t.Helper()
	for _, m := range b.all() {
		e, err := events.Decode(m.Payload())
		if err != nil {
			t.Errorf("topic %s: %v", m.Topic(), err)
			continue
		}
		if want := "gantry/events/" + e.Account + "/" + strings.ReplaceAll(e.Kind(), ".", "/"); m.Topic() != want {
			t.Errorf("event %s on topic %s, want %s", e.Type, m.Topic(), want)
		}
		if created(fnID)(e) {
			return m, true
		}
	}
	return nil, false
}

// TestEventsOverMQTT connects real MQTT clients (paho) to gantry dev
// --mqtt-listen with API keys and admin tokens as passwords: each reads its
// own account's events, a subscription to another account's (or to every
// account's) is refused in the SUBACK and gets nothing, and a wrong
// credential is refused at CONNECT with a reason in the log and none of the
// credential. The same credentials work as NATS tokens.
func TestEventsOverMQTT(t *testing.T) {
	t.Parallel()
	var logs syncBuffer
	p := startPlatformWith(t, t.TempDir(), func(c *dev.Config) {
		c.Events.MQTTListen = "127.0.0.1:0"
		c.Logger = slog.New(slog.NewTextHandler(io.MultiWriter(&logs, testWriter{t}), &slog.HandlerOptions{Level: slog.LevelWarn}))
	})
	ctx := testutil.Context(t)
	addr := p.ControlPlane().MQTTAddr()
	if addr == "" {
		t.Fatal("no MQTT listener")
	}
	account := controlplane.DefaultAccount
	keyA, err := p.c.CreateAPIKey(ctx, model.APIKeyRequest{Description: "mqtt"}, client.KeyIssuer{})
	if err != nil {
		t.Fatal(err)
	}
	otherTok, err := p.c.MintAdminToken(ctx, model.AdminKeyRequest{NCAID: "other-account"})
	if err != nil {
		t.Fatal(err)
	}
	other := client.New(p.URL(), otherTok.Value)
	keyB, err := other.CreateAPIKey(ctx, model.APIKeyRequest{Description: "mqtt"}, client.KeyIssuer{})
	if err != nil {
		t.Fatal(err)
	}
	invokeOnly, err := p.c.CreateAPIKey(ctx, model.APIKeyRequest{Description: "invoke only",
		Authorizations: &model.APIKeyAuthorizations{Policies: []model.APIKeyPolicy{{Scopes: []string{auth.ScopeInvokeFunction},
			Resources: []model.APIKeyResource{{ID: "*", Type: model.ResourceAccountFunctions}}}}}}, client.KeyIssuer{})
	if err != nil {
		t.Fatal(err)
	}

	n := 0
	connect := func(password string) (mqtt.Client, error) {
		n++
		o := mqtt.NewClientOptions().AddBroker("tcp://" + addr).SetClientID(fmt.Sprintf("events-test-%d", n)).
			SetUsername("anyone").SetPassword(password).SetConnectTimeout(10 * time.Second).
			SetAutoReconnect(false).SetConnectRetry(false).SetCleanSession(true)
		c := mqtt.NewClient(o)
		tok := c.Connect()
		if !tok.WaitTimeout(15 * time.Second) {
			return nil, fmt.Errorf("connect timed out")
		}
		if err := tok.Error(); err != nil {
			return nil, err
		}
		t.Cleanup(func() { c.Disconnect(100) })
		return c, nil
	}
	// subscribe returns the QoS the server granted (0x80: refused).
	subscribe := func(c mqtt.Client, topic string, b *inbox) byte {
		t.Helper()
		tok := c.Subscribe(topic, 1, b.handle)
		if !tok.WaitTimeout(15*time.Second) || tok.Error() != nil {
			t.Fatalf("subscribe %s: %v", topic, tok.Error())
		}
		return tok.(*mqtt.SubscribeToken).Result()[topic]
	}

	// Account A, with its API key and with its admin token; account B with
	// its key, subscribing to its own events and trying A's and everyone's.
	a, err := connect(keyA.Value)
	if err != nil {
		t.Fatalf("A's API key: %v", err)
	}
	aAdmin, err := connect(p.AdminToken())
	if err != nil {
		t.Fatalf("A's admin token: %v", err)
	}
	b, err := connect(keyB.Value)
	if err != nil {
		t.Fatalf("B's API key: %v", err)
	}
	var gotA, gotAAdmin, gotB, stolen inbox
	own := "gantry/events/" + account + "/#"
	if q := subscribe(a, own, &gotA); q > 1 {
		t.Fatalf("A's subscription to its own events refused: %#x", q)
	}
	if q := subscribe(aAdmin, "gantry/events/"+account+"/function/+", &gotAAdmin); q > 1 {
		t.Fatalf("A's admin subscription refused: %#x", q)
	}
	if q := subscribe(b, "gantry/events/other-account/#", &gotB); q > 1 {
		t.Fatalf("B's subscription to its own events refused: %#x", q)
	}
	for _, topic := range []string{own, "gantry/events/" + account + "/function/created", "gantry/events/#", "gantry/events/+/function/created", "#"} {
		if q := subscribe(b, topic, &stolen); q != 0x80 {
			t.Errorf("B subscribed to %s: granted QoS %d, want refused (0x80)", topic, q)
		}
	}

	// The same key as a NATS token: its own subjects only.
	natsErrs := make(chan error, 10)
	nc, err := nats.Connect(p.ControlPlane().NATSURL(), nats.Token(keyA.Value),
		nats.ErrorHandler(func(_ *nats.Conn, _ *nats.Subscription, err error) { natsErrs <- err }))
	if err != nil {
		t.Fatalf("A's API key over NATS: %v", err)
	}
	defer nc.Close()
	natsStolen, err := nc.SubscribeSync(events.AccountSubjects("other-account"))
	if err != nil {
		t.Fatal(err)
	}
	select {
	case err := <-natsErrs:
		if !strings.Contains(err.Error(), "Permissions Violation for Subscription") {
			t.Errorf("subscribing to B's events over NATS: %v", err)
		}
	case <-time.After(10 * time.Second):
		t.Error("subscribing to B's events over NATS was not refused")
	}
	natsA, err := nc.SubscribeSync(events.AccountSubjects(account))
	if err != nil {
		t.Fatal(err)
	}
	if err := nc.Publish(events.Subject(account, events.KindFunctionCreated), []byte(`{}`)); err != nil {
		t.Fatal(err)
	}
	if err := nc.Flush(); err != nil {
		t.Fatal(err)
	}

	fnA, err := p.c.CreateFunction(ctx, selfFunction(t, "mqtt-a", "echo"))
	if err != nil {
		t.Fatal(err)
	}
	fnB, err := other.CreateFunction(ctx, selfFunction(t, "mqtt-b", "echo"))
	if err != nil {
		t.Fatal(err)
	}
	testutil.WaitFor(t, 30*time.Second, func() error {
		if _, ok := gotA.created(t, fnA.ID); !ok {
			return fmt.Errorf("A's key has %d messages, not its function.created", len(gotA.all()))
		}
		if _, ok := gotAAdmin.created(t, fnA.ID); !ok {
			return fmt.Errorf("A's admin token has %d messages, not its function.created", len(gotAAdmin.all()))
		}
		if _, ok := gotB.created(t, fnB.ID); !ok {
			return fmt.Errorf("B has %d messages, not its function.created", len(gotB.all()))
		}
		return nil
	})
	for name, box := range map[string]*inbox{"A": &gotA, "A's admin": &gotAAdmin} {
		for _, m := range box.all() {
			if e, _ := events.Decode(m.Payload()); e.Account != account || e.Function == fnB.ID {
				t.Errorf("%s got %s: %s", name, m.Topic(), m.Payload())
			}
		}
	}
	for _, m := range gotB.all() {
		if !strings.HasPrefix(m.Topic(), "gantry/events/other-account/") {
			t.Errorf("B got %s: %s", m.Topic(), m.Payload())
		}
	}
	// paho hands a message to every handler whose filter matches, so B's
	// own events show up in the handler of its refused "#": none of A's
	// may.
	for _, m := range stolen.all() {
		if !strings.HasPrefix(m.Topic(), "gantry/events/other-account/") {
			t.Errorf("B's refused subscriptions got %s: %s", m.Topic(), m.Payload())
		}
	}
	// Over NATS: A's event arrived; A's own publish did not (users publish
	// nothing).
	for {
		m, err := natsA.NextMsg(10 * time.Second)
		if err != nil {
			t.Fatalf("A's NATS subscription: %v", err)
		}
		if e, err := events.DecodeAt(m.Subject, m.Data); err == nil && created(fnA.ID)(e) {
			break
		}
		if string(m.Data) == "{}" {
			t.Fatal("a user's publish on an event subject went through")
		}
	}

	if m, err := natsStolen.NextMsg(100 * time.Millisecond); err == nil {
		t.Errorf("A's NATS subscription to B's events got %s", m.Subject)
	}

	// Refused at CONNECT, with the reason logged and never the credential.
	bogus := "nvapi-" + strings.Repeat("0", 32) + strings.Repeat("x", 43)
	for name, pw := range map[string]string{"unknown key": bogus, "no password": "", "invoke-only key": invokeOnly.Value, "garbage": "not a credential"} {
		if _, err := connect(pw); err == nil {
			t.Errorf("%s: connected", name)
		}
	}
	testutil.WaitFor(t, 10*time.Second, func() error {
		if s := logs.String(); !strings.Contains(s, "bus connection refused") || !strings.Contains(s, "lacks list_functions") {
			return fmt.Errorf("no refusal with its reason in the log: %s", s)
		}
		return nil
	})
	for _, secret := range []string{bogus, invokeOnly.Value, keyA.Value, keyB.Value, p.AdminToken()} {
		if strings.Contains(logs.String(), secret) {
			t.Errorf("the log holds a credential")
		}
	}
}
