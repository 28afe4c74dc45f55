#!/usr/bin/env bash
# Makes a Debian bookworm base image with python3.11 and python3-venv without any container
# registry: debootstrap from the apt mirror this machine is configured with, imported into
# podman. Cached by tag: a second run only prints the tag. Needs root.
#   usage: deploy/base-image.sh [TAG]     (default localhost/atkproxy-base:bookworm-py311)
set -euo pipefail
tag=${1:-localhost/atkproxy-base:bookworm-py311}
if podman image exists "$tag"; then
    echo "$tag"
    exit 0
fi

# The first Debian archive (not -security) among the apt sources, one-line or deb822 style.
debian_mirror() {
    cat /etc/apt/sources.list /etc/apt/sources.list.d/*.list /etc/apt/sources.list.d/*.sources \
        2>/dev/null | grep -oE '^(deb|URIs:)[[:space:]].*' \
        | grep -oE 'https?://[^[:space:]]+/debian/?([[:space:]]|$)' | head -n1 | tr -d '[:space:]'
}
mirror=${DEBIAN_MIRROR:-$(debian_mirror || true)}
: "${mirror:?no Debian mirror found in the apt sources; set DEBIAN_MIRROR}"

root=$(mktemp -d)
trap 'rm -rf "$root"' EXIT
echo "debootstrap bookworm from $mirror" >&2
debootstrap --variant=minbase --include=python3.11,python3-venv,ca-certificates \
    bookworm "$root" "$mirror" >&2
# no package lists or caches in the image: the image installs nothing with apt
rm -rf "$root"/var/lib/apt/lists/* "$root"/var/cache/apt/* "$root"/var/log/*
ln -sf python3.11 "$root"/usr/bin/python3
tar -C "$root" -c . | podman import --change 'CMD ["/bin/bash"]' - "$tag" >&2
echo "$tag"
