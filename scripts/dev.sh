#!/bin/sh
# dev.sh — set up a fresh Debian machine for deepwall and run one make target.
# Run it as root from the clone:
#
#   scripts/dev.sh demo    # the self-contained demo (namespaces, traffic, rules)
#   scripts/dev.sh test    # every test, privileged ones included
#
# It installs what the target needs (Debian packages, and Go from the Go
# module proxy when the machine has no Go >= 1.26), then runs `make TARGET`.
# Any make target works: build, bench, bench-quick, generate, check-generate.
set -eu

GO_VERSION=1.26.8
cd "$(dirname "$0")/.."

[ "$(id -u)" -eq 0 ] || { echo "dev.sh: run as root (namespaces, XDP and AF_XDP need it)" >&2; exit 1; }
[ $# -ge 1 ] || { sed -n '2,10p' "$0" | sed 's/^# \{0,1\}//' >&2; exit 2; }

pkgs="make gcc libc6-dev pkg-config libhyperscan-dev iproute2 ethtool iperf3 iptables ipset kmod ca-certificates curl unzip git nginx-light libnginx-mod-http-modsecurity modsecurity-crs nghttp2-server nghttp2-client systemd rsyslog mariadb-server mariadb-client postgresql redis-server redis-tools memcached libmemcached-tools mosquitto mosquitto-clients"
case "$*" in
*generate*) pkgs="$pkgs clang llvm libbpf-dev" ;;
esac
case "$*" in
*bench*) pkgs="$pkgs libndpi-bin" ;;
esac
# The runtime tests (internal/testctr) run real containers: podman with
# runc (crun fails on some kernels), containerd with ctr, the CNI plugins;
# without their recommends (buildah, fuse-overlayfs, dbus-user-session ...),
# as tested. lintian checks the Debian package (deploy/deb).
rtpkgs=""
case "$*" in
*test*) rtpkgs="podman runc containerd containernetworking-plugins lintian" ;;
esac
missing() {
	for p in "$@"; do
		dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || printf ' %s' "$p"
	done
}
updated=""
for set in main rt; do
	if [ $set = main ]; then miss=$(missing $pkgs); opts=""; else miss=$(missing $rtpkgs); opts="--no-install-recommends"; fi
	[ -n "$miss" ] || continue
	echo "dev.sh: installing$miss"
	[ -n "$updated" ] || { apt-get update -qq; updated=1; }
	DEBIAN_FRONTEND=noninteractive apt-get install -y -qq $opts $miss >/dev/null
done

# Go: use the one on PATH or in /usr/local/go when it is new enough, else
# fetch the toolchain module from the Go module proxy (the same archive
# `GOTOOLCHAIN=auto` would download).
export PATH="/usr/local/go/bin:$PATH"
go_ok() {
	command -v go >/dev/null 2>&1 || return 1
	v=$(go env GOVERSION 2>/dev/null | sed 's/^go//')
	[ "$(printf '%s\n1.26\n' "$v" | sort -V | head -1)" = "1.26" ]
}
if ! go_ok; then
	dir=/usr/local/go-$GO_VERSION
	if [ ! -x "$dir/bin/go" ]; then
		echo "dev.sh: installing Go $GO_VERSION from the module proxy"
		proxy=${GOPROXY:-https://proxy.golang.org}
		proxy=${proxy%%,*}
		tmp=$(mktemp -d)
		curl -fsSL -o "$tmp/go.zip" "$proxy/golang.org/toolchain/@v/v0.0.1-go$GO_VERSION.linux-amd64.zip"
		unzip -q "$tmp/go.zip" -d "$tmp"
		mv "$tmp/golang.org/toolchain@v0.0.1-go$GO_VERSION.linux-amd64" "$dir"
		chmod +x "$dir"/bin/* "$dir"/pkg/tool/*/* 2>/dev/null || true
		rm -rf "$tmp"
	fi
	export PATH="$dir/bin:$PATH"
fi

# The runtime tests' container root filesystem: Debian's static busybox
# (unpacked from its package, not installed: it conflicts with busybox)
# with an httpd document root, in a tar that podman imports and ctr runs.
# No image registry is needed. Built once, cached; the name carries its
# version (internal/testctr.RootfsFile).
rootfs=${XDG_CACHE_HOME:-$HOME/.cache}/deepwall/testrootfs-1.tar
case "$*" in
*test*)
	if [ ! -s "$rootfs" ]; then
		echo "dev.sh: building the test container root filesystem $rootfs"
		tmp=$(mktemp -d)
		chmod 755 "$tmp" # apt-get download runs as _apt where it can
		(cd "$tmp" && apt-get download -qq busybox-static 2>/dev/null || { apt-get update -qq && apt-get download -qq busybox-static; })
		dpkg-deb -x "$tmp"/busybox-static_*.deb "$tmp/deb"
		mkdir -p "$tmp/root/bin" "$tmp/root/www" "$tmp/root/etc" "$tmp/root/proc" "$tmp/root/sys" "$tmp/root/dev" "$tmp/root/tmp"
		cp "$tmp/deb/bin/busybox" "$tmp/root/bin/busybox"
		for applet in sh httpd wget nc sleep cat ip ls; do ln -s busybox "$tmp/root/bin/$applet"; done
		echo ok >"$tmp/root/www/index.html"
		mkdir -p "$(dirname "$rootfs")"
		tar --owner=0 --group=0 --numeric-owner -C "$tmp/root" -cf "$rootfs.tmp" .
		mv "$rootfs.tmp" "$rootfs"
		rm -rf "$tmp"
	fi
	;;
esac

# The Kubernetes end-to-end test's control plane (kube-apiserver and etcd
# built from the Go module proxy; 8-12 minutes cold, then cached in the
# home directory).
case "$*" in
*test*) scripts/k8s-bins.sh >/dev/null ;;
esac

exec make "$@"
