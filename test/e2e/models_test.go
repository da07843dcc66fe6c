package e2e

import (
	"bytes"
	"crypto/rand"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/gantry-dev/gantry/internal/client"
	"github.com/gantry-dev/gantry/internal/model"
	"github.com/gantry-dev/gantry/internal/testutil"
)

// modelsAnswer is what the "models" helper function answers: who it is,
// the directories it was given, and the size and SHA-256 of each file it
// finds below them (models/<name>/<file>, resources/<name>/<file>).
type modelsAnswer struct {
	Instance     string               `json:"instance"`
	ModelsDir    string               `json:"modelsDir"`
	ResourcesDir string               `json:"resourcesDir"`
	Files        map[string]assetFile `json:"files"`
	Error        string               `json:"error,omitempty"`
}

// serveModels runs the "models" helper function. It reads its artifact
// directories when it starts, and exits if it finds no files there, so an
// instance is healthy only once it has read its models; then it serves
// /health, and on any other path the modelsAnswer of a fresh reading.
func serveModels() {
	if first := readModels(); first.Error != "" || len(first.Files) == 0 {
		fmt.Fprintf(os.Stderr, "no models: %+v\n", first)
		os.Exit(1)
	}
	mux := http.NewServeMux()
	mux.HandleFunc("/health", func(w http.ResponseWriter, r *http.Request) {})
	mux.HandleFunc("/", func(w http.ResponseWriter, r *http.Request) {
		_ = json.NewEncoder(w).Encode(readModels())
	})
	if err := http.ListenAndServe("127.0.0.1:"+os.Getenv("PORT"), mux); err != nil {
		os.Exit(1)
	}
}

func readModels() modelsAnswer {
	out := modelsAnswer{Instance: os.Getenv("NVCF_INSTANCE_ID"), ModelsDir: os.Getenv("NVCF_MODELS_DIR"),
		ResourcesDir: os.Getenv("NVCF_RESOURCES_DIR"), Files: map[string]assetFile{}}
	for kind, dir := range map[string]string{"models": out.ModelsDir, "resources": out.ResourcesDir} {
		if dir == "" {
			continue
		}
		err := filepath.WalkDir(dir, func(p string, d os.DirEntry, err error) error {
			if err != nil || d.IsDir() {
				return err
			}
			b, err := os.ReadFile(p)
			if err != nil {
				return err
			}
			rel, _ := filepath.Rel(dir, p)
			s := sha256.Sum256(b)
			out.Files[kind+"/"+filepath.ToSlash(rel)] = assetFile{Bytes: int64(len(b)), SHA256: hex.EncodeToString(s[:])}
			return nil
		})
		if err != nil {
			out.Error = err.Error()
		}
	}
	return out
}

// modelHost is a real HTTP server standing in for a model store: it
// serves files by path (with Range, as stores do), counts the GETs of
// each, and can hold its answers back until told.
type modelHost struct {
	*httptest.Server
	files map[string][]byte
	gets  sync.Map // path -> *atomic.Int32
	hold  chan struct{}
}

func newModelHost(t *testing.T, files map[string][]byte) *modelHost {
	h := &modelHost{files: files, hold: make(chan struct{})}
	h.Server = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		n, _ := h.gets.LoadOrStore(r.URL.Path, new(atomic.Int32))
		n.(*atomic.Int32).Add(1)
		b, ok := h.files[r.URL.Path]
		if !ok {
			http.NotFound(w, r)
			return
		}
		select {
		case <-h.hold:
		case <-r.Context().Done():
			return
		}
		http.ServeContent(w, r, filepath.Base(r.URL.Path), time.Unix(1700000000, 0), bytes.NewReader(b))
	}))
	t.Cleanup(h.Close)
	return h
}

func (h *modelHost) count(path string) int32 {
	n, ok := h.gets.Load(path)
	if !ok {
		return 0
	}
	return n.(*atomic.Int32).Load()
}

// TestModelsDeliveredOnce: two instances of one function on one cluster
// need its model and resource; the agent downloads each once, shows the
// download's progress in the deployment while it runs, and each instance
// reads the files where NVCF_MODELS_DIR and NVCF_RESOURCES_DIR say.
func TestModelsDeliveredOnce(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	p := startPlatform(t, dir)
	ctx := testutil.Context(t)

	weights := make([]byte, 8<<20)
	if _, err := rand.Read(weights); err != nil {
		t.Fatal(err)
	}
	labels := []byte("cat\ndog\n")
	host := newModelHost(t, map[string][]byte{"/store/weights.bin": weights, "/store/labels.txt": labels})

	req := selfFunction(t, "models-reader", "models")
	req.Models = []model.Artifact{{Name: "resnet", Version: "1.0",
		URI: host.URL + "/store/weights.bin?X-Amz-Signature=hunter2#sha256=" + sha256Hex(weights)}}
	req.Resources = []model.Artifact{{Name: "labels", Version: "2", URI: host.URL + "/store/labels.txt"}}
	f, err := p.c.CreateFunction(ctx, req)
	if err != nil {
		t.Fatal(err)
	}
	if len(f.Models) != 1 || len(f.Resources) != 1 {
		t.Fatalf("function %+v does not keep its models and resources", f)
	}
	spec := model.GPUSpec{GPU: "H100", InstanceType: model.InstanceTypeName("H100", 1), MinInstances: 2, MaxInstances: 2}
	if _, err := p.c.CreateDeployment(ctx, f.ID, f.VersionID, model.DeploymentRequest{Specs: []model.GPUSpec{spec}}); err != nil {
		t.Fatal(err)
	}
	// While the host holds the model back, the deployment says the
	// instances are fetching it.
	testutil.WaitFor(t, 30*time.Second, func() error {
		d, err := p.c.GetDeployment(ctx, f.ID, f.VersionID)
		if err != nil {
			return err
		}
		for _, h := range d.HealthInfo {
			if strings.Contains(h.Error, "is not running yet: fetching model resnet (1 of 2)") {
				return nil
			}
		}
		return fmt.Errorf("deployment %s, health %+v: no fetch in progress", d.FunctionStatus, d.HealthInfo)
	})
	close(host.hold)
	p.waitStatus(t, f, model.StatusActive)

	want := map[string]assetFile{
		"models/resnet/weights.bin":   {Bytes: int64(len(weights)), SHA256: sha256Hex(weights)},
		"resources/labels/labels.txt": {Bytes: int64(len(labels)), SHA256: sha256Hex(labels)},
	}
	// Each instance read the files before it turned healthy (the helper
	// exits without them), so two RUNNING instances have both read them.
	got, err := p.c.GetFunction(ctx, f.ID, f.VersionID)
	if err != nil {
		t.Fatal(err)
	}
	if len(got.ActiveInstances) != 2 {
		t.Fatalf("instances %+v, want two", got.ActiveInstances)
	}
	for _, in := range got.ActiveInstances {
		if in.InstanceStatus != model.InstanceRunning {
			t.Errorf("instance %s is %s, want RUNNING", in.InstanceID, in.InstanceStatus)
		}
	}
	resp, err := p.c.Invoke(ctx, client.InvokeRequest{FunctionID: f.ID})
	if err != nil {
		t.Fatal(err)
	}
	var ans modelsAnswer
	if resp.StatusCode != http.StatusOK || json.Unmarshal(resp.Body, &ans) != nil {
		t.Fatalf("status %d: %s", resp.StatusCode, resp.Body)
	}
	if ans.Error != "" || len(ans.Files) != len(want) {
		t.Fatalf("instance %s read %+v (error %q), want %+v", ans.Instance, ans.Files, ans.Error, want)
	}
	for k, w := range want {
		if ans.Files[k] != w {
			t.Errorf("instance %s: %s is %+v, want %+v", ans.Instance, k, ans.Files[k], w)
		}
	}
	// The dev agent's cache is <data>/agent/artifacts: one blob per
	// content, and each instance's view links to it.
	blobs, err := os.ReadDir(filepath.Join(dir, "agent", "artifacts", "blobs", "sha256"))
	if err != nil || len(blobs) != 2 {
		t.Errorf("cache blobs %v (%v), want the model's and the resource's", blobs, err)
	}
	for _, in := range got.ActiveInstances {
		view := filepath.Join(dir, "agent", "artifacts", "instances", in.InstanceID, "models", "resnet", "weights.bin")
		if b, err := os.ReadFile(view); err != nil || !bytes.Equal(b, weights) {
			t.Errorf("instance %s's view %s: %v", in.InstanceID, view, err)
		}
		if ans.Instance == in.InstanceID && ans.ModelsDir != filepath.Dir(filepath.Dir(view)) {
			t.Errorf("NVCF_MODELS_DIR %s, want %s", ans.ModelsDir, filepath.Dir(filepath.Dir(view)))
		}
	}
	for _, path := range []string{"/store/weights.bin", "/store/labels.txt"} {
		if n := host.count(path); n != 1 {
			t.Errorf("%s was downloaded %d times for two instances, want once", path, n)
		}
	}
}

// TestModelFetchFailure: a model that cannot be fetched makes the
// instance, and so the deployment, ERROR saying which model, which host
// and what it answered, never the uri's credentials.
func TestModelFetchFailure(t *testing.T) {
	t.Parallel()
	p := startPlatform(t, t.TempDir())
	ctx := testutil.Context(t)
	host := newModelHost(t, map[string][]byte{})
	req := selfFunction(t, "models-missing", "models")
	req.Models = []model.Artifact{{Name: "llama", Version: "3",
		URI: strings.Replace(host.URL, "http://", "http://user:hunter2@", 1) + "/store/llama.bin?token=hunter2"}}
	f, err := p.c.CreateFunction(ctx, req)
	if err != nil {
		t.Fatal(err)
	}
	d := p.deploy(t, f, model.GPUSpec{GPU: "H100", InstanceType: model.InstanceTypeName("H100", 1), MinInstances: 1, MaxInstances: 1},
		model.StatusError)
	b, _ := json.Marshal(d)
	for _, w := range []string{"model llama could not be fetched", host.URL + "/store/llama.bin", "the server answered 404 Not Found"} {
		if !strings.Contains(string(b), w) {
			t.Errorf("deployment %s does not say %q", b, w)
		}
	}
	if strings.Contains(string(b), "hunter2") {
		t.Errorf("deployment %s repeats the uri's credentials", b)
	}
	got, err := p.c.GetFunction(ctx, f.ID, f.VersionID)
	if err != nil {
		t.Fatal(err)
	}
	if len(got.ActiveInstances) != 1 || got.ActiveInstances[0].InstanceStatus != model.InstanceErrored {
		t.Errorf("instances %+v, want one ERROR", got.ActiveInstances)
	}
}
