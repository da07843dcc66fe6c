package e2e

import (
	"encoding/json"
	"net/http"
	"slices"
	"strings"
	"testing"

	"github.com/gantry-dev/gantry/internal/model"
	"github.com/gantry-dev/gantry/internal/testutil"
)

// TestFunctionUpdate drives PUT /v2/nvcf/functions/{id}/versions/{vid}:
// nvcf-cli's `function update --tags a,b` body answers 200 with the updated
// version; description and rateLimit change alone, leaving the rest; what
// Gantry cannot do or the rules refuse is a 400 that changes nothing; a
// shared account gets 403 and any other 404.
func TestFunctionUpdate(t *testing.T) {
	t.Parallel()
	p := startPlatform(t, t.TempDir())
	ctx := testutil.Context(t)
	req := selfFunction(t, "updated", "echo")
	req.Tags, req.Description = []string{"old"}, "first"
	fn, err := p.c.CreateFunction(ctx, req)
	if err != nil {
		t.Fatal(err)
	}
	path := "/v2/nvcf/functions/" + fn.ID + "/versions/" + fn.VersionID
	get := func() model.Function {
		t.Helper()
		f, err := p.c.GetFunction(ctx, fn.ID, fn.VersionID)
		if err != nil {
			t.Fatal(err)
		}
		return f
	}

	// The changes apply in order; each step checks the answer and what a
	// read shows afterwards.
	steps := []struct {
		name, body string
		want       func(f model.Function) bool
	}{
		{"nvcf-cli's tags", `{"tags":["a","b"]}`, func(f model.Function) bool {
			return slices.Equal(f.Tags, []string{"a", "b"}) && f.Description == "first" && f.RateLimit == nil
		}},
		{"description alone keeps the tags", `{"description":"second"}`, func(f model.Function) bool {
			return slices.Equal(f.Tags, []string{"a", "b"}) && f.Description == "second"
		}},
		{"rate limit alone, whole", `{"rateLimit":{"rateLimit":"100-S","exemptedNcaIds":["acct-b"],"rateLimitStatus":"x"}}`, func(f model.Function) bool {
			rl := f.RateLimit
			return rl != nil && rl.RateLimit == "100-S" && slices.Equal(rl.ExemptedNCAIDs, []string{"acct-b"}) &&
				rl.RateLimitStatus == "" && slices.Equal(f.Tags, []string{"a", "b"})
		}},
		{"a new rate limit replaces the old one", `{"rateLimit":{"rateLimit":"5-M"}}`, func(f model.Function) bool {
			return f.RateLimit != nil && f.RateLimit.RateLimit == "5-M" && f.RateLimit.ExemptedNCAIDs == nil
		}},
		{"an empty list clears the tags", `{"tags":[],"llmInvocationConfig":null}`, func(f model.Function) bool {
			return len(f.Tags) == 0 && f.Description == "second" && f.RateLimit != nil
		}},
	}
	for _, s := range steps {
		t.Run(s.name, func(t *testing.T) {
			status, answer := call(t, p.URL(), "PUT", path, p.AdminToken(), s.body)
			if status != http.StatusOK {
				t.Fatalf("PUT %s: %d %s", s.body, status, answer)
			}
			var resp model.FunctionResponse
			if err := json.Unmarshal([]byte(answer), &resp); err != nil || resp.Function.ID != fn.ID ||
				resp.Function.VersionID != fn.VersionID || resp.Function.Status != model.StatusInactive || !s.want(resp.Function) {
				t.Fatalf("answer %s (%v)", answer, err)
			}
			if f := get(); !s.want(f) {
				t.Fatalf("read after the update: %+v", f)
			}
		})
	}

	t.Run("client", func(t *testing.T) {
		f, err := p.c.UpdateVersion(ctx, fn.ID, fn.VersionID, model.UpdateFunctionRequest{Tags: []string{"team:vision"}})
		if err != nil || !slices.Equal(f.Tags, []string{"team:vision"}) || f.Description != "second" {
			t.Fatalf("UpdateVersion = %+v, %v", f, err)
		}
	})

	before := get()
	refused := []struct {
		name, body, detail string
	}{
		{"nothing to change", `{}`, "the update changes nothing: send at least one of tags, description or rateLimit"},
		{"model updates", `{"tags":["x"],"modelUpdates":[{"modelName":"m","llmConfig":{"tokenRateLimit":"10-S"}}]}`,
			"modelUpdates is not supported: Gantry does not configure models or LLM settings yet"},
		{"llm invocation config", `{"llmInvocationConfig":{"priority":{"defaultPriority":1}}}`,
			"llmInvocationConfig is not supported: Gantry does not configure LLM invocation yet"},
		{"bad tag", `{"tags":["fine","not fine"]}`, `tags[1] "not fine" is invalid`},
		{"bad rate limit", `{"rateLimit":{"rateLimit":"100/s"}}`, `rateLimit.rateLimit "100/s" is invalid`},
		{"not JSON", `{"tags":`, "request body is not valid JSON"},
	}
	for _, tc := range refused {
		t.Run("400 "+tc.name, func(t *testing.T) {
			assertProblem(t, put(t, p.URL()+path, p.AdminToken(), tc.body), http.StatusBadRequest, tc.detail)
		})
	}
	if after := get(); !slices.Equal(after.Tags, before.Tags) || after.Description != before.Description ||
		after.RateLimit.RateLimit != before.RateLimit.RateLimit {
		t.Fatalf("a refused update changed the version: %+v, was %+v", after, before)
	}

	// Another account: 404 until the function is shared with it, then 403
	// saying whose it is; neither changes anything.
	guest, err := p.c.MintAdminToken(ctx, model.AdminKeyRequest{NCAID: "guest-account"})
	if err != nil {
		t.Fatal(err)
	}
	share := "/v2/nvcf/authorizations/functions/" + fn.ID
	others := []struct {
		name         string
		before       func(t *testing.T)
		status       int
		detailHas    string
		path, bearer string
	}{
		{name: "unknown version", status: http.StatusNotFound, detailHas: "not found",
			path: "/v2/nvcf/functions/" + fn.ID + "/versions/00000000-0000-0000-0000-000000000000", bearer: p.AdminToken()},
		{name: "another account's version", status: http.StatusNotFound, detailHas: "not found", path: path, bearer: guest.Value},
		{name: "a version shared with the account", status: http.StatusForbidden,
			detailHas: "belongs to account " + fn.NCAID + ", which shares it with yours to list and invoke only",
			path:      path, bearer: guest.Value,
			before: func(t *testing.T) {
				if status, answer := call(t, p.URL(), "POST", share, p.AdminToken(),
					`{"authorizedParties":[{"ncaId":"guest-account"}]}`); status != http.StatusOK {
					t.Fatalf("share: %d %s", status, answer)
				}
			}},
	}
	for _, tc := range others {
		t.Run(tc.name, func(t *testing.T) {
			if tc.before != nil {
				tc.before(t)
			}
			assertProblem(t, put(t, p.URL()+tc.path, tc.bearer, `{"tags":["taken"]}`), tc.status, tc.detailHas)
		})
	}
	if f := get(); slices.Contains(f.Tags, "taken") {
		t.Fatalf("another account changed the tags: %v", f.Tags)
	}
}

// put sends a PUT with a JSON body as bearer.
func put(t *testing.T, url, bearer, body string) *http.Response {
	t.Helper()
	req, err := http.NewRequestWithContext(testutil.Context(t), http.MethodPut, url, strings.NewReader(body))
	if err != nil {
		t.Fatal(err)
	}
	req.Header.Set("Authorization", "Bearer "+bearer)
	req.Header.Set("Content-Type", "application/json")
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	return resp
}
