package validate

import (
	"strings"

	"github.com/gantry-dev/gantry/internal/model"
	"github.com/gantry-dev/gantry/internal/problem"
)

// MaxAuthorizedParties bounds how many accounts one function, or one
// version, is shared with directly.
const MaxAuthorizedParties = 256

// AuthorizeParties checks the body of POST
// /v2/nvcf/authorizations/functions/{id}[/versions/{vid}] for a function
// owned by owner: a list of other accounts, each once. NVCF's wildcard "*"
// (a public function) is refused: Gantry has no public functions.
func AuthorizeParties(req *model.AuthorizePartiesRequest, owner string) error {
	var p problems
	if len(req.Parties) > MaxAuthorizedParties {
		p.addf("authorizedParties has %d entries: at most %d are allowed", len(req.Parties), MaxAuthorizedParties)
		return p.err()
	}
	seen := map[string]bool{}
	for i, party := range req.Parties {
		field := "authorizedParties[" + itoa(i) + "]"
		checkParty(&p, field, party, owner)
		if seen[party.NCAID] {
			p.addf("%s.ncaId %s is listed twice: list each account once", field, quote(party.NCAID))
		}
		seen[party.NCAID] = true
	}
	return p.err()
}

// AuthorizedParty checks the body of PATCH .../add and .../remove.
func AuthorizedParty(req *model.AuthorizedPartyRequest, owner string) error {
	var p problems
	if req.Party == nil {
		p.addf(`authorizedParty is required: send {"authorizedParty": {"ncaId": "<account id>"}}`)
		return p.err()
	}
	checkParty(&p, "authorizedParty", *req.Party, owner)
	return p.err()
}

func checkParty(p *problems, field string, party model.AuthorizedParty, owner string) {
	switch {
	case party.NCAID == "":
		p.addf("%s.ncaId is required: give the id of the account to share with", field)
	case party.NCAID == "*":
		p.addf(`%s.ncaId "*" would make the function public, which Gantry does not support: list the accounts to share with`, field)
	case ID("ncaId", party.NCAID) != nil:
		p.addf("%s.ncaId %s is not a valid account id: use 1-%d letters, digits and '-'", field, quote(party.NCAID), MaxIDLen)
	case party.NCAID == owner:
		p.addf("%s.ncaId %s is the function's own account, which always has access: list other accounts", field, quote(party.NCAID))
	}
	if party.ClientID != "" {
		checkText(p, field+".clientId", party.ClientID, MaxKeyTextLen, false)
	}
}

// FunctionVisibility is what GET /v2/nvcf/functions lists.
type FunctionVisibility struct {
	Private    bool // the account's own functions
	Authorized bool // functions other accounts share with it
}

// Visibility reads NVCF's visibility query values (each may hold several,
// comma-separated). None means private. "public" is accepted and lists
// nothing: Gantry has no public functions.
func Visibility(values []string) (FunctionVisibility, error) {
	var v FunctionVisibility
	if len(values) == 0 {
		return FunctionVisibility{Private: true}, nil
	}
	for _, list := range values {
		for _, s := range strings.Split(list, ",") {
			switch strings.ToLower(strings.TrimSpace(s)) {
			case "private":
				v.Private = true
			case "authorized":
				v.Authorized = true
			case "public":
			default:
				return v, problem.BadRequest("visibility %s is not one NVCF defines: use private, authorized or public, alone or comma-separated", quote(s))
			}
		}
	}
	return v, nil
}
