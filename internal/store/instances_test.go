package store_test

import (
	"errors"
	"fmt"
	"testing"

	"github.com/gantry-dev/gantry/internal/model"
	"github.com/gantry-dev/gantry/internal/store"
	"github.com/gantry-dev/gantry/internal/testutil"
)

// TestCreateInstancesInBatches: many instances go in a few transactions;
// an id that exists stops the batch it is in, and the count says how many
// went in before it.
func TestCreateInstancesInBatches(t *testing.T) {
	s := testutil.StartEtcd(t)
	ctx := testutil.Context(t)
	var insts []*model.Instance
	for i := range 250 {
		insts = append(insts, &model.Instance{ID: fmt.Sprintf("inst-%03d", i), FunctionVersionID: "v"})
	}
	n, err := s.CreateInstances(ctx, insts)
	if err != nil || n != 250 {
		t.Fatalf("created %d: %v", n, err)
	}
	for _, in := range insts {
		if in.Revision == 0 {
			t.Fatalf("instance %s has no revision", in.ID)
		}
	}
	listed, err := s.ListInstances(ctx)
	if err != nil || len(listed) != 250 {
		t.Fatalf("listed %d: %v", len(listed), err)
	}
	more := []*model.Instance{{ID: "new-1"}, {ID: "inst-007"}, {ID: "new-2"}}
	n, err = s.CreateInstances(ctx, more)
	if !errors.Is(err, store.ErrExists) || n != 0 {
		t.Fatalf("with an existing id: created %d, %v; want 0 and ErrExists", n, err)
	}
	if listed, _ := s.ListInstances(ctx); len(listed) != 250 {
		t.Fatalf("a failed batch wrote %d instances", len(listed)-250)
	}
}
