#!/usr/bin/env bash
# Benchmarks otpd's Verify with synchronous=FULL: a wrong code and a right code (fresh
# challenges prepared beforehand, each used once), at 1, 8 and 64 connections, driven by the
# C load client (Benchmarks/baseline). Prints calls/s and p50/p99 per scenario.
#
#   scripts/bench-verify.sh            # SECONDS=3 measured seconds per run, WARMUP=0.5
#
# Every Verify is a write transaction (attempt counters, failure counter, audit event); the
# figures show how far group commit carries durable writes on this machine.
set -euo pipefail
default_seconds=3
warmup=${WARMUP:-0.5}
bench_name=bench-verify
source "$(dirname -- "${BASH_SOURCE[0]}")/verify-bench-common.sh"
start_otpd

run() { # connections payload-file -> JSON line
    "$client" --socket "$tmp/otpd.sock" --method /otp.v1.TwoFactor/Verify --payload-file "$2" \
        --count-rejections --connections "$1" --seconds "$duration" --warmup "$warmup" --json
}
results=()
for c in 1 8 64; do
    say "$c connections: preparing wrong-code challenges"
    "$otpbench" --socket "$tmp/otpd.sock" --outbox "$tmp/outbox.jsonl" --count 2000 --prefix "w$c" --wrong "$tmp/wrong-$c.hex"
    sleep 1
    say "$c connections: wrong code"
    wrong=$(run "$c" "$tmp/wrong-$c.hex")
    rate=$(python3 -c 'import json,sys; print(int(json.loads(sys.argv[1])["calls_per_s"]))' "$wrong")
    need=$(python3 -c "import math; print(max(2000, math.ceil($rate * ($duration + $warmup) * 1.6)))")
    say "$c connections: preparing $need right-code challenges"
    "$otpbench" --socket "$tmp/otpd.sock" --outbox "$tmp/outbox.jsonl" --count "$need" --prefix "r$c" --right "$tmp/right-$c.hex"
    sleep 2  # let the background checkpoint copy the preparation's writes first
    say "$c connections: right code"
    right=$(run "$c" "$tmp/right-$c.hex")
    results+=("wrong $c $wrong" "right $c $right")
done

python3 - "$duration" "$warmup" "${results[@]}" <<'PY'
import json, sys
duration, warmup, rows = sys.argv[1], sys.argv[2], sys.argv[3:]
print(f"\notpd Verify, synchronous=FULL: {duration}s per run after {warmup}s warm-up")
print(f"{'scenario':<26}{'calls/s':>10}{'p50 us':>10}{'p99 us':>10}{'accepted':>10}{'errors':>8}  note")
for row in rows:
    kind, conns, blob = row.split(" ", 2)
    r = json.loads(blob)
    accepted = r["calls"] - r["rejected"]
    note = "payloads reused (some rejections expected)" if r["payloads_wrapped"] else ""
    print(f"{kind + ' code, ' + conns + ' conn':<26}{r['calls_per_s']:>10.0f}{r['p50_us']:>10.1f}{r['p99_us']:>10.1f}"
          f"{accepted:>10}{r['errors']:>8}  {note}")
PY
