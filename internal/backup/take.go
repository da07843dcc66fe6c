package backup

import (
	"archive/tar"
	"bufio"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"hash"
	"io"
	"os"
	"path/filepath"
	"slices"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	clientv3 "go.etcd.io/etcd/client/v3"

	"github.com/gantry-dev/gantry/internal/store"
)

// Source is what a backup reads: the server's own etcd client and
// JetStream, so it works the same on embedded and external engines.
type Source struct {
	Store *store.Store
	JS    jetstream.JetStream
	// GantryVersion and MEKProvider are recorded in the manifest.
	GantryVersion string
	MEKProvider   string
	// TempDir is where the parts are spooled before the file is written
	// (default: the system's).
	TempDir string
}

// Backup is a backup spooled to disk, ready to be written out. A tar entry
// needs its size before its content, and a caller wants an error before
// the first byte rather than half a file, so everything is read first.
type Backup struct {
	dir      string
	manifest Manifest
}

// Take reads etcd first (one consistent snapshot), then each kept stream
// up to the last message it held when its read began. Records in the
// snapshot may so name stream content written just after it, never the
// other way round: an asset's record exists before its content.
func Take(ctx context.Context, src Source) (b *Backup, err error) {
	dir, err := os.MkdirTemp(src.TempDir, "gantry-backup-")
	if err != nil {
		return nil, fmt.Errorf("backup: scratch dir: %w", err)
	}
	b = &Backup{dir: dir}
	defer func() {
		if err != nil {
			b.Close()
		}
	}()
	m := Manifest{Format: FormatVersion, GantryVersion: src.GantryVersion, SchemaVersion: store.SchemaVersion,
		Prefix: src.Store.Prefix(), CreatedAt: time.Now().UTC(), MEKProvider: src.MEKProvider}
	if v, err := src.Store.SchemaVersionStored(ctx); err == nil {
		m.SchemaVersion = v
	}
	if meta, err := src.Store.GetESSMeta(ctx); err == nil {
		for _, k := range meta.MEKs {
			if k.Status != store.KeyRetired {
				m.MEKVersions = append(m.MEKVersions, k.Version)
			}
		}
		slices.Sort(m.MEKVersions)
	} else if !errors.Is(err, store.ErrNotFound) {
		return nil, fmt.Errorf("backup: read the secret store's metadata: %w", err)
	}

	e, rev, ver, err := snapshot(ctx, src.Store.Client(), filepath.Join(dir, "0"))
	if err != nil {
		return nil, err
	}
	m.EtcdRevision, m.EtcdVersion = rev, ver
	m.Entries = append(m.Entries, e)
	for i, s := range streams {
		e, err := dumpStream(ctx, src.JS, s, filepath.Join(dir, fmt.Sprint(i+1)))
		if err != nil {
			return nil, err
		}
		m.Entries = append(m.Entries, e)
	}
	b.manifest = m
	return b, nil
}

// Manifest describes the backup.
func (b *Backup) Manifest() Manifest { return b.manifest }

// WriteTo writes the backup file: the manifest, then each entry.
func (b *Backup) WriteTo(w io.Writer) (int64, error) {
	cw := &countingWriter{w: w}
	tw := tar.NewWriter(cw)
	mb, err := json.MarshalIndent(b.manifest, "", "  ")
	if err != nil {
		return cw.n, fmt.Errorf("backup: encode manifest: %w", err)
	}
	hdr := func(name string, size int64) *tar.Header {
		return &tar.Header{Name: name, Size: size, Mode: 0o600, ModTime: b.manifest.CreatedAt, Typeflag: tar.TypeReg, Format: tar.FormatPAX}
	}
	if err := tw.WriteHeader(hdr(ManifestName, int64(len(mb)))); err != nil {
		return cw.n, fmt.Errorf("backup: write: %w", err)
	}
	if _, err := tw.Write(mb); err != nil {
		return cw.n, fmt.Errorf("backup: write: %w", err)
	}
	for i, e := range b.manifest.Entries {
		f, err := os.Open(filepath.Join(b.dir, fmt.Sprint(i)))
		if err != nil {
			return cw.n, fmt.Errorf("backup: %w", err)
		}
		if err := tw.WriteHeader(hdr(e.Name, e.Size)); err != nil {
			f.Close()
			return cw.n, fmt.Errorf("backup: write: %w", err)
		}
		_, err = io.Copy(tw, f)
		f.Close()
		if err != nil {
			return cw.n, fmt.Errorf("backup: write %s: %w", e.Name, err)
		}
	}
	if err := tw.Close(); err != nil {
		return cw.n, fmt.Errorf("backup: write: %w", err)
	}
	return cw.n, nil
}

// Size is the length WriteTo will write, for a Content-Length.
func (b *Backup) Size() (int64, error) {
	n, err := b.WriteTo(io.Discard)
	return n, err
}

// Close removes the spooled parts.
func (b *Backup) Close() error { return os.RemoveAll(b.dir) }

// snapshot saves etcd's snapshot to path. The revision is the one the
// snapshot was taken at, as etcd's response header says.
func snapshot(ctx context.Context, c *clientv3.Client, path string) (Entry, int64, string, error) {
	resp, err := c.SnapshotWithVersion(ctx)
	if err != nil {
		return Entry{}, 0, "", fmt.Errorf("backup: etcd snapshot: %w", err)
	}
	defer resp.Snapshot.Close()
	e := Entry{Name: SnapshotName, Kind: KindEtcd}
	h, n, err := writeFile(path, resp.Snapshot)
	if err != nil {
		return Entry{}, 0, "", fmt.Errorf("backup: etcd snapshot: %w", err)
	}
	e.Size, e.SHA256 = n, hex.EncodeToString(h.Sum(nil))
	var rev int64
	if resp.Header != nil {
		rev = resp.Header.Revision
	}
	return e, rev, resp.Version, nil
}

// dumpStream writes the kept messages of one stream as JSON lines, from
// the first to the last it held when the read began. A stream that does
// not exist (an installation from before it) is an empty entry.
func dumpStream(ctx context.Context, js jetstream.JetStream, s stream, path string) (Entry, error) {
	e := Entry{Name: streamDir + s.name + ".jsonl", Kind: KindStream, Stream: s.name}
	f, err := os.OpenFile(path, os.O_CREATE|os.O_EXCL|os.O_WRONLY, 0o600)
	if err != nil {
		return e, fmt.Errorf("backup: %w", err)
	}
	defer f.Close()
	h := sha256.New()
	cw := &countingWriter{w: io.MultiWriter(f, h)}
	bw := bufio.NewWriter(cw)
	enc := json.NewEncoder(bw)

	st, err := js.Stream(ctx, s.name)
	switch {
	case errors.Is(err, jetstream.ErrStreamNotFound):
	case err != nil:
		return e, fmt.Errorf("backup: stream %s: %w", s.name, err)
	default:
		info, err := st.Info(ctx)
		if err != nil {
			return e, fmt.Errorf("backup: stream %s: %w", s.name, err)
		}
		if last := info.State.LastSeq; info.State.Msgs > 0 {
			cons, err := st.OrderedConsumer(ctx, jetstream.OrderedConsumerConfig{})
			if err != nil {
				return e, fmt.Errorf("backup: stream %s: %w", s.name, err)
			}
			for {
				msg, err := cons.Next(jetstream.FetchMaxWait(nextWait))
				if errors.Is(err, nats.ErrTimeout) {
					break // what was left aged out (TTL) meanwhile
				}
				if err != nil {
					return e, fmt.Errorf("backup: read stream %s: %w", s.name, err)
				}
				md, err := msg.Metadata()
				if err != nil {
					return e, fmt.Errorf("backup: read stream %s: %w", s.name, err)
				}
				m := Message{Subject: msg.Subject(), Data: msg.Data()}
				if len(msg.Headers()) > 0 {
					m.Header = map[string][]string(msg.Headers())
				}
				if s.keep(m) {
					if err := enc.Encode(m); err != nil {
						return e, fmt.Errorf("backup: write stream %s: %w", s.name, err)
					}
					e.Messages++
				}
				if md.Sequence.Stream >= last || md.NumPending == 0 {
					break
				}
			}
		}
	}
	if err := bw.Flush(); err != nil {
		return e, fmt.Errorf("backup: write stream %s: %w", s.name, err)
	}
	if err := f.Sync(); err != nil {
		return e, fmt.Errorf("backup: write stream %s: %w", s.name, err)
	}
	e.Size, e.SHA256 = cw.n, hex.EncodeToString(h.Sum(nil))
	return e, nil
}

// nextWait bounds the wait for a stream's next message: one that was
// there when the read began may have aged out since.
const nextWait = 5 * time.Second

// writeFile copies r into a new file at path and returns its SHA-256.
func writeFile(path string, r io.Reader) (hash.Hash, int64, error) {
	f, err := os.OpenFile(path, os.O_CREATE|os.O_EXCL|os.O_WRONLY, 0o600)
	if err != nil {
		return nil, 0, err
	}
	defer f.Close()
	h := sha256.New()
	n, err := io.Copy(io.MultiWriter(f, h), r)
	if err != nil {
		return nil, n, err
	}
	return h, n, f.Sync()
}

type countingWriter struct {
	w io.Writer
	n int64
}

func (c *countingWriter) Write(p []byte) (int, error) {
	n, err := c.w.Write(p)
	c.n += int64(n)
	return n, err
}
