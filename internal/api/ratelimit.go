package api

import (
	"net/http"

	"github.com/gantry-dev/gantry/internal/auth"
	"github.com/gantry-dev/gantry/internal/model"
	"github.com/gantry-dev/gantry/internal/validate"
)

// putRateLimit sets a version's rateLimit (NVCF's PUT
// /v2/nvcf/ratelimit/functions/{id}/versions/{vid}; 204).
func (a *API) putRateLimit(w http.ResponseWriter, r *http.Request, p auth.Principal) error {
	ids, err := pathIDs(r, "functionId", "versionId")
	if err != nil {
		return err
	}
	var req model.RateLimitRequest
	if err := validate.Decode(r.Body, maxBody, &req); err != nil {
		return err
	}
	if err := validate.RateLimitRequest(&req); err != nil {
		return err
	}
	rl := *req.RateLimit
	rl.RateLimitStatus = ""
	if _, err := a.updateVersion(r.Context(), p, ids[0], ids[1], func(f *model.Function) { f.RateLimit = &rl }); err != nil {
		return err
	}
	w.WriteHeader(http.StatusNoContent)
	return nil
}

// deleteRateLimit removes a version's rateLimit (204).
func (a *API) deleteRateLimit(w http.ResponseWriter, r *http.Request, p auth.Principal) error {
	ids, err := pathIDs(r, "functionId", "versionId")
	if err != nil {
		return err
	}
	if _, err := a.updateVersion(r.Context(), p, ids[0], ids[1], func(f *model.Function) { f.RateLimit = nil }); err != nil {
		return err
	}
	w.WriteHeader(http.StatusNoContent)
	return nil
}
