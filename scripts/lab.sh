#!/usr/bin/env bash
# The kernel lab: run a command as root in a QEMU VM on Debian's own kernel (every module), with the
# host's root read-only under a throw-away overlay. See scripts/lab/main.ts or `scripts/lab.sh --help`.
set -euo pipefail
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
main="$root/dist/scripts/lab/main.js"
if [ ! -f "$main" ]; then
  echo "lab.sh: building $main (npx tsc)" >&2
  (cd "$root" && npx tsc -p tsconfig.json) >&2
fi
exec node "$main" "$@"
