#!/usr/bin/env bash
# Install n8n from the npm registry, cached per version, for the tests that run the
# service from n8n workflows (tests/n8n/).
#
# Cache: ${ZYRA_TOOLS_CACHE:-$HOME/.cache/zyra-orchestrator}/n8n/<version>/
#   node_modules/.bin/n8n   the executable
#   .installed              stamp written last: "<version> <overrides>"
#   install.log             npm's output of the last cold install
#
# Why the pin and the override:
# - Node here is 20.x: n8n 2.x wants Node >= 24 and n8n 1.x after 1.123.50 pulls
#   isolated-vm 6.2.0, which does not compile on Node 20.
# - n8n-nodes-base depends on xlsx through a tarball URL off the npm registry, which
#   cannot be reached; an npm "overrides" entry maps it to the registry's xlsx.
#
# Cold: ~6 minutes on 2 busy CPUs (about 1,900 packages, 1.7 GB; sqlite3 compiles its
# native module). Warm: instant (stamp check only, n8n is not started).
# Output: on success the last stdout line is "N8N_BIN=<absolute path>"; progress goes to
# stderr and npm's output to install.log.
#
# Env overrides: N8N_VERSION, N8N_XLSX_OVERRIDE, ZYRA_TOOLS_CACHE, BUILD_NICE (default
# 10), FORCE_REBUILD=1.
set -euo pipefail

N8N_VERSION="${N8N_VERSION:-1.123.50}"
XLSX_OVERRIDE="${N8N_XLSX_OVERRIDE:-npm:xlsx@0.18.5}"
CACHE_ROOT="${ZYRA_TOOLS_CACHE:-$HOME/.cache/zyra-orchestrator}"
DIR="$CACHE_ROOT/n8n/$N8N_VERSION"
BIN="$DIR/node_modules/.bin/n8n"
STAMP="$DIR/.installed"
LOG="$DIR/install.log"
WANT_STAMP="$N8N_VERSION xlsx=$XLSX_OVERRIDE"

log() { printf '[install-n8n] %s\n' "$*" >&2; }

check() {
  [[ -x "$BIN" && -f "$STAMP" && "$(<"$STAMP")" == "$WANT_STAMP" ]]
}

if [[ "${FORCE_REBUILD:-0}" != 1 ]] && check; then
  printf 'N8N_BIN=%s\n' "$BIN"
  exit 0
fi

command -v npm >/dev/null || { log "npm not found in PATH"; exit 1; }
command -v node >/dev/null || { log "node not found in PATH"; exit 1; }
mkdir -p "$CACHE_ROOT/n8n"

# Serialise concurrent invocations (e.g. pytest-xdist workers) on one cache root.
exec 9>"$CACHE_ROOT/.install-n8n.lock"
if command -v flock >/dev/null; then
  log "acquiring lock $CACHE_ROOT/.install-n8n.lock"
  flock 9
fi
if [[ "${FORCE_REBUILD:-0}" != 1 ]] && check; then  # installed while this one waited
  printf 'N8N_BIN=%s\n' "$BIN"
  exit 0
fi

# Install into a staging folder beside the target and swap it in when complete, so an
# interrupted install never leaves a half-filled cache that looks usable.
stage="$CACHE_ROOT/n8n/.stage.$N8N_VERSION.$$"
trap 'rm -rf "$stage"' EXIT
rm -rf "$stage"
mkdir -p "$stage"
cat >"$stage/package.json" <<EOF
{
  "name": "zyra-n8n-$N8N_VERSION",
  "private": true,
  "dependencies": { "n8n": "$N8N_VERSION" },
  "overrides": { "xlsx": "$XLSX_OVERRIDE" }
}
EOF

# sqlite3 and cpu-features compile native modules with node-gyp, which fetches Node's
# headers from nodejs.org (not reachable here) unless told where they are: Debian's
# nodejs ships them under /usr/include/node. A nodedir the user set is kept.
if [[ -z "${npm_config_nodedir:-}" && -f /usr/include/node/common.gypi ]]; then
  export npm_config_nodedir=/usr
fi

start=$(date +%s)
log "installing n8n@$N8N_VERSION (xlsx -> $XLSX_OVERRIDE, nice ${BUILD_NICE:-10}); log: $LOG"
if ! (cd "$stage" && nice -n "${BUILD_NICE:-10}" npm install --omit=dev --no-audit \
  --no-fund --no-update-notifier --loglevel=http >"$stage/install.log" 2>&1); then
  mkdir -p "$DIR"
  cp "$stage/install.log" "$LOG"
  log "npm install failed; last lines of $LOG:"
  tail -n 20 "$LOG" >&2
  exit 1
fi

[[ -x "$stage/node_modules/.bin/n8n" ]] || { log "npm did not install the n8n executable"; exit 1; }
got="$(node -p "require('$stage/node_modules/n8n/package.json').version")"
[[ "$got" == "$N8N_VERSION" ]] || { log "installed n8n $got, wanted $N8N_VERSION"; exit 1; }
printf '%s\n' "$WANT_STAMP" >"$stage/.installed"

# .bin/n8n is a relative symlink, so the folder can be renamed into place.
rm -rf "$DIR"
mv "$stage" "$DIR"
trap - EXIT
log "installed in $(($(date +%s) - start))s -> $BIN ($(du -sh "$DIR" | cut -f1))"
printf 'N8N_BIN=%s\n' "$BIN"
