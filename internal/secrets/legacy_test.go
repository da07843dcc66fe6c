package secrets

import (
	"bytes"
	"os"
	"path/filepath"
	"testing"

	"github.com/gantry-dev/gantry/internal/model"
	"github.com/gantry-dev/gantry/internal/store"
	"github.com/gantry-dev/gantry/internal/testutil"
)

// TestLegacySecretsStillOpen stores secrets the way releases before the
// secret store did (sealed directly with keys/secrets.key, no account or
// NEK on the record) and starts the service over them.
func TestLegacySecretsStillOpen(t *testing.T) {
	t.Parallel()
	st := testutil.StartEtcd(t)
	ctx := testutil.Context(t)
	keys := filepath.Join(t.TempDir(), "keys")
	legacyKey := bytes.Repeat([]byte{0x42}, 32)
	if err := os.MkdirAll(keys, 0o700); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(keys, "secrets.key"), legacyKey, 0o600); err != nil {
		t.Fatal(err)
	}
	aead, err := newAEAD(legacyKey)
	if err != nil {
		t.Fatal(err)
	}
	var places []Place
	var legacy []store.SealedSecret
	for _, name := range []string{"A", "B"} {
		p := Place{Account: "acct", FunctionID: "fn", VersionID: "fn-v1", Name: name}
		ct, err := seal(aead, []byte(value(p)), p.aad())
		if err != nil {
			t.Fatal(err)
		}
		places = append(places, p)
		legacy = append(legacy, store.SealedSecret{Name: name, KeyID: "file:0a0b0c0d", Ciphertext: ct})
	}
	if err := st.CreateFunction(ctx, &model.Function{ID: "fn", VersionID: "fn-v1", NCAID: "acct"}, legacy); err != nil {
		t.Fatal(err)
	}

	svc := NewService(st, NewFileMEK(keys), nil)
	// Before the upgrade a legacy record opens with the adopted key.
	if _, err := svc.ensureMeta(ctx); err != nil {
		t.Fatal(err)
	}
	got, err := svc.Open(ctx, places[0], Sealed{Ciphertext: legacy[0].Ciphertext})
	if err != nil || string(got) != value(places[0]) {
		t.Fatalf("legacy open: %q %v", got, err)
	}
	for range 2 { // the upgrade is idempotent
		if err := svc.Start(ctx); err != nil {
			t.Fatal(err)
		}
	}
	for _, p := range places {
		sec, err := st.GetSecret(ctx, p.FunctionID, p.VersionID, p.Name)
		if err != nil {
			t.Fatal(err)
		}
		if sec.NEK != 1 || sec.Account != "acct" || sec.KeyID != "" {
			t.Fatalf("upgraded record: %+v", sec)
		}
	}
	openAll(t, st, NewService(st, NewFileMEK(keys), nil), places)
	meta, err := st.GetESSMeta(ctx)
	if err != nil || !meta.LegacyDone || meta.ActiveMEK != 1 {
		t.Fatalf("meta: %+v %v", meta, err)
	}
	st2, err := svc.Status(ctx)
	if err != nil || st2.LegacySecrets != 0 {
		t.Fatalf("status: %+v %v", st2, err)
	}
	mek1, err := NewFileMEK(keys).Key(ctx, 1)
	if err != nil || !bytes.Equal(mek1, legacyKey) {
		t.Fatalf("the legacy key was not adopted as MEK v1: %v", err)
	}
}
