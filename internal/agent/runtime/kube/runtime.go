// Package kube runs function instances as Kubernetes workloads: one
// Deployment per instance (plus a Secret when it has secrets, and an image
// pull Secret when its account has a registry credential for its image's
// registry), placed on the nodes whose GPUs match its instance type. It is
// the runtime behind container images on a cluster that has the NVIDIA GPU
// Operator.
//
// Everything the runtime knows comes from informers on the API server, so its
// view survives an agent restart: instances live in Kubernetes, not in the
// agent, and a new Runtime adopts the ones its cluster already runs. Every
// object carries ManagedByLabel and ClusterLabel, which is also how an
// uninstall finds them.
//
// Deployments carry Finalizer so that one deleted behind Gantry's back (kubectl
// delete) stays visible until its pods are gone; the runtime turns such a
// deletion into a foreground one, reports the instance TERMINATED and then
// lets the Deployment go.
package kube

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"slices"
	"strings"
	"sync"
	"time"

	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/labels"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/apimachinery/pkg/util/validation"
	"k8s.io/client-go/informers"
	"k8s.io/client-go/kubernetes"
	corelisters "k8s.io/client-go/listers/core/v1"
	"k8s.io/client-go/rest"
	"k8s.io/client-go/tools/cache"
	"k8s.io/client-go/util/retry"
	"k8s.io/client-go/util/workqueue"
	"k8s.io/utils/ptr"

	"helm.sh/helm/v4/pkg/action"

	"github.com/gantry-dev/gantry/internal/agent/runtime"
	"github.com/gantry-dev/gantry/internal/model"
)

// Labels and the finalizer on every object the runtime creates. Uninstall
// and diagnostics find Gantry's objects by them.
const (
	ManagedByLabel       = "app.kubernetes.io/managed-by"
	ManagedByValue       = "gantry"
	InstanceLabel        = "gantry.dev/instance"
	FunctionLabel        = "gantry.dev/function"
	FunctionVersionLabel = "gantry.dev/function-version"
	ClusterLabel         = "gantry.dev/cluster"
	// Finalizer keeps an instance's Deployment until its pods are gone, so
	// a deletion from outside Gantry is seen and completes in order. The
	// runtime removes it; an uninstall that removes the runtime must too.
	Finalizer = "gantry.dev/instance-cleanup"
	// DefaultNamespace is where instances run unless Config says otherwise.
	DefaultNamespace = "gantry-functions"
)

// ErrClosed is returned by Start and Stop after Close.
var ErrClosed = errors.New("kube: runtime closed")

// byInstance indexes the informer caches by InstanceLabel.
const byInstance = "instance"

// Config configures a Runtime.
type Config struct {
	// Client talks to the cluster's API server. Required.
	Client kubernetes.Interface
	// RESTConfig is the same connection as Client, for Helm, which builds
	// clients of its own. Without it Helm-chart instances fail to start.
	RESTConfig *rest.Config
	// Namespace is where instances run. Default DefaultNamespace; New
	// creates it, labelled ManagedByLabel=gantry, if it is missing.
	Namespace string
	// ClusterID is the Gantry cluster id, stamped as ClusterLabel on every
	// object; only objects with it are adopted. Required.
	ClusterID string
	// SchedulerName is the pod scheduler, e.g. "kai-scheduler" for GPU
	// sharing and gang scheduling. Empty means the default scheduler.
	SchedulerName string
	// ImagePullSecrets name Secrets in Namespace for private registries.
	ImagePullSecrets []string
	// Notify is called whenever an instance's status, the inventory or a
	// node's free GPUs change, so the agent reports without polling. It is
	// called without the runtime's lock, from informer goroutines and from
	// Start and Stop; it must not block. May be nil.
	Notify func()
	// Logger receives lifecycle events; never secret values. Nil discards.
	Logger *slog.Logger
}

// Runtime runs instances as Kubernetes Deployments. Create it with New; it is
// safe for concurrent use.
type Runtime struct {
	cfg     Config
	log     *slog.Logger
	version string // the API server's GitVersion

	namespaced  informers.SharedInformerFactory // pods, Deployments, Secrets of Gantry's
	cluster     informers.SharedInformerFactory // nodes, and every pod trimmed to its GPUs
	pods        cache.Indexer
	deployments cache.Indexer
	secrets     cache.Indexer
	services    cache.Indexer
	nodes       corelisters.NodeLister
	gpuPods     cache.Indexer // all pods of the cluster, trimmed by trimPod, indexed byNode

	// queue holds names of Deployments being deleted whose finalizer may
	// be due for removal; one worker drains it.
	queue      workqueue.TypedRateLimitingInterface[string]
	cancel     context.CancelFunc
	workerDone chan struct{}
	done       chan struct{} // closed by Close
	closeOnce  sync.Once

	mu        sync.Mutex
	closed    bool
	instances map[string]*instance
	changed   chan struct{}  // closed and replaced on every cache event, for waiters
	lastNodes []model.Node   // the inventory last notified
	lastFree  map[string]int // the free GPUs last notified

	// Helm, made on the first Helm instance (helmConfig); helmMu
	// serialises releases' installs, upgrades and uninstalls.
	helmOnce sync.Once
	helm     *action.Configuration
	helmErr  error
	helmMu   sync.Mutex
}

var _ runtime.Runtime = (*Runtime)(nil)

// instance is what the runtime remembers of an instance beyond the caches.
// Fields are guarded by Runtime.mu.
type instance struct {
	id       string
	stopping bool // Stop was called
	gone     bool // its Deployment was deleted while nobody stopped it
	last     runtime.Status
	// helm is set for a Helm release; digest is what it was installed
	// from (see helmDigest), failed why it could not be.
	helm          bool
	digest        string
	failed        string
	upgradeFailed string
}

// New ensures the namespace exists, starts the informers, waits for their
// caches, reads the server version and adopts the instances of cfg.ClusterID
// that already run in the namespace. ctx bounds only this setup.
func New(ctx context.Context, cfg Config) (*Runtime, error) {
	if cfg.Client == nil {
		return nil, errors.New("kube: Config.Client is required")
	}
	if errs := validation.IsValidLabelValue(cfg.ClusterID); cfg.ClusterID == "" || len(errs) > 0 {
		return nil, fmt.Errorf("kube: cluster id %q cannot label Kubernetes objects: %s", cfg.ClusterID, strings.Join(errs, "; "))
	}
	if cfg.Namespace == "" {
		cfg.Namespace = DefaultNamespace
	}
	logger := cfg.Logger
	if logger == nil {
		logger = slog.New(slog.DiscardHandler)
	}
	if err := ensureNamespace(ctx, cfg.Client, cfg.Namespace); err != nil {
		return nil, err
	}
	sv, err := cfg.Client.Discovery().ServerVersion()
	if err != nil {
		return nil, fmt.Errorf("kube: read the API server's version: %w", err)
	}
	r := &Runtime{
		cfg: cfg, log: logger.With("runtime", "kube", "namespace", cfg.Namespace), version: sv.GitVersion,
		queue:      workqueue.NewTypedRateLimitingQueue(workqueue.DefaultTypedControllerRateLimiter[string]()),
		workerDone: make(chan struct{}),
		done:       make(chan struct{}),
		instances:  map[string]*instance{},
		changed:    make(chan struct{}),
	}
	if err := r.startInformers(ctx); err != nil {
		r.queue.ShutDown()
		return nil, err
	}
	r.adopt()
	nodes := r.Inventory().Nodes
	free := r.freeGPUs(nodes)
	r.mu.Lock()
	r.lastNodes, r.lastFree = nodes, free
	r.mu.Unlock()
	return r, nil
}

// ensureNamespace creates the namespace unless it exists.
func ensureNamespace(ctx context.Context, client kubernetes.Interface, name string) error {
	_, err := client.CoreV1().Namespaces().Get(ctx, name, metav1.GetOptions{})
	if err == nil {
		return nil
	}
	if !apierrors.IsNotFound(err) {
		return fmt.Errorf("kube: read namespace %s: %w", name, err)
	}
	ns := &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: name, Labels: map[string]string{ManagedByLabel: ManagedByValue}}}
	if _, err := client.CoreV1().Namespaces().Create(ctx, ns, metav1.CreateOptions{}); err != nil && !apierrors.IsAlreadyExists(err) {
		return fmt.Errorf("kube: create namespace %s: %w", name, err)
	}
	return nil
}

// startInformers watches Gantry's pods, Deployments and Secrets in the
// namespace, every node, and every pod of the cluster for its GPUs, and
// waits until the caches are filled. Gantry's own pods are in both pod
// informers on purpose: instance state needs them whole (conditions, IP,
// restarts), and one informer serving both would keep every pod of the
// cluster whole, where the cluster-wide one keeps only GPU counts.
func (r *Runtime) startInformers(ctx context.Context) error {
	r.namespaced = informers.NewSharedInformerFactoryWithOptions(r.cfg.Client, 0,
		informers.WithNamespace(r.cfg.Namespace),
		// By cluster rather than ManagedByLabel: Helm sets that label to
		// "Helm" on a release's objects.
		informers.WithTweakListOptions(func(o *metav1.ListOptions) { o.LabelSelector = ClusterLabel + "=" + r.cfg.ClusterID }))
	r.cluster = informers.NewSharedInformerFactory(r.cfg.Client, 0)

	podInf := r.namespaced.Core().V1().Pods().Informer()
	depInf := r.namespaced.Apps().V1().Deployments().Informer()
	secInf := r.namespaced.Core().V1().Secrets().Informer()
	svcInf := r.namespaced.Core().V1().Services().Informer()
	nodeInf := r.cluster.Core().V1().Nodes().Informer()
	r.nodes = r.cluster.Core().V1().Nodes().Lister()
	gpuPodInf := r.cluster.Core().V1().Pods().Informer()
	if err := gpuPodInf.SetTransform(trimPod); err != nil {
		return fmt.Errorf("kube: %w", err)
	}
	if err := gpuPodInf.AddIndexers(cache.Indexers{byNode: nodeIndex}); err != nil {
		return fmt.Errorf("kube: %w", err)
	}
	r.gpuPods = gpuPodInf.GetIndexer()
	indexers := cache.Indexers{byInstance: instanceIndex}
	for _, inf := range []cache.SharedIndexInformer{podInf, depInf, secInf, svcInf} {
		if err := inf.AddIndexers(indexers); err != nil {
			return fmt.Errorf("kube: %w", err)
		}
	}
	// Secret values are not kept: the runtime only needs to know a Secret
	// exists, and values in a cache are one more copy to leak.
	if err := secInf.SetTransform(func(obj any) (any, error) {
		if s, ok := obj.(*corev1.Secret); ok {
			s = s.DeepCopy()
			s.Data, s.StringData = nil, nil
			return s, nil
		}
		return obj, nil
	}); err != nil {
		return fmt.Errorf("kube: %w", err)
	}
	r.pods, r.deployments, r.secrets, r.services = podInf.GetIndexer(), depInf.GetIndexer(), secInf.GetIndexer(), svcInf.GetIndexer()

	handlers := []struct {
		inf cache.SharedIndexInformer
		fn  func(obj any, deleted bool)
	}{{podInf, r.onPod}, {depInf, r.onDeployment}, {secInf, r.onSecret}, {svcInf, r.onService}, {nodeInf, r.onNode}, {gpuPodInf, r.onGPUPod}}
	for _, h := range handlers {
		_, err := h.inf.AddEventHandler(cache.ResourceEventHandlerFuncs{
			AddFunc:    func(obj any) { h.fn(obj, false) },
			UpdateFunc: func(_, obj any) { h.fn(obj, false) },
			DeleteFunc: func(obj any) { h.fn(obj, true) },
		})
		if err != nil {
			return fmt.Errorf("kube: %w", err)
		}
	}

	wctx, cancel := context.WithCancel(context.Background())
	r.cancel = cancel
	r.namespaced.Start(wctx.Done())
	r.cluster.Start(wctx.Done())
	if !cache.WaitForCacheSync(ctx.Done(), podInf.HasSynced, depInf.HasSynced, secInf.HasSynced, svcInf.HasSynced, nodeInf.HasSynced, gpuPodInf.HasSynced) {
		cancel()
		r.namespaced.Shutdown()
		r.cluster.Shutdown()
		return fmt.Errorf("kube: informer caches did not fill (can the agent list deployments, secrets, services in %s, and nodes and pods cluster-wide?): %w",
			r.cfg.Namespace, context.Cause(ctx))
	}
	go r.worker(wctx)
	return nil
}

// adopt makes the runtime know every instance of its cluster that already
// runs, so that a restarted agent keeps them instead of starting duplicates.
func (r *Runtime) adopt() {
	r.mu.Lock()
	defer r.mu.Unlock()
	for _, obj := range r.deployments.List() {
		d := obj.(*appsv1.Deployment)
		id := d.Labels[InstanceLabel]
		if !r.ours(d) || id == "" {
			continue
		}
		in := &instance{id: id, helm: d.Labels[HelmReleaseLabel] != "", digest: d.Labels[helmDigestLabel]}
		in.last = r.status(in)
		r.instances[id] = in
	}
	// A Helm release shows by its inference Service, also when its chart
	// has no Deployment.
	for _, obj := range r.services.List() {
		s := obj.(*corev1.Service)
		id := s.Labels[InstanceLabel]
		if !r.ours(s) || id == "" || s.Labels[HelmReleaseLabel] == "" || s.Annotations[inferencePortAnnotation] == "" {
			continue
		}
		in := r.instances[id]
		if in == nil {
			in = &instance{id: id}
			r.instances[id] = in
		}
		in.helm, in.digest = true, s.Labels[helmDigestLabel]
		in.last = r.status(in)
	}
	if len(r.instances) > 0 {
		r.log.Info("adopted running instances", "count", len(r.instances))
	}
}

// Start creates the instance's Deployment (and Secrets) and returns; the pod
// starts in the background and its progress shows up in List. Starting a
// known instance, or one whose Deployment already exists, does nothing.
func (r *Runtime) Start(ctx context.Context, spec runtime.Spec) error {
	if spec.Helm != nil {
		return r.startHelm(ctx, spec)
	}
	if err := checkSpec(spec); err != nil {
		return err
	}
	id := spec.InstanceID
	r.mu.Lock()
	if r.closed {
		r.mu.Unlock()
		return ErrClosed
	}
	if _, ok := r.instances[id]; ok {
		r.mu.Unlock()
		return nil
	}
	in := &instance{id: id}
	r.instances[id] = in
	exists := r.deploymentOf(id) != nil
	r.mu.Unlock()

	if !exists {
		if err := r.create(ctx, spec); err != nil {
			r.mu.Lock()
			if r.instances[id] == in {
				delete(r.instances, id)
			}
			r.mu.Unlock()
			return err
		}
		r.log.Info("instance starting", "instance", id, "function", spec.FunctionID,
			"image", spec.Image, "gpus", spec.GPUCount, "gpuModel", spec.GPUModel, "deployment", deploymentName(id))
	}
	r.refresh(id)
	return nil
}

// create makes the instance's objects: the Deployment, then the Secrets
// owned by it (its secrets, its image pull Secret). If a Secret cannot be
// made, the Deployment is deleted again so a retry starts clean. The pod
// may be created before its Secrets; the kubelet retries a pull or a start
// that misses them, and they follow within one API call.
func (r *Runtime) create(ctx context.Context, spec runtime.Spec) error {
	var p placement
	if spec.GPUCount > 0 {
		nodes, err := r.nodes.List(labels.Everything())
		if err != nil {
			return fmt.Errorf("kube: %w", err)
		}
		if p, err = placementFor(nodes, spec.GPUModel, spec.GPUCount); err != nil {
			return err
		}
	}
	d, err := r.buildDeployment(spec, p)
	if err != nil {
		return err
	}
	deployments := r.cfg.Client.AppsV1().Deployments(r.cfg.Namespace)
	created, err := deployments.Create(ctx, d, metav1.CreateOptions{})
	if apierrors.IsAlreadyExists(err) {
		created, err = deployments.Get(ctx, d.Name, metav1.GetOptions{})
		if err == nil && created.Labels[InstanceLabel] != spec.InstanceID {
			return fmt.Errorf("kube: Deployment %s/%s exists and belongs to instance %q, not %s",
				r.cfg.Namespace, d.Name, created.Labels[InstanceLabel], spec.InstanceID)
		}
	}
	if err != nil {
		return fmt.Errorf("kube: create Deployment %s/%s: %w", r.cfg.Namespace, d.Name, err)
	}
	var secrets []*corev1.Secret
	if len(spec.Secrets) > 0 {
		s, err := r.buildSecret(created, spec)
		if err != nil {
			return r.undoCreate(ctx, created, err)
		}
		secrets = append(secrets, s)
	}
	if len(spec.DockerConfigJSON) > 0 {
		secrets = append(secrets, r.buildPullSecret(created, spec))
	}
	for _, s := range secrets {
		if err := r.putSecret(ctx, s); err != nil {
			return r.undoCreate(ctx, created, fmt.Errorf("kube: create Secret %s/%s for instance %s: %w",
				r.cfg.Namespace, s.Name, spec.InstanceID, err))
		}
	}
	return nil
}

// undoCreate deletes a Deployment whose Secrets could not be made (with
// those that were, which it owns), so a retry starts clean, and returns
// err.
func (r *Runtime) undoCreate(ctx context.Context, created *appsv1.Deployment, err error) error {
	dctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 10*time.Second)
	defer cancel()
	_ = r.cfg.Client.AppsV1().Deployments(r.cfg.Namespace).Delete(dctx, created.Name, metav1.DeleteOptions{
		PropagationPolicy: ptr.To(metav1.DeletePropagationForeground),
		Preconditions:     &metav1.Preconditions{UID: &created.UID}})
	return err
}

// putSecret creates s, or replaces the data and owner of a Secret of that
// name left from an earlier attempt.
func (r *Runtime) putSecret(ctx context.Context, s *corev1.Secret) error {
	secrets := r.cfg.Client.CoreV1().Secrets(r.cfg.Namespace)
	_, err := secrets.Create(ctx, s, metav1.CreateOptions{})
	if !apierrors.IsAlreadyExists(err) {
		return err
	}
	return retry.RetryOnConflict(retry.DefaultRetry, func() error {
		old, err := secrets.Get(ctx, s.Name, metav1.GetOptions{})
		if err != nil {
			return err
		}
		old.Labels, old.OwnerReferences, old.Data, old.Type = s.Labels, s.OwnerReferences, s.Data, s.Type
		_, err = secrets.Update(ctx, old, metav1.UpdateOptions{})
		return err
	})
}

// Stop deletes the instance's Deployment in the foreground, waits for its
// pods to go, removes Finalizer, waits for the Deployment and Secret to go,
// and forgets the instance. If ctx ends first the error says what is left;
// the instance stays known (and stopping) so a later Stop can finish.
func (r *Runtime) Stop(ctx context.Context, instanceID string) error {
	r.mu.Lock()
	if r.closed {
		r.mu.Unlock()
		return ErrClosed
	}
	in := r.instances[instanceID]
	if in != nil {
		in.stopping = true
	}
	r.mu.Unlock()

	if r.isHelm(in, instanceID) {
		return r.stopHelm(ctx, in, instanceID)
	}
	name := deploymentName(instanceID)
	if d := r.deploymentOf(instanceID); d != nil {
		name = d.Name
	}
	deployments := r.cfg.Client.AppsV1().Deployments(r.cfg.Namespace)
	err := deployments.Delete(ctx, name, metav1.DeleteOptions{PropagationPolicy: ptr.To(metav1.DeletePropagationForeground)})
	if err != nil && !apierrors.IsNotFound(err) {
		return fmt.Errorf("kube: stop %s: delete Deployment %s/%s: %w", instanceID, r.cfg.Namespace, name, err)
	}
	if err := r.waitFor(ctx, func() (bool, string) {
		pods := r.podsOf(instanceID)
		return len(pods) == 0, describePods(pods)
	}); err != nil {
		return fmt.Errorf("kube: stop %s: %w", instanceID, err)
	}
	if err := r.finishDeletion(ctx, name); err != nil {
		return fmt.Errorf("kube: stop %s: remove finalizer of Deployment %s/%s: %w", instanceID, r.cfg.Namespace, name, err)
	}
	if err := r.waitFor(ctx, func() (bool, string) {
		if d := r.deploymentOf(instanceID); d != nil {
			return false, fmt.Sprintf("Deployment %s is still being deleted (finalizers: %s)", d.Name, strings.Join(d.Finalizers, ", "))
		}
		if s := r.secretsOf(instanceID); len(s) > 0 {
			return false, fmt.Sprintf("Secret %s is still there", s[0].Name)
		}
		// The cache may not have seen the Deployment at all yet.
		_, err := deployments.Get(ctx, name, metav1.GetOptions{})
		switch {
		case apierrors.IsNotFound(err):
			return true, ""
		case err != nil:
			return false, fmt.Sprintf("cannot read Deployment %s: %v", name, err)
		}
		return false, fmt.Sprintf("Deployment %s still exists", name)
	}); err != nil {
		return fmt.Errorf("kube: stop %s: %w", instanceID, err)
	}

	r.mu.Lock()
	removed := in != nil && r.instances[instanceID] == in
	if removed {
		delete(r.instances, instanceID)
	}
	r.mu.Unlock()
	if removed {
		r.log.Info("instance stopped", "instance", instanceID)
		r.notify()
	}
	return nil
}

// describePods says which pods a stop is waiting for.
func describePods(pods []*corev1.Pod) string {
	names := make([]string, 0, len(pods))
	for _, p := range pods {
		where := "not scheduled"
		if p.Spec.NodeName != "" {
			where = "on node " + p.Spec.NodeName
		}
		names = append(names, fmt.Sprintf("%s (%s, %s)", p.Name, p.Status.Phase, where))
	}
	return fmt.Sprintf("%d pod(s) still terminating: %s", len(pods), strings.Join(names, ", "))
}

// waitFor waits until cond holds, re-checking on every cache event. When ctx
// ends first, the error carries cond's description of what is stuck.
func (r *Runtime) waitFor(ctx context.Context, cond func() (bool, string)) error {
	for {
		r.mu.Lock()
		changed := r.changed
		r.mu.Unlock()
		ok, stuck := cond()
		if ok {
			return nil
		}
		select {
		case <-changed:
		case <-r.done:
			return fmt.Errorf("%s: %w", stuck, ErrClosed)
		case <-ctx.Done():
			return fmt.Errorf("%s: %w", stuck, context.Cause(ctx))
		}
	}
}

// finishDeletion moves a Deployment of Gantry's that is being deleted
// towards its end: while pods remain it makes sure they are being deleted,
// and once they are gone it removes Finalizer. kubectl deletes in the
// background, where the garbage collector deletes the pods only after the
// Deployment is gone, which the finalizer prevents; deleting again in the
// foreground makes the pods go first.
func (r *Runtime) finishDeletion(ctx context.Context, name string) error {
	deployments := r.cfg.Client.AppsV1().Deployments(r.cfg.Namespace)
	d, err := deployments.Get(ctx, name, metav1.GetOptions{})
	if apierrors.IsNotFound(err) {
		return nil
	}
	if err != nil {
		return err
	}
	if d.DeletionTimestamp == nil || !slices.Contains(d.Finalizers, Finalizer) || !r.ours(d) {
		return nil
	}
	if len(r.podsOf(d.Labels[InstanceLabel])) > 0 {
		if slices.Contains(d.Finalizers, metav1.FinalizerDeleteDependents) {
			return nil // the pods' deletion events bring it back here
		}
		err := deployments.Delete(ctx, name, metav1.DeleteOptions{
			PropagationPolicy: ptr.To(metav1.DeletePropagationForeground),
			Preconditions:     &metav1.Preconditions{UID: &d.UID}})
		if apierrors.IsNotFound(err) || apierrors.IsConflict(err) {
			return nil
		}
		return err
	}
	// A strategic merge patch removes just this finalizer, without a
	// resourceVersion to conflict with the garbage collector and the
	// Deployment controller, which update the object at the same time.
	// The uid makes it fail on a new Deployment of the same name.
	patch := fmt.Sprintf(`{"metadata":{"uid":%q,"$deleteFromPrimitiveList/finalizers":[%q]}}`, d.UID, Finalizer)
	_, err = deployments.Patch(ctx, name, types.StrategicMergePatchType, []byte(patch), metav1.PatchOptions{})
	if apierrors.IsNotFound(err) {
		return nil
	}
	return err
}

// worker runs finishDeletion for Deployments the informer shows being
// deleted, so a kubectl delete completes even when Stop is never called.
func (r *Runtime) worker(ctx context.Context) {
	defer close(r.workerDone)
	for {
		name, quit := r.queue.Get()
		if quit {
			return
		}
		if err := r.finishDeletion(ctx, name); err != nil && ctx.Err() == nil {
			r.log.Warn("kube: finishing the deletion of a Deployment failed; will retry", "deployment", name, "err", err)
			r.queue.AddRateLimited(name)
		} else {
			r.queue.Forget(name)
		}
		r.queue.Done(name)
	}
}

// List returns every known instance's status, sorted by InstanceID: those
// started here and those adopted at New.
func (r *Runtime) List() []runtime.Status {
	r.mu.Lock()
	out := make([]runtime.Status, 0, len(r.instances))
	for _, in := range r.instances {
		out = append(out, r.status(in))
	}
	r.mu.Unlock()
	slices.SortFunc(out, func(a, b runtime.Status) int { return strings.Compare(a.InstanceID, b.InstanceID) })
	return out
}

// Close stops the informers and the runtime's goroutines. Unlike the process
// runtime it does not stop the instances: on Kubernetes they outlive the
// agent, and a restarted agent adopts them (see New). To remove them, Stop
// each one, or uninstall. Calling Close again does nothing.
func (r *Runtime) Close() error {
	r.closeOnce.Do(func() {
		r.mu.Lock()
		r.closed = true
		close(r.done)
		r.mu.Unlock()
		// Shutdown order: the worker first (its API calls end with the
		// context), then the informers that feed it.
		r.cancel()
		r.queue.ShutDown()
		<-r.workerDone
		r.namespaced.Shutdown()
		r.cluster.Shutdown()
	})
	return nil
}

// status is an instance's current status. Callers hold r.mu.
func (r *Runtime) status(in *instance) runtime.Status {
	st := stateOf(r.observe(in))
	st.AssetDir, st.LargeOutputDir = AssetDir, LargeOutputDir // mounted in every pod
	return st
}

// observe gathers what the caches hold about in. Callers hold r.mu.
func (r *Runtime) observe(in *instance) observation {
	o := observation{InstanceID: in.id, Deployment: r.deploymentOf(in.id), Pods: r.podsOf(in.id),
		Stopping: in.stopping, Gone: in.gone}
	if in.helm {
		o.Helm, o.Service, o.Failed, o.UpgradeFailed = true, r.inferenceServiceOf(in.id), in.failed, in.upgradeFailed
	}
	return o
}

// refresh recomputes one instance's status and notifies if it changed.
func (r *Runtime) refresh(id string) {
	r.mu.Lock()
	changed := false
	if in := r.instances[id]; in != nil {
		st := r.status(in)
		changed, in.last = st != in.last, st
	}
	r.mu.Unlock()
	if changed {
		r.notify()
	}
}

// broadcast wakes every waitFor.
func (r *Runtime) broadcast() {
	r.mu.Lock()
	close(r.changed)
	r.changed = make(chan struct{})
	r.mu.Unlock()
}

func (r *Runtime) notify() {
	if r.cfg.Notify != nil {
		r.cfg.Notify()
	}
}

func (r *Runtime) onPod(obj any, deleted bool) {
	p, ok := unwrap[*corev1.Pod](obj)
	if !ok || !r.ours(p) {
		return
	}
	id := p.Labels[InstanceLabel]
	if d := r.deploymentOf(id); d != nil && d.DeletionTimestamp != nil {
		r.queue.Add(d.Name)
	}
	r.refresh(id)
	r.broadcast()
}

func (r *Runtime) onDeployment(obj any, deleted bool) {
	d, ok := unwrap[*appsv1.Deployment](obj)
	if !ok || !r.ours(d) {
		return
	}
	id := d.Labels[InstanceLabel]
	switch {
	case deleted:
		r.mu.Lock()
		if in := r.instances[id]; in != nil && !in.stopping {
			in.gone = true
		}
		r.mu.Unlock()
	case d.DeletionTimestamp != nil && slices.Contains(d.Finalizers, Finalizer):
		r.queue.Add(d.Name)
	}
	r.refresh(id)
	r.broadcast()
}

func (r *Runtime) onService(obj any, _ bool) {
	if s, ok := unwrap[*corev1.Service](obj); ok && r.ours(s) {
		r.refresh(s.Labels[InstanceLabel])
		r.broadcast()
	}
}

func (r *Runtime) onSecret(obj any, _ bool) {
	if s, ok := unwrap[*corev1.Secret](obj); ok && r.ours(s) {
		r.broadcast()
	}
}

// unwrap returns the object of an event, including a deletion the informer
// only learned about after the fact.
func unwrap[T metav1.Object](obj any) (T, bool) {
	if t, ok := obj.(cache.DeletedFinalStateUnknown); ok {
		obj = t.Obj
	}
	v, ok := obj.(T)
	return v, ok
}

// ours reports whether an object belongs to this runtime's cluster; the
// namespaced informers already keep to its ClusterLabel.
func (r *Runtime) ours(obj metav1.Object) bool {
	return obj.GetLabels()[ClusterLabel] == r.cfg.ClusterID
}

func instanceIndex(obj any) ([]string, error) {
	m, err := meta.Accessor(obj)
	if err != nil {
		return nil, nil
	}
	if id := m.GetLabels()[InstanceLabel]; id != "" {
		return []string{id}, nil
	}
	return nil, nil
}

// byIndex returns the cached objects of one instance in this cluster.
func byIndex[T metav1.Object](r *Runtime, idx cache.Indexer, id string) []T {
	objs, _ := idx.ByIndex(byInstance, id)
	out := make([]T, 0, len(objs))
	for _, o := range objs {
		if v, ok := o.(T); ok && r.ours(v) {
			out = append(out, v)
		}
	}
	return out
}

func (r *Runtime) deploymentOf(id string) *appsv1.Deployment {
	if ds := byIndex[*appsv1.Deployment](r, r.deployments, id); len(ds) > 0 {
		return ds[0]
	}
	return nil
}

func (r *Runtime) podsOf(id string) []*corev1.Pod {
	return byIndex[*corev1.Pod](r, r.pods, id)
}

func (r *Runtime) secretsOf(id string) []*corev1.Secret {
	return byIndex[*corev1.Secret](r, r.secrets, id)
}

func (r *Runtime) servicesOf(id string) []*corev1.Service {
	return byIndex[*corev1.Service](r, r.services, id)
}

// inferenceServiceOf is the Service a Helm instance serves through: the
// one the post-renderer marked with the inferencePort.
func (r *Runtime) inferenceServiceOf(id string) *corev1.Service {
	for _, s := range r.servicesOf(id) {
		if s.Annotations[inferencePortAnnotation] != "" {
			return s
		}
	}
	return nil
}
