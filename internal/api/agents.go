package api

import (
	"errors"
	"net/http"
	"strings"

	"github.com/gantry-dev/gantry/internal/auth"
	"github.com/gantry-dev/gantry/internal/model"
	"github.com/gantry-dev/gantry/internal/problem"
	"github.com/gantry-dev/gantry/internal/registry"
	"github.com/gantry-dev/gantry/internal/validate"
	"github.com/gantry-dev/gantry/internal/web"
)

// agentCredential answers POST /v1/gantry/agents/credentials. An agent
// presents, as its bearer token, one of: its one-time bootstrap token (first
// start), its current cluster credential (renewal), or a JWT of its
// cluster's own issuer together with {"clusterId": ...} in the body (a
// Kubernetes service-account token, checked against the cluster's JWKS). It
// gets a new credential and the NATS URL to use with it.
func (a *API) agentCredential(w http.ResponseWriter, r *http.Request) error {
	tok, ok := auth.BearerToken(r)
	if !ok {
		return problem.Errorf(http.StatusUnauthorized, "send the bootstrap token from `gantry cluster register`, the agent's current credential, or a JWT of the cluster's issuer, as 'Authorization: Bearer <token>'")
	}
	var cred model.AgentCredential
	var err error
	switch {
	case strings.HasPrefix(tok, "gantry-bootstrap."):
		cred, err = a.reg.Exchange(r.Context(), tok)
	case strings.HasPrefix(tok, "gantry-cluster."):
		cred, err = a.reg.Renew(r.Context(), tok)
	default:
		var body struct {
			ClusterID string `json:"clusterId"`
		}
		if derr := validate.Decode(r.Body, 4096, &body); derr != nil {
			return problem.BadRequest("to authenticate with a JWT, send {\"clusterId\": \"<id>\"} naming the cluster whose issuer signed it")
		}
		if verr := validate.ID("clusterId", body.ClusterID); verr != nil {
			return verr
		}
		cred, err = a.reg.ExchangeJWT(r.Context(), body.ClusterID, tok)
		if errors.Is(err, registry.ErrBadToken) {
			// Say why (expired, audience, issuer, key): it is what the
			// operator of the cluster's issuer needs to fix.
			return problem.Errorf(http.StatusUnauthorized, "the JWT was not accepted for cluster %s: %s (it must be signed by a key in the cluster's jwks, have audience %q, and not be expired)",
				body.ClusterID, strings.TrimPrefix(err.Error(), "registry: "), registry.JWTAudience)
		}
	}
	if errors.Is(err, registry.ErrBadToken) || errors.Is(err, registry.ErrGone) {
		return problem.Errorf(http.StatusUnauthorized, "the token is not valid: bootstrap tokens work once and expire, and a deleted cluster's credentials are revoked; run `gantry cluster register` for a new one")
	}
	if err != nil {
		return err
	}
	cred.NATSURL = a.natsURL
	return web.JSON(w, http.StatusOK, cred)
}
