package validate

import (
	"bytes"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/gantry-dev/gantry/internal/auth"
	"github.com/gantry-dev/gantry/internal/model"
)

var keyNow = time.Date(2026, 3, 1, 12, 0, 0, 0, time.UTC)

func policy(scopes []string, res ...model.APIKeyResource) model.APIKeyPolicy {
	return model.APIKeyPolicy{Aud: "https://api.example.com", Product: "nv-cloud-functions", Scopes: scopes, Resources: res}
}

func fnRes(id string) model.APIKeyResource {
	return model.APIKeyResource{ID: id, Type: model.ResourceFunction}
}

var (
	allFns    = model.APIKeyResource{ID: "*", Type: model.ResourceAccountFunctions}
	sharedFns = model.APIKeyResource{ID: "*", Type: model.ResourceAuthorizedFunctions}
)

func TestAPIKey(t *testing.T) {
	t.Parallel()
	invoke := []string{"invoke_function"}
	tests := []struct {
		name string
		req  *model.APIKeyRequest
		want APIKeyGrant
	}{
		{"no body", nil, APIKeyGrant{Shared: true}},
		{"empty body", &model.APIKeyRequest{}, APIKeyGrant{Shared: true}},
		{"expiry and description", &model.APIKeyRequest{Description: "ci key", ExpiresAt: "2026-03-02T00:00:00+01:00"},
			APIKeyGrant{ExpiresAt: time.Date(2026, 3, 1, 23, 0, 0, 0, time.UTC), Shared: true}},
		{"scopes in both forms", &model.APIKeyRequest{Authorizations: &model.APIKeyAuthorizations{Policies: []model.APIKeyPolicy{
			policy([]string{"apikey:invoke_function", "list_functions", "invoke_function"})}}},
			APIKeyGrant{Scopes: []string{"invoke_function", "list_functions"}, Shared: true}},
		{"account and authorized functions, as nvcf-cli sends", &model.APIKeyRequest{Authorizations: &model.APIKeyAuthorizations{Policies: []model.APIKeyPolicy{
			policy(invoke, allFns, sharedFns)}}}, APIKeyGrant{Scopes: invoke, Shared: true}},
		{"authorized functions only", &model.APIKeyRequest{Authorizations: &model.APIKeyAuthorizations{Policies: []model.APIKeyPolicy{
			policy(invoke, sharedFns)}}}, APIKeyGrant{Scopes: invoke, Shared: true, NoOwn: true}},
		{"a function and authorized functions", &model.APIKeyRequest{Authorizations: &model.APIKeyAuthorizations{Policies: []model.APIKeyPolicy{
			policy(invoke, fnRes("fn-a"), sharedFns)}}}, APIKeyGrant{Scopes: invoke, Functions: []string{"fn-a"}, Shared: true}},
		{"a task key, as nvcf-cli asks for next to the function key: it reaches no function", &model.APIKeyRequest{
			Authorizations: &model.APIKeyAuthorizations{Policies: []model.APIKeyPolicy{policy([]string{"launch_task", "list_tasks", "update_secrets"},
				model.APIKeyResource{ID: "*", Type: model.ResourceAccountTasks})}}},
			APIKeyGrant{Scopes: []string{"launch_task", "list_tasks", "update_secrets"}, NoOwn: true}},
		{"account-functions", &model.APIKeyRequest{Authorizations: &model.APIKeyAuthorizations{Policies: []model.APIKeyPolicy{
			policy(invoke, allFns)}}}, APIKeyGrant{Scopes: invoke}},
		{"account-functions by account id", &model.APIKeyRequest{Authorizations: &model.APIKeyAuthorizations{Policies: []model.APIKeyPolicy{
			policy(invoke, model.APIKeyResource{ID: "acct", Type: model.ResourceAccountFunctions})}}}, APIKeyGrant{Scopes: invoke}},
		{"functions", &model.APIKeyRequest{Authorizations: &model.APIKeyAuthorizations{Policies: []model.APIKeyPolicy{
			policy(invoke, fnRes("fn-b"), fnRes("fn-a"), fnRes("fn-b"))}}},
			APIKeyGrant{Scopes: invoke, Functions: []string{"fn-a", "fn-b"}}},
		{"account-functions wins over functions", &model.APIKeyRequest{Authorizations: &model.APIKeyAuthorizations{Policies: []model.APIKeyPolicy{
			policy(invoke, fnRes("fn-a"), allFns)}}}, APIKeyGrant{Scopes: invoke}},
		{"two policies, same resources", &model.APIKeyRequest{Authorizations: &model.APIKeyAuthorizations{Policies: []model.APIKeyPolicy{
			policy(invoke, fnRes("fn-a")), policy([]string{"queue_details"}, fnRes("fn-a"))}}},
			APIKeyGrant{Scopes: []string{"invoke_function", "queue_details"}, Functions: []string{"fn-a"}}},
		{"audience service ids", &model.APIKeyRequest{AudienceServiceIDs: []string{"nvidia-cloud-functions-ncp-service-id-aketm"}}, APIKeyGrant{Shared: true}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			got, err := APIKey(tc.req, "acct", keyNow)
			if err != nil {
				t.Fatal(err)
			}
			if !got.ExpiresAt.Equal(tc.want.ExpiresAt) || !slices.Equal(got.Scopes, tc.want.Scopes) || !slices.Equal(got.Functions, tc.want.Functions) ||
				got.Shared != tc.want.Shared || got.NoOwn != tc.want.NoOwn {
				t.Fatalf("grant %+v, want %+v", got, tc.want)
			}
			if tc.req != nil && tc.req.Authorizations != nil {
				for _, p := range tc.req.Authorizations.Policies {
					for _, s := range p.Scopes {
						if strings.HasPrefix(s, auth.ScopePrefix) {
							t.Fatalf("scope %q not normalised", s)
						}
					}
				}
			}
		})
	}
}

func TestAPIKeyInvalid(t *testing.T) {
	t.Parallel()
	pol := func(p ...model.APIKeyPolicy) *model.APIKeyAuthorizations {
		return &model.APIKeyAuthorizations{Policies: p}
	}
	invoke := []string{"invoke_function"}
	tests := []struct {
		name string
		req  model.APIKeyRequest
		want string
	}{
		{"expiry in the past", model.APIKeyRequest{ExpiresAt: "2026-03-01T11:59:59Z"}, "expires_at \"2026-03-01T11:59:59Z\" is in the past"},
		{"expiry now", model.APIKeyRequest{ExpiresAt: "2026-03-01T12:00:00Z"}, "in the past"},
		{"expiry not a time", model.APIKeyRequest{ExpiresAt: "tomorrow"}, "expires_at \"tomorrow\" is not a time"},
		{"expiry without zone", model.APIKeyRequest{ExpiresAt: "2030-01-01T00:00:00"}, "RFC 3339"},
		{"description too long", model.APIKeyRequest{Description: strings.Repeat("é", MaxKeyDescriptionLen+1)}, "description is 257 characters long"},
		{"description with a newline", model.APIKeyRequest{Description: "a\nb"}, "description \"a\\nb\" must not contain"},
		{"unknown scope", model.APIKeyRequest{Authorizations: pol(policy([]string{"invoke_function", "launch_rocket"}))},
			`authorizations.policies[0].scopes[1] "launch_rocket" is not a scope Gantry knows`},
		{"account-tasks of one task", model.APIKeyRequest{Authorizations: pol(policy(invoke,
			model.APIKeyResource{ID: "t-1", Type: model.ResourceAccountTasks}))}, `id "t-1" is invalid for type account-tasks: use "*"`},
		{"double prefix", model.APIKeyRequest{Authorizations: pol(policy([]string{"apikey:apikey:invoke_function"}))}, "is not a scope Gantry knows"},
		{"no scopes", model.APIKeyRequest{Authorizations: pol(policy(nil))}, "authorizations.policies[0].scopes is empty"},
		{"unknown resource type", model.APIKeyRequest{Authorizations: pol(policy(invoke, model.APIKeyResource{ID: "x", Type: "task"}))},
			`authorizations.policies[0].resources[0].type "task" is not a resource type Gantry knows`},
		{"missing resource type", model.APIKeyRequest{Authorizations: pol(policy(invoke, model.APIKeyResource{ID: "x"}))}, "resources[0].type is required"},
		{"bad function id", model.APIKeyRequest{Authorizations: pol(policy(invoke, fnRes("../etc")))}, `resources[0].id "../etc" is not a function id`},
		{"account-functions of another account", model.APIKeyRequest{Authorizations: pol(policy(invoke,
			model.APIKeyResource{ID: "other", Type: model.ResourceAccountFunctions}))}, `id "other" is invalid for type account-functions`},
		{"authorized-functions of one account", model.APIKeyRequest{Authorizations: pol(policy(invoke,
			model.APIKeyResource{ID: "other", Type: model.ResourceAuthorizedFunctions}))}, `id "other" is invalid for type authorized-functions`},
		{"policies that differ in sharing", model.APIKeyRequest{Authorizations: pol(policy(invoke, allFns), policy(invoke, allFns, sharedFns))},
			"authorizations.policies[1].resources differ"},
		{"policies with different resources", model.APIKeyRequest{Authorizations: pol(policy(invoke, fnRes("fn-a")), policy(invoke, allFns))},
			"authorizations.policies[1].resources differ"},
		{"too many policies", model.APIKeyRequest{Authorizations: pol(slices.Repeat([]model.APIKeyPolicy{policy(invoke)}, MaxKeyPolicies+1)...)},
			"authorizations.policies has 17 entries"},
		{"empty audience service id", model.APIKeyRequest{AudienceServiceIDs: []string{""}}, "audience_service_ids[0] is empty"},
		{"aud with a space", model.APIKeyRequest{Authorizations: pol(model.APIKeyPolicy{Aud: "a b", Scopes: invoke})}, "aud \"a b\" must not contain spaces"},
		{"several problems at once", model.APIKeyRequest{ExpiresAt: "x", Authorizations: pol(policy([]string{"nope"}))}, "2030-01-02T15:04:05Z; authorizations.policies[0].scopes[0]"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			_, err := APIKey(&tc.req, "acct", keyNow)
			wantProblem(t, err, 400, tc.want)
		})
	}
}

func TestAdminKey(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name    string
		req     *model.AdminKeyRequest
		want    time.Duration
		wantErr string
	}{
		{"no body", nil, 0, ""},
		{"empty", &model.AdminKeyRequest{}, 0, ""},
		{"account only", &model.AdminKeyRequest{NCAID: "team-a"}, 0, ""},
		{"iso ttl", &model.AdminKeyRequest{TTL: "PT12H"}, 12 * time.Hour, ""},
		{"iso days", &model.AdminKeyRequest{TTL: "P7D"}, 7 * 24 * time.Hour, ""},
		{"go ttl", &model.AdminKeyRequest{TTL: "90m"}, 90 * time.Minute, ""},
		{"expires_at", &model.AdminKeyRequest{ExpiresAt: "2026-03-01T13:00:00Z"}, time.Hour, ""},
		{"both", &model.AdminKeyRequest{TTL: "1h", ExpiresAt: "2026-03-01T13:00:00Z"}, 0, "give ttl or expires_at, not both"},
		{"zero ttl", &model.AdminKeyRequest{TTL: "0s"}, 0, "it must be positive"},
		{"negative ttl", &model.AdminKeyRequest{TTL: "-1h"}, 0, "it must be positive"},
		{"junk ttl", &model.AdminKeyRequest{TTL: "soon"}, 0, `ttl "soon" is invalid`},
		{"past expiry", &model.AdminKeyRequest{ExpiresAt: "2020-01-01T00:00:00Z"}, 0, "is in the past"},
		{"bad account", &model.AdminKeyRequest{NCAID: "a/b"}, 0, `ncaId "a/b" is not a valid account id`},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			got, err := AdminKey(tc.req, keyNow)
			if tc.wantErr != "" {
				wantProblem(t, err, 400, tc.wantErr)
				return
			}
			if err != nil || got != tc.want {
				t.Fatalf("AdminKey = %v, %v; want %v", got, err, tc.want)
			}
		})
	}
}

func TestKeyHeaders(t *testing.T) {
	t.Parallel()
	if err := KeyHeaders("nvcf-api", "nvidia-cloud-functions-ncp-service-id-aketm", ""); err != nil {
		t.Fatal(err)
	}
	wantProblem(t, KeyHeaders("nvcf api", "", ""), 400, "header Key-Issuer-Service")
	wantProblem(t, KeyHeaders("", strings.Repeat("x", MaxKeyTextLen+1), ""), 400, "header Key-Issuer-Id is 257 characters long")
	wantProblem(t, KeyHeaders("", "", "a\x00b"), 400, "header Key-Owner-Id")
}

// Seed corpora live in testdata/fuzz/<FuzzName>/.

func FuzzDecodeAPIKey(f *testing.F) {
	f.Fuzz(func(t *testing.T, data []byte) {
		var req model.APIKeyRequest
		err := Decode(bytes.NewReader(data), fuzzLimit, &req)
		wantClientError(t, err)
		if err != nil {
			return
		}
		g, err := APIKey(&req, "acct", keyNow)
		wantClientError(t, err)
		if err != nil {
			return
		}
		if !g.ExpiresAt.IsZero() && !g.ExpiresAt.After(keyNow) {
			t.Fatalf("accepted an expiry in the past: %v", g.ExpiresAt)
		}
		// Whatever passes must be something the key service accepts.
		scopes, err := auth.NormalizeScopes(g.Scopes)
		if err != nil || len(scopes) == 0 {
			t.Fatalf("grant scopes %q refused by the key service: %v", g.Scopes, err)
		}
		if !slices.Equal(scopes, g.Scopes) && g.Scopes != nil {
			t.Fatalf("grant scopes %q are not normal: %q", g.Scopes, scopes)
		}
		for _, id := range g.Functions {
			if ID("function id", id) != nil {
				t.Fatalf("granted an invalid function id %q", id)
			}
		}
		if g.Functions != nil && len(g.Functions) == 0 {
			t.Fatal("granted an empty, non-nil function list: the key would reach nothing")
		}
		// Validating the normalised request again grants the same.
		again, err := APIKey(&req, "acct", keyNow)
		if err != nil || !slices.Equal(again.Scopes, g.Scopes) || !slices.Equal(again.Functions, g.Functions) {
			t.Fatalf("second pass: %+v, %v; first %+v", again, err, g)
		}
	})
}

func FuzzDecodeAdminKey(f *testing.F) {
	f.Fuzz(func(t *testing.T, data []byte) {
		var req model.AdminKeyRequest
		err := Decode(bytes.NewReader(data), fuzzLimit, &req)
		wantClientError(t, err)
		if err != nil {
			return
		}
		ttl, err := AdminKey(&req, keyNow)
		wantClientError(t, err)
		if err != nil {
			return
		}
		if ttl < 0 || (ttl == 0 && (req.TTL != "" || req.ExpiresAt != "")) {
			t.Fatalf("AdminKey(%+v) = %v", req, ttl)
		}
	})
}
