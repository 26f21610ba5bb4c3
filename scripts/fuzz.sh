#!/usr/bin/env bash
# Fuzzes the frame decoder, the envelope decoders and every message decoder with libFuzzer and
# AddressSanitizer (Fuzz/Harness/DecoderHarness.swift says what is checked).
#
# Usage: scripts/fuzz.sh [SECONDS]   (default 60; CI runs it briefly on every push)
#
# The corpus grows in .build-fuzz/corpus (seeded from Fuzz/seeds/); a crash is saved under
# .build-fuzz/crashes/ and the script exits non-zero. Replay a saved input with a normal build:
#   swift build --product otpfuzz && .build/debug/otpfuzz .build-fuzz/crashes/crash-...
set -euo pipefail
seconds=${1:-60}
root=$(cd "$(dirname "$0")/.." && pwd)
scratch="$root/.build-fuzz"
log=$(mktemp); trap 'rm -f "$log"' EXIT

echo "== building otpfuzz with -sanitize=fuzzer,address"
if ! swift build --package-path "$root" --product otpfuzz --scratch-path "$scratch" \
    -Xswiftc -sanitize=fuzzer,address -Xswiftc -DFUZZING \
    -Xcc -fsanitize=fuzzer-no-link,address >"$log" 2>&1; then
  # ld.gold warns about every ASan assembly symbol; show the rest.
  grep -v "Cannot export local symbol" "$log" >&2
  exit 1
fi

mkdir -p "$scratch/corpus" "$scratch/crashes"
cp -n "$root"/Fuzz/seeds/* "$scratch/corpus/"
echo "== fuzzing for ${seconds}s (corpus $(ls "$scratch/corpus" | wc -l) inputs)"
# -max_len above the harness's 4 KiB frame maximum so that oversize frames are reached too.
status=0
SWIFT_BACKTRACE=enable=no "$scratch/debug/otpfuzz" -max_total_time="$seconds" -max_len=8192 -timeout=10 -rss_limit_mb=2048 \
  -print_final_stats=1 -artifact_prefix="$scratch/crashes/" "$scratch/corpus" >"$log" 2>&1 || status=$?
grep -E "^Done|stat::(number_of_executed_units|average_exec_per_sec|new_units_added)" "$log" || true
if [ "$status" -ne 0 ]; then
  grep -A30 -E "ERROR|invariant broken|Fatal error" "$log" | head -60 >&2
  echo "fuzzing found a failure (exit $status); the input is saved in $scratch/crashes/" >&2
  exit "$status"
fi
echo "fuzzing: no crash, no invariant broken"
