#!/usr/bin/env bash
# Fails if the tests left anything behind: namespaces or links with the test prefixes, qemu or
# virtiofsd processes started from this checkout's test dirs, attached loop devices of ours,
# mounts under our run/test dirs, kernel lab run directories.
set -u
bad=0
ns=$(ip netns list 2>/dev/null | awk '{print $1}' | grep -E '^(krt-|kr-)' || true)
[ -n "$ns" ] && { echo "residue: network namespaces: $ns" >&2; bad=1; }
links=$(ip -o link show 2>/dev/null | awk -F': ' '{print $2}' | cut -d@ -f1 | grep -E '(_kata|^krt|^kr-)' || true)
[ -n "$links" ] && { echo "residue: links in the root namespace: $links" >&2; bad=1; }
procs=$(ps -eo pid=,args= | grep -E 'qemu-system|virtiofsd|supervisor/main.js|containerd --config /tmp/krt|nbdkit|qemu-nbd' | grep -E 'krt-|kr-|kata-resources|supervisor/main.js' | grep -v grep || true)
[ -n "$procs" ] && { echo "residue: processes: $procs" >&2; bad=1; }
loops=$(losetup -a 2>/dev/null | grep -E 'krt-|kr-|kata-resources' || true)
[ -n "$loops" ] && { echo "residue: loop devices: $loops" >&2; bad=1; }
labs=$(ls -d "${TMPDIR:-/tmp}"/kr-lab-* 2>/dev/null || true)
[ -n "$labs" ] && { echo "residue: kernel lab run directories: $labs" >&2; bad=1; }
mnts=$(awk '$2 ~ /(krt-|kr-|kata-resources)/ {print $2}' /proc/mounts || true)
[ -n "$mnts" ] && { echo "residue: mounts: $mnts" >&2; bad=1; }
[ "$bad" -eq 0 ] && echo "residue check: nothing left behind" >&2
exit $bad
