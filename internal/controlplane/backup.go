package controlplane

import (
	"net/http"

	"github.com/gantry-dev/gantry/internal/backup"
)

// registerBackup serves GET /v1/gantry/backup (gantry backup) behind the
// installation gate: this server's etcd snapshot and the JetStream
// streams a restore needs, in one file.
func (s *Server) registerBackup(mux *http.ServeMux, gate func(http.Handler) http.Handler) {
	backup.Register(mux, backup.Source{Store: s.st, JS: s.js, GantryVersion: backup.Version(), MEKProvider: s.cfg.MEKProvider}, gate, s.log)
}
