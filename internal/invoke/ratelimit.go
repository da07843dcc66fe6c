package invoke

import (
	"math"
	"net/http"
	"slices"
	"sync"
	"time"

	"github.com/gantry-dev/gantry/internal/model"
	"github.com/gantry-dev/gantry/internal/problem"
)

// limiter enforces functions' rateLimit: per function version and calling
// account, a token bucket that holds the limit's count and refills it over
// its window, so "2-S" lets two calls through at once and a third only
// half a second later. Each gateway replica keeps its own buckets: with N
// replicas behind a balancer a caller can reach up to N times the limit.
type limiter struct {
	mu      sync.Mutex
	buckets map[limitKey]*bucket
	sweep   time.Time
	now     func() time.Time
}

type limitKey struct{ version, account, rate string }

type bucket struct {
	tokens float64
	at     time.Time
	window time.Duration // refills fully over this; forgotten after it
}

func newLimiter() *limiter {
	return &limiter{buckets: map[limitKey]*bucket{}, now: time.Now}
}

// allow takes one call of account against f's rate limit, or returns the
// 429 problem that says when to retry.
func (l *limiter) allow(f model.Function, account string) error {
	rl := f.RateLimit
	if rl == nil || slices.Contains(rl.ExemptedNCAIDs, account) {
		return nil
	}
	count, window, ok := rl.Window()
	if !ok {
		return nil
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
	wait := (1 - b.tokens) / rate
	return &problem.Error{Status: http.StatusTooManyRequests, RetryAfter: int(math.Ceil(wait)),
		Detail: "function " + f.ID + " version " + f.VersionID + " allows " + rl.RateLimit +
			" calls per account (its rateLimit); retry after the Retry-After seconds, or ask its owner to raise the limit"}
}
