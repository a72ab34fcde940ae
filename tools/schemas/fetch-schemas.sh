#!/usr/bin/env bash
# Vendor the JSON schemas the deployment-file tests validate against, so those tests run
# offline: tests/deploy/schemas/*.json plus SOURCES.md (module, version, path, sha256).
#
# The schemas come from Go modules on the Go module proxy (checked against the checksum
# database by `go mod download`), into a throwaway GOMODCACHE that is removed afterwards:
#   compose-spec.json        github.com/compose-spec/compose-go/v2   schema/compose-spec.json
#   skaffold-<api>.json      github.com/GoogleContainerTools/skaffold/v2
#                            docs-v2/content/en/schemas/<api>.json (a ~45 MB module zip)
#   devContainer.base.schema.json  github.com/devcontainers/spec (no go.mod: a pseudo-version)
#                            -- only when DEVCONTAINER_SPEC_VERSION is set: the proxy reachable
#                            here refuses this module (403) and no npm package ships the file.
#
# Usage: tools/schemas/fetch-schemas.sh         fetch and (re)write the vendored files
#        tools/schemas/fetch-schemas.sh --check  only verify the files against SOURCES.md
# Env overrides: COMPOSE_GO_VERSION, SKAFFOLD_VERSION, SKAFFOLD_API, DEVCONTAINER_SPEC_VERSION.
set -euo pipefail

cd "$(dirname "$(readlink -f "${BASH_SOURCE[0]}")")/../.."
OUT=tests/deploy/schemas
SOURCES="$OUT/SOURCES.md"

COMPOSE_GO_VERSION="${COMPOSE_GO_VERSION:-v2.16.2}"
SKAFFOLD_VERSION="${SKAFFOLD_VERSION:-v2.16.1}"
SKAFFOLD_API="${SKAFFOLD_API:-v4beta13}"  # the newest apiVersion skaffold $SKAFFOLD_VERSION reads
DEVCONTAINER_SPEC_VERSION="${DEVCONTAINER_SPEC_VERSION:-}"

log() { printf '[fetch-schemas] %s\n' "$*" >&2; }

if [[ "${1:-}" == --check ]]; then
  # Rows of SOURCES.md's table: | file | module | version | path | sha256 |
  status=0
  while IFS='|' read -r _ file _ _ _ sum _; do
    file="$(echo "$file" | tr -d ' `')"
    sum="$(echo "$sum" | tr -d ' `')"
    [[ "$file" == *.json ]] || continue
    if [[ "$(sha256sum "$OUT/$file" | cut -d' ' -f1)" == "$sum" ]]; then
      log "ok $file"
    else
      log "MISMATCH $file"
      status=1
    fi
  done <"$SOURCES"
  exit "$status"
fi

command -v go >/dev/null || { log "go not found in PATH"; exit 1; }
work="$(mktemp -d)"
cleanup() { chmod -R u+w "$work" 2>/dev/null || true; rm -rf "$work"; }
trap cleanup EXIT
export GOMODCACHE="$work/modcache" GOFLAGS=-mod=mod GOTOOLCHAIN=local
mkdir -p "$OUT" "$work/empty"

rows=()
# fetch <module> <version> <path in module> <vendored name>
fetch() {
  local module="$1" version="$2" path="$3" name="$4" start ms json dir zip sum
  start="${EPOCHREALTIME/./}"
  json="$(cd "$work/empty" && go mod download -json "$module@$version")"
  dir="$(sed -n 's/^[[:space:]]*"Dir": "\(.*\)",$/\1/p' <<<"$json")"
  zip="$(sed -n 's/^[[:space:]]*"Zip": "\(.*\)",$/\1/p' <<<"$json")"
  sum="$(sed -n 's/^[[:space:]]*"Sum": "\(.*\)",$/\1/p' <<<"$json")"
  [[ -f "$dir/$path" ]] || { log "$module@$version has no $path"; exit 1; }
  install -m 0644 "$dir/$path" "$OUT/$name"
  ms=$(((${EPOCHREALTIME/./} - start) / 1000))
  log "$name <- $module@$version/$path ($(du -h "$zip" | cut -f1) module zip, ${ms} ms)"
  rows+=("| \`$name\` | \`$module\` | \`$version\` (\`$sum\`) | \`$path\` | \`$(sha256sum "$OUT/$name" | cut -d' ' -f1)\` |")
}

total_start=$(date +%s)
fetch github.com/compose-spec/compose-go/v2 "$COMPOSE_GO_VERSION" \
  schema/compose-spec.json compose-spec.json
fetch github.com/GoogleContainerTools/skaffold/v2 "$SKAFFOLD_VERSION" \
  "docs-v2/content/en/schemas/$SKAFFOLD_API.json" "skaffold-$SKAFFOLD_API.json"
if [[ -n "$DEVCONTAINER_SPEC_VERSION" ]]; then
  fetch github.com/devcontainers/spec "$DEVCONTAINER_SPEC_VERSION" \
    schemas/devContainer.base.schema.json devContainer.base.schema.json
else
  log "devContainer.base.schema.json: skipped (set DEVCONTAINER_SPEC_VERSION to a pseudo-version)"
fi
log "done in $(($(date +%s) - total_start))s"

{
  echo "# Vendored JSON schemas"
  echo
  echo "Written by \`tools/schemas/fetch-schemas.sh\` (do not edit by hand; re-run it to update,"
  echo "\`--check\` verifies the files). Each comes from a Go module on the Go module proxy,"
  echo "verified by \`go mod download\` against the checksum database (the module's \`h1:\` sum)."
  echo
  echo "| file | module | version | path in the module | sha256 |"
  echo "| --- | --- | --- | --- | --- |"
  printf '%s\n' "${rows[@]}"
  if [[ -z "$DEVCONTAINER_SPEC_VERSION" ]]; then
    echo
    echo "Not vendored: the dev container schema (\`github.com/devcontainers/spec\`,"
    echo "\`schemas/devContainer.base.schema.json\`). That repository has no go.mod; the Go module"
    echo "proxy reachable from this project's machines answers 403 for it (list, latest and commit"
    echo "queries), and the npm package \`@devcontainers/cli\` does not ship it. With"
    echo "\`DEVCONTAINER_SPEC_VERSION=<pseudo-version>\` the script vendors it, and"
    echo "\`tests/deploy/test_devcontainer.py\` then validates against it as well."
  fi
} >"$SOURCES"
log "wrote $SOURCES"
