package invoke

import (
	"context"
	"errors"
	"net/http"
	"testing"
	"time"

	"github.com/gantry-dev/gantry/internal/model"
	"github.com/gantry-dev/gantry/internal/problem"
)

func TestLimiter(t *testing.T) {
	fn := func(rate string, exempt ...string) model.Function {
		return model.Function{ID: "f", VersionID: "v", RateLimit: &model.RateLimit{RateLimit: rate, ExemptedNCAIDs: exempt}}
	}
	type call struct {
		after   time.Duration
		account string
		retry   int // 0: allowed; else the Retry-After of the 429
	}
	tests := []struct {
		name  string
		f     model.Function
		calls []call
	}{
		{"no limit", model.Function{ID: "f", VersionID: "v"}, []call{{0, "a", 0}, {0, "a", 0}, {0, "a", 0}}},
		{"2-S: the third at once is refused", fn("2-S"), []call{{0, "a", 0}, {0, "a", 0}, {0, "a", 1}, {500 * time.Millisecond, "a", 0}, {0, "a", 1}}},
		{"per account", fn("1-S"), []call{{0, "a", 0}, {0, "b", 0}, {0, "a", 1}}},
		{"exempted account", fn("1-S", "a"), []call{{0, "a", 0}, {0, "a", 0}, {0, "b", 0}, {0, "b", 1}}},
		{"1-M says how long to wait", fn("1-M"), []call{{0, "a", 0}, {15 * time.Second, "a", 45}, {45 * time.Second, "a", 0}}},
	}
	// Another function's short window does not sweep away a long one.
	t.Run("sweeps keep each bucket for its own window", func(t *testing.T) {
		l := newLimiter(nil, nil)
		now := time.Date(2026, 12, 7, 0, 0, 0, 0, time.UTC)
		l.now = func() time.Time { return now }
		daily, fast := fn("1-D"), model.Function{ID: "g", VersionID: "w", RateLimit: &model.RateLimit{RateLimit: "5-S"}}
		if err := l.allow(context.Background(), daily, "a"); err != nil {
			t.Fatal(err)
		}
		now = now.Add(2 * time.Minute) // past the sweep interval
		if err := l.allow(context.Background(), fast, "a"); err != nil {
			t.Fatal(err)
		}
		if err := l.allow(context.Background(), daily, "a"); err == nil {
			t.Fatal("the daily limit was forgotten by a sweep after 2 minutes")
		}
	})
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			l := newLimiter(nil, nil)
			now := time.Date(2026, 12, 7, 0, 0, 0, 0, time.UTC)
			l.now = func() time.Time { return now }
			for i, c := range tc.calls {
				now = now.Add(c.after)
				err := l.allow(context.Background(), tc.f, c.account)
				var pe *problem.Error
				switch {
				case c.retry == 0 && err != nil:
					t.Fatalf("call %d refused: %v", i, err)
				case c.retry != 0 && (!errors.As(err, &pe) || pe.Status != http.StatusTooManyRequests || pe.RetryAfter != c.retry):
					t.Fatalf("call %d: %v, want 429 with Retry-After %d", i, err, c.retry)
				}
			}
		})
	}
}
