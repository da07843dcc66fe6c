package secrets

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"testing"

	"github.com/gantry-dev/gantry/internal/model"
	"github.com/gantry-dev/gantry/internal/store"
	"github.com/gantry-dev/gantry/internal/testutil"
)

// secretRevisions maps every secret to its etcd revision.
func secretRevisions(t *testing.T, st *store.Store) map[string]int64 {
	t.Helper()
	out := map[string]int64{}
	for cursor := ""; ; {
		page, next, err := st.ScanSecrets(testutil.Context(t), cursor, 100)
		if err != nil {
			t.Fatal(err)
		}
		for _, s := range page {
			out[s.FunctionID+"/"+s.Name] = s.Revision
		}
		if next == "" {
			return out
		}
		cursor = next
	}
}

// neksByMEK counts the NEK records wrapped by each MEK version.
func neksByMEK(t *testing.T, st *store.Store) map[int]int {
	t.Helper()
	out := map[int]int{}
	page, _, err := st.ScanNEKs(testutil.Context(t), "", 100000)
	if err != nil {
		t.Fatal(err)
	}
	for _, n := range page {
		out[n.MEK]++
	}
	return out
}

func mekFiles(t *testing.T, keys string) []string {
	t.Helper()
	entries, err := os.ReadDir(filepath.Join(keys, "mek"))
	if err != nil {
		t.Fatal(err)
	}
	var out []string
	for _, e := range entries {
		out = append(out, e.Name())
	}
	return out
}

func TestRotateMEKResumesAfterAnInterruption(t *testing.T) {
	t.Parallel()
	r := newRig(t, WithBatchSize(8), WithWorkers(1))
	ctx := testutil.Context(t)
	var accounts []string
	for i := range 60 {
		accounts = append(accounts, fmt.Sprintf("acct-%02d", i))
	}
	if err := r.svc.EnsureAccountKeys(ctx, accounts...); err != nil {
		t.Fatal(err)
	}
	places := r.putSecrets(t, "acct-03", "fn-a", "A", "B", "C")
	places = append(places, r.putSecrets(t, "acct-40", "fn-b", "D")...)
	sealedKey, err := r.svc.SealKey(ctx, "signing", []byte("k"))
	if err != nil {
		t.Fatal(err)
	}
	before := secretRevisions(t, r.st)

	// First run: killed after its first batch.
	cctx, cancel := context.WithCancel(ctx)
	r.svc.afterBatch = func(done int) { cancel() }
	_, err = r.svc.RotateMEK(cctx, nil)
	if !errors.Is(err, context.Canceled) {
		t.Fatalf("interrupted rotation: %v", err)
	}
	r.svc.afterBatch = nil
	st, err := r.svc.Status(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if len(st.Rotations) != 1 || st.Rotations[0].State != model.RotationInterrupted || st.Rotations[0].Target != 2 || st.Rotations[0].Done == 0 {
		t.Fatalf("status after the interruption: %+v", st.Rotations)
	}
	if split := neksByMEK(t, r.st); split[1] == 0 || split[2] == 0 {
		t.Fatalf("the first run should have stopped halfway: NEKs by MEK %v", split)
	}
	// Halfway, another replica still opens everything.
	openAll(t, r.st, r.replica(t), places)

	// Second run: continues to the same target.
	var calls []int
	res, err := r.svc.RotateMEK(ctx, func(done, total int) { calls = append(calls, done) })
	if err != nil {
		t.Fatal(err)
	}
	if !res.Resumed || res.Target != 2 || res.From != 1 || !slices.Equal(res.Retired, []int{1}) || res.Reencrypted != 0 {
		t.Fatalf("resumed rotation: %+v", res)
	}
	if len(calls) == 0 || !slices.IsSorted(calls) {
		t.Fatalf("progress calls %v", calls)
	}
	if got := mekFiles(t, r.keys); !slices.Equal(got, []string{"v1.key", "v2.key"}) {
		t.Fatalf("MEK files %v: the resumed run minted another version", got)
	}
	if split := neksByMEK(t, r.st); split[1] != 0 || split[2] != 61 { // 60 accounts and the system account
		t.Fatalf("NEKs by MEK after the rotation: %v", split)
	}
	meta, err := r.st.GetESSMeta(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if m1, _ := meta.MEK(1); meta.ActiveMEK != 2 || m1.Status != store.KeyRetired {
		t.Fatalf("meta after the rotation: %+v", meta)
	}
	if _, err := r.st.GetRotation(ctx, store.RotationMEK, ""); !errors.Is(err, store.ErrNotFound) {
		t.Fatalf("rotation record left behind: %v", err)
	}
	if after := secretRevisions(t, r.st); !mapsEqual(before, after) {
		t.Fatalf("a MEK rotation rewrote secrets: before %v after %v", before, after)
	}
	// A replica that never saw MEK v1 opens everything with v2 only.
	if err := os.Remove(filepath.Join(r.keys, "mek", "v1.key")); err != nil {
		t.Fatal(err)
	}
	fresh := r.replica(t)
	openAll(t, r.st, fresh, places)
	if _, err := fresh.OpenKey(ctx, "signing", sealedKey); err != nil {
		t.Fatal(err)
	}
	// New accounts get keys wrapped by the new MEK.
	if _, err := fresh.Seal(ctx, Place{Account: "later", Name: "X"}, []byte("x")); err != nil {
		t.Fatal(err)
	}
	if n, err := r.st.GetNEK(ctx, "later", 1); err != nil || n.MEK != 2 {
		t.Fatalf("new NEK: %+v %v", n, err)
	}
}

func mapsEqual(a, b map[string]int64) bool {
	if len(a) != len(b) {
		return false
	}
	for k, v := range a {
		if b[k] != v {
			return false
		}
	}
	return true
}

// TestRotateMEKAdoptsAVersionMintedByADeadRun covers a run that died after
// the provider created the new version but before it was recorded.
func TestRotateMEKAdoptsAVersionMintedByADeadRun(t *testing.T) {
	t.Parallel()
	r := newRig(t)
	ctx := testutil.Context(t)
	if err := r.svc.EnsureAccountKeys(ctx, "a", "b"); err != nil {
		t.Fatal(err)
	}
	if v, err := NewFileMEK(r.keys).Create(ctx); err != nil || v != 2 {
		t.Fatalf("create: %d %v", v, err)
	}
	res, err := r.svc.RotateMEK(ctx, nil)
	if err != nil {
		t.Fatal(err)
	}
	if res.Target != 2 || res.Rewrapped != 2 {
		t.Fatalf("rotation: %+v", res)
	}
	if got := mekFiles(t, r.keys); !slices.Equal(got, []string{"v1.key", "v2.key"}) {
		t.Fatalf("MEK files %v", got)
	}
	// The next rotation creates version 3.
	if res, err := r.svc.RotateMEK(ctx, nil); err != nil || res.Target != 3 || !slices.Equal(res.Retired, []int{2}) {
		t.Fatalf("second rotation: %+v %v", res, err)
	}
}

func TestRotationsTakeTurns(t *testing.T) {
	t.Parallel()
	r := newRig(t)
	ctx := testutil.Context(t)
	l, err := r.st.TryLockRotation(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := r.svc.RotateMEK(ctx, nil); !errors.Is(err, ErrRotationRunning) {
		t.Fatalf("MEK rotation while locked: %v", err)
	}
	if _, err := r.svc.RotateNEK(ctx, "a", nil); !errors.Is(err, ErrRotationRunning) {
		t.Fatalf("NEK rotation while locked: %v", err)
	}
	l.Unlock()
	if _, err := r.svc.RotateNEK(ctx, "nobody", nil); !errors.Is(err, ErrNoAccountKey) {
		t.Fatalf("NEK rotation of an account without a key: %v", err)
	}
}

func TestRotateNEK(t *testing.T) {
	t.Parallel()
	r := newRig(t, WithBatchSize(4), WithWorkers(1))
	ctx := testutil.Context(t)
	var places []Place
	for i := range 3 {
		places = append(places, r.putSecrets(t, "acct", fmt.Sprintf("fn-%d", i), "A", "B", "C", "D")...)
	}
	others := r.putSecrets(t, "other", "fn-other", "A", "B")
	before := secretRevisions(t, r.st)
	old := places[0]
	oldSealed, err := r.st.GetSecret(ctx, old.FunctionID, old.VersionID, old.Name)
	if err != nil {
		t.Fatal(err)
	}
	// A value sealed before the rotation begins, written after.
	late := places[len(places)-2]
	staleSeal, err := r.svc.Seal(ctx, late, []byte("stale"))
	if err != nil {
		t.Fatal(err)
	}

	// First run: killed as it is about to write its second batch.
	cctx, cancel := context.WithCancel(ctx)
	batches := 0
	r.svc.beforeReencrypt = func([]store.SealedSecret) {
		if batches++; batches == 2 {
			cancel()
		}
	}
	if _, err := r.svc.RotateNEK(cctx, "acct", nil); !errors.Is(err, context.Canceled) {
		t.Fatalf("interrupted rotation: %v", err)
	}
	if n := secretRevisions(t, r.st); mapsEqual(n, before) {
		t.Fatal("the first run wrote nothing")
	}
	openAll(t, r.st, r.replica(t), places)
	// The head moved at once: a value sealed before is refused.
	err = r.st.PutSecrets(ctx, late.FunctionID, late.VersionID, []store.SealedSecret{
		{Name: late.Name, Account: late.Account, NEK: staleSeal.NEK, Ciphertext: staleSeal.Ciphertext, HeadRevision: staleSeal.HeadRevision}})
	if !errors.Is(err, store.ErrConflict) {
		t.Fatalf("a value sealed under the retiring NEK was stored: %v", err)
	}

	// Second run: a client updates a secret after the run read it and
	// before the run writes it; the run must keep the client's value.
	updated := places[len(places)-1]
	raced := false
	r.svc.beforeReencrypt = func(chunk []store.SealedSecret) {
		if raced || !slices.ContainsFunc(chunk, func(s store.SealedSecret) bool { return s.FunctionID == updated.FunctionID && s.Name == updated.Name }) {
			return
		}
		raced = true
		s, err := r.svc.Seal(ctx, updated, []byte("updated-during-rotation"))
		if err != nil {
			t.Error(err)
			return
		}
		if s.NEK != 2 {
			t.Errorf("sealed with NEK %d during the rotation, want the new 2", s.NEK)
		}
		if err := r.st.PutSecrets(ctx, updated.FunctionID, updated.VersionID, []store.SealedSecret{
			{Name: updated.Name, Account: updated.Account, NEK: s.NEK, Ciphertext: s.Ciphertext, HeadRevision: s.HeadRevision}}); err != nil {
			t.Error(err)
		}
	}
	res, err := r.svc.RotateNEK(ctx, "acct", nil)
	if err != nil {
		t.Fatal(err)
	}
	if !raced {
		t.Fatal("the concurrent update never ran")
	}
	if !res.Resumed || res.From != 1 || res.Target != 2 || !slices.Equal(res.Retired, []int{1}) || res.Reencrypted == 0 {
		t.Fatalf("rotation: %+v", res)
	}
	for _, p := range places {
		sec, err := r.st.GetSecret(ctx, p.FunctionID, p.VersionID, p.Name)
		if err != nil {
			t.Fatal(err)
		}
		if sec.NEK != 2 {
			t.Errorf("%s still under NEK %d", p, sec.NEK)
		}
		got, err := r.replica(t).Open(ctx, p, Sealed{NEK: sec.NEK, Ciphertext: sec.Ciphertext})
		want := value(p)
		if p == updated {
			want = "updated-during-rotation"
		}
		if err != nil || string(got) != want {
			t.Errorf("%s: %q %v, want %q", p, got, err, want)
		}
	}
	after := secretRevisions(t, r.st)
	for _, p := range others {
		if k := p.FunctionID + "/" + p.Name; before[k] != after[k] {
			t.Errorf("another account's secret %s was rewritten", k)
		}
	}
	openAll(t, r.st, r.svc, others)
	n1, err := r.st.GetNEK(ctx, "acct", 1)
	if err != nil || n1.Status != store.KeyRetired || len(n1.Wrapped) != 0 {
		t.Fatalf("old NEK: %+v %v", n1, err)
	}
	// What the old key sealed no longer opens anywhere.
	if _, err := r.replica(t).Open(ctx, old, Sealed{NEK: oldSealed.NEK, Ciphertext: oldSealed.Ciphertext}); !errors.Is(err, ErrOpen) {
		t.Fatalf("a retired key still opens: %v", err)
	}
	st, err := r.svc.Status(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if len(st.Rotations) != 0 {
		t.Fatalf("rotations left: %+v", st.Rotations)
	}
	for _, a := range st.Accounts {
		if a.Account == "acct" && (a.ActiveNEK != 2 || len(a.NEKs) != 2 || a.NEKs[1].Secrets != len(places) || a.NEKs[0].Secrets != 0) {
			t.Fatalf("status of acct: %+v", a)
		}
	}
}

func TestStatusCounts(t *testing.T) {
	t.Parallel()
	r := newRig(t)
	ctx := testutil.Context(t)
	r.putSecrets(t, "a", "fn-a", "X", "Y")
	r.putSecrets(t, "b", "fn-b", "X")
	st, err := r.svc.Status(ctx)
	if err != nil {
		t.Fatal(err)
	}
	want := model.KeyStatus{ActiveMEK: 1, Counted: true, Rotations: []model.KeyRotationProgress{},
		MEKs: []model.MEKStatus{{Version: 1, Status: store.KeyActive, NEKs: 2}},
		Accounts: []model.AccountKeys{
			{Account: "a", ActiveNEK: 1, NEKs: []model.NEKStatus{{Version: 1, Status: store.KeyActive, MEK: 1, Secrets: 2}}},
			{Account: "b", ActiveNEK: 1, NEKs: []model.NEKStatus{{Version: 1, Status: store.KeyActive, MEK: 1, Secrets: 1}}},
		}}
	for i := range st.MEKs {
		st.MEKs[i].CreatedAt = want.MEKs[i].CreatedAt
	}
	for i := range st.Accounts {
		for j := range st.Accounts[i].NEKs {
			st.Accounts[i].NEKs[j].CreatedAt = want.Accounts[i].NEKs[j].CreatedAt
		}
	}
	if fmt.Sprint(st) != fmt.Sprint(want) {
		t.Fatalf("status\n got %+v\nwant %+v", st, want)
	}
	p, err := r.svc.Progress(ctx)
	if err != nil || p.Counted || len(p.Accounts) != 0 || p.ActiveMEK != 1 {
		t.Fatalf("progress: %+v %v", p, err)
	}
}
