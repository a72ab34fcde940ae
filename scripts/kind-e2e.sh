#!/usr/bin/env bash
# The chart's end-to-end tests (tests/k8s/e2e) on a kind cluster, for contributors with
# Docker and kind (and kubectl, or the suite builds one). Not run by CI and not runnable
# on the project's test machines (no Docker engine, no registry): there,
# `pytest tests/k8s/e2e` runs the same tests on a cluster of its own (docs/deployment.md).
#
#   scripts/kind-e2e.sh [pytest arguments...]
#
# 1. builds the runner image and the API image with Dockerfile.runner and Dockerfile.api
#    (target production; ZYRA_E2E_API_IMAGE=dev for the dev target, which
#    examples/values-dev.yaml is meant for), tagged with the chart's default names;
# 2. pulls the chart's Redis and MinIO images;
# 3. creates the kind cluster $KIND_CLUSTER (default zyra-e2e) unless it exists, and
#    `kind load`s the four images into it (the release never pulls: pullPolicy Never);
# 4. runs `pytest tests/k8s/e2e` with ZYRA_E2E_KUBECONFIG set to that cluster. The
#    release goes into a new namespace, deleted at the end (ZYRA_E2E_NAMESPACE to pick one).
#
# KEEP_CLUSTER=1 keeps a cluster this script created. The chart's default sandbox
# (`sandbox.mode: required`) needs Landlock in the kernel Docker runs on (Linux 5.13+ with
# landlock in its LSM list); the tests fail at `helm install` otherwise.
set -euo pipefail

cd "$(dirname "$(readlink -f "${BASH_SOURCE[0]}")")/.."

KIND_CLUSTER="${KIND_CLUSTER:-zyra-e2e}"
API_TARGET="${ZYRA_E2E_API_IMAGE:-production}"
PYTHON="${PYTHON:-.venv/bin/python}"

say() { printf 'kind-e2e: %s\n' "$*" >&2; }

for tool in docker kind "$PYTHON"; do
  command -v "$tool" >/dev/null || { say "$tool not found"; exit 2; }
done
case "$API_TARGET" in
  dev | production) ;;
  *) say "ZYRA_E2E_API_IMAGE must be dev or production"; exit 2 ;;
esac

# The chart's default image names (tools/images/chart.py reads Chart.yaml and values.yaml).
read -r api runner redis minio < <("$PYTHON" -c '
from tools.images.chart import ChartImages
c = ChartImages.defaults()
print(c.api, c.runner, c.redis, c.minio)')
[[ "$API_TARGET" == dev ]] && api="${api%:*}:dev"

say "building $runner and $api ($API_TARGET)"
docker build -q -f Dockerfile.runner --target runner -t "$runner" . >/dev/null
docker build -q -f Dockerfile.api --target "$API_TARGET" -t "$api" . >/dev/null
for image in "$redis" "$minio"; do
  docker image inspect "$image" >/dev/null 2>&1 || docker pull -q "$image" >/dev/null
done

created=false
if ! kind get clusters | grep -qx "$KIND_CLUSTER"; then
  say "creating kind cluster $KIND_CLUSTER"
  kind create cluster --name "$KIND_CLUSTER" --wait 120s
  created=true
fi
kubeconfig="$(mktemp)"
cleanup() {
  rm -f "$kubeconfig"
  if [[ "$created" == true && "${KEEP_CLUSTER:-0}" != 1 ]]; then
    kind delete cluster --name "$KIND_CLUSTER"
  fi
}
trap cleanup EXIT
kind get kubeconfig --name "$KIND_CLUSTER" >"$kubeconfig"

say "loading the images into $KIND_CLUSTER"
kind load docker-image --name "$KIND_CLUSTER" "$api" "$runner" "$redis" "$minio"

say "pytest tests/k8s/e2e"
ZYRA_E2E_KUBECONFIG="$kubeconfig" ZYRA_E2E_API_IMAGE="$API_TARGET" \
  "$PYTHON" -m pytest tests/k8s/e2e -p no:cacheprovider "$@"
