#!/usr/bin/env bash
# The main job on a fresh Debian 12 machine, as root: install what is needed, build, build the
# embedded guest kit (once; cached), and run the demo sandbox.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/install-deps.sh
exec node dist/runtime-core/cli/main.js demo "$@"
