package secrets

import (
	"context"
	"errors"
	"fmt"

	"github.com/gantry-dev/gantry/internal/store"
)

// upgradeLegacy re-seals, under account NEKs, every secret that releases
// before the secret store sealed directly with the key file (NEK 0), then
// records that none is left. The file provider adopts that key file as MEK
// version 1, which is what opens them. It is idempotent: a crash halfway
// leaves some records re-sealed and the rest for the next start.
func (s *Service) upgradeLegacy(ctx context.Context) error {
	n := 0
	for cursor := ""; ; {
		page, next, err := s.st.ScanSecrets(ctx, cursor, scanPage)
		if err != nil {
			return err
		}
		for _, sec := range page {
			if sec.NEK != 0 {
				continue
			}
			wrote, err := s.upgradeOne(ctx, sec)
			if err != nil {
				return err
			}
			if wrote {
				n++
			}
		}
		if next == "" {
			break
		}
		cursor = next
	}
	for attempt := 0; ; attempt++ {
		meta, err := s.st.GetESSMeta(ctx)
		if err != nil || meta.LegacyDone {
			return err
		}
		meta.LegacyDone = true
		err = s.st.UpdateESSMeta(ctx, &meta)
		if errors.Is(err, store.ErrConflict) && attempt < maxAttempts {
			continue
		}
		if err != nil {
			return err
		}
		break
	}
	if n > 0 {
		s.log.Info("secrets: re-sealed secrets of the pre-ESS key file under account keys", "secrets", n)
	}
	return nil
}

// upgradeOne re-seals one legacy secret unless it changed or went away.
func (s *Service) upgradeOne(ctx context.Context, sec store.SealedSecret) (bool, error) {
	for attempt := 0; attempt < maxAttempts; attempt++ {
		if attempt > 0 {
			var err error
			sec, err = s.st.GetSecret(ctx, sec.FunctionID, sec.VersionID, sec.Name)
			if errors.Is(err, store.ErrNotFound) {
				return false, nil
			}
			if err != nil {
				return false, err
			}
			if sec.NEK != 0 {
				return false, nil
			}
		}
		account := sec.Account
		if account == "" {
			f, err := s.st.GetFunction(ctx, sec.FunctionID, sec.VersionID)
			if errors.Is(err, store.ErrNotFound) {
				s.log.Warn("secrets: skipping a legacy secret whose function version is gone", "function", sec.FunctionID, "version", sec.VersionID, "secret", sec.Name)
				return false, nil
			}
			if err != nil {
				return false, err
			}
			account = f.NCAID
		}
		place := Place{Account: account, FunctionID: sec.FunctionID, VersionID: sec.VersionID, Name: sec.Name}
		plain, err := s.Open(ctx, place, Sealed{Ciphertext: sec.Ciphertext})
		if err != nil {
			return false, fmt.Errorf("secrets: %s was sealed with the key file of an earlier release and does not open with MEK version 1; start once with the file provider and the old data dir's keys/secrets.key: %w", place, err)
		}
		sealed, err := s.Seal(ctx, place, plain)
		clear(plain)
		if err != nil {
			return false, err
		}
		sec.Account, sec.NEK, sec.KeyID, sec.Ciphertext, sec.HeadRevision = account, sealed.NEK, "", sealed.Ciphertext, sealed.HeadRevision
		err = s.st.UpdateSecrets(ctx, []store.SealedSecret{sec})
		if errors.Is(err, store.ErrConflict) {
			continue
		}
		return err == nil, err
	}
	return false, fmt.Errorf("secrets: secret %s of function %s keeps changing during the upgrade; restart to retry", sec.Name, sec.FunctionID)
}
