package secrets

import (
	"bytes"
	"testing"
)

// FuzzDecodeSealedKey feeds arbitrary bytes to the decoder of SealKey's
// output: it must never panic, must reject what it cannot use, and must
// give back exactly what it was given when the encoding is well formed.
func FuzzDecodeSealedKey(f *testing.F) {
	f.Add(encodeSealedKey(1, make([]byte, minCiphertext)))
	f.Add(encodeSealedKey(300, bytes.Repeat([]byte{9}, 64)))
	f.Add([]byte{1, 0x80, 0x80, 0x80, 0x80, 0x80, 0x80, 0x80, 0x80, 0x80, 0x01})
	f.Add([]byte{})
	f.Fuzz(func(t *testing.T, b []byte) {
		v, ct, err := decodeSealedKey(b)
		if err != nil {
			return
		}
		if v <= 0 || len(ct) < minCiphertext {
			t.Fatalf("accepted version %d with %d bytes of ciphertext", v, len(ct))
		}
		if again := encodeSealedKey(v, ct); !bytes.HasSuffix(b, ct) || len(again) > len(b) {
			t.Fatalf("round trip: %x -> %d %x -> %x", b, v, ct, again)
		}
	})
}
