package e2e

import (
	"context"
	"io"
	"net/http"
	"net/url"
	"strings"
	"testing"
	"time"
)

// fuzzRoutes are the request shapes the API fuzzer drives; {id} and {vid}
// are filled with a real function's ids or with fuzzed text.
var fuzzRoutes = []struct{ method, path string }{
	{"POST", "/v2/nvcf/functions"},
	{"POST", "/v2/nvcf/functions/{id}/versions"},
	{"GET", "/v2/nvcf/functions/{id}/versions/{vid}"},
	{"PUT", "/v2/nvcf/metadata/functions/{id}/versions/{vid}"},
	{"PUT", "/v2/nvcf/secrets/functions/{id}/versions/{vid}"},
	{"POST", "/v2/nvcf/deployments/functions/{id}/versions/{vid}"},
	{"PUT", "/v2/nvcf/deployments/functions/{id}/versions/{vid}"},
	{"PATCH", "/v2/nvcf/deployments/{id}/gpu-specifications/{vid}"},
	{"POST", "/v2/nvcf/pexec/functions/{id}"},
	{"GET", "/v2/nvcf/pexec/status/{id}"},
	{"DELETE", "/v2/nvcf/functions/{id}/versions/{vid}"},
	{"PUT", "/v2/nvcf/ratelimit/functions/{id}/versions/{vid}"},
	{"GET", "/v2/nvcf/queues/{id}/position"},
	{"PUT", "/v2/nvcf/functions/{id}/versions/{vid}"},
	{"GET", "/v1/gantry/events?since={id}&limit={vid}"},
}

// FuzzAPINeverFails sends arbitrary bodies, ids and poll headers to the
// routes of a running platform: no input may yield a 5xx or stop the server.
// Seeds run with every go test; `go test -fuzz=FuzzAPINeverFails ./test/e2e`
// explores further.
func FuzzAPINeverFails(f *testing.F) {
	p := startPlatform(f, f.TempDir())
	ctx := context.Background()
	fn, err := p.c.CreateFunction(ctx, selfFunction(f, "fuzzed", "echo"))
	if err != nil {
		f.Fatal(err)
	}
	seeds := []struct {
		route          uint8
		realIDs        bool
		id, body, poll string
	}{
		{0, false, "", `{"name":"a","inferenceUrl":"/","containerImage":"process://true"}`, ""},
		{0, false, "", `{"name":"a","inferenceUrl":"/","containerImage":"process://true","secrets":[{"name":"A","value":"x"}],"health":{"timeout":"P1DT"}}`, ""},
		{1, true, "", `{"name":"v2","inferenceUrl":"/x","models":[{"name":"m","version":"1","uri":"u"}]}`, ""},
		{3, true, "", `{"tags":["a:b","c=d"]}`, ""},
		{4, true, "", `{"secrets":[{"name":"K","value":""}]}`, ""},
		{5, true, "", `{"deploymentSpecifications":[{"gpu":"H100","minInstances":0,"maxInstances":1}]}`, ""},
		{6, true, "", `{"deploymentSpecifications":[{"gpu":"A100","instanceType":"ON-PREM.GPU.H100_1x","maxInstances":1}]}`, ""},
		{7, false, "x", `{"minInstances":-1}`, ""},
		{8, true, "", `hello`, "0"},
		{8, false, "../../etc", `{}`, "3601"},
		{9, false, "\x00", ``, "abc"},
		{10, false, "%zz", ``, ""},
		{2, false, "ä", `[]`, ""},
		{0, false, "", `{"name":` + strings.Repeat(`[`, 10000), ""},
		{13, true, "", `{"tags":["a","b"]}`, ""},
		{13, true, "", `{"description":"d","rateLimit":{"rateLimit":"1-S"},"modelUpdates":[{"modelName":"m"}],"llmInvocationConfig":{}}`, ""},
		{13, false, "x", `{"tags":null}`, ""},
	}
	for _, s := range seeds {
		f.Add(s.route, s.realIDs, s.id, s.body, s.poll)
	}
	hc := &http.Client{Timeout: 30 * time.Second}
	f.Fuzz(func(t *testing.T, route uint8, realIDs bool, id, body, poll string) {
		r := fuzzRoutes[int(route)%len(fuzzRoutes)]
		fid, vid := url.PathEscape(id), url.PathEscape(id)
		if realIDs {
			fid, vid = fn.ID, fn.VersionID
		}
		path := strings.NewReplacer("{id}", fid, "{vid}", vid).Replace(r.path)
		req, err := http.NewRequest(r.method, p.URL()+path, strings.NewReader(body))
		if err != nil {
			return // not a request any client could send
		}
		req.Header.Set("Authorization", "Bearer "+p.AdminToken())
		if poll != "" && printableASCII(poll) {
			req.Header["Nvcf-Poll-Seconds"] = []string{poll}
		}
		resp, err := hc.Do(req)
		if err != nil {
			t.Fatalf("%s %s: %v", r.method, path, err)
		}
		b, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		if resp.StatusCode >= 500 && resp.StatusCode != http.StatusServiceUnavailable {
			t.Fatalf("%s %s with body %q: %d %s", r.method, path, body, resp.StatusCode, b)
		}
	})
}

// printableASCII reports whether s can travel as a header value at all.
func printableASCII(s string) bool {
	for _, c := range []byte(s) {
		if c < 0x20 || c > 0x7e {
			return false
		}
	}
	return true
}
