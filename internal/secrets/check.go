package secrets

import (
	"context"
	"fmt"
)

// CheckMEK asks the provider for the active master key version, bypassing
// the cache, and checks it is the key this installation recorded: the MEK
// provider's health for gantry status. It returns the active version.
func (s *Service) CheckMEK(ctx context.Context) (int, error) {
	meta, err := s.st.GetESSMeta(ctx)
	if err != nil {
		return 0, err
	}
	v := meta.ActiveMEK
	rec, ok := meta.MEK(v)
	if !ok {
		return v, fmt.Errorf("secrets: MEK version %d is not recorded in this installation", v)
	}
	key, err := s.p.Key(ctx, v)
	if err != nil {
		return v, err
	}
	aead, err := newAEAD(key)
	clear(key)
	if err != nil {
		return v, fmt.Errorf("secrets: MEK version %d: %w", v, err)
	}
	if _, err := open(aead, rec.Check, checkAAD(v)); err != nil {
		return v, fmt.Errorf("secrets: the provider's MEK version %d is not the key this installation recorded", v)
	}
	return v, nil
}
