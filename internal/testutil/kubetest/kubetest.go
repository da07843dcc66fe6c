// Package kubetest runs a real Kubernetes control plane for tests: a
// kube-apiserver on Gantry's embedded etcd, a kube-scheduler and a
// kube-controller-manager, and kwok acting as the kubelet of simulated GPU
// nodes (it marks nodes Ready, gives scheduled pods an IP and turns them
// Running, and removes deleted pods). No container runs: pod IPs are not
// reachable unless Options.PodCIDR is a loopback range, but everything the
// API server, scheduler and controllers do is real.
//
// The binaries are built from the Go module proxy by tools/install.sh (the
// tool modules under tools/ pin their versions) and cached; .ci/run builds
// them before the tests, and a test that finds them missing builds them
// itself, which takes several minutes the first time.
package kubetest

import (
	"bytes"
	"context"
	"crypto/rand"
	"crypto/rsa"
	"crypto/x509"
	"encoding/hex"
	"encoding/pem"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	goruntime "runtime"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/resource"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/rest"
	"k8s.io/client-go/tools/clientcmd"
	clientcmdapi "k8s.io/client-go/tools/clientcmd/api"

	"github.com/gantry-dev/gantry/internal/testutil"
)

// GPUResource is the extended resource the NVIDIA device plugin advertises.
const GPUResource corev1.ResourceName = "nvidia.com/gpu"

// SecondScheduler is the name of a second profile of the test scheduler,
// standing in for a scheduler such as KAI Scheduler that pods select with
// spec.schedulerName.
const SecondScheduler = "test-second-scheduler"

// Options picks the components to run. The zero value runs them all.
type Options struct {
	// NoScheduler, NoControllerManager and NoKwok leave a component out,
	// e.g. for a test that only needs the API server (a dry run).
	NoScheduler         bool
	NoControllerManager bool
	NoKwok              bool
	// PodCIDR is where kwok takes pod IPs from (default 10.244.0.0/16,
	// which nothing answers on). A loopback range such as 127.0.100.0/24
	// makes pod IPs reachable from the test: a server listening on
	// 0.0.0.0:<port> answers at every pod's IP, standing in for the
	// containers, so traffic to pod IPs can be tested end to end.
	PodCIDR string
	// AdmissionPlugins are enabled on top of the API server's defaults,
	// e.g. OwnerReferencesPermissionEnforcement (on in OpenShift), which
	// makes RBAC govern who may set ownerReferences.
	AdmissionPlugins []string
}

// Env is one running control plane.
type Env struct {
	// Kubeconfig is the path of an admin kubeconfig (system:masters).
	Kubeconfig string
	// Config and Client talk to the API server as that admin.
	Config *rest.Config
	Client kubernetes.Interface
	// Bin is the directory holding the tool binaries (kubectl, helm...).
	Bin string
	// Issuer is the service-account token issuer; its keys are served at
	// /openid/v1/jwks.
	Issuer string

	dir   string
	procs []*proc
}

type proc struct {
	name string
	cmd  *exec.Cmd
	log  string
	done chan struct{}
}

var (
	binOnce sync.Once
	binDir  string
	binErr  error
)

// Bin builds (or finds in the cache) the tool binaries and returns their
// directory.
func Bin(t testing.TB) string {
	t.Helper()
	binOnce.Do(func() {
		if dir := os.Getenv("GANTRY_KUBE_TOOLS"); dir != "" {
			binDir = dir
			return
		}
		root, err := repoRoot()
		if err != nil {
			binErr = err
			return
		}
		var stderr bytes.Buffer
		cmd := exec.Command("bash", filepath.Join(root, "tools", "install.sh"))
		cmd.Stderr = &stderr
		out, err := cmd.Output()
		if err != nil {
			binErr = fmt.Errorf("kubetest: tools/install.sh failed: %v\n%s", err, stderr.String())
			return
		}
		binDir = strings.TrimSpace(string(out))
	})
	if binErr != nil {
		t.Fatal(binErr)
	}
	return binDir
}

// repoRoot walks up from the working directory to the main module's root.
func repoRoot() (string, error) {
	dir, err := os.Getwd()
	if err != nil {
		return "", err
	}
	for {
		if _, err := os.Stat(filepath.Join(dir, "tools", "install.sh")); err == nil {
			return dir, nil
		}
		parent := filepath.Dir(dir)
		if parent == dir {
			return "", fmt.Errorf("kubetest: no tools/install.sh above the working directory")
		}
		dir = parent
	}
}

// Start runs a control plane for the test and stops it when the test ends.
func Start(t testing.TB, opts Options) *Env {
	t.Helper()
	bin := Bin(t)
	etcd := testutil.StartEtcdEndpoint(t)
	dir := t.TempDir()
	e := &Env{Bin: bin, dir: dir, Issuer: "https://kubernetes.default.svc.cluster.local"}
	t.Cleanup(func() { e.stop(t) })

	token := randomHex(t)
	saKey, saPub := writeServiceAccountKeys(t, dir)
	mustWrite(t, filepath.Join(dir, "tokens.csv"), token+",gantry-test-admin,gantry-test-admin,system:masters\n")
	port := freePort(t)
	apiserverArgs := []string{
		"--etcd-servers=" + etcd,
		"--etcd-prefix=/registry",
		"--bind-address=127.0.0.1",
		"--advertise-address=127.0.0.1",
		"--secure-port=" + strconv.Itoa(port),
		"--cert-dir=" + filepath.Join(dir, "certs"),
		"--token-auth-file=" + filepath.Join(dir, "tokens.csv"),
		"--authorization-mode=Node,RBAC",
		"--service-account-issuer=" + e.Issuer,
		"--service-account-key-file=" + saPub,
		"--service-account-signing-key-file=" + saKey,
		"--service-cluster-ip-range=10.96.0.0/16",
		"--enable-priority-and-fairness=false",
		"--max-requests-inflight=1000",
		"--max-mutating-requests-inflight=500",
		"--profiling=false",
	}
	if len(opts.AdmissionPlugins) > 0 {
		apiserverArgs = append(apiserverArgs, "--enable-admission-plugins="+strings.Join(opts.AdmissionPlugins, ","))
	}
	e.start(t, "kube-apiserver", filepath.Join(bin, "kube-apiserver"), apiserverArgs...)
	e.Config = &rest.Config{Host: fmt.Sprintf("https://127.0.0.1:%d", port), BearerToken: token,
		TLSClientConfig: rest.TLSClientConfig{Insecure: true}, QPS: 500, Burst: 1000}
	e.Kubeconfig = filepath.Join(dir, "admin.kubeconfig")
	writeKubeconfig(t, e.Kubeconfig, e.Config.Host, token)
	client, err := kubernetes.NewForConfig(e.Config)
	if err != nil {
		t.Fatalf("kubetest: %v", err)
	}
	e.Client = client
	e.waitReady(t, port)

	if !opts.NoScheduler {
		// Two profiles, so that a pod naming SecondScheduler (as pods
		// naming KAI Scheduler do) is scheduled too.
		cfg := filepath.Join(dir, "scheduler.yaml")
		mustWrite(t, cfg, fmt.Sprintf(`apiVersion: kubescheduler.config.k8s.io/v1
kind: KubeSchedulerConfiguration
leaderElection:
  leaderElect: false
clientConnection:
  kubeconfig: %q
  qps: 500
  burst: 1000
profiles:
- schedulerName: default-scheduler
- schedulerName: %s
`, e.Kubeconfig, SecondScheduler))
		e.start(t, "kube-scheduler", filepath.Join(bin, "kube-scheduler"), "--config="+cfg, "--secure-port=0")
	}
	if !opts.NoControllerManager {
		e.start(t, "kube-controller-manager", filepath.Join(bin, "kube-controller-manager"),
			"--kubeconfig="+e.Kubeconfig, "--leader-elect=false", "--secure-port=0",
			"--service-account-private-key-file="+saKey, "--use-service-account-credentials=false",
			"--kube-api-qps=500", "--kube-api-burst=1000",
			"--concurrent-deployment-syncs=20", "--concurrent-replicaset-syncs=20",
			"--concurrent-gc-syncs=20")
	}
	if opts.PodCIDR == "" {
		opts.PodCIDR = "10.244.0.0/16"
	}
	if !opts.NoKwok {
		e.start(t, "kwok", filepath.Join(bin, "kwok"),
			"--kubeconfig="+e.Kubeconfig, "--config="+filepath.Join(bin, "kwok-stages.yaml"),
			"--manage-all-nodes=false", "--manage-nodes-with-annotation-selector=kwok.x-k8s.io/node=fake",
			"--cidr="+opts.PodCIDR, "--node-ip=10.0.0.1", "--node-lease-duration-seconds=40")
	}
	return e
}

// start launches one component with its output in a log file.
func (e *Env) start(t testing.TB, name, path string, args ...string) {
	t.Helper()
	logPath := filepath.Join(e.dir, name+".log")
	f, err := os.Create(logPath)
	if err != nil {
		t.Fatalf("kubetest: %v", err)
	}
	cmd := exec.Command(path, args...)
	cmd.Stdout, cmd.Stderr = f, f
	cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
	if err := spawn(cmd); err != nil {
		f.Close()
		t.Fatalf("kubetest: start %s: %v", name, err)
	}
	p := &proc{name: name, cmd: cmd, log: logPath, done: make(chan struct{})}
	go func() { _ = cmd.Wait(); f.Close(); close(p.done) }()
	e.procs = append(e.procs, p)
}

// Components get Pdeathsig SIGKILL so that they die with the test binary.
// Linux sends it when the *thread* that forked them exits, though, and a
// thread exits when a goroutine that locked it returns — as the process
// runtime's spawner does at Close. Forked from an ordinary goroutine, a
// component could be on such a thread, and in a package whose tests run in
// parallel (test/e2e: platforms close all the time) its API server or
// controller manager was killed mid-test. So every component is forked by
// one goroutine that locks its thread and never returns.
var (
	spawnOnce sync.Once
	spawnCh   = make(chan spawnRequest)
)

type spawnRequest struct {
	cmd    *exec.Cmd
	result chan error
}

// spawn starts cmd on the spawner's thread.
func spawn(cmd *exec.Cmd) error {
	spawnOnce.Do(func() {
		go func() {
			goruntime.LockOSThread()
			for req := range spawnCh {
				req.result <- req.cmd.Start()
			}
		}()
	})
	req := spawnRequest{cmd: cmd, result: make(chan error, 1)}
	spawnCh <- req
	return <-req.result
}

// waitReady waits for the API server's /readyz, failing early if it exits.
func (e *Env) waitReady(t testing.TB, port int) {
	t.Helper()
	apiserver := e.procs[0]
	rc := e.Client.Discovery().RESTClient()
	testutil.WaitFor(t, 90*time.Second, func() error {
		select {
		case <-apiserver.done:
			t.Fatalf("kubetest: kube-apiserver exited:\n%s", tail(apiserver.log, 30))
		default:
		}
		ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
		defer cancel()
		body, err := rc.Get().AbsPath("/readyz").DoRaw(ctx)
		if err != nil {
			return fmt.Errorf("kube-apiserver on port %d not ready: %v %s", port, err, body)
		}
		return nil
	})
}

// stop ends every component, newest first, and shows their logs if the test
// failed.
func (e *Env) stop(t testing.TB) {
	for i := len(e.procs) - 1; i >= 0; i-- {
		p := e.procs[i]
		_ = p.cmd.Process.Signal(syscall.SIGTERM)
		select {
		case <-p.done:
		case <-time.After(10 * time.Second):
			_ = p.cmd.Process.Kill()
			<-p.done
		}
		if t.Failed() {
			t.Logf("kubetest: last lines of %s:\n%s", p.name, tail(p.log, 20))
		}
	}
}

// Logs returns the tail of one component's log, for test failure messages.
func (e *Env) Logs(name string, lines int) string {
	return tail(filepath.Join(e.dir, name+".log"), lines)
}

// Kubectl runs the built kubectl against the API server.
func (e *Env) Kubectl(ctx context.Context, stdin []byte, args ...string) (string, error) {
	cmd := exec.CommandContext(ctx, filepath.Join(e.Bin, "kubectl"), append([]string{"--kubeconfig=" + e.Kubeconfig}, args...)...)
	if stdin != nil {
		cmd.Stdin = bytes.NewReader(stdin)
	}
	out, err := cmd.CombinedOutput()
	return string(out), err
}

// GPUNode is a simulated node with NVIDIA GPUs, labelled the way the GPU
// Operator's feature discovery labels real ones.
type GPUNode struct {
	Name    string
	Product string // nvidia.com/gpu.product, e.g. NVIDIA-H100-80GB-HBM3
	GPUs    int
	// GPUMemoryMiB is nvidia.com/gpu.memory (per GPU, in MiB).
	GPUMemoryMiB int
	CPU          string // allocatable CPU, default "64"
	Memory       string // allocatable memory, default "512Gi"
	Labels       map[string]string
	Taints       []corev1.Taint
	// Unschedulable is a cordoned node.
	Unschedulable bool
}

// AddGPUNode creates a node that kwok manages and waits until it is Ready.
func (e *Env) AddGPUNode(t testing.TB, n GPUNode) *corev1.Node {
	t.Helper()
	if n.CPU == "" {
		n.CPU = "64"
	}
	if n.Memory == "" {
		n.Memory = "512Gi"
	}
	labels := map[string]string{
		"kubernetes.io/hostname": n.Name, "kubernetes.io/os": "linux", "type": "kwok",
		"nvidia.com/gpu.present": "true", "nvidia.com/gpu.product": n.Product,
		"nvidia.com/gpu.count": strconv.Itoa(n.GPUs), "nvidia.com/gpu.memory": strconv.Itoa(n.GPUMemoryMiB),
	}
	for k, v := range n.Labels {
		labels[k] = v
	}
	res := corev1.ResourceList{
		corev1.ResourceCPU:    resource.MustParse(n.CPU),
		corev1.ResourceMemory: resource.MustParse(n.Memory),
		corev1.ResourcePods:   resource.MustParse("250"),
		GPUResource:           *resource.NewQuantity(int64(n.GPUs), resource.DecimalSI),
	}
	node := &corev1.Node{
		ObjectMeta: metav1.ObjectMeta{Name: n.Name, Labels: labels,
			Annotations: map[string]string{"kwok.x-k8s.io/node": "fake"}},
		Spec:   corev1.NodeSpec{Taints: n.Taints, Unschedulable: n.Unschedulable},
		Status: corev1.NodeStatus{Capacity: res, Allocatable: res},
	}
	ctx := testutil.Context(t)
	created, err := e.Client.CoreV1().Nodes().Create(ctx, node, metav1.CreateOptions{})
	if err != nil {
		t.Fatalf("kubetest: create node %s: %v", n.Name, err)
	}
	testutil.WaitFor(t, 60*time.Second, func() error {
		got, err := e.Client.CoreV1().Nodes().Get(ctx, n.Name, metav1.GetOptions{})
		if err != nil {
			return err
		}
		for _, c := range got.Status.Conditions {
			if c.Type == corev1.NodeReady && c.Status == corev1.ConditionTrue {
				created = got
				return nil
			}
		}
		return fmt.Errorf("node %s is not Ready yet (is kwok running?)\n%s", n.Name, e.Logs("kwok", 10))
	})
	return created
}

func writeKubeconfig(t testing.TB, path, server, token string) {
	t.Helper()
	cfg := clientcmdapi.NewConfig()
	cfg.Clusters["test"] = &clientcmdapi.Cluster{Server: server, InsecureSkipTLSVerify: true}
	cfg.AuthInfos["admin"] = &clientcmdapi.AuthInfo{Token: token}
	cfg.Contexts["test"] = &clientcmdapi.Context{Cluster: "test", AuthInfo: "admin"}
	cfg.CurrentContext = "test"
	if err := clientcmd.WriteToFile(*cfg, path); err != nil {
		t.Fatalf("kubetest: %v", err)
	}
}

func writeServiceAccountKeys(t testing.TB, dir string) (keyPath, pubPath string) {
	t.Helper()
	key, err := rsa.GenerateKey(rand.Reader, 2048)
	if err != nil {
		t.Fatalf("kubetest: %v", err)
	}
	pub, err := x509.MarshalPKIXPublicKey(&key.PublicKey)
	if err != nil {
		t.Fatalf("kubetest: %v", err)
	}
	keyPath, pubPath = filepath.Join(dir, "sa.key"), filepath.Join(dir, "sa.pub")
	mustWrite(t, keyPath, string(pem.EncodeToMemory(&pem.Block{Type: "RSA PRIVATE KEY", Bytes: x509.MarshalPKCS1PrivateKey(key)})))
	mustWrite(t, pubPath, string(pem.EncodeToMemory(&pem.Block{Type: "PUBLIC KEY", Bytes: pub})))
	return keyPath, pubPath
}

func mustWrite(t testing.TB, path, content string) {
	t.Helper()
	if err := os.WriteFile(path, []byte(content), 0o600); err != nil {
		t.Fatalf("kubetest: %v", err)
	}
}

func randomHex(t testing.TB) string {
	b := make([]byte, 16)
	if _, err := rand.Read(b); err != nil {
		t.Fatalf("kubetest: %v", err)
	}
	return hex.EncodeToString(b)
}

func freePort(t testing.TB) int {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatalf("kubetest: %v", err)
	}
	defer l.Close()
	return l.Addr().(*net.TCPAddr).Port
}

func tail(path string, lines int) string {
	b, err := os.ReadFile(path)
	if err != nil {
		return ""
	}
	all := strings.Split(strings.TrimRight(string(b), "\n"), "\n")
	if len(all) > lines {
		all = all[len(all)-lines:]
	}
	return strings.Join(all, "\n")
}
