#!/usr/bin/env bash
# Benchmarks otpd against a C echo server speaking the same framing (the baseline).
#
# Builds Benchmarks/baseline (echo server + load client) and otpd (release), starts both on
# temporary sockets, drives each with the same load client in four scenarios and prints a table:
# calls/s, the ratio otpd/baseline, p50/p99 latency, and each server's CPU time per call. Both
# servers are killed on exit.
#
# The machines are shared and the baseline alone swings by 25 % from one run to the next, so
# each scenario runs ROUNDS times, baseline and otpd alternately, and the table gives medians:
# the ratio column is the median of the per-round ratios (with their range), each round's pair
# measured back to back. CPU per call (user + system time of the server process over the whole
# run, warm-up included, divided by the calls it answered) moves much less with the machine's
# noise than calls/s does, and says how much work each server does for one call.
#
#   scripts/bench.sh                  # from any directory
#   SECONDS=10 ROUNDS=5 scripts/bench.sh
#
# Environment:
#   SECONDS=5           measured seconds per run (read from the environment at start-up; bash's own
#                       SECONDS counter is not used)
#   ROUNDS=3            runs per scenario and server, interleaved
#   SCENARIOS=all       or a comma-separated subset of: 1,8,64,64x1 (connections; 64x1 is one
#                       connection with 64 calls in flight)
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
rounds=${ROUNDS:-3}
scenario_filter=${SCENARIOS:-all}
method=${METHOD:-/otp.v1.TwoFactor/Health}
baseline_threads=${BASELINE_THREADS:-1}
is_number='^[0-9]+([.][0-9]+)?$'
if ! [[ $duration =~ $is_number && $warmup =~ $is_number && $baseline_threads =~ ^[1-9][0-9]*$ &&
    $rounds =~ ^[1-9][0-9]*$ ]]; then
    echo "bench.sh: SECONDS, WARMUP, ROUNDS and BASELINE_THREADS must be numbers" >&2
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

# cpu_ticks PID: user + system clock ticks the process has used so far.
cpu_ticks() { awk '{ print $14 + $15 }' "/proc/$1/stat"; }
ticks_per_second=$(getconf CLK_TCK)

# run SOCKET PID ARGS...: one load-client run; prints its output line followed by
# cpu_us=<server CPU microseconds per call> (exit status 2 of the client = errors seen).
failed=0
run() {
    local sock=$1 pid=$2 line rc=0 before after rate
    shift 2
    before=$(cpu_ticks "$pid")
    line=$("$load_client" --socket "$sock" --seconds "$duration" --warmup "$warmup" --method "$method" \
        ${CLIENT_THREADS:+--threads "$CLIENT_THREADS"} "$@") || rc=$?
    after=$(cpu_ticks "$pid")
    if [[ $rc -ne 0 && $rc -ne 2 ]] || [[ -z $line ]]; then
        echo "bench.sh: load client failed (exit $rc) on $sock $*" >&2
        failed=1
        echo "calls/s=0 p50_us=- p99_us=- errors=failed cpu_us=-"
        return
    fi
    [[ $rc -eq 2 ]] && failed=1
    rate=$(field "$line" calls/s)
    # Calls answered over the whole run, warm-up included, at the measured rate.
    echo "$line cpu_us=$(awk -v t=$((after - before)) -v hz="$ticks_per_second" -v r="$rate" \
        -v s="$duration" -v w="$warmup" 'BEGIN { n = r * (s + w); if (n > 0) printf "%.2f", t * 1e6 / hz / n; else print "-" }')"
}

# median VALUES...: the median of numbers ("-" when there are none).
median() {
    printf '%s\n' "$@" | grep -E '^[0-9.]+$' | sort -g |
        awk '{ v[NR] = $1 } END { if (NR == 0) print "-"; else if (NR % 2) print v[(NR + 1) / 2]; else print (v[NR / 2] + v[NR / 2 + 1]) / 2 }'
}

# range VALUES...: "min–max" of numbers.
range() {
    printf '%s\n' "$@" | grep -E '^[0-9.]+$' | sort -g | awk 'NR == 1 { lo = $1 } { hi = $1 } END { if (NR) printf "%s-%s", lo, hi; else print "-" }'
}

scenarios=("1|1 connection|--connections 1"
    "8|8 connections|--connections 8"
    "64|64 connections|--connections 64"
    "64x1|1 conn x 64 in flight|--connections 1 --inflight 64")

rows=()
for s in "${scenarios[@]}"; do
    IFS='|' read -r key name spec <<<"$s"
    if [[ $scenario_filter != all && ",$scenario_filter," != *",$key,"* ]]; then continue; fi
    read -r -a args <<<"$spec"
    b_rates=() b_p50=() b_p99=() b_cpu=() b_err=0
    o_rates=() o_p50=() o_p99=() o_cpu=() o_err=0 ratios=()
    for round in $(seq "$rounds"); do
        say "$name, round $round/$rounds: baseline"
        b=$(run "$echo_sock" "${pids[0]}" "${args[@]}")
        echo "    $b" >&2
        b_rates+=("$(field "$b" calls/s)") b_p50+=("$(field "$b" p50_us)") b_p99+=("$(field "$b" p99_us)")
        b_cpu+=("$(field "$b" cpu_us)")
        [[ $(field "$b" errors) == 0 ]] || b_err=$((b_err + 1))
        if [[ -n $otpd ]]; then
            if ! kill -0 "${pids[1]}" 2>/dev/null; then
                echo "bench.sh: otpd is no longer running; its log:" >&2
                cat "$tmp/otpd.log" >&2
                exit 1
            fi
            say "$name, round $round/$rounds: otpd"
            o=$(run "$otpd_sock" "${pids[1]}" "${args[@]}")
            echo "    $o" >&2
            o_rates+=("$(field "$o" calls/s)") o_p50+=("$(field "$o" p50_us)") o_p99+=("$(field "$o" p99_us)")
            o_cpu+=("$(field "$o" cpu_us)")
            [[ $(field "$o" errors) == 0 ]] || o_err=$((o_err + 1))
            ratios+=("$(awk -v o="$(field "$o" calls/s)" -v b="$(field "$b" calls/s)" \
                'BEGIN { if (b > 0) printf "%.3f", o / b; else print "-" }')")
        fi
    done
    brate=$(median "${b_rates[@]}")
    blat="$(median "${b_p50[@]}")/$(median "${b_p99[@]}")"
    bcpu=$(median "${b_cpu[@]}")
    if [[ -n $otpd ]]; then
        orate=$(median "${o_rates[@]}")
        olat="$(median "${o_p50[@]}")/$(median "${o_p99[@]}")"
        ocpu=$(median "${o_cpu[@]}")
        ratio="$(median "${ratios[@]}") ($(range "${ratios[@]}"))"
    else
        orate="-" olat="-" ocpu="-" ratio="-"
    fi
    rows+=("$name|$brate|$orate|$ratio|$blat|$olat|$bcpu/$ocpu|$b_err/$o_err")
done

# ---- table -----------------------------------------------------------------------------------
echo
printf 'otpd vs C echo baseline: median of %s interleaved runs of %ss after %ss warm-up, method %s, %s CPUs\n' \
    "$rounds" "$duration" "$warmup" "$method" "$(getconf _NPROCESSORS_ONLN)"
fmt='%-22s %12s %12s %22s %18s %18s %14s %10s\n'
printf "$fmt" "scenario" "baseline c/s" "otpd c/s" "ratio (range)" "base p50/p99 us" "otpd p50/p99 us" "cpu us/call" "err runs"
for r in "${rows[@]}"; do
    IFS='|' read -r name brate orate ratio blat olat cpu errs <<<"$r"
    printf "$fmt" "$name" "$brate" "$orate" "$ratio" "$blat" "$olat" "$cpu" "$errs"
done
echo "(ratio: median of the per-round otpd/baseline ratios; cpu us/call: server CPU time per call, baseline/otpd)"

if [[ -n $otpd ]] && [[ -s $tmp/otpd.log ]]; then
    echo
    echo "otpd log (warnings and above):"
    sed 's/^/  /' "$tmp/otpd.log" | tail -n 20
fi
exit "$failed"
