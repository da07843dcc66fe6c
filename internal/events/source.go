package events

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"strconv"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/gantry-dev/gantry/internal/store"
)

// Changes is what Source reads: etcd's history of the installation's keys.
// *store.Store satisfies it.
type Changes interface {
	History
	WatchChanges(ctx context.Context, after int64, fn func([]store.Change) error) error
	Revision(ctx context.Context) (int64, error)
}

var _ Changes = (*store.Store)(nil)

// SourceConfig configures a Source.
type SourceConfig struct {
	Store Changes
	JS    jetstream.JetStream
	// Source is the CloudEvents source of every event (default "/gantry").
	Source string
	Logger *slog.Logger
	// Now stamps events whose record has no time (default time.Now).
	Now func() time.Time
}

// Source publishes the platform events. Only the leading replica runs it
// (Run), so each change is published once; and because an event's id is
// its change's etcd revision and key, sent as the JetStream message id
// (Nats-Msg-Id), the stream drops a second copy within DuplicateWindow.
// That covers the moment of a leader change, when the old leader may still
// be publishing while the new one starts: the new one resumes at the
// revision of the last event in the stream, re-deriving that revision's
// events (duplicates, dropped) and everything after it. Deriving from
// etcd's history rather than hooking each writer means a change made by any
// path, on any replica, is seen once, in order, with the value it replaced.
type Source struct {
	cfg SourceConfig
	log *slog.Logger
}

// NewSource builds a Source.
func NewSource(cfg SourceConfig) *Source {
	if cfg.Source == "" {
		cfg.Source = "/gantry"
	}
	if cfg.Now == nil {
		cfg.Now = time.Now
	}
	log := cfg.Logger
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	return &Source{cfg: cfg, log: log}
}

// Run publishes events until ctx ends. Call it while leading.
func (s *Source) Run(ctx context.Context) {
	from := int64(-1) // where to watch after; -1: find out from the stream
	for ctx.Err() == nil {
		after, err := from, error(nil)
		if after < 0 {
			after, err = s.start(ctx)
		}
		from = -1
		if err == nil {
			err = s.cfg.Store.WatchChanges(ctx, after, func(cs []store.Change) error {
				for _, c := range cs {
					if err := s.handle(ctx, c); err != nil {
						return err
					}
				}
				return nil
			})
		}
		var compacted *store.CompactedError
		switch {
		case ctx.Err() != nil:
			return
		case errors.As(err, &compacted):
			// Go on from the oldest change etcd still has.
			from = compacted.Revision - 1
			if after > 0 {
				s.log.Warn("events: etcd no longer holds every change since the last published event; events in between are lost",
					"from", after+1, "to", compacted.Revision-1)
			}
			continue
		case err != nil:
			s.log.Warn("events: publishing stopped; resuming from the last event in the stream", "err", err)
		}
		select {
		case <-ctx.Done():
		case <-time.After(time.Second):
		}
	}
}

// start returns the revision to watch after: just before the revision of
// the last event in the stream, so that revision is derived again (its
// events may be only partly published; the copies are dropped). When the
// stream never held anything (a new installation, or one from before
// events) it is 0: every change etcd still holds is an event, so nothing
// that happened before the first leader got here is missed. When it holds
// messages but none of the last ones is Gantry's (see lastRevision), the
// resume point is unknown, and it starts at the current revision rather
// than publish an hour of history again.
func (s *Source) start(ctx context.Context) (int64, error) {
	cur, err := s.cfg.Store.Revision(ctx)
	if err != nil {
		return 0, err
	}
	rev, ever, err := s.lastRevision(ctx)
	if err != nil {
		return 0, err
	}
	if rev == 0 && ever {
		s.log.Warn("events: none of the newest messages in the stream is an event Gantry published; starting at the current revision",
			"etcdRevision", cur)
		return cur, nil
	}
	if rev > cur {
		// etcd is older than the stream (restored from a backup): its
		// revisions say nothing about what was published.
		s.log.Warn("events: the last event is from a later etcd revision than etcd's own; starting at the current one",
			"eventRevision", rev, "etcdRevision", cur)
		return cur, nil
	}
	return max(rev-1, 0), nil
}

// lookBack is how many of the stream's newest messages lastRevision reads
// for one Gantry published.
const lookBack = 256

// lastRevision reads the revision header of the newest event in the stream
// (a message without one, which Gantry did not publish, is skipped), and
// whether the stream ever held a message.
func (s *Source) lastRevision(ctx context.Context) (rev int64, ever bool, err error) {
	st, err := s.cfg.JS.Stream(ctx, Stream)
	if err != nil {
		return 0, false, fmt.Errorf("events: %w", err)
	}
	state := st.CachedInfo().State
	for seq := state.LastSeq; seq >= max(state.FirstSeq, 1) && state.LastSeq-seq < lookBack; seq-- {
		m, err := st.GetMsg(ctx, seq)
		if errors.Is(err, jetstream.ErrMsgNotFound) {
			continue
		}
		if err != nil {
			return 0, true, fmt.Errorf("events: read event %d: %w", seq, err)
		}
		if rev, err := strconv.ParseInt(m.Header.Get(HeaderRevision), 10, 64); err == nil && rev > 0 {
			return rev, true, nil
		}
	}
	return 0, state.LastSeq > 0, nil
}

// handle publishes the events of one change, retrying a failed publish a
// few times before giving up (Run then resumes from the stream).
func (s *Source) handle(ctx context.Context, c store.Change) error {
	drafts, err := derive(ctx, s.cfg.Store, c, s.cfg.Now())
	if errors.Is(err, store.ErrCompacted) {
		s.log.Warn("events: history of a change is gone; its event is skipped", "key", c.Key, "revision", c.Revision)
		return nil
	}
	if err != nil {
		return err
	}
	for _, d := range drafts {
		if !IsSubjectToken(d.account) {
			s.log.Warn("events: account cannot name a subject; event skipped", "kind", d.kind, "account", d.account)
			continue
		}
		msg, err := s.message(d)
		if err != nil {
			return err
		}
		for attempt := 0; ; attempt++ {
			pctx, cancel := context.WithTimeout(ctx, 5*time.Second)
			_, err = s.cfg.JS.PublishMsg(pctx, msg)
			cancel()
			if err == nil || ctx.Err() != nil {
				break
			}
			if attempt == 4 {
				return fmt.Errorf("events: publish %s: %w", d.id, err)
			}
			select {
			case <-ctx.Done():
			case <-time.After(time.Duration(100<<attempt) * time.Millisecond):
			}
		}
		if err != nil {
			return err
		}
	}
	return nil
}

// message is the NATS message of d: the event's JSON, its id as the
// JetStream message id, and the revision it came from.
func (s *Source) message(d draft) (*nats.Msg, error) {
	data, err := json.Marshal(d.data)
	if err != nil {
		return nil, fmt.Errorf("events: encode %s: %w", d.kind, err)
	}
	b, err := json.Marshal(Event{SpecVersion: SpecVersion, ID: d.id, Source: s.cfg.Source, Type: Type(d.kind), Time: d.time,
		Subject: d.subject, DataContentType: ContentType, Account: d.account, Function: d.function, Data: data})
	if err != nil {
		return nil, fmt.Errorf("events: encode %s: %w", d.kind, err)
	}
	msg := nats.NewMsg(Subject(d.account, d.kind))
	msg.Data = b
	msg.Header.Set(jetstream.MsgIDHeader, d.id)
	msg.Header.Set(HeaderRevision, strconv.FormatInt(d.revision, 10))
	return msg, nil
}
