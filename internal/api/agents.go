package api

import (
	"errors"
	"net/http"
	"strings"

	"github.com/gantry-dev/gantry/internal/auth"
	"github.com/gantry-dev/gantry/internal/problem"
	"github.com/gantry-dev/gantry/internal/registry"
	"github.com/gantry-dev/gantry/internal/web"
)

// agentCredential answers POST /v1/gantry/agents/credentials. An agent
// presents, as its bearer token, either its one-time bootstrap token (first
// start) or its current cluster credential (renewal), and gets a new
// credential and the NATS URL to use with it.
func (a *API) agentCredential(w http.ResponseWriter, r *http.Request) error {
	tok, ok := auth.BearerToken(r)
	if !ok {
		return problem.Errorf(http.StatusUnauthorized, "send the bootstrap token from `gantry cluster register`, or the agent's current credential, as 'Authorization: Bearer <token>'")
	}
	exchange := a.reg.Exchange
	if !strings.HasPrefix(tok, "gantry-bootstrap.") {
		exchange = a.reg.Renew
	}
	cred, err := exchange(r.Context(), tok)
	if errors.Is(err, registry.ErrBadToken) || errors.Is(err, registry.ErrGone) {
		return problem.Errorf(http.StatusUnauthorized, "the token is not valid: bootstrap tokens work once and expire, and a deleted cluster's credentials are revoked; run `gantry cluster register` for a new one")
	}
	if err != nil {
		return err
	}
	cred.NATSURL = a.natsURL
	return web.JSON(w, http.StatusOK, cred)
}
