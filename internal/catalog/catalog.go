// Package catalog keeps an in-memory, watch-driven copy of every function
// version and its deployment, so the invocation gateway resolves a function
// without a store round trip on the hot path. It follows etcd through a
// snapshot followed by a watch from the snapshot's revision, so no change
// between the two is missed; if the watch breaks it starts over.
package catalog

import (
	"context"
	"encoding/json"
	"errors"
	"log/slog"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/gantry-dev/gantry/internal/model"
	"github.com/gantry-dev/gantry/internal/store"
)

// Source is what the catalog needs from the store.
type Source interface {
	Snapshot(ctx context.Context, sub string) ([]store.Event, int64, error)
	Watch(ctx context.Context, sub string, rev int64) <-chan []store.Event
	ListFunctionVersions(ctx context.Context, fnID string) ([]model.Function, error)
	GetDeployment(ctx context.Context, versionID string) (model.Deployment, error)
	GetAuthorization(ctx context.Context, fnID string) (model.FunctionAuthorization, error)
}

// Entry is one function version with its deployment, if any.
type Entry struct {
	Function   model.Function
	Deployment *model.Deployment
}

// Status is the version's status as NVCF reports it: its deployment's, or
// INACTIVE when it has none.
func (e Entry) Status() model.FunctionStatus {
	if e.Deployment == nil {
		return model.StatusInactive
	}
	return e.Deployment.FunctionStatus
}

// Catalog is the cache.
type Catalog struct {
	src Source
	log *slog.Logger

	mu          sync.RWMutex
	functions   map[string]map[string]model.Function   // fnID -> versionID -> version
	deployments map[string]model.Deployment            // versionID -> deployment
	shares      map[string]model.FunctionAuthorization // fnID -> who else may use it

	readyOnce sync.Once
	ready     chan struct{}
}

// New builds a catalog over src; Start fills and follows it.
func New(src Source, log *slog.Logger) *Catalog {
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	return &Catalog{
		src: src, log: log,
		functions:   map[string]map[string]model.Function{},
		deployments: map[string]model.Deployment{},
		shares:      map[string]model.FunctionAuthorization{},
		ready:       make(chan struct{}),
	}
}

// Ready is closed once the catalog holds a first complete snapshot.
func (c *Catalog) Ready() <-chan struct{} { return c.ready }

// Start follows the store until ctx ends.
func (c *Catalog) Start(ctx context.Context) {
	go func() {
		for ctx.Err() == nil {
			if err := c.follow(ctx); err != nil && ctx.Err() == nil {
				c.log.Warn("catalog: watch broke; re-reading", "err", err)
			}
			select {
			case <-ctx.Done():
			case <-time.After(250 * time.Millisecond):
			}
		}
	}()
}

func (c *Catalog) follow(ctx context.Context) error {
	fevs, frev, err := c.src.Snapshot(ctx, "functions/")
	if err != nil {
		return err
	}
	devs, drev, err := c.src.Snapshot(ctx, "deployments/")
	if err != nil {
		return err
	}
	aevs, arev, err := c.src.Snapshot(ctx, store.PrefixAuthorizations)
	if err != nil {
		return err
	}
	c.mu.Lock()
	c.functions = map[string]map[string]model.Function{}
	c.deployments = map[string]model.Deployment{}
	c.shares = map[string]model.FunctionAuthorization{}
	c.applyLocked(fevs)
	c.applyLocked(devs)
	c.applyLocked(aevs)
	c.mu.Unlock()
	c.readyOnce.Do(func() { close(c.ready) })

	wctx, cancel := context.WithCancel(ctx)
	defer cancel()
	fch := c.src.Watch(wctx, "functions/", frev)
	dch := c.src.Watch(wctx, "deployments/", drev)
	ach := c.src.Watch(wctx, store.PrefixAuthorizations, arev)
	for {
		var evs []store.Event
		var ok bool
		select {
		case evs, ok = <-fch:
		case evs, ok = <-dch:
		case evs, ok = <-ach:
		}
		if !ok {
			return ctx.Err()
		}
		c.mu.Lock()
		c.applyLocked(evs)
		c.mu.Unlock()
	}
}

func (c *Catalog) applyLocked(evs []store.Event) {
	for _, e := range evs {
		switch {
		case strings.HasPrefix(e.Key, "functions/"):
			fnID, verID, ok := strings.Cut(strings.TrimPrefix(e.Key, "functions/"), "/")
			if !ok {
				continue
			}
			if e.Deleted {
				delete(c.functions[fnID], verID)
				if len(c.functions[fnID]) == 0 {
					delete(c.functions, fnID)
				}
				continue
			}
			var f model.Function
			if err := json.Unmarshal(e.Value, &f); err != nil {
				c.log.Error("catalog: undecodable function", "key", e.Key, "err", err)
				continue
			}
			if c.functions[fnID] == nil {
				c.functions[fnID] = map[string]model.Function{}
			}
			c.functions[fnID][verID] = f
		case strings.HasPrefix(e.Key, "deployments/"):
			verID := strings.TrimPrefix(e.Key, "deployments/")
			if e.Deleted {
				delete(c.deployments, verID)
				continue
			}
			var d model.Deployment
			if err := json.Unmarshal(e.Value, &d); err != nil {
				c.log.Error("catalog: undecodable deployment", "key", e.Key, "err", err)
				continue
			}
			c.deployments[verID] = d
		case strings.HasPrefix(e.Key, store.PrefixAuthorizations):
			fnID := strings.TrimPrefix(e.Key, store.PrefixAuthorizations)
			if e.Deleted {
				delete(c.shares, fnID)
				continue
			}
			var a model.FunctionAuthorization
			if err := json.Unmarshal(e.Value, &a); err != nil {
				c.log.Error("catalog: undecodable authorization", "key", e.Key, "err", err)
				continue
			}
			c.shares[fnID] = a
		}
	}
}

// visible reports whether account may see version f: it owns it, or the
// owner shares it (all versions or this one) with account.
func visible(f model.Function, share model.FunctionAuthorization, account string) bool {
	return f.NCAID == account || (share.NCAID == f.NCAID && share.Allows(account, f.VersionID))
}

// Lookup returns one version of a function account owns or that is shared
// with account; Entry.Function.NCAID tells which.
func (c *Catalog) Lookup(account, fnID, versionID string) (Entry, bool) {
	c.mu.RLock()
	defer c.mu.RUnlock()
	f, ok := c.functions[fnID][versionID]
	if !ok || !visible(f, c.shares[fnID], account) {
		return Entry{}, false
	}
	return c.entryLocked(f), true
}

// Versions returns every version of a function that account owns or that is
// shared with it, newest first.
func (c *Catalog) Versions(account, fnID string) []Entry {
	c.mu.RLock()
	defer c.mu.RUnlock()
	var out []Entry
	share := c.shares[fnID]
	for _, f := range c.functions[fnID] {
		if visible(f, share, account) {
			out = append(out, c.entryLocked(f))
		}
	}
	sortNewestFirst(out)
	return out
}

// Resolve picks the version an invocation of fnID goes to when the caller
// names no version (see Pick).
func (c *Catalog) Resolve(account, fnID string) (Entry, bool) {
	return Pick(c.Versions(account, fnID), "")
}

// Pick chooses, among one function's versions (newest first), the one an
// invocation goes to: the named version if versionID is set; otherwise the
// newest version that accepts invocations, else the newest deployed one (so
// the caller learns why it cannot be invoked), else the newest version.
func Pick(versions []Entry, versionID string) (Entry, bool) {
	if versionID != "" {
		for _, e := range versions {
			if e.Function.VersionID == versionID {
				return e, true
			}
		}
		return Entry{}, false
	}
	if len(versions) == 0 {
		return Entry{}, false
	}
	for _, e := range versions {
		if e.Status().AcceptsInvocations() {
			return e, true
		}
	}
	for _, e := range versions {
		if e.Deployment != nil {
			return e, true
		}
	}
	return versions[0], true
}

// Fresh reads a function's versions straight from the store, newest first.
// The cache follows a watch, which can lag behind a write that a client has
// already seen; callers about to answer "not found" or "not invocable" ask
// here first, so such an answer is never caused by the lag.
func (c *Catalog) Fresh(ctx context.Context, account, fnID string) ([]Entry, error) {
	fs, err := c.src.ListFunctionVersions(ctx, fnID)
	if errors.Is(err, store.ErrNotFound) {
		return nil, nil
	}
	if err != nil {
		return nil, err
	}
	share, err := c.src.GetAuthorization(ctx, fnID)
	if err != nil && !errors.Is(err, store.ErrNotFound) {
		return nil, err
	}
	var out []Entry
	for _, f := range fs {
		if !visible(f, share, account) {
			continue
		}
		e := Entry{Function: f}
		d, err := c.src.GetDeployment(ctx, f.VersionID)
		switch {
		case err == nil:
			e.Deployment = &d
		case !errors.Is(err, store.ErrNotFound):
			return nil, err
		}
		out = append(out, e)
	}
	sortNewestFirst(out)
	return out, nil
}

func (c *Catalog) entryLocked(f model.Function) Entry {
	e := Entry{Function: f}
	if d, ok := c.deployments[f.VersionID]; ok {
		e.Deployment = &d
	}
	return e
}

func sortNewestFirst(es []Entry) {
	slices.SortFunc(es, func(a, b Entry) int { return b.Function.CreatedAt.Compare(a.Function.CreatedAt) })
}
