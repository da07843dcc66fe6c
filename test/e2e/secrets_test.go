package e2e

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"io/fs"
	"log/slog"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/gantry-dev/gantry/internal/client"
	"github.com/gantry-dev/gantry/internal/controlplane"
	"github.com/gantry-dev/gantry/internal/dev"
	"github.com/gantry-dev/gantry/internal/model"
	"github.com/gantry-dev/gantry/internal/testutil"
	clientv3 "go.etcd.io/etcd/client/v3"
)

// lockedBuffer collects log output from several goroutines.
type lockedBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (l *lockedBuffer) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.Write(p)
}

func (l *lockedBuffer) String() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.String()
}

// TestSecretsReachInstancesAndNothingElse creates secrets with marker values
// (at create and through PUT), checks the instance sees them as environment,
// and then checks that no etcd key or value, no file under the data dir and
// no log line holds a marker in plaintext.
func TestSecretsReachInstancesAndNothingElse(t *testing.T) {
	t.Parallel()
	const created, updated = "marker-created-7f3a9c", "marker-updated-1b2d4e"
	dir := t.TempDir()
	var logs lockedBuffer
	p, err := dev.New(dev.Config{DataDir: dir, Listen: "127.0.0.1:0",
		Logger:    slog.New(slog.NewTextHandler(&logs, &slog.HandlerOptions{Level: slog.LevelDebug})),
		Heartbeat: 200 * time.Millisecond, Resync: 300 * time.Millisecond})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 90*time.Second)
	defer cancel()
	if err := p.Start(ctx); err != nil {
		t.Fatal(err)
	}
	defer p.Close()
	c := client.New(p.URL(), p.AdminToken())

	req := selfFunction(t, "secretive", "env")
	req.Secrets = []model.Secret{{Name: "API_TOKEN", Value: created}}
	f, err := c.CreateFunction(ctx, req)
	if err != nil {
		t.Fatal(err)
	}
	if strings.Contains(fmtJSON(f), created) {
		t.Fatal("create response echoes the secret value")
	}
	putReq := newRequest(t, "PUT", p.URL()+"/v2/nvcf/secrets/functions/"+f.ID+"/versions/"+f.VersionID, p.AdminToken())
	putReq.Body = ioNop(`{"secrets":[{"name":"DB_PASSWORD","value":"` + updated + `"}]}`)
	resp, err := http.DefaultClient.Do(putReq)
	if err != nil || resp.StatusCode != http.StatusNoContent {
		t.Fatalf("put secrets: %v %v", err, resp)
	}
	pl := &platform{Platform: p, c: c}
	pl.deploy(t, f, model.GPUSpec{GPU: "H100", MinInstances: 1, MaxInstances: 1}, model.StatusActive)

	// Credentials are secrets too: an admin token minted through the API
	// and an API key, whose values only their callers ever see.
	minted, err := c.MintAdminToken(ctx, model.AdminKeyRequest{})
	if err != nil {
		t.Fatal(err)
	}
	key, err := c.CreateAPIKey(ctx, model.APIKeyRequest{Description: "marker test"}, client.KeyIssuer{})
	if err != nil {
		t.Fatal(err)
	}
	if r, err := client.New(p.URL(), key.Value).Invoke(ctx, client.InvokeRequest{FunctionID: f.ID}); err != nil || r.StatusCode != 200 {
		t.Fatalf("invoke with the key: %v %v", r, err)
	}
	markers := []string{created, updated, minted.Value, key.Value, strings.TrimPrefix(key.Value, "nvapi-")}

	for name, want := range map[string]string{"API_TOKEN": created, "DB_PASSWORD": updated} {
		r, err := c.Invoke(ctx, client.InvokeRequest{FunctionID: f.ID, Header: http.Header{"Env-Name": {name}}})
		if err != nil || string(r.Body) != want {
			t.Fatalf("instance env %s = %q (%v), want the secret", name, r.Body, err)
		}
	}
	got, err := c.GetFunction(ctx, f.ID, f.VersionID)
	if err != nil || strings.Contains(fmtJSON(got), created) || strings.Contains(fmtJSON(got), updated) {
		t.Fatalf("GET returns a secret value: %v", err)
	}

	// Every etcd key and value.
	kvs, err := p.ControlPlane().Store().Client().Get(ctx, "", clientv3.WithPrefix())
	if err != nil {
		t.Fatal(err)
	}
	if len(kvs.Kvs) == 0 {
		t.Fatal("etcd dump is empty; the check would prove nothing")
	}
	for _, kv := range kvs.Kvs {
		for _, m := range markers {
			if bytes.Contains(kv.Key, []byte(m)) || bytes.Contains(kv.Value, []byte(m)) {
				t.Fatalf("etcd key %s holds a secret in plaintext", kv.Key)
			}
		}
	}
	p.Close() // flush etcd and JetStream to disk before reading the files
	files := 0
	err = filepath.WalkDir(dir, func(path string, d fs.DirEntry, err error) error {
		if err != nil || d.IsDir() {
			return err
		}
		b, err := os.ReadFile(path)
		if err != nil {
			return err
		}
		files++
		for _, m := range markers {
			if bytes.Contains(b, []byte(m)) {
				t.Errorf("file %s holds a secret in plaintext", path)
			}
		}
		return nil
	})
	if err != nil || files < 3 {
		t.Fatalf("walked %d files: %v", files, err)
	}
	l := logs.String()
	if !strings.Contains(l, f.ID) {
		t.Fatal("the debug log never mentions the function; the check would prove nothing")
	}
	for _, m := range append(markers, p.AdminToken()) {
		if strings.Contains(l, m) {
			t.Fatal("server logs hold a secret, token or key in plaintext")
		}
	}
}

func fmtJSON(v any) string {
	b, _ := json.Marshal(v)
	return string(b)
}

func ioNop(s string) io.ReadCloser { return io.NopCloser(strings.NewReader(s)) }

// TestSecretUpdateRollsInstances: new secret values reach a deployed
// function by replacing its instances one at a time, with no failed call.
//
// Not parallel: under load a call has reached an old instance after the store
// showed the roll done.
func TestSecretUpdateRollsInstances(t *testing.T) {
	p := startPlatform(t, t.TempDir())
	ctx := testutil.Context(t)
	req := selfFunction(t, "rolling", "env")
	req.Secrets = []model.Secret{{Name: "API_TOKEN", Value: "old-value"}}
	f, err := p.c.CreateFunction(ctx, req)
	if err != nil {
		t.Fatal(err)
	}
	p.deploy(t, f, model.GPUSpec{GPU: "H100", MinInstances: 2, MaxInstances: 2}, model.StatusActive)
	read := func() (string, error) {
		r, err := p.c.Invoke(ctx, client.InvokeRequest{FunctionID: f.ID, Header: http.Header{"Env-Name": {"API_TOKEN"}}})
		if err != nil {
			return "", err
		}
		if r.StatusCode != http.StatusOK {
			return "", fmt.Errorf("status %d: %s", r.StatusCode, r.Body)
		}
		return string(r.Body), nil
	}
	if v, err := read(); err != nil || v != "old-value" {
		t.Fatalf("before the update: %q %v", v, err)
	}

	var calls, failures atomic.Int64
	stop := make(chan struct{})
	done := make(chan struct{})
	go func() {
		defer close(done)
		for {
			select {
			case <-stop:
				return
			default:
			}
			calls.Add(1)
			if _, err := read(); err != nil {
				failures.Add(1)
				t.Logf("call during the roll: %v", err)
			}
		}
	}()
	put := newRequest(t, "PUT", p.URL()+"/v2/nvcf/secrets/functions/"+f.ID+"/versions/"+f.VersionID, p.AdminToken())
	put.Body = ioNop(`{"secrets":[{"name":"API_TOKEN","value":"new-value"}]}`)
	resp, err := http.DefaultClient.Do(put)
	if err != nil || resp.StatusCode != http.StatusNoContent {
		t.Fatalf("put secrets: %v %v", err, resp)
	}
	testutil.WaitFor(t, 60*time.Second, func() error {
		insts, err := p.ControlPlane().Store().ListInstances(ctx)
		if err != nil {
			return err
		}
		n := 0
		for _, in := range insts {
			if in.FunctionVersionID != f.VersionID {
				continue
			}
			if in.SecretsGeneration != 1 {
				return testutil.Errorf("instance %s still has secrets generation %d", in.ID, in.SecretsGeneration)
			}
			n++
		}
		if n != 2 {
			return testutil.Errorf("%d instances", n)
		}
		return nil
	})
	p.waitStatus(t, f, model.StatusActive)
	for range 10 { // both instances now answer with the new value
		if v, err := read(); err != nil || v != "new-value" {
			t.Fatalf("after the roll: %q %v", v, err)
		}
	}
	close(stop)
	<-done
	if failures.Load() != 0 {
		t.Fatalf("%d of %d calls failed during the roll", failures.Load(), calls.Load())
	}
	t.Logf("%d calls during the roll, none failed", calls.Load())
}

// TestKeyRotationUnderLoad rotates the account's NEK and the installation's
// MEK while a function is invoked back to back and its
// instances are being replaced (so they fetch their secrets mid-rotation).
// No call may fail or see a wrong value, and afterwards nothing depends on
// the old keys.
func TestKeyRotationUnderLoad(t *testing.T) {
	t.Parallel()
	const rounds = 2
	p := startPlatform(t, t.TempDir())
	ctx := testutil.Context(t)
	account := controlplane.DefaultAccount
	for i := range 20 { // other secrets of the account, for the rotation to re-encrypt
		req := selfFunction(t, fmt.Sprintf("filler-%d", i), "echo")
		for j := range 5 {
			req.Secrets = append(req.Secrets, model.Secret{Name: fmt.Sprintf("S%d", j), Value: fmt.Sprintf("filler-%d-%d", i, j)})
		}
		if _, err := p.c.CreateFunction(ctx, req); err != nil {
			t.Fatal(err)
		}
	}
	req := selfFunction(t, "rotating", "env")
	req.Secrets = []model.Secret{{Name: "API_TOKEN", Value: "steady-value"}}
	f, err := p.c.CreateFunction(ctx, req)
	if err != nil {
		t.Fatal(err)
	}
	p.deploy(t, f, model.GPUSpec{GPU: "H100", MinInstances: 2, MaxInstances: 2}, model.StatusActive)
	before, err := p.c.KeyStatus(ctx)
	if err != nil {
		t.Fatal(err)
	}

	var calls, failures atomic.Int64
	stop := make(chan struct{})
	done := make(chan struct{})
	go func() {
		defer close(done)
		for {
			select {
			case <-stop:
				return
			default:
			}
			calls.Add(1)
			r, err := p.c.Invoke(ctx, client.InvokeRequest{FunctionID: f.ID, Header: http.Header{"Env-Name": {"API_TOKEN"}}})
			if err != nil || r.StatusCode != http.StatusOK || string(r.Body) != "steady-value" {
				failures.Add(1)
				t.Logf("call during rotation: %v %v", r, err)
			}
		}
	}()
	roll := func() { // same value, new generation: the instances are replaced
		put := newRequest(t, "PUT", p.URL()+"/v2/nvcf/secrets/functions/"+f.ID+"/versions/"+f.VersionID, p.AdminToken())
		put.Body = ioNop(`{"secrets":[{"name":"API_TOKEN","value":"steady-value"}]}`)
		resp, err := http.DefaultClient.Do(put)
		if err != nil || resp.StatusCode != http.StatusNoContent {
			t.Fatalf("put secrets: %v %v", err, resp)
		}
	}
	began := time.Now()
	for range rounds {
		roll()
		nek, err := p.c.RotateNEK(ctx, account)
		if err != nil || nek.Reencrypted < 101 {
			t.Fatalf("NEK rotation: %+v %v", nek, err)
		}
		roll()
		mek, err := p.c.RotateMEK(ctx)
		if err != nil || mek.Reencrypted != 0 || mek.Rewrapped == 0 {
			t.Fatalf("MEK rotation: %+v %v", mek, err)
		}
	}
	t.Logf("rotations done after %v", time.Since(began).Round(time.Millisecond))
	p.waitStatus(t, f, model.StatusActive)
	testutil.WaitFor(t, 60*time.Second, func() error { // the last roll has finished
		insts, err := p.ControlPlane().Store().ListInstances(ctx)
		if err != nil {
			return err
		}
		for _, in := range insts {
			if in.FunctionVersionID == f.VersionID && in.SecretsGeneration != 2*rounds {
				return testutil.Errorf("instance %s at secrets generation %d", in.ID, in.SecretsGeneration)
			}
		}
		return nil
	})
	close(stop)
	<-done
	if failures.Load() != 0 || calls.Load() == 0 {
		t.Fatalf("%d of %d calls failed during the rotations", failures.Load(), calls.Load())
	}
	t.Logf("%d calls during %d NEK and MEK rotations and %d rolls (%v), none failed", calls.Load(), rounds, 2*rounds, time.Since(began).Round(time.Millisecond))

	after, err := p.c.KeyStatus(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if after.ActiveMEK != before.ActiveMEK+rounds {
		t.Errorf("active MEK %d, want %d", after.ActiveMEK, before.ActiveMEK+rounds)
	}
	for _, m := range after.MEKs {
		if m.Version != after.ActiveMEK && m.NEKs != 0 {
			t.Errorf("MEK v%d (%s) still wraps %d NEKs", m.Version, m.Status, m.NEKs)
		}
	}
	for _, a := range after.Accounts {
		if a.Account != account {
			continue
		}
		for _, n := range a.NEKs {
			if n.Version != a.ActiveNEK && n.Secrets != 0 {
				t.Errorf("old NEK v%d still seals %d secrets", n.Version, n.Secrets)
			}
		}
	}
}
