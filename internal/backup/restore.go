package backup

import (
	"context"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	clientv3 "go.etcd.io/etcd/client/v3"

	"github.com/gantry-dev/gantry/internal/bus"
	"github.com/gantry-dev/gantry/internal/events"
	"github.com/gantry-dev/gantry/internal/secrets"
	"github.com/gantry-dev/gantry/internal/store"
)

// RestoreConfig says where a backup goes.
type RestoreConfig struct {
	// DataDir is the new installation's data dir: absent or empty.
	DataDir string
	// KeysDir, when set, is a copy of the old installation's keys
	// directory (<data-dir>/keys: mek/v<N>.key, or a legacy secrets.key)
	// for the file MEK provider. It is copied into DataDir/keys and
	// checked against the restored secret store before restore succeeds.
	KeysDir string
	// Progress, when set, is told each step as it begins.
	Progress func(step string)
}

// Summary is what a restore did.
type Summary struct {
	Manifest Manifest `json:"manifest"`
	DataDir  string   `json:"dataDir"`
	EtcdKeys int      `json:"etcdKeys"`
	// Messages counts the messages published again per stream.
	Messages map[string]int `json:"messages"`
	// MEK says whether the master key was restored and checked, or what
	// the operator must still do.
	MEK string `json:"mek"`
}

// txnOps is how many puts one restore transaction carries: etcd's default
// --max-txn-ops.
const txnOps = 128

// Restore checks the backup read from r whole, then writes it into a new
// installation in cfg.DataDir: etcd's keys into a fresh embedded etcd, the
// kept streams into a fresh embedded NATS. A damaged file, a newer
// release's backup or a data dir that is not empty is refused before
// anything is written; a failure after that removes what was written, so
// the data dir is as empty as it was.
func Restore(ctx context.Context, r io.Reader, cfg RestoreConfig) (sum *Summary, err error) {
	progress := cfg.Progress
	if progress == nil {
		progress = func(string) {}
	}
	if cfg.DataDir == "" {
		return nil, errors.New("backup: restore needs a data dir")
	}
	dir, err := filepath.Abs(cfg.DataDir)
	if err != nil {
		return nil, fmt.Errorf("backup: data dir: %w", err)
	}
	if err := checkEmpty(dir); err != nil {
		return nil, err
	}
	parent := filepath.Dir(dir)
	if err := os.MkdirAll(parent, 0o700); err != nil {
		return nil, fmt.Errorf("backup: %w", err)
	}

	progress("reading and checking the backup")
	a, err := Extract(r, parent)
	if err != nil {
		return nil, err
	}
	defer a.Close()
	kvs, err := a.KeyValues()
	if err != nil {
		return nil, err
	}
	if cfg.KeysDir != "" {
		if err := checkKeysDir(cfg.KeysDir, a.Manifest.MEKVersions); err != nil {
			return nil, err
		}
	}

	if err := os.MkdirAll(dir, 0o700); err != nil {
		return nil, fmt.Errorf("backup: data dir: %w", err)
	}
	defer func() {
		if err != nil {
			clearDir(dir)
		}
	}()
	sum = &Summary{Manifest: a.Manifest, DataDir: dir, Messages: map[string]int{}}

	progress(fmt.Sprintf("writing %d etcd keys", len(kvs)))
	e, err := store.StartEmbedded(filepath.Join(dir, "etcd"), 30*time.Second)
	if err != nil {
		return nil, err
	}
	defer func() {
		if e != nil {
			e.Close()
		}
	}()
	if err := replay(ctx, e.Client(), a.Manifest.Prefix, kvs); err != nil {
		return nil, err
	}
	sum.EtcdKeys = len(kvs)

	if cfg.KeysDir != "" {
		progress("copying and checking the master key")
		if err := copyKeys(cfg.KeysDir, filepath.Join(dir, "keys")); err != nil {
			return nil, err
		}
		st := store.New(e.Client(), a.Manifest.Prefix)
		svc := secrets.NewService(st, secrets.NewFileMEK(filepath.Join(dir, "keys")), nil)
		if _, err := svc.CheckMEK(ctx); err != nil && !errors.Is(err, store.ErrNotFound) {
			return nil, fmt.Errorf("backup: the keys in %s are not this installation's: %w", cfg.KeysDir, err)
		}
		sum.MEK = "restored from " + cfg.KeysDir + " and checked"
	} else {
		sum.MEK = mekAdvice(a.Manifest, dir)
	}
	e.Close()
	e = nil

	progress("writing the JetStream streams")
	if err := restoreStreams(ctx, a, filepath.Join(dir, "nats"), sum, progress); err != nil {
		return nil, err
	}
	return sum, nil
}

// mekAdvice says what the operator must do about the master key.
func mekAdvice(m Manifest, dir string) string {
	if len(m.MEKVersions) == 0 {
		return "no master key needed (the backup holds no secret store)"
	}
	vs := ""
	for i, v := range m.MEKVersions {
		if i > 0 {
			vs += ", "
		}
		vs += "v" + strconv.Itoa(v)
	}
	if m.MEKProvider == "openbao" {
		return "not in the backup: start the server with --mek-provider openbao on the same OpenBao secret (versions " + vs + ")"
	}
	return "not in the backup: copy the old installation's keys/mek (versions " + vs + ") to " + filepath.Join(dir, "keys", "mek") +
		" (0600 files in a 0700 directory) before starting, or restore again with --keys"
}

// checkEmpty refuses a data dir that holds anything.
func checkEmpty(dir string) error {
	ents, err := os.ReadDir(dir)
	switch {
	case errors.Is(err, fs.ErrNotExist):
		return nil
	case err != nil:
		return fmt.Errorf("backup: data dir %s: %w", dir, err)
	case len(ents) > 0:
		return fmt.Errorf("%w: %s holds %s and more; restore only writes a new installation: give a new or empty --data-dir (and point the server at it), or move the old one away first",
			ErrNotEmpty, dir, ents[0].Name())
	}
	return nil
}

// clearDir empties dir after a failed restore (it was empty before).
func clearDir(dir string) {
	ents, _ := os.ReadDir(dir)
	for _, e := range ents {
		_ = os.RemoveAll(filepath.Join(dir, e.Name()))
	}
}

// replay writes kvs into an empty etcd in transactions of txnOps, the
// schema record last, then compacts away the replay's own history: the
// event source would otherwise take the replayed puts for new changes and
// publish an event for every object again.
func replay(ctx context.Context, c *clientv3.Client, prefix string, kvs []KeyValue) error {
	got, err := c.Get(ctx, prefix, clientv3.WithPrefix(), clientv3.WithCountOnly())
	if err != nil {
		return fmt.Errorf("backup: restore etcd: %w", err)
	}
	if got.Count > 0 {
		return fmt.Errorf("%w: its etcd already holds %d keys under %s", ErrNotEmpty, got.Count, prefix)
	}
	schemaKey := prefix + "schema"
	slices.SortStableFunc(kvs, func(a, b KeyValue) int {
		as, bs := string(a.Key) == schemaKey, string(b.Key) == schemaKey
		switch {
		case as == bs:
			return 0
		case as:
			return 1
		}
		return -1
	})
	var rev int64
	for i := 0; i < len(kvs); i += txnOps {
		batch := kvs[i:min(i+txnOps, len(kvs))]
		ops := make([]clientv3.Op, len(batch))
		for j, kv := range batch {
			ops[j] = clientv3.OpPut(string(kv.Key), string(kv.Value))
		}
		resp, err := c.Txn(ctx).Then(ops...).Commit()
		if err != nil {
			return fmt.Errorf("backup: restore etcd: %w", err)
		}
		rev = resp.Header.Revision
	}
	if rev > 0 {
		if _, err := c.Compact(ctx, rev, clientv3.WithCompactPhysical()); err != nil {
			return fmt.Errorf("backup: restore etcd: compact: %w", err)
		}
	}
	return nil
}

// restoreStreams starts an embedded NATS on dir (loopback, no listener
// beyond this process), creates every stream and bucket as a server's
// start does, and publishes the kept messages again in their order.
func restoreStreams(ctx context.Context, a *Archive, dir string, sum *Summary, progress func(string)) error {
	srv, err := bus.StartEmbedded(bus.EmbeddedConfig{Dir: dir}, 30*time.Second)
	if err != nil {
		return err
	}
	defer srv.Close()
	nc, err := srv.Connect("gantry-restore")
	if err != nil {
		return fmt.Errorf("backup: restore streams: %w", err)
	}
	defer nc.Close()
	js, err := jetstream.New(nc)
	if err != nil {
		return fmt.Errorf("backup: restore streams: %w", err)
	}
	if err := bus.Setup(ctx, js, bus.Config{}); err != nil {
		return err
	}
	if err := events.Setup(ctx, js, events.StreamConfig{}); err != nil {
		return err
	}
	for i, e := range a.Manifest.Entries {
		if e.Kind != KindStream {
			continue
		}
		progress(fmt.Sprintf("writing %d messages of %s", e.Messages, e.Stream))
		n := 0
		err := a.Messages(i, func(m Message) error {
			msg := nats.NewMsg(m.Subject)
			msg.Data = m.Data
			for k, v := range m.Header {
				if !dropHeaders[k] {
					msg.Header[k] = v
				}
			}
			ack, err := js.PublishMsg(ctx, msg)
			if err != nil {
				return fmt.Errorf("backup: restore %s: %w", e.Stream, err)
			}
			if ack.Stream != e.Stream {
				return corrupt("%s: a message for %s went to stream %s", e.Name, m.Subject, ack.Stream)
			}
			n++
			return nil
		})
		if err != nil {
			return err
		}
		sum.Messages[e.Stream] = n
	}
	return nil
}

// checkKeysDir makes sure dir holds every MEK version the backup needs
// before anything is written.
func checkKeysDir(dir string, need []int) error {
	fi, err := os.Stat(filepath.Join(dir, "mek"))
	if err != nil || !fi.IsDir() {
		if _, lerr := os.Stat(filepath.Join(dir, "secrets.key")); lerr == nil && slices.Equal(need, []int{1}) {
			return nil
		}
		return fmt.Errorf("backup: --keys %s has no mek directory: give the old installation's <data-dir>/keys", dir)
	}
	for _, v := range need {
		p := filepath.Join(dir, "mek", "v"+strconv.Itoa(v)+".key")
		if _, err := os.Stat(p); err != nil {
			if v == 1 {
				if _, lerr := os.Stat(filepath.Join(dir, "secrets.key")); lerr == nil {
					continue
				}
			}
			return fmt.Errorf("backup: --keys %s lacks MEK version %d (%s), which the backup's secret store needs", dir, v, p)
		}
	}
	return nil
}

// copyKeys copies the key files of src (mek/v<N>.key and a legacy
// secrets.key) to dst, 0600 files in 0700 directories.
func copyKeys(src, dst string) error {
	if err := os.MkdirAll(filepath.Join(dst, "mek"), 0o700); err != nil {
		return fmt.Errorf("backup: %w", err)
	}
	var files []string
	if m, _ := filepath.Glob(filepath.Join(src, "mek", "v*.key")); m != nil {
		files = m
	}
	if _, err := os.Stat(filepath.Join(src, "secrets.key")); err == nil {
		files = append(files, filepath.Join(src, "secrets.key"))
	}
	for _, f := range files {
		rel, _ := filepath.Rel(src, f)
		b, err := os.ReadFile(f)
		if err != nil {
			return fmt.Errorf("backup: read key file: %w", err)
		}
		err = os.WriteFile(filepath.Join(dst, rel), b, 0o600)
		clear(b)
		if err != nil {
			return fmt.Errorf("backup: write key file: %w", err)
		}
	}
	return nil
}
