package invoke

import (
	"net/http"

	"github.com/gantry-dev/gantry/internal/auth"
	"github.com/gantry-dev/gantry/internal/bus"
	"github.com/gantry-dev/gantry/internal/catalog"
	"github.com/gantry-dev/gantry/internal/model"
	"github.com/gantry-dev/gantry/internal/problem"
	"github.com/gantry-dev/gantry/internal/validate"
	"github.com/gantry-dev/gantry/internal/web"
)

// queues answers GET /v2/nvcf/queues/functions/{id}[/versions/{vid}] with the
// depth of each version's work queue: messages waiting plus in flight.
func (g *Gateway) queues(w http.ResponseWriter, r *http.Request, p auth.Principal) error {
	fnID, versionID := r.PathValue("functionId"), r.PathValue("versionId")
	if err := validate.ID("function id", fnID); err != nil {
		return err
	}
	var entries []catalog.Entry
	if versionID != "" {
		if err := validate.ID("version id", versionID); err != nil {
			return err
		}
		if e, ok := g.cfg.Catalog.Lookup(p.Account, fnID, versionID); ok {
			entries = append(entries, e)
		}
	} else {
		entries = g.cfg.Catalog.Versions(p.Account, fnID)
	}
	if len(entries) == 0 || !p.CanUse(fnID, entries[0].Function.NCAID, entries[0].Function.NCAID != p.Account) {
		return problem.NotFound("function %s not found", fnID)
	}
	out := model.QueueResponse{FunctionID: fnID, Queues: []model.Queue{}}
	for _, e := range entries {
		depth, err := bus.QueueDepth(r.Context(), g.cfg.JS, e.Function.VersionID)
		if err != nil {
			return err
		}
		out.Queues = append(out.Queues, model.Queue{FunctionID: fnID, FunctionVersionID: e.Function.VersionID,
			FunctionName: e.Function.Name, FunctionStatus: e.Status(), QueueDepth: depth, Size: depth})
	}
	return web.JSON(w, http.StatusOK, out)
}
