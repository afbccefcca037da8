#!/usr/bin/env bash
# Installs everything the project and its test suite use on a fresh Debian 12 machine (as root),
# then the npm packages, then builds. Idempotent: a second run only checks.
set -euo pipefail
cd "$(dirname "$0")/.."

PKGS=(iproute2 qemu-system-x86 qemu-utils busybox-static kmod cpio e2fsprogs xz-utils zstd
      containernetworking-plugins containerd runc nbdkit nbd-client libnbd-bin socat ethtool util-linux procps psmisc
      iputils-ping ca-certificates systemd gcc libc6-dev
      linux-source-6.1 make bc flex bison libelf-dev)
missing=()
for p in "${PKGS[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q 'install ok installed' || missing+=("$p")
done
if [ "${#missing[@]}" -gt 0 ]; then
  echo "installing Debian packages: ${missing[*]}" >&2
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -q >&2
  apt-get install -y -q --no-install-recommends "${missing[@]}" >&2
fi

if [ ! -d node_modules ] || [ package-lock.json -nt node_modules/.package-lock.json ]; then
  npm ci --no-audit --no-fund >&2
fi
npm run -s build >&2
