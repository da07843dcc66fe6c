package events

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/nats-io/nats.go/jetstream"
)

// Entry is an event with its place in the stream, which a reader resumes
// after (SSE's Last-Event-ID).
type Entry struct {
	Seq   uint64
	Event Event
}

// Query selects one account's events.
type Query struct {
	// Since starts at the first event stored at or after it; zero: the
	// oldest retained.
	Since time.Time
	// After, when set, starts just after this stream sequence instead.
	After uint64
	// Limit bounds List: the newest Limit events that match (default
	// DefaultLimit, at most MaxLimit).
	Limit int
}

// List bounds.
const (
	DefaultLimit = 1000
	MaxLimit     = 10000
)

// Log reads the event stream for one account at a time: every read is a
// consumer filtered on that account's subjects, so no other account's
// event reaches it, and each message is decoded (DecodeAt) so nothing
// Gantry did not publish does either.
type Log struct {
	js jetstream.JetStream
}

// NewLog reads events through js.
func NewLog(js jetstream.JetStream) *Log { return &Log{js: js} }

// consumer creates an ephemeral consumer of account's events from q's
// start; the server removes it 30 s after its last use if the caller does
// not.
func (l *Log) consumer(ctx context.Context, account string, q Query) (jetstream.Consumer, error) {
	if !IsSubjectToken(account) {
		return nil, fmt.Errorf("events: account %q cannot name a subject", account)
	}
	cfg := jetstream.ConsumerConfig{
		FilterSubject:     AccountSubjects(account),
		AckPolicy:         jetstream.AckNonePolicy,
		DeliverPolicy:     jetstream.DeliverAllPolicy,
		InactiveThreshold: 30 * time.Second,
		MemoryStorage:     true,
		Replicas:          1,
	}
	switch {
	case q.After > 0:
		cfg.DeliverPolicy, cfg.OptStartSeq = jetstream.DeliverByStartSequencePolicy, q.After+1
	case !q.Since.IsZero():
		since := q.Since
		cfg.DeliverPolicy, cfg.OptStartTime = jetstream.DeliverByStartTimePolicy, &since
	}
	c, err := l.js.CreateConsumer(ctx, Stream, cfg)
	if err != nil {
		return nil, fmt.Errorf("events: read: %w", err)
	}
	return c, nil
}

func (l *Log) drop(c jetstream.Consumer) {
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
	defer cancel()
	_ = l.js.DeleteConsumer(ctx, Stream, c.CachedInfo().Name)
}

// List returns the newest q.Limit events of account from q's start, oldest
// first, and whether older ones were left out.
func (l *Log) List(ctx context.Context, account string, q Query) ([]Entry, bool, error) {
	limit := q.Limit
	if limit <= 0 {
		limit = DefaultLimit
	}
	limit = min(limit, MaxLimit)
	c, err := l.consumer(ctx, account, q)
	if err != nil {
		return nil, false, err
	}
	defer l.drop(c)
	pending := c.CachedInfo().NumPending
	ring := make([]Entry, 0, min(uint64(limit), pending))
	next, truncated := 0, false
	for got := uint64(0); got < pending; {
		batch, err := c.Fetch(int(min(pending-got, 500)), jetstream.FetchMaxWait(5*time.Second))
		if err != nil {
			return nil, false, fmt.Errorf("events: read: %w", err)
		}
		n := 0
		for m := range batch.Messages() {
			n++
			got++
			e, err := DecodeAt(m.Subject(), m.Data())
			if err != nil {
				continue
			}
			md, err := m.Metadata()
			if err != nil {
				continue
			}
			ent := Entry{Seq: md.Sequence.Stream, Event: e}
			if len(ring) < limit {
				ring = append(ring, ent)
				continue
			}
			ring[next], next, truncated = ent, (next+1)%limit, true
		}
		if err := batch.Error(); err != nil && !errors.Is(err, jetstream.ErrNoMessages) {
			return nil, false, fmt.Errorf("events: read: %w", err)
		}
		if n == 0 {
			break // retention dropped what was pending
		}
	}
	out := append(ring[next:len(ring):len(ring)], ring[:next]...)
	return out, truncated, nil
}

// Follow calls fn with each event of account from q's start, as it is
// stored, until ctx ends (nil) or fn fails (its error).
func (l *Log) Follow(ctx context.Context, account string, q Query, fn func(Entry) error) error {
	c, err := l.consumer(ctx, account, q)
	if err != nil {
		return err
	}
	defer l.drop(c)
	it, err := c.Messages(jetstream.PullMaxMessages(64), jetstream.PullHeartbeat(5*time.Second))
	if err != nil {
		return fmt.Errorf("events: follow: %w", err)
	}
	stop := context.AfterFunc(ctx, it.Stop)
	defer stop()
	defer it.Stop()
	for {
		m, err := it.Next()
		if err != nil {
			if ctx.Err() != nil {
				return nil
			}
			return fmt.Errorf("events: follow: %w", err)
		}
		e, err := DecodeAt(m.Subject(), m.Data())
		if err != nil {
			continue
		}
		md, err := m.Metadata()
		if err != nil {
			continue
		}
		if err := fn(Entry{Seq: md.Sequence.Stream, Event: e}); err != nil {
			return err
		}
	}
}
