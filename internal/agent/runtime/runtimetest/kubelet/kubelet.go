// Package kubelet is a kubelet for the conformance tests of runtimes that
// run instances on Kubernetes. kwok, which the other Kubernetes tests use,
// only marks pods Ready: nothing runs, so nothing can fail a health check,
// crash, or drain. This kubelet runs the pods bound to one simulated GPU
// node as real local processes (the test binary, which turns into the
// runtimetest program) and does for them what the kubelet does for a
// container:
//
//   - environment from the container's env, secretKeyRef values read from
//     their Secret (CreateContainerConfigError while one is missing), and
//     NVIDIA_VISIBLE_DEVICES for the nvidia.com/gpu it was given, as the
//     device plugin does;
//   - a pod IP of its own on loopback (127.77.0.0/16), handed to the program
//     in runtimetest.ListenHostEnv since there is no network namespace;
//   - startup, readiness and liveness probes as the pod spec says, Ready only
//     while readiness passes, a restart when liveness or startup gives up;
//   - restarts with the kubelet's backoff: the first at once, then 10s
//     doubling up to 5 minutes (CrashLoopBackOff), reset after 10 minutes of
//     running; termination messages from the log tail
//     (FallbackToLogsOnError);
//   - graceful deletion: SIGTERM, the pod's grace period, SIGKILL, then the
//     pod is removed;
//   - container logs served over HTTPS at the node's kubelet endpoint, so
//     they are read through the API server as kubectl logs reads them.
//
// Kubernetes time is scaled: one second of the pod spec is Second here,
// so probe periods, backoffs and grace periods keep their proportions and a
// test does not wait 30 seconds for a grace period. The node itself (Ready,
// its lease) is kept by a kwok of its own, with node stages only.
package kubelet

import (
	"bytes"
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"fmt"
	"io"
	"math/big"
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
	"syscall"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/api/resource"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/fields"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/apimachinery/pkg/util/intstr"
	"k8s.io/client-go/informers"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/tools/cache"
	"k8s.io/client-go/util/retry"

	"github.com/gantry-dev/gantry/internal/agent/runtime/runtimetest"
	"github.com/gantry-dev/gantry/internal/testutil"
	"github.com/gantry-dev/gantry/internal/testutil/kubetest"
)

// Second is how long one second of a pod spec lasts here.
const Second = 25 * time.Millisecond

// The kubelet's restart backoff, in pod-spec seconds.
const (
	backoffInitial = 10
	backoffMax     = 300
	backoffReset   = 600 // a container that ran this long starts afresh
)

// Backoff is the delay before the nth restart (1-based) of a container
// that keeps failing: none for the first, then 10s doubling up to 5
// minutes, in scaled time.
func Backoff(n int) time.Duration {
	if n <= 1 {
		return 0
	}
	d := backoffInitial
	for i := 2; i < n && d < backoffMax; i++ {
		d *= 2
	}
	return time.Duration(min(d, backoffMax)) * Second
}

// manageAnnotation selects the nodes this package's kwok keeps Ready.
const manageAnnotation = "gantry.dev/test-kubelet"

// Node is the simulated GPU node, labelled as the GPU Operator labels one.
type Node struct {
	Name         string
	Product      string // nvidia.com/gpu.product
	GPUs         int
	GPUMemoryMiB int
}

// Kubelet runs the pods of one node.
type Kubelet struct {
	client  kubernetes.Interface
	node    string
	program string
	logDir  string
	spawnCh chan spawnRequest

	ctx    context.Context
	cancel context.CancelFunc
	wg     sync.WaitGroup

	mu      sync.Mutex
	pods    map[types.UID]*worker
	logs    map[string]string // namespace/name -> log file
	nextIP  int
	gpuUsed []bool
}

// Start runs a kubelet for node on env until the test ends: it creates the
// node, keeps it Ready with a kwok of its own, and runs every pod bound to
// it as a process of program (default: this test binary) with the
// container's args. env needs no kwok of its own (kubetest.Options.NoKwok).
func Start(t *testing.T, env *kubetest.Env, node Node, program string) *Kubelet {
	t.Helper()
	if program == "" {
		exe, err := os.Executable()
		if err != nil {
			t.Fatalf("kubelet: %v", err)
		}
		program = exe
	}
	ctx, cancel := context.WithCancel(context.Background())
	k := &Kubelet{
		client: env.Client, node: node.Name, program: program, logDir: t.TempDir(),
		spawnCh: make(chan spawnRequest), ctx: ctx, cancel: cancel,
		pods: map[types.UID]*worker{}, logs: map[string]string{}, gpuUsed: make([]bool, node.GPUs),
	}
	go k.spawner()
	port := k.serveLogs(t)
	k.startKwok(t, env)
	k.createNode(t, node, port)

	factory := informers.NewSharedInformerFactoryWithOptions(env.Client, 0,
		informers.WithTweakListOptions(func(o *metav1.ListOptions) {
			o.FieldSelector = fields.OneTermEqualSelector("spec.nodeName", node.Name).String()
		}))
	inf := factory.Core().V1().Pods().Informer()
	_, err := inf.AddEventHandler(cache.ResourceEventHandlerFuncs{
		AddFunc:    func(obj any) { k.sync(obj, false) },
		UpdateFunc: func(_, obj any) { k.sync(obj, false) },
		DeleteFunc: func(obj any) { k.sync(obj, true) },
	})
	if err != nil {
		t.Fatalf("kubelet: %v", err)
	}
	stop := make(chan struct{})
	factory.Start(stop)
	t.Cleanup(func() {
		// Shutdown order: no new pods, then every process killed and its
		// worker gone, then the spawner they used.
		close(stop)
		factory.Shutdown()
		cancel()
		k.wg.Wait()
		close(k.spawnCh)
	})
	return k
}

// startKwok runs kwok with the node stages of the test tools only, so it
// keeps the node Ready and leaves its pods to this kubelet.
func (k *Kubelet) startKwok(t *testing.T, env *kubetest.Env) {
	t.Helper()
	all, err := os.ReadFile(filepath.Join(env.Bin, "kwok-stages.yaml"))
	if err != nil {
		t.Fatalf("kubelet: %v", err)
	}
	var stages []string
	for _, doc := range strings.Split(string(all), "\n---\n") {
		if strings.Contains(doc, "kind: Stage") && strings.Contains(doc, "kind: Node") {
			stages = append(stages, doc)
		}
	}
	if len(stages) == 0 {
		t.Fatalf("kubelet: no node stages in %s", filepath.Join(env.Bin, "kwok-stages.yaml"))
	}
	dir := t.TempDir()
	path := filepath.Join(dir, "stages.yaml")
	if err := os.WriteFile(path, []byte(strings.Join(stages, "\n---\n")), 0o600); err != nil {
		t.Fatalf("kubelet: %v", err)
	}
	log, err := os.Create(filepath.Join(dir, "kwok.log"))
	if err != nil {
		t.Fatalf("kubelet: %v", err)
	}
	cmd := exec.Command(filepath.Join(env.Bin, "kwok"), "--kubeconfig="+env.Kubeconfig, "--config="+path,
		"--manage-all-nodes=false", "--manage-nodes-with-annotation-selector="+manageAnnotation+"=true",
		"--node-lease-duration-seconds=40")
	cmd.Stdout, cmd.Stderr = log, log
	cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
	if err := cmd.Start(); err != nil {
		t.Fatalf("kubelet: start kwok: %v", err)
	}
	done := make(chan struct{})
	go func() { _ = cmd.Wait(); log.Close(); close(done) }()
	t.Cleanup(func() {
		_ = cmd.Process.Signal(syscall.SIGTERM)
		select {
		case <-done:
		case <-time.After(10 * time.Second):
			_ = cmd.Process.Kill()
			<-done
		}
	})
}

// createNode creates the node with its addresses and kubelet port set, so
// the API server reaches this kubelet for logs, and waits until kwok has
// made it Ready.
func (k *Kubelet) createNode(t *testing.T, n Node, port int) {
	t.Helper()
	res := corev1.ResourceList{
		corev1.ResourceCPU:    resource.MustParse("64"),
		corev1.ResourceMemory: resource.MustParse("512Gi"),
		corev1.ResourcePods:   resource.MustParse("250"),
		kubetest.GPUResource:  *resource.NewQuantity(int64(n.GPUs), resource.DecimalSI),
	}
	node := &corev1.Node{
		ObjectMeta: metav1.ObjectMeta{Name: n.Name, Annotations: map[string]string{manageAnnotation: "true"},
			Labels: map[string]string{
				"kubernetes.io/hostname": n.Name, "kubernetes.io/os": "linux",
				"nvidia.com/gpu.present": "true", "nvidia.com/gpu.product": n.Product,
				"nvidia.com/gpu.count": strconv.Itoa(n.GPUs), "nvidia.com/gpu.memory": strconv.Itoa(n.GPUMemoryMiB),
			}},
		Status: corev1.NodeStatus{
			Capacity: res, Allocatable: res,
			// Both types kwok would fill in, so it leaves them be: the API
			// server dials the first of its preferred types, Hostname.
			Addresses: []corev1.NodeAddress{
				{Type: corev1.NodeHostName, Address: "127.0.0.1"},
				{Type: corev1.NodeInternalIP, Address: "127.0.0.1"},
			},
			DaemonEndpoints: corev1.NodeDaemonEndpoints{KubeletEndpoint: corev1.DaemonEndpoint{Port: int32(port)}},
		},
	}
	ctx := testutil.Context(t)
	if _, err := k.client.CoreV1().Nodes().Create(ctx, node, metav1.CreateOptions{}); err != nil {
		t.Fatalf("kubelet: create node %s: %v", n.Name, err)
	}
	testutil.WaitFor(t, 60*time.Second, func() error {
		got, err := k.client.CoreV1().Nodes().Get(ctx, n.Name, metav1.GetOptions{})
		if err != nil {
			return err
		}
		for _, c := range got.Status.Conditions {
			if c.Type == corev1.NodeReady && c.Status == corev1.ConditionTrue {
				return nil
			}
		}
		return fmt.Errorf("kubelet: node %s is not Ready yet", n.Name)
	})
}

// serveLogs serves /containerLogs/<namespace>/<pod>/<container> over HTTPS
// on loopback and returns the port. The API server does not check a
// kubelet's certificate unless told a CA, so a self-signed one does.
func (k *Kubelet) serveLogs(t *testing.T) int {
	t.Helper()
	cert, err := selfSigned()
	if err != nil {
		t.Fatalf("kubelet: %v", err)
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatalf("kubelet: %v", err)
	}
	mux := http.NewServeMux()
	mux.HandleFunc("GET /containerLogs/{namespace}/{pod}/{container}", func(w http.ResponseWriter, r *http.Request) {
		k.mu.Lock()
		path, ok := k.logs[r.PathValue("namespace")+"/"+r.PathValue("pod")]
		k.mu.Unlock()
		if !ok {
			http.Error(w, "pod not found on this node", http.StatusNotFound)
			return
		}
		f, err := os.Open(path)
		if err != nil {
			http.Error(w, err.Error(), http.StatusNotFound)
			return
		}
		defer f.Close()
		w.Header().Set("Content-Type", "text/plain")
		_, _ = io.Copy(w, f)
	})
	srv := &http.Server{Handler: mux, ReadHeaderTimeout: 10 * time.Second,
		TLSConfig: &tls.Config{Certificates: []tls.Certificate{cert}, MinVersion: tls.VersionTLS12}}
	go func() { _ = srv.ServeTLS(ln, "", "") }()
	t.Cleanup(func() { _ = srv.Close() })
	return ln.Addr().(*net.TCPAddr).Port
}

func selfSigned() (tls.Certificate, error) {
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return tls.Certificate{}, err
	}
	tmpl := &x509.Certificate{
		SerialNumber: big.NewInt(1), Subject: pkix.Name{CommonName: "runtimetest-kubelet"},
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(24 * time.Hour),
		IPAddresses: []net.IP{net.IPv4(127, 0, 0, 1)}, DNSNames: []string{"localhost"},
		KeyUsage: x509.KeyUsageDigitalSignature, ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth},
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		return tls.Certificate{}, err
	}
	return tls.Certificate{Certificate: [][]byte{der}, PrivateKey: key}, nil
}

// spawnRequest asks the spawner to start cmd.
type spawnRequest struct {
	cmd    *exec.Cmd
	result chan error
}

// spawner starts every process from one goroutine locked to one OS thread,
// so Pdeathsig (which fires when the forking thread exits) kills them with
// the test binary and not when Go retires an idle thread.
func (k *Kubelet) spawner() {
	goruntime.LockOSThread()
	for req := range k.spawnCh {
		req.result <- req.cmd.Start()
	}
}

func (k *Kubelet) spawn(cmd *exec.Cmd) error {
	req := spawnRequest{cmd: cmd, result: make(chan error, 1)}
	k.spawnCh <- req
	return <-req.result
}

// sync starts a worker for a new pod and passes deletions on to it.
func (k *Kubelet) sync(obj any, deleted bool) {
	if d, ok := obj.(cache.DeletedFinalStateUnknown); ok {
		obj = d.Obj
	}
	pod, ok := obj.(*corev1.Pod)
	if !ok || pod.Spec.NodeName != k.node {
		return
	}
	k.mu.Lock()
	defer k.mu.Unlock()
	w := k.pods[pod.UID]
	switch {
	case deleted:
		if w != nil {
			w.stopOnce.Do(func() { close(w.gone) })
		}
		return
	case w == nil && pod.DeletionTimestamp != nil:
		return // deleted before it ran: nothing to stop
	case w == nil:
		if k.ctx.Err() != nil {
			return
		}
		w = &worker{k: k, pod: pod.DeepCopy(), deleting: make(chan struct{}), gone: make(chan struct{})}
		k.pods[pod.UID] = w
		k.wg.Add(1)
		go w.run()
	}
	if pod.DeletionTimestamp != nil {
		w.deleteOnce.Do(func() {
			w.grace = 30
			if g := pod.DeletionGracePeriodSeconds; g != nil {
				w.grace = *g
			} else if g := pod.Spec.TerminationGracePeriodSeconds; g != nil {
				w.grace = *g
			}
			close(w.deleting)
		})
	}
}

// allocate gives a pod its IP and GPUs; free returns the GPUs.
func (k *Kubelet) allocate(gpus int64) (string, []int, error) {
	k.mu.Lock()
	defer k.mu.Unlock()
	k.nextIP++
	ip := fmt.Sprintf("127.77.%d.%d", k.nextIP/250, k.nextIP%250+1)
	var got []int
	for i := range k.gpuUsed {
		if int64(len(got)) == gpus {
			break
		}
		if !k.gpuUsed[i] {
			got = append(got, i)
		}
	}
	if int64(len(got)) < gpus {
		return "", nil, fmt.Errorf("kubelet: %d GPUs asked, %d free", gpus, len(got))
	}
	for _, i := range got {
		k.gpuUsed[i] = true
	}
	return ip, got, nil
}

func (k *Kubelet) free(gpus []int) {
	k.mu.Lock()
	defer k.mu.Unlock()
	for _, i := range gpus {
		k.gpuUsed[i] = false
	}
}

// worker runs one pod.
type worker struct {
	k          *Kubelet
	pod        *corev1.Pod // as first seen; its spec does not change
	deleting   chan struct{}
	deleteOnce sync.Once
	grace      int64 // seconds, set before deleting is closed
	gone       chan struct{}
	stopOnce   sync.Once

	// The container as the kubelet reports it.
	ip       string
	ready    bool
	started  bool
	restarts int32
	state    corev1.ContainerState
	last     corev1.ContainerState
	pid      int
}

// run is the pod's life: start the container, probe it, restart it with
// backoff, and end it when the pod is deleted.
func (w *worker) run() {
	k := w.k
	defer k.wg.Done()
	defer func() {
		k.mu.Lock()
		delete(k.pods, w.pod.UID)
		k.mu.Unlock()
	}()
	c := w.pod.Spec.Containers[0]
	if !slices.ContainsFunc(c.Env, func(e corev1.EnvVar) bool { return e.Name == runtimetest.ProgramEnv }) {
		// Anything else would run the test binary as a test suite.
		w.state = corev1.ContainerState{Waiting: &corev1.ContainerStateWaiting{Reason: "RunContainerError",
			Message: "kubelet: this test kubelet runs only the runtimetest program (no " + runtimetest.ProgramEnv + " in the container's env)"}}
		w.write()
		w.idle()
		return
	}
	gpuQ := c.Resources.Limits[kubetest.GPUResource]
	ip, gpus, err := k.allocate(gpuQ.Value())
	if err != nil {
		w.state = corev1.ContainerState{Waiting: &corev1.ContainerStateWaiting{Reason: "UnexpectedAdmissionError", Message: err.Error()}}
		w.write()
		w.idle()
		return
	}
	defer k.free(gpus)
	w.ip = ip
	logPath := filepath.Join(k.logDir, w.pod.Namespace+"_"+w.pod.Name+"_"+string(w.pod.UID)+".log")
	k.mu.Lock()
	k.logs[w.pod.Namespace+"/"+w.pod.Name] = logPath
	k.mu.Unlock()
	defer func() {
		k.mu.Lock()
		delete(k.logs, w.pod.Namespace+"/"+w.pod.Name)
		k.mu.Unlock()
	}()

	backoff := time.Duration(0) // the delay before the next restart
	for {
		env, err := w.env(c, gpus)
		if err != nil {
			w.state = corev1.ContainerState{Waiting: &corev1.ContainerStateWaiting{Reason: "CreateContainerConfigError", Message: err.Error()}}
			w.write()
			if !w.wait(2 * Second) {
				w.remove()
				return
			}
			continue
		}
		started := time.Now()
		end, exited := w.runContainer(c, env, logPath)
		if end == endCancelled {
			return
		}
		if end == endDeleted {
			w.remove()
			return
		}
		// It exited, or a probe gave up on it: restart, as the
		// restartPolicy Always of a Deployment's pods says.
		w.last, w.ready = corev1.ContainerState{Terminated: exited}, false
		if time.Since(started) >= backoffReset*Second {
			backoff = 0
		}
		if backoff > 0 {
			w.state = corev1.ContainerState{Waiting: &corev1.ContainerStateWaiting{Reason: "CrashLoopBackOff",
				Message: fmt.Sprintf("back-off %v restarting failed container=%s pod=%s", backoff/Second*time.Second, c.Name, w.pod.Name)}}
			w.write()
			if !w.wait(backoff) {
				w.remove()
				return
			}
			backoff = min(2*backoff, backoffMax*Second)
		} else {
			backoff = backoffInitial * Second
		}
		w.restarts++
	}
}

// How one run of the container ended.
type end int

const (
	endExited    end = iota // exited or killed by a probe: restart it
	endDeleted              // the pod is being deleted and its process is gone
	endCancelled            // the test is over
)

// runContainer starts the container once and watches it until it exits, a
// probe gives up on it, the pod is deleted or the test ends.
func (w *worker) runContainer(c corev1.Container, env []string, logPath string) (end, *corev1.ContainerStateTerminated) {
	log, err := os.OpenFile(logPath, os.O_WRONLY|os.O_CREATE|os.O_APPEND, 0o600)
	if err != nil {
		return endExited, &corev1.ContainerStateTerminated{ExitCode: 128, Reason: "ContainerCannotRun", Message: err.Error()}
	}
	defer log.Close()
	cmd := exec.Command(w.k.program, c.Args...)
	cmd.Env = env
	cmd.Stdout, cmd.Stderr = log, log
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true, Pdeathsig: syscall.SIGKILL}
	startedAt := metav1.Now()
	if err := w.k.spawn(cmd); err != nil {
		return endExited, &corev1.ContainerStateTerminated{ExitCode: 128, Reason: "StartError", Message: err.Error(),
			StartedAt: startedAt, FinishedAt: metav1.Now()}
	}
	exited := make(chan struct{})
	go func() { _ = cmd.Wait(); close(exited) }()
	w.pid = cmd.Process.Pid
	w.state = corev1.ContainerState{Running: &corev1.ContainerStateRunning{StartedAt: startedAt}}
	w.started = c.StartupProbe == nil
	w.write()

	terminated := func(reason string) *corev1.ContainerStateTerminated {
		ps := cmd.ProcessState
		t := &corev1.ContainerStateTerminated{ExitCode: int32(ps.ExitCode()), StartedAt: startedAt, FinishedAt: metav1.Now(),
			ContainerID: "runtimetest://" + strconv.Itoa(ps.Pid())}
		if ws, ok := ps.Sys().(syscall.WaitStatus); ok && ws.Signaled() {
			t.ExitCode = 128 + int32(ws.Signal())
		}
		switch {
		case reason != "":
			t.Reason = reason
		case t.ExitCode == 0:
			t.Reason = "Completed"
		default:
			t.Reason = "Error"
		}
		if t.ExitCode != 0 && c.TerminationMessagePolicy == corev1.TerminationMessageFallbackToLogsOnError {
			t.Message = logTail(logPath)
		}
		return t
	}
	// kill ends the process as the kubelet does: SIGTERM to it, up to grace
	// seconds, then SIGKILL. It reports false if the test ended first.
	kill := func(grace int64) bool {
		_ = syscall.Kill(-cmd.Process.Pid, syscall.SIGTERM)
		t := time.NewTimer(time.Duration(grace) * Second)
		defer t.Stop()
		select {
		case <-exited:
		case <-t.C:
		case <-w.k.ctx.Done():
		}
		_ = syscall.Kill(-cmd.Process.Pid, syscall.SIGKILL)
		<-exited
		return w.k.ctx.Err() == nil
	}

	type probeState struct {
		probe    *corev1.Probe
		next     time.Time
		failures int32
	}
	now := time.Now()
	startup := &probeState{probe: c.StartupProbe, next: now}
	readiness := &probeState{probe: c.ReadinessProbe, next: now}
	liveness := &probeState{probe: c.LivenessProbe, next: now}
	due := func(p *probeState) bool {
		if p.probe == nil || time.Now().Before(p.next) {
			return false
		}
		p.next = time.Now().Add(time.Duration(max(1, p.probe.PeriodSeconds)) * Second)
		return true
	}
	tick := time.NewTicker(Second)
	defer tick.Stop()
	for {
		select {
		case <-exited:
			return endExited, terminated("")
		case <-w.deleting:
			if !kill(w.grace) {
				return endCancelled, nil
			}
			return endDeleted, nil
		case <-w.gone:
			_ = kill(0)
			return endCancelled, nil
		case <-w.k.ctx.Done():
			_ = kill(0)
			return endCancelled, nil
		case <-tick.C:
		}
		grace := int64(30)
		if g := w.pod.Spec.TerminationGracePeriodSeconds; g != nil {
			grace = *g
		}
		switch {
		case !w.started:
			if !due(startup) {
				continue
			}
			if w.check(startup.probe) {
				w.started = true
				w.write()
				continue
			}
			if startup.failures++; startup.failures >= max(1, startup.probe.FailureThreshold) {
				if !kill(grace) {
					return endCancelled, nil
				}
				return endExited, terminated("")
			}
		default:
			if c.ReadinessProbe == nil && !w.ready {
				w.ready = true
				w.write()
			}
			if due(readiness) {
				ok := w.check(readiness.probe)
				if ok {
					readiness.failures = 0
				} else {
					readiness.failures++
				}
				switch {
				case ok && !w.ready:
					w.ready = true
					w.write()
				case !ok && w.ready && readiness.failures >= max(1, readiness.probe.FailureThreshold):
					w.ready = false
					w.write()
				}
			}
			if due(liveness) {
				if w.check(liveness.probe) {
					liveness.failures = 0
				} else if liveness.failures++; liveness.failures >= max(1, liveness.probe.FailureThreshold) {
					if !kill(grace) {
						return endCancelled, nil
					}
					return endExited, terminated("")
				}
			}
		}
	}
}

// check runs one probe against the pod's IP.
func (w *worker) check(p *corev1.Probe) bool {
	timeout := max(time.Duration(p.TimeoutSeconds)*Second, time.Second) // not scaled below what a loaded machine needs
	switch {
	case p.HTTPGet != nil:
		port := w.port(p.HTTPGet.Port)
		client := &http.Client{Timeout: timeout, Transport: &http.Transport{Proxy: nil, DisableKeepAlives: true},
			CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }}
		resp, err := client.Get("http://" + net.JoinHostPort(w.ip, strconv.Itoa(port)) + p.HTTPGet.Path)
		if err != nil {
			return false
		}
		_, _ = io.Copy(io.Discard, resp.Body)
		_ = resp.Body.Close()
		return resp.StatusCode >= 200 && resp.StatusCode < 400
	case p.TCPSocket != nil, p.GRPC != nil:
		port := 0
		if p.TCPSocket != nil {
			port = w.port(p.TCPSocket.Port)
		} else {
			port = int(p.GRPC.Port)
		}
		conn, err := net.DialTimeout("tcp", net.JoinHostPort(w.ip, strconv.Itoa(port)), timeout)
		if err != nil {
			return false
		}
		_ = conn.Close()
		return true
	}
	return true
}

// port resolves a probe's port as the kubelet does: a number, or the name
// of one of the container's ports.
func (w *worker) port(p intstr.IntOrString) int {
	if p.Type == intstr.Int {
		return p.IntValue()
	}
	for _, cp := range w.pod.Spec.Containers[0].Ports {
		if cp.Name == p.StrVal {
			return int(cp.ContainerPort)
		}
	}
	return 0
}

// env is the container's environment: the image's (PATH), the container's
// env with secret references resolved, what the device plugin adds for
// its GPUs, and where to listen.
func (w *worker) env(c corev1.Container, gpus []int) ([]string, error) {
	env := []string{"PATH=" + os.Getenv("PATH")}
	secrets := map[string]*corev1.Secret{}
	for _, e := range c.Env {
		if e.ValueFrom == nil {
			env = append(env, e.Name+"="+e.Value)
			continue
		}
		ref := e.ValueFrom.SecretKeyRef
		if ref == nil {
			return nil, fmt.Errorf("kubelet: env %s: only secretKeyRef is supported", e.Name)
		}
		s, ok := secrets[ref.Name]
		if !ok {
			var err error
			s, err = w.k.client.CoreV1().Secrets(w.pod.Namespace).Get(w.k.ctx, ref.Name, metav1.GetOptions{})
			if err != nil {
				return nil, fmt.Errorf("secret %q not found", ref.Name)
			}
			secrets[ref.Name] = s
		}
		v, ok := s.Data[ref.Key]
		if !ok {
			return nil, fmt.Errorf("couldn't find key %s in Secret %s/%s", ref.Key, w.pod.Namespace, ref.Name)
		}
		env = append(env, e.Name+"="+string(v))
	}
	if len(gpus) > 0 {
		ids := make([]string, len(gpus))
		for i, g := range gpus {
			ids[i] = fmt.Sprintf("GPU-%s-%d", w.k.node, g)
		}
		env = append(env, "NVIDIA_VISIBLE_DEVICES="+strings.Join(ids, ","))
	}
	return append(env, runtimetest.ListenHostEnv+"="+w.ip), nil
}

// idle waits for the end of a pod that runs nothing, and removes it once
// it is deleted.
func (w *worker) idle() {
	select {
	case <-w.deleting:
		w.remove()
	case <-w.gone:
	case <-w.k.ctx.Done():
	}
}

// wait waits d, or until the pod is deleted or the test ends; it reports
// whether d passed.
func (w *worker) wait(d time.Duration) bool {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-t.C:
		return true
	case <-w.deleting:
	case <-w.gone:
	case <-w.k.ctx.Done():
	}
	return false
}

// write puts the container's state into the pod's status.
func (w *worker) write() {
	pods := w.k.client.CoreV1().Pods(w.pod.Namespace)
	err := retry.RetryOnConflict(retry.DefaultRetry, func() error {
		p, err := pods.Get(w.k.ctx, w.pod.Name, metav1.GetOptions{})
		if err != nil || p.UID != w.pod.UID {
			return err
		}
		w.render(&p.Status)
		_, err = pods.UpdateStatus(w.k.ctx, p, metav1.UpdateOptions{})
		return err
	})
	if err != nil && !apierrors.IsNotFound(err) && w.k.ctx.Err() == nil {
		fmt.Fprintf(os.Stderr, "kubelet: status of pod %s/%s: %v\n", w.pod.Namespace, w.pod.Name, err)
	}
}

// render sets the parts of a pod's status the kubelet owns.
func (w *worker) render(s *corev1.PodStatus) {
	now := metav1.Now()
	c := w.pod.Spec.Containers[0]
	s.Phase = corev1.PodRunning
	if w.state.Running == nil && w.pid == 0 {
		s.Phase = corev1.PodPending
	}
	s.HostIP, s.HostIPs = "127.0.0.1", []corev1.HostIP{{IP: "127.0.0.1"}}
	s.PodIP, s.PodIPs = w.ip, []corev1.PodIP{{IP: w.ip}}
	if s.StartTime == nil {
		s.StartTime = &now
	}
	setCondition := func(t corev1.PodConditionType, ok bool) {
		status := corev1.ConditionFalse
		if ok {
			status = corev1.ConditionTrue
		}
		for i := range s.Conditions {
			if s.Conditions[i].Type == t {
				if s.Conditions[i].Status != status {
					s.Conditions[i].Status, s.Conditions[i].LastTransitionTime = status, now
				}
				return
			}
		}
		s.Conditions = append(s.Conditions, corev1.PodCondition{Type: t, Status: status, LastTransitionTime: now})
	}
	setCondition(corev1.PodInitialized, true)
	setCondition(corev1.ContainersReady, w.ready)
	setCondition(corev1.PodReady, w.ready)
	cs := corev1.ContainerStatus{Name: c.Name, Image: c.Image, ImageID: "runtimetest://" + c.Image,
		Ready: w.ready, Started: &w.started, RestartCount: w.restarts, State: w.state, LastTerminationState: w.last}
	if w.state.Running != nil {
		cs.ContainerID = "runtimetest://" + strconv.Itoa(w.pid)
	}
	s.ContainerStatuses = []corev1.ContainerStatus{cs}
}

// remove deletes the pod once its container is gone, as the kubelet does
// at the end of a graceful deletion.
func (w *worker) remove() {
	if w.k.ctx.Err() != nil {
		return
	}
	err := w.k.client.CoreV1().Pods(w.pod.Namespace).Delete(w.k.ctx, w.pod.Name, metav1.DeleteOptions{
		GracePeriodSeconds: new(int64), Preconditions: &metav1.Preconditions{UID: &w.pod.UID}})
	if err != nil && !apierrors.IsNotFound(err) && !apierrors.IsConflict(err) && w.k.ctx.Err() == nil {
		fmt.Fprintf(os.Stderr, "kubelet: delete pod %s/%s: %v\n", w.pod.Namespace, w.pod.Name, err)
	}
}

// logTail is the kubelet's FallbackToLogsOnError message: the last 80
// lines or 2 KiB of the container's log, whichever is less.
func logTail(path string) string {
	b, err := os.ReadFile(path)
	if err != nil {
		return ""
	}
	if len(b) > 2048 {
		b = b[len(b)-2048:]
	}
	lines := bytes.Split(bytes.TrimRight(b, "\n"), []byte("\n"))
	if len(lines) > 80 {
		lines = lines[len(lines)-80:]
	}
	return string(bytes.Join(lines, []byte("\n")))
}
