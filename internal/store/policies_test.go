package store_test

import (
	"errors"
	"reflect"
	"testing"
	"time"

	"github.com/gantry-dev/gantry/internal/policy"
	"github.com/gantry-dev/gantry/internal/store"
	"github.com/gantry-dev/gantry/internal/testutil"
)

func TestPoliciesCRUDAndConflicts(t *testing.T) {
	s := testutil.StartEtcd(t)
	ctx := testutil.Context(t)
	p := &policy.Policy{ID: "p1", Name: "east-first", NCAID: "acct", Priority: 3, Strategy: policy.StrategyBinPack,
		FunctionSelector: policy.FunctionSelector{MatchTags: []string{"llm"}},
		ClusterSelector: &policy.Selector{MatchExpressions: []policy.Requirement{
			{Key: policy.LabelGPUProduct, Operator: policy.OpIn, Values: []string{"H100"}}}},
		FillAndSpill: []policy.Selector{{MatchLabels: map[string]string{policy.LabelRegion: "us-east"}}, {}},
		CreatedAt:    time.Now().UTC().Truncate(time.Second)}
	if err := s.CreatePolicy(ctx, p); err != nil {
		t.Fatal(err)
	}
	if p.Revision == 0 {
		t.Error("create did not set the revision")
	}
	if err := s.CreatePolicy(ctx, p); !errors.Is(err, store.ErrExists) {
		t.Fatalf("second create: got %v, want ErrExists", err)
	}
	got, err := s.GetPolicy(ctx, "p1")
	if err != nil {
		t.Fatal(err)
	}
	if !reflect.DeepEqual(&got, p) {
		t.Fatalf("get:\n got %+v\nwant %+v", got, *p)
	}

	stale := got
	got.Priority = 9
	if err := s.UpdatePolicy(ctx, &got); err != nil {
		t.Fatal(err)
	}
	stale.Name = "lost-update"
	if err := s.UpdatePolicy(ctx, &stale); !errors.Is(err, store.ErrConflict) {
		t.Fatalf("stale update: got %v, want ErrConflict", err)
	}
	missing := policy.Policy{ID: "nope", Revision: got.Revision}
	if err := s.UpdatePolicy(ctx, &missing); !errors.Is(err, store.ErrConflict) {
		t.Fatalf("update of a missing policy: got %v, want ErrConflict", err)
	}

	if err := s.CreatePolicy(ctx, &policy.Policy{ID: "p0", Name: "other", NCAID: "acct2"}); err != nil {
		t.Fatal(err)
	}
	all, err := s.ListPolicies(ctx)
	if err != nil || len(all) != 2 || all[0].ID != "p0" || all[1].ID != "p1" || all[1].Priority != 9 || all[1].Revision != got.Revision {
		t.Fatalf("list: %+v %v", all, err)
	}

	if err := s.DeletePolicy(ctx, "p1"); err != nil {
		t.Fatal(err)
	}
	if err := s.DeletePolicy(ctx, "p1"); !errors.Is(err, store.ErrNotFound) {
		t.Fatalf("delete twice: got %v, want ErrNotFound", err)
	}
	if _, err := s.GetPolicy(ctx, "p1"); !errors.Is(err, store.ErrNotFound) {
		t.Fatalf("get deleted: got %v, want ErrNotFound", err)
	}
	// Keys live under the installation's prefix, one per policy.
	resp, err := s.Client().Get(ctx, s.Prefix()+"policies/p0")
	if err != nil || len(resp.Kvs) != 1 {
		t.Fatalf("raw key policies/p0: %v %v", resp, err)
	}
}
