# Sourced by scripts/bench-verify.sh (PROFILE=1, the default) after its table: where the time of
# a PostgreSQL Verify goes. One more right-code run on one daemon at PROFILE_CONNECTIONS (64),
# instrumented, so its own calls/s is not a figure for the table:
#   - pg_stat_statements (track = top for this run only): statements per Verify (= round trips:
#     otpd sends each statement and waits for its answer), server time of each;
#   - pg_stat_database: commits, rollbacks (each rollback is a serialization conflict otpd
#     retried), block hits and reads;
#   - pg_stat_wal (track_wal_io_timing = on for this run): WAL records, full-page images and
#     bytes per Verify, WAL fsyncs and their time (how many commits share one fsync);
#   - pg_stat_activity sampled every 10 ms: what otpd's server sessions are doing (running,
#     waiting for the WAL, waiting for otpd's next statement inside a transaction, idle);
#   - CPU (utime+stime from /proc) of otpd and of the cluster's processes per call;
#   - perf record -g of otpd and the cluster's processes, when perf works here.
# Uses bench-verify.sh's functions and variables (drive, prepare, pg_sql, ...).

prof=$tmp/profile
mkdir -p "$prof"
# One daemon only: the second one's sessions would blur the sampling and the CPU figures.
kill "${daemon_pid[$tmp/pg-b]}" 2>/dev/null || true
wait "${daemon_pid[$tmp/pg-b]}" 2>/dev/null || true
otpd_pid=${daemon_pid[$tmp/pg-a]}
c=$profile_connections
label="postgresql, right code, $c conn (profile)"
if [[ -z ${rate_estimate[pg/$c]:-} ]]; then
    say "$label: probing the rate (1 s) to size the payload set"
    prepare pg "$(probe_count pg)" "pgprobe$c" wrong
    settle pg
    rate_estimate[pg/$c]=$(drive pg "$c" "pgprobe$c" 0.2 1 | python3 -c 'import json,sys; print(json.load(sys.stdin)["calls_per_s"])')
fi
count=$(payload_count pg "$c")
say "$label: preparing $count challenges"
prepare pg "$count" pgprofile right
settle pg

pg_sql postgres "ALTER SYSTEM SET pg_stat_statements.track = 'top'" >/dev/null
pg_sql postgres "ALTER SYSTEM SET track_wal_io_timing = on" >/dev/null
pg_sql postgres "SELECT pg_reload_conf()" >/dev/null
sleep 0.5
pg_sql postgres "SELECT pg_stat_statements_reset()" >/dev/null
pg_sql postgres "SELECT pg_stat_reset_shared('wal')" >/dev/null
sleep 1.2  # pg_stat_database is flushed by each backend at most once a second
stats_sql="SELECT json_build_object(
    'db', (SELECT row_to_json(d) FROM pg_stat_database d WHERE datname = 'otpd'),
    'wal', (SELECT row_to_json(w) FROM pg_stat_wal w),
    'bgwriter', (SELECT row_to_json(b) FROM pg_stat_bgwriter b))"
pg_sql postgres "$stats_sql" > "$prof/stats-before.json"

# The sampler: one session, one DO block (pg_stat_clear_snapshot() before each look, since
# pg_stat_activity is read once per transaction otherwise), over the measured seconds.
sample_seconds=$(python3 -c "print(max(0.5, $duration - 0.3))")
sampler_sql="CREATE TEMP TABLE samples (state text, wait text);
DO \$\$
DECLARE stop timestamptz := clock_timestamp() + interval '$sample_seconds seconds';
BEGIN
    WHILE clock_timestamp() < stop LOOP
        PERFORM pg_stat_clear_snapshot();
        INSERT INTO samples VALUES ('#', '');
        INSERT INTO samples SELECT coalesce(state, ''), coalesce(wait_event_type || ':' || wait_event, '')
            FROM pg_stat_activity WHERE application_name = 'otpd' AND backend_type = 'client backend';
        PERFORM pg_sleep(0.01);
    END LOOP;
END \$\$;
SELECT state, wait, count(*) FROM samples GROUP BY 1, 2 ORDER BY 3 DESC;"

perf_ok=0
if command -v perf >/dev/null && perf record -q -o "$prof/perf-check.data" -- true >/dev/null 2>&1; then
    perf_ok=1
else
    echo "perf does not work here: no perf profile" > "$prof/perf-record.log"
fi

log_offset=$(stat -c %s "$pgdir/postgres.log")
before_otpd=$(cpu_seconds "$otpd_pid")
before_pg=$(cpu_seconds $(pg_pids))
drive pg "$c" pgprofile "$warmup" "$duration" > "$prof/run.json" &
load_job=$!
sleep "$warmup"
# After the warm-up: the sampler, and perf on otpd and the cluster's processes (its sessions
# exist by now), for the measured seconds.
pg_sql postgres "$sampler_sql" > "$prof/activity.txt" 2>&1 &
sampler=$!
perf_job=""
if [[ $perf_ok == 1 ]]; then
    targets=$(echo "$otpd_pid" $(pg_pids) | tr ' ' ',')
    perf record -q -F 499 -g -p "$targets" -o "$prof/perf.data" -- sleep "$sample_seconds" \
        > "$prof/perf-record.log" 2>&1 &
    perf_job=$!
fi
wait "$load_job" || true
after_otpd=$(cpu_seconds "$otpd_pid")
after_pg=$(cpu_seconds $(pg_pids))
run=$(cat "$prof/run.json")
wait "$sampler" || true
[[ -z $perf_job ]] || wait "$perf_job" || true
sleep 1.5  # let every backend flush its statistics
pg_sql postgres "$stats_sql" > "$prof/stats-after.json"
# The server logs every statement that failed, a serialization failure too, with its reason.
tail -c +$((log_offset + 1)) "$pgdir/postgres.log" > "$prof/postgres.log"
pg_sql postgres "SELECT json_agg(s) FROM (
    SELECT regexp_replace(query, '\s+', ' ', 'g') AS query, calls, total_exec_time, rows, wal_records, wal_fpi, wal_bytes
    FROM pg_stat_statements WHERE dbid = (SELECT oid FROM pg_database WHERE datname = 'otpd')
    ORDER BY calls DESC, total_exec_time DESC) s" > "$prof/statements.json"
pg_sql postgres "ALTER SYSTEM SET pg_stat_statements.track = 'none'" >/dev/null
pg_sql postgres "ALTER SYSTEM RESET track_wal_io_timing" >/dev/null
pg_sql postgres "SELECT pg_reload_conf()" >/dev/null

if [[ -s $prof/perf.data ]]; then
    demangle() { if command -v swift >/dev/null; then swift demangle --simplified 2>/dev/null || cat; else cat; fi; }
    perf report -i "$prof/perf.data" --stdio --no-children --sort comm,dso -g none 2>/dev/null |
        grep -v '^#' | grep -v '^$' | head -n 25 > "$prof/perf-dso.txt" || true
    perf report -i "$prof/perf.data" --stdio --no-children --pid "$otpd_pid" --sort dso,sym -g none 2>/dev/null |
        grep -v '^#' | grep -v '^$' | head -n 30 | demangle | cut -c1-170 > "$prof/perf-otpd.txt" || true
    perf report -i "$prof/perf.data" --stdio --no-children --pid "$otpd_pid" --sort dso -g none 2>/dev/null |
        grep -v '^#' | grep -v '^$' | head -n 12 > "$prof/perf-otpd-dso.txt" || true
    perf report -i "$prof/perf.data" --stdio --no-children --comm postgres --sort dso,sym -g none 2>/dev/null |
        grep -v '^#' | grep -v '^$' | head -n 25 | cut -c1-170 > "$prof/perf-postgres.txt" || true
fi

python3 - "$prof" "$run" "$before_otpd" "$after_otpd" "$before_pg" "$after_pg" "$duration" "$warmup" "$c" \
    "${PG_POOL_SIZE:-16}" <<'PY'
import json, os, sys
prof, run = sys.argv[1], json.loads(sys.argv[2])
bo, ao, bp, ap, dur, warm = map(float, sys.argv[3:9])
conns, pool = sys.argv[9], int(sys.argv[10])
load = lambda name: json.load(open(os.path.join(prof, name)))
before, after = load("stats-before.json"), load("stats-after.json")
statements = load("statements.json") or []
d = lambda group, key: after[group][key] - before[group][key]

print(f"\nWhere the time goes: PostgreSQL, one daemon, right code, {conns} connections (otpd pool_size {pool});")
print(f"an instrumented run (pg_stat_statements, track_wal_io_timing, 10 ms sampling, perf): "
      f"{run['calls_per_s']:.0f} calls/s, p50 {run['p50_us']:.0f} us, p99 {run['p99_us']:.0f} us, "
      f"{run['errors']} errors")

commits = sum(s["calls"] for s in statements if s["query"].strip().upper() == "COMMIT")
rollbacks = sum(s["calls"] for s in statements if s["query"].strip().upper() == "ROLLBACK")
total_calls = sum(s["calls"] for s in statements)
total_ms = sum(s["total_exec_time"] for s in statements)
if commits:
    print(f"\nStatements (pg_stat_statements, warm-up included): {commits} transactions committed, "
          f"{rollbacks} rolled back (serialization conflicts retried), {total_calls / commits:.2f} statements = "
          f"round trips per committed transaction; server time {total_ms * 1000 / commits:.0f} us per transaction")
    print(f"  {'calls/txn':>9} {'mean us':>8} {'share':>6}  statement")
    for s in statements:
        if s["calls"] == 0: continue
        print(f"  {s['calls'] / commits:>9.2f} {s['total_exec_time'] * 1000 / s['calls']:>8.0f} "
              f"{100 * s['total_exec_time'] / total_ms if total_ms else 0:>5.0f}%  {s['query'][:110]}")

errors, reasons, failed = 0, {}, {}
last = None
for line in open(os.path.join(prof, "postgres.log"), errors="replace"):
    body = line.split("] ", 1)[-1].strip()
    if body.startswith("ERROR:"):
        errors += 1
        last = body[6:].strip()
        reasons[last] = reasons.get(last, 0) + 1
    elif body.startswith("DETAIL:") and last and "serialize" in last:
        r = body[7:].strip()
        r = r.split(" to pivot ")[0] if "to pivot" in r else r
        reasons[" ".join(("  reason:", r))] = reasons.get(" ".join(("  reason:", r)), 0) + 1
    elif body.startswith("STATEMENT:") and last:
        q = " ".join(body[10:].split())[:90]
        failed[q] = failed.get(q, 0) + 1
        last = None
print(f"\npostgres.log during the run: {errors} errors")
for k, n in sorted(reasons.items(), key=lambda kv: -kv[1])[:8]:
    print(f"  {n:>6}  {k}")
for k, n in sorted(failed.items(), key=lambda kv: -kv[1])[:6]:
    print(f"  {n:>6}  failed statement: {k}")

xc, xr = d("db", "xact_commit"), d("db", "xact_rollback")
print(f"\npg_stat_database (otpd's database): sessions opened +{d('db', 'sessions')}, xact_commit +{xc} (the "
      f"advisory lock and unlock run outside the transaction and commit on their own), xact_rollback +{xr}, blks_hit +{d('db', 'blks_hit')}, "
      f"blks_read +{d('db', 'blks_read')}, tup_inserted +{d('db', 'tup_inserted')}, tup_updated +{d('db', 'tup_updated')}")
w = after["wal"]  # reset just before the run
if commits:
    syncs = w["wal_sync"]
    print(f"pg_stat_wal: {w['wal_records'] / commits:.1f} records, {w['wal_fpi'] / commits:.2f} full-page images, "
          f"{w['wal_bytes'] / commits / 1024:.1f} KiB per transaction; {w['wal_write']} WAL writes, {syncs} WAL fsyncs "
          f"({commits / syncs if syncs else 0:.1f} commits per fsync, "
          f"{w['wal_sync_time'] / syncs if syncs else 0:.2f} ms per fsync, {w['wal_buffers_full']} times the WAL buffers were full)")
cp = d("bgwriter", "checkpoints_timed") + d("bgwriter", "checkpoints_req")
print(f"checkpoints during the run: {cp}")

calls = run["calls_per_s"] * (dur + warm)
wall = dur + warm
print(f"\nCPU (utime+stime, warm-up included): otpd {(ao - bo) * 1e6 / calls:.0f} us per call "
      f"({100 * (ao - bo) / wall:.0f}% of a core), PostgreSQL {(ap - bp) * 1e6 / calls:.0f} us per call "
      f"({100 * (ap - bp) / wall:.0f}% of a core), load client {run['client_cpu_pct']:.0f}% of a core; "
      f"the machine has {os.cpu_count()} cores")

try:
    rows = [l.split("|") for l in open(os.path.join(prof, "activity.txt")).read().split("\n") if l.count("|") == 2]
    ticks = sum(int(n) for s, w_, n in rows if s == "#")
    if ticks:
        print(f"\notpd's server sessions, sampled {ticks} times: average number in each state "
              f"(the pool holds at most {pool}, plus the cluster-role session)")
        for s, w_, n in rows:
            if s == "#": continue
            what = {"active": "running a statement", "idle in transaction": "waiting for otpd's next statement inside a transaction",
                    "idle": "between transactions (or not leased)"}.get(s, s)
            print(f"  {int(n) / ticks:>6.2f}  {s:<20} {w_ or ('on CPU' if s == 'active' else ''):<24} {what}")
except OSError:
    pass

for name, title in (("perf-dso.txt", "perf: samples by process and object"),
                    ("perf-otpd-dso.txt", "perf: otpd's samples by object"),
                    ("perf-otpd.txt", "perf: otpd's hottest symbols (self)"),
                    ("perf-postgres.txt", "perf: postgres's hottest symbols (self)")):
    path = os.path.join(prof, name)
    if os.path.exists(path) and os.path.getsize(path):
        print(f"\n{title}")
        print(open(path).read().rstrip())
if not os.path.exists(os.path.join(prof, "perf.data")):
    print("\n" + open(os.path.join(prof, "perf-record.log")).read().strip())
PY
