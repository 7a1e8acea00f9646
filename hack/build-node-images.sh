#!/usr/bin/env bash
# The images of the real-node tier (tests/node), built without a Docker engine
# and cached by content:
#   base     Debian bookworm + python3 + python3-venv + ca-certificates, a root
#            file system made by mmdebstrap and imported into buildah's storage
#            (key: the mmdebstrap command line);
#   prewarm  the project's Dockerfile, built by buildah (vfs storage, chroot
#            isolation) with --build-arg PYTHON_IMAGE=<base>
#            (key: the base's key, the Dockerfile and every file of the build
#            context that .dockerignore lets in);
#   busybox  a tiny image holding Debian's static busybox: the workspace
#            containers of the tests and the pod sandbox ("pause") image
#            (key: the busybox binary and hack/node-images/busybox.Dockerfile);
#   postgres a stand-in for docker.io/library/postgres (the chart's bundled
#            database): Debian's PostgreSQL 15 on an mmdebstrap root file
#            system, hack/node-images/postgres.Dockerfile (key: its recipe).
# Each image ends as an OCI archive $PREWARM_CACHE/images/<name>-<key>.tar whose
# reference is localhost/prewarm-node-<name>:<key>; a second run with the same
# content returns at once. Prints one line per image: NAME REF ARCHIVE.
#
# Building the prewarm image needs PyPI (the Dockerfile installs uv and the
# locked requirements). A machine whose TLS goes through a local CA gets that
# CA bundle bind-mounted into the build (never into the image).
set -euo pipefail
repo=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
cache=${PREWARM_CACHE:-$HOME/.cache/prewarm}
images="$cache/images"
store="$cache/buildah"
mkdir -p "$images" "$store" "$cache/build"
log="$cache/build/node-images.log"

step() { printf '==> %s\n' "$*" >&2; }
fail() {
  printf 'prewarm: building the node images failed at step: %s\n' "$1" >&2
  printf 'prewarm: the last lines of %s:\n' "$log" >&2
  tail -n 30 "$log" >&2 || true
  exit 1
}
for tool in buildah mmdebstrap sha256sum flock; do
  command -v "$tool" >/dev/null || { echo "prewarm: '$tool' is missing: run make bootstrap (apt-get install -y buildah mmdebstrap)" >&2; exit 1; }
done

export STORAGE_DRIVER=vfs
bh() { buildah --root "$store/root" --runroot "$store/run" --storage-driver vfs "$@"; }

# One build at a time per cache (two worktrees may share it).
exec 9>"$images/.lock"
flock 9

SUITE=bookworm
MIRROR=http://deb.debian.org/debian
BASE_PACKAGES=python3,python3-venv,ca-certificates
base_key=$(printf 'mmdebstrap --variant=essential --include=%s %s %s v1' "$BASE_PACKAGES" "$SUITE" "$MIRROR" | sha256sum | cut -c1-16)
base_ref="localhost/prewarm-node-base:$base_key"

# rootfs_image REF PACKAGES: a Debian root file system made by mmdebstrap,
# imported into buildah's storage as REF (once).
rootfs_image() {
  local ref=$1 packages=$2
  if bh inspect --type image "$ref" >/dev/null 2>&1; then return; fi
  step "base image $ref: mmdebstrap $SUITE with $packages (about a minute; log: $log)"
  local tmp c
  tmp=$(mktemp -d)
  mmdebstrap --variant=essential --include="$packages" --format=tar "$SUITE" "$tmp/rootfs.tar" "$MIRROR" >>"$log" 2>&1 \
    || { rm -rf "$tmp"; fail "mmdebstrap $SUITE"; }
  c=$(bh from scratch) || fail "buildah from scratch"
  { bh add "$c" "$tmp/rootfs.tar" / \
      && bh config --env PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin --cmd /bin/sh "$c" \
      && bh commit -q "$c" "$ref"; } >>"$log" 2>&1 || { bh rm "$c" >/dev/null 2>&1; rm -rf "$tmp"; fail "import of the base root file system"; }
  bh rm "$c" >/dev/null
  rm -rf "$tmp"
}

# The files of the Dockerfile's build context: the allow-list of .dockerignore.
context_files() {
  local entry
  sed -n 's/^!//p' "$repo/.dockerignore" | while read -r entry; do
    entry=${entry%/}
    if [[ -d $repo/$entry ]]; then
      find "$repo/$entry" -type f ! -name '*.pyc' ! -path '*/__pycache__/*'
    elif [[ -f $repo/$entry ]]; then
      echo "$repo/$entry"
    fi
  done | LC_ALL=C sort
}

prewarm_key() {
  {
    echo "$base_key"
    sha256sum "$repo/Dockerfile" | cut -d' ' -f1
    context_files | while read -r f; do printf '%s %s\n' "${f#"$repo"/}" "$(sha256sum "$f" | cut -d' ' -f1)"; done
  } | sha256sum | cut -c1-16
}

build_prewarm() {
  local key ref archive
  key=$(prewarm_key)
  ref="localhost/prewarm-node-prewarm:$key"
  archive="$images/prewarm-$key.tar"
  if [[ ! -s $archive ]]; then
    rootfs_image "$base_ref" "$BASE_PACKAGES"
    step "prewarm image: buildah bud of the Dockerfile on $base_ref (log: $log)"
    local tmp
    tmp=$(mktemp -d)
    # The host's CA bundle (a machine behind a TLS-inspecting proxy trusts its CA
    # there), and pip/uv told to use it: bind mounts of the build's RUN steps only.
    printf '[global]\ncert = /etc/ssl/certs/ca-certificates.crt\n' >"$tmp/pip.conf"
    printf 'native-tls = true\n' >"$tmp/uv.toml"
    local started=$SECONDS
    bh bud --isolation chroot --layers=false --pull=false -q \
      -v /etc/ssl/certs/ca-certificates.crt:/etc/ssl/certs/ca-certificates.crt:ro \
      -v "$tmp/pip.conf:/etc/pip.conf:ro" -v "$tmp/uv.toml:/etc/uv/uv.toml:ro" \
      --build-arg "PYTHON_IMAGE=$base_ref" -t "$ref" -f "$repo/Dockerfile" "$repo" >>"$log" 2>&1 \
      || { rm -rf "$tmp"; fail "buildah bud of the Dockerfile"; }
    rm -rf "$tmp"
    bh push -q "$ref" "oci-archive:$archive.tmp:$ref" >>"$log" 2>&1 || fail "buildah push $ref"
    mv "$archive.tmp" "$archive"
    bh rmi "$ref" >/dev/null 2>&1 || true
    step "prewarm image built in $((SECONDS - started)) s"
    # Every change under operator/ makes a new one: keep the newest three.
    ls -1t "$images"/prewarm-*.tar | tail -n +4 | xargs -r rm -f
  fi
  echo "prewarm $ref $archive"
}

build_busybox() {
  local busybox=/bin/busybox dockerfile="$repo/hack/node-images/busybox.Dockerfile"
  [[ -x $busybox ]] || { echo "prewarm: $busybox is missing: apt-get install -y busybox-static" >&2; exit 1; }
  local key ref archive
  key=$( { sha256sum "$busybox" "$dockerfile" | cut -d' ' -f1; } | sha256sum | cut -c1-16)
  ref="localhost/prewarm-node-busybox:$key"
  archive="$images/busybox-$key.tar"
  if [[ ! -s $archive ]]; then
    step "busybox image (log: $log)"
    local tmp
    tmp=$(mktemp -d)
    install -m 0755 "$busybox" "$tmp/busybox"
    bh bud --isolation chroot --layers=false -q -t "$ref" -f "$dockerfile" "$tmp" >>"$log" 2>&1 \
      || { rm -rf "$tmp"; fail "buildah bud of the busybox image"; }
    rm -rf "$tmp"
    bh push -q "$ref" "oci-archive:$archive.tmp:$ref" >>"$log" 2>&1 || fail "buildah push $ref"
    mv "$archive.tmp" "$archive"
    bh rmi "$ref" >/dev/null 2>&1 || true
  fi
  echo "busybox $ref $archive"
}

PG_PACKAGES=postgresql-15,passwd
build_postgres() {
  local dockerfile="$repo/hack/node-images/postgres.Dockerfile" script="$repo/hack/node-images/postgres-entrypoint.sh"
  local pg_base_key key ref archive
  pg_base_key=$(printf 'mmdebstrap --variant=essential --include=%s %s %s v1' "$PG_PACKAGES" "$SUITE" "$MIRROR" | sha256sum | cut -c1-16)
  key=$( { echo "$pg_base_key"; sha256sum "$dockerfile" "$script" | cut -d' ' -f1; } | sha256sum | cut -c1-16)
  ref="localhost/prewarm-node-postgres:$key"
  archive="$images/postgres-$key.tar"
  if [[ ! -s $archive ]]; then
    local pg_base="localhost/prewarm-node-pgbase:$pg_base_key"
    rootfs_image "$pg_base" "$PG_PACKAGES"
    step "postgres stand-in image (log: $log)"
    local tmp
    tmp=$(mktemp -d)
    install -m 0755 "$script" "$tmp/postgres-entrypoint.sh"
    bh bud --isolation chroot --layers=false --pull=false -q --build-arg "BASE=$pg_base" \
      -t "$ref" -f "$dockerfile" "$tmp" >>"$log" 2>&1 || { rm -rf "$tmp"; fail "buildah bud of the postgres image"; }
    rm -rf "$tmp"
    bh push -q "$ref" "oci-archive:$archive.tmp:$ref" >>"$log" 2>&1 || fail "buildah push $ref"
    mv "$archive.tmp" "$archive"
    bh rmi "$ref" >/dev/null 2>&1 || true
  fi
  echo "postgres $ref $archive"
}

: >"$log"
case "${1:-all}" in
  all) build_busybox; build_prewarm; build_postgres ;;
  busybox) build_busybox ;;
  prewarm) build_prewarm ;;
  postgres) build_postgres ;;
  *) echo "usage: $0 [all|busybox|prewarm|postgres]" >&2; exit 2 ;;
esac
