# Sourced by scripts/bench-verify.sh and scripts/bench-uniform.sh: builds otpd, otpbench and the
# C load client (release), and starts otpd in a temporary directory with the SMS budgets off
# (the preparations send tens of thousands of codes). Before sourcing, set `bench_name` and
# `default_seconds`; after, `start_otpd [EXTRA TOML]` starts the daemon in $tmp, and
# `start_daemon DIR [STORAGE TOML] [EXTRA TOML]` one more in DIR (for PostgreSQL: the storage
# lines go into the `[storage]` table), and `start_on_large_copy DATABASE DIR` one on a copy of
# the 1 M-account database (made first when missing). Defines: duration (the SECONDS environment variable, read
# with printenv because bash's own SECONDS counts from it, else default_seconds), root, say,
# otpd, otpbench, client, tmp, pids and daemon_pid (the daemons started), cleanup_hooks (functions the exit
# handler runs after the daemons are stopped, before $tmp is removed). OTPD_BIN and
# OTPBENCH_BIN name binaries to use instead of building them.
duration=$(printenv SECONDS || true)
duration=${duration:-$default_seconds}
root=$(cd -- "$(dirname -- "${BASH_SOURCE[0]}")/.." && pwd -P)
say() { printf '==> %s\n' "$*" >&2; }

say "building (release)"
make -s -C "$root/Benchmarks/baseline" baseline-client
# OTPD_BIN / OTPBENCH_BIN: use these binaries instead of building them.
if [[ -z ${OTPD_BIN:-} ]]; then (cd "$root" && swift build -c release --product otpd >/dev/null); fi
if [[ -z ${OTPBENCH_BIN:-} ]]; then (cd "$root" && swift build -c release --product otpbench >/dev/null); fi
otpd=${OTPD_BIN:-$root/.build/release/otpd}
otpbench=${OTPBENCH_BIN:-$root/.build/release/otpbench}
client=$root/Benchmarks/baseline/baseline-client

tmp=$(mktemp -d "/tmp/otpd-${bench_name}.XXXXXX")
pid=""
pids=()
declare -A daemon_pid  # DIR -> the pid of the otpd started there
cleanup_hooks=()
cleanup() {
    local p h
    for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done
    wait 2>/dev/null || true
    for h in "${cleanup_hooks[@]}"; do "$h" || true; done
    [[ ${KEEP_TMP:-0} == 1 ]] || rm -rf "$tmp"
}
trap cleanup EXIT INT TERM

# start_otpd [TOML]: otpd in $tmp (see start_daemon), with TOML appended.
start_otpd() {
    start_daemon "$tmp" "" "${1:-}"
    pid=${pids[-1]}
}

# start_daemon DIR [STORAGE] [TOML]: otpd in DIR (socket DIR/otpd.sock, database DIR/otpd.sqlite,
# key DIR/otpd.key, outbox DIR/outbox.jsonl, log DIR/otpd.log) with synchronous=FULL, budgets
# and the SMS pumping breaker off (the preparation texts thousands of new numbers of one range
# and verifies only some: to the breaker that is a pumping run), STORAGE added to the
# [storage] table and TOML appended. Returns once the socket is there (otpd opens its store
# first: for PostgreSQL, once connected and migrated).
start_daemon() {
    local dir=$1
    mkdir -p "$dir"
    cat > "$dir/otpd.toml" <<TOML
[storage]
synchronous = "full"
${2:-}
[log]
level = "warning"
[sms]
resend_cooldown_seconds = 0
per_account_per_hour = 1000
per_phone_per_day = 1000
verifications_per_phone_per_day = 1000
per_country_per_hour = 0
global_per_minute = 0
[sms_breaker]
enabled = false
${3:-}
TOML
    (cd "$dir" && exec "$otpd" --config otpd.toml --socket "$dir/otpd.sock" --database "$dir/otpd.sqlite" \
        --key-file "$dir/otpd.key" --outbox "$dir/outbox.jsonl" 2>"$dir/otpd.log") &
    pids+=($!)
    daemon_pid[$dir]=$!
    for _ in $(seq 600); do [[ -S $dir/otpd.sock ]] && return 0; sleep 0.05; done
    echo "otpd did not start in $dir; its log:" >&2
    cat "$dir/otpd.log" >&2
    exit 1
}

# start_on_large_copy DATABASE DIR: otpd in DIR (see start_daemon) on a copy of DATABASE and
# its key (DATABASE.key), which scripts/make-large-db.py makes first when it is missing (1 M
# accounts, 10 M audit events: a few minutes and about 1 GB).
start_on_large_copy() {
    local database=$1 dir=$2
    if [[ ! -f $database ]]; then
        say "making $database once (1 M accounts, 10 M events: a few minutes)"
        mkdir -p "$(dirname -- "$database")"
        python3 "$root/scripts/make-large-db.py" --otpd "$otpd" --out "$database" >&2
    fi
    say "starting otpd on a copy of $database"
    mkdir -p "$dir"
    cp "$database" "$dir/otpd.sqlite"
    cp "$database.key" "$dir/otpd.key"
    start_daemon "$dir"
}
