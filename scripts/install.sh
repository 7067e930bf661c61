#!/usr/bin/env bash
# Installs what vxswarm and its tests need on Debian 12, as root: kernel tools from
# Debian's packages, npm dependencies (binaries only from inside npm packages), a build,
# and the `vxswarm` command on PATH.
set -euo pipefail
cd "$(dirname "$0")/.."

if [ "$(id -u)" -ne 0 ]; then
  echo "install.sh: run as root (namespaces, netlink and VXLAN need it)" >&2
  exit 1
fi

# runc runs containers, busybox-static makes the demo and test images, gcc builds the shim,
# docker-registry serves images on loopback to the pull tests, tmux drives `docker exec -it`.
# etcd-server is the managers' store (each manager's daemon runs its own etcd; curl drives its
# gateway in the lab tests). chromium is the browser the topology page's test drives (through
# playwright-core, which downloads nothing). wireguard-go carries encrypted overlays (this kernel has
# no WireGuard module); tcpdump is the tests' look at the wire.
pkgs=(iproute2 iputils-ping traceroute iperf3 nftables libnftables1 python3 util-linux procps tar
  runc busybox-static gcc libc6-dev attr tmux docker-registry etcd-server curl chromium wireguard-go tcpdump)
missing=()
for p in "${pkgs[@]}"; do dpkg -s "$p" >/dev/null 2>&1 || missing+=("$p"); done
if [ "${#missing[@]}" -gt 0 ]; then
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -qq
  apt-get install -y -qq --no-install-recommends "${missing[@]}"
fi

# Debian's own etcd service is never ours to run: the daemon starts its own member.
if command -v systemctl >/dev/null 2>&1; then systemctl disable --now etcd.service >/dev/null 2>&1 || true; fi

# Native addons build from source with the machine's compiler: nothing downloads a prebuilt binary.
export npm_config_build_from_source=true
npm ci --no-audit --no-fund
npm run build
ln -sf "$(pwd)/bin/vxswarm" /usr/local/bin/vxswarm
echo "vxswarm installed: $(command -v vxswarm)"
