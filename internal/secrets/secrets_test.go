package secrets

import (
	"bytes"
	"errors"
	"os"
	"path/filepath"
	"testing"
)

func TestSealOpenBindsPlace(t *testing.T) {
	k, err := LoadOrCreateKeyFile(filepath.Join(t.TempDir(), "keys", "mek"))
	if err != nil {
		t.Fatal(err)
	}
	here := Place{"acct", "fn", "v1", "TOKEN"}
	marker := []byte("marker-3f1c-plaintext")
	sealed, err := k.Seal(here, marker)
	if err != nil {
		t.Fatal(err)
	}
	if bytes.Contains(sealed, marker) {
		t.Fatal("ciphertext contains the plaintext")
	}
	got, err := k.Open(here, sealed)
	if err != nil || !bytes.Equal(got, marker) {
		t.Fatalf("open: %q %v", got, err)
	}
	for _, tc := range []struct {
		name  string
		place Place
	}{
		{"other secret name", Place{"acct", "fn", "v1", "OTHER"}},
		{"other version", Place{"acct", "fn", "v2", "TOKEN"}},
		{"other account", Place{"acct2", "fn", "v1", "TOKEN"}},
		{"shifted boundaries", Place{"acctf", "n", "v1", "TOKEN"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if _, err := k.Open(tc.place, sealed); !errors.Is(err, ErrOpen) {
				t.Fatalf("moved ciphertext opened: %v", err)
			}
		})
	}
	if _, err := k.Open(here, sealed[:5]); !errors.Is(err, ErrOpen) {
		t.Fatalf("short ciphertext: %v", err)
	}
}

func TestKeyFileIsPrivateAndStable(t *testing.T) {
	path := filepath.Join(t.TempDir(), "mek")
	k1, err := LoadOrCreateKeyFile(path)
	if err != nil {
		t.Fatal(err)
	}
	st, err := os.Stat(path)
	if err != nil || st.Mode().Perm() != 0o600 {
		t.Fatalf("key file mode %v %v", st.Mode(), err)
	}
	k2, err := LoadOrCreateKeyFile(path)
	if err != nil || k1.KeyID() != k2.KeyID() {
		t.Fatalf("reloaded key differs: %v", err)
	}
	if err := os.WriteFile(path, []byte("short"), 0o600); err != nil {
		t.Fatal(err)
	}
	if _, err := LoadOrCreateKeyFile(path); err == nil {
		t.Fatal("accepted a malformed key file")
	}
}
