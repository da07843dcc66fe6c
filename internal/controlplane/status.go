package controlplane

import (
	"net/http"

	"github.com/gantry-dev/gantry/internal/api"
)

// registerStatus serves GET /v1/gantry/status (gantry status) behind the
// installation gate: it checks this server's etcd, NATS, JetStream, MEK
// provider and leader election, and the clusters and deployments it holds.
func (s *Server) registerStatus(mux *http.ServeMux, gate func(http.Handler) http.Handler) {
	api.NewStatus(api.StatusConfig{Store: s.st, Etcd: s.etcdCli, LeaderPrefix: s.st.Prefix() + "leader",
		NATS: s.nc, JS: s.js, MEK: s.ess, MEKProvider: s.cfg.MEKProvider, Gate: gate, Logger: s.log}).Register(mux)
}
