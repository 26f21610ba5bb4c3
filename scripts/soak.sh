#!/usr/bin/env bash
# Soak: runs otpd (release, synchronous=FULL) for MINUTES at half of the Verify rate it can
# reach on this machine, with a mix of calls, and prints once a minute what must stay flat
# after warm-up: otpd's resident memory, the WAL's size, the database's size, and per kind of
# call its rate and p99. A tool that prints figures, run by hand; not part of CI.
#
#   scripts/soak.sh                      # MINUTES=30
#   MINUTES=5 scripts/soak.sh
#   SECONDS=10 MINUTES=3 OTPD_BIN=path scripts/soak.sh   # 10 s "minutes", a given otpd binary
#
# Errors counts protocol and connection errors only: a Verify on a locked account is answered
# with a status, as it should be.
#
# The mix, paced with the load client's --rate (latency counts from each call's send):
#   70 % Verify with a wrong code, 64 connections: a write per call (failure counter, audit
#        event); 20,000 prepared accounts in turn, so most are soon locked, as under a
#        guessing attack;
#   20 % GetStatus on those accounts, 8 connections: reads through the writer;
#   10 % Health, 8 connections: answered on the event loop.
# The maximum is measured first: wrong-code Verify at 64 connections for 5 s.
set -euo pipefail
default_seconds=60
warmup=0
bench_name=soak
minutes=${MINUTES:-30}
source "$(dirname -- "${BASH_SOURCE[0]}")/verify-bench-common.sh"
start_otpd

say "preparing 20000 accounts with wrong-code Verify requests"
"$otpbench" --socket "$tmp/otpd.sock" --outbox "$tmp/outbox.jsonl" --count 20000 --prefix soak --wrong "$tmp/wrong.hex"
# GetStatusRequest { account_id = 1 } for the same accounts.
python3 - "$tmp/status.hex" <<'PY'
import sys
with open(sys.argv[1], "w") as out:
    for i in range(20000):
        account = f"soak{i}".encode()
        out.write((bytes([0x0A, len(account)]) + account).hex() + "\n")
PY

verify() { # seconds connections [rate] -> JSON
    "$client" --socket "$tmp/otpd.sock" --method /otp.v1.TwoFactor/Verify --payload-file "$tmp/wrong.hex" \
        --count-rejections --connections "$2" --seconds "$1" --warmup 0 ${3:+--rate "$3"} --json
}
say "measuring the maximum: wrong-code Verify, 64 connections, 5 s"
maximum=$(verify 5 64 | python3 -c 'import json,sys; print(int(json.load(sys.stdin)["calls_per_s"]))')
target=$((maximum / 2))
say "maximum $maximum calls/s; soaking at $target calls/s for $minutes minutes"

field() { python3 -c 'import json,sys; d=json.loads(sys.argv[1]); print(d[sys.argv[2]])' "$1" "$2"; }
printf '%6s %9s %9s %9s | %22s | %22s | %22s | %s\n' minute rss_mib wal_mib db_mib \
    "verify calls/s p99 us" "status calls/s p99 us" "health calls/s p99 us" errors
for minute in $(seq 1 "$minutes"); do
    verify "$duration" 64 $((target * 70 / 100)) >"$tmp/v.json" &
    v=$!
    "$client" --socket "$tmp/otpd.sock" --method /otp.v1.TwoFactor/GetStatus --payload-file "$tmp/status.hex" \
        --connections 8 --seconds "$duration" --warmup 0 --rate $((target * 20 / 100)) --json >"$tmp/s.json" &
    s=$!
    "$client" --socket "$tmp/otpd.sock" --connections 8 --seconds "$duration" --warmup 0 \
        --rate $((target * 10 / 100)) --json >"$tmp/h.json" &
    h=$!
    wait "$v" "$s" "$h"
    rss=$(awk '/^VmRSS:/ { printf "%.1f", $2 / 1024 }' "/proc/$pid/status")
    wal=$(stat -c %s "$tmp/otpd.sqlite-wal" 2>/dev/null || echo 0)
    db=$(stat -c %s "$tmp/otpd.sqlite")
    row=()
    errors=0
    for f in v s h; do
        json=$(cat "$tmp/$f.json")
        row+=("$(printf '%10.0f %11.0f' "$(field "$json" calls_per_s)" "$(field "$json" p99_us)")")
        errors=$((errors + $(field "$json" protocol_errors) + $(field "$json" connection_errors)))
    done
    printf '%6d %9s %9s %9s | %22s | %22s | %22s | %d\n' "$minute" "$rss" \
        "$(awk -v b="$wal" 'BEGIN { printf "%.1f", b / 1048576 }')" \
        "$(awk -v b="$db" 'BEGIN { printf "%.1f", b / 1048576 }')" "${row[0]}" "${row[1]}" "${row[2]}" "$errors"
done
