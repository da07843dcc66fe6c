package store

import (
	"context"

	clientv3 "go.etcd.io/etcd/client/v3"

	"github.com/gantry-dev/gantry/internal/model"
)

// Allocation is the number of GPUs of each model promised to instances on one
// cluster. It changes only in the same transaction as the instances it
// counts, which is what keeps two schedulers from overbooking a GPU.
type Allocation struct {
	ClusterID string         `json:"clusterId"`
	Used      map[string]int `json:"used"`
	Revision  int64          `json:"-"`
}

func (s *Store) instanceKey(id string) string      { return s.key(prefixInstances, id) }
func (s *Store) instanceStateKey(id string) string { return s.key(prefixInstStates, id) }
func (s *Store) allocKey(clusterID string) string  { return s.key(prefixAlloc, clusterID) }

// CreateInstance stores a new, not yet placed instance.
func (s *Store) CreateInstance(ctx context.Context, inst *model.Instance) error {
	rev, err := s.create(ctx, s.instanceKey(inst.ID), inst)
	if err != nil {
		return err
	}
	inst.Revision = rev
	return nil
}

// ListInstances returns every instance, placed or pending.
func (s *Store) ListInstances(ctx context.Context) ([]model.Instance, error) {
	out, revs, err := list[model.Instance](ctx, s, s.key(prefixInstances))
	for i := range out {
		out[i].Revision = revs[i]
	}
	return out, err
}

// UpdateInstance writes inst if unchanged since read (e.g. a new pending reason).
func (s *Store) UpdateInstance(ctx context.Context, inst *model.Instance) error {
	rev, err := s.update(ctx, s.instanceKey(inst.ID), inst, inst.Revision)
	if err != nil {
		return err
	}
	inst.Revision = rev
	return nil
}

// GetAllocation reads a cluster's allocation; a cluster with none yet has an
// empty one at revision 0.
func (s *Store) GetAllocation(ctx context.Context, clusterID string) (Allocation, error) {
	a, rev, err := get[Allocation](ctx, s, s.allocKey(clusterID))
	if err == ErrNotFound {
		return Allocation{ClusterID: clusterID, Used: map[string]int{}}, nil
	}
	if a.Used == nil {
		a.Used = map[string]int{}
	}
	a.Revision = rev
	return a, err
}

// ListAllocations returns the allocation of every cluster that has one.
func (s *Store) ListAllocations(ctx context.Context) (map[string]Allocation, error) {
	out, revs, err := list[Allocation](ctx, s, s.key(prefixAlloc))
	if err != nil {
		return nil, err
	}
	m := make(map[string]Allocation, len(out))
	for i, a := range out {
		if a.Used == nil {
			a.Used = map[string]int{}
		}
		a.Revision = revs[i]
		m[a.ClusterID] = a
	}
	return m, nil
}

func allocGuard(s *Store, a Allocation) clientv3.Cmp {
	if a.Revision == 0 {
		return notExists(s.allocKey(a.ClusterID))
	}
	return atRevision(s.allocKey(a.ClusterID), a.Revision)
}

// PlaceInstance commits inst (now carrying its ClusterID) and the cluster's
// new allocation in one transaction. It fails with ErrConflict if either
// changed since it was read; the scheduler then re-reads and tries again.
func (s *Store) PlaceInstance(ctx context.Context, inst *model.Instance, alloc *Allocation) error {
	iop, err := putOp(s.instanceKey(inst.ID), inst)
	if err != nil {
		return err
	}
	aop, err := putOp(s.allocKey(alloc.ClusterID), alloc)
	if err != nil {
		return err
	}
	rev, err := s.txn(ctx,
		[]clientv3.Cmp{atRevision(s.instanceKey(inst.ID), inst.Revision), allocGuard(s, *alloc)},
		[]clientv3.Op{iop, aop}, ErrConflict)
	if err != nil {
		return err
	}
	inst.Revision, alloc.Revision = rev, rev
	return nil
}

// ReleaseInstance deletes inst and its observed state, and if it was placed,
// returns its GPUs to the cluster's allocation (alloc must be that cluster's,
// already decremented by the caller). Pass a nil alloc for pending instances.
func (s *Store) ReleaseInstance(ctx context.Context, inst model.Instance, alloc *Allocation) error {
	guards := []clientv3.Cmp{atRevision(s.instanceKey(inst.ID), inst.Revision)}
	ops := []clientv3.Op{clientv3.OpDelete(s.instanceKey(inst.ID)), clientv3.OpDelete(s.instanceStateKey(inst.ID))}
	if alloc != nil {
		aop, err := putOp(s.allocKey(alloc.ClusterID), alloc)
		if err != nil {
			return err
		}
		guards = append(guards, allocGuard(s, *alloc))
		ops = append(ops, aop)
	}
	rev, err := s.txn(ctx, guards, ops, ErrConflict)
	if err == nil && alloc != nil {
		alloc.Revision = rev
	}
	return err
}

// PutInstanceState records what an agent observed about an instance. Only an
// instance that still exists gets a state, so a late report cannot resurrect
// the state of a released one.
func (s *Store) PutInstanceState(ctx context.Context, st model.InstanceState) error {
	op, err := putOp(s.instanceStateKey(st.InstanceID), st)
	if err != nil {
		return err
	}
	_, err = s.txn(ctx,
		[]clientv3.Cmp{clientv3.Compare(clientv3.CreateRevision(s.instanceKey(st.InstanceID)), ">", 0)},
		[]clientv3.Op{op}, ErrNotFound)
	return err
}

// ListInstanceStates returns every observed instance state by instance id.
func (s *Store) ListInstanceStates(ctx context.Context) (map[string]model.InstanceState, error) {
	out, _, err := list[model.InstanceState](ctx, s, s.key(prefixInstStates))
	if err != nil {
		return nil, err
	}
	m := make(map[string]model.InstanceState, len(out))
	for _, st := range out {
		m[st.InstanceID] = st
	}
	return m, nil
}

// GetInstance reads one instance.
func (s *Store) GetInstance(ctx context.Context, id string) (model.Instance, error) {
	inst, rev, err := get[model.Instance](ctx, s, s.instanceKey(id))
	inst.Revision = rev
	return inst, err
}

// PlaceInstances commits several placements in one transaction: every
// instance must still be at its revision and every allocation at its, or
// nothing is written (ErrConflict). allocs holds each touched cluster's new
// allocation once, already counting all of insts. Keep a batch within
// etcd's per-transaction limit (128 operations by default): each instance
// and each allocation is one compare and one put.
func (s *Store) PlaceInstances(ctx context.Context, insts []*model.Instance, allocs []*Allocation) error {
	guards := make([]clientv3.Cmp, 0, len(insts)+len(allocs))
	ops := make([]clientv3.Op, 0, len(insts)+len(allocs))
	for _, inst := range insts {
		op, err := putOp(s.instanceKey(inst.ID), inst)
		if err != nil {
			return err
		}
		guards, ops = append(guards, atRevision(s.instanceKey(inst.ID), inst.Revision)), append(ops, op)
	}
	for _, a := range allocs {
		op, err := putOp(s.allocKey(a.ClusterID), a)
		if err != nil {
			return err
		}
		guards, ops = append(guards, allocGuard(s, *a)), append(ops, op)
	}
	rev, err := s.txn(ctx, guards, ops, ErrConflict)
	if err != nil {
		return err
	}
	for _, inst := range insts {
		inst.Revision = rev
	}
	for _, a := range allocs {
		a.Revision = rev
	}
	return nil
}

// CreateInstances writes new instances, many per transaction: a burst of
// scale-ups across many functions costs a few round trips, not one per
// instance. It returns how many of insts (in order) were written; on an
// error, those after them were not.
func (s *Store) CreateInstances(ctx context.Context, insts []*model.Instance) (int, error) {
	done := 0
	for done < len(insts) {
		batch := insts[done:min(len(insts), done+maxTxnOps)]
		guards := make([]clientv3.Cmp, 0, len(batch))
		ops := make([]clientv3.Op, 0, len(batch))
		for _, inst := range batch {
			key := s.instanceKey(inst.ID)
			op, err := putOp(key, inst)
			if err != nil {
				return done, err
			}
			guards, ops = append(guards, notExists(key)), append(ops, op)
		}
		rev, err := s.txn(ctx, guards, ops, ErrExists)
		if err != nil {
			return done, err
		}
		for _, inst := range batch {
			inst.Revision = rev
		}
		done += len(batch)
	}
	return done, nil
}
