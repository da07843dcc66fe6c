package secrets

import (
	"bytes"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/gantry-dev/gantry/internal/testutil"
)

// TestFileMEKFiles checks what is particular to key files: 0600 files in
// a 0700 directory, and a file that does not hold a key. Versions are
// TestMEKProviders'.
func TestFileMEKFiles(t *testing.T) {
	t.Parallel()
	ctx := testutil.Context(t)
	keys := filepath.Join(t.TempDir(), "keys")
	p := NewFileMEK(keys)
	for want := 1; want <= 2; want++ {
		if v, err := p.Create(ctx); err != nil || v != want {
			t.Fatalf("create: %d %v, want %d", v, err, want)
		}
		path := filepath.Join(keys, "mek", fmt.Sprintf("v%d.key", want))
		st, err := os.Stat(path)
		if err != nil || st.Mode().Perm() != 0o600 {
			t.Fatalf("%s: %v %v", path, st, err)
		}
	}
	dir, err := os.Stat(filepath.Join(keys, "mek"))
	if err != nil || dir.Mode().Perm() != 0o700 {
		t.Fatalf("key dir: %v %v", dir, err)
	}
	if err := os.WriteFile(filepath.Join(keys, "mek", "v3.key"), []byte("short"), 0o600); err != nil {
		t.Fatal(err)
	}
	if _, err := p.Key(ctx, 3); err == nil || !strings.Contains(err.Error(), "holds 5 bytes") {
		t.Fatalf("key 3: %v, want it to say the file holds 5 bytes", err)
	}
}

func TestFileMEKAdoptsTheLegacyKeyFile(t *testing.T) {
	t.Parallel()
	ctx := testutil.Context(t)
	keys := t.TempDir()
	legacy := bytes.Repeat([]byte{1}, 32)
	if err := os.WriteFile(filepath.Join(keys, "secrets.key"), legacy, 0o600); err != nil {
		t.Fatal(err)
	}
	v, key, err := NewFileMEK(keys).Latest(ctx)
	if err != nil || v != 1 || !bytes.Equal(key, legacy) {
		t.Fatalf("latest: %d %v", v, err)
	}
	if v, err := NewFileMEK(keys).Create(ctx); err != nil || v != 2 {
		t.Fatalf("create after adoption: %d %v", v, err)
	}
}
