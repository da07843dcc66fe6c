package catalog_test

import (
	"testing"
	"time"

	"github.com/gantry-dev/gantry/internal/catalog"
	"github.com/gantry-dev/gantry/internal/model"
	"github.com/gantry-dev/gantry/internal/testutil"
)

func TestPick(t *testing.T) {
	now := time.Now()
	v := func(id string, age int, status model.FunctionStatus) catalog.Entry {
		e := catalog.Entry{Function: model.Function{VersionID: id, CreatedAt: now.Add(-time.Duration(age) * time.Minute)}}
		if status != model.StatusInactive {
			e.Deployment = &model.Deployment{FunctionStatus: status}
		}
		return e
	}
	newest, deployed, active := v("new", 0, model.StatusInactive), v("dep", 1, model.StatusDeploying), v("act", 2, model.StatusActive)
	for _, tc := range []struct {
		name     string
		versions []catalog.Entry
		version  string
		want     string
		ok       bool
	}{
		{"active wins over newer", []catalog.Entry{newest, deployed, active}, "", "act", true},
		{"deployed wins over undeployed", []catalog.Entry{newest, deployed}, "", "dep", true},
		{"newest when nothing is deployed", []catalog.Entry{newest}, "", "new", true},
		{"named version", []catalog.Entry{newest, deployed, active}, "dep", "dep", true},
		{"unknown version", []catalog.Entry{newest}, "nope", "", false},
		{"no versions", nil, "", "", false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			got, ok := catalog.Pick(tc.versions, tc.version)
			if ok != tc.ok || got.Function.VersionID != tc.want {
				t.Fatalf("Pick = %q %v, want %q %v", got.Function.VersionID, ok, tc.want, tc.ok)
			}
		})
	}
}

// TestFreshSeesWritesTheCacheHasNot checks that Fresh reads the store: a
// function written while the catalog is not following is found by Fresh
// (and is invisible to the cache).
func TestFreshSeesWritesTheCacheHasNot(t *testing.T) {
	st := testutil.StartEtcd(t)
	ctx := testutil.Context(t)
	c := catalog.New(st, nil) // not started: the cache never learns anything
	f := &model.Function{ID: "fn", VersionID: "v1", NCAID: "acct", CreatedAt: time.Now()}
	if err := st.CreateFunction(ctx, f, nil); err != nil {
		t.Fatal(err)
	}
	if err := st.CreateDeployment(ctx, &model.Deployment{ID: "d", FunctionID: "fn", FunctionVersionID: "v1", NCAID: "acct", FunctionStatus: model.StatusActive}); err != nil {
		t.Fatal(err)
	}
	if _, ok := c.Resolve("acct", "fn"); ok {
		t.Fatal("an unstarted cache knows the function")
	}
	got, err := c.Fresh(ctx, "acct", "fn")
	if err != nil || len(got) != 1 || got[0].Status() != model.StatusActive {
		t.Fatalf("Fresh = %+v %v", got, err)
	}
	if other, _ := c.Fresh(ctx, "other-account", "fn"); len(other) != 0 {
		t.Fatal("Fresh returned another account's function")
	}
}
