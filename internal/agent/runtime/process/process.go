// Package process runs function instances as child processes of the agent.
// It is the runtime behind process:// images: a developer, a CI job or a
// single GPU box gets real instances (own port, GPU env vars, health checks,
// crash restarts) without a container engine.
//
// Each instance has exactly one port on 127.0.0.1, passed as $PORT, and must
// serve its inference and health endpoints there (a distinct health port in
// the spec is mapped onto $PORT too). Which port that is:
//
//   - the function's inferencePort, when it has one and that port is free on
//     the host and not held by another instance of this runtime;
//   - otherwise a free port the kernel picks, so many instances of a function
//     that honours $PORT share a machine.
//
// So a function that ignores $PORT and binds its inferencePort (e.g. :8000,
// as NVIDIA's own load-test function does) runs unchanged, one instance per
// port per host: a second one gets another $PORT, fails to come up, and its
// status names the instance (or program) holding the port and what to do
// about it. When the holder goes, its next restart takes the port. NVCF
// functions are not told to honour $PORT, so no opt-in flag can tell the two
// kinds apart, and guessing from what a process tree listens on would be
// fragile; the rule above needs no guess. The cost is that an instance of a
// $PORT-honouring function may take a well-known port on the host.
//
// A network namespace per instance (unshare -Urn works unprivileged on many
// hosts) would let every such instance bind its port, but is not used: a
// fresh namespace has only loopback, so the function could not pull models or
// call out anywhere without veth and NAT (root) or a slirp4netns-style helper,
// and an unprivileged agent cannot setns into it to reach the port (that
// needs CAP_SYS_ADMIN in the agent's own user namespace), so it would also
// need a relay process inside.
//
// Lifecycle of an instance: STARTING until the first healthy probe, then
// RUNNING. An exit, or three failed probes in a row while RUNNING, restarts
// it with exponential backoff. After Config.FailureThreshold starts in a row
// that never became healthy it is ERRORED, and restarts go on with backoff
// (like Kubernetes' CrashLoopBackOff) so a later healthy start turns it
// RUNNING again.
package process

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"maps"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	goruntime "runtime"
	"slices"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/gantry-dev/gantry/internal/agent/runtime"
	"github.com/gantry-dev/gantry/internal/model"
)

// Defaults for Config fields left zero, and fixed timings.
const (
	DefaultBackoffBase      = time.Second
	DefaultBackoffMax       = 30 * time.Second
	DefaultFailureThreshold = 3
	DefaultHealthInterval   = 2 * time.Second
	DefaultStartupTimeout   = 5 * time.Minute
	DefaultStopGrace        = 5 * time.Second

	// startingProbeInterval is the probe period while STARTING: connection
	// refused costs microseconds, and cold-start latency is what users see.
	startingProbeInterval = 50 * time.Millisecond
	// unhealthyThreshold is how many failed probes in a row make a RUNNING
	// instance be killed and restarted.
	unhealthyThreshold = 3
	// defaultProbeTimeout and defaultHealthPath apply when the spec leaves
	// them unset.
	defaultProbeTimeout = 5 * time.Second
	defaultHealthPath   = "/health"
	// exitWaitDelay bounds how long Wait waits for output pipes held open by
	// stray grandchildren after the process itself has exited.
	exitWaitDelay = time.Second
)

// ErrClosed is returned by Start after Close, so a caller racing shutdown
// gets an error instead of an instance nobody will stop.
var ErrClosed = errors.New("process: runtime closed")

// Config configures a Runtime. Zero values take the documented defaults.
type Config struct {
	// Dir is the runtime's state directory. Each instance's stdout and
	// stderr are appended to Dir/instances/<instance id>.log. The runtime
	// never writes spec.Secrets there itself (a process may print its own
	// environment, which is its business). Each instance also gets
	// Dir/work/<instance id>/assets and .../large-output, its NVCF_ASSET_DIR
	// and NVCF_LARGE_OUTPUT_DIR, removed when the instance is stopped.
	// Required.
	Dir string
	// Notify is called whenever an instance's status changes or an instance
	// is removed, so the agent can report without polling List. It is called
	// without any runtime lock held, possibly from several goroutines at
	// once, and also synchronously from within Start, Stop and Close; so it
	// must not block or take a lock their caller may hold. A non-blocking
	// send on a buffered channel is the intended use. May be nil.
	Notify func()
	// Logger receives lifecycle events. Nil discards them.
	Logger *slog.Logger
	// Output, when set, also receives each instance's stdout and stderr
	// (the agent's ring of recent lines and telemetry export). The
	// runtime's own marker lines go only to the log file.
	Output runtime.LogOutput
	// BackoffBase is the delay before the first restart; it doubles with
	// each restart that follows a run that was not stable, up to BackoffMax.
	// The backoff resets once an instance has stayed RUNNING for
	// 10×BackoffBase (10s by default), long enough to tell a real recovery
	// from a flap. Default DefaultBackoffBase.
	BackoffBase time.Duration
	// BackoffMax caps the restart delay. Default DefaultBackoffMax.
	BackoffMax time.Duration
	// FailureThreshold is the number of starts in a row that exit or time
	// out before ever being healthy after which the instance is ERRORED.
	// Default DefaultFailureThreshold.
	FailureThreshold int
	// HealthInterval is the probe period while RUNNING. While STARTING the
	// runtime probes every 50ms so readiness is seen quickly.
	// Default DefaultHealthInterval.
	HealthInterval time.Duration
	// StartupTimeout is how long a start may take to become healthy before
	// it is killed and counted as a failed start. Default DefaultStartupTimeout.
	StartupTimeout time.Duration
	// StopGrace is how long Stop waits after SIGTERM before SIGKILL, unless
	// Stop's context ends first: the time a function gets to finish what it
	// is doing. Tests whose functions never use it shorten it so that one
	// that ignores SIGTERM does not hold them up. Default DefaultStopGrace.
	StopGrace time.Duration
}

// Runtime runs instances as local processes. Create it with New; it is safe
// for concurrent use.
type Runtime struct {
	cfg     Config
	log     *slog.Logger
	logDir  string
	workDir string // holds each instance's asset and large-output directories
	probe   *http.Client

	spawnCh     chan spawnRequest
	spawnerDone chan struct{}
	closeDone   chan struct{}

	wg sync.WaitGroup // one per supervisor goroutine

	mu        sync.Mutex
	closed    bool
	instances map[string]*instance
	ports     map[int]string // port -> instance id holding it
}

var _ runtime.Runtime = (*Runtime)(nil)

// instance is one supervised process. Fields below mu are guarded by
// Runtime.mu.
type instance struct {
	spec   runtime.Spec
	cancel context.CancelFunc // starts the stop: the supervisor terminates the process
	kill   chan struct{}      // closed to cut the stop grace period short
	once   sync.Once
	done   chan struct{} // closed when the supervisor has returned

	// guarded by Runtime.mu
	status runtime.Status
	pid    int // current process, 0 when none
	port   int
}

func (in *instance) killNow() { in.once.Do(func() { close(in.kill) }) }

// spawnRequest asks the spawner goroutine to fork and exec cmd.
type spawnRequest struct {
	cmd    *exec.Cmd
	result chan error
}

// New returns a Runtime that keeps its state under cfg.Dir.
func New(cfg Config) (*Runtime, error) {
	if cfg.Dir == "" {
		return nil, errors.New("process: Config.Dir is required")
	}
	if cfg.BackoffBase <= 0 {
		cfg.BackoffBase = DefaultBackoffBase
	}
	if cfg.BackoffMax <= 0 {
		cfg.BackoffMax = DefaultBackoffMax
	}
	if cfg.BackoffMax < cfg.BackoffBase {
		cfg.BackoffMax = cfg.BackoffBase
	}
	if cfg.FailureThreshold <= 0 {
		cfg.FailureThreshold = DefaultFailureThreshold
	}
	if cfg.HealthInterval <= 0 {
		cfg.HealthInterval = DefaultHealthInterval
	}
	if cfg.StartupTimeout <= 0 {
		cfg.StartupTimeout = DefaultStartupTimeout
	}
	if cfg.StopGrace <= 0 {
		cfg.StopGrace = DefaultStopGrace
	}
	logger := cfg.Logger
	if logger == nil {
		logger = slog.New(slog.DiscardHandler)
	}
	logDir := filepath.Join(cfg.Dir, "instances")
	if err := os.MkdirAll(logDir, 0o700); err != nil {
		return nil, fmt.Errorf("process: create log directory: %w", err)
	}
	// Absolute, because the directories are handed to processes by name.
	workDir, err := filepath.Abs(filepath.Join(cfg.Dir, "work"))
	if err != nil {
		return nil, fmt.Errorf("process: work directory: %w", err)
	}
	if err := os.MkdirAll(workDir, 0o700); err != nil {
		return nil, fmt.Errorf("process: create work directory: %w", err)
	}
	r := &Runtime{
		cfg:     cfg,
		log:     logger.With("runtime", "process"),
		logDir:  logDir,
		workDir: workDir,
		probe: &http.Client{
			// No keep-alives: a probe should show that the function still
			// accepts new connections, and no idle connection outlives Close.
			Transport: &http.Transport{Proxy: nil, DisableKeepAlives: true},
			CheckRedirect: func(*http.Request, []*http.Request) error {
				return http.ErrUseLastResponse
			},
		},
		spawnCh:     make(chan spawnRequest),
		spawnerDone: make(chan struct{}),
		closeDone:   make(chan struct{}),
		instances:   make(map[string]*instance),
		ports:       make(map[int]string),
	}
	go r.spawner()
	return r, nil
}

// spawner forks every child from one goroutine locked to one OS thread.
//
// Children get Pdeathsig SIGKILL so they die with the agent. Linux sends that
// signal when the *thread* that forked the child exits, not the process, and
// Go freely retires idle threads; a child forked from an ordinary goroutine
// can be killed at a random moment while the agent is fine. Locking this
// goroutine to its thread and keeping it alive pins the "parent" thread for
// the runtime's lifetime. It returns only after Close has waited for every
// child to exit; since it never unlocks, Go then ends the thread, which is
// harmless with no children left.
func (r *Runtime) spawner() {
	defer close(r.spawnerDone)
	goruntime.LockOSThread()
	for req := range r.spawnCh {
		req.result <- req.cmd.Start()
	}
}

// spawn starts cmd on the spawner's thread.
func (r *Runtime) spawn(cmd *exec.Cmd) error {
	req := spawnRequest{cmd: cmd, result: make(chan error, 1)}
	r.spawnCh <- req
	return <-req.result
}

// Start begins running spec and returns at once; see runtime.Runtime. Only
// process:// images are accepted. A command that cannot be found is not an
// error here: the instance shows up ERRORED with the reason.
func (r *Runtime) Start(ctx context.Context, spec runtime.Spec) error {
	if err := ctx.Err(); err != nil {
		return fmt.Errorf("process: start %s: %w", spec.InstanceID, err)
	}
	if spec.Helm != nil {
		return fmt.Errorf("process: %w: instance %s is a Helm chart (%s); Helm-chart functions run on a cluster whose agent has --runtime kubernetes",
			runtime.ErrUnsupportedImage, spec.InstanceID, spec.Helm.Chart)
	}
	if !strings.HasPrefix(spec.Image, model.ProcessImagePrefix) {
		return fmt.Errorf("process: %w: the process runtime only runs %s images, got %q",
			runtime.ErrUnsupportedImage, model.ProcessImagePrefix, spec.Image)
	}
	if strings.TrimPrefix(spec.Image, model.ProcessImagePrefix) == "" {
		return fmt.Errorf("process: %w: %q names no command; use %s/abs/path or %sname-on-PATH",
			runtime.ErrUnsupportedImage, spec.Image, model.ProcessImagePrefix, model.ProcessImagePrefix)
	}
	if err := validInstanceID(spec.InstanceID); err != nil {
		return err
	}
	// Own copies, so the caller may reuse its slices and maps.
	spec.Env = slices.Clone(spec.Env)
	spec.Secrets = maps.Clone(spec.Secrets)
	spec.GPUs = slices.Clone(spec.GPUs)

	r.mu.Lock()
	if r.closed {
		r.mu.Unlock()
		return ErrClosed
	}
	if _, ok := r.instances[spec.InstanceID]; ok {
		r.mu.Unlock()
		return nil
	}
	supCtx, cancel := context.WithCancel(context.Background())
	in := &instance{
		spec:   spec,
		cancel: cancel,
		kill:   make(chan struct{}),
		done:   make(chan struct{}),
		status: runtime.Status{InstanceID: spec.InstanceID, State: runtime.StateStarting},
	}
	in.status.AssetDir, in.status.LargeOutputDir = r.workDirs(spec.InstanceID)
	r.instances[spec.InstanceID] = in
	r.wg.Add(1)
	go r.supervise(supCtx, in)
	r.mu.Unlock()

	r.log.Info("instance starting", "instance", spec.InstanceID, "function", spec.FunctionID, "image", spec.Image)
	r.notify()
	return nil
}

// validInstanceID rejects ids that would escape the log directory.
func validInstanceID(id string) error {
	if id == "" || id == "." || id == ".." || strings.ContainsAny(id, "/\\\x00") {
		return fmt.Errorf("process: invalid instance id %q", id)
	}
	return nil
}

// Stop stops an instance and forgets it: SIGTERM to its process group, up to
// Config.StopGrace (or until ctx ends) for it to exit, then SIGKILL to the group.
// It returns once the process has exited, which after SIGKILL is prompt.
// Stopping an unknown instance is a no-op.
func (r *Runtime) Stop(ctx context.Context, instanceID string) error {
	r.mu.Lock()
	in, ok := r.instances[instanceID]
	r.mu.Unlock()
	if !ok {
		return nil
	}
	in.cancel()
	select {
	case <-in.done:
	case <-ctx.Done():
		in.killNow()
		<-in.done
	}

	r.mu.Lock()
	removed := r.instances[instanceID] == in
	if removed {
		delete(r.instances, instanceID)
		if in.port != 0 && r.ports[in.port] == instanceID {
			delete(r.ports, in.port)
		}
	}
	r.mu.Unlock()
	if removed {
		if err := os.RemoveAll(filepath.Join(r.workDir, instanceID)); err != nil {
			r.log.Warn("cannot remove instance work directory", "instance", instanceID, "err", err)
		}
		r.log.Info("instance stopped", "instance", instanceID)
		r.notify()
	}
	return nil
}

// List returns a snapshot of every instance's status, sorted by InstanceID.
func (r *Runtime) List() []runtime.Status {
	r.mu.Lock()
	out := make([]runtime.Status, 0, len(r.instances))
	for _, in := range r.instances {
		out = append(out, in.status)
	}
	r.mu.Unlock()
	slices.SortFunc(out, func(a, b runtime.Status) int { return strings.Compare(a.InstanceID, b.InstanceID) })
	return out
}

// Close stops every instance concurrently, waits for all of them and for the
// runtime's goroutines to end, and makes Start fail with ErrClosed. Calling
// it again waits for the first call to finish and returns nil.
func (r *Runtime) Close() error {
	r.mu.Lock()
	if r.closed {
		r.mu.Unlock()
		<-r.closeDone
		return nil
	}
	r.closed = true
	ids := slices.Collect(maps.Keys(r.instances))
	r.mu.Unlock()

	// Shutdown order: stop the instances (all at once, so N instances take
	// one grace period, not N), wait for every supervisor, then end the
	// spawner — only now that no child is left whose Pdeathsig is tied to
	// its thread.
	var wg sync.WaitGroup
	for _, id := range ids {
		wg.Go(func() { _ = r.Stop(context.Background(), id) })
	}
	wg.Wait()
	r.wg.Wait()
	close(r.spawnCh)
	<-r.spawnerDone
	r.probe.CloseIdleConnections()
	close(r.closeDone)
	return nil
}

// notify calls Config.Notify; callers must not hold r.mu.
func (r *Runtime) notify() {
	if r.cfg.Notify != nil {
		r.cfg.Notify()
	}
}

// update applies fn to in's status and notifies if anything changed. Updates
// for an instance being stopped are dropped: it is about to disappear.
func (r *Runtime) update(ctx context.Context, in *instance, fn func(*runtime.Status)) {
	r.mu.Lock()
	if ctx.Err() != nil {
		r.mu.Unlock()
		return
	}
	old := in.status
	fn(&in.status)
	changed := in.status != old
	r.mu.Unlock()
	if changed {
		r.notify()
	}
}

// allocPort returns the port for in's next start: the function's
// inferencePort if it has one and nobody holds it (see the package comment),
// else its previous port while that is still free, so the endpoint stays
// stable across restarts, else a new one the kernel picks. Ports held by
// other instances are never handed out twice, even in the window before a
// process binds its port.
func (r *Runtime) allocPort(in *instance) (int, error) {
	r.mu.Lock()
	defer r.mu.Unlock()
	id := in.spec.InstanceID
	if p := in.spec.InferencePort; p > 0 && p <= 65535 {
		if owner, taken := r.ports[p]; (!taken || owner == id) && portFreeAll(p) {
			r.claimPort(in, p)
			return p, nil
		}
	}
	if in.port != 0 && portFree(in.port) {
		return in.port, nil
	}
	for range 20 {
		ln, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			return 0, fmt.Errorf("process: allocate port: %w", err)
		}
		port := ln.Addr().(*net.TCPAddr).Port
		_ = ln.Close()
		if owner, taken := r.ports[port]; taken && owner != id {
			continue
		}
		r.claimPort(in, port)
		return port, nil
	}
	return 0, errors.New("process: allocate port: no free port found")
}

// claimPort records that in holds port, releasing the port it held before.
// Callers hold r.mu.
func (r *Runtime) claimPort(in *instance, port int) {
	id := in.spec.InstanceID
	if in.port != 0 && in.port != port && r.ports[in.port] == id {
		delete(r.ports, in.port)
	}
	r.ports[port] = id
	in.port = port
}

// inferencePortHolder returns the other instance holding in's inferencePort
// when in starts on port instead, or "".
func (r *Runtime) inferencePortHolder(in *instance, port int) string {
	p := in.spec.InferencePort
	if p <= 0 || p == port {
		return ""
	}
	r.mu.Lock()
	defer r.mu.Unlock()
	if owner := r.ports[p]; owner != in.spec.InstanceID {
		return owner
	}
	return ""
}

// portReleased reports whether the instance heldBy, which held in's
// inferencePort when in started on port, has let it go since.
func (r *Runtime) portReleased(in *instance, port int, heldBy string) bool {
	if heldBy == "" {
		return false
	}
	return r.inferencePortHolder(in, port) != heldBy
}

// portHint explains, for the status of an instance that failed to start on
// port, why it did not get its inferencePort, since a function that binds
// that port instead of $PORT fails for that reason. It is empty when the
// instance got its inferencePort or has none.
func (r *Runtime) portHint(in *instance, port int) string {
	p := in.spec.InferencePort
	if p <= 0 || p > 65535 || p == port {
		return ""
	}
	r.mu.Lock()
	owner, taken := r.ports[p]
	r.mu.Unlock()
	var holder string
	switch {
	case taken && owner != in.spec.InstanceID:
		holder = fmt.Sprintf("already used by instance %s on this host", owner)
	case !portFreeAll(p):
		holder = "in use by another program on this host"
	default:
		return "" // free again: the next start takes it
	}
	return fmt.Sprintf("port %d, the function's inferencePort, is %s, so this instance got $PORT=%d; "+
		"a function that binds its inferencePort instead of $PORT runs only one instance per host: "+
		"make it listen on $PORT, or deploy at most one instance of it per host (a process-runtime cluster is one host)", p, holder, port)
}

// portFree reports whether port can be bound on 127.0.0.1 right now.
func portFree(port int) bool {
	ln, err := net.Listen("tcp", net.JoinHostPort("127.0.0.1", fmt.Sprint(port)))
	if err != nil {
		return false
	}
	_ = ln.Close()
	return true
}

// portFreeAll reports whether port can be bound on every address right now,
// which is what a function binding 0.0.0.0 or 127.0.0.1 needs.
func portFreeAll(port int) bool {
	ln, err := net.Listen("tcp", ":"+strconv.Itoa(port))
	if err != nil {
		return false
	}
	_ = ln.Close()
	return portFree(port)
}

// logPath is where an instance's output goes.
func (r *Runtime) logPath(instanceID string) string {
	return filepath.Join(r.logDir, instanceID+".log")
}

// workDirs names an instance's asset and large-output directories.
func (r *Runtime) workDirs(instanceID string) (assets, largeOutput string) {
	base := filepath.Join(r.workDir, instanceID)
	return filepath.Join(base, "assets"), filepath.Join(base, "large-output")
}

// makeWorkDirs creates an instance's asset and large-output directories, if
// they are missing, and returns their paths. They outlive restarts, like the
// log, and go when the instance is stopped.
func (r *Runtime) makeWorkDirs(instanceID string) (assets, largeOutput string, err error) {
	assets, largeOutput = r.workDirs(instanceID)
	for _, d := range []string{assets, largeOutput} {
		if err := os.MkdirAll(d, 0o700); err != nil {
			return "", "", fmt.Errorf("process: create instance directory: %w", err)
		}
	}
	return assets, largeOutput, nil
}

// openLog opens an instance's log for appending; one file spans restarts.
func (r *Runtime) openLog(instanceID string) (*os.File, error) {
	f, err := os.OpenFile(r.logPath(instanceID), os.O_WRONLY|os.O_CREATE|os.O_APPEND, 0o600)
	if err != nil {
		return nil, fmt.Errorf("process: open log: %w", err)
	}
	return f, nil
}
