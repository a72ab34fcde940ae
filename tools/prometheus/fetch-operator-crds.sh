#!/usr/bin/env bash
# Fetch the Prometheus Operator's ServiceMonitor and PrometheusRule CRDs from the Go module
# proxy, cached per version, so that tests/deploy/test_monitoring.py can validate the
# chart's resources against their schemas (kubernetes-validate knows no CRDs).
#
# Cache: ${ZYRA_TOOLS_CACHE:-$HOME/.cache/zyra-orchestrator}/prometheus-operator/<version>/
#   monitoring.coreos.com_servicemonitors.yaml, monitoring.coreos.com_prometheusrules.yaml
#
# The CRDs are files of the operator's own Go module (example/prometheus-operator-crd/),
# a ~4 MB zip checked by `go mod download` against the checksum database, downloaded into
# a throwaway GOMODCACHE that is removed afterwards. Warm: instant. Output: on success the
# last stdout line is "CRDS=<absolute folder>"; progress goes to stderr.
#
# Env overrides: PROMETHEUS_OPERATOR_VERSION, ZYRA_TOOLS_CACHE, FORCE_REFETCH=1.
set -euo pipefail

VERSION="${PROMETHEUS_OPERATOR_VERSION:-v0.85.0}"
MODULE=github.com/prometheus-operator/prometheus-operator
FILES=(monitoring.coreos.com_servicemonitors.yaml monitoring.coreos.com_prometheusrules.yaml)
CACHE_ROOT="${ZYRA_TOOLS_CACHE:-$HOME/.cache/zyra-orchestrator}"
DIR="$CACHE_ROOT/prometheus-operator/$VERSION"

log() { printf '[fetch-operator-crds] %s\n' "$*" >&2; }

check() {
  local file
  for file in "${FILES[@]}"; do
    [[ -s "$DIR/$file" ]] || return 1
  done
}

if [[ "${FORCE_REFETCH:-0}" != 1 ]] && check; then
  printf 'CRDS=%s\n' "$DIR"
  exit 0
fi

command -v go >/dev/null || { log "go not found in PATH"; exit 1; }
mkdir -p "$DIR"
exec 9>"$CACHE_ROOT/.fetch-operator-crds.lock"
command -v flock >/dev/null && flock 9
if [[ "${FORCE_REFETCH:-0}" != 1 ]] && check; then  # fetched while this one waited
  printf 'CRDS=%s\n' "$DIR"
  exit 0
fi

export GOTOOLCHAIN=local GOFLAGS=-mod=mod
work="$(mktemp -d)"
# The module cache's files are read-only: make them writable to remove them.
trap 'chmod -R u+w "$work" 2>/dev/null; rm -rf "$work"' EXIT
log "downloading $MODULE@$VERSION"
(cd "$work" && go mod init download >/dev/null 2>&1)
src="$(cd "$work" && GOMODCACHE="$work/modcache" go mod download -json "$MODULE@$VERSION" |
  python3 -c 'import json, sys; print(json.load(sys.stdin)["Dir"])')"
for file in "${FILES[@]}"; do
  cp "$src/example/prometheus-operator-crd/$file" "$DIR/$file.tmp.$$"
  chmod 0644 "$DIR/$file.tmp.$$"
  mv -f "$DIR/$file.tmp.$$" "$DIR/$file"
done
check || { log "CRDs missing in $DIR"; exit 1; }
printf 'CRDS=%s\n' "$DIR"
