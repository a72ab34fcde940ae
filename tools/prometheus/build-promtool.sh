#!/usr/bin/env bash
# Build Prometheus' promtool from the Go module proxy, cached per version, for the tests that
# run `promtool check rules` / `promtool test rules` on the chart's PrometheusRule
# (tests/deploy/test_monitoring.py).
#
# Cache: ${ZYRA_TOOLS_CACHE:-$HOME/.cache/zyra-orchestrator}/promtool/<version>-nosd/promtool
#
# Prometheus publishes its Go module as v0.3MM.P for release 3.MM.P (the v3.x tags are not
# valid module versions for a module without a /v3 suffix). Its go.mod has no replace or
# exclude directives, so a plain `go install pkg@version` works. Same -X values as upstream's
# .promu.yml (derived from the version, there is no git checkout); the `builtinassets` tag is
# only for the server's web UI and not needed here, and `remove_all_sd` leaves out every
# service discovery plugin (the Azure, AWS, GCE... SDKs: most of the compile time), which
# rule checks and rule tests never use. Cold: several minutes on 2 CPUs (the
# module graph is large); warm: instant. Output: on success the last stdout line is
# "PROMTOOL=<absolute path>"; progress goes to stderr.
#
# Env overrides: PROMTOOL_VERSION, ZYRA_TOOLS_CACHE, BUILD_NICE (default 19), BUILD_P
# (go build -p, default 1), FORCE_REBUILD=1.
set -euo pipefail

PROMTOOL_VERSION="${PROMTOOL_VERSION:-v0.316.0}"
MODULE=github.com/prometheus/prometheus
CACHE_ROOT="${ZYRA_TOOLS_CACHE:-$HOME/.cache/zyra-orchestrator}"
DIR="$CACHE_ROOT/promtool/$PROMTOOL_VERSION-nosd"
BIN="$DIR/promtool"

log() { printf '[build-promtool] %s\n' "$*" >&2; }

# v0.316.0 -> 3.16.0: what `promtool --version` reports.
if [[ "$PROMTOOL_VERSION" =~ ^v0\.([1-9][0-9]*)([0-9]{2})\.([0-9]+)$ ]]; then
  RELEASE="${BASH_REMATCH[1]}.$((10#${BASH_REMATCH[2]})).${BASH_REMATCH[3]}"
else
  log "PROMTOOL_VERSION=$PROMTOOL_VERSION is not a Prometheus module version (v0.3MM.P)"
  exit 1
fi

# `promtool --version` first line: "promtool, version <release> (branch: …, revision: …)".
check() {
  local out
  [[ -x "$BIN" ]] || return 1
  out=$("$BIN" --version 2>&1) || return 1
  [[ "$out" == "promtool, version $RELEASE "* ]]
}

if [[ "${FORCE_REBUILD:-0}" != 1 ]] && check; then
  printf 'PROMTOOL=%s\n' "$BIN"
  exit 0
fi

command -v go >/dev/null || { log "go not found in PATH"; exit 1; }
mkdir -p "$DIR"
# Serialise concurrent invocations (e.g. pytest-xdist workers) on one cache root.
exec 9>"$CACHE_ROOT/.build-promtool.lock"
command -v flock >/dev/null && flock 9
if [[ "${FORCE_REBUILD:-0}" != 1 ]] && check; then  # built while this one waited
  printf 'PROMTOOL=%s\n' "$BIN"
  exit 0
fi

export CGO_ENABLED=0      # upstream release builds are static too
export GOTOOLCHAIN=local  # never download a different toolchain
p=github.com/prometheus/common/version
ldflags="-s -w -X $p.Version=$RELEASE -X $p.Revision=$PROMTOOL_VERSION -X $p.Branch=module"
ldflags+=" -X $p.BuildUser=zyra-orchestrator -X $p.BuildDate=unknown"

# go install into a private GOBIN next to the target, then rename atomically.
tmpbin="$DIR/.gobin.$$"
trap 'rm -rf "$tmpbin"' EXIT
start=$(date +%s)
log "building $MODULE/cmd/promtool@$PROMTOOL_VERSION (nice ${BUILD_NICE:-19}, -p ${BUILD_P:-1})"
(cd / && GOBIN="$tmpbin" nice -n "${BUILD_NICE:-19}" go install -p "${BUILD_P:-1}" -trimpath \
  -buildvcs=false -tags netgo,remove_all_sd -ldflags "$ldflags" "$MODULE/cmd/promtool@$PROMTOOL_VERSION")
mv -f "$tmpbin/promtool" "$BIN"
log "built in $(($(date +%s) - start))s -> $BIN ($(du -h "$BIN" | cut -f1))"
check || { log "built, but \`promtool --version\` is not $RELEASE: $("$BIN" --version 2>&1 | head -1)"; exit 1; }
printf 'PROMTOOL=%s\n' "$BIN"
