package e2e

import (
	"context"
	"crypto/rand"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"net/url"
	"os"
	"path/filepath"
	"slices"
	"sort"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/gantry-dev/gantry/internal/bus"
	"github.com/gantry-dev/gantry/internal/controlplane"
	"github.com/gantry-dev/gantry/internal/dev"
	"github.com/gantry-dev/gantry/internal/model"
	"github.com/gantry-dev/gantry/internal/testutil"
)

// assetsAnswer is what the "assets" helper function answers: the asset
// headers it was given and, per file in its NVCF-ASSET-DIR, the size and
// (unless the call has Assets-Stat) the SHA-256 of the content.
type assetsAnswer struct {
	Dir    string               `json:"dir"`
	IDs    string               `json:"ids"`
	Refs   string               `json:"refs"`
	Files  map[string]assetFile `json:"files"`
	Leaked []string             `json:"leaked,omitempty"` // Gantry-* headers that reached the function
	Error  string               `json:"error,omitempty"`
}

type assetFile struct {
	Bytes  int64  `json:"bytes"`
	SHA256 string `json:"sha256,omitempty"`
}

// serveAssets runs the "assets" helper function: /health, and on any other
// path the assetsAnswer of the request.
func serveAssets() {
	mux := http.NewServeMux()
	mux.HandleFunc("/health", func(w http.ResponseWriter, r *http.Request) {})
	mux.HandleFunc("/", func(w http.ResponseWriter, r *http.Request) {
		_, _ = io.Copy(io.Discard, r.Body)
		out := assetsAnswer{Dir: r.Header.Get("NVCF-ASSET-DIR"), IDs: r.Header.Get("NVCF-FUNCTION-ASSET-IDS"),
			Refs: r.Header.Get("NVCF-INPUT-ASSET-REFERENCES"), Files: map[string]assetFile{}}
		for k := range r.Header {
			if strings.HasPrefix(k, "Gantry-") {
				out.Leaked = append(out.Leaked, k)
			}
		}
		entries, err := os.ReadDir(out.Dir)
		if err != nil && !errors.Is(err, os.ErrNotExist) {
			out.Error = err.Error()
		}
		buf := make([]byte, 1<<20)
		for _, e := range entries {
			f, err := os.Open(filepath.Join(out.Dir, e.Name()))
			if err != nil {
				out.Error = err.Error()
				continue
			}
			var af assetFile
			if r.Header.Get("Assets-Stat") != "" {
				st, _ := f.Stat()
				af.Bytes = st.Size()
			} else {
				h := sha256.New()
				af.Bytes, err = io.CopyBuffer(h, f, buf)
				af.SHA256 = hex.EncodeToString(h.Sum(nil))
			}
			if err != nil {
				out.Error = err.Error()
			}
			f.Close()
			out.Files[e.Name()] = af
		}
		w.Header().Set("Content-Type", "application/json")
		_ = json.NewEncoder(w).Encode(out)
	})
	if err := http.ListenAndServe("127.0.0.1:"+os.Getenv("PORT"), mux); err != nil {
		os.Exit(1)
	}
}

// createAsset creates an asset as token's account.
func createAsset(t testing.TB, p *platform, token, contentType, description string) model.CreateAssetResponse {
	t.Helper()
	body, _ := json.Marshal(model.CreateAssetRequest{ContentType: contentType, Description: description})
	status, answer := callTB(t, p.URL(), "POST", "/v2/nvcf/assets", token, string(body))
	var a model.CreateAssetResponse
	if status != http.StatusOK || json.Unmarshal([]byte(answer), &a) != nil || a.AssetID == "" || a.UploadURL == "" {
		t.Fatalf("POST /v2/nvcf/assets: %d %s", status, answer)
	}
	return a
}

// upload PUTs content to an upload URL as NVCF's clients do: no
// credential, the declared Content-Type and the description header. A
// negative length sends the body chunked.
func upload(t testing.TB, rawURL, contentType, description string, body io.Reader, length int64) (int, string) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Minute)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, http.MethodPut, rawURL, body)
	if err != nil {
		t.Fatal(err)
	}
	req.ContentLength = length
	if length == 0 {
		req.Body = http.NoBody
	}
	if contentType != "" {
		req.Header.Set("Content-Type", contentType)
	}
	if description != "" {
		req.Header.Set("x-amz-meta-nvcf-asset-description", description)
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return 0, err.Error()
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, string(b)
}

// invokeWithAssets calls f with the NVCF-INPUT-ASSET-REFERENCES header and
// returns the status and body.
func invokeWithAssets(t testing.TB, p *platform, token string, f model.Function, refs string, hdr http.Header) (int, string) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Minute)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, p.URL()+"/v2/nvcf/pexec/functions/"+f.ID, strings.NewReader(`{}`))
	if err != nil {
		t.Fatal(err)
	}
	req.Header.Set("Authorization", "Bearer "+token)
	req.Header.Set("NVCF-POLL-SECONDS", "600")
	if refs != "" {
		req.Header.Set("NVCF-INPUT-ASSET-REFERENCES", refs)
	}
	for k, vs := range hdr {
		req.Header[k] = vs
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, string(b)
}

func randomBytes(t testing.TB, n int) []byte {
	t.Helper()
	b := make([]byte, n)
	if _, err := rand.Read(b); err != nil {
		t.Fatal(err)
	}
	return b
}

func sha256Hex(b []byte) string {
	s := sha256.Sum256(b)
	return hex.EncodeToString(s[:])
}

// hasObject reports whether the assets object store holds the content of
// an account's asset.
func hasObject(t *testing.T, p *platform, account, id string) bool {
	t.Helper()
	ctx := testutil.Context(t)
	obs, err := p.ControlPlane().JetStream().ObjectStore(ctx, bus.AssetsBucket)
	if err != nil {
		t.Fatal(err)
	}
	_, err = obs.GetInfo(ctx, bus.AssetObject(account, id))
	if errors.Is(err, jetstream.ErrObjectNotFound) {
		return false
	}
	if err != nil {
		t.Fatal(err)
	}
	return true
}

// TestAssets walks NVCF's asset flow and its failures: create, upload to
// the pre-signed URL, reference in a pexec call (the function reads the
// bytes from NVCF-ASSET-DIR, which is gone after the call), list, get,
// delete; another account gets 404 everywhere; bad uploads and bad
// references are refused, saying why, before anything is stored or queued.
func TestAssets(t *testing.T) {
	t.Parallel()
	const limit = 1 << 20
	p := startPlatformWith(t, t.TempDir(), func(c *dev.Config) {
		c.Invocation = controlplane.Invocation{MaxAssetSize: limit}
	})
	ctx := testutil.Context(t)
	admin := p.AdminToken()
	account := controlplane.DefaultAccount
	f, err := p.c.CreateFunction(ctx, selfFunction(t, "assets", "assets"))
	if err != nil {
		t.Fatal(err)
	}
	p.deploy(t, f, model.GPUSpec{GPU: "H100", MinInstances: 1, MaxInstances: 1, MaxRequestConcurrency: model.Int(2)}, model.StatusActive)
	expect := func(bearer, method, path, body string, want int, has string) string {
		t.Helper()
		status, answer := call(t, p.URL(), method, path, bearer, body)
		if status != want || !strings.Contains(answer, has) {
			t.Fatalf("%s %s: %d %s, want %d containing %q", method, path, status, answer, want, has)
		}
		return answer
	}

	// Create and upload two assets, as NVCF's documentation does.
	img := createAsset(t, p, admin, "image/png", "red-cat-photo")
	if !strings.HasPrefix(img.UploadURL, p.URL()+"/v1/gantry/assets/"+account+"/"+img.AssetID+"?") || img.ContentType != "image/png" || img.Description != "red-cat-photo" {
		t.Fatalf("create answered %+v", img)
	}
	imgBytes := randomBytes(t, 300<<10)
	if status, answer := upload(t, img.UploadURL, "image/png", "red-cat-photo", strings.NewReader(string(imgBytes)), int64(len(imgBytes))); status != http.StatusOK {
		t.Fatalf("upload: %d %s", status, answer)
	}
	txt := createAsset(t, p, admin, "text/plain; charset=utf-8", "notes")
	txtBytes := []byte("hello, asset\n")
	// Chunked, and without the description header: both accepted.
	if status, answer := upload(t, txt.UploadURL, "text/plain;charset=utf-8", "", strings.NewReader(string(txtBytes)), -1); status != http.StatusOK {
		t.Fatalf("chunked upload: %d %s", status, answer)
	}

	// A call naming both: the function reads them from NVCF-ASSET-DIR.
	refs := img.AssetID + ", " + txt.AssetID + ","
	status, answer := invokeWithAssets(t, p, admin, f, refs, nil)
	var got assetsAnswer
	if status != http.StatusOK || json.Unmarshal([]byte(answer), &got) != nil {
		t.Fatalf("invoke: %d %s", status, answer)
	}
	want := map[string]assetFile{
		img.AssetID: {Bytes: int64(len(imgBytes)), SHA256: sha256Hex(imgBytes)},
		txt.AssetID: {Bytes: int64(len(txtBytes)), SHA256: sha256Hex(txtBytes)},
	}
	ids := img.AssetID + "," + txt.AssetID
	if !mapsEqual(got.Files, want) || got.IDs != ids || got.Refs != ids || got.Error != "" || len(got.Leaked) > 0 {
		t.Fatalf("the function got %+v, want files %+v and ids %s", got, want, ids)
	}
	if _, err := os.Stat(got.Dir); !errors.Is(err, os.ErrNotExist) {
		t.Fatalf("the call's asset directory %s is still there after the call (%v)", got.Dir, err)
	}
	// A call without the header gets no assets.
	if status, answer := invokeWithAssets(t, p, admin, f, "", nil); status != http.StatusOK || !strings.Contains(answer, `"files":{}`) {
		t.Fatalf("invoke without assets: %d %s", status, answer)
	}

	// List and get.
	list := expect(admin, "GET", "/v2/nvcf/assets", "", http.StatusOK, img.AssetID)
	if !strings.Contains(list, txt.AssetID) {
		t.Fatalf("list lacks %s: %s", txt.AssetID, list)
	}
	var one model.AssetResponse
	if err := json.Unmarshal([]byte(expect(admin, "GET", "/v2/nvcf/assets/"+img.AssetID, "", http.StatusOK, `"asset":{`)), &one); err != nil ||
		one.Asset.ID != img.AssetID || one.Asset.ContentType != "image/png" || one.Asset.Description != "red-cat-photo" || one.Asset.Size != int64(len(imgBytes)) {
		t.Fatalf("get: %+v %v", one, err)
	}

	// Another account: 404 everywhere, and a call to a function shared with
	// it cannot use the owner's asset.
	tok, err := p.c.MintAdminToken(ctx, model.AdminKeyRequest{NCAID: "other-account"})
	if err != nil {
		t.Fatal(err)
	}
	other := tok.Value
	expect(other, "GET", "/v2/nvcf/assets/"+img.AssetID, "", http.StatusNotFound, img.AssetID)
	expect(other, "DELETE", "/v2/nvcf/assets/"+img.AssetID, "", http.StatusNotFound, img.AssetID)
	if l := expect(other, "GET", "/v2/nvcf/assets", "", http.StatusOK, `"assets":[]`); strings.Contains(l, img.AssetID) {
		t.Fatalf("the other account lists the asset: %s", l)
	}
	expect(admin, "POST", "/v2/nvcf/authorizations/functions/"+f.ID, `{"authorizedParties":[{"ncaId":"other-account"}]}`, http.StatusOK, "other-account")
	testutil.WaitFor(t, 10*time.Second, func() error {
		status, answer := invokeWithAssets(t, p, other, f, img.AssetID, nil)
		if status != http.StatusNotFound || !strings.Contains(answer, "asset "+img.AssetID) {
			return fmt.Errorf("the other account's call: %d %s, want 404 for the asset", status, answer)
		}
		return nil
	})

	// Bad references: refused before anything is queued, naming the id.
	pending := createAsset(t, p, admin, "image/png", "never uploaded")
	for _, tc := range []struct {
		refs string
		want int
		has  string
	}{
		{"00000000-0000-0000-0000-000000000000", http.StatusNotFound, "asset 00000000-0000-0000-0000-000000000000 named in NVCF-INPUT-ASSET-REFERENCES not found"},
		{img.AssetID + ",not/an/id", http.StatusBadRequest, `entry 2, \"not/an/id\", is not an asset id`},
		{pending.AssetID, http.StatusBadRequest, "asset " + pending.AssetID + " named in NVCF-INPUT-ASSET-REFERENCES has no content yet"},
	} {
		if status, answer := invokeWithAssets(t, p, admin, f, tc.refs, nil); status != tc.want || !strings.Contains(answer, tc.has) || !strings.Contains(answer, `"status":`) {
			t.Errorf("refs %q: %d %s, want %d containing %q", tc.refs, status, answer, tc.want, tc.has)
		}
	}

	// Bad uploads: refused, and nothing is stored.
	u, err := url.Parse(pending.UploadURL)
	if err != nil {
		t.Fatal(err)
	}
	q := u.Query()
	tampered := *u
	q2 := url.Values{"expires": {q.Get("expires")}, "signature": {"AAAA" + q.Get("signature")[4:]}}
	tampered.RawQuery = q2.Encode()
	otherAsset := *u
	otherAsset.Path = strings.Replace(u.Path, pending.AssetID, img.AssetID, 1)
	later := *u
	exp, _ := strconv.ParseInt(q.Get("expires"), 10, 64)
	later.RawQuery = url.Values{"expires": {strconv.FormatInt(exp+3600, 10)}, "signature": {q.Get("signature")}}.Encode()
	bare := *u
	bare.RawQuery = ""
	small := "0123456789"
	for _, tc := range []struct {
		name, url, contentType, description string
		body                                io.Reader
		length                              int64
		want                                int
		has                                 string
	}{
		{"tampered signature", tampered.String(), "image/png", "", strings.NewReader(small), 10, http.StatusForbidden, "signature does not match"},
		{"another asset's path", otherAsset.String(), "image/png", "", strings.NewReader(small), 10, http.StatusForbidden, "signature does not match"},
		{"later expiry", later.String(), "image/png", "", strings.NewReader(small), 10, http.StatusForbidden, "signature does not match"},
		{"no signature", bare.String(), "image/png", "", strings.NewReader(small), 10, http.StatusForbidden, "lacks its expires and signature"},
		{"no content type", pending.UploadURL, "", "", strings.NewReader(small), 10, http.StatusBadRequest, "send Content-Type: image/png"},
		{"other content type", pending.UploadURL, "image/jpeg", "", strings.NewReader(small), 10, http.StatusBadRequest, `\"image/jpeg\" does not match the asset's contentType \"image/png\"`},
		{"other description", pending.UploadURL, "image/png", "a dog", strings.NewReader(small), 10, http.StatusBadRequest, "x-amz-meta-nvcf-asset-description does not match"},
		{"declared over the limit", pending.UploadURL, "image/png", "", strings.NewReader(strings.Repeat("x", limit+1)), limit + 1, http.StatusRequestEntityTooLarge, "the upload is 1048577 bytes, over the asset limit of 1048576 bytes (1 MiB"},
		{"chunked over the limit", pending.UploadURL, "image/png", "", io.LimitReader(zeros{}, 3*limit), -1, http.StatusRequestEntityTooLarge, "larger than the asset limit of 1048576 bytes (1 MiB; gantry server --max-asset-size): nothing was stored"},
	} {
		status, answer := upload(t, tc.url, tc.contentType, tc.description, tc.body, tc.length)
		if status != tc.want || !strings.Contains(answer, tc.has) || !strings.Contains(answer, `"status":`) {
			t.Errorf("%s: %d %s, want %d containing %q", tc.name, status, answer, tc.want, tc.has)
		}
	}
	if hasObject(t, p, account, pending.AssetID) {
		t.Error("a refused upload left content behind")
	}
	expect(admin, "GET", "/v2/nvcf/assets/"+pending.AssetID, "", http.StatusOK, `"description":"never uploaded"`)
	if one := expect(admin, "GET", "/v2/nvcf/assets/"+pending.AssetID, "", http.StatusOK, pending.AssetID); strings.Contains(one, `"size"`) {
		t.Errorf("a refused upload marked the asset uploaded: %s", one)
	}
	// Body and path errors.
	expect(admin, "POST", "/v2/nvcf/assets", `{"contentType":"image/png"}`, http.StatusBadRequest, "description is required")
	expect(admin, "POST", "/v2/nvcf/assets", `{"contentType":"png","description":"x"}`, http.StatusBadRequest, "is not a media type")
	expect(admin, "GET", "/v2/nvcf/assets/not..an-id", "", http.StatusBadRequest, "not a valid id")

	// Delete: gone for reads, references and the object store.
	expect(admin, "DELETE", "/v2/nvcf/assets/"+img.AssetID, "", http.StatusNoContent, "")
	expect(admin, "GET", "/v2/nvcf/assets/"+img.AssetID, "", http.StatusNotFound, "not found")
	if status, answer := invokeWithAssets(t, p, admin, f, img.AssetID, nil); status != http.StatusNotFound || !strings.Contains(answer, img.AssetID) {
		t.Fatalf("a call naming a deleted asset: %d %s", status, answer)
	}
	if hasObject(t, p, account, img.AssetID) {
		t.Error("the deleted asset's content is still stored")
	}
	if status, answer := upload(t, img.UploadURL, "image/png", "", strings.NewReader(small), 10); status != http.StatusNotFound {
		t.Errorf("upload to a deleted asset: %d %s, want 404", status, answer)
	}
}

// callTB is call for tests and benchmarks alike.
func callTB(tb testing.TB, base, method, path, bearer, body string) (int, string) {
	tb.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, method, base+path, strings.NewReader(body))
	if err != nil {
		tb.Fatal(err)
	}
	if body != "" {
		req.Header.Set("Content-Type", "application/json")
	}
	if bearer != "" {
		req.Header.Set("Authorization", "Bearer "+bearer)
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		tb.Fatalf("%s %s: %v", method, path, err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, string(b)
}

func mapsEqual(a, b map[string]assetFile) bool {
	if len(a) != len(b) {
		return false
	}
	for k, v := range a {
		if b[k] != v {
			return false
		}
	}
	return true
}

// TestAssetsExpire: an asset past its lifetime is gone for reads and
// references at once, its upload URL with it, and the leader's sweep
// deletes record and content.
func TestAssetsExpire(t *testing.T) {
	t.Parallel()
	p := startPlatformWith(t, t.TempDir(), func(c *dev.Config) {
		c.Invocation = controlplane.Invocation{AssetTTL: 2 * time.Second}
	})
	ctx := testutil.Context(t)
	admin := p.AdminToken()
	f, err := p.c.CreateFunction(ctx, selfFunction(t, "assets", "assets"))
	if err != nil {
		t.Fatal(err)
	}
	p.deploy(t, f, model.GPUSpec{GPU: "H100", MinInstances: 1, MaxInstances: 1}, model.StatusActive)
	a := createAsset(t, p, admin, "application/octet-stream", "short-lived")
	if status, answer := upload(t, a.UploadURL, "application/octet-stream", "short-lived", strings.NewReader("x"), 1); status != http.StatusOK {
		// The machine was too slow for the 2s lifetime; the rest still holds.
		t.Logf("upload within the lifetime: %d %s", status, answer)
	}
	testutil.WaitFor(t, 30*time.Second, func() error {
		if status, _ := call(t, p.URL(), "GET", "/v2/nvcf/assets/"+a.AssetID, admin, ""); status != http.StatusNotFound {
			return fmt.Errorf("GET: %d, want 404 once expired", status)
		}
		return nil
	})
	if status, answer := invokeWithAssets(t, p, admin, f, a.AssetID, nil); status != http.StatusNotFound || !strings.Contains(answer, a.AssetID) {
		t.Fatalf("a call naming an expired asset: %d %s, want 404 naming it", status, answer)
	}
	if status, answer := upload(t, a.UploadURL, "application/octet-stream", "", strings.NewReader("x"), 1); status != http.StatusForbidden || !strings.Contains(answer, "expired") {
		t.Fatalf("upload after expiry: %d %s, want 403 saying it expired", status, answer)
	}
	testutil.WaitFor(t, 30*time.Second, func() error {
		if _, err := p.ControlPlane().Store().GetAsset(ctx, controlplane.DefaultAccount, a.AssetID); err == nil {
			return errors.New("the expired record is still stored")
		}
		if hasObject(t, p, controlplane.DefaultAccount, a.AssetID) {
			return errors.New("the expired content is still stored")
		}
		return nil
	})
}

// patternReader reads n bytes of a 1 MiB random pattern, repeated, and
// hashes what it hands out; it holds nothing else.
type patternReader struct {
	pattern []byte
	off, n  int64
	h       interface{ Write([]byte) (int, error) }
}

func newPatternReader(t testing.TB, n int64) (*patternReader, func() string) {
	h := sha256.New()
	return &patternReader{pattern: randomBytes(t, 1<<20), n: n, h: h}, func() string { return hex.EncodeToString(h.Sum(nil)) }
}

func (r *patternReader) Read(p []byte) (int, error) {
	if r.off >= r.n {
		return 0, io.EOF
	}
	p = p[:min(int64(len(p)), r.n-r.off)]
	n := 0
	for n < len(p) {
		n += copy(p[n:], r.pattern[(r.off+int64(n))%int64(len(r.pattern)):])
	}
	r.off += int64(n)
	_, _ = r.h.Write(p[:n])
	return n, nil
}

// TestLargeAssetStreams uploads a 256 MiB asset (128 MiB under -race) and hands it to a call;
// the function reads every byte. The platform runs in this process, which
// grows by no more than 64 MiB while it does: upload, object store, fetch
// and the agent's copy to disk all stream.
//
// Not parallel: it measures this process's memory, which platforms beside it would grow.
func TestLargeAssetStreams(t *testing.T) {
	if testing.Short() {
		t.Skip("moves 512 MiB")
	}
	p := startPlatform(t, t.TempDir())
	ctx := testutil.Context(t)
	admin := p.AdminToken()
	f, err := p.c.CreateFunction(ctx, selfFunction(t, "assets", "assets"))
	if err != nil {
		t.Fatal(err)
	}
	p.deploy(t, f, model.GPUSpec{GPU: "H100", MinInstances: 1, MaxInstances: 1}, model.StatusActive)
	const maxGrowth = 64 << 20
	// Under the race detector (CI) the asset is half as large, twice the
	// bound still, so that only streaming passes; it takes seconds, not 40.
	size := int64(256 << 20)
	if raceEnabled() {
		size = 128 << 20
	}
	a := createAsset(t, p, admin, "application/octet-stream", "large")
	body, digest := newPatternReader(t, size)

	rss := watchRSS(t)
	began := time.Now()
	if status, answer := upload(t, a.UploadURL, "application/octet-stream", "large", body, size); status != http.StatusOK {
		t.Fatalf("upload: %d %s", status, answer)
	}
	took, growth := time.Since(began), rss()
	t.Logf("uploaded %d MiB in %v (%.0f MB/s); this process grew by %d MiB", size>>20, took.Round(time.Millisecond), float64(size)/took.Seconds()/1e6, growth>>20)
	if growth > maxGrowth {
		t.Errorf("memory grew by %d MiB uploading %d MiB, want <= %d MiB", growth>>20, size>>20, maxGrowth>>20)
	}

	rss = watchRSS(t)
	began = time.Now()
	status, answer := invokeWithAssets(t, p, admin, f, a.AssetID, nil)
	took, growth = time.Since(began), rss()
	var got assetsAnswer
	if status != http.StatusOK || json.Unmarshal([]byte(answer), &got) != nil {
		t.Fatalf("invoke: %d %s", status, answer)
	}
	if fa := got.Files[a.AssetID]; fa.Bytes != size || fa.SHA256 != digest() {
		t.Fatalf("the function read %+v, want %d bytes with SHA-256 %s", got, size, digest())
	}
	t.Logf("the call fetched and read %d MiB in %v (%.0f MB/s); this process grew by %d MiB", size>>20, took.Round(time.Millisecond), float64(size)/took.Seconds()/1e6, growth>>20)
	if growth > maxGrowth {
		t.Errorf("memory grew by %d MiB handing a %d MiB asset to a call, want <= %d MiB", growth>>20, size>>20, maxGrowth>>20)
	}
}

// BenchmarkAssets moves a GANTRY_BENCH_ASSET_BYTES asset (default 2 GiB)
// through the platform -ASSET_ROUNDS times (default 3): PUT to its upload
// URL, then a call that names it (the agent fetches it to disk; the
// function only stats it, so the call's time is the fetch's). The same run
// measures baselines with the same bytes: a PUT to a plain httptest server
// that writes the body to a file, and a copy of a local file to another.
// It reports medians, their ratios, and the peak RSS growth of this
// process (platform included):
//
//	go test -run '^$' -bench Assets -benchtime 1x ./test/e2e
func BenchmarkAssets(b *testing.B) {
	size := int64(2 << 30)
	if v, err := strconv.ParseInt(os.Getenv("GANTRY_BENCH_ASSET_BYTES"), 10, 64); err == nil && v > 0 {
		size = v
	}
	rounds := 3
	if v, err := strconv.Atoi(os.Getenv("GANTRY_BENCH_ASSET_ROUNDS")); err == nil && v > 0 {
		rounds = v
	}
	for b.Loop() {
		res := benchAssets(b, size, rounds)
		b.ReportMetric(res.upload.rate()/1e6, "upload-MB/s")
		b.ReportMetric(res.fetch.rate()/1e6, "fetch-MB/s")
		b.ReportMetric(float64(res.rss>>20), "peak-rss-growth-MiB")
	}
}

// transfers is one kind of transfer timed over the rounds.
type transfers struct {
	size  int64
	times []time.Duration
}

func (x *transfers) median() time.Duration {
	s := slices.Clone(x.times)
	sort.Slice(s, func(i, j int) bool { return s[i] < s[j] })
	return s[len(s)/2]
}

func (x *transfers) rate() float64 { return float64(x.size) / x.median().Seconds() }

type assetBench struct {
	upload, fetch, httpPut, fileCopy transfers
	// rss is the peak growth of this process over every transfer;
	// uploadRSS and fetchRSS per round.
	rss                 int64
	uploadRSS, fetchRSS []int64
}

func benchAssets(b *testing.B, size int64, rounds int) assetBench {
	dir := b.TempDir()
	p := startPlatform(b, filepath.Join(dir, "platform"))
	ctx := testutil.Context(b)
	admin := p.AdminToken()
	f, err := p.c.CreateFunction(ctx, selfFunction(b, "assets", "assets"))
	if err != nil {
		b.Fatal(err)
	}
	if _, err := p.c.CreateDeployment(ctx, f.ID, f.VersionID, model.DeploymentRequest{Specs: []model.GPUSpec{{GPU: "H100", MinInstances: 1, MaxInstances: 1}}}); err != nil {
		b.Fatal(err)
	}
	p.waitStatus(b, f, model.StatusActive)
	res := assetBench{upload: transfers{size: size}, fetch: transfers{size: size}, httpPut: transfers{size: size}, fileCopy: transfers{size: size}}

	// The plain HTTP baseline: a handler that writes the body to a file.
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		out, err := os.Create(filepath.Join(dir, "http-put"))
		if err == nil {
			_, err = io.Copy(out, r.Body)
			out.Close()
		}
		if err != nil {
			http.Error(w, err.Error(), http.StatusInternalServerError)
		}
	}))
	defer srv.Close()

	for round := range rounds {
		b.Logf("round %d of %d", round+1, rounds)
		// Baseline: a file copied to another (written fresh, so the source
		// is in the page cache as the platform's object store is).
		src := filepath.Join(dir, "src")
		body, _ := newPatternReader(b, size)
		if err := writeFile(src, body); err != nil {
			b.Fatal(err)
		}
		began := time.Now()
		if err := copyFile(filepath.Join(dir, "dst"), src); err != nil {
			b.Fatal(err)
		}
		res.fileCopy.times = append(res.fileCopy.times, time.Since(began))
		_ = os.Remove(src)
		_ = os.Remove(filepath.Join(dir, "dst"))

		body, _ = newPatternReader(b, size)
		began = time.Now()
		if status, answer := upload(b, srv.URL, "application/octet-stream", "", body, size); status != http.StatusOK {
			b.Fatalf("baseline PUT: %d %s", status, answer)
		}
		res.httpPut.times = append(res.httpPut.times, time.Since(began))
		_ = os.Remove(filepath.Join(dir, "http-put"))

		a := createAsset(b, p, admin, "application/octet-stream", "bench")
		body, _ = newPatternReader(b, size)
		rss := watchRSS(b)
		began = time.Now()
		if status, answer := upload(b, a.UploadURL, "application/octet-stream", "bench", body, size); status != http.StatusOK {
			b.Fatalf("upload: %d %s", status, answer)
		}
		res.upload.times = append(res.upload.times, time.Since(began))
		res.uploadRSS = append(res.uploadRSS, rss())

		rss = watchRSS(b)
		began = time.Now()
		status, answer := invokeWithAssets(b, p, admin, f, a.AssetID, http.Header{"Assets-Stat": {"1"}})
		res.fetch.times = append(res.fetch.times, time.Since(began))
		res.fetchRSS = append(res.fetchRSS, rss())
		res.rss = max(res.rss, slices.Max(res.uploadRSS), slices.Max(res.fetchRSS))
		if status != http.StatusOK || !strings.Contains(answer, `"bytes":`+strconv.FormatInt(size, 10)) {
			b.Fatalf("invoke: %d %s", status, answer)
		}
		if status, answer := callTB(b, p.URL(), "DELETE", "/v2/nvcf/assets/"+a.AssetID, admin, ""); status != http.StatusNoContent {
			b.Fatalf("delete: %d %s", status, answer)
		}
	}
	mbs := func(x transfers) string {
		return fmt.Sprintf("%7.0f MB/s (median %v)", x.rate()/1e6, x.median().Round(time.Millisecond))
	}
	// Printed, not logged: the testing package cuts a benchmark's log
	// after ten lines.
	fmt.Printf("%d MiB asset, %d rounds, medians:\n"+
		"  upload  (PUT uploadUrl -> object store)       %s  %.2fx the plain HTTP PUT\n"+
		"  fetch   (call -> gateway -> agent's disk)      %s  %.2fx the file copy\n"+
		"  baseline PUT to httptest, body to a file       %s\n"+
		"  baseline file copy                             %s\n"+
		"  RSS growth of this process per round (MiB): upload %v, fetch %v\n",
		size>>20, rounds, mbs(res.upload), res.upload.rate()/res.httpPut.rate(), mbs(res.fetch), res.fetch.rate()/res.fileCopy.rate(),
		mbs(res.httpPut), mbs(res.fileCopy), mib(res.uploadRSS), mib(res.fetchRSS))
	return res
}

func mib(ns []int64) []int64 {
	out := make([]int64, len(ns))
	for i, n := range ns {
		out[i] = n >> 20
	}
	return out
}

func writeFile(path string, r io.Reader) error {
	f, err := os.Create(path)
	if err != nil {
		return err
	}
	if _, err := io.Copy(f, r); err != nil {
		f.Close()
		return err
	}
	return f.Close()
}

func copyFile(dst, src string) error {
	in, err := os.Open(src)
	if err != nil {
		return err
	}
	defer in.Close()
	// Through a buffer, as the platform copies (no copy_file_range).
	return writeFile(dst, struct{ io.Reader }{in})
}
