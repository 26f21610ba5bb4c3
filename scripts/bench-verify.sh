#!/usr/bin/env bash
# Benchmarks otpd's Verify with durable commits, on SQLite (synchronous=FULL) and on PostgreSQL
# (synchronous_commit=on, fsync=on), in one run: a wrong code and a right code (fresh
# challenges prepared beforehand through the daemon by otpbench, each used once), driven by the
# C load client (Benchmarks/baseline). Prints one table: calls/s, p50/p99, the CPU each
# process spent per call and, for every PostgreSQL row, its ratio to the SQLite row of the same
# scenario.
#
#   scripts/bench-verify.sh                          # both backends, SECONDS=3, ROUNDS=1
#   ROUNDS=3 scripts/bench-verify.sh                 # medians over 3 rounds (for reporting)
#   BACKENDS=sqlite scripts/bench-verify.sh          # only SQLite (as before PostgreSQL came)
#
# Scenarios:
#   sqlite   one daemon on one SQLite file, at SQLITE_CONNECTIONS (default "1 8 64"): wrong
#            and right codes for verify_phone challenges (the enrolment: the heaviest
#            verification, which also voids other challenges and issues a proof), right codes
#            for login challenges of accounts whose number is verified (what every admin login
#            does), and "guess any acct" (wrong codes at accounts already in the file; see
#            guess_payloads)
#   pg       one daemon on PostgreSQL, at PG_CONNECTIONS (default "8 64")
#   pg x2    two daemons (own sockets, one key) on the same PostgreSQL database; the load is
#            split across both sockets: two load clients run together, each with half the
#            connections, against the challenges prepared on its own daemon. calls/s is the sum
#            of the two; p50 and p99 are the worse (higher) of the two clients' figures.
# The PostgreSQL cluster is a throw-away one (scripts/pg-throwaway.sh) in /tmp; during the pg
# rows the "pg x2" daemon is running too, idle. A run of ROUNDS=3 takes about 35 minutes on a
# 2-core machine, mostly preparing challenges (PostgreSQL prepares ~100/s).
#
# With LARGE_DB=PATH (a database made by scripts/make-large-db.py, its key at PATH.key; made
# there first when missing, which takes a few minutes and about 1 GB): one more SQLite daemon, on
# a copy of it (1 M accounts, 10 M audit events), driven like the first at LARGE_CONNECTIONS
# (default 64), its rows "sqlite 1M accts" with their ratio to the small database's rows of the
# same round. Its wrong and right codes are for new accounts prepared like the others' (the
# indexes they go into are those of 1 M accounts and 10 M events). Both SQLite daemons also get
# "guess any acct" rows: wrong codes at accounts drawn at random from all those of their
# database (guess_payloads), cold pages on the large one, cached ones on the small one.
#   LARGE_DB=/var/tmp/otpd-large/otpd.sqlite BACKENDS=sqlite SQLITE_CONNECTIONS=64 ROUNDS=3 scripts/bench-verify.sh
#
# Environment: SECONDS (measured seconds per run, default 3), WARMUP (0.5), ROUNDS (1; every
# round runs every scenario, the kinds and backends of one connection count back to back, and
# the table shows medians, the calls/s range over the rounds and the median of the per-round
# ratios), BACKENDS (sqlite,postgresql), KINDS (wrong right login guess), SQLITE_CONNECTIONS,
# PG_CONNECTIONS, PG_POOL_SIZE
# (otpd's [storage] pool_size; unset: otpd's default, 16), PROFILE (1: after the table, one
# more PostgreSQL right-code run at PROFILE_CONNECTIONS=64 connections, instrumented, to show
# where the time goes: pg_stat_statements, pg_stat_database, pg_stat_wal, pg_stat_activity
# sampling and, when perf works, a perf profile of otpd and postgres; 0: skip), KEEP_TMP=1
# (keep the daemons' directories and the profile), SHUFFLE (1: the payloads are used in random
# order; 0: in the order prepared), PG_PREPARE_CONCURRENCY (2: otpbench's calls in flight per
# daemon when preparing on PostgreSQL), OTPD_BIN / OTPBENCH_BIN (binaries to use).
#
# Sizing: each scenario's payload sets are sized from its rate (a 1 s probe the first time,
# then the highest rate of its measured runs so far), so every measured call uses a fresh
# challenge's first attempt; a run that still ran out says "payloads reused". Before each run the preparation's
# writes are flushed to the main files: SQLite's background checkpoint gets 2 s, PostgreSQL a
# CHECKPOINT.
#
# CPU columns: utime+stime (from /proc) of the otpd processes and of every process of the
# PostgreSQL cluster, over warm-up + measured time, divided by the calls in that time (taken as
# calls/s x (WARMUP + SECONDS)). The machine has other work: compare figures of one run only.
set -euo pipefail
default_seconds=3
warmup=${WARMUP:-0.5}
rounds=${ROUNDS:-1}
backends=${BACKENDS:-sqlite,postgresql}
sqlite_connections=${SQLITE_CONNECTIONS:-1 8 64}
pg_connections=${PG_CONNECTIONS:-8 64}
profile=${PROFILE:-1}
kinds=${KINDS:-wrong right login guess}
profile_connections=${PROFILE_CONNECTIONS:-64}
bench_name=bench-verify
for b in ${backends//,/ }; do
    [[ $b == sqlite || $b == postgresql ]] || { echo "BACKENDS: sqlite and/or postgresql, not $b" >&2; exit 2; }
done
has_backend() { [[ ,$backends, == *,$1,* ]]; }
source "$(dirname -- "${BASH_SOURCE[0]}")/verify-bench-common.sh"
results=$tmp/results.jsonl
: > "$results"

# ---- the daemons ---------------------------------------------------------------------------

setups=()   # sqlite, pg, pg2: which daemons a scenario drives
declare -A setup_dirs setup_connections setup_label
if has_backend sqlite; then
    say "starting otpd on SQLite"
    start_otpd
    setups+=(sqlite)
    setup_dirs[sqlite]=$tmp
    setup_connections[sqlite]=$sqlite_connections
    setup_label[sqlite]="sqlite"
    if [[ -n ${LARGE_DB:-} ]]; then
        start_on_large_copy "$LARGE_DB" "$tmp/large"
        setups+=(large)
        setup_dirs[large]=$tmp/large
        setup_connections[large]=${LARGE_CONNECTIONS:-64}
        setup_label[large]="sqlite 1M accts"
    fi
fi
# on_sqlite SETUP: whether SETUP's daemon keeps its data in SQLite.
on_sqlite() { [[ $1 == sqlite || $1 == large ]]; }

pgdir=""
if has_backend postgresql; then
    pgdir=$(mktemp -d /tmp/otpd-bench-pg.XXXXXX)
    stop_postgres() { "$root/scripts/pg-throwaway.sh" stop "$pgdir" >/dev/null 2>&1 || true; }
    cleanup_hooks+=(stop_postgres)
    say "starting a throw-away PostgreSQL cluster in $pgdir"
    PG_STAT_STATEMENTS=$profile "$root/scripts/pg-throwaway.sh" start "$pgdir" > "$tmp/pg.env"
    pg_url=$(sed -n 's/^url=//p' "$tmp/pg.env")
    pg_password_file=$(sed -n 's/^password_file=//p' "$tmp/pg.env")
    pg_admin=$(sed -n 's/^admin_user=//p' "$tmp/pg.env")
    pg_admin_password_file=$(sed -n 's/^admin_password_file=//p' "$tmp/pg.env")
    pg_socket_dir=$(sed -n 's/^socket_dir=//p' "$tmp/pg.env")
    pg_data_dir=$(sed -n 's/^data_dir=//p' "$tmp/pg.env")
    # pg_sql DATABASE SQL: runs SQL as the cluster's superuser, prints rows as a|b|c.
    pg_sql() {
        PGPASSWORD=$(head -n1 "$pg_admin_password_file") psql -X -q -A -t -v ON_ERROR_STOP=1 \
            -h "$pg_socket_dir" -U "$pg_admin" -d "$1" -c "$2"
    }
    if [[ $profile == 1 ]]; then
        # Loaded for the profile run only; the measured runs keep it quiet.
        pg_sql postgres "ALTER SYSTEM SET pg_stat_statements.track = 'none'" >/dev/null
        pg_sql postgres "SELECT pg_reload_conf()" >/dev/null
    fi
    storage="backend = \"postgresql\"
url = \"$pg_url\"
password_file = \"$pg_password_file\"${PG_POOL_SIZE:+
pool_size = $PG_POOL_SIZE}"
    say "starting two otpd on PostgreSQL (the second with the first's key)"
    start_daemon "$tmp/pg-a" "$storage"
    mkdir -p "$tmp/pg-b"
    cp -p "$tmp/pg-a/otpd.key" "$tmp/pg-b/otpd.key"
    start_daemon "$tmp/pg-b" "$storage"
    setups+=(pg pg2)
    setup_dirs[pg]=$tmp/pg-a
    setup_dirs[pg2]="$tmp/pg-a $tmp/pg-b"
    setup_connections[pg]=$pg_connections
    setup_connections[pg2]=$pg_connections
    setup_label[pg]="postgresql"
    setup_label[pg2]="postgresql x2"
fi

# ---- measuring -----------------------------------------------------------------------------

# cpu_seconds PID...: utime+stime of these processes, plus for each the CPU of its children
# that ended and were waited for (so a postgres backend that exits mid-run still counts).
cpu_seconds() {
    python3 - "$@" <<'PY'
import os, sys
tck = os.sysconf("SC_CLK_TCK")
total = 0
for pid in sys.argv[1:]:
    try:
        fields = open(f"/proc/{pid}/stat").read().rsplit(")", 1)[1].split()
    except OSError:
        continue
    # after the comm: state is field 3, utime 14, stime 15, cutime 16, cstime 17 (1-based)
    total += sum(int(fields[i]) for i in (11, 12, 13, 14))
print(total / tck)
PY
}

# The PostgreSQL cluster's processes: the postmaster and its children.
pg_pids() {
    local master
    master=$(head -n1 "$pg_data_dir/postmaster.pid")
    echo "$master"
    pgrep -P "$master" || true
}

# otpd_pids SETUP: the daemons of SETUP.
otpd_pids() {
    local d
    for d in ${setup_dirs[$1]}; do echo "${daemon_pid[$d]}"; done
}

# prepare SETUP COUNT PREFIX KIND: COUNT challenges on each daemon of SETUP, from its own
# outbox; the payloads go to DIR/PREFIX.hex.
# On PostgreSQL with few calls in flight (PG_PREPARE_CONCURRENCY per daemon, default 2): the
# StartChallenges of one number range conflict with each other on sms_sends (SERIALIZABLE),
# and at otpbench's default 128 in flight nearly all of them are retried, many times.
prepare() {
    local d i=0 jobs=() j flags=()
    on_sqlite "$1" || flags=(--connections "${PG_PREPARE_CONCURRENCY:-2}" --in-flight 1)
    for d in ${setup_dirs[$1]}; do
        i=$((i + 1))
        local what=("--$4" "$d/$3.hex")
        [[ $4 != login ]] || what=(--login --right "$d/$3.hex")
        "$otpbench" --socket "$d/otpd.sock" --outbox "$d/outbox.jsonl" --count "$2" --prefix "$3-$i" \
            "${what[@]}" "${flags[@]}" &
        jobs+=($!)
    done
    for j in "${jobs[@]}"; do wait "$j"; done
    # Verified in random order, as accounts come in real use: in the order prepared, the calls
    # in flight together would be on neighbouring accounts and challenges (neighbouring index
    # pages, which SERIALIZABLE's page-level read locks on PostgreSQL count as conflicts).
    if [[ ${SHUFFLE:-1} == 1 ]]; then
        for d in ${setup_dirs[$1]}; do shuf -o "$d/$3.hex" "$d/$3.hex"; done
    fi
}

# guess_payloads SETUP COUNT PREFIX: COUNT wrong-code Verify requests at distinct accounts
# drawn at random from all the accounts in SETUP's database (read from the file, read-only),
# each with a challenge id that does not exist: the account's row is read and its failure
# counted, as when a bot guesses at many accounts. On the 1 M-account database those rows are
# on cold pages; on the small one, every page is in the cache. No preparation.
guess_payloads() {
    python3 - "${setup_dirs[$1]}/otpd.sqlite" "$2" "$3" > "${setup_dirs[$1]}/$3.hex" <<'PY'
import random, sqlite3, sys
path, count, prefix = sys.argv[1], int(sys.argv[2]), sys.argv[3]
db = sqlite3.connect(f"file:{path}?mode=ro", uri=True)
ids = [row[0] for row in db.execute("SELECT id FROM accounts")]
def varint(n):
    out = b""
    while True:
        low, n = n & 0x7F, n >> 7
        out += bytes([low | (0x80 if n else 0)])
        if not n:
            return out
def field(number, value):
    return bytes([number << 3 | 2]) + varint(len(value)) + value
for i, account in enumerate(random.sample(ids, min(count, len(ids)))):
    # VerifyRequest { account_id = 1, purpose = 2 (LOGIN), code = 3, challenge_id = 4 }
    payload = (field(1, account.encode()) + bytes([0x10, 2]) + field(3, b"000000")
               + field(4, f"ch_{prefix}_{i}".encode()))
    print(payload.hex())
PY
}

# settle SETUP: let the preparation's writes reach the main files before a run.
settle() {
    if on_sqlite "$1"; then sleep 2; else pg_sql postgres CHECKPOINT >/dev/null; fi
}

# drive SETUP CONNECTIONS PREFIX WARMUP SECONDS: the load clients (one per daemon, the
# connections split evenly), together; prints one merged JSON object.
drive() {
    local d n=0 i=0 files=() jobs=() j
    for d in ${setup_dirs[$1]}; do n=$((n + 1)); done
    for d in ${setup_dirs[$1]}; do
        i=$((i + 1))
        files+=("$tmp/load-$i.json")
        "$client" --socket "$d/otpd.sock" --method /otp.v1.TwoFactor/Verify --payload-file "$d/$3.hex" \
            --count-rejections --connections $(($2 / n)) --warmup "$4" --seconds "$5" --json \
            > "$tmp/load-$i.json" &
        jobs+=($!)
    done
    for j in "${jobs[@]}"; do wait "$j" || true; done  # exit status 2 = errors: shown in the table
    python3 - "${files[@]}" <<'PY'
import json, sys
runs = []
for path in sys.argv[1:]:
    text = open(path).read().strip()
    if not text:
        sys.exit(f"the load client wrote nothing to {path}")
    runs.append(json.loads(text))
merged = {
    "calls": sum(r["calls"] for r in runs),
    "calls_per_s": sum(r["calls_per_s"] for r in runs),
    "rejected": sum(r["rejected"] for r in runs),
    "errors": sum(r["errors"] for r in runs),
    # the worse of the clients' percentiles (not a merged histogram)
    "p50_us": max(r["p50_us"] for r in runs),
    "p99_us": max(r["p99_us"] for r in runs),
    "payloads_wrapped": any(r["payloads_wrapped"] for r in runs),
    "split": "+".join(str(r["connections"]) for r in runs),
    "client_cpu_pct": sum(r["client_cpu_pct"] for r in runs),
}
print(json.dumps(merged))
PY
}

declare -A rate_estimate   # SETUP/CONNECTIONS -> calls/s expected (all daemons together)
declare -A rate_measured   # SETUP/CONNECTIONS -> the highest calls/s of a measured run

# payload_count SETUP CONNECTIONS: challenges to prepare on each daemon for one run.
payload_count() {
    local n=0 d
    for d in ${setup_dirs[$1]}; do n=$((n + 1)); done
    python3 -c "import math,sys; r,n,t=float(sys.argv[1]),int(sys.argv[2]),float(sys.argv[3]); print(max(1000, math.ceil(r*t*1.5/n)))" \
        "${rate_estimate[$1/$2]}" "$n" "$(python3 -c "print($duration + $warmup)")"
}

# probe_count SETUP: challenges per daemon for the probe (PostgreSQL prepares slowly).
probe_count() {
    case $1 in sqlite | large) echo 2000 ;; pg) echo 800 ;; *) echo 400 ;; esac
}

# measure SETUP KIND CONNECTIONS ROUND: prepares, runs, appends a line to $results.
measure() {
    local setup=$1 kind=$2 c=$3 round=$4 label="${setup_label[$1]}, $2 code, $3 conn"
    if [[ -z ${rate_estimate[$setup/$c]:-} ]]; then
        say "$label: probing the rate (1 s) to size the payload sets"
        # (wrong codes, reused when the set runs out: only the rate matters here)
        prepare "$setup" "$(probe_count "$setup")" "${setup}probe$c" wrong
        settle "$setup"
        local probe
        probe=$(drive "$setup" "$c" "${setup}probe$c" 0.2 1)
        rate_estimate[$setup/$c]=$(python3 -c 'import json,sys; print(json.loads(sys.argv[1])["calls_per_s"])' "$probe")
    fi
    local count prefix="${setup}r$round${kind:0:1}$c"  # new accounts for every set
    count=$(payload_count "$setup" "$c")
    if [[ $kind == guess ]]; then
        say "$label (round $round): drawing $count accounts from its database"
        guess_payloads "$setup" "$count" "$prefix"
    else
        say "$label (round $round): preparing $count challenges per daemon"
        prepare "$setup" "$count" "$prefix" "$kind"
    fi
    settle "$setup"
    say "$label (round $round): running"
    local otpd_list pg_list before_otpd before_pg after_otpd after_pg out
    otpd_list=$(otpd_pids "$setup")
    pg_list=""
    on_sqlite "$setup" || pg_list=$(pg_pids)
    local log_offset=0
    on_sqlite "$setup" || log_offset=$(stat -c %s "$pgdir/postgres.log")
    before_otpd=$(cpu_seconds $otpd_list)
    before_pg=0
    [[ -z $pg_list ]] || before_pg=$(cpu_seconds $pg_list)
    out=$(drive "$setup" "$c" "$prefix" "$warmup" "$duration")
    after_otpd=$(cpu_seconds $otpd_list)
    after_pg=0 conflicts=0
    if ! on_sqlite "$setup"; then
        after_pg=$(cpu_seconds $(pg_pids))
        # Serialization failures (each one a transaction otpd ran again), from the server's log.
        conflicts=$(tail -c +$((log_offset + 1)) "$pgdir/postgres.log" | grep -c 'could not serialize' || true)
    fi
    python3 - "$setup" "$kind" "$c" "$round" "$out" "$before_otpd" "$after_otpd" "$before_pg" "$after_pg" \
        "$duration" "$warmup" "$conflicts" >> "$results" <<'PY'
import json, sys
setup, kind, c, rnd, out = sys.argv[1:6]
bo, ao, bp, ap, dur, warm, conflicts = map(float, sys.argv[6:13])
r = json.loads(out)
calls = r["calls_per_s"] * (dur + warm)
r.update(setup=setup, kind=kind, connections=int(c), round=int(rnd),
         otpd_cpu_us=(ao - bo) * 1e6 / calls if calls else 0,
         pg_cpu_us=(ap - bp) * 1e6 / calls if calls else 0,
         retried=conflicts / calls if calls else 0)
print(json.dumps(r))
PY
    # The highest rate measured so far (the probe's only until then: on reused wrong codes it
    # runs faster than fresh ones do).
    local rate
    rate=$(tail -n1 "$results" | python3 -c 'import json,sys; print(json.load(sys.stdin)["calls_per_s"])')
    rate_estimate[$setup/$c]=$(python3 -c "print(max($rate, ${rate_measured[$setup/$c]:-0}))")
    rate_measured[$setup/$c]=${rate_estimate[$setup/$c]}
}

all_connections=$(for s in "${setups[@]}"; do echo ${setup_connections[$s]}; done | tr ' ' '\n' | sort -nu | tr '\n' ' ')
for round in $(seq "$rounds"); do
    for c in $all_connections; do
        for kind in $kinds; do
            for s in "${setups[@]}"; do
                [[ $kind != guess ]] || on_sqlite "$s" || continue
                [[ " ${setup_connections[$s]} " == *" $c "* ]] || continue
                (( c % $(echo ${setup_dirs[$s]} | wc -w) == 0 )) || continue
                measure "$s" "$kind" "$c" "$round"
            done
        done
    done
done

# ---- the table -----------------------------------------------------------------------------

pool=${PG_POOL_SIZE:-16 (default)}
python3 - "$results" "$duration" "$warmup" "$rounds" "$pool" <<'PY'
import json, statistics, sys
path, duration, warmup, rounds, pool = sys.argv[1:6]
rows = [json.loads(l) for l in open(path)]
label = {"sqlite": "sqlite", "large": "sqlite 1M accts", "pg": "postgresql", "pg2": "postgresql x2"}
order = {"sqlite": 0, "large": 1, "pg": 2, "pg2": 3}
groups = {}
for r in rows:
    groups.setdefault((r["kind"], r["connections"], r["setup"]), []).append(r)
med = lambda rs, k: statistics.median(x[k] for x in rs)
print(f"\notpd Verify, durable commits (SQLite synchronous=FULL; PostgreSQL synchronous_commit=on, "
      f"fsync=on, otpd pool_size {pool}): {duration}s per run after {warmup}s warm-up, "
      f"{'median of ' + rounds + ' rounds' if rounds != '1' else '1 round'}")
print("  x2: two daemons on one database, the connections split across their sockets; p50/p99 = the worse client's")
print("  vs sqlite: this row / the SQLite row of the same kind and connections (the small database)" + (", median of the per-round ratios" if rounds != "1" else ""))
print("  CPU us/call: utime+stime per call of otpd (both daemons for x2) and of the whole PostgreSQL cluster")
print("  retried: serialization failures (transactions otpd ran again) per call, from the server's log")
head = (f"{'scenario':<42}{'calls/s':>9}{'range':>14}{'p50 us':>9}{'p99 us':>9}{'accepted':>9}{'errors':>7}"
        f"{'otpd CPU':>9}{'pg CPU':>8}{'retried':>8}{'vs sqlite calls/s':>19}{'p99':>7}  note")
print(head)
for key in sorted(groups, key=lambda k: ({"wrong": 0, "guess": 1, "right": 2, "login": 3}[k[0]], k[1], order[k[2]])):
    kind, c, setup = key
    rs = groups[key]
    rate = med(rs, "calls_per_s")
    lo, hi = min(x["calls_per_s"] for x in rs), max(x["calls_per_s"] for x in rs)
    rng = f"{lo:.0f}-{hi:.0f}" if len(rs) > 1 else ""
    accepted = statistics.median(x["calls"] - x["rejected"] for x in rs)
    errors = sum(x["errors"] for x in rs)
    ratio_rate = ratio_p99 = ""
    base = groups.get((kind, c, "sqlite"))
    if setup != "sqlite" and base:
        by_round = {x["round"]: x for x in base}
        rr = [x["calls_per_s"] / by_round[x["round"]]["calls_per_s"] for x in rs if x["round"] in by_round]
        rp = [x["p99_us"] / by_round[x["round"]]["p99_us"] for x in rs if x["round"] in by_round]
        if rr:
            ratio_rate = f"{statistics.median(rr):.2f}"
            ratio_p99 = f"{statistics.median(rp):.1f}"
    retried = "" if setup in ("sqlite", "large") else f"{med(rs, 'retried'):.2f}"
    notes = []
    if any(x["payloads_wrapped"] for x in rs): notes.append("payloads reused")
    if setup == "pg2": notes.append("split " + rs[0]["split"])
    what = {"guess": "guess any acct", "login": "login, right code"}.get(kind, f"{kind} code")
    name = f"{label[setup]}, {what}, {c} conn"
    print(f"{name:<42}{rate:>9.0f}{rng:>14}{med(rs, 'p50_us'):>9.0f}{med(rs, 'p99_us'):>9.0f}{accepted:>9.0f}{errors:>7}"
          f"{med(rs, 'otpd_cpu_us'):>9.0f}{med(rs, 'pg_cpu_us'):>8.0f}{retried:>8}{ratio_rate:>19}{ratio_p99:>7}  {', '.join(notes)}")
PY

# ---- where the time goes (PostgreSQL) -------------------------------------------------------

[[ $profile == 1 ]] && has_backend postgresql || exit 0
source "$root/scripts/bench-verify-profile.sh"
