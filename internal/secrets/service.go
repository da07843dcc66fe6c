package secrets

import (
	"context"
	"crypto/cipher"
	"errors"
	"fmt"
	"log/slog"
	"sync"
	"time"

	"github.com/gantry-dev/gantry/internal/store"
)

// Defaults of a Service.
const (
	// DefaultBatchSize is how many NEK records or secrets one transaction
	// rewrites: etcd's default limit is 128 operations per transaction
	// (--max-txn-ops), and external clusters usually keep it.
	DefaultBatchSize = 128
	// DefaultWorkers is how many batches a rotation keeps in flight; etcd
	// commits concurrent transactions together, so a few overlap well.
	DefaultWorkers = 4
	// scanPage is how many records one read of a rotation's scan returns.
	scanPage = 1024
	// progressEvery spaces the progress records a rotation writes to etcd.
	progressEvery = 250 * time.Millisecond
)

// Service is the encrypted secret store: it seals and opens secrets with
// per-account keys and rotates both key tiers online. It is safe for
// concurrent use, and several server replicas may run one each over the
// same etcd: unknown key versions are read from etcd when first needed.
type Service struct {
	st      *store.Store
	p       MEKProvider
	log     *slog.Logger
	batch   int
	workers int

	mu sync.Mutex
	// meks and neks cache unwrapped keys. A NEK is cached by account and
	// version only: re-wrapping it under another MEK version does not
	// change the key, so a MEK rotation leaves every entry valid.
	meks map[int]cipher.AEAD
	neks map[nekRef]cipher.AEAD

	// Test hooks: afterBatch runs after each rotation batch is counted,
	// beforeReencrypt before a NEK rotation batch is written.
	afterBatch      func(done int)
	beforeReencrypt func(chunk []store.SealedSecret)
}

type nekRef struct {
	account string
	version int
}

// Option adjusts a Service.
type Option func(*Service)

// WithBatchSize sets how many records one rotation transaction rewrites
// (default DefaultBatchSize; at most the etcd server's --max-txn-ops).
func WithBatchSize(n int) Option {
	return func(s *Service) {
		if n > 0 {
			s.batch = n
		}
	}
}

// WithWorkers sets how many rotation batches run at once (default
// DefaultWorkers).
func WithWorkers(n int) Option {
	return func(s *Service) {
		if n > 0 {
			s.workers = n
		}
	}
}

// NewService builds the secret store over st with the master key from p.
// Nothing is read until Start.
func NewService(st *store.Store, p MEKProvider, log *slog.Logger, opts ...Option) *Service {
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	s := &Service{st: st, p: p, log: log, batch: DefaultBatchSize, workers: DefaultWorkers,
		meks: map[int]cipher.AEAD{}, neks: map[nekRef]cipher.AEAD{}}
	for _, o := range opts {
		o(s)
	}
	return s
}

// Start makes sure the installation has a master key recorded (adopting the
// provider's latest version, or creating the first), checks that the
// provider's key is the recorded one, and re-seals any secret still sealed
// with the key file of releases before the secret store. It resumes no
// interrupted rotation: run the rotation again for that.
func (s *Service) Start(ctx context.Context) error {
	meta, err := s.ensureMeta(ctx)
	if err != nil {
		return err
	}
	if _, err := s.mek(ctx, meta.ActiveMEK); err != nil {
		return err
	}
	if !meta.LegacyDone {
		return s.upgradeLegacy(ctx)
	}
	return nil
}

// ensureMeta reads the metadata record, creating it on first start.
func (s *Service) ensureMeta(ctx context.Context) (store.ESSMeta, error) {
	for {
		meta, err := s.st.GetESSMeta(ctx)
		if !errors.Is(err, store.ErrNotFound) {
			return meta, err
		}
		v, key, err := s.p.Latest(ctx)
		if errors.Is(err, ErrNoMEK) {
			if v, err = s.p.Create(ctx); err == nil {
				key, err = s.p.Key(ctx, v)
			}
		}
		if err != nil {
			return meta, err
		}
		entry, aead, err := newMEKEntry(v, key)
		clear(key)
		if err != nil {
			return meta, err
		}
		meta = store.ESSMeta{ActiveMEK: v, MEKs: []store.MEKVersion{entry}}
		err = s.st.CreateESSMeta(ctx, &meta)
		if errors.Is(err, store.ErrExists) {
			continue // another replica got there first; use its record
		}
		if err != nil {
			return meta, err
		}
		s.cacheMEK(v, aead)
		s.log.Info("secrets: master key recorded", "mekVersion", v)
		return meta, nil
	}
}

// newMEKEntry builds the record of MEK version v, with its check value.
func newMEKEntry(v int, key []byte) (store.MEKVersion, cipher.AEAD, error) {
	aead, err := newAEAD(key)
	if err != nil {
		return store.MEKVersion{}, nil, fmt.Errorf("secrets: MEK version %d: %w", v, err)
	}
	check, err := seal(aead, nil, checkAAD(v))
	if err != nil {
		return store.MEKVersion{}, nil, err
	}
	return store.MEKVersion{Version: v, Status: store.KeyActive, Check: check, CreatedAt: time.Now().UTC()}, aead, nil
}

func (s *Service) cacheMEK(v int, aead cipher.AEAD) {
	s.mu.Lock()
	s.meks[v] = aead
	s.mu.Unlock()
}

// mek returns MEK version v, asking the provider the first time and
// checking the key against the installation's record of it.
func (s *Service) mek(ctx context.Context, v int) (cipher.AEAD, error) {
	s.mu.Lock()
	aead := s.meks[v]
	s.mu.Unlock()
	if aead != nil {
		return aead, nil
	}
	meta, err := s.st.GetESSMeta(ctx)
	if err != nil {
		return nil, err
	}
	rec, ok := meta.MEK(v)
	if !ok {
		return nil, fmt.Errorf("secrets: MEK version %d is not recorded in this installation", v)
	}
	key, err := s.p.Key(ctx, v)
	if err != nil {
		return nil, err
	}
	aead, err = newAEAD(key)
	clear(key)
	if err != nil {
		return nil, fmt.Errorf("secrets: MEK version %d: %w", v, err)
	}
	if _, err := open(aead, rec.Check, checkAAD(v)); err != nil {
		return nil, fmt.Errorf("secrets: the provider's MEK version %d is not the key this installation recorded; is it configured with another installation's key files or OpenBao path?", v)
	}
	s.cacheMEK(v, aead)
	return aead, nil
}

// nek returns an account's NEK version, unwrapping it the first time.
func (s *Service) nek(ctx context.Context, account string, v int) (cipher.AEAD, error) {
	ref := nekRef{account, v}
	s.mu.Lock()
	aead := s.neks[ref]
	s.mu.Unlock()
	if aead != nil {
		return aead, nil
	}
	rec, err := s.st.GetNEK(ctx, account, v)
	if errors.Is(err, store.ErrNotFound) {
		return nil, fmt.Errorf("%w: account %s has no key version %d", ErrOpen, account, v)
	}
	if err != nil {
		return nil, err
	}
	if rec.Status == store.KeyRetired || len(rec.Wrapped) == 0 {
		return nil, fmt.Errorf("%w: key version %d of account %s is retired", ErrOpen, v, account)
	}
	key, err := s.unwrap(ctx, rec)
	if err != nil {
		return nil, err
	}
	aead, err = newAEAD(key)
	clear(key)
	if err != nil {
		return nil, err
	}
	s.cacheNEK(ref, aead)
	return aead, nil
}

func (s *Service) cacheNEK(ref nekRef, aead cipher.AEAD) {
	s.mu.Lock()
	s.neks[ref] = aead
	s.mu.Unlock()
}

// unwrap decrypts a NEK record's key with the MEK version that wraps it.
func (s *Service) unwrap(ctx context.Context, rec store.NEK) ([]byte, error) {
	m, err := s.mek(ctx, rec.MEK)
	if err != nil {
		return nil, err
	}
	key, err := open(m, rec.Wrapped, nekAAD(rec.Account, rec.Version))
	if err != nil {
		return nil, fmt.Errorf("secrets: key version %d of account %s does not unwrap under MEK version %d (tampered with or moved)", rec.Version, rec.Account, rec.MEK)
	}
	return key, nil
}

// Seal encrypts plaintext for place with the account's active NEK, creating
// the account's first NEK if it has none.
func (s *Service) Seal(ctx context.Context, place Place, plaintext []byte) (Sealed, error) {
	head, err := s.head(ctx, place.Account)
	if err != nil {
		return Sealed{}, err
	}
	aead, err := s.nek(ctx, place.Account, head.Active)
	if err != nil {
		return Sealed{}, err
	}
	ct, err := seal(aead, plaintext, place.aad())
	if err != nil {
		return Sealed{}, err
	}
	return Sealed{NEK: head.Active, Ciphertext: ct, HeadRevision: head.Revision}, nil
}

// Open decrypts a value sealed for place. A value moved from another place,
// tampered with, or sealed under a key this installation does not have
// fails with an error that wraps ErrOpen and names the place.
func (s *Service) Open(ctx context.Context, place Place, sealed Sealed) ([]byte, error) {
	var aead cipher.AEAD
	var err error
	if sealed.NEK == 0 {
		// Legacy: sealed directly with the pre-ESS key file, adopted as MEK
		// version 1. Start re-seals these; until then they open this way.
		aead, err = s.mek(ctx, 1)
	} else {
		aead, err = s.nek(ctx, place.Account, sealed.NEK)
	}
	if err != nil {
		if errors.Is(err, ErrOpen) {
			return nil, fmt.Errorf("%w (%s)", err, place)
		}
		return nil, err
	}
	out, err := open(aead, sealed.Ciphertext, place.aad())
	if err != nil {
		return nil, fmt.Errorf("%w: %s with key version %d", ErrOpen, place, sealed.NEK)
	}
	return out, nil
}

// head returns the account's NEK head, creating its first NEK if needed.
func (s *Service) head(ctx context.Context, account string) (store.NEKHead, error) {
	if account == "" {
		return store.NEKHead{}, errors.New("secrets: a place needs an account")
	}
	for range 5 {
		h, err := s.st.GetNEKHead(ctx, account)
		if !errors.Is(err, store.ErrNotFound) {
			return h, err
		}
		if err := s.createNEKs(ctx, []string{account}); err != nil && !errors.Is(err, store.ErrConflict) {
			return h, err
		}
	}
	return store.NEKHead{}, fmt.Errorf("secrets: could not create the first key of account %s: too much contention; retry", account)
}

// EnsureAccountKeys gives every listed account without a NEK its first one,
// many per transaction; accounts that have one are left alone. Seal does
// this one account at a time on first use; this is for creating many
// accounts at once.
func (s *Service) EnsureAccountKeys(ctx context.Context, accounts ...string) error {
	per := max(1, (s.batch-1)/2) // two puts per account, one guard each plus the metadata guard
	for start := 0; start < len(accounts); start += per {
		chunk := accounts[start:min(start+per, len(accounts))]
		err := s.createNEKs(ctx, chunk)
		if errors.Is(err, store.ErrConflict) {
			// Some already have a key, or a MEK rotation began: one by one.
			for _, a := range chunk {
				if _, err := s.head(ctx, a); err != nil {
					return err
				}
			}
			continue
		}
		if err != nil {
			return err
		}
	}
	return nil
}

// createNEKs writes version 1 of each account's NEK, wrapped by the active
// MEK, if the metadata has not changed meanwhile.
func (s *Service) createNEKs(ctx context.Context, accounts []string) error {
	meta, err := s.st.GetESSMeta(ctx)
	if err != nil {
		return err
	}
	m, err := s.mek(ctx, meta.ActiveMEK)
	if err != nil {
		return err
	}
	now := time.Now().UTC()
	neks := make([]store.NEK, len(accounts))
	var first cipher.AEAD
	for i, a := range accounts {
		key, err := newKey()
		if err != nil {
			return err
		}
		wrapped, err := seal(m, key, nekAAD(a, 1))
		if err == nil && len(accounts) == 1 {
			first, err = newAEAD(key)
		}
		clear(key)
		if err != nil {
			return err
		}
		neks[i] = store.NEK{Account: a, Version: 1, MEK: meta.ActiveMEK, Wrapped: wrapped, Status: store.KeyActive, CreatedAt: now}
	}
	if err := s.st.CreateNEKs(ctx, meta.Revision, neks); err != nil {
		return err
	}
	if len(accounts) == 1 {
		// Seal's first use: the key is needed at once. Bulk creation does
		// not fill the cache with keys nobody may ask for.
		s.cacheNEK(nekRef{accounts[0], 1}, first)
	}
	return nil
}
