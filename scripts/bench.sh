#!/usr/bin/env bash
# Benchmarks otpd against a C echo server speaking the same framing (the baseline).
#
# Builds Benchmarks/baseline (echo server + load client), otpd and Benchmarks/nio-echo (release;
# the same echo on SwiftNIO, set up as otpd sets NIO up), starts them on temporary sockets,
# drives each with the same load client in four scenarios and prints a table: calls/s, the
# ratios to the baseline, p50/p99 latency, and each server's CPU time per call. nio-echo splits
# otpd's distance from the baseline into what SwiftNIO costs and what otpd's own work costs.
# The servers are killed on exit.
#
# The machines are shared and the baseline alone swings by 25 % from one run to the next, so
# each scenario runs ROUNDS times, the servers one after the other in every round, and the
# tables give medians: a ratio is the median of the per-round ratios to the baseline (with their
# range), each measured against the baseline run just before it. CPU per call (user + system time of the server process over the whole
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
#   NIO_ECHO_BIN=path   use this nio-echo binary instead of building one
#   SKIP_OTPD=1         baseline only (no Swift build, no otpd or nio-echo)
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
nio_echo=""
if [[ ${SKIP_OTPD:-0} != 1 ]]; then
    bin_path=""
    for product in otpd nio-echo; do
        variable=OTPD_BIN
        [[ $product == nio-echo ]] && variable=NIO_ECHO_BIN
        if [[ -z ${!variable:-} ]]; then
            say "building $product (release)"
            (cd "$root" && swift build -c release --product "$product")
            bin_path=${bin_path:-$(cd "$root" && swift build -c release --show-bin-path)}
        fi
    done
    otpd=${OTPD_BIN:-$bin_path/otpd}
    nio_echo=${NIO_ECHO_BIN:-$bin_path/nio-echo}
    for binary in "$otpd" "$nio_echo"; do
        if [[ ! -x $binary ]]; then
            echo "bench.sh: no executable at $binary" >&2
            exit 1
        fi
    done
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

# servers: name|socket|pid of each server measured, the baseline first.
servers=("baseline|$echo_sock|${pids[0]}")
if [[ -n $otpd ]]; then
    nio_sock=$tmp/nio.sock
    "$nio_echo" --socket "$nio_sock" 2>"$tmp/nio.log" &
    pids+=($!)
    wait_for_socket "$nio_sock" "${pids[-1]}" "$tmp/nio.log"
    servers+=("nio-echo|$nio_sock|${pids[-1]}")
    say "nio-echo ready on $nio_sock"

    otpd_sock=$tmp/otpd.sock
    mkdir -m 0700 "$tmp/otpd"
    # In its own directory so the default SMS outbox and any relative path stay inside $tmp.
    (cd "$tmp/otpd" && exec "$otpd" --socket "$otpd_sock" --database "$tmp/otpd/otpd.sqlite" \
        --key-file "$tmp/otpd/otpd.key" --log-level warning) >"$tmp/otpd.log" 2>&1 &
    pids+=($!)
    wait_for_socket "$otpd_sock" "${pids[-1]}" "$tmp/otpd.log"
    servers+=("otpd|$otpd_sock|${pids[-1]}")
    say "otpd ready on $otpd_sock"
fi

# ---- runs ------------------------------------------------------------------------------------
# field LINE KEY: the value of KEY=value in the load client's output line.
field() { awk -v k="$2" '{ for (i = 1; i <= NF; i++) if (index($i, k "=") == 1) { print substr($i, length(k) + 2); exit } }' <<<"$1"; }

# cpu_ticks PID: user + system clock ticks the process has used so far.
cpu_ticks() { awk '{ print $14 + $15 }' "/proc/$1/stat"; }
ticks_per_second=$(getconf CLK_TCK)

# run SOCKET PID ARGS...: one load-client run; prints its output line followed by
# cpu_us=<server CPU microseconds per call>; a failed run prints errors=failed.
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
        echo "calls/s=0 p50_us=- p99_us=- errors=failed cpu_us=-"
        return
    fi
    rate=$(field "$line" calls/s)
    # Calls answered over the whole run, warm-up included, at the measured rate.
    echo "$line cpu_us=$(awk -v t=$((after - before)) -v hz="$ticks_per_second" -v r="$rate" \
        -v s="$duration" -v w="$warmup" 'BEGIN { n = r * (s + w); if (n > 0) printf "%.2f", t * 1e6 / hz / n; else print "-" }')"
}

# median FORMAT VALUES...: the median of numbers, printed with printf FORMAT ("-" when none).
median() {
    local format=$1
    shift
    printf '%s\n' "$@" | grep -E '^[0-9.]+$' | sort -g | awk -v f="$format" '{ v[NR] = $1 } END {
        if (NR == 0) { print "-"; exit }
        m = NR % 2 ? v[(NR + 1) / 2] : (v[NR / 2] + v[NR / 2 + 1]) / 2
        printf f "\n", m }'
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
    # Per server (by index into servers): rates, p50s, p99s, CPU per call, ratios to the
    # baseline of the same round, and the number of runs with errors.
    declare -A rates=() p50s=() p99s=() cpus=() ratios=() errs=()
    for round in $(seq "$rounds"); do
        base_rate=""
        for i in "${!servers[@]}"; do
            IFS='|' read -r server sock pid <<<"${servers[$i]}"
            if ! kill -0 "$pid" 2>/dev/null; then
                echo "bench.sh: $server is no longer running; logs in $tmp" >&2
                cat "$tmp/otpd.log" "$tmp/nio.log" >&2 2>/dev/null || true
                exit 1
            fi
            say "$name, round $round/$rounds: $server"
            line=$(run "$sock" "$pid" "${args[@]}")
            echo "    $line" >&2
            rate=$(field "$line" calls/s)
            rates[$i]+="$rate " p50s[$i]+="$(field "$line" p50_us) " p99s[$i]+="$(field "$line" p99_us) "
            cpus[$i]+="$(field "$line" cpu_us) "
            # (run's own `failed=1` is lost in the $(...) subshell; the line says it too.)
            if [[ $(field "$line" errors) != 0 ]]; then
                errs[$i]=$((${errs[$i]:-0} + 1))
                failed=1
            fi
            if [[ $i == 0 ]]; then
                base_rate=$rate
            else
                ratios[$i]+="$(awk -v o="$rate" -v b="$base_rate" 'BEGIN { if (b > 0) printf "%.3f", o / b; else print "-" }') "
            fi
        done
    done
    row="$name"
    for i in "${!servers[@]}"; do
        # shellcheck disable=SC2086 # the lists are space-separated numbers
        cell="$(median %.0f ${rates[$i]})"
        if [[ $i != 0 ]]; then
            # shellcheck disable=SC2086
            cell+=" ($(median %.3f ${ratios[$i]}), $(range ${ratios[$i]}))"
        fi
        # shellcheck disable=SC2086
        row+="|$cell|$(median %.0f ${p50s[$i]})/$(median %.0f ${p99s[$i]})|$(median %.2f ${cpus[$i]})|${errs[$i]:-0}"
    done
    rows+=("$row")
    unset rates p50s p99s cpus ratios errs
done

# ---- table -----------------------------------------------------------------------------------
echo
printf 'otpd vs C echo baseline: median of %s interleaved runs of %ss after %ss warm-up, method %s, %s CPUs\n' \
    "$rounds" "$duration" "$warmup" "$method" "$(getconf _NPROCESSORS_ONLN)"
for i in "${!servers[@]}"; do
    server=${servers[$i]%%|*}
    echo
    if [[ $i == 0 ]]; then
        echo "$server (C echo server)"
    else
        echo "$server (calls/s: median, then median and range of the per-round ratio to the baseline)"
    fi
    fmt='  %-24s %36s %18s %12s %8s\n'
    printf "$fmt" "scenario" "calls/s" "p50/p99 us" "cpu us/call" "errors"
    for r in "${rows[@]}"; do
        IFS='|' read -r -a cells <<<"$r"
        printf "$fmt" "${cells[0]}" "${cells[$((1 + 4 * i))]}" "${cells[$((2 + 4 * i))]}" \
            "${cells[$((3 + 4 * i))]}" "${cells[$((4 + 4 * i))]}"
    done
done
echo
echo "(cpu us/call: the server's user + system time over the whole run divided by the calls it answered;"
echo " errors: runs with status, protocol or connection errors)"

if [[ -n $otpd ]] && [[ -s $tmp/otpd.log ]]; then
    echo
    echo "otpd log (warnings and above):"
    sed 's/^/  /' "$tmp/otpd.log" | tail -n 20
fi
exit "$failed"
