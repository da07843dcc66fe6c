package api

import (
	"bytes"
	"cmp"
	"context"
	"encoding/json"
	"errors"
	"io"
	"log/slog"
	"net/http"
	"slices"
	"strings"
	"time"

	"github.com/google/uuid"

	"github.com/gantry-dev/gantry/internal/auth"
	"github.com/gantry-dev/gantry/internal/policy"
	"github.com/gantry-dev/gantry/internal/problem"
	"github.com/gantry-dev/gantry/internal/store"
	"github.com/gantry-dev/gantry/internal/validate"
	"github.com/gantry-dev/gantry/internal/web"
)

// PolicyStore is what the schedule policy routes read and write.
type PolicyStore interface {
	CreatePolicy(ctx context.Context, p *policy.Policy) error
	GetPolicy(ctx context.Context, id string) (policy.Policy, error)
	ListPolicies(ctx context.Context) ([]policy.Policy, error)
	UpdatePolicy(ctx context.Context, p *policy.Policy) error
	DeletePolicy(ctx context.Context, id string) error
}

var _ PolicyStore = (*store.Store)(nil)

// maxPolicyBody bounds a policy body; the largest valid policy is a few KiB.
const maxPolicyBody = 64 << 10

// Policies serves Gantry's own schedule policy routes under
// /v1/gantry/policies. Every route needs the deploy_function scope, since a
// policy decides where deployments run, and sees only the caller's account:
// another account's policy is reported missing, never forbidden.
type Policies struct {
	st    PolicyStore
	guard web.Guard
}

// NewPolicies builds the policy routes over st, guarded by g.
func NewPolicies(st PolicyStore, g web.Guard) *Policies {
	return &Policies{st: st, guard: g}
}

// Register adds the policy routes to mux.
func (h *Policies) Register(mux *http.ServeMux) {
	route := func(pattern string, fn web.HandlerFunc) {
		mux.Handle(pattern, h.guard.Route(auth.ScopeDeployFunction, fn))
	}
	route("POST /v1/gantry/policies", h.createPolicy)
	route("GET /v1/gantry/policies", h.listPolicies)
	route("GET /v1/gantry/policies/{policyId}", h.getPolicy)
	route("PUT /v1/gantry/policies/{policyId}", h.updatePolicy)
	route("DELETE /v1/gantry/policies/{policyId}", h.deletePolicy)
}

func (h *Policies) log() *slog.Logger {
	if h.guard.Log == nil {
		return slog.New(slog.DiscardHandler)
	}
	return h.guard.Log
}

func (h *Policies) createPolicy(w http.ResponseWriter, r *http.Request, p auth.Principal) error {
	in, err := decodePolicy(r)
	if err != nil {
		return err
	}
	in.ID, in.NCAID, in.CreatedAt = uuid.NewString(), p.Account, time.Now().UTC()
	if err := h.st.CreatePolicy(r.Context(), &in); err != nil {
		return err
	}
	h.log().Info("api: policy created", "policy", in.ID, "name", in.Name, "account", in.NCAID)
	return web.JSON(w, http.StatusOK, policy.Response{Policy: in})
}

// listPolicies answers the caller's policies in the order Select weighs
// them: highest priority first, then by name.
func (h *Policies) listPolicies(w http.ResponseWriter, r *http.Request, p auth.Principal) error {
	all, err := h.st.ListPolicies(r.Context())
	if err != nil {
		return err
	}
	own := make([]policy.Policy, 0, len(all))
	for _, pol := range all {
		if pol.NCAID == p.Account {
			own = append(own, pol)
		}
	}
	slices.SortStableFunc(own, func(a, b policy.Policy) int {
		if c := cmp.Compare(b.Priority, a.Priority); c != 0 {
			return c
		}
		if c := cmp.Compare(a.Name, b.Name); c != 0 {
			return c
		}
		return cmp.Compare(a.ID, b.ID)
	})
	return web.JSON(w, http.StatusOK, policy.ListResponse{Policies: own})
}

func (h *Policies) getPolicy(w http.ResponseWriter, r *http.Request, p auth.Principal) error {
	pol, err := h.own(r, p)
	if err != nil {
		return err
	}
	return web.JSON(w, http.StatusOK, policy.Response{Policy: pol})
}

// updatePolicy replaces a policy with the body; id, account and creation
// time stay. A concurrent change between read and write is retried, as the
// body replaces the whole policy either way.
func (h *Policies) updatePolicy(w http.ResponseWriter, r *http.Request, p auth.Principal) error {
	id, err := policyID(r)
	if err != nil {
		return err
	}
	in, err := decodePolicy(r)
	if err != nil {
		return err
	}
	for attempt := 0; ; attempt++ {
		cur, err := h.own(r, p)
		if err != nil {
			return err
		}
		next := in
		next.ID, next.NCAID, next.CreatedAt, next.Revision = cur.ID, cur.NCAID, cur.CreatedAt, cur.Revision
		err = h.st.UpdatePolicy(r.Context(), &next)
		if errors.Is(err, store.ErrConflict) && attempt < 5 {
			continue
		}
		if err != nil {
			return err
		}
		h.log().Info("api: policy updated", "policy", id, "name", next.Name, "account", next.NCAID)
		return web.JSON(w, http.StatusOK, policy.Response{Policy: next})
	}
}

func (h *Policies) deletePolicy(w http.ResponseWriter, r *http.Request, p auth.Principal) error {
	pol, err := h.own(r, p)
	if err != nil {
		return err
	}
	err = h.st.DeletePolicy(r.Context(), pol.ID)
	if errors.Is(err, store.ErrNotFound) {
		return problem.NotFound("policy %s not found", pol.ID)
	}
	if err != nil {
		return err
	}
	h.log().Info("api: policy deleted", "policy", pol.ID, "name", pol.Name, "account", pol.NCAID)
	w.WriteHeader(http.StatusNoContent)
	return nil
}

func policyID(r *http.Request) (string, error) {
	id := r.PathValue("policyId")
	return id, validate.ID("policy id", id)
}

// own reads the path's policy if it belongs to the caller's account.
func (h *Policies) own(r *http.Request, p auth.Principal) (policy.Policy, error) {
	id, err := policyID(r)
	if err != nil {
		return policy.Policy{}, err
	}
	pol, err := h.st.GetPolicy(r.Context(), id)
	if errors.Is(err, store.ErrNotFound) || (err == nil && pol.NCAID != p.Account) {
		return policy.Policy{}, problem.NotFound("policy %s not found; `gantry policy list` shows yours", id)
	}
	return pol, err
}

// decodePolicy reads and validates a policy body. Unlike the NVCF routes,
// which ignore unknown fields so NVCF clients keep working, this is Gantry's
// own API, and a misspelt selector field would otherwise be dropped silently
// and let the policy match every cluster: unknown fields are a 400.
func decodePolicy(r *http.Request) (policy.Policy, error) {
	var in policy.Policy
	var raw bytes.Buffer
	if err := validate.Decode(io.TeeReader(r.Body, &raw), maxPolicyBody, &in); err != nil {
		return in, err
	}
	dec := json.NewDecoder(bytes.NewReader(raw.Bytes()))
	dec.DisallowUnknownFields()
	if err := dec.Decode(&policy.Policy{}); err != nil {
		if field, ok := strings.CutPrefix(err.Error(), "json: unknown field "); ok {
			return in, problem.BadRequest("field %s is not part of a policy; check its spelling and nesting (top-level fields: name, priority, functionSelector, clusterSelector, fillAndSpill, spread, groupBy, strategy)", field)
		}
		return in, problem.BadRequest("request body could not be decoded as a policy")
	}
	if err := policy.Validate(&in); err != nil {
		return in, err
	}
	return in, nil
}
