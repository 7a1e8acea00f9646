#!/usr/bin/env bash
# Install everything `make dev` and `make test` need on a Debian machine with
# Go and Python: Debian packages, the Python venv (locked), kubectl and helm,
# the control-plane and node binaries (built once, cached by version) and the
# node tier's images (built by buildah, cached by content).
#   hack/bootstrap.sh            everything
#   hack/bootstrap.sh python     only the venv (enough for `make lint` and unit tests)
set -euo pipefail
repo=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
cd "$repo"
what=${1:-all}

step() { printf '==> %s\n' "$*" >&2; }
die() { printf 'prewarm: %s\n' "$*" >&2; exit 1; }

debian_packages() {
  # The real-node tier (tests/node): containerd, runc and the CNI plugins run the
  # pods, iptables/conntrack serve kube-proxy, buildah + mmdebstrap build the
  # images without a Docker engine, busybox-static is the tiny test image, and
  # docker-registry is the local registry image pulls go to.
  local node=(containerd runc containernetworking-plugins iptables conntrack buildah mmdebstrap
    busybox-static docker-registry)
  local want=(postgresql unzip procps prometheus "${node[@]}") missing=()
  local p
  for p in "${want[@]}"; do
    dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
  done
  ((${#missing[@]} == 0)) && return
  if [[ $(id -u) -ne 0 ]]; then
    die "missing Debian packages: ${missing[*]}. Install them: sudo apt-get install -y ${missing[*]}"
  fi
  step "apt-get install ${missing[*]}"
  apt-get update -qq >/dev/null || die "apt-get update failed"
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null \
    || die "apt-get install ${missing[*]} failed"
}

python_env() {
  local py
  py=$(command -v python3.11 || command -v python3) || die "python3 (>= 3.11) is not on PATH"
  "$py" -c 'import sys; sys.exit(sys.version_info < (3, 11))' || die "$py is older than Python 3.11"
  if [[ ! -x .tools/bin/uv ]]; then
    step "installing uv into .tools/"
    "$py" -m venv .tools && .tools/bin/pip install -q "uv==0.13.8" || die "could not install uv from PyPI"
  fi
  step "uv sync --locked (venv in .venv)"
  UV_PYTHON="$py" .tools/bin/uv sync --locked -q || die "uv sync failed (is uv.lock in step with pyproject.toml? run: .tools/bin/uv lock)"
}

go_toolchain() {
  command -v go >/dev/null || die "'go' is not on PATH: install Go >= 1.26 to build the local control plane"
}

case "$what" in
  python) python_env ;;
  all)
    debian_packages
    python_env
    go_toolchain
    PYTHON=.tools/bin/python bash hack/install-kubectl-helm.sh
    bash hack/build-control-plane.sh all
    bash hack/build-node-images.sh all >/dev/null
    ;;
  *) die "usage: hack/bootstrap.sh [all|python]" ;;
esac
