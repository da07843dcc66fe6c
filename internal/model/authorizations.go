package model

import "slices"

// AuthorizedParty is an account a function is shared with (NVCF's
// AuthorizedPartyDTO). clientId is NVCF's older form, kept as given.
type AuthorizedParty struct {
	NCAID    string `json:"ncaId"`
	ClientID string `json:"clientId,omitempty"`
}

// FunctionAuthorization records who, besides its owner, may list and invoke
// one function: accounts authorized for every version (inherited by versions
// created later) and accounts authorized for single versions. Authorized
// accounts never change the function.
type FunctionAuthorization struct {
	FunctionID string `json:"functionId"`
	// NCAID is the owner's account.
	NCAID    string                       `json:"ncaId"`
	Parties  []AuthorizedParty            `json:"authorizedParties,omitempty"`
	Versions map[string][]AuthorizedParty `json:"versions,omitempty"`

	Revision int64 `json:"-"`
}

// Allows reports whether account may list and invoke version versionID:
// it is authorized for the whole function or for that version.
func (a FunctionAuthorization) Allows(account, versionID string) bool {
	return HasParty(a.Parties, account) || HasParty(a.Versions[versionID], account)
}

// AllowsAny reports whether account may reach at least one version.
func (a FunctionAuthorization) AllowsAny(account string) bool {
	if HasParty(a.Parties, account) {
		return true
	}
	for _, ps := range a.Versions {
		if HasParty(ps, account) {
			return true
		}
	}
	return false
}

// Empty reports whether the function is shared with nobody.
func (a FunctionAuthorization) Empty() bool {
	if len(a.Parties) > 0 {
		return false
	}
	for _, ps := range a.Versions {
		if len(ps) > 0 {
			return false
		}
	}
	return true
}

// HasParty reports whether parties lists account.
func HasParty(parties []AuthorizedParty, account string) bool {
	return slices.ContainsFunc(parties, func(p AuthorizedParty) bool { return p.NCAID == account })
}

// AuthorizePartiesRequest is the body of POST
// /v2/nvcf/authorizations/functions/{id}[/versions/{vid}]: the whole list of
// accounts, replacing the one before.
type AuthorizePartiesRequest struct {
	Parties []AuthorizedParty `json:"authorizedParties"`
}

// AuthorizedPartyRequest is the body of PATCH .../add and .../remove: one
// account.
type AuthorizedPartyRequest struct {
	Party *AuthorizedParty `json:"authorizedParty"`
}

// AuthorizedParties is NVCF's answer for one function or version: the
// function (and version) with the accounts directly authorized for it.
type AuthorizedParties struct {
	Function AuthorizedFunction `json:"function"`
}

// AuthorizedFunction is one function, or one version of it, with its
// authorized accounts.
type AuthorizedFunction struct {
	ID        string            `json:"id"`
	VersionID string            `json:"versionId,omitempty"`
	NCAID     string            `json:"ncaId"`
	Parties   []AuthorizedParty `json:"authorizedParties"`
}

// AuthorizedPartiesList is the answer of GET
// /v2/nvcf/authorizations/functions/{id}: the function's own entry, then
// one per version that has accounts of its own.
type AuthorizedPartiesList struct {
	Functions []AuthorizedFunction `json:"functions"`
}
