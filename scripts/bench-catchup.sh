#!/usr/bin/env bash
# Verify while SQLite's WAL catches up after a bulk load, against the same daemon once it has
# caught up, on a small database and on the 1 M-account one, in one run.
#
# Each round, for each database: BULK new accounts (default 100,000) get a number and a
# verify_phone challenge through the daemon (otpbench, as fast as it goes; the WAL reaches its
# 256 MiB limit and the writer's catch-up checkpoints start it over). Meanwhile, once a second,
# how many WAL frames are not yet copied into the database (the most is printed). Then at once,
# "during": wrong codes for those challenges for SECONDS (3) at CONNECTIONS (64), with the WAL's
# size and the frames not yet copied when it starts. Then the daemon is left alone until a
# checkpoint finds nothing left to copy, and "after": the same for the same challenges (their
# second attempt: the same work). Printed: medians over ROUNDS (3) of calls/s and p99, the
# ratio during/after per database, and large/small for each phase.
#
#   scripts/bench-catchup.sh                        # LARGE_DB=/var/tmp/otpd-large/otpd.sqlite
#   LARGE_DB=... BULK=100000 ROUNDS=3 scripts/bench-catchup.sh
#
# LARGE_DB is made by scripts/make-large-db.py when missing (a few minutes, about 1 GB).
# "Caught up" is asked of SQLite from outside (python3's sqlite3, `PRAGMA wal_checkpoint(PASSIVE)`
# on the daemon's file, which copies what is left and says how many frames the WAL holds and
# how many are copied) once a second, at most 120 s. OTPD_BIN / OTPBENCH_BIN: binaries to use.
set -euo pipefail
default_seconds=3
bench_name=bench-catchup
rounds=${ROUNDS:-3}
bulk=${BULK:-100000}
connections=${CONNECTIONS:-64}
large_db=${LARGE_DB:-/var/tmp/otpd-large/otpd.sqlite}
source "$(dirname -- "${BASH_SOURCE[0]}")/verify-bench-common.sh"
results=$tmp/results.jsonl
: > "$results"

say "starting otpd on a small database"
start_daemon "$tmp/small"
start_on_large_copy "$large_db" "$tmp/large"

# wal_state DIR: "<WAL MiB> <frames not yet copied into the database>", read from the WAL index
# (the -shm file: mxFrame at byte 16 of its header, nBackfill at byte 96) without touching the
# WAL, so that it changes nothing about the run that follows.
wal_state() {
    python3 - "$1/otpd.sqlite" <<'PY'
import os, struct, sys
path = sys.argv[1]
size = os.path.getsize(path + "-wal") / 1048576 if os.path.exists(path + "-wal") else 0.0
with open(path + "-shm", "rb") as shm:
    head = shm.read(100)
max_frame, = struct.unpack_from("<I", head, 16)
backfilled, = struct.unpack_from("<I", head, 96)
print(f"{size:.0f} {max(0, max_frame - backfilled)}")
PY
}

# caught_up DIR: waits (at most 120 s) until a PASSIVE checkpoint from outside finds every frame
# of the WAL copied into the database.
caught_up() {
    local dir=$1
    for _ in $(seq 120); do
        if python3 - "$dir/otpd.sqlite" <<'PY'
import sqlite3, sys
db = sqlite3.connect(sys.argv[1], timeout=10)
busy, frames, copied = db.execute("PRAGMA wal_checkpoint(PASSIVE)").fetchone()
sys.exit(0 if busy == 0 and frames == copied else 1)
PY
        then return 0; fi
        sleep 1
    done
    say "$dir: the WAL did not catch up within 120 s"
}

# run DIR PHASE ROUND: wrong codes from DIR/p.hex; appends a JSON line to $results.
run() {
    local dir=$1 phase=$2 round=$3 out state pid=${daemon_pid[$1]} before after
    state=$(wal_state "$dir")
    before=$(awk '{print $14+$15}' "/proc/$pid/stat")
    out=$("$client" --socket "$dir/otpd.sock" --method /otp.v1.TwoFactor/Verify --payload-file "$dir/p.hex" \
        --count-rejections --connections "$connections" --warmup 0.5 --seconds "$duration" --json)
    after=$(awk '{print $14+$15}' "/proc/$pid/stat")
    python3 - "$out" "$(basename "$dir")" "$phase" "$round" "$state" "$before" "$after" "$duration" >>"$results" <<'PY'
import json, sys
r = json.loads(sys.argv[1])
wal, left = sys.argv[5].split()
ticks = int(sys.argv[7]) - int(sys.argv[6])
calls = r["calls_per_s"] * (float(sys.argv[8]) + 0.5)
print(json.dumps({"db": sys.argv[2], "phase": sys.argv[3], "round": int(sys.argv[4]), "cps": r["calls_per_s"],
                  "p99": r["p99_us"] / 1000, "wal_mib": float(wal), "frames_left": int(left),
                  "cpu_us": ticks * 10000 / calls if calls else 0, "errors": r.get("errors", 0),
                  "accepted": r["calls"] - r.get("rejected", r["calls"])}))
PY
}

for round in $(seq "$rounds"); do
    for db in small large; do
        dir=$tmp/$db
        say "round $round, $db: preparing $bulk accounts and challenges through the daemon"
        "$otpbench" --socket "$dir/otpd.sock" --outbox "$dir/outbox.jsonl" --count "$bulk" \
            --prefix "bulk$round" --wrong "$dir/p.hex" >/dev/null 2>"$tmp/otpbench.err" &
        bench=$!
        # How far the WAL falls behind while the load runs: frames not yet copied, once a second.
        backlog=0
        while kill -0 "$bench" 2>/dev/null; do
            left=$(wal_state "$dir" | cut -d' ' -f2)
            (( left > backlog )) && backlog=$left
            sleep 1
        done
        wait "$bench" || { cat "$tmp/otpbench.err" >&2; exit 1; }
        echo "{\"db\": \"$db\", \"phase\": \"load\", \"round\": $round, \"backlog\": $backlog}" >>"$results"
        say "round $round, $db: during the catch-up"
        run "$dir" during "$round"
        say "round $round, $db: waiting until the WAL has caught up"
        caught_up "$dir"
        run "$dir" after "$round"
        : > "$dir/outbox.jsonl"
    done
done

python3 - "$results" "$bulk" "$connections" <<'PY'
import json, statistics, sys
rows = [json.loads(l) for l in open(sys.argv[1])]
backlogs = {db: max(r["backlog"] for r in rows if r["db"] == db and r["phase"] == "load") for db in ("small", "large")}
rows = [r for r in rows if r["phase"] != "load"]
def med(db, phase, key):
    return statistics.median(r[key] for r in rows if r["db"] == db and r["phase"] == phase)
def per_round(db, a, b, key):
    rs = sorted({r["round"] for r in rows})
    get = lambda d, p, n: next(r[key] for r in rows if r["db"] == d and r["phase"] == p and r["round"] == n)
    return statistics.median(get(db, a, n) / get(db, b, n) for n in rs)
assert all(r["errors"] == 0 and r["accepted"] == 0 for r in rows), "errors or accepted wrong codes: " + str(rows)
print(f"\nVerify, wrong code, {sys.argv[3]} connections, right after preparing {int(sys.argv[2]):,} accounts "
      f"(medians of {len({r['round'] for r in rows})} rounds)\n")
print("| database | phase | calls/s | p99 ms | otpd CPU µs/call | WAL MiB, frames not yet copied at the start |")
print("| --- | --- | --- | --- | --- | --- |")
for db in ("small", "large"):
    for phase in ("during", "after"):
        print(f"| {db} | {phase} catch-up | {med(db, phase, 'cps'):,.0f} | {med(db, phase, 'p99'):.1f} | "
              f"{med(db, phase, 'cpu_us'):.0f} | {med(db, phase, 'wal_mib'):.0f}, {med(db, phase, 'frames_left'):,.0f} |")
print()
for db in ("small", "large"):
    print(f"{db}: at most {backlogs[db]:,} frames ({backlogs[db] * 4 / 1024:.0f} MiB) not yet copied during the load, sampled once a second")
for db in ("small", "large"):
    print(f"{db}: during/after catch-up: calls/s {per_round(db, 'during', 'after', 'cps'):.2f}, "
          f"p99 {per_round(db, 'during', 'after', 'p99'):.2f}")
rs = sorted({r["round"] for r in rows})
for phase in ("during", "after"):
    get = lambda d, k, n: next(r[k] for r in rows if r["db"] == d and r["phase"] == phase and r["round"] == n)
    cps = statistics.median(get("large", "cps", n) / get("small", "cps", n) for n in rs)
    p99 = statistics.median(get("large", "p99", n) / get("small", "p99", n) for n in rs)
    print(f"large/small {phase} catch-up: calls/s {cps:.2f}, p99 {p99:.2f}")
PY
