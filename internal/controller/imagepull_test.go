package controller

import (
	"bytes"
	"context"
	"encoding/base64"
	"encoding/json"
	"errors"
	"log/slog"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/nats-io/nats.go"

	"github.com/gantry-dev/gantry/internal/bus"
	"github.com/gantry-dev/gantry/internal/model"
	"github.com/gantry-dev/gantry/internal/secrets"
	"github.com/gantry-dev/gantry/internal/store"
	"github.com/gantry-dev/gantry/internal/testutil"
)

func TestImageRegistry(t *testing.T) {
	t.Parallel()
	tests := []struct{ image, want string }{
		{"nginx", "docker.io"},
		{"nginx:1.27", "docker.io"},
		{"nginx@sha256:0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef", "docker.io"},
		{"library/nginx:1.27", "docker.io"},
		{"team/app/worker:1", "docker.io"},
		{"docker.io/library/nginx", "docker.io"},
		{"index.docker.io/library/nginx", "docker.io"},
		{"nvcr.io/nvidia/tritonserver:24.05-py3", "nvcr.io"},
		{"ghcr.io/org/app:v1", "ghcr.io"},
		{"registry.example.com:5000/team/llm:2", "registry.example.com:5000"},
		{"localhost/app", "localhost"},
		{"localhost:5000/app:1", "localhost:5000"},
		{"myhost:5000/app", "myhost:5000"},
		{"Registry/app", "Registry"}, // upper case: a host, repositories are lower case
		{"  nvcr.io/x  ", "nvcr.io"},
		{"process:///usr/bin/server", ""},
		{"", ""},
	}
	for _, tc := range tests {
		t.Run(tc.image, func(t *testing.T) {
			t.Parallel()
			if got := imageRegistry(tc.image); got != tc.want {
				t.Errorf("imageRegistry(%q) = %q, want %q", tc.image, got, tc.want)
			}
		})
	}
}

func TestSameRegistry(t *testing.T) {
	t.Parallel()
	tests := []struct {
		cred, image string
		want        bool
	}{
		{"nvcr.io", "nvcr.io", true},
		{"NVCR.io", "nvcr.io", true},
		{"docker.io", "docker.io", true},
		{"index.docker.io", "docker.io", true},
		{"registry-1.docker.io", "docker.io", true},
		{"registry.example.com:5000", "registry.example.com:5000", true},
		{"registry.example.com", "registry.example.com:5000", false}, // the port is part of the host
		{"registry.example.com:5000", "registry.example.com", false},
		{"example.com", "registry.example.com", false},
		{"localhost", "localhost:5000", false},
		{"nvcr.io", "", false},
	}
	for _, tc := range tests {
		if got := sameRegistry(tc.cred, tc.image); got != tc.want {
			t.Errorf("sameRegistry(%q, %q) = %v, want %v", tc.cred, tc.image, got, tc.want)
		}
	}
}

func TestDockerConfig(t *testing.T) {
	t.Parallel()
	auth := base64.StdEncoding.EncodeToString([]byte("robot:hunter2"))
	b, err := dockerConfig("registry.example.com:5000", auth)
	if err != nil {
		t.Fatal(err)
	}
	var cfg struct {
		Auths map[string]struct {
			Auth string `json:"auth"`
		} `json:"auths"`
	}
	if err := json.Unmarshal(b, &cfg); err != nil || len(cfg.Auths) != 1 || cfg.Auths["registry.example.com:5000"].Auth != auth {
		t.Fatalf("docker config %s (%v)", b, err)
	}
	for name, bad := range map[string]string{
		"not base64":   "robot:hunter2-not-base64!",
		"no colon":     base64.StdEncoding.EncodeToString([]byte("robot-hunter2")),
		"no password":  base64.StdEncoding.EncodeToString([]byte("robot:")),
		"no user name": base64.StdEncoding.EncodeToString([]byte(":hunter2")),
	} {
		_, err := dockerConfig("nvcr.io", bad)
		if !errors.Is(err, errBadRegistrySecret) || strings.Contains(err.Error(), bad) || strings.Contains(err.Error(), "hunter2") {
			t.Errorf("%s: %v, want errBadRegistrySecret without the value", name, err)
		}
	}
}

func TestPullCredential(t *testing.T) {
	t.Parallel()
	t0 := time.Date(2025, 1, 1, 0, 0, 0, 0, time.UTC)
	cred := func(id, account, host string, updated time.Time, types ...string) model.RegistryCredential {
		return model.RegistryCredential{ID: id, NCAID: account, RegistryHostname: host, ArtifactTypes: types, LastUpdatedAt: updated}
	}
	creds := []model.RegistryCredential{
		cred("old", "a", "nvcr.io", t0, model.ArtifactContainer),
		cred("new", "a", "nvcr.io", t0.Add(time.Hour), model.ArtifactContainer, model.ArtifactHelm),
		cred("helm", "a", "ghcr.io", t0.Add(2*time.Hour), model.ArtifactHelm),
		cred("other-account", "b", "quay.io", t0, model.ArtifactContainer),
	}
	tests := []struct{ name, account, host, want string }{
		{"the newest of several", "a", "nvcr.io", "new"},
		{"HELM only does not pull containers", "a", "ghcr.io", ""},
		{"another account's is never picked", "a", "quay.io", ""},
		{"no host", "a", "", ""},
	}
	for _, tc := range tests {
		c, ok := pullCredential(creds, tc.account, tc.host)
		if c.ID != tc.want || ok != (tc.want != "") {
			t.Errorf("%s: got %q (%v), want %q", tc.name, c.ID, ok, tc.want)
		}
	}
}

// syncBuffer collects log lines written concurrently.
type syncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *syncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *syncBuffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}

// pullRig is a real secret store on embedded etcd with the agent handlers
// over it, and helpers that write what the API would.
type pullRig struct {
	t    *testing.T
	ctx  context.Context
	st   *store.Store
	svc  *secrets.Service
	logs *syncBuffer
	a    *Agents
}

func newPullRig(t *testing.T) *pullRig {
	st := testutil.StartEtcd(t)
	ctx := testutil.Context(t)
	svc := secrets.NewService(st, secrets.NewFileMEK(filepath.Join(t.TempDir(), "keys")), nil)
	if err := svc.Start(ctx); err != nil {
		t.Fatal(err)
	}
	logs := &syncBuffer{}
	log := slog.New(slog.NewTextHandler(logs, &slog.HandlerOptions{Level: slog.LevelDebug}))
	return &pullRig{t: t, ctx: ctx, st: st, svc: svc, logs: logs, a: NewAgents(st, svc, log)}
}

// credential stores a registry credential of account as the API does:
// the secret sealed for the credential's own place.
func (r *pullRig) credential(id, account, host, userPass string) {
	r.t.Helper()
	value := base64.StdEncoding.EncodeToString([]byte(userPass))
	sealed, err := r.svc.Seal(r.ctx, secrets.Place{Account: account, FunctionID: store.RegistryCredentialSecrets,
		VersionID: id, Name: store.RegistrySecretName}, []byte(value))
	if err != nil {
		r.t.Fatal(err)
	}
	now := time.Now().UTC()
	c := model.RegistryCredential{ID: id, NCAID: account, Name: host, RegistryName: host, RegistryHostname: host,
		ArtifactTypes: []string{model.ArtifactContainer}, ProvisionedBy: model.ProvisionedByUser, CreatedAt: now, LastUpdatedAt: now}
	if err := r.st.CreateRegistryCredential(r.ctx, &c, store.SealedSecret{Name: store.RegistrySecretName, Account: account,
		NEK: sealed.NEK, Ciphertext: sealed.Ciphertext, HeadRevision: sealed.HeadRevision}); err != nil {
		r.t.Fatal(err)
	}
}

// instance stores a function of account running image, with one secret,
// and an instance of it placed on cluster c1.
func (r *pullRig) instance(id, account, image string) {
	r.t.Helper()
	f := model.Function{ID: "fn-" + id, VersionID: "ver-" + id, NCAID: account, Name: id, ContainerImage: image,
		InferenceURL: "/infer", InferencePort: 8000, Secrets: []string{"API_TOKEN"}}
	sealed, err := r.svc.Seal(r.ctx, secrets.Place{Account: account, FunctionID: f.ID, VersionID: f.VersionID, Name: "API_TOKEN"},
		[]byte("token-of-"+id))
	if err != nil {
		r.t.Fatal(err)
	}
	if err := r.st.CreateFunction(r.ctx, &f, []store.SealedSecret{{Name: "API_TOKEN", Account: account, NEK: sealed.NEK,
		Ciphertext: sealed.Ciphertext, HeadRevision: sealed.HeadRevision}}); err != nil {
		r.t.Fatal(err)
	}
	if err := r.st.CreateInstance(r.ctx, &model.Instance{ID: id, FunctionID: f.ID, FunctionVersionID: f.VersionID,
		NCAID: account, ClusterID: "c1", GPU: "H100", GPUCount: 1}); err != nil {
		r.t.Fatal(err)
	}
}

// auths decodes a docker config into host -> base64 user:password.
func auths(t *testing.T, b []byte) map[string]string {
	t.Helper()
	if b == nil {
		return nil
	}
	var cfg struct {
		Auths map[string]struct {
			Auth string `json:"auth"`
		} `json:"auths"`
	}
	if err := json.Unmarshal(b, &cfg); err != nil {
		t.Fatalf("docker config does not decode: %v", err)
	}
	out := map[string]string{}
	for h, e := range cfg.Auths {
		out[h] = e.Auth
	}
	return out
}

func b64(s string) string { return base64.StdEncoding.EncodeToString([]byte(s)) }

// TestImagePullConfigKeepsToTheAccount: an instance is handed the registry
// credential of its function's account for its image's registry host and
// nothing else; account A's credential never serves account B's function,
// even for the same host; and no log line holds a secret.
func TestImagePullConfigKeepsToTheAccount(t *testing.T) {
	r := newPullRig(t)
	const passA, passA2, passB = "pass-a-3f9c1e", "pass-a-hub-77d2", "pass-b-0e4b5a"
	r.credential("cred-a", "team-a", "registry.example.com:5000", "robot-a:"+passA)
	r.credential("cred-a-hub", "team-a", "docker.io", "robot-a:"+passA2)
	r.credential("cred-b", "team-b", "quay.io", "robot-b:"+passB)
	r.instance("i-a", "team-a", "registry.example.com:5000/team/llm:2")
	r.instance("i-a-hub", "team-a", "team/llm:2")
	r.instance("i-a-none", "team-a", "nvcr.io/nvidia/llm:1")
	r.instance("i-b-same-host", "team-b", "registry.example.com:5000/team/llm:2")
	r.instance("i-b", "team-b", "quay.io/team/app:1")

	tests := []struct {
		instance string
		want     map[string]string
	}{
		{"i-a", map[string]string{"registry.example.com:5000": b64("robot-a:" + passA)}},
		{"i-a-hub", map[string]string{"docker.io": b64("robot-a:" + passA2)}},
		{"i-a-none", nil},
		{"i-b-same-host", nil},
		{"i-b", map[string]string{"quay.io": b64("robot-b:" + passB)}},
	}
	for _, tc := range tests {
		t.Run(tc.instance, func(t *testing.T) {
			got, err := r.a.InstanceSecrets(r.ctx, "c1", tc.instance)
			if err != nil {
				t.Fatal(err)
			}
			if a := auths(t, got.DockerConfigJSON); len(a) != len(tc.want) || (tc.want != nil && a[firstKey(tc.want)] != tc.want[firstKey(tc.want)]) {
				t.Errorf("auths = %v, want %v", a, tc.want)
			}
			if got.Secrets["API_TOKEN"] != "token-of-"+tc.instance || len(got.Secrets) != 1 {
				t.Errorf("secrets = %v", got.Secrets)
			}
		})
	}

	t.Run("another cluster is refused", func(t *testing.T) {
		if got, err := r.a.InstanceSecrets(r.ctx, "c2", "i-a"); err == nil || got.DockerConfigJSON != nil {
			t.Fatalf("cluster c2 got %d config bytes, err %v", len(got.DockerConfigJSON), err)
		}
	})

	t.Run("over the agent's NATS channel", func(t *testing.T) {
		url := testutil.StartNATS(t)
		cp, err := nats.Connect(url)
		if err != nil {
			t.Fatal(err)
		}
		defer cp.Close()
		subs, err := r.a.Subscribe(cp)
		if err != nil {
			t.Fatal(err)
		}
		defer func() {
			for _, s := range subs {
				_ = s.Unsubscribe()
			}
		}()
		agent, err := nats.Connect(url, nats.CustomInboxPrefix(bus.AgentInboxPrefix("c1")))
		if err != nil {
			t.Fatal(err)
		}
		defer agent.Close()
		ask := func(req model.InstanceSecretsRequest) []byte {
			b, _ := json.Marshal(req)
			msg, err := agent.RequestWithContext(r.ctx, bus.SecretsSubject("c1"), b)
			if err != nil {
				t.Fatal(err)
			}
			return msg.Data
		}
		var got model.InstanceSecrets
		if err := json.Unmarshal(ask(model.InstanceSecretsRequest{InstanceID: "i-a", ImagePull: true}), &got); err != nil {
			t.Fatal(err)
		}
		if a := auths(t, got.DockerConfigJSON); a["registry.example.com:5000"] != b64("robot-a:"+passA) || got.Secrets["API_TOKEN"] != "token-of-i-a" {
			t.Errorf("answer: auths %v, secrets %v", a, got.Secrets)
		}
		// An agent that does not ask (one from before image pull secrets)
		// gets the bare map it reads, without the credential.
		var bare map[string]string
		if err := json.Unmarshal(ask(model.InstanceSecretsRequest{InstanceID: "i-a"}), &bare); err != nil ||
			len(bare) != 1 || bare["API_TOKEN"] != "token-of-i-a" {
			t.Errorf("bare answer %v (%v)", bare, err)
		}
		var refused map[string]string
		if err := json.Unmarshal(ask(model.InstanceSecretsRequest{InstanceID: "i-missing", ImagePull: true}), &refused); err != nil ||
			!strings.Contains(refused["error"], "not placed on cluster c1") {
			t.Errorf("an unknown instance: %v (%v)", refused, err)
		}
	})

	logs := r.logs.String()
	if !strings.Contains(logs, "cred-a") || !strings.Contains(logs, "i-b") {
		t.Fatalf("the log never names the credentials handed out; the check below would prove nothing:\n%s", logs)
	}
	for _, m := range []string{passA, passA2, passB, b64("robot-a:" + passA), b64("robot-a:" + passA2), b64("robot-b:" + passB), "token-of-"} {
		if strings.Contains(logs, m) {
			t.Errorf("the log holds a secret (%.8s...)", m)
		}
	}
}

// TestImagePullConfigSealedForItsAccount: a credential's ciphertext
// copied into another account's record does not open there, so even a
// store that mixed records up could not hand A's password to B.
func TestImagePullConfigSealedForItsAccount(t *testing.T) {
	r := newPullRig(t)
	const pass = "pass-a-moved-91ac"
	r.credential("cred-a", "team-a", "quay.io", "robot-a:"+pass)
	r.credential("cred-b", "team-b", "quay.io", "robot-b:placeholder")
	r.instance("i-b", "team-b", "quay.io/team/app:1")
	a, err := r.st.GetRegistrySecret(r.ctx, "cred-a")
	if err != nil {
		t.Fatal(err)
	}
	b, err := r.st.GetRegistrySecret(r.ctx, "cred-b")
	if err != nil {
		t.Fatal(err)
	}
	b.NEK, b.Ciphertext, b.HeadRevision = a.NEK, a.Ciphertext, 0
	if err := r.st.UpdateSecrets(r.ctx, []store.SealedSecret{b}); err != nil {
		t.Fatal(err)
	}
	got, err := r.a.InstanceSecrets(r.ctx, "c1", "i-b")
	if err == nil || got.DockerConfigJSON != nil {
		t.Fatalf("a moved ciphertext opened: %d bytes, err %v", len(got.DockerConfigJSON), err)
	}
	if strings.Contains(err.Error(), pass) || strings.Contains(r.logs.String(), pass) {
		t.Error("the error or the log holds the password")
	}
}

func firstKey(m map[string]string) string {
	for k := range m {
		return k
	}
	return ""
}
