package auth

import (
	"slices"
	"testing"
)

func TestPrincipalFunctions(t *testing.T) {
	all := NewPrincipal("acct", "alice", DefaultAPIKeyScopes)
	limited := all.LimitFunctions([]string{"fn-a", "fn-b"})
	none := all.LimitFunctions([]string{})
	tests := []struct {
		name string
		p    Principal
		fn   string
		want bool
	}{
		{"unrestricted reaches any function", all, "fn-z", true},
		{"listed function", limited, "fn-a", true},
		{"second listed function", limited, "fn-b", true},
		{"unlisted function", limited, "fn-c", false},
		{"empty list reaches nothing", none, "fn-a", false},
		{"nil list lifts the limit", limited.LimitFunctions(nil), "fn-c", true},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			if got := tc.p.CanUseFunction(tc.fn); got != tc.want {
				t.Fatalf("CanUseFunction(%q) = %v, want %v", tc.fn, got, tc.want)
			}
		})
	}
	if all.CanUseFunction("x") != true || all.Functions() != nil {
		t.Fatal("limiting a copy changed the original")
	}
	if got := limited.Functions(); !slices.Equal(got, []string{"fn-a", "fn-b"}) {
		t.Fatalf("Functions() = %v", got)
	}
}

func TestParseScope(t *testing.T) {
	tests := []struct {
		in, name string
		known    bool
	}{
		{"invoke_function", "invoke_function", true},
		{"apikey:invoke_function", "invoke_function", true},
		{"cluster-management", "cluster-management", true},
		{"apikey:apikey:invoke_function", "apikey:invoke_function", false},
		{"launch_rocket", "launch_rocket", false},
		{"launch_task", "launch_task", true}, // NVCT's: known, opens nothing
		{"", "", false},
	}
	for _, tc := range tests {
		t.Run(tc.in, func(t *testing.T) {
			name, known := ParseScope(tc.in)
			if name != tc.name || known != tc.known {
				t.Fatalf("ParseScope(%q) = %q, %v; want %q, %v", tc.in, name, known, tc.name, tc.known)
			}
		})
	}
	p := NewPrincipal("a", "s", []string{"apikey:queue_details", "list_functions"})
	if !p.Has(ScopeQueueDetails) || !p.Has(ScopeListFunctions) || p.Has(ScopeInvokeFunction) {
		t.Fatalf("scopes: %v", p.Scopes())
	}
}
