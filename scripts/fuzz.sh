#!/usr/bin/env bash
# Fuzzes otpd with libFuzzer and AddressSanitizer, two targets sharing the time given:
# - otpfuzz: the frame decoder, the envelope decoders and every message decoder
#   (Fuzz/Harness/DecoderHarness.swift says what is checked);
# - otpfuzz-connection: whole connections (several frames, reads cut anywhere, half-close, the
#   frame timeout) fed to the connection handler (Fuzz/ConnectionHarness/ConnectionHarness.swift).
#
# Usage: scripts/fuzz.sh [SECONDS] [both|decoders|connection]
#   (default 60 s, both: half the seconds each; CI runs it briefly on every push)
#
# The corpora grow in .build-fuzz/corpus (decoders, seeded from Fuzz/seeds/) and
# .build-fuzz/corpus-connection (seeded from Fuzz/connection-seeds/); a crash is saved under
# .build-fuzz/crashes/ and the script exits non-zero. Replay a saved input with a normal build:
#   swift build --product otpfuzz && .build/debug/otpfuzz .build-fuzz/crashes/crash-...
#   swift build --product otpfuzz-connection && .build/debug/otpfuzz-connection .build-fuzz/crashes/connection-crash-...
set -euo pipefail
seconds=${1:-60}
targets=${2:-both}
root=$(cd "$(dirname "$0")/.." && pwd)
scratch="$root/.build-fuzz"
log=$(mktemp); trap 'rm -f "$log"' EXIT

case "$targets" in
  both) decoder_seconds=$(((seconds + 1) / 2)); connection_seconds=$((seconds - decoder_seconds)) ;;
  decoders) decoder_seconds=$seconds; connection_seconds=0 ;;
  connection) decoder_seconds=0; connection_seconds=$seconds ;;
  *) echo "usage: scripts/fuzz.sh [SECONDS] [both|decoders|connection]" >&2; exit 2 ;;
esac

build() {
  echo "== building $1 with -sanitize=fuzzer,address"
  if ! swift build --package-path "$root" --product "$1" --scratch-path "$scratch" \
      -Xswiftc -sanitize=fuzzer,address -Xswiftc -DFUZZING \
      -Xcc -fsanitize=fuzzer-no-link,address >"$log" 2>&1; then
    # ld.gold warns about every ASan assembly symbol; show the rest.
    grep -v "Cannot export local symbol" "$log" >&2
    exit 1
  fi
}

# fuzz PRODUCT SEEDS CORPUS SECONDS MAX_LEN CRASH_PREFIX
fuzz() {
  local product=$1 seeds=$2 corpus=$3 time=$4 max_len=$5 prefix=$6
  mkdir -p "$corpus" "$scratch/crashes"
  cp -n "$seeds"/* "$corpus/"
  echo "== fuzzing $product for ${time}s (corpus $(ls "$corpus" | wc -l) inputs)"
  local status=0
  SWIFT_BACKTRACE=enable=no "$scratch/debug/$product" -max_total_time="$time" -max_len="$max_len" -timeout=10 \
    -rss_limit_mb=2048 -print_final_stats=1 -artifact_prefix="$scratch/crashes/$prefix" "$corpus" >"$log" 2>&1 ||
    status=$?
  # The last status line: executions, coverage (cov: edges, ft: features), corpus.
  grep -E "^#[0-9]+" "$log" | tail -1 || true
  grep -E "^Done|stat::(number_of_executed_units|average_exec_per_sec|new_units_added)" "$log" || true
  if [ "$status" -ne 0 ]; then
    grep -A30 -E "ERROR|invariant broken|Fatal error" "$log" | head -60 >&2
    echo "fuzzing $product found a failure (exit $status); the input is saved in $scratch/crashes/" >&2
    exit "$status"
  fi
}

if [ "$decoder_seconds" -gt 0 ]; then build otpfuzz; fi
if [ "$connection_seconds" -gt 0 ]; then build otpfuzz-connection; fi
# -max_len above the decoder harness's 4 KiB frame maximum so that oversize frames are reached
# too; and, for connections, past the 64 KiB answer budget's reach (about 16 KiB of empty frames).
if [ "$decoder_seconds" -gt 0 ]; then
  fuzz otpfuzz "$root/Fuzz/seeds" "$scratch/corpus" "$decoder_seconds" 8192 ""
fi
if [ "$connection_seconds" -gt 0 ]; then
  fuzz otpfuzz-connection "$root/Fuzz/connection-seeds" "$scratch/corpus-connection" "$connection_seconds" 16384 \
    connection-
fi
echo "fuzzing: no crash, no invariant broken"
