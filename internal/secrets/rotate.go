package secrets

import (
	"context"
	"crypto/cipher"
	"errors"
	"fmt"
	"slices"
	"sync"
	"time"

	"github.com/gantry-dev/gantry/internal/model"
	"github.com/gantry-dev/gantry/internal/store"
)

// RotationResult is what a finished rotation did.
type RotationResult = model.KeyRotationResult

// maxAttempts bounds the retries of one record, or of a rotation's start or
// finish, that keeps losing races with concurrent writers.
const maxAttempts = 20

// lock takes the installation-wide rotation lock.
func (s *Service) lock(ctx context.Context) (*store.RotationLock, error) {
	l, err := s.st.TryLockRotation(ctx)
	if errors.Is(err, store.ErrLocked) {
		return nil, ErrRotationRunning
	}
	return l, err
}

// RotateMEK moves every NEK record to a new master key version: the
// provider creates it, it becomes active at once (new NEKs are wrapped with
// it), every NEK is re-wrapped in guarded batches, and the old version is
// retired once no NEK depends on it. No secret is rewritten. If a run is
// interrupted, the next run continues with the same target version rather
// than creating another. progress (may be nil) is called from one goroutine
// with NEK records done and the total.
func (s *Service) RotateMEK(ctx context.Context, progress func(done, total int)) (RotationResult, error) {
	start := time.Now()
	l, err := s.lock(ctx)
	if err != nil {
		return RotationResult{}, err
	}
	defer l.Unlock()

	rot, err := s.st.GetRotation(ctx, store.RotationMEK, "")
	resumed := err == nil
	switch {
	case resumed:
		s.log.Info("secrets: resuming MEK rotation", "from", rot.From, "target", rot.Target, "done", rot.Done, "total", rot.Total)
		if rot.Total, err = s.st.CountNEKs(ctx); err != nil {
			return RotationResult{}, err
		}
		rot.Done = 0
	case errors.Is(err, store.ErrNotFound):
		if rot, err = s.beginMEKRotation(ctx); err != nil {
			return RotationResult{}, err
		}
		s.log.Info("secrets: MEK rotation started", "from", rot.From, "target", rot.Target, "neks", rot.Total)
	default:
		return RotationResult{}, err
	}
	res := RotationResult{Kind: store.RotationMEK, From: rot.From, Target: rot.Target, Resumed: resumed}
	rot.Owner = l.Key()
	target, err := s.mek(ctx, rot.Target)
	if err != nil {
		return res, err
	}
	res.Rewrapped, err = sweep(ctx, s, &rot, s.st.ScanNEKs, func(ctx context.Context, chunk []store.NEK) (int, error) {
		return s.rewrapBatch(ctx, chunk, rot.Target, target)
	}, progress)
	if err != nil {
		return res, err
	}
	// The sweep has moved every NEK that existed when the target became
	// active, and every NEK created since was wrapped with the target
	// (creation compares the metadata revision), so no NEK depends on an
	// older version now.
	for attempt := 0; ; attempt++ {
		meta, err := s.st.GetESSMeta(ctx)
		if err != nil {
			return res, err
		}
		res.Retired = nil
		for i := range meta.MEKs {
			m := &meta.MEKs[i]
			if m.Version == rot.Target || m.Status == store.KeyRetired {
				continue
			}
			if m.Version == 1 && !meta.LegacyDone {
				continue // legacy secrets are sealed with it directly
			}
			m.Status, m.RetiredAt = store.KeyRetired, time.Now().UTC()
			res.Retired = append(res.Retired, m.Version)
		}
		err = s.st.FinishMEKRotation(ctx, &meta)
		if errors.Is(err, store.ErrConflict) && attempt < maxAttempts {
			continue
		}
		if err != nil {
			return res, err
		}
		break
	}
	s.mu.Lock()
	for _, v := range res.Retired {
		delete(s.meks, v)
	}
	s.mu.Unlock()
	res.Seconds = time.Since(start).Seconds()
	s.log.Info("secrets: MEK rotation finished", "target", rot.Target, "rewrapped", res.Rewrapped, "retired", res.Retired, "seconds", res.Seconds)
	return res, nil
}

// beginMEKRotation makes a new MEK version active and records the rotation.
func (s *Service) beginMEKRotation(ctx context.Context) (store.Rotation, error) {
	meta, err := s.st.GetESSMeta(ctx)
	if err != nil {
		return store.Rotation{}, err
	}
	target, err := s.nextMEKVersion(ctx, meta)
	if err != nil {
		return store.Rotation{}, err
	}
	key, err := s.p.Key(ctx, target)
	if err != nil {
		return store.Rotation{}, err
	}
	entry, aead, err := newMEKEntry(target, key)
	clear(key)
	if err != nil {
		return store.Rotation{}, err
	}
	total, err := s.st.CountNEKs(ctx)
	if err != nil {
		return store.Rotation{}, err
	}
	for attempt := 0; ; attempt++ {
		if _, ok := meta.MEK(target); ok {
			return store.Rotation{}, fmt.Errorf("secrets: MEK version %d is already recorded; the provider did not create a new version", target)
		}
		now := time.Now().UTC()
		rot := store.Rotation{Kind: store.RotationMEK, From: meta.ActiveMEK, Target: target, Total: total, StartedAt: now, UpdatedAt: now}
		for i := range meta.MEKs {
			if meta.MEKs[i].Status == store.KeyActive {
				meta.MEKs[i].Status = store.KeyRetiring
			}
		}
		meta.MEKs = append(meta.MEKs, entry)
		meta.ActiveMEK = target
		err := s.st.StartMEKRotation(ctx, &meta, &rot)
		if err == nil {
			s.cacheMEK(target, aead)
			return rot, nil
		}
		if !errors.Is(err, store.ErrConflict) || attempt >= maxAttempts {
			return store.Rotation{}, err
		}
		if meta, err = s.st.GetESSMeta(ctx); err != nil {
			return store.Rotation{}, err
		}
	}
}

// nextMEKVersion returns the version a new rotation moves to. A version the
// provider holds above every recorded one was created by a run that died
// before recording its rotation; it is adopted rather than minting another.
func (s *Service) nextMEKVersion(ctx context.Context, meta store.ESSMeta) (int, error) {
	known := 0
	for _, m := range meta.MEKs {
		known = max(known, m.Version)
	}
	latest, key, err := s.p.Latest(ctx)
	clear(key)
	if err != nil && !errors.Is(err, ErrNoMEK) {
		return 0, err
	}
	if latest > known {
		s.log.Info("secrets: adopting a MEK version the provider holds but no rotation recorded", "mekVersion", latest)
		return latest, nil
	}
	return s.p.Create(ctx)
}

// rewrapBatch re-wraps the NEK records of chunk that are not yet under the
// target MEK, in one guarded transaction; if any changed since read, each
// is re-read and retried on its own.
func (s *Service) rewrapBatch(ctx context.Context, chunk []store.NEK, target int, aead cipher.AEAD) (int, error) {
	todo := make([]store.NEK, 0, len(chunk))
	for _, n := range chunk {
		if n.MEK != target && len(n.Wrapped) > 0 {
			todo = append(todo, n)
		}
	}
	if len(todo) == 0 {
		return 0, nil
	}
	for i := range todo {
		if err := s.rewrap(ctx, &todo[i], target, aead); err != nil {
			return 0, err
		}
	}
	if err := ctx.Err(); err != nil {
		return 0, err // see reencryptBatch
	}
	err := s.st.UpdateNEKs(ctx, todo)
	if !errors.Is(err, store.ErrConflict) {
		return len(todo), err
	}
	changed := 0
	for _, n := range todo {
		ok, err := s.rewrapOne(ctx, n.Account, n.Version, target, aead)
		if err != nil {
			return changed, err
		}
		if ok {
			changed++
		}
	}
	return changed, nil
}

// rewrap replaces n's wrapping with one under the target MEK.
func (s *Service) rewrap(ctx context.Context, n *store.NEK, target int, aead cipher.AEAD) error {
	key, err := s.unwrap(ctx, *n)
	if err != nil {
		return err
	}
	n.Wrapped, err = seal(aead, key, nekAAD(n.Account, n.Version))
	clear(key)
	n.MEK = target
	return err
}

// rewrapOne re-reads one NEK record and re-wraps it, until it is under the
// target or gone. It reports whether it wrote.
func (s *Service) rewrapOne(ctx context.Context, account string, version, target int, aead cipher.AEAD) (bool, error) {
	for range maxAttempts {
		n, err := s.st.GetNEK(ctx, account, version)
		if errors.Is(err, store.ErrNotFound) {
			return false, nil
		}
		if err != nil {
			return false, err
		}
		if n.MEK == target || len(n.Wrapped) == 0 {
			return false, nil
		}
		if err := s.rewrap(ctx, &n, target, aead); err != nil {
			return false, err
		}
		err = s.st.UpdateNEKs(ctx, []store.NEK{n})
		if errors.Is(err, store.ErrConflict) {
			continue
		}
		return err == nil, err
	}
	return false, fmt.Errorf("secrets: key version %d of account %s keeps changing; run the rotation again", version, account)
}

// RotateNEK gives account a new NEK version: it becomes active at once, the
// account's secrets are re-encrypted with it in guarded batches (a secret
// written meanwhile is re-read and retried, never overwritten), and the old
// version is retired, its key erased, once no secret references it. An
// interrupted run continues with the same target version when run again.
// progress (may be nil) gets the secrets checked and the total.
func (s *Service) RotateNEK(ctx context.Context, account string, progress func(done, total int)) (RotationResult, error) {
	switch account {
	case "":
		return RotationResult{}, errors.New("secrets: which account's key to rotate?")
	case SystemAccount:
		return RotationResult{}, ErrSystemAccount
	}
	start := time.Now()
	l, err := s.lock(ctx)
	if err != nil {
		return RotationResult{}, err
	}
	defer l.Unlock()

	rot, err := s.st.GetRotation(ctx, store.RotationNEK, account)
	resumed := err == nil
	switch {
	case resumed:
		s.log.Info("secrets: resuming NEK rotation", "account", account, "from", rot.From, "target", rot.Target)
		if rot.Total, err = s.st.CountSecrets(ctx); err != nil {
			return RotationResult{}, err
		}
		rot.Done, rot.Changed = 0, 0
	case errors.Is(err, store.ErrNotFound):
		if rot, err = s.beginNEKRotation(ctx, account); err != nil {
			return RotationResult{}, err
		}
		s.log.Info("secrets: NEK rotation started", "account", account, "from", rot.From, "target", rot.Target)
	default:
		return RotationResult{}, err
	}
	res := RotationResult{Kind: store.RotationNEK, Account: account, From: rot.From, Target: rot.Target, Resumed: resumed}
	rot.Owner = l.Key()
	target, err := s.nek(ctx, account, rot.Target)
	if err != nil {
		return res, err
	}
	var refsMu sync.Mutex
	refs := map[int]int{}
	res.Reencrypted, err = sweep(ctx, s, &rot, s.st.ScanSecrets, func(ctx context.Context, chunk []store.SealedSecret) (int, error) {
		n, left, err := s.reencryptBatch(ctx, account, chunk, rot.Target, target)
		refsMu.Lock()
		for v, c := range left {
			refs[v] += c
		}
		refsMu.Unlock()
		return n, err
	}, progress)
	if err != nil {
		return res, err
	}
	for attempt := 0; ; attempt++ {
		neks, err := s.st.ListAccountNEKs(ctx, account)
		if err != nil {
			return res, err
		}
		var retire []store.NEK
		res.Retired = nil
		for _, n := range neks {
			if n.Status != store.KeyRetiring {
				continue
			}
			if refs[n.Version] > 0 {
				return res, fmt.Errorf("secrets: %d secrets of account %s still use key version %d; run the rotation again", refs[n.Version], account, n.Version)
			}
			n.Status, n.Wrapped, n.MEK = store.KeyRetired, nil, 0
			retire = append(retire, n)
			res.Retired = append(res.Retired, n.Version)
		}
		err = s.st.FinishNEKRotation(ctx, account, retire)
		if errors.Is(err, store.ErrConflict) && attempt < maxAttempts {
			continue
		}
		if err != nil {
			return res, err
		}
		break
	}
	s.mu.Lock()
	for _, v := range res.Retired {
		delete(s.neks, nekRef{account, v})
	}
	s.mu.Unlock()
	res.Seconds = time.Since(start).Seconds()
	s.log.Info("secrets: NEK rotation finished", "account", account, "target", rot.Target, "reencrypted", res.Reencrypted, "retired", res.Retired, "seconds", res.Seconds)
	return res, nil
}

// beginNEKRotation makes a new NEK version the account's active one, marks
// the previous active version retiring, and records the rotation, at once.
func (s *Service) beginNEKRotation(ctx context.Context, account string) (store.Rotation, error) {
	for attempt := 0; ; attempt++ {
		head, err := s.st.GetNEKHead(ctx, account)
		if errors.Is(err, store.ErrNotFound) {
			return store.Rotation{}, fmt.Errorf("%w: %s", ErrNoAccountKey, account)
		}
		if err != nil {
			return store.Rotation{}, err
		}
		meta, err := s.st.GetESSMeta(ctx)
		if err != nil {
			return store.Rotation{}, err
		}
		neks, err := s.st.ListAccountNEKs(ctx, account)
		if err != nil {
			return store.Rotation{}, err
		}
		total, err := s.st.CountSecrets(ctx)
		if err != nil {
			return store.Rotation{}, err
		}
		next := 1
		var retiring []store.NEK
		for _, n := range neks {
			next = max(next, n.Version+1)
			if n.Status == store.KeyActive {
				retiring = append(retiring, n)
			}
		}
		m, err := s.mek(ctx, meta.ActiveMEK)
		if err != nil {
			return store.Rotation{}, err
		}
		key, err := newKey()
		if err != nil {
			return store.Rotation{}, err
		}
		wrapped, err := seal(m, key, nekAAD(account, next))
		var aead cipher.AEAD
		if err == nil {
			aead, err = newAEAD(key)
		}
		clear(key)
		if err != nil {
			return store.Rotation{}, err
		}
		now := time.Now().UTC()
		rot := store.Rotation{Kind: store.RotationNEK, Account: account, From: head.Active, Target: next, Total: total, StartedAt: now, UpdatedAt: now}
		nek := store.NEK{Account: account, Version: next, MEK: meta.ActiveMEK, Wrapped: wrapped, Status: store.KeyActive, CreatedAt: now}
		err = s.st.StartNEKRotation(ctx, meta.Revision, head, nek, retiring, &rot)
		if err == nil {
			s.cacheNEK(nekRef{account, next}, aead)
			return rot, nil
		}
		if !errors.Is(err, store.ErrConflict) || attempt >= maxAttempts {
			return store.Rotation{}, err
		}
	}
}

// reencryptBatch re-encrypts the account's secrets in chunk that are not
// under the target NEK, in one guarded transaction; if any changed since
// read, each is re-read and retried on its own. It returns how many it
// rewrote and, by NEK version, the account's secrets in chunk afterwards.
func (s *Service) reencryptBatch(ctx context.Context, account string, chunk []store.SealedSecret, target int, aead cipher.AEAD) (int, map[int]int, error) {
	refs := map[int]int{}
	var todo []store.SealedSecret
	for _, sec := range chunk {
		if sec.Account != account || sec.NEK == 0 {
			continue // another account's, or legacy (Start re-seals those)
		}
		if sec.NEK == target {
			refs[target]++
			continue
		}
		todo = append(todo, sec)
	}
	if len(todo) == 0 {
		return 0, refs, nil
	}
	for i := range todo {
		if err := s.reencrypt(ctx, &todo[i], target, aead); err != nil {
			return 0, refs, err
		}
	}
	if s.beforeReencrypt != nil {
		s.beforeReencrypt(todo)
	}
	// etcd may still apply a transaction sent with a cancelled context;
	// once cancelled, send no more.
	if err := ctx.Err(); err != nil {
		return 0, refs, err
	}
	err := s.st.UpdateSecrets(ctx, todo)
	if err == nil {
		refs[target] += len(todo)
		return len(todo), refs, nil
	}
	if !errors.Is(err, store.ErrConflict) {
		return 0, refs, err
	}
	changed := 0
	for _, sec := range todo {
		v, wrote, err := s.reencryptOne(ctx, sec, target, aead)
		if err != nil {
			return changed, refs, err
		}
		if v != 0 {
			refs[v]++
		}
		if wrote {
			changed++
		}
	}
	return changed, refs, nil
}

// reencrypt replaces sec's ciphertext with one under the target NEK.
func (s *Service) reencrypt(ctx context.Context, sec *store.SealedSecret, target int, aead cipher.AEAD) error {
	place := Place{Account: sec.Account, FunctionID: sec.FunctionID, VersionID: sec.VersionID, Name: sec.Name}
	plain, err := s.Open(ctx, place, Sealed{NEK: sec.NEK, Ciphertext: sec.Ciphertext})
	if err != nil {
		return err
	}
	sec.Ciphertext, err = seal(aead, plain, place.aad())
	clear(plain)
	sec.NEK, sec.HeadRevision = target, 0
	return err
}

// reencryptOne re-reads one secret and re-encrypts it until it is under the
// target or gone, so a value written concurrently is never overwritten with
// the old one. It returns the NEK version the secret ends under (0: gone)
// and whether it wrote.
func (s *Service) reencryptOne(ctx context.Context, stale store.SealedSecret, target int, aead cipher.AEAD) (int, bool, error) {
	for range maxAttempts {
		sec, err := s.st.GetSecret(ctx, stale.FunctionID, stale.VersionID, stale.Name)
		if errors.Is(err, store.ErrNotFound) {
			return 0, false, nil
		}
		if err != nil {
			return 0, false, err
		}
		if sec.NEK == target || sec.Account != stale.Account || sec.NEK == 0 {
			return sec.NEK, false, nil
		}
		if err := s.reencrypt(ctx, &sec, target, aead); err != nil {
			return 0, false, err
		}
		err = s.st.UpdateSecrets(ctx, []store.SealedSecret{sec})
		if errors.Is(err, store.ErrConflict) {
			continue
		}
		return target, err == nil, err
	}
	return 0, false, fmt.Errorf("secrets: secret %s of function %s version %s keeps changing; run the rotation again", stale.Name, stale.FunctionID, stale.VersionID)
}

// sweep pages through every record scan returns, hands chunks of up to
// s.batch records to s.workers goroutines running do, and from this
// goroutine adds up what they changed, reports progress and records it in
// the rotation record now and then. It stops at the first error.
func sweep[T any](ctx context.Context, s *Service, rot *store.Rotation,
	scan func(ctx context.Context, cursor string, limit int) ([]T, string, error),
	do func(ctx context.Context, chunk []T) (int, error),
	progress func(done, total int),
) (int, error) {
	wctx, cancel := context.WithCancel(ctx)
	defer cancel()
	type result struct {
		seen, changed int
		err           error
	}
	jobs := make(chan []T, s.workers)
	results := make(chan result, s.workers)
	var scanErr error
	var wg sync.WaitGroup
	wg.Go(func() {
		defer close(jobs)
		for cursor := ""; ; {
			page, next, err := scan(wctx, cursor, scanPage)
			if err != nil {
				scanErr = err
				return
			}
			for chunk := range slices.Chunk(page, s.batch) {
				select {
				case jobs <- chunk:
				case <-wctx.Done():
					return
				}
			}
			if next == "" {
				return
			}
			cursor = next
		}
	})
	var workers sync.WaitGroup
	for range s.workers {
		workers.Go(func() {
			for chunk := range jobs {
				n, err := do(wctx, chunk)
				results <- result{len(chunk), n, err}
			}
		})
	}
	go func() {
		workers.Wait()
		close(results)
	}()

	var firstErr error
	changed := 0
	saved := time.Now()
	for r := range results {
		if r.err != nil {
			if firstErr == nil {
				firstErr = r.err
				cancel()
			}
			continue
		}
		rot.Done += r.seen
		rot.Total = max(rot.Total, rot.Done)
		changed += r.changed
		if rot.Kind == store.RotationNEK {
			rot.Changed += r.changed
		}
		if progress != nil {
			progress(rot.Done, rot.Total)
		}
		if s.afterBatch != nil {
			s.afterBatch(rot.Done)
		}
		if time.Since(saved) >= progressEvery {
			s.saveProgress(ctx, rot)
			saved = time.Now()
		}
	}
	wg.Wait()
	if firstErr == nil {
		firstErr = scanErr
	}
	if ctx.Err() != nil {
		// Cancelled: whatever the batches in flight said, that is why.
		firstErr = ctx.Err()
	}
	// Record where it got to, also (especially) when interrupted.
	s.saveProgress(context.WithoutCancel(ctx), rot)
	return changed, firstErr
}

// saveProgress writes the rotation's counters; failing to is not fatal.
func (s *Service) saveProgress(ctx context.Context, rot *store.Rotation) {
	ctx, cancel := context.WithTimeout(ctx, 5*time.Second)
	defer cancel()
	rot.UpdatedAt = time.Now().UTC()
	if err := s.st.UpdateRotation(ctx, rot); err != nil {
		s.log.Warn("secrets: could not record rotation progress", "kind", rot.Kind, "err", err)
	}
}
