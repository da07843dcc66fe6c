package bussecrets

import (
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
)

// ReadFiles loads the layout's files under dir (none if dir does not
// exist), as layout paths.
func ReadFiles(dir string) (map[string][]byte, error) {
	have := map[string][]byte{}
	for _, top := range []string{"ca", "csc", "cpc"} {
		root := filepath.Join(dir, top)
		err := filepath.WalkDir(root, func(p string, d fs.DirEntry, err error) error {
			if err != nil {
				if errors.Is(err, fs.ErrNotExist) && p == root {
					return filepath.SkipDir
				}
				return err
			}
			if !d.Type().IsRegular() {
				return nil
			}
			rel, err := filepath.Rel(dir, p)
			if err != nil {
				return err
			}
			b, err := os.ReadFile(p)
			if err != nil {
				return err
			}
			have[filepath.ToSlash(rel)] = b
			return nil
		})
		if err != nil {
			return nil, fmt.Errorf("bussecrets: reading %s: %w", dir, err)
		}
	}
	return have, nil
}

// WriteFiles writes outs under dir: directories 0700, private files 0600,
// the rest 0644. It never replaces a file: one that appeared meanwhile is an
// error.
func WriteFiles(dir string, outs []Output) error {
	for _, o := range outs {
		mode := os.FileMode(0o644)
		if o.Private {
			mode = 0o600
		}
		if err := writeNew(filepath.Join(dir, filepath.FromSlash(o.Path)), o.Data, mode); err != nil {
			return err
		}
	}
	return nil
}

// writeNew writes data to path with mode, whole or not at all (a temporary
// file linked into place), and fails if path exists.
func writeNew(path string, data []byte, mode os.FileMode) error {
	d := filepath.Dir(path)
	if err := os.MkdirAll(d, 0o700); err != nil {
		return fmt.Errorf("bussecrets: %w", err)
	}
	tmp, err := os.CreateTemp(d, ".gen-*")
	if err != nil {
		return fmt.Errorf("bussecrets: %w", err)
	}
	defer os.Remove(tmp.Name())
	if err := tmp.Chmod(mode); err != nil {
		tmp.Close()
		return fmt.Errorf("bussecrets: %w", err)
	}
	if _, err := tmp.Write(data); err != nil {
		tmp.Close()
		return fmt.Errorf("bussecrets: writing %s: %w", path, err)
	}
	if err := tmp.Sync(); err != nil {
		tmp.Close()
		return fmt.Errorf("bussecrets: writing %s: %w", path, err)
	}
	if err := tmp.Close(); err != nil {
		return fmt.Errorf("bussecrets: writing %s: %w", path, err)
	}
	if err := os.Link(tmp.Name(), path); err != nil {
		return fmt.Errorf("bussecrets: %w", err)
	}
	return nil
}
