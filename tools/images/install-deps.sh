#!/usr/bin/env bash
# Install what tools/images needs from Debian, once: podman (builds and runs images,
# with runc: crun fails on hybrid cgroups) and mmdebstrap (Debian root filesystems).
# Idempotent: a second run finds the commands and does nothing. No service is
# started: podman is used daemonless, and Debian's policy-rc.d (exit 101) is kept or
# put in place for the install only. Machine configuration is left alone: the build
# passes podman a containers.conf and storage.conf of its own (tools/images/podman.py).
set -euo pipefail

log() { printf '[install-deps] %s\n' "$*" >&2; }

missing=()
command -v podman >/dev/null || missing+=(podman)
command -v mmdebstrap >/dev/null || missing+=(mmdebstrap)
command -v runc >/dev/null || missing+=(runc)
if [[ ${#missing[@]} -eq 0 ]]; then
  exit 0
fi

if [[ $(id -u) -ne 0 ]]; then
  log "need root to install: ${missing[*]}"
  exit 1
fi

policy=/usr/sbin/policy-rc.d
made_policy=0
if [[ ! -e $policy ]]; then
  printf '#!/bin/sh\nexit 101\n' >"$policy"
  chmod 755 "$policy"
  made_policy=1
fi
cleanup() { if [[ $made_policy -eq 1 ]]; then rm -f "$policy"; fi; }
trap cleanup EXIT

apt_opts=(-o DPkg::Lock::Timeout=600 -q)
# An index older than a day may name versions the mirror no longer has.
if [[ -z $(find /var/lib/apt/lists -maxdepth 1 -name '*_Packages' -mmin -1440 -print -quit) ]]; then
  log "apt-get update"
  apt-get "${apt_opts[@]}" update >&2
fi
log "installing ${missing[*]} (no recommends)"
DEBIAN_FRONTEND=noninteractive apt-get "${apt_opts[@]}" install -y --no-install-recommends \
  "${missing[@]}" >&2
