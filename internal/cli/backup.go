package cli

import (
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strconv"
	"time"

	"github.com/spf13/cobra"

	"github.com/gantry-dev/gantry/internal/backup"
)

func newBackupCmd(opts *rootOptions) *cobra.Command {
	var file, secretFile string
	cmd := &cobra.Command{
		Use:   "backup -f FILE",
		Short: "Write a backup of the platform (etcd snapshot and JetStream state) to a file",
		Long: `Ask the server for a backup and write it to FILE: a consistent etcd snapshot
and the JetStream streams a restore needs (platform events, answered async
calls and their large bodies, input assets). Calls in flight, the desired
state the controller derives again, and rate-limit windows are left out.

The file is checked once written (every part's SHA-256 and the snapshot's
own), and only then moved into place.

The master key (MEK) is never in the file. Keep it separately: with the
file provider, the server's <data-dir>/keys directory; with OpenBao, the
secret it names. Without it no secret in the backup can be opened.

The backup covers the whole installation, so the server lets through the
callers it lets mint admin tokens: its own machine (loopback mode, the
gantry dev default), or holders of its bootstrap secret
(--bootstrap-secret-file or ` + EnvBootstrapSecret + `).`,
		Example: "  gantry backup -f gantry-$(date +%F).tar\n  gantry backup -f backup.tar -o json",
		Args:    exactArgs(),
		RunE: func(cmd *cobra.Command, _ []string) error {
			if file == "" {
				return usageError(cmd, errors.New("-f FILE is required"))
			}
			if _, err := os.Stat(file); err == nil {
				return fmt.Errorf("backup: %s already exists; give a new file name or remove it first", file)
			}
			c, _, err := installationClient(cmd, opts, secretFile)
			if err != nil {
				return err
			}
			body, size, err := c.Backup(cmd.Context())
			if err != nil {
				return err
			}
			defer body.Close()
			part := file + ".part"
			f, err := os.OpenFile(part, os.O_CREATE|os.O_EXCL|os.O_WRONLY, 0o600)
			if err != nil {
				return fmt.Errorf("backup: %w", err)
			}
			defer os.Remove(part) // gone once renamed
			pw := &progressWriter{w: cmd.ErrOrStderr(), total: size, verb: "received"}
			_, err = io.Copy(io.MultiWriter(f, pw), body)
			pw.done()
			if err == nil {
				err = f.Sync()
			}
			if cerr := f.Close(); err == nil {
				err = cerr
			}
			if err != nil {
				return fmt.Errorf("backup: writing %s: %w", file, err)
			}
			fmt.Fprintln(cmd.ErrOrStderr(), "backup: checking the file")
			m, err := checkBackupFile(part, filepath.Dir(file))
			if err != nil {
				return fmt.Errorf("backup: the server's answer is no valid backup, so none was written: %w", err)
			}
			if err := os.Rename(part, file); err != nil {
				return fmt.Errorf("backup: %w", err)
			}
			return renderBackup(opts.printer(cmd), cmd.ErrOrStderr(), file, m)
		},
	}
	cmd.Flags().StringVarP(&file, "file", "f", "", "the backup file to write (must not exist)")
	cmd.Flags().StringVar(&secretFile, "bootstrap-secret-file", "", "file holding the installation's bootstrap secret (env "+EnvBootstrapSecret+" holds the secret itself)")
	return cmd
}

func newRestoreCmd(opts *rootOptions) *cobra.Command {
	var file, dataDir, keysDir string
	cmd := &cobra.Command{
		Use:   "restore -f FILE --data-dir DIR",
		Short: "Restore a backup into a new data dir for gantry server or gantry dev",
		Long: `Restore a file written by gantry backup into a new installation in DIR, which
must be absent or empty: etcd's keys go into a fresh embedded etcd, the
kept streams into a fresh embedded NATS. Then start gantry server (or
gantry dev) with --data-dir DIR.

The whole file is checked first (every part's SHA-256 and the etcd
snapshot's own); a damaged file, or one written by a release with a newer
data schema, is refused and nothing is written.

--keys names a copy of the old installation's <data-dir>/keys directory
(the file MEK provider's master key versions): it is copied into DIR/keys
and checked against the restored secret store. Without it, put the keys in
place before starting, or start with --mek-provider openbao on the same
OpenBao secret.

Restore runs offline, on this machine; it does not talk to a server.`,
		Example: "  gantry restore -f backup.tar --data-dir /var/lib/gantry-new --keys /secure/gantry-keys",
		Args:    exactArgs(),
		RunE: func(cmd *cobra.Command, _ []string) error {
			if file == "" || dataDir == "" {
				return usageError(cmd, errors.New("-f FILE and --data-dir DIR are required"))
			}
			f, err := os.Open(file)
			if err != nil {
				return fmt.Errorf("restore: %w", err)
			}
			defer f.Close()
			errw := cmd.ErrOrStderr()
			sum, err := backup.Restore(cmd.Context(), f, backup.RestoreConfig{DataDir: dataDir, KeysDir: keysDir,
				Progress: func(step string) { fmt.Fprintf(errw, "restore: %s\n", step) }})
			if err != nil {
				return err
			}
			return renderRestore(opts.printer(cmd), sum)
		},
	}
	cmd.Flags().StringVarP(&file, "file", "f", "", "the backup file gantry backup wrote")
	cmd.Flags().StringVar(&dataDir, "data-dir", "", "the new installation's data dir (absent or empty)")
	cmd.Flags().StringVar(&keysDir, "keys", "", "a copy of the old installation's <data-dir>/keys (file MEK provider) to restore with it")
	return cmd
}

// checkBackupFile reads the whole file back as restore would.
func checkBackupFile(path, tempDir string) (backup.Manifest, error) {
	f, err := os.Open(path)
	if err != nil {
		return backup.Manifest{}, err
	}
	defer f.Close()
	a, err := backup.Extract(f, tempDir)
	if err != nil {
		return backup.Manifest{}, err
	}
	defer a.Close()
	if _, err := a.KeyValues(); err != nil {
		return backup.Manifest{}, err
	}
	return a.Manifest, nil
}

// backupSummary is gantry backup's -o json|yaml answer.
type backupSummary struct {
	File     string          `json:"file"`
	Manifest backup.Manifest `json:"manifest"`
}

func renderBackup(p printer, errw io.Writer, file string, m backup.Manifest) error {
	if p.format != formatTable {
		return p.printData(backupSummary{File: file, Manifest: m})
	}
	fmt.Fprintf(p.w, "Backup written to %s\n", file)
	fmt.Fprintf(p.w, "  etcd revision %d, schema version %d, gantry %s, taken %s\n\n", m.EtcdRevision, m.SchemaVersion, m.GantryVersion, m.CreatedAt.Format(time.RFC3339))
	if err := writeTable(p.w, entriesTable(m)); err != nil {
		return err
	}
	if len(m.MEKVersions) > 0 {
		where := "the server's <data-dir>/keys/mek"
		if m.MEKProvider == "openbao" {
			where = "the OpenBao secret the server reads"
		}
		fmt.Fprintf(errw, "The master key is not in the backup: keep %s (MEK versions %v) with it.\n", where, m.MEKVersions)
	}
	return nil
}

func renderRestore(p printer, s *backup.Summary) error {
	if p.format != formatTable {
		return p.printData(s)
	}
	fmt.Fprintf(p.w, "Restored into %s: %d etcd keys at schema version %d, from a backup taken %s (etcd revision %d)\n\n",
		s.DataDir, s.EtcdKeys, s.Manifest.SchemaVersion, s.Manifest.CreatedAt.Format(time.RFC3339), s.Manifest.EtcdRevision)
	t := table{headers: []string{"STREAM", "MESSAGES"}}
	for _, e := range s.Manifest.Entries {
		if e.Kind == backup.KindStream {
			t.rows = append(t.rows, []string{e.Stream, strconv.Itoa(s.Messages[e.Stream])})
		}
	}
	if err := writeTable(p.w, t); err != nil {
		return err
	}
	_, err := fmt.Fprintf(p.w, "\nMaster key: %s\nStart it with: gantry server --data-dir %s\n", s.MEK, s.DataDir)
	return err
}

func entriesTable(m backup.Manifest) table {
	t := table{headers: []string{"ENTRY", "KIND", "MESSAGES", "SIZE"}}
	for _, e := range m.Entries {
		msgs := ""
		if e.Kind == backup.KindStream {
			msgs = strconv.Itoa(e.Messages)
		}
		t.rows = append(t.rows, []string{e.Name, e.Kind, msgs, byteSize(e.Size)})
	}
	return t
}

// byteSize renders n as B, KiB, MiB or GiB.
func byteSize(n int64) string {
	switch {
	case n < 1<<10:
		return strconv.FormatInt(n, 10) + " B"
	case n < 1<<20:
		return fmt.Sprintf("%.1f KiB", float64(n)/(1<<10))
	case n < 1<<30:
		return fmt.Sprintf("%.1f MiB", float64(n)/(1<<20))
	}
	return fmt.Sprintf("%.1f GiB", float64(n)/(1<<30))
}

// progressWriter counts bytes and says how far it got at most once a
// second, and once at the end.
type progressWriter struct {
	w     io.Writer
	total int64
	verb  string
	n     int64
	last  time.Time
}

func (p *progressWriter) Write(b []byte) (int, error) {
	p.n += int64(len(b))
	if time.Since(p.last) >= time.Second {
		p.report()
	}
	return len(b), nil
}

func (p *progressWriter) report() {
	p.last = time.Now()
	if p.total > 0 {
		fmt.Fprintf(p.w, "backup: %s %s of %s (%d%%)\n", p.verb, byteSize(p.n), byteSize(p.total), p.n*100/p.total)
		return
	}
	fmt.Fprintf(p.w, "backup: %s %s\n", p.verb, byteSize(p.n))
}

func (p *progressWriter) done() { p.report() }
