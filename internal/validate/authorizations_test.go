package validate

import (
	"strings"
	"testing"

	"github.com/gantry-dev/gantry/internal/model"
)

func TestAuthorizeParties(t *testing.T) {
	t.Parallel()
	party := func(ids ...string) *model.AuthorizePartiesRequest {
		req := &model.AuthorizePartiesRequest{}
		for _, id := range ids {
			req.Parties = append(req.Parties, model.AuthorizedParty{NCAID: id})
		}
		return req
	}
	tests := []struct {
		name string
		req  *model.AuthorizePartiesRequest
		want string // "" for valid
	}{
		{"empty list clears", party(), ""},
		{"two accounts", party("acct-b", "acct-c"), ""},
		{"missing id", party(""), "authorizedParties[0].ncaId is required"},
		{"public wildcard", party("*"), "would make the function public"},
		{"owner itself", party("owner"), "the function's own account"},
		{"bad id", party("a b"), "is not a valid account id"},
		{"twice", party("acct-b", "acct-b"), "authorizedParties[1].ncaId \"acct-b\" is listed twice"},
		{"too many", party(make([]string, MaxAuthorizedParties+1)...), "at most 256"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			err := AuthorizeParties(tc.req, "owner")
			if tc.want == "" {
				if err != nil {
					t.Fatal(err)
				}
				return
			}
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("error %v, want one containing %q", err, tc.want)
			}
		})
	}
	if err := AuthorizedParty(&model.AuthorizedPartyRequest{}, "owner"); err == nil || !strings.Contains(err.Error(), "authorizedParty is required") {
		t.Fatalf("missing authorizedParty: %v", err)
	}
}

func TestVisibility(t *testing.T) {
	t.Parallel()
	tests := []struct {
		in   []string
		want FunctionVisibility
		bad  bool
	}{
		{nil, FunctionVisibility{Private: true}, false},
		{[]string{"authorized"}, FunctionVisibility{Authorized: true}, false},
		{[]string{"private,authorized"}, FunctionVisibility{Private: true, Authorized: true}, false},
		{[]string{"PUBLIC"}, FunctionVisibility{}, false},
		{[]string{"private", "authorized"}, FunctionVisibility{Private: true, Authorized: true}, false},
		{[]string{"everyone"}, FunctionVisibility{}, true},
	}
	for _, tc := range tests {
		got, err := Visibility(tc.in)
		if (err != nil) != tc.bad || (!tc.bad && got != tc.want) {
			t.Errorf("Visibility(%q) = %+v, %v; want %+v (bad %v)", tc.in, got, err, tc.want, tc.bad)
		}
	}
}
