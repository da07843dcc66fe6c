package model

import "time"

// Resource types an API key policy may name. A key for "account-functions"
// (id "*") reaches every function of its account; one for
// "authorized-functions" (id "*") every function other accounts share with
// its account; one for "function" the function whose id is given, own or
// shared. "account-tasks" (id "*") is NVIDIA Cloud Tasks': Gantry runs no
// tasks, so it reaches nothing, and a key for it alone reaches no function.
const (
	ResourceAccountFunctions    = "account-functions"
	ResourceAuthorizedFunctions = "authorized-functions"
	ResourceFunction            = "function"
	ResourceAccountTasks        = "account-tasks"
)

// API key statuses as the API reports them.
const (
	APIKeyStatusActive  = "ACTIVE"
	APIKeyStatusRevoked = "REVOKED"
	APIKeyStatusExpired = "EXPIRED"
)

// APIKeyRequest is the body of POST /v1/keys. ExpiresAt is an RFC 3339 time;
// it is a string so that a malformed one gets a message naming the field.
type APIKeyRequest struct {
	Description        string                `json:"description,omitempty"`
	ExpiresAt          string                `json:"expires_at,omitempty"`
	Authorizations     *APIKeyAuthorizations `json:"authorizations,omitempty"`
	AudienceServiceIDs []string              `json:"audience_service_ids,omitempty"`
}

// APIKeyAuthorizations says what a key may do.
type APIKeyAuthorizations struct {
	Policies []APIKeyPolicy `json:"policies"`
}

// APIKeyPolicy grants scopes on resources. Gantry keeps aud, auds and
// product as given; scopes and resources decide what the key may do.
type APIKeyPolicy struct {
	Aud       string           `json:"aud,omitempty"`
	Auds      []string         `json:"auds,omitempty"`
	Product   string           `json:"product,omitempty"`
	Resources []APIKeyResource `json:"resources,omitempty"`
	Scopes    []string         `json:"scopes,omitempty"`
}

// APIKeyResource names what a policy applies to.
type APIKeyResource struct {
	ID   string `json:"id"`
	Type string `json:"type"`
}

// APIKey is a key, or an admin token, as the API shows it. Value is set
// only in the answer that creates it; nothing can show it again.
type APIKey struct {
	ID          string `json:"id"`
	Description string `json:"description"`
	// CreatedAt and ExpiresAt are RFC 3339; ExpiresAt is null for a key
	// that does not expire.
	CreatedAt time.Time  `json:"created_at"`
	ExpiresAt *time.Time `json:"expires_at"`
	Status    string     `json:"status"`
	Value     string     `json:"value,omitempty"`
	// Gantry adds the account and, when listing, what the key may do.
	NCAID              string                `json:"ncaId,omitempty"`
	Authorizations     *APIKeyAuthorizations `json:"authorizations,omitempty"`
	AudienceServiceIDs []string              `json:"audience_service_ids,omitempty"`
}

// APIKeyListResponse is the answer of GET /v1/keys.
type APIKeyListResponse struct {
	Keys []APIKey `json:"keys"`
}

// AdminKeyRequest is the optional body of POST /v1/admin/keys, a Gantry
// extension: NVCF's clients send none. NCAID picks the account (default: the
// installation's); TTL (ISO 8601 such as PT12H, or Go form such as 12h) or
// ExpiresAt (RFC 3339) bounds the token's life.
type AdminKeyRequest struct {
	NCAID     string `json:"ncaId,omitempty"`
	TTL       string `json:"ttl,omitempty"`
	ExpiresAt string `json:"expires_at,omitempty"`
}

// IntrospectRequest is the body of POST /v1/introspect.
type IntrospectRequest struct {
	AudienceServiceID string `json:"audience_service_id,omitempty"`
	Key               string `json:"key"`
}

// IntrospectResponse answers an active key: its id, account, scopes and
// expiry. The key's value is never part of it.
type IntrospectResponse struct {
	Active    bool       `json:"active"`
	ID        string     `json:"id"`
	NCAID     string     `json:"ncaId"`
	Scopes    []string   `json:"scopes"`
	ExpiresAt *time.Time `json:"expires_at,omitempty"`
}
