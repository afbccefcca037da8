#!/usr/bin/env bash
# Runs the whole test suite (unit, namespace, QEMU integration). Needs root.
# Prints the closing line "N passed, N failed[, N skipped]" and exits non-zero on any failure.
set -uo pipefail
cd "$(dirname "$0")/.."
bash scripts/install-deps.sh || { echo "0 passed, 1 failed"; exit 1; }
echo "building the guest kit (cached after the first time)" >&2
node dist/runtime-core/cli/main.js guest-kit >&2 || { echo "0 passed, 1 failed"; exit 1; }

# Static checks: lint + format (biome) and unused exports/files/dependencies (knip). Each that fails
# counts as one failed test; the suite still runs.
static_failed=0
echo "static checks: biome (lint, format), knip (unused exports)" >&2
npx biome check . >&2 || { echo "not ok - biome check (lint/format): run 'npm run format' and fix the lint errors" >&2; static_failed=$((static_failed + 1)); }
npx knip >&2 || { echo "not ok - knip: unused exports, files or dependencies listed above" >&2; static_failed=$((static_failed + 1)); }

log=$(mktemp /tmp/kr-test-XXXXXX.log)
npx tap "$@" 2>&1 | tee "$log"
status=${PIPESTATUS[0]}

# Count each test (the subtests of every file), from the TAP stream.
passed=$(grep -E -c '^    ok [0-9]+' "$log" || true)
failed=$(grep -E -c '^    not ok [0-9]+' "$log" || true)
skipped=$(grep -E -c '^    ok [0-9]+ .*# SKIP' "$log" || true)
# A file that failed outside any subtest (crash, syntax error) counts as one failure.
filefail=$(grep -E '^not ok [0-9]+' "$log" | wc -l)
if [ "$failed" -eq 0 ] && [ "$filefail" -gt 0 ]; then failed=$filefail; fi

bash scripts/residue.sh || { failed=$((failed + 1)); status=1; }
failed=$((failed + static_failed))
[ "$static_failed" -gt 0 ] && status=1
rm -f "$log"
echo "$((passed - skipped)) passed, $failed failed, $skipped skipped"
[ "$status" -eq 0 ] && [ "$failed" -eq 0 ]
