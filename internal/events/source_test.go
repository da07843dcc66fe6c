package events_test

import (
	"context"
	"encoding/json"
	"fmt"
	"log/slog"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/gantry-dev/gantry/internal/events"
	"github.com/gantry-dev/gantry/internal/model"
	"github.com/gantry-dev/gantry/internal/secrets"
	"github.com/gantry-dev/gantry/internal/store"
	"github.com/gantry-dev/gantry/internal/testutil"
)

// rig is a real etcd and a real nats-server with the event stream.
type rig struct {
	st  *store.Store
	nc  *nats.Conn
	js  jetstream.JetStream
	log *events.Log
}

func newRig(t *testing.T) *rig {
	t.Helper()
	st := testutil.StartEtcd(t)
	nc, err := nats.Connect(testutil.StartNATS(t))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(nc.Close)
	js, err := jetstream.New(nc)
	if err != nil {
		t.Fatal(err)
	}
	if err := events.Setup(testutil.Context(t), js, events.StreamConfig{}); err != nil {
		t.Fatal(err)
	}
	return &rig{st: st, nc: nc, js: js, log: events.NewLog(js)}
}

// runSource runs a Source (as a leader would) until the returned stop is
// called or the test ends.
func (r *rig) runSource(t *testing.T) (stop func()) {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	src := events.NewSource(events.SourceConfig{Store: r.st, JS: r.js,
		Logger: slog.New(slog.NewTextHandler(testWriter{t}, &slog.HandlerOptions{Level: slog.LevelWarn}))})
	go func() { defer close(done); src.Run(ctx) }()
	stop = func() { cancel(); <-done }
	t.Cleanup(stop)
	return stop
}

type testWriter struct{ t testing.TB }

func (w testWriter) Write(b []byte) (int, error) {
	w.t.Log(strings.TrimSpace(string(b)))
	return len(b), nil
}

// waitKinds waits until account's events are exactly want (kinds, in
// order), and returns them.
func (r *rig) waitKinds(t *testing.T, account string, want ...string) []events.Entry {
	t.Helper()
	var got []events.Entry
	testutil.WaitFor(t, 20*time.Second, func() error {
		var err error
		got, _, err = r.log.List(testutil.Context(t), account, events.Query{})
		if err != nil {
			return err
		}
		if kinds := entryKinds(got); !slices.Equal(kinds, want) {
			return fmt.Errorf("kinds %v, want %v", kinds, want)
		}
		return nil
	})
	return got
}

func entryKinds(es []events.Entry) []string {
	out := make([]string, 0, len(es))
	for _, e := range es {
		out = append(out, e.Event.Kind())
	}
	return out
}

// waitStarted returns once the source watches etcd (it starts at the
// current revision on an empty stream): a cluster of account turning READY
// is published.
func (r *rig) waitStarted(t *testing.T, account string) {
	t.Helper()
	ctx := testutil.Context(t)
	n := 0
	testutil.WaitFor(t, 20*time.Second, func() error {
		n++
		c := model.Cluster{ID: fmt.Sprintf("probe-%d", n), Name: "probe", NCAID: account, Status: model.ClusterReady}
		if err := r.st.CreateCluster(ctx, &c); err != nil {
			return err
		}
		got, _, err := r.log.List(ctx, account, events.Query{})
		if err != nil {
			return err
		}
		if len(got) == 0 {
			return fmt.Errorf("no event yet")
		}
		return nil
	})
}

// TestSourceDerivesEveryKind makes each state change through the store (and
// the secret store, for rotations) and checks the event each one makes: its
// kind, subject, CloudEvents attributes and data.
func TestSourceDerivesEveryKind(t *testing.T) {
	r := newRig(t)
	ctx := testutil.Context(t)
	const acct = "acct-a"
	r.runSource(t)
	r.waitStarted(t, "probe-account")

	f := model.Function{ID: "fn-1", VersionID: "v-1", NCAID: acct, Name: "echo", CreatedAt: time.Now().UTC()}
	if err := r.st.CreateFunction(ctx, &f, nil); err != nil {
		t.Fatal(err)
	}
	d := model.Deployment{ID: "dep-1", FunctionID: f.ID, FunctionVersionID: f.VersionID, NCAID: acct,
		FunctionStatus: model.StatusDeploying, Specs: []model.GPUSpec{{GPU: "H100", MinInstances: 1, MaxInstances: 2}}}
	if err := r.st.CreateDeployment(ctx, &d); err != nil {
		t.Fatal(err)
	}
	// A change that is not a status change makes no event.
	d.HealthInfo = []model.HealthInfo{{GPU: "H100", Error: "instance pending: no capacity"}}
	if err := r.st.UpdateDeployment(ctx, &d); err != nil {
		t.Fatal(err)
	}
	d.FunctionStatus, d.HealthInfo = model.StatusActive, nil
	if err := r.st.UpdateDeployment(ctx, &d); err != nil {
		t.Fatal(err)
	}
	at := time.Now().UTC().Truncate(time.Millisecond)
	if err := r.st.PutScales(ctx, []model.Scale{{FunctionVersionID: f.VersionID, DeploymentID: d.ID,
		Specs: []model.SpecScale{{Desired: 2, Decisions: []model.ScalingDecision{{At: at, From: 1, To: 2, Reason: "queue depth 3"}}}}}}); err != nil {
		t.Fatal(err)
	}
	cl := model.Cluster{ID: "cl-1", Name: "gpu-west", NCAID: acct, Status: model.ClusterNotReady}
	if err := r.st.CreateCluster(ctx, &cl); err != nil { // NOT_READY at registration: no event
		t.Fatal(err)
	}
	cl.Status = model.ClusterReady
	if err := r.st.UpdateCluster(ctx, &cl); err != nil {
		t.Fatal(err)
	}
	inst := model.Instance{ID: "inst-1", FunctionID: f.ID, FunctionVersionID: f.VersionID, NCAID: acct, DeploymentID: d.ID,
		ClusterID: cl.ID, GPU: "H100", InstanceType: "ON-PREM.GPU.H100_1x", GPUCount: 1}
	if err := r.st.CreateInstance(ctx, &inst); err != nil {
		t.Fatal(err)
	}
	state := func(s model.InstanceStatus, reason string) {
		t.Helper()
		if err := r.st.PutInstanceState(ctx, model.InstanceState{InstanceID: inst.ID, ClusterID: cl.ID, Status: s, Reason: reason, UpdatedAt: time.Now().UTC()}); err != nil {
			t.Fatal(err)
		}
	}
	state(model.InstanceStarting, "")
	state(model.InstanceRunning, "")
	state(model.InstanceRunning, "") // a heartbeat rewriting the same state: no event
	state(model.InstanceErrored, "exit status 3: boom")
	state(model.InstanceRunning, "")
	inst, err := r.st.GetInstance(ctx, inst.ID)
	if err != nil {
		t.Fatal(err)
	}
	if err := r.st.ReleaseInstance(ctx, inst, nil); err != nil {
		t.Fatal(err)
	}
	cl, _ = r.st.GetCluster(ctx, cl.ID)
	cl.Status, cl.NotReadySince = model.ClusterNotReady, time.Now().UTC()
	if err := r.st.UpdateCluster(ctx, &cl); err != nil {
		t.Fatal(err)
	}
	// Keys: the account's NEK, then the master key.
	ess := secrets.NewService(r.st, secrets.NewFileMEK(t.TempDir()), nil)
	if err := ess.Start(ctx); err != nil {
		t.Fatal(err)
	}
	if _, err := ess.Seal(ctx, secrets.Place{Account: acct, FunctionID: f.ID, VersionID: f.VersionID, Name: "K"}, []byte("v")); err != nil {
		t.Fatal(err)
	}
	if _, err := ess.RotateNEK(ctx, acct, nil); err != nil {
		t.Fatal(err)
	}
	if _, err := ess.RotateMEK(ctx, nil); err != nil {
		t.Fatal(err)
	}
	d, _ = r.st.GetDeployment(ctx, f.VersionID)
	if err := r.st.DeleteDeployment(ctx, d); err != nil {
		t.Fatal(err)
	}
	if err := r.st.DeleteFunction(ctx, f.ID, f.VersionID); err != nil {
		t.Fatal(err)
	}

	got := r.waitKinds(t, acct,
		events.KindFunctionCreated,
		events.KindDeploymentStatus, events.KindDeploymentStatus,
		events.KindDeploymentScaled,
		events.KindClusterReady,
		events.KindInstanceStarted, events.KindInstanceFailed, events.KindInstanceStarted, events.KindInstanceStopped,
		events.KindClusterNotReady,
		events.KindKeyRotated, events.KindKeyRotated,
		events.KindDeploymentDeleted,
		events.KindFunctionDeleted,
	)
	ids := map[string]bool{}
	for _, e := range got {
		ev := e.Event
		if ev.SpecVersion != "1.0" || ev.Source != "/gantry" || ev.Type != "gantry."+ev.Kind() || ev.Time.IsZero() ||
			ev.DataContentType != "application/json" || ev.Account != acct || ev.Subject == "" {
			t.Errorf("attributes of %s: %+v", ev.Kind(), ev)
		}
		if ids[ev.ID] {
			t.Errorf("id %s twice", ev.ID)
		}
		ids[ev.ID] = true
	}
	data := func(i int, v any) {
		t.Helper()
		if err := json.Unmarshal(got[i].Event.Data, v); err != nil {
			t.Fatal(err)
		}
	}
	var fd events.FunctionData
	data(0, &fd)
	if fd != (events.FunctionData{FunctionID: "fn-1", VersionID: "v-1", Name: "echo"}) || got[0].Event.Function != "fn-1" ||
		got[0].Event.Subject != "functions/fn-1/versions/v-1" {
		t.Errorf("function.created: %+v %+v", got[0].Event, fd)
	}
	var d1, d2 events.DeploymentData
	data(1, &d1)
	data(2, &d2)
	if d1.From != "" || d1.To != model.StatusDeploying || d2.From != model.StatusDeploying || d2.To != model.StatusActive || d2.DeploymentID != "dep-1" {
		t.Errorf("status changes: %+v, %+v", d1, d2)
	}
	var sd events.ScaleData
	data(3, &sd)
	if sd.From != 1 || sd.To != 2 || sd.Reason != "queue depth 3" || sd.GPU != "H100" || !sd.At.Equal(at) || !got[3].Event.Time.Equal(at) {
		t.Errorf("scaled: %+v", sd)
	}
	var failed, stopped events.InstanceData
	data(6, &failed)
	data(8, &stopped)
	if failed.Reason != "exit status 3: boom" || failed.Status != model.InstanceErrored || failed.InstanceID != "inst-1" || failed.ClusterID != "cl-1" {
		t.Errorf("failed: %+v", failed)
	}
	if stopped.InstanceID != "inst-1" || stopped.FunctionID != "fn-1" {
		t.Errorf("stopped: %+v", stopped)
	}
	var cd events.ClusterData
	data(9, &cd)
	if cd.From != model.ClusterReady || cd.To != model.ClusterNotReady || cd.ClusterID != "cl-1" {
		t.Errorf("not ready: %+v", cd)
	}
	var nek, mek events.KeyData
	data(10, &nek)
	data(11, &mek)
	if nek != (events.KeyData{Key: "nek", From: 1, To: 2}) || mek != (events.KeyData{Key: "mek", From: 1, To: 2}) {
		t.Errorf("rotations: %+v %+v", nek, mek)
	}
	// The subject of each message is gantry.events.<account>.<kind>.
	cons, err := r.js.OrderedConsumer(ctx, events.Stream, jetstream.OrderedConsumerConfig{FilterSubjects: []string{events.AccountSubjects(acct)}})
	if err != nil {
		t.Fatal(err)
	}
	m, err := cons.Next(jetstream.FetchMaxWait(5 * time.Second))
	if err != nil {
		t.Fatal(err)
	}
	if m.Subject() != "gantry.events.acct-a.function.created" {
		t.Errorf("subject %s", m.Subject())
	}
}

func (r *rig) createFunctions(t *testing.T, account string, from, n int) {
	t.Helper()
	for i := from; i < from+n; i++ {
		f := model.Function{ID: fmt.Sprintf("fn-%d", i), VersionID: fmt.Sprintf("v-%d", i), NCAID: account, Name: "f"}
		if err := r.st.CreateFunction(testutil.Context(t), &f, nil); err != nil {
			t.Fatal(err)
		}
	}
}

// TestSourceOncePerChange runs two sources at once, as an old and a new
// leader do for a moment, then none while changes go on, then a new one:
// every change is published exactly once, the ones made without a leader
// included.
func TestSourceOncePerChange(t *testing.T) {
	r := newRig(t)
	ctx := testutil.Context(t)
	stopA := r.runSource(t)
	stopB := r.runSource(t)
	r.waitStarted(t, "probe-account")
	r.createFunctions(t, "acct-a", 0, 20)
	want := slices.Repeat([]string{events.KindFunctionCreated}, 20)
	r.waitKinds(t, "acct-a", want...)

	stopA()
	stopB()
	r.createFunctions(t, "acct-a", 20, 5) // no leader
	r.runSource(t)
	r.createFunctions(t, "acct-a", 25, 5)
	got := r.waitKinds(t, "acct-a", slices.Repeat([]string{events.KindFunctionCreated}, 30)...)
	seen := map[string]bool{}
	for _, e := range got {
		var fd events.FunctionData
		_ = json.Unmarshal(e.Event.Data, &fd)
		if seen[fd.FunctionID] {
			t.Errorf("%s published twice", fd.FunctionID)
		}
		seen[fd.FunctionID] = true
	}
	// Nothing else was stored either (the stream dropped the copies).
	st, err := r.js.Stream(ctx, events.Stream)
	if err != nil {
		t.Fatal(err)
	}
	probes, _, _ := r.log.List(ctx, "probe-account", events.Query{})
	if n := st.CachedInfo().State.Msgs; n != uint64(30+len(probes)) {
		t.Errorf("stream holds %d messages, want %d", n, 30+len(probes))
	}
}

// TestLogSeesOneAccount checks that reads of one account never show
// another's events, nor messages on its subjects that are not Gantry's
// events; and since, after and limit.
func TestLogSeesOneAccount(t *testing.T) {
	r := newRig(t)
	ctx := testutil.Context(t)
	r.runSource(t)
	r.waitStarted(t, "probe-account")
	r.createFunctions(t, "acct-a", 0, 3)
	r.createFunctions(t, "acct-b", 10, 2)
	// Messages on acct-a's subjects that are not its events: junk, an
	// event of acct-b, an event of an unknown kind.
	other, _ := json.Marshal(events.Event{SpecVersion: "1.0", ID: "x", Source: "/evil", Type: "gantry.function.created",
		Time: time.Now(), DataContentType: "application/json", Account: "acct-b", Data: json.RawMessage(`{}`)})
	for _, m := range []struct{ subject, data string }{
		{"gantry.events.acct-a.function.created", `{"type":"io.nats.jetstream.api.v1.stream_info_response"}`},
		{"gantry.events.acct-a.function.created", string(other)},
		{"gantry.events.acct-a.anything", `not json`},
	} {
		if _, err := r.js.Publish(ctx, m.subject, []byte(m.data)); err != nil {
			t.Fatal(err)
		}
	}
	a := r.waitKinds(t, "acct-a", slices.Repeat([]string{events.KindFunctionCreated}, 3)...)
	b := r.waitKinds(t, "acct-b", slices.Repeat([]string{events.KindFunctionCreated}, 2)...)
	for _, e := range a {
		if e.Event.Account != "acct-a" || e.Event.Source != "/gantry" {
			t.Errorf("acct-a reads %+v", e.Event)
		}
	}
	for _, e := range b {
		if e.Event.Account != "acct-b" || e.Event.Source != "/gantry" {
			t.Errorf("acct-b reads %+v", e.Event)
		}
	}

	// limit: the newest two, oldest first, and that some were left out.
	newest, truncated, err := r.log.List(ctx, "acct-a", events.Query{Limit: 2})
	if err != nil || !truncated || len(newest) != 2 || newest[0].Seq != a[1].Seq || newest[1].Seq != a[2].Seq {
		t.Errorf("limit 2: %v %v %v", newest, truncated, err)
	}
	// since in the future: nothing; after: what follows.
	if got, _, err := r.log.List(ctx, "acct-a", events.Query{Since: time.Now().Add(time.Hour)}); err != nil || len(got) != 0 {
		t.Errorf("since later: %v %v", got, err)
	}
	if got, _, err := r.log.List(ctx, "acct-a", events.Query{After: a[1].Seq}); err != nil || len(got) != 1 || got[0].Seq != a[2].Seq {
		t.Errorf("after %d: %v %v", a[1].Seq, got, err)
	}

	// follow: from after the last, acct-a's new event and not acct-b's.
	fctx, cancel := context.WithTimeout(ctx, 20*time.Second)
	defer cancel()
	followed := make(chan events.Entry, 10)
	done := make(chan error, 1)
	go func() {
		done <- r.log.Follow(fctx, "acct-a", events.Query{After: a[2].Seq}, func(e events.Entry) error {
			followed <- e
			return nil
		})
	}()
	r.createFunctions(t, "acct-b", 20, 1)
	r.createFunctions(t, "acct-a", 30, 1)
	select {
	case e := <-followed:
		var fd events.FunctionData
		_ = json.Unmarshal(e.Event.Data, &fd)
		if e.Event.Account != "acct-a" || fd.FunctionID != "fn-30" {
			t.Errorf("followed %+v", e.Event)
		}
	case <-fctx.Done():
		t.Fatal("follow saw nothing")
	}
	cancel()
	if err := <-done; err != nil {
		t.Errorf("follow ended with %v", err)
	}
	select {
	case e := <-followed:
		t.Errorf("follow also saw %+v", e.Event)
	default:
	}
}

// TestSourceUnknownResumePoint: a stream whose newest messages are none of
// Gantry's (a client aimed server answers at event subjects) gives no
// resume point; the source starts at the current revision instead of
// publishing etcd's history again.
func TestSourceUnknownResumePoint(t *testing.T) {
	r := newRig(t)
	ctx := testutil.Context(t)
	r.createFunctions(t, "acct-a", 0, 3) // before any source: history
	for range 5 {
		if _, err := r.js.Publish(ctx, "gantry.events.acct-a.function.created", []byte(`{"type":"io.nats.jetstream.api.v1.pub_ack_response"}`)); err != nil {
			t.Fatal(err)
		}
	}
	r.runSource(t)
	r.waitStarted(t, "probe-account")
	r.createFunctions(t, "acct-a", 10, 1)
	got := r.waitKinds(t, "acct-a", events.KindFunctionCreated)
	if got[0].Event.Function != "fn-10" {
		t.Errorf("published %s, want only fn-10", got[0].Event.Function)
	}
}

// TestSourceReplaysHistoryOnAnEmptyStream: the first leader of an
// installation publishes what etcd holds from before it led.
func TestSourceReplaysHistoryOnAnEmptyStream(t *testing.T) {
	r := newRig(t)
	r.createFunctions(t, "acct-a", 0, 3)
	r.runSource(t)
	got := r.waitKinds(t, "acct-a", events.KindFunctionCreated, events.KindFunctionCreated, events.KindFunctionCreated)
	for i, e := range got {
		if want := fmt.Sprintf("fn-%d", i); e.Event.Function != want {
			t.Errorf("event %d is about %s, want %s", i, e.Event.Function, want)
		}
	}
}
