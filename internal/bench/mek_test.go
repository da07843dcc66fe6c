package bench

import (
	"strings"
	"testing"

	"github.com/gantry-dev/gantry/internal/testutil"
)

// TestRunMEKSmall runs the MEK benchmark at a small scale and checks that
// its own checks pass.
func TestRunMEKSmall(t *testing.T) {
	t.Parallel()
	res, err := RunMEK(testutil.Context(t), MEKConfig{NEKs: 300, Secrets: 25, BatchSize: 16, Runs: 1})
	if err != nil {
		t.Fatal(err)
	}
	r := res.Runs[0]
	if r.Rewrapped != 300 || r.LeftOnOldMEK != 0 || r.SecretsRewritten != 0 || r.SecretsOpened != 25 || !r.OldMEKRetired {
		t.Fatalf("run: %+v", r)
	}
	for _, tg := range res.Targets[1:] {
		if !tg.Pass {
			t.Errorf("check %s: got %s", tg.Name, tg.Got)
		}
	}
}

func TestMEKConfigRejectsBatchesEtcdRefuses(t *testing.T) {
	t.Parallel()
	cfg := MEKConfig{BatchSize: 129}
	if err := cfg.defaults(); err == nil || !strings.Contains(err.Error(), "max-txn-ops") {
		t.Fatalf("batch 129: %v", err)
	}
}
