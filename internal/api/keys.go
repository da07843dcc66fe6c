package api

import (
	"bytes"
	"context"
	"errors"
	"io"
	"log/slog"
	"net/http"
	"time"

	"github.com/gantry-dev/gantry/internal/auth"
	"github.com/gantry-dev/gantry/internal/model"
	"github.com/gantry-dev/gantry/internal/problem"
	"github.com/gantry-dev/gantry/internal/store"
	"github.com/gantry-dev/gantry/internal/validate"
	"github.com/gantry-dev/gantry/internal/web"
)

// AdminIssuer mints admin tokens and publishes the keys that verify them.
type AdminIssuer interface {
	Mint(ctx context.Context, account, subject string, ttl time.Duration) (auth.AdminToken, error)
	Rotate(ctx context.Context) error
	MaxTTL() time.Duration
	JWKS(ctx context.Context) (auth.JWKS, error)
}

// KeyService creates, lists and revokes API keys.
type KeyService interface {
	Create(ctx context.Context, spec store.APIKey) (store.APIKey, string, error)
	List(ctx context.Context, account string) ([]store.APIKey, error)
	Revoke(ctx context.Context, account, id string) (store.APIKey, error)
	Verify(ctx context.Context, value string) (auth.Principal, error)
}

// AccountStore makes sure an account exists.
type AccountStore interface {
	EnsureAccount(ctx context.Context, a store.Account) error
}

// InstallGate guards installation-level endpoints (auth.InstallGate).
type InstallGate interface {
	Gate(h http.Handler) http.Handler
	Mode() auth.InstallMode
}

var (
	_ AdminIssuer  = (*auth.Issuer)(nil)
	_ KeyService   = (*auth.APIKeys)(nil)
	_ AccountStore = (*store.Store)(nil)
	_ InstallGate  = (*auth.InstallGate)(nil)
)

// KeysConfig wires the credential routes.
type KeysConfig struct {
	Issuer   AdminIssuer
	Keys     KeyService
	Accounts AccountStore
	Gate     InstallGate
	// Guard authenticates callers of the API key routes; its Auth should
	// be the auth.Chain, so an admin token can manage keys.
	Guard web.Guard
	// DefaultAccount is the account an admin token is minted for when the
	// request names none.
	DefaultAccount string
	Now            func() time.Time
}

// Keys serves NVCF's API Keys service: admin tokens from the installation
// gate, API keys for admin tokens, and the public JWKS.
type Keys struct {
	cfg KeysConfig
	log *slog.Logger
}

// NewKeys builds the credential routes.
func NewKeys(cfg KeysConfig) *Keys {
	if cfg.Now == nil {
		cfg.Now = time.Now
	}
	log := cfg.Guard.Log
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	return &Keys{cfg: cfg, log: log}
}

// maxKeyBody bounds a key request; the largest valid one is a few KiB.
const maxKeyBody = 64 << 10

// adminSubject is the sub of admin tokens minted through the gate: whoever
// passes the gate is the installation's administrator.
const adminSubject = "admin"

// Register adds the credential routes to mux.
func (k *Keys) Register(mux *http.ServeMux) {
	mux.Handle("POST /v1/admin/keys", k.cfg.Gate.Gate(web.Unguarded(k.log, k.mintAdmin)))
	mux.Handle("POST /v1/keys", k.keyless(k.createKey))
	mux.Handle("GET /v1/keys", k.cfg.Guard.Route("", adminOnly(k.listKeys)))
	mux.Handle("GET /v1/keys/{keyId}", k.cfg.Guard.Route("", adminOnly(k.getKey)))
	mux.Handle("DELETE /v1/keys/{keyId}", k.keyless(k.revokeKey))
	mux.Handle("POST /v1/introspect", k.cfg.Guard.Route("", adminOnly(k.introspect)))
	mux.Handle("POST /v1/gantry/keys/signing/rotate", k.cfg.Gate.Gate(web.Unguarded(k.log, k.rotateSigning)))
	mux.Handle("GET /v1/jwks", web.Unguarded(k.log, k.jwks))
	mux.Handle("GET /.well-known/jwks.json", web.Unguarded(k.log, k.jwks))
}

// keyless serves h for admin tokens, and lets a request without an
// Authorization header through the installation gate as the admin of the
// default account: NVCF's self-hosted docs create the first API key with no
// credential at all (POST /v1/keys), and nvcf-cli revokes keys without one
// (DELETE /v1/keys/{id}). It grants nothing the gate does not already
// grant, since whoever passes the gate may mint an admin token (POST
// /v1/admin/keys). In bootstrap mode, where passing the gate takes the
// bootstrap secret, the request is told to send an admin token instead.
func (k *Keys) keyless(h web.HandlerFunc) http.Handler {
	guarded := k.cfg.Guard.Route("", adminOnly(h))
	anonymous := k.cfg.Gate.Gate(web.Unguarded(k.log, func(w http.ResponseWriter, r *http.Request) error {
		account := k.cfg.DefaultAccount
		if err := k.cfg.Accounts.EnsureAccount(r.Context(), store.Account{ID: account, Name: account, CreatedAt: k.cfg.Now().UTC()}); err != nil {
			return err
		}
		p := auth.NewPrincipal(account, adminSubject, auth.AdminScopes)
		p.Kind = auth.KindAdminToken
		return h(w, r, p)
	}))
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.Header.Get("Authorization") != "" || k.cfg.Gate.Mode() == auth.InstallBootstrap {
			guarded.ServeHTTP(w, r)
			return
		}
		anonymous.ServeHTTP(w, r)
	})
}

// adminOnly refuses API keys: managing keys takes an admin token, so a
// leaked key cannot mint more keys, list them, or revoke the others.
func adminOnly(h web.HandlerFunc) web.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request, p auth.Principal) error {
		if p.Kind != auth.KindAdminToken {
			return problem.Errorf(http.StatusForbidden,
				"managing API keys needs an admin token, and this credential is an API key; get one with `gantry token admin` (POST /v1/admin/keys)")
		}
		return h(w, r, p)
	}
}

// decodeOptional decodes a JSON body into v unless the body is empty, and
// reports whether there was one. NVCF's clients POST to /v1/admin/keys
// without a body.
func decodeOptional(w http.ResponseWriter, r *http.Request, v any) (bool, error) {
	data, err := io.ReadAll(http.MaxBytesReader(w, r.Body, maxKeyBody))
	if err != nil {
		return false, validate.Decode(readerErr{err}, maxKeyBody, v)
	}
	if len(bytes.TrimSpace(data)) == 0 {
		return false, nil
	}
	return true, validate.Decode(bytes.NewReader(data), maxKeyBody, v)
}

// readerErr hands a read error to validate.Decode, which words it (413 for
// a body over the limit).
type readerErr struct{ err error }

func (r readerErr) Read([]byte) (int, error) { return 0, r.err }

func (k *Keys) mintAdmin(w http.ResponseWriter, r *http.Request) error {
	var req model.AdminKeyRequest
	has, err := decodeOptional(w, r, &req)
	if err != nil {
		return err
	}
	var in *model.AdminKeyRequest
	if has {
		in = &req
	}
	now := k.cfg.Now()
	ttl, err := validate.AdminKey(in, now)
	if err != nil {
		return err
	}
	if max := k.cfg.Issuer.MaxTTL(); ttl > max {
		return problem.BadRequest("the token would live %s, longer than this installation allows (%s); ask for a shorter ttl", ttl.Round(time.Second), max)
	}
	account := req.NCAID
	if account == "" {
		account = k.cfg.DefaultAccount
	}
	if err := k.cfg.Accounts.EnsureAccount(r.Context(), store.Account{ID: account, Name: account, CreatedAt: now.UTC()}); err != nil {
		return err
	}
	tok, err := k.cfg.Issuer.Mint(r.Context(), account, adminSubject, ttl)
	if errors.Is(err, auth.ErrTTL) {
		return problem.BadRequest("the token lifetime is out of range: at most %s", k.cfg.Issuer.MaxTTL())
	}
	if err != nil {
		return err
	}
	k.log.Info("api: admin token minted", "account", account, "jti", tok.ID, "expiresAt", tok.ExpiresAt, "remote", r.RemoteAddr)
	exp := tok.ExpiresAt.UTC()
	w.Header().Set("Cache-Control", "no-store")
	return web.JSON(w, http.StatusOK, model.APIKey{ID: tok.ID, Value: tok.Value, Status: model.APIKeyStatusActive,
		Description: "admin token for account " + account, CreatedAt: tok.IssuedAt.UTC(), ExpiresAt: &exp, NCAID: account})
}

func (k *Keys) createKey(w http.ResponseWriter, r *http.Request, p auth.Principal) error {
	h := r.Header
	service, issuer, owner := h.Get("Key-Issuer-Service"), h.Get("Key-Issuer-Id"), h.Get("Key-Owner-Id")
	if err := validate.KeyHeaders(service, issuer, owner); err != nil {
		return err
	}
	var req model.APIKeyRequest
	if _, err := decodeOptional(w, r, &req); err != nil {
		return err
	}
	now := k.cfg.Now()
	grant, err := validate.APIKey(&req, p.Account, now)
	if err != nil {
		return err
	}
	spec := store.APIKey{Account: p.Account, Description: req.Description, Scopes: grant.Scopes, Functions: grant.Functions,
		NoOwnFunctions: grant.NoOwn, SharedFunctions: grant.Shared,
		AudienceServiceIDs: req.AudienceServiceIDs, ExpiresAt: grant.ExpiresAt,
		IssuerService: service, IssuerID: issuer, OwnerID: owner}
	if req.Authorizations != nil {
		spec.Policies = req.Authorizations.Policies
	}
	key, value, err := k.cfg.Keys.Create(r.Context(), spec)
	if errors.Is(err, auth.ErrUnknownScope) {
		return problem.BadRequest("%s", err.Error())
	}
	if err != nil {
		return err
	}
	k.log.Info("api: API key created", "key", key.ID, "account", key.Account, "scopes", key.Scopes,
		"functions", key.Functions, "by", p.CredentialID)
	out := keyView(key, now)
	out.Value = value
	w.Header().Set("Cache-Control", "no-store")
	return web.JSON(w, http.StatusOK, out)
}

func (k *Keys) listKeys(w http.ResponseWriter, r *http.Request, p auth.Principal) error {
	keys, err := k.cfg.Keys.List(r.Context(), p.Account)
	if err != nil {
		return err
	}
	now := k.cfg.Now()
	out := model.APIKeyListResponse{Keys: make([]model.APIKey, 0, len(keys))}
	for _, key := range keys {
		out.Keys = append(out.Keys, keyView(key, now))
	}
	return web.JSON(w, http.StatusOK, out)
}

// getKey answers one key of the caller's account as listing shows it;
// another account's key is missing.
func (k *Keys) getKey(w http.ResponseWriter, r *http.Request, p auth.Principal) error {
	ids, err := pathIDs(r, "keyId")
	if err != nil {
		return err
	}
	keys, err := k.cfg.Keys.List(r.Context(), p.Account)
	if err != nil {
		return err
	}
	for _, key := range keys {
		if key.ID == ids[0] {
			return web.JSON(w, http.StatusOK, keyView(key, k.cfg.Now()))
		}
	}
	return problem.NotFound("API key %s not found; `gantry apikey list` shows your account's keys", ids[0])
}

// introspect tells whether a key value is an active key of the caller's
// account (NVCF's POST /v1/introspect, which nvcf-cli's api-key generate
// --validate sends): 200 with what the key may do, else 404. The value is
// never logged or echoed.
func (k *Keys) introspect(w http.ResponseWriter, r *http.Request, p auth.Principal) error {
	var req model.IntrospectRequest
	if err := validate.Decode(r.Body, maxBody, &req); err != nil {
		return err
	}
	if req.Key == "" {
		return problem.BadRequest(`key is required: send {"key": "nvapi-..."}`)
	}
	kp, err := k.cfg.Keys.Verify(r.Context(), req.Key)
	if errors.Is(err, auth.ErrBadCredential) || errors.Is(err, auth.ErrNoCredential) || (err == nil && kp.Account != p.Account) {
		return problem.NotFound("the key is not an active API key of your account: it is unknown, revoked or expired")
	}
	if err != nil {
		return err
	}
	out := model.IntrospectResponse{Active: true, ID: kp.CredentialID, NCAID: kp.Account, Scopes: kp.Scopes()}
	if !kp.ExpiresAt.IsZero() {
		exp := kp.ExpiresAt.UTC()
		out.ExpiresAt = &exp
	}
	w.Header().Set("Cache-Control", "no-store")
	return web.JSON(w, http.StatusOK, out)
}

// revokeKey revokes a key of the caller's account at once; another
// account's key is missing, never forbidden.
func (k *Keys) revokeKey(w http.ResponseWriter, r *http.Request, p auth.Principal) error {
	ids, err := pathIDs(r, "keyId")
	if err != nil {
		return err
	}
	key, err := k.cfg.Keys.Revoke(r.Context(), p.Account, ids[0])
	if errors.Is(err, auth.ErrKeyNotFound) {
		return problem.NotFound("API key %s not found; `gantry apikey list` shows your account's keys", ids[0])
	}
	if err != nil {
		return err
	}
	k.log.Info("api: API key revoked", "key", key.ID, "account", key.Account, "by", p.CredentialID)
	return web.JSON(w, http.StatusOK, keyView(key, k.cfg.Now()))
}

// jwks publishes the public keys that verify admin tokens. Anyone may read
// them; verifiers may cache them for a minute, and should fetch again when
// they meet a key id they do not know.
// rotateSigning installs a new admin token signing key and answers the
// published keys. Tokens the old key signed stay valid until they expire.
func (k *Keys) rotateSigning(w http.ResponseWriter, r *http.Request) error {
	if err := k.cfg.Issuer.Rotate(r.Context()); err != nil {
		return err
	}
	k.log.Info("api: admin token signing key rotated")
	return k.jwks(w, r)
}

func (k *Keys) jwks(w http.ResponseWriter, r *http.Request) error {
	set, err := k.cfg.Issuer.JWKS(r.Context())
	if err != nil {
		return err
	}
	w.Header().Set("Cache-Control", "public, max-age=60")
	return web.JSON(w, http.StatusOK, set)
}

// keyView is a stored key as the API shows it: never its value or hash.
// Keys created without authorizations show the policy they were given.
func keyView(k store.APIKey, now time.Time) model.APIKey {
	out := model.APIKey{ID: k.ID, Description: k.Description, CreatedAt: k.CreatedAt, Status: model.APIKeyStatusActive,
		NCAID: k.Account, AudienceServiceIDs: k.AudienceServiceIDs}
	if !k.ExpiresAt.IsZero() {
		exp := k.ExpiresAt
		out.ExpiresAt = &exp
	}
	switch {
	case k.Status == store.APIKeyRevoked:
		out.Status = model.APIKeyStatusRevoked
	case !k.ExpiresAt.IsZero() && !now.Before(k.ExpiresAt):
		out.Status = model.APIKeyStatusExpired
	}
	pols := k.Policies
	if len(pols) == 0 {
		var res []model.APIKeyResource
		switch {
		case k.Functions != nil:
			for _, id := range k.Functions {
				res = append(res, model.APIKeyResource{ID: id, Type: model.ResourceFunction})
			}
		case !k.NoOwnFunctions:
			res = append(res, model.APIKeyResource{ID: "*", Type: model.ResourceAccountFunctions})
		}
		if k.SharedFunctions {
			res = append(res, model.APIKeyResource{ID: "*", Type: model.ResourceAuthorizedFunctions})
		}
		pols = []model.APIKeyPolicy{{Scopes: k.Scopes, Resources: res}}
	}
	out.Authorizations = &model.APIKeyAuthorizations{Policies: pols}
	return out
}
