#!/usr/bin/env bash
# The image and the pod, for real: builds a Debian base offline (cached by tag), builds the
# atkproxy image on it with podman, then runs tests/e2e (the image alone, and the podman
# rendering of deploy/ played with `podman kube play`). Needs root, podman, runc, debootstrap.
set -euo pipefail
cd "$(dirname "$0")/.."
export CONTAINERS_CONF="$PWD/deploy/podman/containers.conf"
python=${PYTHON:-python3}
image=${ATKPROXY_IMAGE:-localhost/atkproxy:e2e}

pip_config() { "$python" -m pip config get "$1" 2>/dev/null || true; }
base=$(deploy/base-image.sh)
# pip in the build reaches the index this machine's pip is configured with, trusting this
# machine's CA bundle, which is mounted for the build and never copied into a layer
ca=${PIP_CERT:-$(pip_config global.cert)}
ca=${ca:-/etc/ssl/certs/ca-certificates.crt}
index=${PIP_INDEX_URL:-$(pip_config global.index-url)}
index=${index:-https://pypi.org/simple}

podman build --quiet --network host --volume "$ca:/etc/ssl/certs/ca-certificates.crt:ro" \
    --build-arg BASE_IMAGE="$base" --build-arg PIP_INDEX_URL="$index" --tag "$image" . >/dev/null
size=$(podman image inspect --format '{{.Size}}' "$image")
echo "image $image on $base: $((size / 1000000)) MB"

ATKPROXY_IMAGE="$image" "$python" -m pytest -q -p no:cacheprovider tests/e2e
