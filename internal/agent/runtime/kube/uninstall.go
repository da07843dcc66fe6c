package kube

import (
	"context"
	"errors"
	"fmt"
	"io"
	"sort"
	"strings"
	"time"

	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime/schema"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/client-go/discovery"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/metadata"
	"k8s.io/client-go/rest"
)

// UninstallOptions says what `gantry agent uninstall` removes and how hard
// it tries.
type UninstallOptions struct {
	// Namespace is the functions namespace (default gantry-functions).
	Namespace string
	// Timeout bounds the orderly removal (default 2 minutes).
	Timeout time.Duration
	// Force removes what the orderly removal left once Timeout passes:
	// it strips finalizers from every object left in the namespace,
	// deletes pods without a grace period, and finalizes the namespace.
	// Use it when nodes are gone or a controller that owns a finalizer is
	// not coming back; it says everything it removed.
	Force bool
	// Out receives progress and what was removed.
	Out io.Writer
}

// ErrStuck is returned when the orderly removal did not finish in time.
var ErrStuck = errors.New("kube: uninstall did not finish")

// Uninstall removes every function workload the agent created: the
// Deployments (and with them their ReplicaSets, pods and Secrets, which
// they own), then the functions namespace if Gantry created it. It does
// the finalizer work of a running agent itself, so it also works after the
// agent is gone, and waits until everything is really gone.
func Uninstall(ctx context.Context, cfg *rest.Config, o UninstallOptions) error {
	if o.Namespace == "" {
		o.Namespace = DefaultNamespace
	}
	if o.Timeout <= 0 {
		o.Timeout = 2 * time.Minute
	}
	if o.Out == nil {
		o.Out = io.Discard
	}
	client, err := kubernetes.NewForConfig(cfg)
	if err != nil {
		return fmt.Errorf("kube: %w", err)
	}
	u := &uninstaller{client: client, cfg: cfg, o: o}
	wctx, cancel := context.WithTimeout(ctx, o.Timeout)
	defer cancel()
	err = u.orderly(wctx)
	if err == nil || !o.Force || ctx.Err() != nil {
		return err
	}
	fmt.Fprintf(o.Out, "%v\nforcing removal of what is left:\n", err)
	return u.force(ctx)
}

type uninstaller struct {
	client kubernetes.Interface
	cfg    *rest.Config
	o      UninstallOptions
}

// orderly deletes the workloads and the namespace and waits for both.
func (u *uninstaller) orderly(ctx context.Context) error {
	ns, err := u.client.CoreV1().Namespaces().Get(ctx, u.o.Namespace, metav1.GetOptions{})
	if apierrors.IsNotFound(err) {
		fmt.Fprintf(u.o.Out, "namespace %s does not exist: nothing to remove\n", u.o.Namespace)
		return nil
	}
	if err != nil {
		return fmt.Errorf("kube: uninstall: %w", err)
	}
	deps := u.client.AppsV1().Deployments(u.o.Namespace)
	list, err := deps.List(ctx, metav1.ListOptions{LabelSelector: ManagedByLabel + "=" + ManagedByValue})
	if err != nil {
		return fmt.Errorf("kube: uninstall: %w", err)
	}
	fmt.Fprintf(u.o.Out, "deleting %d function workload(s) in namespace %s\n", len(list.Items), u.o.Namespace)
	foreground := metav1.DeletePropagationForeground
	for _, d := range list.Items {
		if d.DeletionTimestamp != nil {
			continue
		}
		err := deps.Delete(ctx, d.Name, metav1.DeleteOptions{PropagationPolicy: &foreground})
		if err != nil && !apierrors.IsNotFound(err) {
			return fmt.Errorf("kube: uninstall: delete deployment %s: %w", d.Name, err)
		}
	}
	ownNamespace := ns.Labels[ManagedByLabel] == ManagedByValue
	last := ""
	tick := time.NewTicker(250 * time.Millisecond)
	defer tick.Stop()
	for {
		left, err := u.release(ctx)
		if err != nil {
			return err
		}
		if len(left) == 0 {
			break
		}
		if msg := fmt.Sprintf("waiting for %s", strings.Join(left, ", ")); msg != last {
			fmt.Fprintln(u.o.Out, msg)
			last = msg
		}
		select {
		case <-ctx.Done():
			return fmt.Errorf("%w: %s still there after %v; they are stuck on finalizers or on nodes that are gone (run again with --force to remove them anyway)",
				ErrStuck, strings.Join(left, ", "), u.o.Timeout)
		case <-tick.C:
		}
	}
	fmt.Fprintln(u.o.Out, "all function workloads are gone")
	if !ownNamespace {
		fmt.Fprintf(u.o.Out, "namespace %s was not created by Gantry; leaving it\n", u.o.Namespace)
		return nil
	}
	if err := u.client.CoreV1().Namespaces().Delete(ctx, u.o.Namespace, metav1.DeleteOptions{}); err != nil && !apierrors.IsNotFound(err) {
		return fmt.Errorf("kube: uninstall: delete namespace: %w", err)
	}
	fmt.Fprintf(u.o.Out, "deleting namespace %s\n", u.o.Namespace)
	for {
		_, err := u.client.CoreV1().Namespaces().Get(ctx, u.o.Namespace, metav1.GetOptions{})
		if apierrors.IsNotFound(err) {
			fmt.Fprintf(u.o.Out, "namespace %s is gone\n", u.o.Namespace)
			return nil
		}
		select {
		case <-ctx.Done():
			return fmt.Errorf("%w: namespace %s is still terminating after %v (run again with --force to finalize it)", ErrStuck, u.o.Namespace, u.o.Timeout)
		case <-tick.C:
		}
	}
}

// release removes Gantry's finalizer from Deployments whose pods are gone
// (the agent's job, done here in case the agent is not running) and says
// what is left.
func (u *uninstaller) release(ctx context.Context) ([]string, error) {
	sel := metav1.ListOptions{LabelSelector: ManagedByLabel + "=" + ManagedByValue}
	deps, err := u.client.AppsV1().Deployments(u.o.Namespace).List(ctx, sel)
	if err != nil {
		return nil, fmt.Errorf("kube: uninstall: %w", err)
	}
	pods, err := u.client.CoreV1().Pods(u.o.Namespace).List(ctx, sel)
	if err != nil {
		return nil, fmt.Errorf("kube: uninstall: %w", err)
	}
	podsOf := map[string]int{}
	for _, p := range pods.Items {
		podsOf[p.Labels[InstanceLabel]]++
	}
	var left []string
	for _, d := range deps.Items {
		left = append(left, "deployment/"+d.Name)
		if d.DeletionTimestamp == nil || podsOf[d.Labels[InstanceLabel]] > 0 || !hasFinalizer(d.Finalizers) {
			continue
		}
		patch := []byte(fmt.Sprintf(`{"metadata":{"finalizers":%s,"resourceVersion":%q}}`, finalizersWithout(d.Finalizers), d.ResourceVersion))
		_, err := u.client.AppsV1().Deployments(u.o.Namespace).Patch(ctx, d.Name, types.MergePatchType, patch, metav1.PatchOptions{})
		if err != nil && !apierrors.IsNotFound(err) && !apierrors.IsConflict(err) {
			return nil, fmt.Errorf("kube: uninstall: release deployment %s: %w", d.Name, err)
		}
	}
	if n := len(pods.Items); n > 0 {
		left = append(left, fmt.Sprintf("%d pod(s)", n))
	}
	return left, nil
}

// force strips every finalizer in the namespace, deletes pods at once and
// finalizes the namespace, saying what it removed.
func (u *uninstaller) force(ctx context.Context) error {
	resources, err := namespacedResources(u.client.Discovery())
	if err != nil {
		return err
	}
	meta, err := metadata.NewForConfig(u.cfg)
	if err != nil {
		return fmt.Errorf("kube: %w", err)
	}
	for _, gvr := range resources {
		list, err := meta.Resource(gvr).Namespace(u.o.Namespace).List(ctx, metav1.ListOptions{})
		if err != nil {
			continue // not listable (e.g. a subresource-only API): nothing of ours
		}
		for _, item := range list.Items {
			kind := gvr.Resource
			if gvr.Group != "" {
				kind += "." + gvr.Group
			}
			if len(item.Finalizers) > 0 {
				_, err := meta.Resource(gvr).Namespace(u.o.Namespace).Patch(ctx, item.Name, types.MergePatchType,
					[]byte(`{"metadata":{"finalizers":null}}`), metav1.PatchOptions{})
				if err != nil && !apierrors.IsNotFound(err) {
					return fmt.Errorf("kube: uninstall --force: %s/%s: %w", kind, item.Name, err)
				}
				fmt.Fprintf(u.o.Out, "removed finalizers %s from %s/%s\n", strings.Join(item.Finalizers, ","), kind, item.Name)
			}
			if gvr.Group == "" && gvr.Resource == "pods" {
				zero := int64(0)
				err := u.client.CoreV1().Pods(u.o.Namespace).Delete(ctx, item.Name, metav1.DeleteOptions{GracePeriodSeconds: &zero})
				if err != nil && !apierrors.IsNotFound(err) {
					return fmt.Errorf("kube: uninstall --force: pod %s: %w", item.Name, err)
				}
				fmt.Fprintf(u.o.Out, "deleted pod/%s without waiting for its node\n", item.Name)
			}
		}
	}
	ns, err := u.client.CoreV1().Namespaces().Get(ctx, u.o.Namespace, metav1.GetOptions{})
	if apierrors.IsNotFound(err) {
		fmt.Fprintf(u.o.Out, "namespace %s is gone\n", u.o.Namespace)
		return nil
	}
	if err != nil {
		return fmt.Errorf("kube: uninstall --force: %w", err)
	}
	if ns.Labels[ManagedByLabel] != ManagedByValue {
		fmt.Fprintf(u.o.Out, "namespace %s was not created by Gantry; leaving it\n", u.o.Namespace)
		return nil
	}
	if ns.DeletionTimestamp == nil {
		if err := u.client.CoreV1().Namespaces().Delete(ctx, ns.Name, metav1.DeleteOptions{}); err != nil && !apierrors.IsNotFound(err) {
			return fmt.Errorf("kube: uninstall --force: delete namespace: %w", err)
		}
	}
	// With the finalizers gone the namespace controller can finish; only
	// if it does not (it is not running, say) is the namespace finalized
	// by hand, which would orphan anything still in it.
	wctx, cancel := context.WithTimeout(ctx, u.o.Timeout)
	defer cancel()
	tick := time.NewTicker(250 * time.Millisecond)
	defer tick.Stop()
	for {
		ns, err = u.client.CoreV1().Namespaces().Get(ctx, u.o.Namespace, metav1.GetOptions{})
		if apierrors.IsNotFound(err) {
			fmt.Fprintf(u.o.Out, "namespace %s is gone\n", u.o.Namespace)
			return nil
		}
		if err != nil {
			return fmt.Errorf("kube: uninstall --force: %w", err)
		}
		select {
		case <-tick.C:
			continue
		case <-wctx.Done():
		}
		break
	}
	ns.Spec.Finalizers = nil
	if _, err := u.client.CoreV1().Namespaces().Finalize(ctx, ns, metav1.UpdateOptions{}); err != nil && !apierrors.IsNotFound(err) {
		return fmt.Errorf("kube: uninstall --force: finalize namespace: %w", err)
	}
	fmt.Fprintf(u.o.Out, "finalized namespace %s by hand: its namespace controller did not finish within %v\n", ns.Name, u.o.Timeout)
	return nil
}

// namespacedResources lists every namespaced resource that can be listed
// and patched, sorted for stable output.
func namespacedResources(dc discovery.DiscoveryInterface) ([]schema.GroupVersionResource, error) {
	lists, err := dc.ServerPreferredNamespacedResources()
	if err != nil && len(lists) == 0 {
		return nil, fmt.Errorf("kube: uninstall --force: discovery: %w", err)
	}
	var out []schema.GroupVersionResource
	for _, l := range lists {
		gv, err := schema.ParseGroupVersion(l.GroupVersion)
		if err != nil {
			continue
		}
		for _, r := range l.APIResources {
			if strings.Contains(r.Name, "/") || !hasVerbs(r.Verbs, "list", "patch") {
				continue
			}
			out = append(out, gv.WithResource(r.Name))
		}
	}
	sort.Slice(out, func(i, j int) bool { return out[i].String() < out[j].String() })
	return out, nil
}

func hasVerbs(have metav1.Verbs, want ...string) bool {
	for _, w := range want {
		found := false
		for _, h := range have {
			found = found || h == w
		}
		if !found {
			return false
		}
	}
	return true
}

func hasFinalizer(fs []string) bool {
	for _, f := range fs {
		if f == Finalizer {
			return true
		}
	}
	return false
}

// finalizersWithout renders the finalizer list minus Gantry's, as JSON.
func finalizersWithout(fs []string) string {
	var keep []string
	for _, f := range fs {
		if f != Finalizer {
			keep = append(keep, fmt.Sprintf("%q", f))
		}
	}
	return "[" + strings.Join(keep, ",") + "]"
}
