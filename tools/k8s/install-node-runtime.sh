#!/usr/bin/env bash
# Install the container runtime a real test node needs, from Debian's packages:
# containerd, runc, the CNI plugins (bridge, host-local, portmap, loopback) and
# iptables (kube-proxy's backend). Nothing else.
#
# Idempotent: when every tool is present it does nothing (no apt-get update).
# No service starts and containerd's systemd unit stays disabled: the tests run
# their own containerd with their own config, root and state dirs.
#
# Output: the last stdout line is "node-runtime=ok"; apt's output goes to stderr.
set -euo pipefail

log() { printf '[install-node-runtime] %s\n' "$*" >&2; }

missing=()
command -v containerd >/dev/null || missing+=(containerd)
command -v runc >/dev/null || missing+=(runc)
[[ -x /usr/lib/cni/bridge && -x /usr/lib/cni/host-local && -x /usr/lib/cni/portmap &&
  -x /usr/lib/cni/loopback ]] || missing+=(containernetworking-plugins)
command -v iptables >/dev/null || [[ -x /usr/sbin/iptables ]] || missing+=(iptables)

if [[ ${#missing[@]} -gt 0 ]]; then
  [[ $EUID -eq 0 ]] || { log "root needed to install: ${missing[*]}"; exit 1; }
  log "installing: ${missing[*]}"
  # policy-rc.d answering 101 stops invoke-rc.d from starting any service the
  # packages bring (containerd's postinst would start it otherwise).
  if [[ ! -e /usr/sbin/policy-rc.d ]]; then
    printf '#!/bin/sh\nexit 101\n' >/usr/sbin/policy-rc.d
    chmod +x /usr/sbin/policy-rc.d
    trap 'rm -f /usr/sbin/policy-rc.d' EXIT
  fi
  apt-get update -q >&2
  DEBIAN_FRONTEND=noninteractive apt-get install -y -q --no-install-recommends \
    "${missing[@]}" >&2
  # postinst enables the unit for the next boot; the tests never want the
  # machine's own containerd, so leave it disabled.
  if command -v systemctl >/dev/null && [[ -d /run/systemd/system ]]; then
    systemctl disable containerd.service >/dev/null 2>&1 || true
  elif [[ -L /etc/systemd/system/multi-user.target.wants/containerd.service ]]; then
    rm -f /etc/systemd/system/multi-user.target.wants/containerd.service
  fi
fi

for tool in containerd runc; do
  command -v "$tool" >/dev/null || { log "$tool missing after install"; exit 1; }
done
echo "node-runtime=ok"
