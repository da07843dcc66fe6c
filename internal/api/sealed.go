package api

import (
	"context"
	"errors"

	"github.com/gantry-dev/gantry/internal/secrets"
	"github.com/gantry-dev/gantry/internal/store"
)

// withSealed seals value at place (its own place, so a ciphertext moved to
// another record or account does not open) and hands the sealed record to
// write; when write conflicts because the account's NEK rotated in between,
// it seals again, a few times.
func withSealed(ctx context.Context, seal Sealer, place secrets.Place, value []byte, write func(store.SealedSecret) error) error {
	for attempt := 0; ; attempt++ {
		sealed, err := seal.Seal(ctx, place, value)
		if err != nil {
			return err
		}
		err = write(store.SealedSecret{Name: place.Name, Account: place.Account, NEK: sealed.NEK,
			Ciphertext: sealed.Ciphertext, HeadRevision: sealed.HeadRevision})
		if errors.Is(err, store.ErrConflict) && attempt < 3 {
			continue
		}
		return err
	}
}
