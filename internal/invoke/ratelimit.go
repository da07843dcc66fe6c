package invoke

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"log/slog"
	"math"
	"net/http"
	"slices"
	"sync"
	"time"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/gantry-dev/gantry/internal/model"
	"github.com/gantry-dev/gantry/internal/problem"
)

// limiter enforces functions' rateLimit per function version and calling
// account. By default each gateway replica keeps a token bucket that holds
// the limit's count and refills it over its window, so "2-S" lets two calls
// through at once and a third only half a second later; with N replicas
// behind a balancer a caller can reach up to N times the limit. A limit
// with syncCheck is counted in a fixed window shared by every replica (the
// LimitsBucket), exact at the price of two KV round trips per call.
type limiter struct {
	mu      sync.Mutex
	buckets map[limitKey]*bucket
	sweep   time.Time
	now     func() time.Time
	shared  jetstream.KeyValue // nil: syncCheck limits are counted per replica too
	log     *slog.Logger
}

type limitKey struct{ version, account, rate string }

type bucket struct {
	tokens float64
	at     time.Time
	window time.Duration // refills fully over this; forgotten after it
}

func newLimiter(shared jetstream.KeyValue, log *slog.Logger) *limiter {
	return &limiter{buckets: map[limitKey]*bucket{}, now: time.Now, shared: shared, log: log}
}

// allow takes one call of account against f's rate limit, or returns the
// 429 problem that says when to retry.
func (l *limiter) allow(ctx context.Context, f model.Function, account string) error {
	rl := f.RateLimit
	if rl == nil || slices.Contains(rl.ExemptedNCAIDs, account) {
		return nil
	}
	count, window, ok := rl.Window()
	if !ok {
		return nil
	}
	if rl.SyncCheck && l.shared != nil {
		return l.allowShared(ctx, f, account, count, window)
	}
	rate := float64(count) / window.Seconds() // tokens per second
	now := l.now()
	k := limitKey{f.VersionID, account, rl.RateLimit}
	l.mu.Lock()
	defer l.mu.Unlock()
	if now.After(l.sweep) {
		// Forget buckets that have refilled: they hold nothing a new one
		// would not.
		for key, b := range l.buckets {
			if now.Sub(b.at) > b.window {
				delete(l.buckets, key)
			}
		}
		l.sweep = now.Add(time.Minute)
	}
	b := l.buckets[k]
	if b == nil {
		b = &bucket{tokens: float64(count), at: now, window: window}
		l.buckets[k] = b
	}
	b.tokens = min(float64(count), b.tokens+now.Sub(b.at).Seconds()*rate)
	b.at = now
	if b.tokens >= 1 {
		b.tokens--
		return nil
	}
	return tooMany(f, time.Duration((1-b.tokens)/rate*float64(time.Second)))
}

// tooMany is the 429 for a call over f's rate limit, retryable after wait.
func tooMany(f model.Function, wait time.Duration) error {
	return &problem.Error{Status: http.StatusTooManyRequests, RetryAfter: max(1, int(math.Ceil(wait.Seconds()))),
		Detail: "function " + f.ID + " version " + f.VersionID + " allows " + f.RateLimit.RateLimit +
			" calls per account (its rateLimit); retry after the Retry-After seconds, or ask its owner to raise the limit"}
}

// sharedTries bounds the compare-and-set loop of one shared check; a call
// that loses that many races to other replicas goes through.
const sharedTries = 8

// allowShared counts the call in the window of the limit that holds now,
// in a record all replicas update by compare-and-set. If the bucket cannot
// be reached the call goes through (a limiter must not take the platform
// down with it) and the failure is logged.
func (l *limiter) allowShared(ctx context.Context, f model.Function, account string, count int, window time.Duration) error {
	sum := sha256.Sum256([]byte(f.VersionID + "\x00" + account))
	key := hex.EncodeToString(sum[:16])
	now := l.now()
	start := now.Truncate(window)
	for range sharedTries {
		var rev uint64
		n := 0
		entry, err := l.shared.Get(ctx, key)
		switch {
		case errors.Is(err, jetstream.ErrKeyNotFound):
		case err != nil:
			l.log.Warn("invoke: shared rate limit unavailable; letting the call through", "function", f.ID, "err", err)
			return nil
		default:
			rev = entry.Revision()
			var w sharedWindow
			if json.Unmarshal(entry.Value(), &w) == nil && w.Start == start.UnixNano() {
				n = w.Count
			}
		}
		if n >= count {
			return tooMany(f, start.Add(window).Sub(now))
		}
		b, _ := json.Marshal(sharedWindow{Start: start.UnixNano(), Count: n + 1})
		if rev == 0 {
			_, err = l.shared.Create(ctx, key, b)
		} else {
			_, err = l.shared.Update(ctx, key, b, rev)
		}
		if err == nil {
			return nil
		}
		// Another replica counted a call in between: read again.
	}
	return nil
}

// sharedWindow is a LimitsBucket record: the calls counted in the window
// that starts at Start (Unix nanoseconds).
type sharedWindow struct {
	Start int64 `json:"start"`
	Count int   `json:"count"`
}
