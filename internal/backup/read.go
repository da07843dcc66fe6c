package backup

import (
	"archive/tar"
	"bufio"
	"bytes"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strings"
	"time"

	bolt "go.etcd.io/bbolt"
	"go.etcd.io/etcd/api/v3/mvccpb"

	"github.com/gantry-dev/gantry/internal/store"
)

// Archive is a backup file that has been read and checked: every entry
// matched its size and SHA-256 in the manifest and the etcd snapshot its
// own trailer. Its entries are extracted into a scratch directory.
type Archive struct {
	Manifest Manifest
	dir      string
}

// corrupt wraps a reason in ErrCorrupt.
func corrupt(format string, args ...any) error {
	return fmt.Errorf("%w: %s", ErrCorrupt, fmt.Sprintf(format, args...))
}

// Extract reads a backup file from r into a new directory under tempDir
// (default: the system's) and checks it whole before returning, so a
// damaged file is refused before anything is restored. Newer formats and
// schemas are refused with ErrNewer.
func Extract(r io.Reader, tempDir string) (a *Archive, err error) {
	dir, err := os.MkdirTemp(tempDir, "gantry-restore-")
	if err != nil {
		return nil, fmt.Errorf("backup: scratch dir: %w", err)
	}
	a = &Archive{dir: dir}
	defer func() {
		if err != nil {
			a.Close()
		}
	}()
	tr := tar.NewReader(r)
	hdr, err := tr.Next()
	if err != nil {
		return nil, corrupt("no manifest: %v", tarErr(err))
	}
	if hdr.Name != ManifestName || hdr.Typeflag != tar.TypeReg {
		return nil, corrupt("the first entry is %q, not %s", hdr.Name, ManifestName)
	}
	if hdr.Size > maxManifest {
		return nil, corrupt("the manifest is %d bytes, more than a manifest can be", hdr.Size)
	}
	mb, err := io.ReadAll(tr)
	if err != nil {
		return nil, corrupt("manifest: %v", tarErr(err))
	}
	m, err := ParseManifest(mb)
	if err != nil {
		return nil, err
	}
	a.Manifest = m
	for i, e := range m.Entries {
		hdr, err := tr.Next()
		if err != nil {
			return nil, corrupt("entry %s: %v", e.Name, tarErr(err))
		}
		if hdr.Name != e.Name || hdr.Typeflag != tar.TypeReg {
			return nil, corrupt("entry %d is %q, the manifest says %s", i+1, hdr.Name, e.Name)
		}
		if hdr.Size != e.Size {
			return nil, corrupt("entry %s is %d bytes, the manifest says %d", e.Name, hdr.Size, e.Size)
		}
		h, n, err := writeFile(a.path(i), tr)
		if err != nil {
			if errors.Is(err, io.ErrUnexpectedEOF) {
				return nil, corrupt("entry %s is cut short after %d of %d bytes", e.Name, n, e.Size)
			}
			return nil, fmt.Errorf("backup: extract %s: %w", e.Name, err)
		}
		if got := hex.EncodeToString(h.Sum(nil)); got != e.SHA256 {
			return nil, corrupt("entry %s has SHA-256 %s, the manifest says %s", e.Name, got, e.SHA256)
		}
	}
	if _, err := tr.Next(); err != io.EOF {
		if err == nil {
			return nil, corrupt("an entry the manifest does not list follows the last one")
		}
		return nil, corrupt("after the last entry: %v", tarErr(err))
	}
	if err := checkSnapshot(a.path(0)); err != nil {
		return nil, err
	}
	return a, nil
}

func tarErr(err error) error {
	if err == io.EOF {
		return errors.New("the file ends here")
	}
	return err
}

// ParseManifest decodes and checks a manifest.
func ParseManifest(b []byte) (Manifest, error) {
	var m Manifest
	dec := json.NewDecoder(bytes.NewReader(b))
	if err := dec.Decode(&m); err != nil {
		return m, corrupt("manifest: %v", err)
	}
	switch {
	case m.Format <= 0:
		return m, corrupt("manifest: no format version")
	case m.Format > FormatVersion:
		return m, fmt.Errorf("%w: its file format is version %d, this release reads up to %d; restore it with a newer gantry", ErrNewer, m.Format, FormatVersion)
	case m.SchemaVersion <= 0:
		return m, corrupt("manifest: no schema version")
	case m.SchemaVersion > store.SchemaVersion:
		return m, fmt.Errorf("%w: its data is at schema version %d, this release understands up to %d; restore it with the gantry that wrote it (%s) or a newer one",
			ErrNewer, m.SchemaVersion, store.SchemaVersion, m.GantryVersion)
	case !strings.HasPrefix(m.Prefix, "/") || !strings.HasSuffix(m.Prefix, "/"):
		return m, corrupt("manifest: prefix %q is not an etcd key prefix", m.Prefix)
	case len(m.Entries) == 0 || len(m.Entries) > maxEntries:
		return m, corrupt("manifest: %d entries", len(m.Entries))
	case m.Entries[0].Name != SnapshotName || m.Entries[0].Kind != KindEtcd:
		return m, corrupt("manifest: the first entry is not the etcd snapshot")
	}
	seen := map[string]bool{}
	for i, e := range m.Entries {
		if seen[e.Name] {
			return m, corrupt("manifest: entry %s listed twice", e.Name)
		}
		seen[e.Name] = true
		if e.Size < 0 {
			return m, corrupt("manifest: entry %s has size %d", e.Name, e.Size)
		}
		if h, err := hex.DecodeString(e.SHA256); err != nil || len(h) != sha256.Size {
			return m, corrupt("manifest: entry %s has no SHA-256", e.Name)
		}
		if i == 0 {
			continue
		}
		if e.Kind != KindStream {
			return m, corrupt("manifest: entry %s is of unknown kind %q", e.Name, e.Kind)
		}
		if _, ok := knownStream(e.Stream); !ok || e.Name != streamDir+e.Stream+".jsonl" {
			return m, corrupt("manifest: entry %s is not a stream this release restores", e.Name)
		}
	}
	return m, nil
}

// checkSnapshot verifies the SHA-256 etcd appends to its snapshot.
func checkSnapshot(path string) error {
	f, err := os.Open(path)
	if err != nil {
		return fmt.Errorf("backup: %w", err)
	}
	defer f.Close()
	fi, err := f.Stat()
	if err != nil {
		return fmt.Errorf("backup: %w", err)
	}
	size := fi.Size()
	// etcd's database is whole pages; the trailer makes the size 32 past
	// a multiple of 512.
	if size < sha256.Size || size%512 != sha256.Size {
		return corrupt("the etcd snapshot is %d bytes and has no SHA-256 trailer", size)
	}
	h := sha256.New()
	if _, err := io.CopyN(h, f, size-sha256.Size); err != nil {
		return fmt.Errorf("backup: read the etcd snapshot: %w", err)
	}
	want := make([]byte, sha256.Size)
	if _, err := io.ReadFull(f, want); err != nil {
		return fmt.Errorf("backup: read the etcd snapshot: %w", err)
	}
	if !bytes.Equal(h.Sum(nil), want) {
		return corrupt("the etcd snapshot does not match its own SHA-256")
	}
	return nil
}

// Close removes the extracted entries.
func (a *Archive) Close() error { return os.RemoveAll(a.dir) }

func (a *Archive) path(i int) string { return filepath.Join(a.dir, fmt.Sprint(i)) }

// KeyValue is one etcd key as restore writes it again.
type KeyValue struct {
	Key, Value []byte
}

// KeyValues reads the latest version of every live key under the
// manifest's prefix from the snapshot's bbolt database: its "key" bucket
// holds every revision since the last compaction, keyed by revision
// (8 bytes main, '_', 8 bytes sub, and a trailing 't' on a deletion), in
// order. Keys bound to a lease are left out: the lease is not restored.
func (a *Archive) KeyValues() (kvs []KeyValue, err error) {
	db := a.path(0) + ".db"
	if err := copyPrefix(a.path(0), db); err != nil {
		return nil, err
	}
	defer os.Remove(db)
	// bbolt trusts its pages; a snapshot whose hashes matched but whose
	// pages do not make sense must still not crash the restore.
	defer func() {
		if r := recover(); r != nil {
			kvs, err = nil, corrupt("the etcd snapshot's database is damaged: %v", r)
		}
	}()
	b, err := bolt.Open(db, 0o600, &bolt.Options{ReadOnly: true, Timeout: time.Second})
	if err != nil {
		return nil, corrupt("the etcd snapshot's database: %v", err)
	}
	defer b.Close()
	latest := map[string]int{}
	err = b.View(func(tx *bolt.Tx) error {
		bk := tx.Bucket([]byte("key"))
		if bk == nil {
			return corrupt("the etcd snapshot has no key bucket")
		}
		return bk.ForEach(func(k, v []byte) error {
			tomb, ok := parseRevision(k)
			if !ok {
				return corrupt("the etcd snapshot holds a record under %x, which is no revision", k)
			}
			var kv mvccpb.KeyValue
			if err := kv.Unmarshal(v); err != nil {
				return corrupt("the etcd snapshot's record at %x: %v", k, err)
			}
			if !strings.HasPrefix(string(kv.Key), a.Manifest.Prefix) {
				return nil
			}
			i, seen := latest[string(kv.Key)]
			switch {
			case tomb || kv.Lease != 0:
				if seen {
					kvs[i].Key = nil // deleted, or bound to a lease
				}
				delete(latest, string(kv.Key))
			case seen:
				kvs[i].Value = kv.Value
			default:
				latest[string(kv.Key)] = len(kvs)
				kvs = append(kvs, KeyValue{Key: kv.Key, Value: kv.Value})
			}
			return nil
		})
	})
	if err != nil {
		return nil, err
	}
	out := kvs[:0]
	for _, kv := range kvs {
		if kv.Key != nil {
			out = append(out, kv)
		}
	}
	return out, nil
}

// parseRevision checks a key of etcd's key bucket and says whether it
// marks a deletion.
func parseRevision(k []byte) (tombstone, ok bool) {
	switch {
	case len(k) == 17 && k[8] == '_':
		return false, true
	case len(k) == 18 && k[8] == '_' && k[17] == 't':
		return true, true
	}
	return false, false
}

// copyPrefix copies src without its SHA-256 trailer to dst, the database
// bbolt opens.
func copyPrefix(src, dst string) error {
	in, err := os.Open(src)
	if err != nil {
		return fmt.Errorf("backup: %w", err)
	}
	defer in.Close()
	fi, err := in.Stat()
	if err != nil {
		return fmt.Errorf("backup: %w", err)
	}
	out, err := os.OpenFile(dst, os.O_CREATE|os.O_EXCL|os.O_WRONLY, 0o600)
	if err != nil {
		return fmt.Errorf("backup: %w", err)
	}
	if _, err := io.CopyN(out, in, fi.Size()-sha256.Size); err != nil {
		out.Close()
		return fmt.Errorf("backup: %w", err)
	}
	return out.Close()
}

// Messages calls fn for each message of the stream entry i, in order.
func (a *Archive) Messages(i int, fn func(Message) error) error {
	e := a.Manifest.Entries[i]
	f, err := os.Open(a.path(i))
	if err != nil {
		return fmt.Errorf("backup: %w", err)
	}
	defer f.Close()
	s, _ := knownStream(e.Stream)
	return readMessages(f, e.Name, s.subject, fn)
}

// readMessages decodes JSON lines of Message.
// Each subject must be one of the stream's.
func readMessages(r io.Reader, name, prefix string, fn func(Message) error) error {
	sc := bufio.NewScanner(r)
	sc.Buffer(make([]byte, 64<<10), maxLine)
	for n := 1; sc.Scan(); n++ {
		var m Message
		if err := json.Unmarshal(sc.Bytes(), &m); err != nil {
			return corrupt("%s line %d: %v", name, n, err)
		}
		if !strings.HasPrefix(m.Subject, prefix) || len(m.Subject) == len(prefix) || strings.ContainsAny(m.Subject, " \t\r\n*>") {
			return corrupt("%s line %d: subject %q", name, n, m.Subject)
		}
		if err := fn(m); err != nil {
			return err
		}
	}
	if err := sc.Err(); err != nil {
		return corrupt("%s: %v", name, err)
	}
	return nil
}
