package secrets

import (
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"math"
)

// sealedKeyFormat is the first byte of SealKey's output, so the encoding can
// change later without guessing.
const sealedKeyFormat = 1

// errSealedKey is what decodeSealedKey answers for bytes it cannot parse.
var errSealedKey = errors.New("secrets: not a sealed key (bad format byte, key version or length)")

// SealKey seals one of Gantry's internal keys (such as the admin token
// signing key) under the system account's NEK, bound to name. The result
// records the NEK version, so OpenKey needs nothing else.
func (s *Service) SealKey(ctx context.Context, name string, plaintext []byte) ([]byte, error) {
	sealed, err := s.Seal(ctx, Place{Account: SystemAccount, Name: name}, plaintext)
	if err != nil {
		return nil, err
	}
	return encodeSealedKey(sealed.NEK, sealed.Ciphertext), nil
}

// OpenKey opens what SealKey returned for the same name.
func (s *Service) OpenKey(ctx context.Context, name string, sealed []byte) ([]byte, error) {
	nek, ct, err := decodeSealedKey(sealed)
	if err != nil {
		return nil, fmt.Errorf("%w: %w", ErrOpen, err)
	}
	return s.Open(ctx, Place{Account: SystemAccount, Name: name}, Sealed{NEK: nek, Ciphertext: ct})
}

// encodeSealedKey lays out format byte || uvarint NEK version || ciphertext.
func encodeSealedKey(nek int, ct []byte) []byte {
	b := make([]byte, 0, 1+binary.MaxVarintLen64+len(ct))
	b = append(b, sealedKeyFormat)
	b = binary.AppendUvarint(b, uint64(nek))
	return append(b, ct...)
}

// decodeSealedKey parses encodeSealedKey's layout. Its input may come from
// anywhere the owner stored it, so it trusts nothing: the version must be a
// positive int32 and the ciphertext long enough for a nonce and a tag.
func decodeSealedKey(b []byte) (int, []byte, error) {
	if len(b) < 2 || b[0] != sealedKeyFormat {
		return 0, nil, errSealedKey
	}
	v, n := binary.Uvarint(b[1:])
	if n <= 0 || v == 0 || v > math.MaxInt32 {
		return 0, nil, errSealedKey
	}
	ct := b[1+n:]
	if len(ct) < minCiphertext {
		return 0, nil, errSealedKey
	}
	return int(v), ct, nil
}

// minCiphertext is a GCM nonce and tag around an empty plaintext.
const minCiphertext = 12 + 16
