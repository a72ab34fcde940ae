#!/usr/bin/env bash
# Build the MinIO server binary from the Go module proxy, caching it per version.
# Used by tests that need a real S3 server.
#
# Cache layout (root = ${ZYRA_TOOLS_CACHE:-$HOME/.cache/zyra-orchestrator}):
#   <root>/minio/<version>/bin/minio
#
# github.com/minio/minio publishes no semver tags on the proxy (its RELEASE.* tags
# are not valid module versions), only pseudo-versions. The upstream repository is
# archived ("no longer maintained"); the pin below is its final commit.
# Its go.mod has no replace directives, so plain `go install pkg@version` works
# (no throwaway module needed).
#
# Warm run (binary present and `minio --version` reports the pinned commit) does
# nothing and exits fast. Output: on success the last stdout line is
# "minio=<absolute path>"; all progress/log output goes to stderr.
#
# Env overrides: MINIO_VERSION, ZYRA_TOOLS_CACHE, BUILD_NICE (default 19),
# BUILD_P (go build -p, default 1), FORCE_REBUILD=1.
set -euo pipefail

MINIO_VERSION="${MINIO_VERSION:-v0.0.0-20260212201848-7aac2a2c5b7c}"
CACHE_ROOT="${ZYRA_TOOLS_CACHE:-$HOME/.cache/zyra-orchestrator}"
MINIO_DIR="$CACHE_ROOT/minio/$MINIO_VERSION"
MINIO_BIN="$MINIO_DIR/bin"
MINIO="$MINIO_BIN/minio"

log() { printf '[build-minio] %s\n' "$*" >&2; }

# Pseudo-version v0.0.0-YYYYMMDDhhmmss-<12 hex commit>: derive commit + time.
if [[ "$MINIO_VERSION" =~ ^v[0-9]+\.[0-9]+\.[0-9]+-(.*\.)?([0-9]{14})-([0-9a-f]{12})$ ]]; then
  TS=${BASH_REMATCH[2]}
  COMMIT=${BASH_REMATCH[3]}
else
  log "MINIO_VERSION=$MINIO_VERSION is not a pseudo-version (v0.0.0-<timestamp>-<commit>)"
  exit 1
fi

# `minio --version` first line: "minio version <ReleaseTag> (commit-id=<CommitID>)".
check() {
  local out
  [[ -x "$MINIO" ]] || return 1
  out=$("$MINIO" --version 2>/dev/null) || return 1
  [[ "$out" == *"(commit-id=$COMMIT)"* ]]
}

if [[ "${FORCE_REBUILD:-0}" != 1 ]] && check; then
  printf 'minio=%s\n' "$MINIO"
  exit 0
fi

# ---------------------------------------------------------------- cold path
command -v go >/dev/null || { log "go not found in PATH"; exit 1; }
mkdir -p "$MINIO_BIN"

# Serialise concurrent invocations (e.g. pytest-xdist workers) on one cache root.
exec 9>"$CACHE_ROOT/.build-minio.lock"
if command -v flock >/dev/null; then
  log "acquiring lock $CACHE_ROOT/.build-minio.lock"
  flock 9
fi

# Another process may have finished the build while we waited for the lock.
if [[ "${FORCE_REBUILD:-0}" != 1 ]] && check; then
  printf 'minio=%s\n' "$MINIO"
  exit 0
fi

# Gentle on CPU: single package at a time, lowest priority.
export GOFLAGS="${GOFLAGS:-} -p=${BUILD_P:-1} -trimpath -buildvcs=false"
export CGO_ENABLED=0      # upstream release builds are static (CGO_ENABLED=0) too
export GOTOOLCHAIN=local  # never try to download a different toolchain
NICE=(nice -n "${BUILD_NICE:-19}")

# Same -X values upstream's `make build` (buildscripts/gen-ldflags.go) sets,
# derived from the pseudo-version since there is no git checkout.
ver_time="${TS:0:4}-${TS:4:2}-${TS:6:2}T${TS:8:2}:${TS:10:2}:${TS:12:2}Z"
rel_tag="DEVELOPMENT.${ver_time//:/-}"
p=github.com/minio/minio/cmd
ldflags="-s -w -X $p.Version=$ver_time -X $p.ReleaseTag=$rel_tag"
ldflags+=" -X $p.CommitID=$COMMIT -X $p.ShortCommitID=$COMMIT -X $p.CopyrightYear=${TS:0:4}"

# go install into a private GOBIN next to the target, then atomically rename.
tmpbin="$MINIO_BIN/.gobin.$$"
trap 'rm -rf "$tmpbin"' EXIT
start=$(date +%s)
log "building github.com/minio/minio@$MINIO_VERSION -> $MINIO (nice ${BUILD_NICE:-19}, -p ${BUILD_P:-1})"
(cd / && GOBIN="$tmpbin" "${NICE[@]}" go install -ldflags "$ldflags" "github.com/minio/minio@$MINIO_VERSION")
mv -f "$tmpbin/minio" "$MINIO"
end=$(date +%s)
log "built minio in $((end - start))s ($(du -h "$MINIO" | cut -f1))"

# ---------------------------------------------------------------- verify
if ! check; then
  log "built but version check failed: $("$MINIO" --version 2>&1 | head -1)"
  exit 1
fi
printf 'minio=%s\n' "$MINIO"
