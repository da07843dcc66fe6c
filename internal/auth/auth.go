// Package auth decides who is calling and what they may do. Handlers declare
// the scope a route needs; an Authenticator turns a request's bearer
// credential into a Principal. Two kinds of credential exist: admin tokens
// (ES256 JWTs the Issuer mints, verified against keys kept in etcd) and API
// keys ("nvapi-" values the APIKeys service creates, stored only as hashes).
// Chain tells them apart by form; InstallGate decides who may mint admin
// tokens in the first place.
package auth

import (
	"errors"
	"net/http"
	"slices"
	"strings"
	"time"
)

// Scopes NVCF defines. A credential may also carry them as "apikey:<scope>".
const (
	ScopeRegisterFunction     = "register_function"
	ScopeListFunctions        = "list_functions"
	ScopeListFunctionsDetails = "list_functions_details"
	ScopeDeployFunction       = "deploy_function"
	ScopeUpdateFunction       = "update_function"
	ScopeUpdateSecrets        = "update_secrets"
	ScopeDeleteFunction       = "delete_function"
	ScopeInvokeFunction       = "invoke_function"
	ScopeQueueDetails         = "queue_details"
	ScopeClusterManagement    = "cluster-management"
	ScopeAuthorizeClients     = "authorize_clients"
	ScopeListClusterGroups    = "list_cluster_groups"
	// manage_telemetries guards /v2/nvcf/telemetries.
	ScopeManageTelemetries         = "manage_telemetries"
	ScopeManageRegistryCredentials = "manage_registry_credentials"
)

// TaskScopes are NVIDIA Cloud Tasks' (NVCT) scopes, besides update_secrets.
// Gantry serves no task route, but nvcf-cli's `api-key generate` asks for a
// task key next to the function key by default and fails when refused, so
// a key may carry them; they open nothing (see ParseScope).
var TaskScopes = []string{"launch_task", "list_tasks", "task_details", "cancel_task", "delete_task", "list_events", "list_results"}

// AdminScopes are the scopes an admin token carries: every scope Gantry knows.
var AdminScopes = []string{
	ScopeRegisterFunction, ScopeListFunctions, ScopeListFunctionsDetails, ScopeDeployFunction,
	ScopeUpdateFunction, ScopeUpdateSecrets, ScopeDeleteFunction, ScopeManageTelemetries,
	ScopeManageRegistryCredentials, ScopeClusterManagement, ScopeInvokeFunction, ScopeQueueDetails,
	ScopeAuthorizeClients, ScopeListClusterGroups,
}

// DefaultAPIKeyScopes are what an API key may do when its request names no
// scope: call functions and read about them, nothing that changes them.
var DefaultAPIKeyScopes = []string{ScopeInvokeFunction, ScopeListFunctions, ScopeQueueDetails, ScopeListFunctionsDetails}

// ScopePrefix is the optional prefix NVCF API keys write their scopes with.
const ScopePrefix = "apikey:"

// ParseScope returns the plain name of s, which may carry ScopePrefix, and
// whether it is a scope Gantry knows: one of AdminScopes or TaskScopes.
func ParseScope(s string) (string, bool) {
	name := strings.TrimPrefix(s, ScopePrefix)
	return name, slices.Contains(AdminScopes, name) || slices.Contains(TaskScopes, name)
}

// Errors an Authenticator returns. Both become 401.
var (
	ErrNoCredential  = errors.New("auth: no credential")
	ErrBadCredential = errors.New("auth: credential not recognised")
)

// Kind says which sort of credential a principal presented. Some routes care:
// only an admin token may create API keys, so a leaked key cannot mint more.
type Kind string

// Credential kinds.
const (
	KindAdminToken Kind = "admin-token"
	KindAPIKey     Kind = "api-key"
)

// Principal is an authenticated caller. It is a value: the maps inside are
// never written after construction, so copies may share them.
type Principal struct {
	Account string
	Subject string
	Kind    Kind
	// CredentialID names the credential (an admin token's jti, an API key's
	// id) for logs; it is never the secret.
	CredentialID string
	// ExpiresAt is when the credential stops working; zero if never.
	ExpiresAt time.Time

	scopes map[string]bool
	// functions, when non-nil, are the only function ids the credential may
	// touch; nil means every function of the account.
	functions map[string]bool
	// noShared is set for a credential that does not reach the functions
	// other accounts share with its account, except those listed in
	// functions.
	noShared bool
}

// NewPrincipal builds a principal holding scopes, which may be written in
// their "apikey:" form.
func NewPrincipal(account, subject string, scopes []string) Principal {
	m := make(map[string]bool, len(scopes))
	for _, s := range scopes {
		m[strings.TrimPrefix(s, ScopePrefix)] = true
	}
	return Principal{Account: account, Subject: subject, scopes: m}
}

// Has reports whether the principal holds scope.
func (p Principal) Has(scope string) bool { return p.scopes[scope] }

// Scopes returns the principal's scopes, sorted.
func (p Principal) Scopes() []string {
	out := make([]string, 0, len(p.scopes))
	for s := range p.scopes {
		out = append(out, s)
	}
	slices.Sort(out)
	return out
}

// LimitFunctions returns a copy of p that may use only the functions listed.
// An API key whose resources name functions gets this; nil ids leave p
// unrestricted.
func (p Principal) LimitFunctions(ids []string) Principal {
	if ids == nil {
		p.functions = nil
		return p
	}
	p.functions = make(map[string]bool, len(ids))
	for _, id := range ids {
		p.functions[id] = true
	}
	return p
}

// LimitShared returns a copy of p that reaches the functions other accounts
// share with its account only when shared is true (or they are listed by
// LimitFunctions). An API key without an authorized-functions resource gets
// shared false.
func (p Principal) LimitShared(shared bool) Principal {
	p.noShared = !shared
	return p
}

// CanUse reports whether the credential reaches function fnID owned by
// account owner; shared says whether the owner shares it (the version at
// hand) with p's account. Another account's function that is not shared is
// never reached.
func (p Principal) CanUse(fnID, owner string, shared bool) bool {
	switch {
	case owner == p.Account:
		return p.CanUseFunction(fnID)
	case !shared:
		return false
	case p.functions[fnID]:
		return true
	}
	return !p.noShared
}

// CanUseFunction reports whether the credential reaches function fnID of its
// account. Callers answer 404 when it does not, as for another account's
// function, so a restricted key learns nothing about the others.
func (p Principal) CanUseFunction(fnID string) bool {
	return p.functions == nil || p.functions[fnID]
}

// Functions returns the function ids p is limited to, sorted, or nil when it
// may use every function of its account.
func (p Principal) Functions() []string {
	if p.functions == nil {
		return nil
	}
	out := make([]string, 0, len(p.functions))
	for id := range p.functions {
		out = append(out, id)
	}
	slices.Sort(out)
	return out
}

// Authenticator recognises credentials.
type Authenticator interface {
	Authenticate(r *http.Request) (Principal, error)
}

// BearerToken extracts the credential of an "Authorization: Bearer" header.
func BearerToken(r *http.Request) (string, bool) {
	h := r.Header.Get("Authorization")
	const p = "bearer "
	if len(h) <= len(p) || !strings.EqualFold(h[:len(p)], p) {
		return "", false
	}
	return strings.TrimSpace(h[len(p):]), true
}
