#!/usr/bin/env bash
# Build the local control plane from Go modules into a cache keyed by version:
#   $PREWARM_CACHE/bin/kube-<ver>/{kube-apiserver,kube-controller-manager,kube-scheduler}
#   $PREWARM_CACHE/bin/etcd-<ver>/etcd
#   $PREWARM_CACHE/bin/kwok-<ver>/{kwok,kwokctl}
#   $PREWARM_CACHE/bin/kube-node-<ver>/{kubelet,kube-proxy}   (the real node tier; `node`)
# A component whose directory already holds its binaries is not rebuilt, so a
# second run returns in well under a second.
set -euo pipefail
here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
# shellcheck source=versions.env
source "${PREWARM_VERSIONS_FILE:-$here/versions.env}"
cache=${PREWARM_CACHE:-$HOME/.cache/prewarm}
mkdir -p "$cache/bin" "$cache/build"

step() { printf '==> %s\n' "$*" >&2; }
fail() {
  printf '\nprewarm: building the control plane failed at step: %s\n' "$1" >&2
  printf 'prewarm: the last lines of its log (%s):\n' "$2" >&2
  tail -n 30 "$2" >&2 || true
  exit 1
}

command -v go >/dev/null || { echo "prewarm: 'go' is not on PATH; install Go >= 1.26 (needed to build the control plane)" >&2; exit 1; }

# k8s.io/kubernetes requires its staging modules at v0.0.0 and replaces them
# with ./staging/...; the published tag v0.X.Y of each matches v1.X.Y.
# write_kube_wrapper DIR_OF_K8S_MODULE GO_MOD
write_kube_wrapper() {
  local dir=$1 staging_tag="v0.${KUBE_VERSION#v1.}"
  {
    echo "module prewarm.dev/controlplane/kube"
    echo
    echo "go 1.24.0"
    echo
    echo "require k8s.io/kubernetes $KUBE_VERSION"
    echo
    grep -E '^\s*k8s\.io/[a-z0-9-]+ => \./staging/' "$dir/go.mod" | awk -v t="$staging_tag" '{print "replace " $1 " => " $1 " " t}'
  } >"$2"
}

kube_ldflags() {
  local minor=${KUBE_VERSION#v1.}; minor=${minor%%.*}
  local ld="-s -w" p
  for p in k8s.io/component-base/version k8s.io/client-go/pkg/version; do
    ld+=" -X $p.gitVersion=$KUBE_VERSION -X $p.gitMajor=1 -X $p.gitMinor=$minor -X $p.gitTreeState=clean -X $p.buildDate=1970-01-01T00:00:00Z"
  done
  printf '%s' "$ld"
}

build_kube() {
  local out="$cache/bin/kube-$KUBE_VERSION"
  if [[ -x $out/kube-apiserver && -x $out/kube-controller-manager && -x $out/kube-scheduler ]]; then return; fi
  local work="$cache/build/kube-$KUBE_VERSION" log="$cache/build/kube-$KUBE_VERSION.log"
  mkdir -p "$work" && : >"$log"
  step "kube $KUBE_VERSION: downloading k8s.io/kubernetes (log: $log)"
  local dir
  dir=$(cd "$work" && go mod download -json "k8s.io/kubernetes@$KUBE_VERSION" 2>>"$log" | sed -n 's/.*"Dir": "\(.*\)".*/\1/p') \
    || fail "go mod download k8s.io/kubernetes@$KUBE_VERSION" "$log"
  [[ -n $dir ]] || fail "go mod download k8s.io/kubernetes@$KUBE_VERSION" "$log"
  write_kube_wrapper "$dir" "$work/go.mod"
  step "kube $KUBE_VERSION: resolving modules"
  (cd "$work" && GOFLAGS=-mod=mod go mod download all >>"$log" 2>&1 && GOFLAGS=-mod=mod go list k8s.io/kubernetes/cmd/kube-apiserver >>"$log" 2>&1) \
    || fail "resolving the wrapper module of k8s.io/kubernetes@$KUBE_VERSION" "$log"
  local ld
  ld=$(kube_ldflags)
  step "kube $KUBE_VERSION: go build kube-apiserver kube-controller-manager kube-scheduler (cold: tens of minutes on 2 cores)"
  mkdir -p "$out.tmp"
  (cd "$work" && GOFLAGS=-mod=mod CGO_ENABLED=0 go build -trimpath -ldflags "$ld" -o "$out.tmp/" \
      k8s.io/kubernetes/cmd/kube-apiserver k8s.io/kubernetes/cmd/kube-controller-manager k8s.io/kubernetes/cmd/kube-scheduler >>"$log" 2>&1) \
    || fail "go build of k8s.io/kubernetes@$KUBE_VERSION commands" "$log"
  rm -rf "$out" && mv "$out.tmp" "$out"
}

build_etcd() {
  local out="$cache/bin/etcd-$ETCD_VERSION"
  [[ -x $out/etcd ]] && return
  local work="$cache/build/etcd-$ETCD_VERSION" log="$cache/build/etcd-$ETCD_VERSION.log"
  mkdir -p "$work" && : >"$log"
  # go.etcd.io/etcd/server/v3 replaces its sibling modules with ../ paths,
  # which do not exist in the module cache: pin each to the same tag instead.
  cat >"$work/go.mod" <<GOMOD
module prewarm.dev/controlplane/etcd

go 1.26.0

require go.etcd.io/etcd/server/v3 $ETCD_VERSION

replace go.etcd.io/etcd/api/v3 => go.etcd.io/etcd/api/v3 $ETCD_VERSION
replace go.etcd.io/etcd/client/pkg/v3 => go.etcd.io/etcd/client/pkg/v3 $ETCD_VERSION
replace go.etcd.io/etcd/client/v3 => go.etcd.io/etcd/client/v3 $ETCD_VERSION
replace go.etcd.io/etcd/pkg/v3 => go.etcd.io/etcd/pkg/v3 $ETCD_VERSION
GOMOD
  # etcd's own main is this one call.
  printf 'package main\n\nimport (\n\t"os"\n\n\t"go.etcd.io/etcd/server/v3/etcdmain"\n)\n\nfunc main() { etcdmain.Main(os.Args) }\n' >"$work/main.go"
  step "etcd $ETCD_VERSION: go build (log: $log)"
  mkdir -p "$out.tmp"
  (cd "$work" && GOFLAGS=-mod=mod go mod tidy >>"$log" 2>&1 && CGO_ENABLED=0 go build -trimpath -ldflags "-s -w" -o "$out.tmp/etcd" . >>"$log" 2>&1) \
    || fail "go build of go.etcd.io/etcd/server/v3@$ETCD_VERSION" "$log"
  rm -rf "$out" && mv "$out.tmp" "$out"
}

build_kwok() {
  local out="$cache/bin/kwok-$KWOK_VERSION"
  [[ -x $out/kwok && -x $out/kwokctl ]] && return
  local log="$cache/build/kwok-$KWOK_VERSION.log"
  : >"$log"
  step "kwok $KWOK_VERSION: go install kwok kwokctl (log: $log)"
  mkdir -p "$out.tmp"
  (GOBIN="$out.tmp" CGO_ENABLED=0 go install -trimpath -ldflags "-s -w" \
      "sigs.k8s.io/kwok/cmd/kwok@$KWOK_VERSION" "sigs.k8s.io/kwok/cmd/kwokctl@$KWOK_VERSION" >>"$log" 2>&1) \
    || fail "go install sigs.k8s.io/kwok/cmd/{kwok,kwokctl}@$KWOK_VERSION" "$log"
  rm -rf "$out" && mv "$out.tmp" "$out"
}

# kubelet and kube-proxy for the real node tier (tests/node), from the same
# wrapper module and pinned version as the control plane. Its own work dir, so
# it can build while `build_kube` runs.
build_node() {
  local out="$cache/bin/kube-node-$KUBE_VERSION"
  [[ -x $out/kubelet && -x $out/kube-proxy ]] && return
  local work="$cache/build/kube-node-$KUBE_VERSION" log="$cache/build/kube-node-$KUBE_VERSION.log"
  mkdir -p "$work" && : >"$log"
  step "kubelet+kube-proxy $KUBE_VERSION: downloading k8s.io/kubernetes (log: $log)"
  local dir
  dir=$(cd "$work" && go mod download -json "k8s.io/kubernetes@$KUBE_VERSION" 2>>"$log" | sed -n 's/.*"Dir": "\(.*\)".*/\1/p') \
    || fail "go mod download k8s.io/kubernetes@$KUBE_VERSION" "$log"
  [[ -n $dir ]] || fail "go mod download k8s.io/kubernetes@$KUBE_VERSION" "$log"
  write_kube_wrapper "$dir" "$work/go.mod"
  local ld
  ld=$(kube_ldflags)
  step "kubelet+kube-proxy $KUBE_VERSION: go build (a few minutes cold, ~40 s with a warm Go build cache)"
  mkdir -p "$out.tmp"
  (cd "$work" && GOFLAGS=-mod=mod go mod download all >>"$log" 2>&1 \
      && GOFLAGS=-mod=mod CGO_ENABLED=0 go build -trimpath -ldflags "$ld" -o "$out.tmp/" \
      k8s.io/kubernetes/cmd/kubelet k8s.io/kubernetes/cmd/kube-proxy >>"$log" 2>&1) \
    || fail "go build of kubelet and kube-proxy from k8s.io/kubernetes@$KUBE_VERSION" "$log"
  rm -rf "$out" && mv "$out.tmp" "$out"
}

# kwok v0.8 has no built-in stages. The node lifecycle stages ship in its
# module; the pod lifecycles are ours (hack/kwok/pod-stages.yaml).
install_kwok_node_stages() {
  local out="$cache/bin/kwok-$KWOK_VERSION/stages"
  [[ -f $out/node-initialize.yaml && -f $out/node-heartbeat-with-lease.yaml ]] && return
  local dir
  dir=$(go mod download -json "sigs.k8s.io/kwok@$KWOK_VERSION" | sed -n 's/.*"Dir": "\(.*\)".*/\1/p')
  [[ -n $dir ]] || { echo "prewarm: could not download sigs.k8s.io/kwok@$KWOK_VERSION for its stages" >&2; exit 1; }
  mkdir -p "$out"
  install -m 0644 "$dir/kustomize/stage/node/fast/node-initialize.yaml" \
    "$dir/kustomize/stage/node/heartbeat-with-lease/node-heartbeat-with-lease.yaml" "$out/"
}

case "${1:-all}" in
  kube) build_kube ;;
  etcd) build_etcd ;;
  kwok) build_kwok; install_kwok_node_stages ;;
  node) build_node ;;
  all) build_etcd; build_kwok; install_kwok_node_stages; build_kube; build_node ;;
  *) echo "usage: $0 [all|kube|etcd|kwok|node]" >&2; exit 2 ;;
esac
