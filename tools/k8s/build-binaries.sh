#!/usr/bin/env bash
# Build Kubernetes binaries (control plane: kube-apiserver, kube-controller-manager,
# kube-scheduler, kubectl; node: kubelet, kube-proxy) and etcd from the Go module
# proxy, caching them per version. All are static (CGO_ENABLED=0), as upstream's
# release builds are: the kubelet's cgo-only parts (cadvisor's libpfm/libipmctl)
# sit behind build tags that are off by default.
#
# Cache layout (root = ${ZYRA_TOOLS_CACHE:-$HOME/.cache/zyra-orchestrator}):
#   <root>/k8s/<k8s-version>/bin/{kube-apiserver,kube-controller-manager,kube-scheduler,
#                                 kubectl,kubelet,kube-proxy}
#   <root>/etcd/<etcd-version>/bin/etcd
#   <root>/{k8s,etcd}/<version>/src/   throwaway Go module used for the build
#
# Warm run (all binaries present and answering --version) does nothing and exits fast.
# Output: on success the last lines on stdout are "<name>=<absolute path>", one per
# binary; all progress/log output goes to stderr.
#
# Env overrides: K8S_VERSION, ETCD_VERSION, ZYRA_TOOLS_CACHE, BUILD_NICE (default 19),
# BUILD_P (go build -p, default 1), FORCE_REBUILD=1.
set -euo pipefail

K8S_VERSION="${K8S_VERSION:-v1.33.13}"
ETCD_VERSION="${ETCD_VERSION:-v3.5.35}"
CACHE_ROOT="${ZYRA_TOOLS_CACHE:-$HOME/.cache/zyra-orchestrator}"
K8S_DIR="$CACHE_ROOT/k8s/$K8S_VERSION"
ETCD_DIR="$CACHE_ROOT/etcd/$ETCD_VERSION"
K8S_BIN="$K8S_DIR/bin"
ETCD_BIN="$ETCD_DIR/bin"
K8S_CMDS=(kube-apiserver kube-controller-manager kube-scheduler kubectl kubelet kube-proxy)

log() { printf '[build-binaries] %s\n' "$*" >&2; }

print_paths() {
  local c
  for c in "${K8S_CMDS[@]}"; do printf '%s=%s\n' "$c" "$K8S_BIN/$c"; done
  printf 'etcd=%s\n' "$ETCD_BIN/etcd"
}

# --version probe for one binary; succeeds only if it reports the pinned version.
check_one() {
  local name=$1 path out
  case "$name" in
    etcd) path="$ETCD_BIN/etcd" ;;
    *) path="$K8S_BIN/$name" ;;
  esac
  [[ -x "$path" ]] || return 1
  case "$name" in
    kubectl) out=$("$path" version --client 2>/dev/null) || return 1
             [[ "$out" == *"Client Version: $K8S_VERSION"* ]] ;;
    etcd)    out=$("$path" --version 2>/dev/null) || return 1
             [[ "$out" == *"etcd Version: ${ETCD_VERSION#v}"* ]] ;;
    *)       out=$("$path" --version 2>/dev/null) || return 1
             [[ "$out" == "Kubernetes $K8S_VERSION" ]] ;;
  esac
}

# Probe all binaries in parallel (keeps the warm path well under 1 s).
# Prints names of missing/broken binaries on stdout.
missing_binaries() {
  local -a names=("${K8S_CMDS[@]}" etcd) pids=()
  local i
  for i in "${!names[@]}"; do check_one "${names[$i]}" & pids[i]=$!; done
  for i in "${!names[@]}"; do wait "${pids[$i]}" || echo "${names[$i]}"; done
}

if [[ "${FORCE_REBUILD:-0}" != 1 ]] && [[ -z "$(missing_binaries)" ]]; then
  print_paths
  exit 0
fi

# ---------------------------------------------------------------- cold path
command -v go >/dev/null || { log "go not found in PATH"; exit 1; }
mkdir -p "$K8S_BIN" "$ETCD_BIN"

# Serialise concurrent invocations (e.g. pytest-xdist workers) on one cache root.
exec 9>"$CACHE_ROOT/.build-binaries.lock"
if command -v flock >/dev/null; then
  log "acquiring lock $CACHE_ROOT/.build-binaries.lock"
  flock 9
fi

# Another process may have finished the build while we waited for the lock.
mapfile -t TODO < <(if [[ "${FORCE_REBUILD:-0}" == 1 ]]; then
  printf '%s\n' "${K8S_CMDS[@]}" etcd; else missing_binaries; fi)
if [[ ${#TODO[@]} -eq 0 ]]; then print_paths; exit 0; fi
log "to build: ${TODO[*]}"

# Gentle on CPU: single package at a time, lowest priority.
export GOFLAGS="${GOFLAGS:-} -p=${BUILD_P:-1} -mod=mod -trimpath -buildvcs=false"
export CGO_ENABLED=0      # upstream builds these binaries statically too
export GOTOOLCHAIN=local  # never try to download a different toolchain
NICE=(nice -n "${BUILD_NICE:-19}")

needs() { local n; for n in "${TODO[@]}"; do [[ "$n" == "$1" ]] && return 0; done; return 1; }

# Path of the cached go.mod of <module@version> (downloads the module into GOMODCACHE).
gomod_path() {
  local f
  f=$(cd / && GOFLAGS='' go mod download -json "$1" 2>/dev/null \
      | sed -n 's/^[[:space:]]*"GoMod": "\(.*\)",$/\1/p') || true
  if [[ ! -f "$f" ]]; then
    log "could not resolve $1 on GOPROXY=$(go env GOPROXY)"; exit 1
  fi
  printf '%s\n' "$f"
}

# go build into a temp file in the target dir, then atomically rename.
build_one() {  # <module dir> <output path> <ldflags> <package>
  local dir=$1 out=$2 ldflags=$3 pkg=$4 start end
  start=$(date +%s)
  log "building $pkg -> $out"
  (cd "$dir" && "${NICE[@]}" go build -ldflags "$ldflags" -o "$out.tmp.$$" "$pkg")
  mv -f "$out.tmp.$$" "$out"
  end=$(date +%s)
  log "built $(basename "$out") in $((end - start))s"
}

# ---------------------------------------------------------------- kubernetes
needs_k8s() { local c; for c in "${K8S_CMDS[@]}"; do needs "$c" && return 0; done; return 1; }
if needs_k8s; then
  # k8s.io/kubernetes' go.mod replaces every staging module with ./staging/src/...,
  # which is not part of the module zip; its require lines pin them at v0.0.0.
  # Derive the staging list from that go.mod and map each to the published
  # v0.<minor>.<patch> tag of the same release.
  kmod_file=$(gomod_path "k8s.io/kubernetes@$K8S_VERSION")
  kmod=$(go mod edit -print "$kmod_file")   # normalised go.mod text
  # "<old> => ./staging/..." in either block or single-line replace form.
  mapfile -t STAGING < <(awk '{for (i = 2; i < NF; i++) if ($i == "=>" && $(i+1) ~ /^\.\/staging\//) print $(i-1)}' <<<"$kmod" | sort -u)
  [[ ${#STAGING[@]} -gt 0 ]] || { log "no staging replaces found in $kmod_file"; exit 1; }
  STAGING_VERSION="v0.${K8S_VERSION#v1.}"   # v1.33.13 -> v0.33.13
  # Keep upstream's default GODEBUG semantics (only the main module's go/godebug count).
  kgo=$(awk '$1 == "go" {print $2}' <<<"$kmod")
  kgodebug=$(awk '$1 == "godebug" && $2 != "(" {print "godebug " $2}
                  $1 == "godebug" && $2 == "(" {inb = 1; next}
                  inb && $1 == ")" {inb = 0}
                  inb {print "godebug " $1}' <<<"$kmod")

  src="$K8S_DIR/src"
  mkdir -p "$src"
  {
    echo "module zyra.local/k8s-binaries"
    echo
    echo "go $kgo"
    if [[ -n "$kgodebug" ]]; then echo "$kgodebug"; fi
    echo
    echo "require k8s.io/kubernetes $K8S_VERSION"
    echo
    echo "replace ("
    for m in "${STAGING[@]}"; do echo "	$m => $m $STAGING_VERSION"; done
    echo ")"
  } > "$src/go.mod.new"
  # Only reset go.mod/go.sum if the desired content changed (keeps resolved go.sum).
  if ! cmp -s "$src/go.mod.new" "$src/go.mod.base" 2>/dev/null; then
    cp "$src/go.mod.new" "$src/go.mod"
    mv "$src/go.mod.new" "$src/go.mod.base"
    rm -f "$src/go.sum"
  else
    rm -f "$src/go.mod.new"
  fi
  log "k8s $K8S_VERSION: ${#STAGING[@]} staging modules replaced at $STAGING_VERSION"

  major=${K8S_VERSION#v}; major=${major%%.*}
  minor=${K8S_VERSION#v*.}; minor=${minor%%.*}
  kldflags="-s -w"
  for p in k8s.io/component-base/version k8s.io/client-go/pkg/version; do
    kldflags+=" -X $p.gitVersion=$K8S_VERSION -X $p.gitMajor=$major -X $p.gitMinor=$minor"
    kldflags+=" -X $p.gitTreeState=clean -X $p.buildDate=$(date -u +%Y-%m-%dT%H:%M:%SZ)"
  done
  for c in "${K8S_CMDS[@]}"; do
    if needs "$c"; then build_one "$src" "$K8S_BIN/$c" "$kldflags" "k8s.io/kubernetes/cmd/$c"; fi
  done
fi

# ---------------------------------------------------------------- etcd
if needs etcd; then
  # In etcd v3.5 the etcd main package is the root of go.etcd.io/etcd/server/v3.
  # Its go.mod has relative replaces (../api etc.), so `go install pkg@ver` is
  # refused; a throwaway main module avoids that (dependency replaces are ignored
  # and its require lines already pin the sibling modules at the same version).
  emod_file=$(gomod_path "go.etcd.io/etcd/server/v3@$ETCD_VERSION")
  ego=$(go mod edit -print "$emod_file" | awk '$1 == "go" {print $2}')
  src="$ETCD_DIR/src"
  mkdir -p "$src"
  printf 'module zyra.local/etcd-binaries\n\ngo %s\n\nrequire go.etcd.io/etcd/server/v3 %s\n' \
    "$ego" "$ETCD_VERSION" > "$src/go.mod.new"
  if ! cmp -s "$src/go.mod.new" "$src/go.mod.base" 2>/dev/null; then
    cp "$src/go.mod.new" "$src/go.mod"; mv "$src/go.mod.new" "$src/go.mod.base"; rm -f "$src/go.sum"
  else
    rm -f "$src/go.mod.new"
  fi
  build_one "$src" "$ETCD_BIN/etcd" "-s -w" "go.etcd.io/etcd/server/v3"
fi

# ---------------------------------------------------------------- verify
bad=$(missing_binaries)
if [[ -n "$bad" ]]; then
  log "built but version check failed for: ${bad//$'\n'/ }"
  exit 1
fi
print_paths
