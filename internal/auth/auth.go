// Package auth decides who is calling and what they may do. Handlers declare
// the scope a route needs; an Authenticator turns a request's bearer
// credential into a Principal. Gantry dev starts with one static admin token;
// admin JWTs and API keys plug in as further Authenticators without changing
// any route.
package auth

import (
	"crypto/sha256"
	"crypto/subtle"
	"errors"
	"net/http"
	"strings"
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
)

// AdminScopes are the scopes an admin token carries.
var AdminScopes = []string{
	ScopeRegisterFunction, ScopeListFunctions, ScopeListFunctionsDetails, ScopeDeployFunction,
	ScopeUpdateFunction, ScopeUpdateSecrets, ScopeDeleteFunction, "manage_telemetries",
	"manage_registry_credentials", ScopeClusterManagement, ScopeInvokeFunction, ScopeQueueDetails,
}

// Errors an Authenticator returns. Both become 401.
var (
	ErrNoCredential  = errors.New("auth: no credential")
	ErrBadCredential = errors.New("auth: credential not recognised")
)

// Principal is an authenticated caller.
type Principal struct {
	Account string
	Subject string
	scopes  map[string]bool
}

// NewPrincipal builds a principal holding scopes.
func NewPrincipal(account, subject string, scopes []string) Principal {
	m := make(map[string]bool, len(scopes))
	for _, s := range scopes {
		m[strings.TrimPrefix(s, "apikey:")] = true
	}
	return Principal{Account: account, Subject: subject, scopes: m}
}

// Has reports whether the principal holds scope.
func (p Principal) Has(scope string) bool { return p.scopes[scope] }

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

// StaticToken accepts one admin token for one account. It keeps only the
// token's SHA-256, never the token itself.
type StaticToken struct {
	sum     [32]byte
	account string
}

// NewStaticToken builds a StaticToken for token.
func NewStaticToken(token, account string) *StaticToken {
	return &StaticToken{sum: sha256.Sum256([]byte(token)), account: account}
}

var _ Authenticator = (*StaticToken)(nil)

// Authenticate implements Authenticator.
func (s *StaticToken) Authenticate(r *http.Request) (Principal, error) {
	tok, ok := BearerToken(r)
	if !ok {
		return Principal{}, ErrNoCredential
	}
	sum := sha256.Sum256([]byte(tok))
	if subtle.ConstantTimeCompare(sum[:], s.sum[:]) != 1 {
		return Principal{}, ErrBadCredential
	}
	return NewPrincipal(s.account, "admin", AdminScopes), nil
}
