package bus_test

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/nats-io/nats-server/v2/server"
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/gantry-dev/gantry/internal/bus"
)

const (
	internalToken = "internal-secret-for-test"
	tokenA        = "agent-a-secret-for-test"
	tokenB        = "agent-b-secret-for-test"
)

// staticVerifierForTest accepts a fixed set of agent tokens; it counts its
// calls so tests can see when it was (not) consulted.
type staticVerifierForTest struct {
	clusters map[string]string // token -> cluster id
	calls    atomic.Int64
}

func (v *staticVerifierForTest) VerifyAgent(token string) (string, bool) {
	v.calls.Add(1)
	id, ok := v.clusters[token]
	return id, ok
}

func newStaticVerifierForTest() *staticVerifierForTest {
	return &staticVerifierForTest{clusters: map[string]string{
		tokenA:          "a",
		tokenB:          "b",
		"dotted-token":  "a.b",
		"star-token":    "*",
		"empty-cluster": "",
	}}
}

// waitFor polls cond until it returns nil, failing the test with its last
// error after timeout.
func waitFor(t *testing.T, timeout time.Duration, cond func() error) {
	t.Helper()
	deadline := time.Now().Add(timeout)
	interval := 5 * time.Millisecond
	for {
		err := cond()
		if err == nil {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("condition not met after %v: %v", timeout, err)
		}
		time.Sleep(interval)
		interval = min(2*interval, 200*time.Millisecond)
	}
}

func testContext(t *testing.T, d time.Duration) context.Context {
	ctx, cancel := context.WithTimeout(context.Background(), d)
	t.Cleanup(cancel)
	return ctx
}

// authEnv is a nats-server guarded by an Authenticator, with the stream and
// buckets set up by an internal connection.
type authEnv struct {
	url      string
	internal *nats.Conn
	js       jetstream.JetStream
	desired  jetstream.KeyValue
	results  jetstream.KeyValue
}

func startAuthEnv(t *testing.T) *authEnv {
	t.Helper()
	v := newStaticVerifierForTest()
	auth := bus.NewAuthenticator(internalToken, v)
	opts := &server.Options{Host: "127.0.0.1", Port: server.RANDOM_PORT, JetStream: true, StoreDir: t.TempDir(),
		NoSigs: true, NoLog: true, MaxPayload: bus.MaxPayload}
	auth.Apply(opts)
	srv, err := server.NewServer(opts)
	if err != nil {
		t.Fatal(err)
	}
	srv.Start()
	t.Cleanup(func() { srv.Shutdown(); srv.WaitForShutdown() })
	if !srv.ReadyForConnections(10 * time.Second) {
		t.Fatal("nats-server not ready")
	}
	nc, err := nats.Connect(srv.ClientURL(), auth.InternalOption())
	if err != nil {
		t.Fatalf("internal connect: %v", err)
	}
	t.Cleanup(nc.Close)
	js, err := jetstream.New(nc)
	if err != nil {
		t.Fatal(err)
	}
	ctx := testContext(t, 30*time.Second)
	if err := bus.Setup(ctx, js, bus.Config{}); err != nil {
		t.Fatalf("setup as internal: %v", err)
	}
	env := &authEnv{url: srv.ClientURL(), internal: nc, js: js}
	if env.desired, err = js.KeyValue(ctx, bus.DesiredBucket); err != nil {
		t.Fatal(err)
	}
	if env.results, err = js.KeyValue(ctx, bus.ResultsBucket); err != nil {
		t.Fatal(err)
	}
	for _, c := range []string{"a", "b"} {
		if _, err := env.desired.Put(ctx, c, desiredState(c, 1)); err != nil {
			t.Fatalf("internal put desired %s: %v", c, err)
		}
	}
	return env
}

func desiredState(cluster string, gen int) []byte {
	return fmt.Appendf(nil, `{"clusterId":%q,"generation":%d,"instances":[]}`, cluster, gen)
}

// bigDesiredState is a desired state of 1.2 MiB.
func bigDesiredState(cluster string, gen int) []byte {
	return fmt.Appendf(nil, `{"clusterId":%q,"generation":%d,"instances":[],"pad":%q}`,
		cluster, gen, strings.Repeat("x", 1200<<10))
}

// connectAgent connects as the agent of cluster with token, the way the agent
// will: its token and its cluster's inbox prefix.
func (e *authEnv) connectAgent(t *testing.T, cluster, token string) *nats.Conn {
	t.Helper()
	nc, err := nats.Connect(e.url, bus.AgentOptions(cluster, token)...)
	if err != nil {
		t.Fatalf("agent %s connect: %v", cluster, err)
	}
	t.Cleanup(nc.Close)
	return nc
}

// consumerConfig mirrors the agent worker's work-queue consumer.
func consumerConfig(fn, ver string) jetstream.ConsumerConfig {
	return jetstream.ConsumerConfig{
		Durable:       bus.ConsumerName(ver),
		FilterSubject: bus.InvokeSubject(fn, ver),
		AckPolicy:     jetstream.AckExplicitPolicy,
		AckWait:       30 * time.Second,
		MaxDeliver:    5,
		MaxWaiting:    16384,
		MaxAckPending: -1,
	}
}

func TestAuthenticatorConnect(t *testing.T) {
	env := startAuthEnv(t)
	tests := []struct {
		name string
		opts []nats.Option
		ok   bool
	}{
		{"internal token", []nats.Option{nats.Token(internalToken)}, true},
		{"agent token", bus.AgentOptions("a", tokenA), true},
		{"no token", nil, false},
		{"unknown token", []nats.Option{nats.Token("not-a-token")}, false},
		{"internal token as password", []nats.Option{nats.UserInfo("gantry-internal", internalToken)}, false},
		{"verifier returns a dotted cluster id", []nats.Option{nats.Token("dotted-token")}, false},
		{"verifier returns a wildcard cluster id", []nats.Option{nats.Token("star-token")}, false},
		{"verifier returns an empty cluster id", []nats.Option{nats.Token("empty-cluster")}, false},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			opts := append([]nats.Option{nats.MaxReconnects(0)}, tc.opts...)
			nc, err := nats.Connect(env.url, opts...)
			if nc != nil {
				defer nc.Close()
			}
			switch {
			case tc.ok && err != nil:
				t.Fatalf("connect refused: %v", err)
			case !tc.ok && err == nil:
				t.Fatal("connect accepted")
			case !tc.ok && !errors.Is(err, nats.ErrAuthorization):
				t.Fatalf("connect failed with %v, want an authorization violation", err)
			}
		})
	}
}

func TestAuthenticatorEmptyInternalTokenAdmitsNobody(t *testing.T) {
	v := newStaticVerifierForTest()
	auth := bus.NewAuthenticator("", v)
	opts := &server.Options{Host: "127.0.0.1", Port: server.RANDOM_PORT, NoSigs: true, NoLog: true}
	auth.Apply(opts)
	srv, err := server.NewServer(opts)
	if err != nil {
		t.Fatal(err)
	}
	srv.Start()
	t.Cleanup(func() { srv.Shutdown(); srv.WaitForShutdown() })
	if !srv.ReadyForConnections(10 * time.Second) {
		t.Fatal("nats-server not ready")
	}
	for _, o := range []nats.Option{auth.InternalOption(), nats.Token("")} {
		nc, err := nats.Connect(srv.ClientURL(), nats.MaxReconnects(0), o)
		if err == nil {
			nc.Close()
			t.Fatal("connect without a token accepted")
		}
	}
	if n := v.calls.Load(); n != 0 {
		t.Fatalf("verifier consulted %d times for an empty token", n)
	}
}

// TestAgentCan walks through everything an agent of cluster "a" does on NATS.
func TestAgentCan(t *testing.T) {
	env := startAuthEnv(t)
	// watchCtx outlives the subtests: ending a watch makes the client delete
	// its consumer, which agents may not do (see agentPermissions).
	watchCtx := testContext(t, 60*time.Second)
	nc := env.connectAgent(t, "a", tokenA)
	js, err := jetstream.New(nc)
	if err != nil {
		t.Fatal(err)
	}

	t.Run("watch own desired state", func(t *testing.T) {
		ctx := testContext(t, 10*time.Second)
		kv, err := js.KeyValue(ctx, bus.DesiredBucket)
		if err != nil {
			t.Fatalf("bind desired bucket: %v", err)
		}
		w, err := kv.Watch(watchCtx, "a")
		if err != nil {
			t.Fatalf("watch: %v", err)
		}
		next := func() jetstream.KeyValueEntry {
			t.Helper()
			select {
			case e := <-w.Updates():
				return e
			case <-ctx.Done():
				t.Fatal("no update from the watch")
				return nil
			}
		}
		if e := next(); e == nil || string(e.Value()) != string(desiredState("a", 1)) {
			t.Fatalf("first update = %v, want cluster a's desired state", e)
		}
		if e := next(); e != nil {
			t.Fatalf("want the end-of-initial-values marker, got %q", e.Key())
		}
		if _, err := env.desired.Put(ctx, "a", desiredState("a", 2)); err != nil {
			t.Fatal(err)
		}
		if e := next(); e == nil || string(e.Value()) != string(desiredState("a", 2)) {
			t.Fatalf("update = %v, want generation 2", e)
		}
		// Large states make the server ask for flow control after about
		// 1 MiB and stop delivering after 2 MiB until the agent answers, so
		// receiving all three proves the answers get through.
		for gen := 3; gen <= 5; gen++ {
			if _, err := env.desired.Put(ctx, "a", bigDesiredState("a", gen)); err != nil {
				t.Fatal(err)
			}
		}
		for gen := 3; gen <= 5; gen++ {
			if e := next(); e == nil || string(e.Value()) != string(bigDesiredState("a", gen)) {
				t.Fatalf("want large generation %d", gen)
			}
		}
	})

	t.Run("create and update the work-queue consumer", func(t *testing.T) {
		ctx := testContext(t, 10*time.Second)
		for range 2 { // the second time it is an update with identical settings
			if _, err := js.CreateOrUpdateConsumer(ctx, bus.InvokeStream, consumerConfig("f1", "v1")); err != nil {
				t.Fatalf("create consumer: %v", err)
			}
		}
		c, err := js.Consumer(ctx, bus.InvokeStream, bus.ConsumerName("v1"))
		if err != nil {
			t.Fatalf("consumer info: %v", err)
		}
		if got := c.CachedInfo().Config.FilterSubject; got != bus.InvokeSubject("f1", "v1") {
			t.Fatalf("filter %q", got)
		}
	})

	t.Run("pull one message and ack it", func(t *testing.T) {
		ctx := testContext(t, 10*time.Second)
		if _, err := env.js.Publish(ctx, bus.InvokeSubject("f1", "v1"), []byte("work")); err != nil {
			t.Fatal(err)
		}
		inbox := nc.NewInbox()
		sub, err := nc.SubscribeSync(inbox)
		if err != nil {
			t.Fatal(err)
		}
		defer sub.Unsubscribe()
		req, _ := json.Marshal(map[string]int64{"batch": 1, "expires": int64(10 * time.Second)})
		if err := nc.PublishRequest("$JS.API.CONSUMER.MSG.NEXT."+bus.InvokeStream+".fv-v1", inbox, req); err != nil {
			t.Fatal(err)
		}
		msg, err := sub.NextMsgWithContext(ctx)
		if err != nil {
			t.Fatalf("pull: %v", err)
		}
		if string(msg.Data) != "work" {
			t.Fatalf("pulled %q (status %q)", msg.Data, msg.Header.Get("Status"))
		}
		if err := msg.Respond([]byte("+WPI")); err != nil {
			t.Fatal(err)
		}
		// Ack with a reply so that the server confirms it.
		if _, err := nc.RequestWithContext(ctx, msg.Reply, []byte("+ACK")); err != nil {
			t.Fatalf("ack: %v", err)
		}
		// A work queue drops an acknowledged message.
		waitFor(t, 10*time.Second, func() error {
			s, err := env.js.Stream(ctx, bus.InvokeStream)
			if err != nil {
				return err
			}
			if n := s.CachedInfo().State.Msgs; n != 0 {
				return fmt.Errorf("%d messages left in the work queue", n)
			}
			return nil
		})
	})

	t.Run("report and fetch secrets for own cluster", func(t *testing.T) {
		ctx := testContext(t, 10*time.Second)
		for _, subject := range []string{bus.ReportSubject("a"), bus.SecretsSubject("a")} {
			all := bus.ReportSubjectAll
			if strings.HasPrefix(subject, "gantry.secrets.") {
				all = bus.SecretsSubjectAll
			}
			sub, err := env.internal.Subscribe(all, func(m *nats.Msg) {
				cluster, ok := bus.FromAgent(m)
				_ = m.Respond(fmt.Appendf(nil, "%s %v", cluster, ok))
			})
			if err != nil {
				t.Fatal(err)
			}
			if err := env.internal.Flush(); err != nil {
				t.Fatal(err)
			}
			resp, err := nc.RequestWithContext(ctx, subject, []byte(`{}`))
			sub.Unsubscribe()
			if err != nil {
				t.Fatalf("request %s: %v", subject, err)
			}
			if string(resp.Data) != "a true" {
				t.Fatalf("control plane saw %q, want the request to come from agent a", resp.Data)
			}
		}
	})

	t.Run("answer a gateway", func(t *testing.T) {
		ctx := testContext(t, 10*time.Second)
		sub, err := env.internal.Subscribe(bus.ReplyPrefix("gw1")+"*", func(m *nats.Msg) { _ = m.Respond([]byte("1")) })
		if err != nil {
			t.Fatal(err)
		}
		defer sub.Unsubscribe()
		if err := env.internal.Flush(); err != nil {
			t.Fatal(err)
		}
		resp, err := nc.RequestWithContext(ctx, bus.ReplyPrefix("gw1")+"req-1", []byte("answer"))
		if err != nil || string(resp.Data) != "1" {
			t.Fatalf("gateway reply: %v %v", resp, err)
		}
	})

	t.Run("put a result", func(t *testing.T) {
		ctx := testContext(t, 10*time.Second)
		// What KeyValue.Put sends, without binding the bucket (which needs
		// stream info on it, which agents do not get).
		if _, err := js.Publish(ctx, "$KV."+bus.ResultsBucket+".req-1", []byte("result")); err != nil {
			t.Fatalf("put result: %v", err)
		}
		e, err := env.results.Get(ctx, "req-1")
		if err != nil || string(e.Value()) != "result" {
			t.Fatalf("result as the control plane reads it: %v %v", e, err)
		}
	})

	t.Run("hear offers and doorbells, queue-grouped", func(t *testing.T) {
		ctx := testContext(t, 10*time.Second)
		for _, subj := range []string{bus.FastSubject("f1", "v1"), bus.QueuedSubject("f1", "v1")} {
			sub, err := nc.QueueSubscribeSync(subj, "workers")
			if err != nil {
				t.Fatal(err)
			}
			if err := nc.Flush(); err != nil {
				t.Fatal(err)
			}
			if err := env.internal.Publish(subj, []byte("ring")); err != nil {
				t.Fatal(err)
			}
			if m, err := sub.NextMsg(time.Until(deadline(ctx))); err != nil || string(m.Data) != "ring" {
				t.Fatalf("%s: %v %v", subj, m, err)
			}
			_ = sub.Unsubscribe()
		}
	})

	// Nothing above may have been refused silently (flow control, acks).
	if err := nc.Flush(); err != nil {
		t.Fatal(err)
	}
	if err := nc.LastError(); err != nil {
		t.Fatalf("agent connection saw %v", err)
	}
}

// TestAgentCannot checks that the server refuses, for an agent of cluster
// "a", everything outside its own cluster's needs. Each case runs on its own
// connection: the server writes a refusal before it answers the PING of a
// Flush, so after Flush the connection's last error is the refusal, if any.
func TestAgentCannot(t *testing.T) {
	env := startAuthEnv(t)
	ctx := testContext(t, 60*time.Second)
	// A consumer and a message for the deletion cases to aim at.
	if _, err := env.js.CreateOrUpdateConsumer(ctx, bus.InvokeStream, consumerConfig("f1", "v1")); err != nil {
		t.Fatal(err)
	}
	if _, err := env.results.Put(ctx, "req-1", []byte("someone else's result")); err != nil {
		t.Fatal(err)
	}
	// short bounds calls the server never answers because it refused them.
	short := func() context.Context { return testContext(t, 300*time.Millisecond) }
	desiredKV := func(t *testing.T, nc *nats.Conn) jetstream.KeyValue {
		js, _ := jetstream.New(nc)
		kv, err := js.KeyValue(ctx, bus.DesiredBucket)
		if err != nil {
			t.Fatalf("bind desired bucket: %v", err)
		}
		return kv
	}
	jsOf := func(nc *nats.Conn) jetstream.JetStream { js, _ := jetstream.New(nc); return js }

	tests := []struct {
		name   string
		do     func(t *testing.T, nc *nats.Conn) error
		denied string // what the server's refusal names
	}{
		{"report for another cluster", func(t *testing.T, nc *nats.Conn) error {
			return nc.Publish(bus.ReportSubject("b"), []byte(`{}`))
		}, `Publish to "gantry.report.b"`},
		{"request another cluster's secrets", func(t *testing.T, nc *nats.Conn) error {
			_, err := nc.RequestWithContext(short(), bus.SecretsSubject("b"), []byte(`{"instanceId":"i"}`))
			return err
		}, `Publish to "gantry.secrets.b"`},
		{"log lines as another cluster", func(t *testing.T, nc *nats.Conn) error {
			return nc.Publish(bus.LogsSubject("b", "f", "v", "i"), []byte(`{}`))
		}, `Publish to "gantry.logs.b.f.v.i"`},
		{"read instances' log lines", func(t *testing.T, nc *nats.Conn) error {
			_, err := nc.SubscribeSync(bus.VersionLogsSubjects("f", ""))
			return err
		}, `Subscription to "gantry.logs.*.f.*.*"`},
		{"ask another cluster's agent for its logs", func(t *testing.T, nc *nats.Conn) error {
			return nc.Publish(bus.LogsRequestSubject("b"), []byte(`{}`))
		}, `Publish to "_GANTRY_INBOX.b.logs"`},
		{"report for every cluster", func(t *testing.T, nc *nats.Conn) error {
			return nc.Publish(bus.ReportSubjectAll, []byte(`{}`))
		}, `Publish to "gantry.report.*"`},
		{"watch another cluster's desired state", func(t *testing.T, nc *nats.Conn) error {
			_, err := desiredKV(t, nc).Watch(short(), "b")
			return err
		}, `.$KV.gantry_desired.b"`},
		{"watch all desired state", func(t *testing.T, nc *nats.Conn) error {
			_, err := desiredKV(t, nc).WatchAll(short())
			return err
		}, `.$KV.gantry_desired.>"`},
		{"write own desired state", func(t *testing.T, nc *nats.Conn) error {
			_, err := desiredKV(t, nc).Put(short(), "a", desiredState("a", 99))
			return err
		}, `Publish to "$KV.gantry_desired.a"`},
		{"write another cluster's desired state", func(t *testing.T, nc *nats.Conn) error {
			_, err := desiredKV(t, nc).Put(short(), "b", desiredState("b", 99))
			return err
		}, `Publish to "$KV.gantry_desired.b"`},
		{"delete the work-queue stream", func(t *testing.T, nc *nats.Conn) error {
			return jsOf(nc).DeleteStream(short(), bus.InvokeStream)
		}, `Publish to "$JS.API.STREAM.DELETE.GANTRY_INVOKE"`},
		{"purge the work-queue stream", func(t *testing.T, nc *nats.Conn) error {
			_, err := nc.RequestWithContext(short(), "$JS.API.STREAM.PURGE."+bus.InvokeStream, []byte(`{}`))
			return err
		}, `Publish to "$JS.API.STREAM.PURGE.GANTRY_INVOKE"`},
		{"update the work-queue stream", func(t *testing.T, nc *nats.Conn) error {
			_, err := jsOf(nc).UpdateStream(short(), jetstream.StreamConfig{Name: bus.InvokeStream, Subjects: []string{">"}})
			return err
		}, `Publish to "$JS.API.STREAM.UPDATE.GANTRY_INVOKE"`},
		{"create a stream", func(t *testing.T, nc *nats.Conn) error {
			_, err := jsOf(nc).CreateStream(short(), jetstream.StreamConfig{Name: "EVIL", Subjects: []string{"gantry.report.b"}})
			return err
		}, `Publish to "$JS.API.STREAM.CREATE.EVIL"`},
		{"delete the desired-state bucket", func(t *testing.T, nc *nats.Conn) error {
			return jsOf(nc).DeleteKeyValue(short(), bus.DesiredBucket)
		}, `Publish to "$JS.API.STREAM.DELETE.KV_gantry_desired"`},
		{"delete a work-queue consumer", func(t *testing.T, nc *nats.Conn) error {
			return jsOf(nc).DeleteConsumer(short(), bus.InvokeStream, bus.ConsumerName("v1"))
		}, `Publish to "$JS.API.CONSUMER.DELETE.GANTRY_INVOKE.fv-v1"`},
		{"create a consumer without a filter in the subject", func(t *testing.T, nc *nats.Conn) error {
			cfg := consumerConfig("f1", "v2")
			cfg.FilterSubject = ""
			_, err := jsOf(nc).CreateOrUpdateConsumer(short(), bus.InvokeStream, cfg)
			return err
		}, `Publish to "$JS.API.CONSUMER.CREATE.GANTRY_INVOKE.fv-v2"`},
		{"bind the results bucket (stream info lists request ids)", func(t *testing.T, nc *nats.Conn) error {
			_, err := jsOf(nc).KeyValue(short(), bus.ResultsBucket)
			return err
		}, `Publish to "$JS.API.STREAM.INFO.KV_gantry_results"`},
		{"read a result", func(t *testing.T, nc *nats.Conn) error {
			_, err := nc.RequestWithContext(short(), "$JS.API.DIRECT.GET.KV_gantry_results.$KV.gantry_results.req-1", nil)
			return err
		}, `Publish to "$JS.API.DIRECT.GET.KV_gantry_results.$KV.gantry_results.req-1"`},
		{"read the gateways' watch records", func(t *testing.T, nc *nats.Conn) error {
			_, err := nc.RequestWithContext(short(), "$JS.API.CONSUMER.MSG.NEXT."+bus.WatchStream+"."+bus.WatchConsumer, []byte(`{"batch":1}`))
			return err
		}, `Publish to "$JS.API.CONSUMER.MSG.NEXT.GANTRY_WATCH.gateways"`},
		{"write a watch record", func(t *testing.T, nc *nats.Conn) error {
			return nc.Publish(bus.WatchSubject("f1", "v1"), []byte("work"))
		}, `Publish to "gantry.watch.f1.v1"`},
		{"enqueue work", func(t *testing.T, nc *nats.Conn) error {
			return nc.Publish(bus.InvokeSubject("f1", "v1"), []byte("work"))
		}, `Publish to "gantry.invoke.f1.v1"`},
		{"read the control plane's inboxes", func(t *testing.T, nc *nats.Conn) error {
			_, err := nc.SubscribeSync("_INBOX.>")
			return err
		}, `Subscription to "_INBOX.>"`},
		{"read another agent's inboxes", func(t *testing.T, nc *nats.Conn) error {
			_, err := nc.SubscribeSync(bus.AgentInboxPrefix("b") + ".>")
			return err
		}, `Subscription to "_GANTRY_INBOX.b.>"`},
		{"listen to other clusters' reports", func(t *testing.T, nc *nats.Conn) error {
			_, err := nc.SubscribeSync(bus.ReportSubjectAll)
			return err
		}, `Subscription to "gantry.report.*"`},
	}
	t.Run("refused", func(t *testing.T) {
		for _, tc := range tests {
			t.Run(tc.name, func(t *testing.T) {
				t.Parallel()
				nc := env.connectAgent(t, "a", tokenA)
				_ = tc.do(t, nc) // refused calls time out or fail; the refusal is what counts
				if err := nc.Flush(); err != nil {
					t.Fatal(err)
				}
				err := nc.LastError()
				if !errors.Is(err, nats.ErrPermissionViolation) || !strings.Contains(err.Error(), tc.denied) {
					t.Fatalf("last error %v, want a permission violation for %s", err, tc.denied)
				}
			})
		}
	})

	// Nothing the refused calls aimed at changed.
	t.Run("state unchanged", func(t *testing.T) {
		for _, c := range []string{"a", "b"} {
			e, err := env.desired.Get(ctx, c)
			if err != nil || string(e.Value()) != string(desiredState(c, 1)) {
				t.Fatalf("desired %s: %v %v", c, e, err)
			}
		}
		if _, err := env.js.Consumer(ctx, bus.InvokeStream, bus.ConsumerName("v1")); err != nil {
			t.Fatalf("consumer: %v", err)
		}
	})
}

// TestFromAgent checks that handlers can tell an agent's own request from a
// message the server was made to publish on a cluster's subject.
func TestFromAgent(t *testing.T) {
	tests := []struct {
		name, subject, reply string
		cluster              string
		ok                   bool
	}{
		{"agent's request", "gantry.report.a", "_GANTRY_INBOX.a.abc.1", "a", true},
		{"secrets request", "gantry.secrets.a", "_GANTRY_INBOX.a.abc.1", "a", true},
		{"other cluster's inbox", "gantry.report.a", "_GANTRY_INBOX.b.abc.1", "a", false},
		{"inbox of a cluster whose id extends it", "gantry.report.a", "_GANTRY_INBOX.ab.x", "a", false},
		{"no reply (a JetStream API answer)", "gantry.report.a", "", "a", false},
		{"JetStream delivery", "gantry.report.a", "$JS.ACK.GANTRY_INVOKE.fv-v1.1.1.1.1.0", "a", false},
		{"default inbox", "gantry.report.a", "_INBOX.abc.1", "a", false},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			c, ok := bus.FromAgent(&nats.Msg{Subject: tc.subject, Reply: tc.reply})
			if ok != tc.ok || (ok && c != tc.cluster) {
				t.Fatalf("FromAgent = %q %v, want %q %v", c, ok, tc.cluster, tc.ok)
			}
		})
	}

	// End to end: agent a makes the server publish a stream-info answer to
	// gantry.report.b; the control plane's handler must not take it for b.
	env := startAuthEnv(t)
	ctx := testContext(t, 30*time.Second)
	got := make(chan *nats.Msg, 1)
	sub, err := env.internal.Subscribe(bus.ReportSubjectAll, func(m *nats.Msg) { got <- m })
	if err != nil {
		t.Fatal(err)
	}
	defer sub.Unsubscribe()
	if err := env.internal.Flush(); err != nil {
		t.Fatal(err)
	}
	nc := env.connectAgent(t, "a", tokenA)
	if err := nc.PublishRequest("$JS.API.STREAM.INFO.KV_"+bus.DesiredBucket, bus.ReportSubject("b"), nil); err != nil {
		t.Fatal(err)
	}
	select {
	case m := <-got:
		if c, ok := bus.FromAgent(m); ok {
			t.Fatalf("server-made message on %s taken as from agent %s", m.Subject, c)
		}
	case <-ctx.Done():
		t.Fatal("the stream-info answer never reached gantry.report.b")
	}
}

func deadline(ctx context.Context) time.Time {
	d, _ := ctx.Deadline()
	return d
}
