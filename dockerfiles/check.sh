#!/usr/bin/env bash
# Build dockerfiles/FoldDockerfile and dockerfiles/CPUDockerfile without a Docker daemon or a registry, and run
# this repository's checks inside both images. It passes or fails as a whole and removes what it built.
#
#   sudo apt-get install -y buildah debootstrap      # Debian's packages; run as root
#   dockerfiles/check.sh
#
# The bases are stand-ins made here from Debian bookworm's packages (debootstrap): Python 3.11 and pip, as in
# python:3.11-slim, and for FoldDockerfile also torch and torchvision preinstalled, as in NVIDIA's container. So
# the check proves the Dockerfiles' own steps, not NVIDIA's image (dockerfiles/README.md). The builds use this
# machine's pip configuration and local package folders where it has them (mounted read-only), and its CA bundle.
set -euo pipefail
repo=$(cd "$(dirname "$0")/.." && pwd)
for tool in buildah debootstrap; do
  command -v "$tool" >/dev/null || { echo "error: $tool is missing: apt-get install -y buildah debootstrap" >&2; exit 2; }
done
[ "$(id -u)" = 0 ] || { echo "error: debootstrap and buildah's chroot isolation need root: run it as root" >&2; exit 2; }

name=foldcheck-$$
work=$(mktemp -d /var/tmp/foldcheck.XXXXXX)
buildah=(buildah --storage-driver vfs)
containers=()
cleanup() {
  for c in "${containers[@]}"; do "${buildah[@]}" rm "$c" >/dev/null 2>&1 || true; done
  for image in base torchbase fold cpu; do "${buildah[@]}" rmi -f "localhost/$name-$image" >/dev/null 2>&1 || true; done
  rm -rf "$work"
}
trap cleanup EXIT

mounts=(-v /etc/ssl/certs/ca-certificates.crt:/etc/ssl/certs/ca-certificates.crt:ro)
for path in /etc/xdg/pip /etc/pip.conf /opt/pypi /opt/pypi-more /opt/wheels; do
  [ -e "$path" ] && mounts+=(-v "$path:$path:ro")
done

step() {
  local what=$1; shift
  local start=$SECONDS
  echo "== $what"
  "$@"
  echo "   done in $((SECONDS - start)) s"
}

container() {  # a working container of image $1; its id is kept for the clean-up
  local c
  c=$("${buildah[@]}" from "$1")
  containers+=("$c")
  echo "$c"
}

make_base() {
  debootstrap --variant=minbase --include=python3,python3-venv,python3-pip,ca-certificates bookworm \
    "$work/rootfs" >"$work/debootstrap.log" 2>&1 || { tail -20 "$work/debootstrap.log"; return 1; }
  rm -f "$work"/rootfs/usr/lib/python3*/EXTERNALLY-MANAGED  # pip installs system-wide, as in the images it mimics
  local c
  c=$(container scratch)
  "${buildah[@]}" copy "$c" "$work/rootfs" / >/dev/null
  "${buildah[@]}" config --env PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin --cmd /bin/bash "$c"
  "${buildah[@]}" commit -q "$c" "localhost/$name-base" >/dev/null
  rm -rf "$work/rootfs"
}

make_torch_base() {
  local c torch
  c=$(container "localhost/$name-base")
  torch=$(grep -E '^(torch|torchvision)==' "$repo/requirements.txt" | tr '\n' ' ')
  # shellcheck disable=SC2086
  "${buildah[@]}" run --isolation chroot "${mounts[@]}" "$c" -- python3 -m pip install -q --no-cache-dir $torch
  "${buildah[@]}" commit -q "$c" "localhost/$name-torchbase" >/dev/null
}

build() {  # build DOCKERFILE as IMAGE on BASE, with extra build arguments
  local dockerfile=$1 image=$2 base=$3; shift 3
  "${buildah[@]}" bud --isolation chroot -q "${mounts[@]}" --build-arg "BASE=localhost/$name-$base" "$@" \
    -f "$repo/dockerfiles/$dockerfile" -t "localhost/$name-$image" "$repo" >/dev/null
}

checks() {  # run the checks in IMAGE, the checkout mounted as README's docker run line mounts it (a clean copy)
  local image=$1 c copy="$work/checkout-$1"
  mkdir -p "$copy"
  git -C "$repo" ls-files -z --cached --others --exclude-standard | (cd "$repo" && xargs -0 cp --parents -t "$copy")
  c=$(container "localhost/$name-$image")
  "${buildah[@]}" run --isolation chroot "${mounts[@]}" -v "$copy:/workspace/FoldedCNNs" "$c" -- bash -c '
    set -eo pipefail
    echo "   $(python3 --version), torch $(python3 -c "import torch; print(torch.__version__)")"
    python3 -m pytest -q -p no:cacheprovider -m "not slow" | grep -E "^(FAILED|ERROR)| passed| failed"
    python3 train.py /tmp/runs --demo --epochs 1 | tail -4
    ./flop_count.sh | python3 -c "import json, sys; print(\"   flop_count.sh:\", len(json.load(sys.stdin)), \"models\")"'
}

total=$SECONDS
step "stand-in base: Debian bookworm's python3 and pip (debootstrap)" make_base
step "stand-in for NVIDIA's container: the base with requirements.txt's torch and torchvision" make_torch_base
step "build dockerfiles/FoldDockerfile on it" build FoldDockerfile fold torchbase
step "build dockerfiles/CPUDockerfile on the base (torch from this machine's pip sources)" \
  build CPUDockerfile cpu base --build-arg TORCH_INDEX=
step "checks in the FoldDockerfile image: quick tests, the demo (1 epoch), ./flop_count.sh" checks fold
step "checks in the CPUDockerfile image: quick tests, the demo (1 epoch), ./flop_count.sh" checks cpu
echo "== all passed in $((SECONDS - total)) s"
