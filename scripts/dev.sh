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

pkgs="make gcc libc6-dev pkg-config libhyperscan-dev iproute2 ethtool iperf3 iptables ipset kmod ca-certificates curl unzip git nginx-light"
case "$*" in
*generate*) pkgs="$pkgs clang llvm libbpf-dev" ;;
esac
case "$*" in
*bench*) pkgs="$pkgs libndpi-bin" ;;
esac
missing=""
for p in $pkgs; do
	dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing="$missing $p"
done
if [ -n "$missing" ]; then
	echo "dev.sh: installing$missing"
	apt-get update -qq
	DEBIAN_FRONTEND=noninteractive apt-get install -y -qq $missing >/dev/null
fi

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

exec make "$@"
