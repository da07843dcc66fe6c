package artifacts

import (
	"bytes"
	"context"
	"crypto/rand"
	"crypto/sha256"
	"encoding/hex"
	"errors"
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

	"github.com/gantry-dev/gantry/internal/model"
	"github.com/gantry-dev/gantry/internal/testutil"
)

// modelHost is a real HTTP server holding one file at /m/model.bin, as a
// model host would: Range and If-Range through http.ServeContent.
type modelHost struct {
	*httptest.Server
	mu      sync.Mutex
	content []byte
	etag    string
	gets    atomic.Int32
	ranges  []string // the Range header of each GET
	// hold, when set, keeps every GET from answering until it is closed.
	hold chan struct{}
	// breakAfter, when > 0, makes the next GET send only that many bytes
	// of the content and then drop the connection.
	breakAfter int
}

func newModelHost(t *testing.T, content []byte) *modelHost {
	h := &modelHost{content: content, etag: `"v1"`}
	h.Server = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path != "/m/model.bin" {
			http.NotFound(w, r)
			return
		}
		h.gets.Add(1)
		h.mu.Lock()
		h.ranges = append(h.ranges, r.Header.Get("Range"))
		content, etag, hold, cut := h.content, h.etag, h.hold, h.breakAfter
		h.breakAfter = 0
		h.mu.Unlock()
		if hold != nil {
			<-hold
		}
		w.Header().Set("ETag", etag)
		if cut > 0 {
			w.Header().Set("Content-Length", fmt.Sprint(len(content)))
			w.WriteHeader(http.StatusOK)
			w.Write(content[:cut])
			w.(http.Flusher).Flush()
			panic(http.ErrAbortHandler) // drop the connection mid-body
		}
		http.ServeContent(w, r, "model.bin", time.Unix(1700000000, 0), bytes.NewReader(content))
	}))
	t.Cleanup(h.Close)
	return h
}

func (h *modelHost) uri() string { return h.URL + "/m/model.bin" }

func randomBytes(t *testing.T, n int) []byte {
	b := make([]byte, n)
	if _, err := rand.Read(b); err != nil {
		t.Fatal(err)
	}
	return b
}

func digest(b []byte) string {
	s := sha256.Sum256(b)
	return hex.EncodeToString(s[:])
}

func newCache(t *testing.T) *Cache {
	c, err := New(Config{Dir: t.TempDir()})
	if err != nil {
		t.Fatal(err)
	}
	return c
}

func wantContent(t *testing.T, b Blob, content []byte) {
	t.Helper()
	got, err := os.ReadFile(b.Path)
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(got, content) || b.SHA256 != digest(content) || b.Size != int64(len(content)) {
		t.Fatalf("blob %+v holds %d bytes (sha256 %s), want %d (%s)", b, len(got), digest(got), len(content), digest(content))
	}
	if b.FileName != "model.bin" {
		t.Errorf("file name %q, want model.bin", b.FileName)
	}
}

// TestConcurrentFetchesDownloadOnce: fetches of one uri at the same time
// share one download, and a later fetch finds it in the cache.
func TestConcurrentFetchesDownloadOnce(t *testing.T) {
	t.Parallel()
	content := randomBytes(t, 3<<20)
	host := newModelHost(t, content)
	host.hold = make(chan struct{})
	c := newCache(t)
	ctx := testutil.Context(t)
	art := model.Artifact{Name: "m", Version: "1", URI: host.uri()}

	const n = 4
	blobs := make([]Blob, n)
	errs := make([]error, n)
	var wg sync.WaitGroup
	for i := range n {
		wg.Add(1)
		go func() {
			defer wg.Done()
			blobs[i], errs[i] = c.Fetch(ctx, art, func(done, total int64) {})
		}()
	}
	// Every fetch has joined the one download before the host answers.
	testutil.WaitFor(t, 5*time.Second, func() error {
		c.mu.Lock()
		defer c.mu.Unlock()
		f := c.flights[refKey(art.URI)]
		if f == nil {
			return errors.New("no download yet")
		}
		f.mu.Lock()
		defer f.mu.Unlock()
		if f.waiters != n {
			return fmt.Errorf("%d of %d fetches waiting", f.waiters, n)
		}
		return nil
	})
	close(host.hold)
	wg.Wait()
	for i := range n {
		if errs[i] != nil {
			t.Fatal(errs[i])
		}
		wantContent(t, blobs[i], content)
	}
	if g := host.gets.Load(); g != 1 {
		t.Fatalf("%d fetches made %d requests, want 1", n, g)
	}
	again, err := c.Fetch(ctx, art, nil)
	if err != nil {
		t.Fatal(err)
	}
	wantContent(t, again, content)
	if g := host.gets.Load(); g != 1 {
		t.Fatalf("a cached artifact was downloaded again (%d requests)", g)
	}

	// A new cache on the same directory (an agent restarted) finds it too.
	c2, err := New(Config{Dir: c.Dir()})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := c2.Fetch(ctx, art, nil); err != nil {
		t.Fatal(err)
	}
	if g := host.gets.Load(); g != 1 {
		t.Fatalf("a restarted cache downloaded again (%d requests)", g)
	}
}

// TestInterruptedDownloadResumes: a download that broke off is resumed
// from where it stopped when the host still has the same content, and
// started over when the content changed.
func TestInterruptedDownloadResumes(t *testing.T) {
	t.Parallel()
	ctx := testutil.Context(t)
	t.Run("same content", func(t *testing.T) {
		t.Parallel()
		content := randomBytes(t, 1<<20)
		host := newModelHost(t, content)
		host.breakAfter = 300 << 10
		c := newCache(t)
		art := model.Artifact{Name: "m", Version: "1", URI: host.uri()}
		_, err := c.Fetch(ctx, art, nil)
		if err == nil || !strings.Contains(err.Error(), "kept to resume") {
			t.Fatalf("broken download: err %v, want one that keeps the part", err)
		}
		if entries, _ := os.ReadDir(filepath.Join(c.Dir(), "blobs", "sha256")); len(entries) != 0 {
			t.Fatalf("a broken download left a blob: %v", entries)
		}
		var last [2]int64
		b, err := c.Fetch(ctx, art, func(done, total int64) { last = [2]int64{done, total} })
		if err != nil {
			t.Fatal(err)
		}
		wantContent(t, b, content)
		host.mu.Lock()
		ranges := host.ranges
		host.mu.Unlock()
		if want := fmt.Sprintf("bytes=%d-", 300<<10); len(ranges) != 2 || ranges[1] != want {
			t.Fatalf("requests asked Range %q, want a second one of %q", ranges, want)
		}
		if last != [2]int64{1 << 20, 1 << 20} {
			t.Errorf("last progress %v, want all of 1 MiB", last)
		}
	})
	t.Run("changed content", func(t *testing.T) {
		t.Parallel()
		old := randomBytes(t, 1<<20)
		host := newModelHost(t, old)
		host.breakAfter = 300 << 10
		c := newCache(t)
		art := model.Artifact{Name: "m", Version: "1", URI: host.uri()}
		if _, err := c.Fetch(ctx, art, nil); err == nil {
			t.Fatal("broken download succeeded")
		}
		content := randomBytes(t, 1<<20)
		host.mu.Lock()
		host.content, host.etag = content, `"v2"`
		host.mu.Unlock()
		b, err := c.Fetch(ctx, art, nil)
		if err != nil {
			t.Fatal(err)
		}
		wantContent(t, b, content)
	})
}

// TestFetchErrors: what cannot be fetched says which artifact, which host
// and what the host answered, and never the uri's credentials.
func TestFetchErrors(t *testing.T) {
	t.Parallel()
	content := randomBytes(t, 64<<10)
	host := newModelHost(t, content)
	ctx := testutil.Context(t)
	secret := "?X-Amz-Signature=hunter2"
	userinfo := strings.Replace(host.URL, "http://", "http://user:hunter2@", 1)
	tests := []struct {
		name, uri string
		want      []string
		checksum  bool
	}{
		{"not found", userinfo + "/m/missing.bin" + secret,
			[]string{"artifacts: m from " + host.URL + "/m/missing.bin: the server answered 404 Not Found"}, false},
		{"bad checksum", host.uri() + secret + "#sha256=" + strings.Repeat("0", 64),
			[]string{"checksum mismatch: m from " + host.uri() + " has SHA-256 " + digest(content), "the download was discarded"}, true},
		{"no server", "http://127.0.0.1:1/m.bin" + secret,
			[]string{"artifacts: m from http://127.0.0.1:1/m.bin: ", "connection refused"}, false},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			c := newCache(t)
			_, err := c.Fetch(ctx, model.Artifact{Name: "m", Version: "1", URI: tc.uri}, nil)
			if err == nil {
				t.Fatal("fetched")
			}
			for _, w := range tc.want {
				if !strings.Contains(err.Error(), w) {
					t.Errorf("error %q does not say %q", err, w)
				}
			}
			if strings.Contains(err.Error(), "hunter2") {
				t.Errorf("error %q repeats a credential", err)
			}
			if errors.Is(err, ErrChecksum) != tc.checksum {
				t.Errorf("errors.Is(err, ErrChecksum) = %v", !tc.checksum)
			}
			for _, d := range []string{"tmp", "blobs/sha256"} {
				if entries, _ := os.ReadDir(filepath.Join(c.Dir(), d)); len(entries) != 0 {
					t.Errorf("%s holds %d files after the failure", d, len(entries))
				}
			}
		})
	}
}

// TestChecksumNamesCachedContent: a uri whose #sha256= names content the
// cache holds, from any uri, needs no request at all.
func TestChecksumNamesCachedContent(t *testing.T) {
	t.Parallel()
	content := randomBytes(t, 64<<10)
	host := newModelHost(t, content)
	c := newCache(t)
	ctx := testutil.Context(t)
	if _, err := c.Fetch(ctx, model.Artifact{Name: "m", Version: "1", URI: host.uri()}, nil); err != nil {
		t.Fatal(err)
	}
	b, err := c.Fetch(ctx, model.Artifact{Name: "m", Version: "1", URI: host.uri() + "?mirror=2#sha256=" + digest(content)}, nil)
	if err != nil {
		t.Fatal(err)
	}
	wantContent(t, b, content)
	if g := host.gets.Load(); g != 1 {
		t.Fatalf("%d requests, want 1", g)
	}
}

// TestAbandonedFetchStops: when every fetch of a download has given up, it
// stops and keeps its part; the next fetch resumes it.
func TestAbandonedFetchStops(t *testing.T) {
	t.Parallel()
	content := randomBytes(t, 1<<20)
	host := newModelHost(t, content)
	host.hold = make(chan struct{})
	c := newCache(t)
	art := model.Artifact{Name: "m", Version: "1", URI: host.uri()}
	ctx, cancel := context.WithCancel(testutil.Context(t))
	errc := make(chan error, 1)
	go func() { _, err := c.Fetch(ctx, art, nil); errc <- err }()
	testutil.WaitFor(t, 5*time.Second, func() error {
		if host.gets.Load() == 0 {
			return errors.New("no request yet")
		}
		return nil
	})
	cancel()
	if err := <-errc; !errors.Is(err, context.Canceled) {
		t.Fatalf("err %v, want canceled", err)
	}
	close(host.hold)
	b, err := c.Fetch(testutil.Context(t), art, nil)
	if err != nil {
		t.Fatal(err)
	}
	wantContent(t, b, content)
}

func TestPlace(t *testing.T) {
	t.Parallel()
	content := randomBytes(t, 1024)
	host := newModelHost(t, content)
	c := newCache(t)
	b, err := c.Fetch(testutil.Context(t), model.Artifact{Name: "m", Version: "1", URI: host.uri()}, nil)
	if err != nil {
		t.Fatal(err)
	}
	dir := filepath.Join(t.TempDir(), "models", "m")
	if err := Place(b, dir); err != nil {
		t.Fatal(err)
	}
	got, err := os.ReadFile(filepath.Join(dir, "model.bin"))
	if err != nil || !bytes.Equal(got, content) {
		t.Fatalf("placed file: %v", err)
	}
	if st, _ := os.Stat(b.Path); st.Mode().Perm()&0o222 != 0 {
		t.Errorf("blob mode %v: writable", st.Mode())
	}
	if os.Geteuid() == 0 {
		return // root writes read-only files
	}
	if err := os.WriteFile(filepath.Join(dir, "model.bin"), []byte("x"), 0o644); err == nil {
		t.Error("an instance could overwrite the cache's blob")
	}
}
