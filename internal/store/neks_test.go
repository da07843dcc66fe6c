package store_test

import (
	"errors"
	"fmt"
	"testing"

	"github.com/gantry-dev/gantry/internal/model"
	"github.com/gantry-dev/gantry/internal/store"
	"github.com/gantry-dev/gantry/internal/testutil"
)

func TestNEKRecordsAndGuards(t *testing.T) {
	s := testutil.StartEtcd(t)
	ctx := testutil.Context(t)
	meta := store.ESSMeta{ActiveMEK: 1, MEKs: []store.MEKVersion{{Version: 1, Status: store.KeyActive}}}
	if err := s.CreateESSMeta(ctx, &meta); err != nil {
		t.Fatal(err)
	}
	if err := s.CreateESSMeta(ctx, &store.ESSMeta{}); !errors.Is(err, store.ErrExists) {
		t.Fatalf("second meta: %v", err)
	}
	// Account ids are escaped, so "a" and "a/b" do not share a prefix.
	var neks []store.NEK
	for _, a := range []string{"a", "a/b", "b"} {
		neks = append(neks, store.NEK{Account: a, Version: 1, MEK: 1, Wrapped: []byte{1}, Status: store.KeyActive})
	}
	if err := s.CreateNEKs(ctx, meta.Revision, neks); err != nil {
		t.Fatal(err)
	}
	if got, err := s.ListAccountNEKs(ctx, "a"); err != nil || len(got) != 1 {
		t.Fatalf("NEKs of a: %+v %v", got, err)
	}
	if err := s.CreateNEKs(ctx, meta.Revision, neks[:1]); !errors.Is(err, store.ErrConflict) {
		t.Fatalf("a second first NEK: %v", err)
	}
	stale := meta.Revision
	if err := s.UpdateESSMeta(ctx, &meta); err != nil {
		t.Fatal(err)
	}
	if err := s.CreateNEKs(ctx, stale, []store.NEK{{Account: "c", Version: 1, MEK: 1}}); !errors.Is(err, store.ErrConflict) {
		t.Fatalf("NEK wrapped under a MEK that changed meanwhile: %v", err)
	}

	// Scanning in small pages sees every record once.
	var seen []string
	for cursor := ""; ; {
		page, next, err := s.ScanNEKs(ctx, cursor, 2)
		if err != nil {
			t.Fatal(err)
		}
		for _, n := range page {
			seen = append(seen, n.Account)
		}
		if next == "" {
			break
		}
		cursor = next
	}
	if fmt.Sprint(seen) != "[a/b a b]" { // key order of the escaped ids: "a%2Fb" < "a/"
		t.Fatalf("scan: %v", seen)
	}

	a, err := s.GetNEK(ctx, "a", 1)
	if err != nil {
		t.Fatal(err)
	}
	old := a
	a.MEK = 2
	if err := s.UpdateNEKs(ctx, []store.NEK{a}); err != nil {
		t.Fatal(err)
	}
	if err := s.UpdateNEKs(ctx, []store.NEK{old}); !errors.Is(err, store.ErrConflict) {
		t.Fatalf("stale NEK update: %v", err)
	}
}

func TestSecretWritesCompareTheNEKHead(t *testing.T) {
	s := testutil.StartEtcd(t)
	ctx := testutil.Context(t)
	meta := store.ESSMeta{ActiveMEK: 1}
	if err := s.CreateESSMeta(ctx, &meta); err != nil {
		t.Fatal(err)
	}
	if err := s.CreateNEKs(ctx, meta.Revision, []store.NEK{{Account: "acct", Version: 1, MEK: 1, Status: store.KeyActive}}); err != nil {
		t.Fatal(err)
	}
	head, err := s.GetNEKHead(ctx, "acct")
	if err != nil || head.Active != 1 {
		t.Fatalf("head: %+v %v", head, err)
	}
	sec := store.SealedSecret{Name: "X", Account: "acct", NEK: 1, Ciphertext: []byte{1}, HeadRevision: head.Revision}
	f := &model.Function{ID: "fn", VersionID: "v1", NCAID: "acct"}
	if err := s.CreateFunction(ctx, f, []store.SealedSecret{sec}); err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		name string
		sec  store.SealedSecret
		want error
	}{
		{"current head", sec, nil},
		{"no head revision", store.SealedSecret{Name: "X", Account: "acct", NEK: 1}, nil},
		{"head moved", store.SealedSecret{Name: "X", Account: "acct", NEK: 1, HeadRevision: head.Revision - 1}, store.ErrConflict},
	} {
		t.Run(tc.name, func(t *testing.T) {
			err := s.PutSecrets(ctx, "fn", "v1", []store.SealedSecret{tc.sec})
			if tc.sec.HeadRevision == 0 {
				if err == nil {
					t.Fatal("stored a sealed secret without its head revision")
				}
				return
			}
			if !errors.Is(err, tc.want) && err != tc.want {
				t.Fatalf("got %v, want %v", err, tc.want)
			}
		})
	}
	if err := s.PutSecrets(ctx, "nofn", "v1", []store.SealedSecret{sec}); !errors.Is(err, store.ErrNotFound) {
		t.Fatalf("secrets of a missing version: %v", err)
	}
	if err := s.CreateFunction(ctx, &model.Function{ID: "fn2", VersionID: "v1"}, []store.SealedSecret{{Name: "X", Account: "acct", NEK: 1, HeadRevision: 1}}); !errors.Is(err, store.ErrConflict) {
		t.Fatalf("create with a stale head: %v", err)
	}
	got, _, err := s.ScanSecrets(ctx, "", 10)
	if err != nil || len(got) != 1 || got[0].FunctionID != "fn" || got[0].VersionID != "v1" || got[0].Revision == 0 {
		t.Fatalf("scan: %+v %v", got, err)
	}
}
