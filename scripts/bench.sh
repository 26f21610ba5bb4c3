#!/usr/bin/env bash
# Benchmarks otpd against a C echo server speaking the same framing (the baseline).
#
# Builds Benchmarks/baseline (echo server + load client) and otpd (release), starts both on
# temporary sockets, drives each with the same load client in four scenarios and prints a table:
# calls/s, the ratio otpd/baseline, and p50/p99 latency. Both servers are killed on exit.
#
#   scripts/bench.sh                  # from any directory
#   SECONDS=10 scripts/bench.sh       # measured seconds per run (default 5)
#
# Environment:
#   SECONDS=5           measured seconds per run (read from the environment at start-up; bash's own
#                       SECONDS counter is not used)
#   WARMUP=1            unmeasured seconds before each run
#   METHOD=/otp.v1.TwoFactor/Health   the RPC every call makes
#   BASELINE_THREADS=1  event-loop threads of the echo server
#   CLIENT_THREADS=     event loops of the load client (default: half the CPUs, at least 1)
#   OTPD_BIN=path       use this otpd binary instead of building one
#   SKIP_OTPD=1         baseline only (no Swift build, otpd columns empty)
#   KEEP_TMP=1          keep the temporary directory (logs, database) for inspection
#
# Exit status: 0 when every run completed without errors, 1 otherwise.
set -euo pipefail

# Capture the requested duration before bash's SECONDS counter can move.
duration=$(printenv SECONDS || true)
duration=${duration:-5}
warmup=${WARMUP:-1}
method=${METHOD:-/otp.v1.TwoFactor/Health}
baseline_threads=${BASELINE_THREADS:-1}
is_number='^[0-9]+([.][0-9]+)?$'
if ! [[ $duration =~ $is_number && $warmup =~ $is_number && $baseline_threads =~ ^[1-9][0-9]*$ ]]; then
    echo "bench.sh: SECONDS, WARMUP and BASELINE_THREADS must be numbers" >&2
    exit 2
fi

script_dir=$(cd -- "$(dirname -- "${BASH_SOURCE[0]}")" && pwd -P)
root=$(cd -- "$script_dir/.." && pwd -P)
baseline_dir=$root/Benchmarks/baseline

say() { printf '==> %s\n' "$*" >&2; }

# ---- build -----------------------------------------------------------------------------------
say "building the C baseline"
make -s -C "$baseline_dir" baseline-server baseline-client
echo_server=$baseline_dir/baseline-server
load_client=$baseline_dir/baseline-client

otpd=""
if [[ ${SKIP_OTPD:-0} != 1 ]]; then
    if [[ -n ${OTPD_BIN:-} ]]; then
        otpd=$OTPD_BIN
    else
        say "building otpd (release)"
        (cd "$root" && swift build -c release --product otpd)
        otpd=$(cd "$root" && swift build -c release --show-bin-path)/otpd
    fi
    if [[ ! -x $otpd ]]; then
        echo "bench.sh: no otpd executable at $otpd" >&2
        exit 1
    fi
fi

# ---- servers ---------------------------------------------------------------------------------
# Short base path: a Unix socket path must fit in 108 bytes.
tmp=$(mktemp -d "${TMPDIR:-/tmp}/otpd-bench.XXXXXX")
pids=()
cleanup() {
    local pid
    for pid in "${pids[@]}"; do
        kill -TERM "$pid" 2>/dev/null || true
    done
    for pid in "${pids[@]}"; do
        # Give a graceful shutdown a few seconds, then insist.
        for _ in $(seq 50); do kill -0 "$pid" 2>/dev/null || break; sleep 0.1; done
        kill -KILL "$pid" 2>/dev/null || true
        wait "$pid" 2>/dev/null || true
    done
    if [[ ${KEEP_TMP:-0} == 1 ]]; then
        say "kept $tmp"
    else
        rm -rf -- "$tmp"
    fi
}
trap cleanup EXIT
trap 'exit 130' INT
trap 'exit 143' TERM

# wait_for_socket PATH PID LOG: until PATH is a socket, or fail if PID died or 60 s passed.
wait_for_socket() {
    local path=$1 pid=$2 log=$3
    for _ in $(seq 600); do
        if [[ -S $path ]]; then
            sleep 0.2 # bind() creates the file just before listen(): give it a moment
            return 0
        fi
        if ! kill -0 "$pid" 2>/dev/null; then
            echo "bench.sh: server exited before creating $path; its log:" >&2
            cat "$log" >&2 || true
            exit 1
        fi
        sleep 0.1
    done
    echo "bench.sh: timed out waiting for $path; log:" >&2
    cat "$log" >&2 || true
    exit 1
}

echo_sock=$tmp/echo.sock
"$echo_server" --socket "$echo_sock" --threads "$baseline_threads" 2>"$tmp/echo.log" &
pids+=($!)
wait_for_socket "$echo_sock" "${pids[-1]}" "$tmp/echo.log"
say "echo server ready on $echo_sock"

otpd_sock=$tmp/otpd.sock
if [[ -n $otpd ]]; then
    mkdir -m 0700 "$tmp/otpd"
    # In its own directory so the default SMS outbox and any relative path stay inside $tmp.
    (cd "$tmp/otpd" && exec "$otpd" --socket "$otpd_sock" --database "$tmp/otpd/otpd.sqlite" \
        --key-file "$tmp/otpd/otpd.key" --log-level warning) >"$tmp/otpd.log" 2>&1 &
    pids+=($!)
    wait_for_socket "$otpd_sock" "${pids[-1]}" "$tmp/otpd.log"
    say "otpd ready on $otpd_sock"
fi

# ---- runs ------------------------------------------------------------------------------------
# field LINE KEY: the value of KEY=value in the load client's output line.
field() { awk -v k="$2" '{ for (i = 1; i <= NF; i++) if (index($i, k "=") == 1) { print substr($i, length(k) + 2); exit } }' <<<"$1"; }

# run SOCKET ARGS...: one load-client run; prints its output line (exit status 2 = errors seen).
failed=0
run() {
    local sock=$1 line rc=0
    shift
    line=$("$load_client" --socket "$sock" --seconds "$duration" --warmup "$warmup" --method "$method" \
        ${CLIENT_THREADS:+--threads "$CLIENT_THREADS"} "$@") || rc=$?
    if [[ $rc -ne 0 && $rc -ne 2 ]] || [[ -z $line ]]; then
        echo "bench.sh: load client failed (exit $rc) on $sock $*" >&2
        failed=1
        echo "calls/s=0 p50_us=- p99_us=- errors=failed"
        return
    fi
    [[ $rc -eq 2 ]] && failed=1
    echo "$line"
}

scenarios=("1 connection|--connections 1"
    "8 connections|--connections 8"
    "64 connections|--connections 64"
    "1 conn x 64 in flight|--connections 1 --inflight 64")

rows=()
for s in "${scenarios[@]}"; do
    name=${s%%|*}
    read -r -a args <<<"${s#*|}"
    say "$name: baseline"
    b=$(run "$echo_sock" "${args[@]}")
    echo "    $b" >&2
    o=""
    if [[ -n $otpd ]]; then
        if ! kill -0 "${pids[1]}" 2>/dev/null; then
            echo "bench.sh: otpd is no longer running; its log:" >&2
            cat "$tmp/otpd.log" >&2
            exit 1
        fi
        say "$name: otpd"
        o=$(run "$otpd_sock" "${args[@]}")
        echo "    $o" >&2
    fi
    rows+=("$name|$b|$o")
done

# ---- table -----------------------------------------------------------------------------------
echo
printf 'otpd vs C echo baseline: %ss per run after %ss warm-up, method %s, %s CPUs\n' \
    "$duration" "$warmup" "$method" "$(getconf _NPROCESSORS_ONLN)"
fmt='%-22s %14s %14s %8s %20s %20s %10s\n'
printf "$fmt" "scenario" "baseline c/s" "otpd c/s" "ratio" "baseline p50/p99 us" "otpd p50/p99 us" "errors b/o"
for r in "${rows[@]}"; do
    IFS='|' read -r name b o <<<"$r"
    brate=$(field "$b" calls/s)
    blat="$(field "$b" p50_us)/$(field "$b" p99_us)"
    berr=$(field "$b" errors)
    if [[ -n $o ]]; then
        orate=$(field "$o" calls/s)
        olat="$(field "$o" p50_us)/$(field "$o" p99_us)"
        oerr=$(field "$o" errors)
        ratio=$(awk -v o="$orate" -v b="$brate" 'BEGIN { if (b > 0) printf "%.3f", o / b; else print "-" }')
    else
        orate="-" olat="-" oerr="-" ratio="-"
    fi
    printf "$fmt" "$name" "$brate" "$orate" "$ratio" "$blat" "$olat" "$berr/$oerr"
done

if [[ -n $otpd ]] && [[ -s $tmp/otpd.log ]]; then
    echo
    echo "otpd log (warnings and above):"
    sed 's/^/  /' "$tmp/otpd.log" | tail -n 20
fi
exit "$failed"
