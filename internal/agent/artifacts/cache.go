// Package artifacts is the agent's cache of function models and resources:
// the files NVCF delivers to an instance before it starts (/config/models/
// <name>, /config/resources/<name>). One cache serves every instance of an
// agent, so a model that several instances of a function need, or several
// functions, is downloaded once.
//
// Layout under Dir:
//
//	blobs/sha256/<hex>   content, named by its SHA-256, read-only
//	refs/<key>.json      which blob a uri downloaded to (key: SHA-256 of the uri)
//	tmp/<key>.part       a download in progress, kept to be resumed
//	tmp/<key>.validator  the ETag or Last-Modified the part was fetched at
//
// A download goes to tmp and is renamed into blobs only once complete and
// hashed, so a blob is never partial. Fetches of one uri at the same time
// share one download (in-process coordination: one agent owns a cache
// directory). A part left by an interrupted download (a canceled fetch, an
// agent that stopped) is resumed with a Range request when the server still
// has the same content (If-Range), and discarded otherwise.
package artifacts

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"net/url"
	"os"
	"path"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/gantry-dev/gantry/internal/model"
	"github.com/gantry-dev/gantry/internal/validate"
)

// ErrChecksum is content whose SHA-256 is not the one its uri names.
var ErrChecksum = errors.New("artifacts: checksum mismatch")

// Config configures a Cache.
type Config struct {
	// Dir holds the cache (see the package comment). Required.
	Dir string
	// Client downloads; nil means a client without an overall timeout
	// (models are large), whose connections time out when idle.
	Client *http.Client
	// Logger receives downloads' starts and ends, with redacted URLs.
	Logger *slog.Logger
}

// Blob is an artifact's content in the cache.
type Blob struct {
	// Path is the read-only file in the cache.
	Path string
	// SHA256 is the content's digest, lower-case hex.
	SHA256 string
	Size   int64
	// FileName is what the instance sees the content as: the last element
	// of the uri's path ("data" when it has none).
	FileName string
}

// Progress is told, while a download runs, how many bytes of it are done
// and how many there are in all (-1 when the server did not say). It must
// not block.
type Progress func(done, total int64)

// Cache is an agent's artifact cache; safe for concurrent use.
type Cache struct {
	dir    string
	client *http.Client
	log    *slog.Logger

	mu      sync.Mutex
	flights map[string]*flight // by ref key
}

// flight is one download that every concurrent Fetch of its uri waits for.
type flight struct {
	done   chan struct{}
	blob   Blob
	err    error
	cancel context.CancelFunc

	mu       sync.Mutex
	waiters  int
	watchers map[int]Progress
	next     int
	at       [2]int64 // done, total: what a watcher that joins late is told first
}

// New opens (creating) the cache in cfg.Dir.
func New(cfg Config) (*Cache, error) {
	if cfg.Dir == "" {
		return nil, errors.New("artifacts: a cache directory is required")
	}
	for _, d := range []string{"blobs/sha256", "refs", "tmp"} {
		if err := os.MkdirAll(filepath.Join(cfg.Dir, d), 0o755); err != nil {
			return nil, fmt.Errorf("artifacts: %w", err)
		}
	}
	client := cfg.Client
	if client == nil {
		tr := http.DefaultTransport.(*http.Transport).Clone()
		tr.ResponseHeaderTimeout = time.Minute
		client = &http.Client{Transport: tr}
	}
	log := cfg.Logger
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	return &Cache{dir: cfg.Dir, client: client, log: log, flights: map[string]*flight{}}, nil
}

// Dir is the cache's directory.
func (c *Cache) Dir() string { return c.dir }

// Fetch returns a's content in the cache, downloading it unless the cache
// holds it already: a uri fetched before, or content with the SHA-256 the
// uri's #sha256= names. Concurrent fetches of one uri download it once.
// Errors name the artifact and its uri without userinfo or query.
func (c *Cache) Fetch(ctx context.Context, a model.Artifact, progress Progress) (Blob, error) {
	want, _ := validate.ArtifactChecksum(a.URI)
	name := fileName(a.URI)
	if want != "" {
		if b, ok := c.blob(want, name); ok {
			return b, nil
		}
	}
	key := refKey(a.URI)
	if b, ok := c.lookupRef(key, name); ok && (want == "" || b.SHA256 == want) {
		return b, nil
	}

	c.mu.Lock()
	f, ok := c.flights[key]
	for ok {
		f.mu.Lock()
		if f.waiters > 0 {
			break // join it; f.mu stays locked
		}
		// Everyone left it and it is stopping: let it put its part away
		// before a new download resumes from it.
		f.mu.Unlock()
		c.mu.Unlock()
		select {
		case <-f.done:
		case <-ctx.Done():
			return Blob{}, fmt.Errorf("artifacts: %s: %w", a.Name, ctx.Err())
		}
		c.mu.Lock()
		f, ok = c.flights[key]
	}
	if !ok {
		fctx, cancel := context.WithCancel(context.WithoutCancel(ctx))
		f = &flight{done: make(chan struct{}), cancel: cancel, watchers: map[int]Progress{}}
		c.flights[key] = f
		go c.run(fctx, f, key, a, want, name)
		f.mu.Lock()
	}
	f.waiters++
	id := f.next
	f.next++
	if progress != nil {
		f.watchers[id] = progress
		if f.at[0] > 0 || f.at[1] > 0 {
			progress(f.at[0], f.at[1])
		}
	}
	f.mu.Unlock()
	c.mu.Unlock()

	leave := func() {
		f.mu.Lock()
		defer f.mu.Unlock()
		delete(f.watchers, id)
		f.waiters--
		if f.waiters == 0 {
			// Nobody waits any more: stop, keeping the part to resume.
			f.cancel()
		}
	}
	select {
	case <-f.done:
		leave()
		return f.blob, f.err
	case <-ctx.Done():
		leave()
		return Blob{}, fmt.Errorf("artifacts: %s: %w", a.Name, ctx.Err())
	}
}

func (c *Cache) run(ctx context.Context, f *flight, key string, a model.Artifact, want, name string) {
	defer f.cancel()
	b, err := c.download(ctx, key, a, want, name, func(done, total int64) {
		f.mu.Lock()
		f.at = [2]int64{done, total}
		for _, p := range f.watchers {
			p(done, total)
		}
		f.mu.Unlock()
	})
	f.blob, f.err = b, err
	c.mu.Lock()
	delete(c.flights, key)
	c.mu.Unlock()
	close(f.done)
}

// download fetches a.URI into tmp, resuming a part when it can, checks it
// against want, and moves it into blobs.
func (c *Cache) download(ctx context.Context, key string, a model.Artifact, want, name string, progress Progress) (Blob, error) {
	where := validate.RedactURL(a.URI)
	fail := func(format string, args ...any) (Blob, error) {
		return Blob{}, fmt.Errorf("artifacts: %s from %s: "+format, append([]any{a.Name, where}, args...)...)
	}
	part := filepath.Join(c.dir, "tmp", key+".part")
	validatorPath := filepath.Join(c.dir, "tmp", key+".validator")

	req, err := http.NewRequestWithContext(ctx, http.MethodGet, a.URI, nil)
	if err != nil {
		return fail("the uri is not a URL the agent can request")
	}
	req.URL.Fragment, req.URL.RawFragment = "", ""
	var have int64
	if st, err := os.Stat(part); err == nil && st.Size() > 0 {
		if v, err := os.ReadFile(validatorPath); err == nil && len(v) > 0 {
			have = st.Size()
			req.Header.Set("Range", "bytes="+strconv.FormatInt(have, 10)+"-")
			req.Header.Set("If-Range", string(v))
		}
	}
	start := time.Now()
	resp, err := c.client.Do(req)
	if err != nil {
		return fail("%s", transportError(err))
	}
	defer resp.Body.Close()

	h := sha256.New()
	var out *os.File
	switch {
	case resp.StatusCode == http.StatusPartialContent && have > 0 && rangeStart(resp.Header.Get("Content-Range")) == have:
		// Resume: hash what is there, then append.
		if out, err = os.OpenFile(part, os.O_RDWR, 0o644); err != nil {
			return fail("%v", err)
		}
		if _, err := io.Copy(h, io.LimitReader(out, have)); err != nil {
			out.Close()
			return fail("reading the partial download: %v", err)
		}
		if _, err := out.Seek(have, io.SeekStart); err != nil {
			out.Close()
			return fail("%v", err)
		}
		c.log.Info("artifacts: resuming download", "artifact", a.Name, "url", where, "from", have)
	case resp.StatusCode == http.StatusOK:
		have = 0
		if out, err = os.OpenFile(part, os.O_RDWR|os.O_CREATE|os.O_TRUNC, 0o644); err != nil {
			return fail("%v", err)
		}
		v := resp.Header.Get("ETag")
		if v == "" || strings.HasPrefix(v, "W/") {
			v = resp.Header.Get("Last-Modified")
		}
		if v != "" {
			err = os.WriteFile(validatorPath, []byte(v), 0o644)
		} else {
			err = os.Remove(validatorPath)
		}
		if err != nil && !errors.Is(err, os.ErrNotExist) {
			out.Close()
			return fail("%v", err)
		}
	case resp.StatusCode == http.StatusPartialContent || resp.StatusCode == http.StatusRequestedRangeNotSatisfiable:
		// The part does not fit what the server has now: start over.
		discard(part, validatorPath)
		if have == 0 {
			return fail("the server answered %s to a request for the whole content", resp.Status)
		}
		resp.Body.Close()
		return c.download(ctx, key, a, want, name, progress)
	default:
		return fail("the server answered %s", resp.Status)
	}
	total := int64(-1)
	if resp.ContentLength >= 0 {
		total = have + resp.ContentLength
	}
	progress(have, total)
	n, err := io.Copy(io.MultiWriter(out, h), &progressReader{r: resp.Body, done: have, total: total, progress: progress})
	if cerr := out.Close(); err == nil {
		err = cerr
	}
	if err != nil {
		if ctx.Err() != nil {
			return fail("canceled after %d bytes (kept to resume)", have+n)
		}
		return fail("the download broke off after %d bytes (kept to resume): %s", have+n, transportError(err))
	}
	size := have + n
	if total >= 0 && size != total {
		return fail("the download ended after %d of %d bytes (kept to resume)", size, total)
	}
	sum := hex.EncodeToString(h.Sum(nil))
	if want != "" && sum != want {
		discard(part, validatorPath)
		return Blob{}, fmt.Errorf("%w: %s from %s has SHA-256 %s, the uri names %s; the download was discarded", ErrChecksum, a.Name, where, sum, want)
	}
	blob := filepath.Join(c.dir, "blobs", "sha256", sum)
	if err := os.Chmod(part, 0o444); err != nil {
		return fail("%v", err)
	}
	if err := os.Rename(part, blob); err != nil {
		return fail("%v", err)
	}
	_ = os.Remove(validatorPath)
	if err := c.writeRef(key, sum, size); err != nil {
		return fail("%v", err)
	}
	c.log.Info("artifacts: downloaded", "artifact", a.Name, "url", where, "bytes", size, "sha256", sum,
		"took", time.Since(start).Round(time.Millisecond))
	return Blob{Path: blob, SHA256: sum, Size: size, FileName: name}, nil
}

type ref struct {
	SHA256 string `json:"sha256"`
	Size   int64  `json:"size"`
}

func (c *Cache) writeRef(key, sum string, size int64) error {
	b, _ := json.Marshal(ref{SHA256: sum, Size: size})
	tmp, err := os.CreateTemp(filepath.Join(c.dir, "tmp"), key+".ref-*")
	if err != nil {
		return err
	}
	if _, err := tmp.Write(b); err != nil {
		tmp.Close()
		os.Remove(tmp.Name())
		return err
	}
	if err := tmp.Close(); err != nil {
		os.Remove(tmp.Name())
		return err
	}
	return os.Rename(tmp.Name(), filepath.Join(c.dir, "refs", key+".json"))
}

// lookupRef returns the blob a uri downloaded to before, if it is still
// there whole.
func (c *Cache) lookupRef(key, name string) (Blob, bool) {
	b, err := os.ReadFile(filepath.Join(c.dir, "refs", key+".json"))
	if err != nil {
		return Blob{}, false
	}
	var r ref
	if json.Unmarshal(b, &r) != nil || len(r.SHA256) != 64 {
		return Blob{}, false
	}
	blob, ok := c.blob(r.SHA256, name)
	return blob, ok && blob.Size == r.Size
}

func (c *Cache) blob(sum, name string) (Blob, bool) {
	p := filepath.Join(c.dir, "blobs", "sha256", sum)
	st, err := os.Stat(p)
	if err != nil || !st.Mode().IsRegular() {
		return Blob{}, false
	}
	return Blob{Path: p, SHA256: sum, Size: st.Size(), FileName: name}, true
}

// refKey names a uri's ref and part: the SHA-256 of the uri without its
// fragment, so no file name in the cache repeats a credential the uri holds.
func refKey(uri string) string {
	u, _, _ := strings.Cut(uri, "#")
	s := sha256.Sum256([]byte(u))
	return hex.EncodeToString(s[:])
}

// fileName is what an instance sees a uri's content as: the last element
// of its path.
func fileName(uri string) string {
	u, err := url.Parse(uri)
	if err != nil {
		return "data"
	}
	n := path.Base(u.Path)
	if n == "" || n == "." || n == "/" || n == ".." || strings.ContainsAny(n, "/\\\x00") {
		return "data"
	}
	return n
}

func discard(paths ...string) {
	for _, p := range paths {
		_ = os.Remove(p)
	}
}

// rangeStart reads the first byte of a Content-Range ("bytes 100-199/200").
func rangeStart(cr string) int64 {
	s, ok := strings.CutPrefix(cr, "bytes ")
	if !ok {
		return -1
	}
	first, _, ok := strings.Cut(s, "-")
	if !ok {
		return -1
	}
	n, err := strconv.ParseInt(first, 10, 64)
	if err != nil {
		return -1
	}
	return n
}

// transportError is err without the URL net/http puts in it, which holds
// the query.
func transportError(err error) string {
	var ue *url.Error
	if errors.As(err, &ue) {
		err = ue.Err
	}
	return err.Error()
}

type progressReader struct {
	r           io.Reader
	done, total int64
	progress    Progress
	last        time.Time
}

func (p *progressReader) Read(b []byte) (int, error) {
	n, err := p.r.Read(b)
	p.done += int64(n)
	if now := time.Now(); now.Sub(p.last) >= 100*time.Millisecond || err != nil {
		p.last = now
		p.progress(p.done, p.total)
	}
	return n, err
}

// Place makes b visible as dir/<b.FileName>: a hard link to the blob, so
// the instance reads the cache's bytes without a copy and a later eviction
// of the blob leaves its view whole; a symbolic link where dir is on
// another file system.
func Place(b Blob, dir string) error {
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return fmt.Errorf("artifacts: %w", err)
	}
	dst := filepath.Join(dir, b.FileName)
	_ = os.Remove(dst)
	if err := os.Link(b.Path, dst); err == nil {
		return nil
	}
	if err := os.Symlink(b.Path, dst); err != nil {
		return fmt.Errorf("artifacts: %w", err)
	}
	return nil
}
