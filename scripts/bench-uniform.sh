#!/usr/bin/env bash
# Measures whether every way a verification can fail takes the same time (docs/SECURITY.md §13,
# issue: "uniform failure"). A tool that prints figures, not a test: the machines are noisy, so
# each kind is compared with a wrong code measured in the same run.
#
# Kinds: wrong code, malformed code, code for another purpose, another account's challenge,
# unknown challenge, unknown account, expired challenge, locked account, each on its own set
# of COUNT accounts. Each runs ROUNDS times (default 3) for SECONDS (default 2) on 1 connection (one call at a time:
# what a single attacker sees) and on 8. Every answer must be a plain failure ("accepted" and
# "errors" 0); payloads are reused when a run needs more than COUNT.
#
#   scripts/bench-uniform.sh
#   SECONDS=3 ROUNDS=5 COUNT=6000 scripts/bench-uniform.sh
set -euo pipefail
default_seconds=2
count=${COUNT:-4000}
bench_name=bench-uniform
source "$(dirname -- "${BASH_SOURCE[0]}")/verify-bench-common.sh"
# Short codes (30 s) so that a set can expire during the run.
start_otpd "[codes]
lifetime_seconds = 30"

prepare() { "$otpbench" --socket "$tmp/otpd.sock" --outbox "$tmp/outbox.jsonl" --count "$count" "$@"; }
say "preparing $count accounts for the expired set"
prepare --prefix x --wrong "$tmp/expired.hex"
expired_at=$(( $(date +%s) + 31 ))
# A fresh set of accounts per kind: sharing them would lock them during the first kind's run
# and make every later kind measure a locked account.
for kind in wrong malformed other-purpose other-account unknown-challenge unknown-account; do
    say "preparing $count accounts for: $kind"
    prepare --prefix "k-$kind" --kinds-dir "$tmp/kinds-$kind"
    mv "$tmp/kinds-$kind/$kind.hex" "$tmp/$kind.hex"
done
say "preparing and locking $count accounts"
prepare --prefix l --lock --wrong "$tmp/locked.hex"
now=$(date +%s)
if (( now < expired_at )); then say "waiting $(( expired_at - now )) s for the expired set"; sleep $(( expired_at - now )); fi

kinds=(wrong malformed other-purpose other-account unknown-challenge unknown-account expired locked)
# Kinds take turns in short slices, ROUNDS times, so that a drift of the machine or of the
# database over the run (checkpoints, a growing WAL) does not favour the kinds measured last.
rounds=${ROUNDS:-3}
results=()
for c in 1 8; do
    for round in $(seq "$rounds"); do
        for kind in "${kinds[@]}"; do
            line=$("$client" --socket "$tmp/otpd.sock" --method /otp.v1.TwoFactor/Verify --payload-file "$tmp/$kind.hex" \
                --count-rejections --connections "$c" --seconds "$duration" --warmup 0.2 --json)
            results+=("$kind $c $line")
        done
        say "$c connection(s): round $round of $rounds done"
    done
done

python3 - "$duration" "$rounds" "${results[@]}" <<'PY'
import json, statistics, sys
duration, rounds, rows = sys.argv[1], sys.argv[2], sys.argv[3:]
runs = {}
for row in rows:
    kind, conns, blob = row.split(" ", 2)
    runs.setdefault((conns, kind), []).append(json.loads(blob))
print(f"\notpd Verify failures, synchronous=FULL: {rounds} interleaved runs of {duration}s per kind;")
print("medians over the runs; ratio = p50 / p50 of a wrong code on the same number of connections")
print(f"{'kind':<20}{'conns':>6}{'calls/s':>10}{'p50 us':>10}{'p99 us':>10}{'ratio':>8}{'accepted':>10}{'errors':>8}")
for (conns, kind), rs in runs.items():
    med = lambda key: statistics.median(r[key] for r in rs)
    base = statistics.median(r["p50_us"] for r in runs[(conns, "wrong")])
    accepted = sum(r["calls"] - r["rejected"] for r in rs)
    errors = sum(r["errors"] for r in rs)
    print(f"{kind:<20}{conns:>6}{med('calls_per_s'):>10.0f}{med('p50_us'):>10.1f}{med('p99_us'):>10.1f}"
          f"{med('p50_us') / base:>8.2f}{accepted:>10}{errors:>8}")
PY
