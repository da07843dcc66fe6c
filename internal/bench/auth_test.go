package bench

import (
	"testing"

	"github.com/gantry-dev/gantry/internal/testutil"
)

// TestRunAuthSmall runs the benchmark at a tiny size: both paths answer,
// every round is recorded, and the target is judged.
func TestRunAuthSmall(t *testing.T) {
	res, err := RunAuth(testutil.Context(t), AuthConfig{Requests: 200, Warmup: 20, Rounds: 2, Calls: 1000})
	if err != nil {
		t.Fatal(err)
	}
	if res.Errors != 0 {
		t.Fatalf("%d errors, e.g. %s", res.Errors, res.FirstError)
	}
	if len(res.Rounds) != 2 || res.Rounds[0].Plain.Count != 200 || res.Rounds[1].Guarded.Count != 200 {
		t.Fatalf("rounds %+v", res.Rounds)
	}
	if res.PlainP50 <= 0 || res.GuardedP50 <= 0 || res.AuthenticateNs <= 0 || len(res.Targets) != 1 {
		t.Fatalf("result %+v", res)
	}
}
