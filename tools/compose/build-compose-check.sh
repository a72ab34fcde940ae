#!/usr/bin/env bash
# Build compose-check (main.go here: Docker Compose's own loader, compose-go) from the Go
# module proxy, cached by the hash of its sources, for tests that check docker-compose.yml
# where no Docker engine runs.
#
# Cache: ${ZYRA_TOOLS_CACHE:-$HOME/.cache/zyra-orchestrator}/compose-check/<hash>/compose-check
# Cold: about 25 s (a dozen small modules); warm: instant. Output: on success the last stdout
# line is "compose-check=<absolute path>"; progress goes to stderr.
set -euo pipefail

cd "$(dirname "$(readlink -f "${BASH_SOURCE[0]}")")"
CACHE_ROOT="${ZYRA_TOOLS_CACHE:-$HOME/.cache/zyra-orchestrator}"
KEY="$(cat go.mod go.sum main.go | sha256sum | cut -c1-16)"
DIR="$CACHE_ROOT/compose-check/$KEY"
BIN="$DIR/compose-check"

log() { printf '[build-compose-check] %s\n' "$*" >&2; }

if [[ -x "$BIN" ]]; then
  printf 'compose-check=%s\n' "$BIN"
  exit 0
fi

command -v go >/dev/null || { log "go not found in PATH"; exit 1; }
mkdir -p "$DIR"
exec 9>"$CACHE_ROOT/.build-compose-check.lock"
command -v flock >/dev/null && flock 9
if [[ -x "$BIN" ]]; then  # built by another process while this one waited
  printf 'compose-check=%s\n' "$BIN"
  exit 0
fi

export GOFLAGS="-mod=readonly -trimpath -buildvcs=false" CGO_ENABLED=0 GOTOOLCHAIN=local
start=$(date +%s)
log "building compose-check (compose-go $(sed -n 's#^require github.com/compose-spec/compose-go/v2 ##p' go.mod))"
go build -ldflags "-s -w" -o "$BIN.tmp.$$" .
mv -f "$BIN.tmp.$$" "$BIN"
log "built in $(($(date +%s) - start))s -> $BIN"
printf 'compose-check=%s\n' "$BIN"
