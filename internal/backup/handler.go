package backup

import (
	"log/slog"
	"net/http"
	"runtime/debug"
	"strconv"

	"github.com/gantry-dev/gantry/internal/web"
)

// Route is where a server serves its backup.
const Route = "/v1/gantry/backup"

// Register adds GET /v1/gantry/backup to mux behind gate (the
// installation gate: a backup holds every account's data, so only who may
// mint admin tokens may take one). The whole backup is read before the
// first byte is sent, so a failure is a problem answer, never half a file.
func Register(mux *http.ServeMux, src Source, gate func(http.Handler) http.Handler, log *slog.Logger) {
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	mux.Handle("GET "+Route, gate(web.Unguarded(log, func(w http.ResponseWriter, r *http.Request) error {
		b, err := Take(r.Context(), src)
		if err != nil {
			return err
		}
		defer b.Close()
		size, err := b.Size()
		if err != nil {
			return err
		}
		m := b.Manifest()
		w.Header().Set("Content-Type", "application/x-tar")
		w.Header().Set("Content-Length", strconv.FormatInt(size, 10))
		w.Header().Set("Content-Disposition", `attachment; filename="gantry-backup-`+m.CreatedAt.Format("20060102T150405Z")+`.tar"`)
		w.Header().Set("Gantry-Etcd-Revision", strconv.FormatInt(m.EtcdRevision, 10))
		if _, err := b.WriteTo(w); err != nil {
			// Headers are gone: all that is left is to cut the answer
			// short, which the client sees as a truncated file.
			log.Warn("backup: sending the backup failed", "err", err)
		}
		log.Info("backup: taken", "etcdRevision", m.EtcdRevision, "bytes", size)
		return nil
	})))
}

// Version is this binary's version as its build recorded it: the module
// version and, when the build stamped it, the VCS revision.
func Version() string {
	bi, ok := debug.ReadBuildInfo()
	if !ok {
		return "unknown"
	}
	v := bi.Main.Version
	for _, s := range bi.Settings {
		if s.Key == "vcs.revision" {
			v += " " + s.Value
		}
	}
	return v
}
