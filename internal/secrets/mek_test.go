package secrets

import (
	"bytes"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/gantry-dev/gantry/internal/testutil"
)

func TestFileMEKVersions(t *testing.T) {
	t.Parallel()
	ctx := testutil.Context(t)
	keys := filepath.Join(t.TempDir(), "keys")
	p := NewFileMEK(keys)
	if _, _, err := p.Latest(ctx); !errors.Is(err, ErrNoMEK) {
		t.Fatalf("empty provider: %v", err)
	}
	for want := 1; want <= 3; want++ {
		v, err := p.Create(ctx)
		if err != nil || v != want {
			t.Fatalf("create: %d %v, want %d", v, err, want)
		}
		path := filepath.Join(keys, "mek", "v"+string(rune('0'+want))+".key")
		st, err := os.Stat(path)
		if err != nil || st.Mode().Perm() != 0o600 {
			t.Fatalf("%s: %v %v", path, st, err)
		}
	}
	dir, err := os.Stat(filepath.Join(keys, "mek"))
	if err != nil || dir.Mode().Perm() != 0o700 {
		t.Fatalf("key dir: %v %v", dir, err)
	}
	v, latest, err := p.Latest(ctx)
	if err != nil || v != 3 {
		t.Fatalf("latest: %d %v", v, err)
	}
	k3, err := NewFileMEK(keys).Key(ctx, 3)
	if err != nil || !bytes.Equal(k3, latest) {
		t.Fatalf("reloaded key differs: %v", err)
	}
	k1, _ := p.Key(ctx, 1)
	if bytes.Equal(k1, k3) {
		t.Fatal("versions share a key")
	}
	for _, tc := range []struct {
		name    string
		version int
		content []byte
		want    string
	}{
		{"missing version", 9, nil, "does not exist"},
		{"short file", 4, []byte("short"), "holds 5 bytes"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if tc.content != nil {
				if err := os.WriteFile(filepath.Join(keys, "mek", "v4.key"), tc.content, 0o600); err != nil {
					t.Fatal(err)
				}
			}
			if _, err := p.Key(ctx, tc.version); err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("key %d: %v, want %q", tc.version, err, tc.want)
			}
		})
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
