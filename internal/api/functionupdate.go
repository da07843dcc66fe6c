package api

import (
	"net/http"

	"github.com/gantry-dev/gantry/internal/auth"
	"github.com/gantry-dev/gantry/internal/model"
	"github.com/gantry-dev/gantry/internal/validate"
	"github.com/gantry-dev/gantry/internal/web"
)

// updateFunction changes a version's mutable fields: NVCF's PUT
// /v2/nvcf/functions/{id}/versions/{vid}, which nvcf-cli's `function update`
// sends. It stores tags and the rate limit exactly as the metadata and
// ratelimit routes do, through updateVersion, so a shared account gets 403
// and another account 404 as for any change. It answers 200 with the
// updated version, as the other function routes do; nvcf-cli ignores the
// body.
func (a *API) updateFunction(w http.ResponseWriter, r *http.Request, p auth.Principal) error {
	ids, err := pathIDs(r, "functionId", "versionId")
	if err != nil {
		return err
	}
	var req model.UpdateFunctionRequest
	if err := validate.Decode(r.Body, maxBody, &req); err != nil {
		return err
	}
	if err := validate.FunctionUpdate(&req); err != nil {
		return err
	}
	f, err := a.updateVersion(r.Context(), p, ids[0], ids[1], func(f *model.Function) {
		if req.Tags != nil {
			f.Tags = req.Tags
		}
		if req.Description != nil {
			f.Description = *req.Description
		}
		if req.RateLimit != nil {
			rl := *req.RateLimit
			rl.RateLimitStatus = "" // the server's to report, never the caller's to set
			f.RateLimit = &rl
		}
	})
	if err != nil {
		return err
	}
	fs, err := a.withStatus(r.Context(), []model.Function{f})
	if err != nil {
		return err
	}
	return web.JSON(w, http.StatusOK, model.FunctionResponse{Function: fs[0]})
}
