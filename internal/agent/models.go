package agent

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"sync/atomic"
	"time"

	"github.com/gantry-dev/gantry/internal/agent/artifacts"
	"github.com/gantry-dev/gantry/internal/model"
	"github.com/gantry-dev/gantry/internal/validate"
)

// Retries of an instance whose artifacts could not be fetched back off
// from artifactRetryBase, doubling, to artifactRetryMax; the instance is
// ERROR in between, saying why.
const (
	artifactRetryBase = 10 * time.Second
	artifactRetryMax  = 5 * time.Minute
)

// instanceArtifactsDir, below the cache directory, holds each instance's
// view of its artifacts: <id>/models/<name>/<file> and
// <id>/resources/<name>/<file>, hard links into the cache's blobs.
const instanceArtifactsDir = "instances"

// artifactFetch is the fetch of one instance's models and resources.
// The run loop owns it; the fetching goroutine writes only progress, and
// hands its result back on Agent.fetched.
type artifactFetch struct {
	cancel   context.CancelFunc
	running  bool
	err      error
	attempts int
	retryAt  time.Time
	progress atomic.Pointer[string] // what the instance's STARTING reason says

	modelsDir, resourcesDir string
}

// fetchResult ends an artifactFetch.
type fetchResult struct {
	id  string
	f   *artifactFetch
	err error
}

func hasArtifacts(in model.DesiredInstance) bool { return len(in.Models)+len(in.Resources) > 0 }

// prepareArtifacts tells converge whether in may start: at once when it
// has no artifacts, else once they are fetched and placed. Until then it
// fetches them in the background (the instance reports STARTING with the
// progress), and after a failure the instance is ERROR with why until the
// next attempt.
func (a *Agent) prepareArtifacts(ctx context.Context, in model.DesiredInstance) (modelsDir, resourcesDir string, ok bool) {
	if !hasArtifacts(in) {
		return "", "", true
	}
	id := in.InstanceID
	switch {
	case a.cluster != nil:
		a.failed[id] = "the Kubernetes runtime does not deliver models or resources yet: " +
			"run the function on a cluster whose agent uses the process runtime, or bake the files into containerImage"
		return "", "", false
	case a.cache == nil:
		a.failed[id] = "this agent has no artifact cache directory, so it cannot fetch the function's models and resources; " +
			"start it with --artifact-cache-dir"
		return "", "", false
	}
	f := a.fetches[id]
	switch {
	case f == nil:
		a.startFetch(ctx, in, 0)
	case f.running:
	case f.err != nil:
		a.failed[id] = f.err.Error()
		if time.Now().After(f.retryAt) {
			a.startFetch(ctx, in, f.attempts)
		}
	default:
		return f.modelsDir, f.resourcesDir, true
	}
	return "", "", false
}

func (a *Agent) startFetch(ctx context.Context, in model.DesiredInstance, attempts int) {
	id := in.InstanceID
	fctx, cancel := context.WithCancel(ctx)
	f := &artifactFetch{cancel: cancel, running: true, attempts: attempts + 1}
	first := "fetching models and resources"
	f.progress.Store(&first)
	a.fetches[id] = f
	delete(a.failed, id)
	dir := filepath.Join(a.cache.Dir(), instanceArtifactsDir, id)
	f.modelsDir, f.resourcesDir = filepath.Join(dir, "models"), filepath.Join(dir, "resources")
	go func() {
		err := a.fetchArtifacts(fctx, in, f, dir)
		select {
		case a.fetched <- fetchResult{id: id, f: f, err: err}:
		case <-ctx.Done():
		}
	}()
}

// fetchArtifacts fetches in's models, then its resources, into the cache,
// one after the other, and places each in the instance's directory.
func (a *Agent) fetchArtifacts(ctx context.Context, in model.DesiredInstance, f *artifactFetch, dir string) error {
	if err := os.RemoveAll(dir); err != nil {
		return fmt.Errorf("agent: clearing the instance's artifact directory: %w", err)
	}
	type item struct {
		kind string // "model" or "resource"
		art  model.Artifact
		dir  string
	}
	var items []item
	for _, m := range in.Models {
		items = append(items, item{"model", m, f.modelsDir})
	}
	for _, r := range in.Resources {
		items = append(items, item{"resource", r, f.resourcesDir})
	}
	// Make both directories exist, even empty, so the function can list
	// them whatever it was given.
	for _, d := range []string{f.modelsDir, f.resourcesDir} {
		if err := os.MkdirAll(d, 0o755); err != nil {
			return fmt.Errorf("agent: %w", err)
		}
	}
	for i, it := range items {
		what := fmt.Sprintf("fetching %s %s (%d of %d)", it.kind, it.art.Name, i+1, len(items))
		last := what
		f.progress.Store(&what)
		a.notify()
		b, err := a.cache.Fetch(ctx, it.art, func(done, total int64) {
			s := what + ": " + progressText(done, total)
			if s != last {
				last = s
				f.progress.Store(&s)
				a.notify()
			}
		})
		if err != nil {
			a.log.Warn("agent: fetching an instance's artifact failed", "instance", in.InstanceID, "artifact", it.art.Name,
				"url", validate.RedactURL(it.art.URI), "err", err)
			return fmt.Errorf("%s %s could not be fetched: %w", it.kind, it.art.Name, err)
		}
		if err := artifacts.Place(b, filepath.Join(it.dir, it.art.Name)); err != nil {
			return fmt.Errorf("%s %s could not be placed: %w", it.kind, it.art.Name, err)
		}
	}
	return nil
}

// fetchDone records the end of a fetch; a failed one waits out its backoff.
func (a *Agent) fetchDone(r fetchResult) {
	if a.fetches[r.id] != r.f {
		return // dropped (no longer wanted) or replaced meanwhile
	}
	r.f.running = false
	r.f.err = r.err
	if r.err != nil {
		wait := min(artifactRetryBase<<min(r.f.attempts-1, 10), artifactRetryMax)
		r.f.retryAt = time.Now().Add(wait)
		r.f.err = fmt.Errorf("%w (retrying in %s)", r.err, wait)
		a.failed[r.id] = r.f.err.Error()
	}
}

// dropArtifacts forgets an instance's fetch, stopping it, and removes its
// view of the artifacts (the cache keeps the content).
func (a *Agent) dropArtifacts(id string) {
	if f, ok := a.fetches[id]; ok {
		f.cancel()
		delete(a.fetches, id)
	}
	if a.cache != nil {
		if err := os.RemoveAll(filepath.Join(a.cache.Dir(), instanceArtifactsDir, id)); err != nil {
			a.log.Warn("agent: removing an instance's artifacts", "instance", id, "err", err)
		}
	}
}

// fetchingStates are the instances whose artifacts are being fetched, as
// STARTING with the progress as reason.
func (a *Agent) fetchingStates() []model.InstanceState {
	var out []model.InstanceState
	for id, f := range a.fetches {
		if !f.running {
			continue
		}
		if _, wanted := a.want[id]; !wanted {
			continue
		}
		out = append(out, model.InstanceState{InstanceID: id, ClusterID: a.cfg.ClusterID, Status: model.InstanceStarting,
			Reason: *f.progress.Load()})
	}
	return out
}

// progressText says how far a download is: a percentage of the total when
// the server gave it, else the bytes so far in steps of 16 MiB (each change
// of the text is a report).
func progressText(done, total int64) string {
	if total > 0 {
		return fmt.Sprintf("%d%% of %s", done*100/total, byteSize(total))
	}
	return byteSize(done&^(16<<20-1)) + " so far"
}

func byteSize(n int64) string {
	switch {
	case n >= 1<<30:
		return fmt.Sprintf("%.1f GiB", float64(n)/(1<<30))
	case n >= 1<<20:
		return fmt.Sprintf("%.1f MiB", float64(n)/(1<<20))
	case n >= 1<<10:
		return fmt.Sprintf("%.1f KiB", float64(n)/(1<<10))
	default:
		return fmt.Sprintf("%d bytes", n)
	}
}
