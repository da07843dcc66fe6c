package secrets

import (
	"context"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"regexp"
	"strconv"
)

// MEKProvider holds the versions of the master key. The service asks it for
// a version when it first needs one and keeps the key in memory; only a MEK
// rotation asks for a new version.
type MEKProvider interface {
	// Key returns version v (32 bytes).
	Key(ctx context.Context, version int) ([]byte, error)
	// Latest returns the highest version, or ErrNoMEK if there is none.
	Latest(ctx context.Context) (version int, key []byte, err error)
	// Create makes a new random version above every existing one and
	// returns its number.
	Create(ctx context.Context) (version int, err error)
}

// FileMEK keeps each MEK version in its own 0600 file, <dir>/mek/v<N>.key,
// in a 0700 directory: the development default. A key file of releases
// before the secret store (<dir>/secrets.key) is adopted as version 1, so
// secrets sealed with it keep opening.
type FileMEK struct {
	dir    string
	legacy string
}

var _ MEKProvider = (*FileMEK)(nil)

// NewFileMEK keeps versions under keysDir/mek (keysDir is normally
// <data-dir>/keys).
func NewFileMEK(keysDir string) *FileMEK {
	return &FileMEK{dir: filepath.Join(keysDir, "mek"), legacy: filepath.Join(keysDir, "secrets.key")}
}

var versionFile = regexp.MustCompile(`^v([1-9][0-9]{0,8})\.key$`)

func (f *FileMEK) path(v int) string { return filepath.Join(f.dir, "v"+strconv.Itoa(v)+".key") }

// Key reads version v.
func (f *FileMEK) Key(_ context.Context, v int) ([]byte, error) {
	if err := f.adoptLegacy(); err != nil {
		return nil, err
	}
	key, err := os.ReadFile(f.path(v))
	if errors.Is(err, fs.ErrNotExist) {
		return nil, fmt.Errorf("secrets: MEK version %d: %s does not exist", v, f.path(v))
	}
	if err != nil {
		return nil, fmt.Errorf("secrets: read MEK version %d: %w", v, err)
	}
	if len(key) != keySize {
		return nil, fmt.Errorf("secrets: MEK file %s holds %d bytes, want %d", f.path(v), len(key), keySize)
	}
	return key, nil
}

// Latest reads the highest version present.
func (f *FileMEK) Latest(ctx context.Context) (int, []byte, error) {
	if err := f.adoptLegacy(); err != nil {
		return 0, nil, err
	}
	v, err := f.highest()
	if err != nil {
		return 0, nil, err
	}
	if v == 0 {
		return 0, nil, ErrNoMEK
	}
	key, err := f.Key(ctx, v)
	return v, key, err
}

// Create writes a new random version. Two callers racing for the same
// number cannot both win: the file is linked into place only if absent.
func (f *FileMEK) Create(_ context.Context) (int, error) {
	if err := f.adoptLegacy(); err != nil {
		return 0, err
	}
	v, err := f.highest()
	if err != nil {
		return 0, err
	}
	key, err := newKey()
	if err != nil {
		return 0, err
	}
	if err := f.writeNew(f.path(v+1), key); err != nil {
		return 0, err
	}
	return v + 1, nil
}

// highest returns the highest version file in the directory (0: none).
func (f *FileMEK) highest() (int, error) {
	entries, err := os.ReadDir(f.dir)
	if errors.Is(err, fs.ErrNotExist) {
		return 0, nil
	}
	if err != nil {
		return 0, fmt.Errorf("secrets: list MEK versions: %w", err)
	}
	top := 0
	for _, e := range entries {
		if m := versionFile.FindStringSubmatch(e.Name()); m != nil {
			n, _ := strconv.Atoi(m[1])
			top = max(top, n)
		}
	}
	return top, nil
}

// adoptLegacy copies the pre-ESS key file to v1.key when no v1 exists.
func (f *FileMEK) adoptLegacy() error {
	if _, err := os.Stat(f.path(1)); err == nil || !errors.Is(err, fs.ErrNotExist) {
		return nil
	}
	key, err := os.ReadFile(f.legacy)
	if errors.Is(err, fs.ErrNotExist) {
		return nil
	}
	if err != nil {
		return fmt.Errorf("secrets: read legacy key file: %w", err)
	}
	if len(key) != keySize {
		return fmt.Errorf("secrets: legacy key file %s holds %d bytes, want %d", f.legacy, len(key), keySize)
	}
	if err := f.writeNew(f.path(1), key); err != nil && !errors.Is(err, fs.ErrExist) {
		return err
	}
	return nil
}

// writeNew writes key to path (0600) only if path does not exist, without
// a moment in which path holds a partial key.
func (f *FileMEK) writeNew(path string, key []byte) error {
	if err := os.MkdirAll(f.dir, 0o700); err != nil {
		return fmt.Errorf("secrets: %w", err)
	}
	tmp, err := os.CreateTemp(f.dir, ".new-*")
	if err != nil {
		return fmt.Errorf("secrets: %w", err)
	}
	defer os.Remove(tmp.Name())
	if err := tmp.Chmod(0o600); err != nil {
		tmp.Close()
		return fmt.Errorf("secrets: %w", err)
	}
	if _, err := tmp.Write(key); err != nil {
		tmp.Close()
		return fmt.Errorf("secrets: write MEK: %w", err)
	}
	if err := tmp.Sync(); err != nil {
		tmp.Close()
		return fmt.Errorf("secrets: write MEK: %w", err)
	}
	if err := tmp.Close(); err != nil {
		return fmt.Errorf("secrets: write MEK: %w", err)
	}
	if err := os.Link(tmp.Name(), path); err != nil {
		return fmt.Errorf("secrets: write MEK %s: %w", path, err)
	}
	return nil
}
