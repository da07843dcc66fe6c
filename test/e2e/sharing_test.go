package e2e

import (
	"fmt"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/gantry-dev/gantry/internal/client"
	"github.com/gantry-dev/gantry/internal/model"
	"github.com/gantry-dev/gantry/internal/testutil"
)

// TestFunctionSharing: a function shared with another account can be
// listed (visibility=authorized) and invoked by it, never changed; a third
// account still sees nothing; API keys reach shared functions only with an
// authorized-functions resource; removing the account denies it again
// within one catalog update.
func TestFunctionSharing(t *testing.T) {
	t.Parallel()
	p := startPlatform(t, t.TempDir())
	ctx := testutil.Context(t)
	fn, err := p.c.CreateFunction(ctx, selfFunction(t, "shared", "echo"))
	if err != nil {
		t.Fatal(err)
	}
	p.deploy(t, fn, model.GPUSpec{GPU: "H100", MinInstances: 1, MaxInstances: 1}, model.StatusActive)
	token := func(account string) string {
		tok, err := p.c.MintAdminToken(ctx, model.AdminKeyRequest{NCAID: account})
		if err != nil {
			t.Fatal(err)
		}
		return tok.Value
	}
	guest, stranger := token("guest-account"), token("stranger-account")
	guestKey := func(res ...model.APIKeyResource) model.APIKey {
		k, err := client.New(p.URL(), guest).CreateAPIKey(ctx, model.APIKeyRequest{Authorizations: &model.APIKeyAuthorizations{
			Policies: []model.APIKeyPolicy{{Scopes: []string{"invoke_function", "list_functions"}, Resources: res}}}}, client.KeyIssuer{})
		if err != nil {
			t.Fatal(err)
		}
		return k
	}
	own := model.APIKeyResource{ID: "*", Type: model.ResourceAccountFunctions}
	shared := model.APIKeyResource{ID: "*", Type: model.ResourceAuthorizedFunctions}
	both := guestKey(own, shared)
	bothKey, ownKey := both.Value, guestKey(own).Value

	// The key is known to its account only: GET /v1/keys/{id} and
	// POST /v1/introspect, as nvcf-cli's api-key generate --validate sends it.
	expect := func(bearer, method, path, body string, want int, has string) {
		t.Helper()
		status, answer := call(t, p.URL(), method, path, bearer, body)
		if status != want || !strings.Contains(answer, has) {
			t.Fatalf("%s %s: %d %s, want %d containing %q", method, path, status, answer, want, has)
		}
	}
	expect(guest, "GET", "/v1/keys/"+both.ID, "", http.StatusOK, `"type":"authorized-functions"`)
	expect(stranger, "GET", "/v1/keys/"+both.ID, "", http.StatusNotFound, "not found")
	introspect := `{"audience_service_id":"svc","key":"` + bothKey + `"}`
	expect(guest, "POST", "/v1/introspect", introspect, http.StatusOK, `"active":true`)
	expect(stranger, "POST", "/v1/introspect", introspect, http.StatusNotFound, "not an active API key")

	fv := fn.ID + "/versions/" + fn.VersionID
	invoke := "/v2/nvcf/pexec/functions/" + fn.ID
	share := "/v2/nvcf/authorizations/functions/" + fn.ID
	// Before sharing, the guest is a stranger too.
	expect(guest, "POST", invoke, `{}`, http.StatusNotFound, "not found")
	expect(guest, "GET", "/v2/nvcf/functions?visibility=authorized", "", http.StatusOK, `"functions":[]`)

	// Sharing with an account that does not exist is refused, saying so.
	expect(p.AdminToken(), "POST", share, `{"authorizedParties":[{"ncaId":"nobody"}]}`, http.StatusBadRequest, "not known")
	expect(p.AdminToken(), "POST", share, `{"authorizedParties":[{"ncaId":"guest-account"}]}`, http.StatusOK, `"authorizedParties":[{"ncaId":"guest-account"}]`)
	expect(p.AdminToken(), "PATCH", share+"/add", `{"authorizedParty":{"ncaId":"guest-account"}}`, http.StatusConflict, "already")
	expect(p.AdminToken(), "GET", share+"/versions/"+fn.VersionID, "", http.StatusOK, "guest-account") // inherited

	reach := func(bearer string, want int) {
		t.Helper()
		testutil.WaitFor(t, 10*time.Second, func() error {
			status, answer := call(t, p.URL(), "POST", invoke, bearer, `{}`)
			if status != want {
				return fmt.Errorf("invoke: %d %s, want %d", status, answer, want)
			}
			return nil
		})
	}
	reach(guest, http.StatusOK)
	reach(bothKey, http.StatusOK)
	reach(ownKey, http.StatusNotFound)
	reach(stranger, http.StatusNotFound)
	expect(guest, "GET", "/v2/nvcf/functions?visibility=authorized", "", http.StatusOK, `"ownedByDifferentAccount":true`)
	expect(guest, "GET", "/v2/nvcf/functions", "", http.StatusOK, `"functions":[]`) // private by default
	expect(guest, "GET", "/v2/nvcf/functions/"+fv, "", http.StatusOK, fn.VersionID)
	expect(stranger, "GET", "/v2/nvcf/functions/"+fv, "", http.StatusNotFound, "not found")

	// Shared is read-only: every change is forbidden, saying why.
	for _, c := range []struct{ method, path, body string }{
		{"PUT", "/v2/nvcf/metadata/functions/" + fv, `{"tags":["x"]}`},
		{"DELETE", "/v2/nvcf/functions/" + fv, ""},
		{"POST", "/v2/nvcf/functions/" + fn.ID + "/versions", `{"name":"x","inferenceUrl":"/x","containerImage":"process://x"}`},
		{"DELETE", "/v2/nvcf/deployments/functions/" + fv, ""},
		{"PUT", "/v2/nvcf/secrets/functions/" + fv, `{"secrets":[{"name":"K","value":"v"}]}`},
		{"POST", share, `{"authorizedParties":[]}`},
	} {
		expect(guest, c.method, c.path, c.body, http.StatusForbidden, "list and invoke only")
	}

	// Removed: denied again once the catalog has the change.
	expect(p.AdminToken(), "PATCH", share+"/remove", `{"authorizedParty":{"ncaId":"guest-account"}}`, http.StatusOK, `"authorizedParties":[]`)
	reach(guest, http.StatusNotFound)
	expect(p.AdminToken(), "PATCH", share+"/remove", `{"authorizedParty":{"ncaId":"guest-account"}}`, http.StatusNotFound, "nothing to remove")

	// One version shared with one account.
	expect(p.AdminToken(), "PATCH", share+"/versions/"+fn.VersionID+"/add", `{"authorizedParty":{"ncaId":"stranger-account"}}`, http.StatusOK, "stranger-account")
	reach(stranger, http.StatusOK)
	reach(guest, http.StatusNotFound)
	expect(p.AdminToken(), "DELETE", share+"/versions/"+fn.VersionID, "", http.StatusOK, `"authorizedParties":[]`)
	reach(stranger, http.StatusNotFound)
}
