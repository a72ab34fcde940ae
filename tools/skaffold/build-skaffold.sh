#!/usr/bin/env bash
# Build the skaffold CLI from the Go module proxy, cached per version, for the tests that
# run `skaffold diagnose` on skaffold.yaml (tests/deploy/test_skaffold.py).
#
# Cache: ${ZYRA_TOOLS_CACHE:-$HOME/.cache/zyra-orchestrator}/skaffold/<version>/skaffold
#
# `go install …/skaffold/v2/cmd/skaffold@v` fails here: outside its own module, its
# go.mod's exclude directives do not apply and the graph reaches a module the proxy
# refuses (vbom.ml/util). So the module's source is downloaded and built as the main
# module, as upstream's Makefile builds it (its vendor/ folder is not in the module zip:
# -mod=mod). Cold: about 4 minutes on 2 CPUs; warm: instant. Output: on success the last
# stdout line is "skaffold=<absolute path>"; progress goes to stderr.
#
# Env overrides: SKAFFOLD_VERSION, ZYRA_TOOLS_CACHE, BUILD_NICE (default 19), BUILD_P
# (go build -p, default 2), FORCE_REBUILD=1.
set -euo pipefail

SKAFFOLD_VERSION="${SKAFFOLD_VERSION:-v2.16.1}"  # as tools/schemas/fetch-schemas.sh
MODULE=github.com/GoogleContainerTools/skaffold/v2
CACHE_ROOT="${ZYRA_TOOLS_CACHE:-$HOME/.cache/zyra-orchestrator}"
DIR="$CACHE_ROOT/skaffold/$SKAFFOLD_VERSION"
BIN="$DIR/skaffold"

log() { printf '[build-skaffold] %s\n' "$*" >&2; }

check() {
  [[ -x "$BIN" ]] && [[ "$("$BIN" version 2>/dev/null)" == "$SKAFFOLD_VERSION" ]]
}

if [[ "${FORCE_REBUILD:-0}" != 1 ]] && check; then
  printf 'skaffold=%s\n' "$BIN"
  exit 0
fi

command -v go >/dev/null || { log "go not found in PATH"; exit 1; }
mkdir -p "$DIR"
exec 9>"$CACHE_ROOT/.build-skaffold.lock"
command -v flock >/dev/null && flock 9
if [[ "${FORCE_REBUILD:-0}" != 1 ]] && check; then  # built while this one waited
  printf 'skaffold=%s\n' "$BIN"
  exit 0
fi

export GOTOOLCHAIN=local CGO_ENABLED=0
work="$(mktemp -d)"
trap 'rm -rf "$work"' EXIT
# The module's source, read-only in the module cache: copied to build it as main module.
(cd "$work" && go mod init download >/dev/null 2>&1)
src="$(cd "$work" && go mod download -json "$MODULE@$SKAFFOLD_VERSION" |
  python3 -c 'import json, sys; print(json.load(sys.stdin)["Dir"])')"
cp -r "$src" "$work/skaffold"
chmod -R u+w "$work/skaffold"
rm -rf "$work/skaffold/vendor"

version_pkg="$MODULE/pkg/skaffold/version"
ldflags="-s -w -X $version_pkg.version=$SKAFFOLD_VERSION"
ldflags+=" -X $version_pkg.buildDate=unknown -X $version_pkg.gitCommit=unknown"
start=$(date +%s)
log "building $MODULE@$SKAFFOLD_VERSION (nice ${BUILD_NICE:-19}, -p ${BUILD_P:-2})"
(cd "$work/skaffold" && nice -n "${BUILD_NICE:-19}" go build -mod=mod -trimpath \
  -buildvcs=false -p "${BUILD_P:-2}" -ldflags "$ldflags" -o "$BIN.tmp.$$" ./cmd/skaffold)
mv -f "$BIN.tmp.$$" "$BIN"
log "built in $(($(date +%s) - start))s -> $BIN ($(du -h "$BIN" | cut -f1))"
check || { log "built, but \`skaffold version\` is not $SKAFFOLD_VERSION"; exit 1; }
printf 'skaffold=%s\n' "$BIN"
