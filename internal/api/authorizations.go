package api

import (
	"context"
	"errors"
	"maps"
	"net/http"
	"slices"

	"github.com/gantry-dev/gantry/internal/auth"
	"github.com/gantry-dev/gantry/internal/model"
	"github.com/gantry-dev/gantry/internal/problem"
	"github.com/gantry-dev/gantry/internal/store"
	"github.com/gantry-dev/gantry/internal/validate"
	"github.com/gantry-dev/gantry/internal/web"
)

// Function sharing: NVCF's /v2/nvcf/authorizations routes. The owner of a
// function lists other accounts that may list and invoke it, for every
// version (inherited by versions created later) or for one version. Shared
// accounts never change the function. Every gateway learns a change with the
// next catalog update.

// ShareStore is what sharing needs from the store.
type ShareStore interface {
	GetAuthorization(ctx context.Context, fnID string) (model.FunctionAuthorization, error)
	ListAuthorizations(ctx context.Context) ([]model.FunctionAuthorization, error)
	PutAuthorization(ctx context.Context, a *model.FunctionAuthorization) error
	DeleteAuthorization(ctx context.Context, fnID string) error
	GetAccount(ctx context.Context, id string) (store.Account, error)
}

// registerAuthorizations adds the sharing routes.
func (a *API) registerAuthorizations(route func(pattern, scope string, h web.HandlerFunc)) {
	const base = "/v2/nvcf/authorizations/functions"
	const fn = base + "/{functionId}"
	const ver = fn + "/versions/{versionId}"
	s := auth.ScopeAuthorizeClients
	route("GET "+base, s, a.listShares)
	route("POST "+fn, s, a.shareFunction)
	route("GET "+fn, s, a.getFunctionShares)
	route("DELETE "+fn, s, a.unshareFunction)
	route("PATCH "+fn+"/add", s, a.addFunctionParty)
	route("PATCH "+fn+"/remove", s, a.removeFunctionParty)
	route("POST "+ver, s, a.shareVersion)
	route("GET "+ver, s, a.getVersionShares)
	route("DELETE "+ver, s, a.unshareVersion)
	route("PATCH "+ver+"/add", s, a.addVersionParty)
	route("PATCH "+ver+"/remove", s, a.removeVersionParty)
}

// partiesChange edits one party list (a function's or a version's).
type partiesChange func(parties []model.AuthorizedParty) ([]model.AuthorizedParty, error)

// changeShares applies change to the function-level list (versionID empty)
// or to one version's list of a function the caller owns, and stores the
// result, retrying when another writer got there first.
// The caller has checked ownership (ownShareTarget).
func (a *API) changeShares(ctx context.Context, p auth.Principal, fnID, versionID string, change partiesChange) (model.FunctionAuthorization, error) {
	for ctx.Err() == nil {
		share, err := a.readShares(ctx, p.Account, fnID)
		if err != nil {
			return share, err
		}
		if versionID == "" {
			share.Parties, err = change(share.Parties)
		} else {
			var ps []model.AuthorizedParty
			if ps, err = change(share.Versions[versionID]); err == nil {
				if share.Versions == nil {
					share.Versions = map[string][]model.AuthorizedParty{}
				}
				share.Versions[versionID] = ps
				if len(ps) == 0 {
					delete(share.Versions, versionID)
				}
			}
		}
		if err != nil {
			return share, err
		}
		err = a.st.PutAuthorization(ctx, &share)
		if errors.Is(err, store.ErrConflict) {
			continue
		}
		if err == nil {
			a.log.Info("api: function sharing changed", "function", fnID, "version", versionID,
				"parties", len(share.Parties), "by", p.CredentialID)
		}
		return share, err
	}
	return model.FunctionAuthorization{}, ctx.Err()
}

// ownShareTarget checks that the caller owns the function (and version).
func (a *API) ownShareTarget(ctx context.Context, p auth.Principal, fnID, versionID string) error {
	if versionID != "" {
		_, err := a.ownVersion(ctx, p, fnID, versionID)
		return err
	}
	_, err := a.ownVersions(ctx, p, fnID)
	return err
}

// forgetShares drops a deleted version's own list, and the whole record
// once the function's last version is gone, so that a function created
// later under the same id starts shared with nobody.
func (a *API) forgetShares(ctx context.Context, fnID, versionID string) error {
	if _, err := a.st.ListFunctionVersions(ctx, fnID); errors.Is(err, store.ErrNotFound) {
		return a.st.DeleteAuthorization(ctx, fnID)
	}
	for ctx.Err() == nil {
		share, err := a.st.GetAuthorization(ctx, fnID)
		if errors.Is(err, store.ErrNotFound) {
			return nil
		}
		if err != nil {
			return err
		}
		if _, ok := share.Versions[versionID]; !ok {
			return nil
		}
		delete(share.Versions, versionID)
		if err = a.st.PutAuthorization(ctx, &share); !errors.Is(err, store.ErrConflict) {
			return err
		}
	}
	return ctx.Err()
}

// readShares reads a function's sharing record; a function shared with
// nobody has an empty one.
func (a *API) readShares(ctx context.Context, owner, fnID string) (model.FunctionAuthorization, error) {
	share, err := a.st.GetAuthorization(ctx, fnID)
	if errors.Is(err, store.ErrNotFound) {
		return model.FunctionAuthorization{FunctionID: fnID, NCAID: owner}, nil
	}
	return share, err
}

// knownAccounts refuses parties that are not accounts of this installation:
// a typo would otherwise share with nobody, silently.
func (a *API) knownAccounts(ctx context.Context, parties []model.AuthorizedParty) error {
	for _, party := range parties {
		_, err := a.st.GetAccount(ctx, party.NCAID)
		if errors.Is(err, store.ErrNotFound) {
			return problem.BadRequest("account %s is not known to this installation: an account exists once an admin token was minted for it (POST /v1/admin/keys with its ncaId); check the id", party.NCAID)
		}
		if err != nil {
			return err
		}
	}
	return nil
}

// replaceParties is the change of a POST: the request's list, whole.
func (a *API) replaceParties(r *http.Request, p auth.Principal) (partiesChange, error) {
	var req model.AuthorizePartiesRequest
	if err := validate.Decode(r.Body, maxBody, &req); err != nil {
		return nil, err
	}
	if err := validate.AuthorizeParties(&req, p.Account); err != nil {
		return nil, err
	}
	if err := a.knownAccounts(r.Context(), req.Parties); err != nil {
		return nil, err
	}
	return func([]model.AuthorizedParty) ([]model.AuthorizedParty, error) { return req.Parties, nil }, nil
}

// patchParty is the change of PATCH .../add (add true) or .../remove.
func (a *API) patchParty(r *http.Request, p auth.Principal, add bool) (partiesChange, error) {
	var req model.AuthorizedPartyRequest
	if err := validate.Decode(r.Body, maxBody, &req); err != nil {
		return nil, err
	}
	if err := validate.AuthorizedParty(&req, p.Account); err != nil {
		return nil, err
	}
	party := *req.Party
	if !add {
		return func(ps []model.AuthorizedParty) ([]model.AuthorizedParty, error) {
			if !model.HasParty(ps, party.NCAID) {
				return nil, problem.NotFound("account %s is not authorized here, so there is nothing to remove; GET the authorizations to see who is", party.NCAID)
			}
			return slices.DeleteFunc(slices.Clone(ps), func(x model.AuthorizedParty) bool { return x.NCAID == party.NCAID }), nil
		}, nil
	}
	if err := a.knownAccounts(r.Context(), []model.AuthorizedParty{party}); err != nil {
		return nil, err
	}
	return func(ps []model.AuthorizedParty) ([]model.AuthorizedParty, error) {
		if model.HasParty(ps, party.NCAID) {
			return nil, problem.Conflict("account %s is already authorized here", party.NCAID)
		}
		if len(ps) >= validate.MaxAuthorizedParties {
			return nil, problem.BadRequest("already shared with %d accounts, the most allowed; remove one first", len(ps))
		}
		return append(slices.Clone(ps), party), nil
	}, nil
}

func clearParties([]model.AuthorizedParty) ([]model.AuthorizedParty, error) { return nil, nil }

// functionParties is the answer for a function's own list.
func functionParties(share model.FunctionAuthorization) model.AuthorizedParties {
	return model.AuthorizedParties{Function: model.AuthorizedFunction{
		ID: share.FunctionID, NCAID: share.NCAID, Parties: orEmpty(share.Parties)}}
}

// versionParties is the answer for one version: its own list, plus the
// function's when inherited is set.
func versionParties(share model.FunctionAuthorization, versionID string, inherited bool) model.AuthorizedParties {
	ps := slices.Clone(share.Versions[versionID])
	if inherited {
		for _, party := range share.Parties {
			if !model.HasParty(ps, party.NCAID) {
				ps = append(ps, party)
			}
		}
	}
	return model.AuthorizedParties{Function: model.AuthorizedFunction{
		ID: share.FunctionID, VersionID: versionID, NCAID: share.NCAID, Parties: orEmpty(ps)}}
}

func orEmpty(ps []model.AuthorizedParty) []model.AuthorizedParty {
	if ps == nil {
		return []model.AuthorizedParty{}
	}
	return ps
}

func (a *API) shareIDs(r *http.Request, withVersion bool) (fnID, versionID string, err error) {
	names := []string{"functionId"}
	if withVersion {
		names = append(names, "versionId")
	}
	ids, err := pathIDs(r, names...)
	if err != nil {
		return "", "", err
	}
	if withVersion {
		return ids[0], ids[1], nil
	}
	return ids[0], "", nil
}

// writeShares runs change and answers with the list it changed.
func (a *API) writeShares(w http.ResponseWriter, r *http.Request, p auth.Principal, withVersion bool,
	mk func(*http.Request, auth.Principal) (partiesChange, error)) error {
	fnID, versionID, err := a.shareIDs(r, withVersion)
	if err != nil {
		return err
	}
	if err := a.ownShareTarget(r.Context(), p, fnID, versionID); err != nil {
		return err // before reading the body: a stranger learns nothing from its errors
	}
	change, err := mk(r, p)
	if err != nil {
		return err
	}
	share, err := a.changeShares(r.Context(), p, fnID, versionID, change)
	if err != nil {
		return err
	}
	if versionID != "" {
		return web.JSON(w, http.StatusOK, versionParties(share, versionID, false))
	}
	return web.JSON(w, http.StatusOK, functionParties(share))
}

func (a *API) shareFunction(w http.ResponseWriter, r *http.Request, p auth.Principal) error {
	return a.writeShares(w, r, p, false, a.replaceParties)
}

func (a *API) shareVersion(w http.ResponseWriter, r *http.Request, p auth.Principal) error {
	return a.writeShares(w, r, p, true, a.replaceParties)
}

func (a *API) addFunctionParty(w http.ResponseWriter, r *http.Request, p auth.Principal) error {
	return a.writeShares(w, r, p, false, func(r *http.Request, p auth.Principal) (partiesChange, error) { return a.patchParty(r, p, true) })
}

func (a *API) removeFunctionParty(w http.ResponseWriter, r *http.Request, p auth.Principal) error {
	return a.writeShares(w, r, p, false, func(r *http.Request, p auth.Principal) (partiesChange, error) { return a.patchParty(r, p, false) })
}

func (a *API) addVersionParty(w http.ResponseWriter, r *http.Request, p auth.Principal) error {
	return a.writeShares(w, r, p, true, func(r *http.Request, p auth.Principal) (partiesChange, error) { return a.patchParty(r, p, true) })
}

func (a *API) removeVersionParty(w http.ResponseWriter, r *http.Request, p auth.Principal) error {
	return a.writeShares(w, r, p, true, func(r *http.Request, p auth.Principal) (partiesChange, error) { return a.patchParty(r, p, false) })
}

// unshareFunction clears the function-level list; versions keep theirs.
func (a *API) unshareFunction(w http.ResponseWriter, r *http.Request, p auth.Principal) error {
	return a.writeShares(w, r, p, false, func(*http.Request, auth.Principal) (partiesChange, error) { return clearParties, nil })
}

// unshareVersion clears one version's own list; what it inherits stays.
func (a *API) unshareVersion(w http.ResponseWriter, r *http.Request, p auth.Principal) error {
	return a.writeShares(w, r, p, true, func(*http.Request, auth.Principal) (partiesChange, error) { return clearParties, nil })
}

// getFunctionShares answers the function's own list, then each version's.
func (a *API) getFunctionShares(w http.ResponseWriter, r *http.Request, p auth.Principal) error {
	fnID, _, err := a.shareIDs(r, false)
	if err != nil {
		return err
	}
	versions, err := a.ownVersions(r.Context(), p, fnID)
	if err != nil {
		return err
	}
	share, err := a.readShares(r.Context(), p.Account, fnID)
	if err != nil {
		return err
	}
	out := model.AuthorizedPartiesList{Functions: []model.AuthorizedFunction{functionParties(share).Function}}
	for _, v := range versions {
		out.Functions = append(out.Functions, versionParties(share, v.VersionID, false).Function)
	}
	return web.JSON(w, http.StatusOK, out)
}

// getVersionShares answers who may use one version: its own list and what
// it inherits from the function.
func (a *API) getVersionShares(w http.ResponseWriter, r *http.Request, p auth.Principal) error {
	fnID, versionID, err := a.shareIDs(r, true)
	if err != nil {
		return err
	}
	if _, err := a.ownVersion(r.Context(), p, fnID, versionID); err != nil {
		return err
	}
	share, err := a.readShares(r.Context(), p.Account, fnID)
	if err != nil {
		return err
	}
	return web.JSON(w, http.StatusOK, versionParties(share, versionID, true))
}

// listShares answers every shared function of the caller's account: one
// entry per function or version that has accounts of its own.
func (a *API) listShares(w http.ResponseWriter, r *http.Request, p auth.Principal) error {
	all, err := a.st.ListAuthorizations(r.Context())
	if err != nil {
		return err
	}
	out := model.AuthorizedPartiesList{Functions: []model.AuthorizedFunction{}}
	for _, share := range all {
		if share.NCAID != p.Account || !p.CanUseFunction(share.FunctionID) {
			continue
		}
		if len(share.Parties) > 0 {
			out.Functions = append(out.Functions, functionParties(share).Function)
		}
		for _, vid := range slices.Sorted(maps.Keys(share.Versions)) {
			out.Functions = append(out.Functions, versionParties(share, vid, false).Function)
		}
	}
	return web.JSON(w, http.StatusOK, out)
}
