#!/usr/bin/env bash
# Builds the pinned Kubernetes test tools (kube-apiserver, kube-scheduler,
# kube-controller-manager, kubectl, kwok, helm) from the Go module proxy and
# prints the directory that holds them. The binaries are cached under a key
# made of the tool modules' go.mod and go.sum, so a second run is instant and
# a version bump rebuilds. Nothing here touches the main module.
#
#   tools/install.sh            build if needed, print the bin dir
#   GANTRY_TOOLS_CACHE=/dir     cache root (default: ~/.cache/gantry/tools)
set -euo pipefail

here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
export PATH="${PATH}:/usr/local/go/bin"
key="$(cat "$here"/install.sh "$here"/kube/go.mod "$here"/kube/go.sum "$here"/kwok/go.mod "$here"/kwok/go.sum \
	"$here"/helm/go.mod "$here"/helm/go.sum | sha256sum | cut -c1-16)"
root="${GANTRY_TOOLS_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/gantry/tools}"
bin="$root/$key/bin"
want=(kube-apiserver kube-scheduler kube-controller-manager kubectl kwok helm)

complete() {
	for b in "${want[@]}"; do [ -x "$bin/$b" ] || return 1; done
	[ -s "$bin/kwok-stages.yaml" ]
}

if ! complete; then
	mkdir -p "$root"
	# Test packages run in parallel and may all ask at once: one builds,
	# the others wait for it.
	exec 9>"$root/.lock"
	flock 9
	if ! complete; then
		tmp="$root/$key/tmp.$$"
		mkdir -p "$tmp"
		start=$(date +%s)
		echo "tools/install.sh: building Kubernetes test tools into $bin (cold: 10-25 min on 2 cores)" >&2
		# Stamp the version, as Kubernetes' own build does; otherwise the
		# API server reports v0.0.0-master.
		kv="$(awk '$1 == "k8s.io/kubernetes" { print $2 }' "$here/kube/go.mod")"
		minor="$(echo "$kv" | cut -d. -f2)"
		vflags="-X k8s.io/component-base/version.gitVersion=$kv -X k8s.io/component-base/version.gitMajor=1"
		vflags="$vflags -X k8s.io/component-base/version.gitMinor=$minor -X k8s.io/component-base/version.gitTreeState=clean"
		(cd "$here/kube" && go build -trimpath -ldflags "$vflags" -o "$tmp/" \
			k8s.io/kubernetes/cmd/kube-apiserver k8s.io/kubernetes/cmd/kube-scheduler \
			k8s.io/kubernetes/cmd/kube-controller-manager k8s.io/kubernetes/cmd/kubectl)
		(cd "$here/kwok" && go build -trimpath -o "$tmp/" sigs.k8s.io/kwok/cmd/kwok)
		(cd "$here/helm" && go build -trimpath -o "$tmp/" helm.sh/helm/v3/cmd/helm)
		# kwok needs stages to act like a kubelet: nodes become Ready and
		# keep their lease, scheduled pods become Ready with an IP, and
		# deleted pods go away. They come from kwok's own module.
		stages="$(cd "$here/kwok" && go list -m -f '{{.Dir}}' sigs.k8s.io/kwok)/kustomize/stage"
		for f in node/fast/node-initialize.yaml node/heartbeat-with-lease/node-heartbeat-with-lease.yaml \
			pod/fast/pod-ready.yaml pod/fast/pod-complete.yaml pod/fast/pod-delete.yaml; do
			echo "---"
			cat "$stages/$f"
		done >"$tmp/kwok-stages.yaml"
		mkdir -p "$bin"
		mv "$tmp"/* "$bin"/
		rmdir "$tmp"
		echo "tools/install.sh: built in $(( $(date +%s) - start ))s" >&2
	fi
fi
echo "$bin"
