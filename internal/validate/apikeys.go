package validate

import (
	"slices"
	"strconv"
	"strings"
	"time"
	"unicode"
	"unicode/utf8"

	"github.com/gantry-dev/gantry/internal/auth"
	"github.com/gantry-dev/gantry/internal/model"
)

// API key request limits. They are generous for any real key and keep a
// stored key, which every replica reads, small.
const (
	MaxKeyDescriptionLen = 256
	MaxKeyPolicies       = 16
	MaxKeyScopes         = 32
	MaxKeyResources      = 256
	MaxKeyAudiences      = 16
	MaxKeyTextLen        = 256
)

// timeExample ends every message about a time field.
const timeExample = "give an RFC 3339 time such as 2030-01-02T15:04:05Z"

// APIKeyGrant is what a valid POST /v1/keys body grants.
type APIKeyGrant struct {
	// ExpiresAt is zero for a key that does not expire.
	ExpiresAt time.Time
	// Scopes are plain scope names without repeats; nil means the default
	// API key scopes.
	Scopes []string
	// Functions are the only function ids the key reaches; nil means every
	// function of the account, unless NoOwn.
	Functions []string
	// NoOwn means the key reaches none of its account's own functions: its
	// resources name only authorized-functions.
	NoOwn bool
	// Shared means the key reaches every function other accounts share
	// with its account (an authorized-functions resource, or no resources).
	Shared bool
}

// APIKey checks the body of POST /v1/keys for a key of account, at time
// now, and returns what it grants. It normalises scopes in req to their
// plain names. Scopes are the union over policies. Gantry applies one
// resource list to all of a key's scopes, so policies that name different
// resources are refused rather than granting more than was asked; no
// resources, or an "account-functions" resource, means every function of
// the account.
func APIKey(req *model.APIKeyRequest, account string, now time.Time) (APIKeyGrant, error) {
	var g APIKeyGrant
	if req == nil {
		// NVCF's defaults: default scopes, every function the account
		// reaches, no expiry.
		return APIKeyGrant{Shared: true}, nil
	}
	g.Shared = true
	var p problems
	checkText(&p, "description", req.Description, MaxKeyDescriptionLen, true)
	if req.ExpiresAt != "" {
		t, ok := parseFutureTime(&p, "expires_at", req.ExpiresAt, now)
		if ok {
			g.ExpiresAt = t
		}
	}
	checkTextList(&p, "audience_service_ids", req.AudienceServiceIDs)
	if req.Authorizations != nil {
		pols := req.Authorizations.Policies
		if len(pols) > MaxKeyPolicies {
			p.addf("authorizations.policies has %d entries: at most %d are allowed", len(pols), MaxKeyPolicies)
			pols = pols[:MaxKeyPolicies]
		}
		var first []string // the resource list of policy 0, in canonical form
		for i := range pols {
			scopes, functions, all, reach := checkPolicy(&p, "authorizations.policies["+itoa(i)+"]", &pols[i], account)
			for _, s := range scopes {
				if !slices.Contains(g.Scopes, s) {
					g.Scopes = append(g.Scopes, s)
				}
			}
			canon := []string{"*"}
			if !all {
				canon = slices.Sorted(slices.Values(functions))
				canon = slices.Compact(canon)
			}
			canon = append(canon, "shared:"+strconv.FormatBool(reach.shared), "own:"+strconv.FormatBool(!reach.noOwn))
			if i == 0 {
				first = canon
				g.Shared, g.NoOwn = reach.shared, reach.noOwn
				if !all {
					g.Functions = slices.Compact(slices.Sorted(slices.Values(functions)))
				}
			} else if !slices.Equal(first, canon) {
				p.addf("authorizations.policies[%d].resources differ from authorizations.policies[0].resources: "+
					"Gantry applies one resource list to all of a key's scopes, so give every policy the same resources, or create one key per resource list", i)
			}
		}
	}
	if err := p.err(); err != nil {
		return APIKeyGrant{}, err
	}
	return g, nil
}

// policyReach is what a policy's resources reach beyond function ids.
type policyReach struct {
	shared bool // every function shared with the account
	noOwn  bool // none of the account's own functions, except listed ids
}

// checkPolicy checks one policy, normalising its scopes, and returns its
// scopes and function ids, or all when it reaches every own function, and
// whether it reaches the functions shared with the account.
func checkPolicy(p *problems, field string, pol *model.APIKeyPolicy, account string) (scopes, functions []string, all bool, reach policyReach) {
	checkText(p, field+".aud", pol.Aud, MaxKeyTextLen, false)
	checkTextList(p, field+".auds", pol.Auds)
	checkText(p, field+".product", pol.Product, MaxKeyTextLen, false)
	switch n := len(pol.Scopes); {
	case n == 0:
		p.addf("%s.scopes is empty: list the scopes the key needs, such as %s", field, strings.Join(auth.DefaultAPIKeyScopes, ", "))
	case n > MaxKeyScopes:
		p.addf("%s.scopes has %d entries: at most %d are allowed", field, n, MaxKeyScopes)
	}
	for i, s := range pol.Scopes {
		name, ok := auth.ParseScope(s)
		if !ok {
			p.addf("%s.scopes[%d] %s is not a scope Gantry knows: use one of %s (optionally written %s<scope>)",
				field, i, quote(s), strings.Join(auth.AdminScopes, ", "), auth.ScopePrefix)
			continue
		}
		pol.Scopes[i] = name
		scopes = append(scopes, name)
	}
	if len(pol.Resources) > MaxKeyResources {
		p.addf("%s.resources has %d entries: at most %d are allowed", field, len(pol.Resources), MaxKeyResources)
		return scopes, nil, false, reach
	}
	all = len(pol.Resources) == 0
	reach.shared = all
	ownAll := all
	for i, r := range pol.Resources {
		rf := field + ".resources[" + itoa(i) + "]"
		switch r.Type {
		case model.ResourceAccountFunctions:
			if r.ID != "*" && r.ID != account {
				p.addf(`%s.id %s is invalid for type %s: use "*" (every function of your account)`, rf, quote(r.ID), r.Type)
			}
			ownAll = true
		case model.ResourceAuthorizedFunctions:
			if r.ID != "*" {
				p.addf(`%s.id %s is invalid for type %s: use "*" (every function other accounts share with yours)`, rf, quote(r.ID), r.Type)
			}
			reach.shared = true
		case model.ResourceFunction:
			if ID("function id", r.ID) != nil {
				p.addf("%s.id %s is not a function id: use 1-%d letters, digits and '-', such as a UUID", rf, quote(r.ID), MaxIDLen)
				continue
			}
			functions = append(functions, r.ID)
		case model.ResourceAccountTasks:
			// nvcf-cli asks for a task key by default; it reaches no function.
			if r.ID != "*" {
				p.addf(`%s.id %s is invalid for type %s: use "*"`, rf, quote(r.ID), r.Type)
			}
		case "":
			p.addf("%s.type is required: use %s, %s or %s", rf, model.ResourceAccountFunctions, model.ResourceAuthorizedFunctions, model.ResourceFunction)
		default:
			p.addf("%s.type %s is not a resource type Gantry knows: use %s (id \"*\"), %s (id \"*\") or %s (id = a function id)",
				rf, quote(r.Type), model.ResourceAccountFunctions, model.ResourceAuthorizedFunctions, model.ResourceFunction)
		}
	}
	all = ownAll
	if all {
		functions = nil
	} else if len(functions) == 0 {
		reach.noOwn = true
	}
	return scopes, functions, all, reach
}

// AdminKey checks the optional body of POST /v1/admin/keys at time now and
// returns the token lifetime it asks for (0: the issuer's default). Whether
// that is within the issuer's maximum is for the caller to check.
func AdminKey(req *model.AdminKeyRequest, now time.Time) (time.Duration, error) {
	if req == nil {
		return 0, nil
	}
	var p problems
	if req.NCAID != "" && ID("ncaId", req.NCAID) != nil {
		p.addf("ncaId %s is not a valid account id: use 1-%d letters, digits and '-'", quote(req.NCAID), MaxIDLen)
	}
	var ttl time.Duration
	switch {
	case req.TTL != "" && req.ExpiresAt != "":
		p.addf("give ttl or expires_at, not both")
	case req.TTL != "":
		d, why := parseTTL(req.TTL)
		if why != "" {
			p.addf("ttl %s is invalid: %s; use an ISO-8601 duration such as PT12H or P7D, or a Go duration such as 12h", quote(req.TTL), why)
		}
		ttl = d
	case req.ExpiresAt != "":
		if t, ok := parseFutureTime(&p, "expires_at", req.ExpiresAt, now); ok {
			ttl = t.Sub(now)
		}
	}
	if err := p.err(); err != nil {
		return 0, err
	}
	return ttl, nil
}

// parseTTL reads a positive duration in ISO-8601 or Go form.
func parseTTL(s string) (time.Duration, string) {
	var d time.Duration
	if s[0] == 'P' || s[0] == 'p' {
		var why string
		if d, why = parseISODuration(s); why != "" {
			return 0, why
		}
	} else {
		var err error
		if d, err = time.ParseDuration(s); err != nil {
			return 0, "it is not a duration"
		}
	}
	if d <= 0 {
		return 0, "it must be positive"
	}
	return d, ""
}

// KeyHeaders checks the Key-Issuer-Service, Key-Issuer-Id and Key-Owner-Id
// headers of POST /v1/keys. Each is optional.
func KeyHeaders(service, issuerID, ownerID string) error {
	var p problems
	checkText(&p, "header Key-Issuer-Service", service, MaxKeyTextLen, false)
	checkText(&p, "header Key-Issuer-Id", issuerID, MaxKeyTextLen, false)
	checkText(&p, "header Key-Owner-Id", ownerID, MaxKeyTextLen, false)
	return p.err()
}

// parseFutureTime parses an RFC 3339 time that must be after now.
func parseFutureTime(p *problems, field, s string, now time.Time) (time.Time, bool) {
	t, err := time.Parse(time.RFC3339, s)
	if err != nil {
		p.addf("%s %s is not a time: %s", field, quote(s), timeExample)
		return time.Time{}, false
	}
	if !t.After(now) {
		p.addf("%s %s is in the past: %s in the future", field, quote(s), timeExample)
		return time.Time{}, false
	}
	return t.UTC(), true
}

// checkText allows up to max characters of valid UTF-8 without control
// characters; spaces only where spaces is true.
func checkText(p *problems, field, s string, max int, spaces bool) {
	if n := utf8.RuneCountInString(s); n > max {
		p.addf("%s is %d characters long: at most %d are allowed", field, n, max)
		return
	}
	for _, r := range s {
		if r == utf8.RuneError || unicode.IsControl(r) || (!spaces && unicode.IsSpace(r)) {
			what := "control characters or invalid UTF-8"
			if !spaces {
				what = "spaces, " + what
			}
			p.addf("%s %s must not contain %s", field, quote(s), what)
			return
		}
	}
}

// checkTextList checks a list of short, non-empty strings.
func checkTextList(p *problems, field string, list []string) {
	if len(list) > MaxKeyAudiences {
		p.addf("%s has %d entries: at most %d are allowed", field, len(list), MaxKeyAudiences)
		return
	}
	for i, s := range list {
		if s == "" {
			p.addf("%s[%d] is empty", field, i)
			continue
		}
		checkText(p, field+"["+itoa(i)+"]", s, MaxKeyTextLen, false)
	}
}
