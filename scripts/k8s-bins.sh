#!/bin/sh
# k8s-bins.sh — build a real Kubernetes control plane (kube-apiserver and
# etcd) from the Go module proxy, once, into the cache; print its directory.
#
#   scripts/k8s-bins.sh            # build if missing, print the directory
#
# No image registry is reachable, so the end-to-end Kubernetes tests
# (ctl/k8s, DEEPWALL_K8S_BINS) run the API server built from source:
# k8s.io/kubernetes at KUBE_VERSION with its ./staging replace directives
# pointed at the published k8s.io/* modules (v0.X.Y, same minor), and etcd's
# server module built inside a scratch module that requires it (the server
# module's own replace directives point at sibling directories that the
# module zip does not carry). Debian's etcd 3.4 does not do: the API server's
# watches receive no events from it. Cold: 8-12 minutes on 2 cores, 2.5 GB
# peak; warm (cache hit): nothing to do.
set -eu

KUBE_VERSION=${KUBE_VERSION:-1.37.2}
ETCD_VERSION=${ETCD_VERSION:-3.7.0}
cache=${XDG_CACHE_HOME:-$HOME/.cache}/deepwall/k8s/v$KUBE_VERSION-etcd$ETCD_VERSION
export PATH="/usr/local/go/bin:$PATH"
export GOWORK=off GOFLAGS=-mod=mod GOTOOLCHAIN=local

if [ -x "$cache/kube-apiserver" ] && [ -x "$cache/etcd" ]; then
	echo "$cache"
	exit 0
fi
mkdir -p "$cache"
tmp=$(mktemp -d)
trap 'chmod -R u+w "$tmp" 2>/dev/null; rm -rf "$tmp"' EXIT

if [ ! -x "$cache/etcd" ]; then
	echo "k8s-bins: building etcd v$ETCD_VERSION" >&2
	mkdir "$tmp/etcd"
	(
		cd "$tmp/etcd"
		go mod init deepwall.local/etcdbuild >/dev/null 2>&1
		go get "go.etcd.io/etcd/server/v3@v$ETCD_VERSION" >&2
		go build -trimpath -o "$cache/etcd.tmp" go.etcd.io/etcd/server/v3
	)
	mv "$cache/etcd.tmp" "$cache/etcd"
fi

if [ ! -x "$cache/kube-apiserver" ]; then
	echo "k8s-bins: building kube-apiserver v$KUBE_VERSION" >&2
	src=$(go mod download -json "k8s.io/kubernetes@v$KUBE_VERSION" | sed -n 's/^[[:space:]]*"Dir": "\(.*\)",$/\1/p')
	[ -d "$src" ] || { echo "k8s-bins: k8s.io/kubernetes@v$KUBE_VERSION: no source directory from go mod download" >&2; exit 1; }
	cp -r "$src" "$tmp/kubernetes"
	chmod -R u+w "$tmp/kubernetes"
	cd "$tmp/kubernetes"
	rm -rf vendor go.work go.work.sum
	staging="v0.${KUBE_VERSION#1.}"
	# Every "k8s.io/x => ./staging/src/k8s.io/x" becomes "k8s.io/x => k8s.io/x v0.X.Y".
	# (The module zip has no staging directory.)
	for m in $(sed -n 's|^[[:space:]]*\(k8s\.io/[^[:space:]]*\)[[:space:]]*=>[[:space:]]*\./staging/.*|\1|p' go.mod | sort -u); do
		go mod edit -replace "$m=$m@$staging"
	done
	ldflags="-s -w -X k8s.io/component-base/version.gitVersion=v$KUBE_VERSION -X k8s.io/component-base/version.gitMajor=1 -X k8s.io/component-base/version.gitMinor=$(echo "$KUBE_VERSION" | cut -d. -f2)"
	go build -trimpath -ldflags "$ldflags" -o "$cache/kube-apiserver.tmp" ./cmd/kube-apiserver
	mv "$cache/kube-apiserver.tmp" "$cache/kube-apiserver"
fi
echo "$cache"
