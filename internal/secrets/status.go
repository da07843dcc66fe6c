package secrets

import (
	"context"

	"github.com/gantry-dev/gantry/internal/model"
	"github.com/gantry-dev/gantry/internal/store"
)

// Status describes the key hierarchy (see model.KeyStatus).
type Status = model.KeyStatus

// Status reports the MEK versions with the NEKs each wraps, every account's
// NEK versions with the secrets each seals, and any rotation that is
// running or was interrupted. It reads every NEK record and every secret.
func (s *Service) Status(ctx context.Context) (Status, error) { return s.status(ctx, true) }

// Progress is Status without the counts: the metadata and the rotations
// only, cheap enough to poll while a rotation runs.
func (s *Service) Progress(ctx context.Context) (Status, error) { return s.status(ctx, false) }

func (s *Service) status(ctx context.Context, counts bool) (Status, error) {
	meta, err := s.st.GetESSMeta(ctx)
	if err != nil {
		return Status{}, err
	}
	out := Status{ActiveMEK: meta.ActiveMEK, Counted: counts, Rotations: []model.KeyRotationProgress{}}
	rots, err := s.st.ListRotations(ctx)
	if err != nil {
		return Status{}, err
	}
	for _, r := range rots {
		state := model.RotationInterrupted
		held, err := s.st.LockHeld(ctx, r.Owner)
		if err != nil {
			return Status{}, err
		}
		if held {
			state = model.RotationRunning
		}
		out.Rotations = append(out.Rotations, model.KeyRotationProgress{Kind: r.Kind, Account: r.Account, From: r.From, Target: r.Target,
			Done: r.Done, Total: r.Total, Changed: r.Changed, State: state, StartedAt: r.StartedAt, UpdatedAt: r.UpdatedAt})
	}
	neksByMEK := map[int]int{}
	if counts {
		if out.Accounts, err = s.countKeys(ctx, neksByMEK, &out.LegacySecrets); err != nil {
			return Status{}, err
		}
	}
	for _, m := range meta.MEKs {
		out.MEKs = append(out.MEKs, model.MEKStatus{Version: m.Version, Status: m.Status, NEKs: neksByMEK[m.Version], CreatedAt: m.CreatedAt, RetiredAt: m.RetiredAt})
	}
	return out, nil
}

// countKeys scans every NEK record and every secret.
func (s *Service) countKeys(ctx context.Context, neksByMEK map[int]int, legacy *int) ([]model.AccountKeys, error) {
	secrets := map[nekRef]int{}
	for cursor := ""; ; {
		page, next, err := s.st.ScanSecrets(ctx, cursor, scanPage)
		if err != nil {
			return nil, err
		}
		for _, sec := range page {
			if sec.NEK == 0 {
				*legacy++
				continue
			}
			secrets[nekRef{sec.Account, sec.NEK}]++
		}
		if next == "" {
			break
		}
		cursor = next
	}
	var accounts []model.AccountKeys
	for cursor := ""; ; {
		page, next, err := s.st.ScanNEKs(ctx, cursor, scanPage)
		if err != nil {
			return nil, err
		}
		for _, n := range page {
			// Records come in key order: an account's versions are together.
			if len(accounts) == 0 || accounts[len(accounts)-1].Account != n.Account {
				accounts = append(accounts, model.AccountKeys{Account: n.Account})
			}
			a := &accounts[len(accounts)-1]
			if n.Status == store.KeyActive {
				a.ActiveNEK = n.Version
			}
			if len(n.Wrapped) > 0 {
				neksByMEK[n.MEK]++
			}
			a.NEKs = append(a.NEKs, model.NEKStatus{Version: n.Version, Status: n.Status, MEK: n.MEK,
				Secrets: secrets[nekRef{n.Account, n.Version}], CreatedAt: n.CreatedAt})
		}
		if next == "" {
			break
		}
		cursor = next
	}
	return accounts, nil
}
