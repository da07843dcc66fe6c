package auth

import (
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/sha256"
	"encoding/base64"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"sync"
	"time"

	"github.com/golang-jwt/jwt/v5"
	"github.com/google/uuid"

	"github.com/gantry-dev/gantry/internal/store"
)

// KeySealer encrypts the private half of a signing key before it reaches
// etcd, and decrypts it again. The secret store implements it; name binds
// the ciphertext to one key, so a sealed key copied under another name does
// not open.
type KeySealer interface {
	SealKey(ctx context.Context, name string, plaintext []byte) ([]byte, error)
	OpenKey(ctx context.Context, name string, sealed []byte) ([]byte, error)
}

// SigningKeyStore is what the issuer reads and writes.
type SigningKeyStore interface {
	GetSigningKey(ctx context.Context, kid string) (store.SigningKey, error)
	ListSigningKeys(ctx context.Context) ([]store.SigningKey, error)
	ActiveSigningKey(ctx context.Context) (store.SigningKey, error)
	RotateSigningKey(ctx context.Context, next, retire *store.SigningKey) error
	DeleteSigningKey(ctx context.Context, k store.SigningKey) error
}

var _ SigningKeyStore = (*store.Store)(nil)

// ErrTTL means a requested token lifetime is not positive or is longer than
// the issuer grants.
var ErrTTL = errors.New("auth: token lifetime out of range")

// Issuer defaults.
const (
	DefaultIssuerName = "gantry"
	DefaultTokenTTL   = 24 * time.Hour
	DefaultMaxTTL     = 30 * 24 * time.Hour
)

// IssuerConfig tunes the issuer. Zero values take the defaults.
type IssuerConfig struct {
	// Issuer is the iss claim tokens carry and must carry (DefaultIssuerName).
	Issuer string
	// TTL is a token's lifetime when Mint is given none (DefaultTokenTTL).
	TTL time.Duration
	// MaxTTL is the longest lifetime Mint grants (DefaultMaxTTL). A retired
	// key keeps verifying this long after its rotation, so every token it
	// signed runs out first.
	MaxTTL time.Duration
	Now    func() time.Time
	Logger *slog.Logger
}

// Issuer mints admin tokens, ES256 JWTs, and verifies them. Signing keys
// live in etcd, so every replica verifies what any other minted; the
// private half is sealed there by a KeySealer. Public keys are cached by key
// id; an unknown id is looked up in etcd, since another replica may have
// rotated.
type Issuer struct {
	st     SigningKeyStore
	sealer KeySealer
	cfg    IssuerConfig
	log    *slog.Logger

	mu      sync.RWMutex
	keys    map[string]verifyKey // kid -> public key
	missing map[string]time.Time // kid -> until when "unknown" is believed
	signer  *signer              // the active key as last read
	jwks    JWKS                 // published keys as last read
	jwksAt  time.Time            // when jwks was read

	// verified caches good tokens by SHA-256 until they expire, so the
	// invocation path pays the ES256 check once per token, not per call.
	// Admin tokens cannot be revoked one by one and a signing key is kept
	// until every token it signed has expired, so the cache cannot outlive
	// a token's validity.
	verifiedMu sync.Mutex
	verified   map[[32]byte]Principal
}

// maxVerified bounds the verified-token cache; when full it starts over.
const maxVerified = 4096

type verifyKey struct {
	pub      *ecdsa.PublicKey
	notAfter time.Time // zero: active when read
}

type signer struct {
	kid  string
	priv *ecdsa.PrivateKey
}

var _ Authenticator = (*Issuer)(nil)

// lookupTTL bounds how long the issuer believes "no such key" for a key id,
// and how long a JWKS answer is reused. Short enough that a key another
// replica just installed is seen at once in practice (its tokens carry a
// key id nobody could have asked about before), long enough that a flood of
// made-up key ids costs etcd one read per id per second at most.
const lookupTTL = time.Second

// maxMissing bounds the unknown-key-id cache; it is cleared when full.
const maxMissing = 10000

// clockSkew is added to a retired key's verification window, for replicas
// whose clocks disagree a little.
const clockSkew = time.Minute

// NewIssuer builds an issuer over st whose private keys sealer protects.
// Start installs or loads the signing key.
func NewIssuer(st SigningKeyStore, sealer KeySealer, cfg IssuerConfig) *Issuer {
	if cfg.Issuer == "" {
		cfg.Issuer = DefaultIssuerName
	}
	if cfg.TTL <= 0 {
		cfg.TTL = DefaultTokenTTL
	}
	if cfg.MaxTTL <= 0 {
		cfg.MaxTTL = DefaultMaxTTL
	}
	if cfg.TTL > cfg.MaxTTL {
		cfg.TTL = cfg.MaxTTL
	}
	if cfg.Now == nil {
		cfg.Now = time.Now
	}
	log := cfg.Logger
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	return &Issuer{st: st, sealer: sealer, cfg: cfg, log: log,
		keys: map[string]verifyKey{}, missing: map[string]time.Time{}}
}

// Start makes sure an active signing key exists (creating the first one on
// a fresh installation; a replica racing to do the same is harmless), loads
// the public keys and drops keys that no token can need any more. It starts
// nothing in the background: the issuer is ready when Start returns.
func (i *Issuer) Start(ctx context.Context) error {
	if _, err := i.activeSigner(ctx); err != nil {
		return err
	}
	i.prune(ctx)
	return i.reload(ctx)
}

// AdminToken is a minted admin token. Value is the JWT; the rest repeats
// its claims for the caller's convenience.
type AdminToken struct {
	ID        string
	Value     string
	Account   string
	Subject   string
	IssuedAt  time.Time
	ExpiresAt time.Time
}

// adminClaims are the claims of an admin token.
type adminClaims struct {
	jwt.RegisteredClaims
	NCAID  string   `json:"ncaId"`
	Scopes []string `json:"scopes"`
}

// MaxTTL is the longest lifetime Mint grants.
func (i *Issuer) MaxTTL() time.Duration { return i.cfg.MaxTTL }

// Mint signs an admin token for account with the active key. ttl 0 means
// the configured default; beyond MaxTTL is ErrTTL. It reads the active key
// from etcd each time, so a replica never signs with a key another replica
// has retired (minting is rare; verifying is what must be fast).
func (i *Issuer) Mint(ctx context.Context, account, subject string, ttl time.Duration) (AdminToken, error) {
	if ttl == 0 {
		ttl = i.cfg.TTL
	}
	if ttl < 0 || ttl > i.cfg.MaxTTL {
		return AdminToken{}, fmt.Errorf("%w: %v is not between 0 and %v", ErrTTL, ttl, i.cfg.MaxTTL)
	}
	if account == "" || subject == "" {
		return AdminToken{}, errors.New("auth: an admin token needs an account and a subject")
	}
	s, err := i.activeSigner(ctx)
	if err != nil {
		return AdminToken{}, err
	}
	now := i.cfg.Now()
	c := adminClaims{
		RegisteredClaims: jwt.RegisteredClaims{
			Issuer:    i.cfg.Issuer,
			Subject:   subject,
			IssuedAt:  jwt.NewNumericDate(now),
			ExpiresAt: jwt.NewNumericDate(now.Add(ttl)),
			ID:        uuid.NewString(),
		},
		NCAID:  account,
		Scopes: AdminScopes,
	}
	tok := jwt.NewWithClaims(jwt.SigningMethodES256, c)
	tok.Header["kid"] = s.kid
	v, err := tok.SignedString(s.priv)
	if err != nil {
		return AdminToken{}, fmt.Errorf("auth: sign admin token: %w", err)
	}
	return AdminToken{ID: c.ID, Value: v, Account: account, Subject: subject,
		IssuedAt: c.IssuedAt.Time, ExpiresAt: c.ExpiresAt.Time}, nil
}

// Authenticate implements Authenticator for admin tokens.
func (i *Issuer) Authenticate(r *http.Request) (Principal, error) {
	tok, ok := BearerToken(r)
	if !ok {
		return Principal{}, ErrNoCredential
	}
	return i.Verify(r.Context(), tok)
}

// Verify checks an admin token: ES256 only, a key id the issuer knows,
// a good signature, this issuer, not expired. Every refusal wraps
// ErrBadCredential.
func (i *Issuer) Verify(ctx context.Context, token string) (Principal, error) {
	sum := sha256.Sum256([]byte(token))
	i.verifiedMu.Lock()
	p, ok := i.verified[sum]
	i.verifiedMu.Unlock()
	if ok && i.cfg.Now().Before(p.ExpiresAt) {
		return p, nil
	}
	p, err := i.verify(ctx, token)
	if err != nil {
		return Principal{}, err
	}
	i.verifiedMu.Lock()
	if i.verified == nil || len(i.verified) >= maxVerified {
		i.verified = map[[32]byte]Principal{}
	}
	i.verified[sum] = p
	i.verifiedMu.Unlock()
	return p, nil
}

// verify is Verify without the cache.
func (i *Issuer) verify(ctx context.Context, token string) (Principal, error) {
	var c adminClaims
	_, err := jwt.ParseWithClaims(token, &c, func(t *jwt.Token) (any, error) {
		kid, _ := t.Header["kid"].(string)
		if kid == "" {
			return nil, errors.New("token has no kid header")
		}
		return i.publicKey(ctx, kid)
	},
		jwt.WithValidMethods([]string{jwt.SigningMethodES256.Alg()}),
		jwt.WithIssuer(i.cfg.Issuer),
		jwt.WithExpirationRequired(),
		jwt.WithTimeFunc(i.cfg.Now),
	)
	if err != nil {
		return Principal{}, fmt.Errorf("%w: admin token: %v", ErrBadCredential, err)
	}
	if c.NCAID == "" || c.Subject == "" {
		return Principal{}, fmt.Errorf("%w: admin token lacks ncaId or sub", ErrBadCredential)
	}
	p := NewPrincipal(c.NCAID, c.Subject, c.Scopes)
	p.Kind, p.CredentialID, p.ExpiresAt = KindAdminToken, c.ID, c.ExpiresAt.Time
	return p, nil
}

// publicKey returns the key with id kid, from the cache or else from etcd.
func (i *Issuer) publicKey(ctx context.Context, kid string) (*ecdsa.PublicKey, error) {
	now := i.cfg.Now()
	i.mu.RLock()
	k, ok := i.keys[kid]
	missUntil := i.missing[kid]
	i.mu.RUnlock()
	if !ok && now.Before(missUntil) {
		return nil, fmt.Errorf("unknown signing key %q", kid)
	}
	if !ok {
		sk, err := i.st.GetSigningKey(ctx, kid)
		if errors.Is(err, store.ErrNotFound) {
			i.mu.Lock()
			if len(i.missing) >= maxMissing {
				clear(i.missing)
			}
			i.missing[kid] = now.Add(lookupTTL)
			i.mu.Unlock()
			return nil, fmt.Errorf("unknown signing key %q", kid)
		}
		if err != nil {
			return nil, err
		}
		if k, err = i.remember(sk); err != nil {
			return nil, err
		}
	}
	if !k.notAfter.IsZero() && now.After(k.notAfter) {
		return nil, fmt.Errorf("signing key %q was retired and no longer verifies", kid)
	}
	return k.pub, nil
}

// remember caches a stored key's public half.
func (i *Issuer) remember(sk store.SigningKey) (verifyKey, error) {
	pub, err := ecdsa.ParseUncompressedPublicKey(elliptic.P256(), sk.PublicKey)
	if err != nil {
		return verifyKey{}, fmt.Errorf("auth: signing key %s: %w", sk.ID, err)
	}
	k := verifyKey{pub: pub, notAfter: sk.NotAfter}
	i.mu.Lock()
	i.keys[sk.ID] = k
	delete(i.missing, sk.ID)
	i.mu.Unlock()
	return k, nil
}

// activeSigner returns the active key with its private half, creating the
// first key if there is none.
func (i *Issuer) activeSigner(ctx context.Context) (*signer, error) {
	sk, err := i.st.ActiveSigningKey(ctx)
	if errors.Is(err, store.ErrNotFound) {
		return i.installFirst(ctx)
	}
	if err != nil {
		return nil, fmt.Errorf("auth: read the active signing key: %w", err)
	}
	return i.use(ctx, sk)
}

// installFirst creates the installation's first signing key. When another
// replica installs one at the same moment, that one is used instead.
func (i *Issuer) installFirst(ctx context.Context) (*signer, error) {
	next, s, err := i.newKey(ctx)
	if err != nil {
		return nil, err
	}
	err = i.st.RotateSigningKey(ctx, next, nil)
	if errors.Is(err, store.ErrConflict) {
		sk, err := i.st.ActiveSigningKey(ctx)
		if err != nil {
			return nil, fmt.Errorf("auth: read the active signing key: %w", err)
		}
		return i.use(ctx, sk)
	}
	if err != nil {
		return nil, fmt.Errorf("auth: install the first signing key: %w", err)
	}
	i.log.Info("auth: installed the first admin-token signing key", "kid", next.ID)
	if _, err := i.remember(*next); err != nil {
		return nil, err
	}
	i.setSigner(s)
	return s, nil
}

// use makes sk, the active key as stored, the signer, opening its private
// half unless it is the signer already.
func (i *Issuer) use(ctx context.Context, sk store.SigningKey) (*signer, error) {
	i.mu.RLock()
	cur := i.signer
	i.mu.RUnlock()
	if cur != nil && cur.kid == sk.ID {
		return cur, nil
	}
	raw, err := i.sealer.OpenKey(ctx, sealName(sk.ID), sk.SealedPrivateKey)
	if err != nil {
		return nil, fmt.Errorf("auth: open signing key %s: %w", sk.ID, err)
	}
	priv, err := ecdsa.ParseRawPrivateKey(elliptic.P256(), raw)
	clear(raw)
	if err != nil {
		return nil, fmt.Errorf("auth: signing key %s: %w", sk.ID, err)
	}
	if _, err := i.remember(sk); err != nil {
		return nil, err
	}
	s := &signer{kid: sk.ID, priv: priv}
	i.setSigner(s)
	return s, nil
}

func (i *Issuer) setSigner(s *signer) {
	i.mu.Lock()
	i.signer = s
	i.jwksAt = time.Time{} // publish the new key at once
	i.mu.Unlock()
}

// newKey generates a P-256 key and seals its private half.
func (i *Issuer) newKey(ctx context.Context) (*store.SigningKey, *signer, error) {
	priv, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return nil, nil, fmt.Errorf("auth: generate signing key: %w", err)
	}
	pub, err := priv.PublicKey.Bytes()
	if err != nil {
		return nil, nil, fmt.Errorf("auth: encode signing key: %w", err)
	}
	kid := thumbprint(pub)
	raw, err := priv.Bytes()
	if err != nil {
		return nil, nil, fmt.Errorf("auth: encode signing key: %w", err)
	}
	sealed, err := i.sealer.SealKey(ctx, sealName(kid), raw)
	clear(raw)
	if err != nil {
		return nil, nil, fmt.Errorf("auth: seal signing key: %w", err)
	}
	k := &store.SigningKey{ID: kid, Algorithm: jwt.SigningMethodES256.Alg(), PublicKey: pub,
		SealedPrivateKey: sealed, CreatedAt: i.cfg.Now().UTC()}
	return k, &signer{kid: kid, priv: priv}, nil
}

// sealName binds a sealed private key to its key id.
func sealName(kid string) string { return "admin-signing-key/" + kid }

// Rotate installs a new active signing key. The old one signs nothing more
// but keeps verifying until every token it could have signed has expired
// (rotation time + MaxTTL); its private half is dropped at once. If another
// replica rotates at the same moment, its new key wins and this one is
// discarded: either way the installation has a fresh key.
func (i *Issuer) Rotate(ctx context.Context) error {
	cur, err := i.st.ActiveSigningKey(ctx)
	if errors.Is(err, store.ErrNotFound) {
		_, err = i.activeSigner(ctx)
		return err
	}
	if err != nil {
		return fmt.Errorf("auth: read the active signing key: %w", err)
	}
	next, s, err := i.newKey(ctx)
	if err != nil {
		return err
	}
	now := i.cfg.Now().UTC()
	retired := cur
	retired.RetiredAt, retired.NotAfter, retired.SealedPrivateKey = now, now.Add(i.cfg.MaxTTL+clockSkew), nil
	switch err := i.st.RotateSigningKey(ctx, next, &retired); {
	case err == nil:
		i.log.Info("auth: rotated the admin-token signing key", "kid", next.ID, "retired", cur.ID, "retiredVerifiesUntil", retired.NotAfter)
		i.setSigner(s)
		if _, err := i.remember(*next); err != nil {
			return err
		}
		if _, err := i.remember(retired); err != nil {
			return err
		}
	case errors.Is(err, store.ErrConflict):
		i.log.Info("auth: another replica rotated the signing key at the same time; keeping its key")
	default:
		return fmt.Errorf("auth: rotate signing key: %w", err)
	}
	i.prune(ctx)
	return i.reload(ctx)
}

// reload re-reads every stored key into the cache and refreshes the active
// signer, so that rotations by other replicas are reflected.
func (i *Issuer) reload(ctx context.Context) error {
	all, err := i.st.ListSigningKeys(ctx)
	if err != nil {
		return fmt.Errorf("auth: list signing keys: %w", err)
	}
	for _, sk := range all {
		if _, err := i.remember(sk); err != nil {
			return err
		}
	}
	_, err = i.activeSigner(ctx)
	return err
}

// prune deletes retired keys past their verification window. Failing is
// harmless (a later rotation or start tries again), so it only logs.
func (i *Issuer) prune(ctx context.Context) {
	all, err := i.st.ListSigningKeys(ctx)
	if err != nil {
		i.log.Warn("auth: list signing keys to prune", "err", err)
		return
	}
	now := i.cfg.Now()
	for _, sk := range all {
		if sk.NotAfter.IsZero() || !now.After(sk.NotAfter) {
			continue
		}
		if err := i.st.DeleteSigningKey(ctx, sk); err != nil && !errors.Is(err, store.ErrConflict) {
			i.log.Warn("auth: prune signing key", "kid", sk.ID, "err", err)
			continue
		}
		i.mu.Lock()
		delete(i.keys, sk.ID)
		i.mu.Unlock()
	}
}

// JWK is one public key of a JSON Web Key Set (RFC 7517), EC P-256 only.
type JWK struct {
	Kty string `json:"kty"`
	Crv string `json:"crv"`
	X   string `json:"x"`
	Y   string `json:"y"`
	Kid string `json:"kid"`
	Alg string `json:"alg"`
	Use string `json:"use"`
}

// JWKS is a JSON Web Key Set.
type JWKS struct {
	Keys []JWK `json:"keys"`
}

// JWKS returns the public keys that verify admin tokens: the active one and
// retired ones still inside their window. It is re-read from etcd at most
// once a second, so the public endpoint cannot load etcd, and a rotation on
// any replica shows within that second.
func (i *Issuer) JWKS(ctx context.Context) (JWKS, error) {
	now := i.cfg.Now()
	i.mu.RLock()
	set, at := i.jwks, i.jwksAt
	i.mu.RUnlock()
	if age := now.Sub(at); !at.IsZero() && age >= 0 && age < lookupTTL {
		return set, nil
	}
	all, err := i.st.ListSigningKeys(ctx)
	if err != nil {
		return JWKS{}, fmt.Errorf("auth: list signing keys: %w", err)
	}
	set = JWKS{Keys: make([]JWK, 0, len(all))}
	for _, sk := range all {
		if !sk.NotAfter.IsZero() && now.After(sk.NotAfter) {
			continue
		}
		if len(sk.PublicKey) != 65 || sk.PublicKey[0] != 4 {
			return JWKS{}, fmt.Errorf("auth: signing key %s: not an uncompressed P-256 point", sk.ID)
		}
		set.Keys = append(set.Keys, JWK{Kty: "EC", Crv: "P-256", Kid: sk.ID, Alg: sk.Algorithm, Use: "sig",
			X: b64(sk.PublicKey[1:33]), Y: b64(sk.PublicKey[33:])})
	}
	i.mu.Lock()
	i.jwks, i.jwksAt = set, now
	i.mu.Unlock()
	return set, nil
}

func b64(b []byte) string { return base64.RawURLEncoding.EncodeToString(b) }

// thumbprint is the RFC 7638 SHA-256 thumbprint of a P-256 public key given
// as an uncompressed point: a key id anyone can recompute from the JWK.
func thumbprint(point []byte) string {
	canonical := `{"crv":"P-256","kty":"EC","x":"` + b64(point[1:33]) + `","y":"` + b64(point[33:]) + `"}`
	sum := sha256.Sum256([]byte(canonical))
	return b64(sum[:])
}
