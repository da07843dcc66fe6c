package api

import (
	"log/slog"
	"net/http"

	"github.com/gantry-dev/gantry/internal/problem"
	"github.com/gantry-dev/gantry/internal/web"
)

// unservedRoute is an NVCF route Gantry knows and does not serve yet, and
// what to do instead. docs/api.md lists the same routes.
type unservedRoute struct {
	patterns []string
	detail   string
}

var unservedRoutes = []unservedRoute{
	{[]string{"/v2/nvcf/exec/"},
		"Gantry does not serve NVCF's legacy exec API; call /v2/nvcf/pexec/functions/{functionId} instead, " +
			"with the body the function expects (no requestBody wrapper)"},
	{[]string{"/v2/nvcf/tokens/"},
		"Gantry does not issue invocation assertion tokens; invoke with an API key (POST /v1/keys) or an admin token"},
	{[]string{"/v1/nvct/"},
		"Gantry does not run NVIDIA Cloud Tasks (NVCT); a task key from nvcf-cli is accepted but opens nothing. " +
			"Run batch work as a function invoked asynchronously (pexec answers 202; poll /v2/nvcf/pexec/status/{requestId})"},
	{[]string{"/v2/nvcf/accounts", "/v2/nvcf/accounts/", "/v2/nvcf/clients/", "/v2/nvcf/instances/", "/v2/nvcf/sidecars/"},
		"Gantry has no super-admin role reaching into other accounts: each account's admin token (POST /v1/admin/keys " +
			"with its ncaId, through the installation gate) manages that account with the routes of its own"},
	{[]string{"GET /v1/accounts/{ncaId}/clusterVersions"},
		"Gantry does not publish agent versions separately: each cluster's nvcaVersion is in GET /v1/accounts/{ncaId}/clusters, " +
			"and agents run the server's release"},
	{[]string{"PUT /v1/nvca/clusters/{clusterId}/jwks"},
		"Gantry takes a cluster's JWKS in its registration: PUT /v1/accounts/{ncaId}/clusters/{clusterId} with jwks (and oidcIssuer)"},
}

// registerUnserved answers the NVCF routes Gantry does not serve with a 501
// problem saying what to do instead, rather than a bare 404 that reads like
// a typo in the path.
func registerUnserved(mux *http.ServeMux, log *slog.Logger) {
	for _, u := range unservedRoutes {
		h := web.Unguarded(log, func(w http.ResponseWriter, r *http.Request) error {
			return problem.Errorf(http.StatusNotImplemented, "%s", u.detail)
		})
		for _, p := range u.patterns {
			mux.Handle(p, h)
		}
	}
}
