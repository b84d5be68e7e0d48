#!/bin/sh
# k8s-image.sh — the agent's OCI image, built without a registry: a
# scratch image holding bin/deepwall and bin/deepwall-cni as Debian built
# them and the shared libraries they load (ldd), made by podman (buildah
# inside) and saved as an OCI archive that `podman load` and `ctr images
# import` accept.
#
#   scripts/k8s-image.sh [TAG]     # default localhost/deepwall:dev
#   # -> bin/deepwall-image.tar; on a node: ctr -n k8s.io images import bin/deepwall-image.tar
set -eu
cd "$(dirname "$0")/.."
tag=${1:-localhost/deepwall:dev}
make build cni >/dev/null
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
mkdir -p "$tmp/root/usr/bin" "$tmp/root/tmp" "$tmp/root/run" "$tmp/root/var/lib/deepwall" "$tmp/root/var/log/deepwall"
cp bin/deepwall bin/deepwall-cni "$tmp/root/usr/bin/"
# The libraries and the dynamic loader, at their paths.
for lib in $(ldd bin/deepwall bin/deepwall-cni | awk '$2 == "=>" && $3 ~ /^\// {print $3} $1 ~ /^\// {print $1}' | sort -u); do
	cp --parents -L "$lib" "$tmp/root/"
done
cat >"$tmp/Containerfile" <<'EOF2'
FROM scratch
COPY root/ /
ENTRYPOINT ["/usr/bin/deepwall"]
EOF2
podman build -q --no-cache -t "$tag" -f "$tmp/Containerfile" "$tmp" >/dev/null
rm -f bin/deepwall-image.tar
podman save -q --format oci-archive -o bin/deepwall-image.tar "$tag"
echo "bin/deepwall-image.tar ($tag, $(du -h bin/deepwall-image.tar | cut -f1))"
