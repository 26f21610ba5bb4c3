#!/usr/bin/env bash
# Idle memory: otpd's resident memory (VmRSS, and its anonymous and file-backed parts) on the
# default configuration, measured on two daemons side by side in one run: one that gives back
# the pages it does not use once quiet (the default, release_memory_after_idle_seconds = 10)
# and one that never does (= 0, the baseline). For each: fresh after start-up, once quiet,
# right after a spell of calls (1,000 accounts prepared with texted codes, then 3 s of Health
# and of wrong-code Verify), and once quiet again. Then where the quiet default daemon's
# memory is, by mapping, and what the first calls after a release cost (the slowest of 20
# calls in the first second on a new connection: Health, then wrong-code Verify). A tool that
# prints figures, run by hand.
#
#   scripts/idle-memory.sh                  # release build (built if missing)
#   OTPD_BIN=path OTPBENCH_BIN=path scripts/idle-memory.sh
set -euo pipefail
default_seconds=3
bench_name=idle-memory
source "$(dirname -- "${BASH_SOURCE[0]}")/verify-bench-common.sh"

memory() { # PID -> "VmRSS anon file" in MiB
    awk '/^VmRSS:/ { r = $2 } /^RssAnon:/ { a = $2 } /^RssFile:/ { f = $2 }
         END { printf "%6.1f %6.1f %6.1f", r / 1024, a / 1024, f / 1024 }' "/proc/$1/status"
}
# The default configuration but for the SMS budgets and breaker, which would refuse the
# preparation's thousand texts (start_daemon's synchronous=FULL and log level are not wanted).
sms_off=$'[sms]\nresend_cooldown_seconds = 0\nper_account_per_hour = 1000\nper_phone_per_day = 1000
verifications_per_phone_per_day = 1000\nper_country_per_hour = 0\nglobal_per_minute = 0
[sms_breaker]\nenabled = false'
start_plain() { # DIR [TOML]
    mkdir -p "$1"
    printf '%s\n%s\n' "${2:-}" "$sms_off" >"$1/otpd.toml"
    (cd "$1" && exec "$otpd" --config otpd.toml --socket "$1/otpd.sock" --database "$1/otpd.sqlite" \
        --key-file "$1/otpd.key" --outbox "$1/outbox.jsonl" --log-level debug 2>"$1/otpd.log") &
    pids+=($!)
    daemon_pid[$1]=$!
    for _ in $(seq 600); do [[ -S $1/otpd.sock ]] && return 0; sleep 0.05; done
    echo "otpd did not start in $1" >&2
    exit 1
}
start_plain "$tmp/release" ""
start_plain "$tmp/baseline" $'[server]\nrelease_memory_after_idle_seconds = 0'
dirs=("$tmp/release" "$tmp/baseline")
names=("release after 10 s quiet (default)" "never release (baseline)")

declare -A fresh quiet busy quiet_again
for d in "${dirs[@]}"; do fresh[$d]=$(memory "${daemon_pid[$d]}"); done
say "waiting 13 s for the daemons to be quiet for 10 s"
sleep 13
for d in "${dirs[@]}"; do quiet[$d]=$(memory "${daemon_pid[$d]}"); done

say "a spell of calls on each: 1,000 accounts prepared, then 3 s of Health and of wrong-code Verify"
for d in "${dirs[@]}"; do
    "$otpbench" --socket "$d/otpd.sock" --outbox "$d/outbox.jsonl" --count 1000 --prefix idle --wrong "$d/wrong.hex" \
        >/dev/null
    "$client" --socket "$d/otpd.sock" --connections 8 --seconds "$duration" --warmup 0 --json >/dev/null
    "$client" --socket "$d/otpd.sock" --method /otp.v1.TwoFactor/Verify --payload-file "$d/wrong.hex" \
        --count-rejections --connections 8 --seconds "$duration" --warmup 0 --json >/dev/null
    busy[$d]=$(memory "${daemon_pid[$d]}")
done
say "waiting 13 s for the daemons to be quiet again"
sleep 13
for d in "${dirs[@]}"; do quiet_again[$d]=$(memory "${daemon_pid[$d]}"); done

printf '\n%-36s | %-20s | %-20s | %-20s | %-20s\n' "resident MiB (VmRSS anon file)" "fresh" "quiet 13 s" \
    "after the calls" "quiet again"
for i in "${!dirs[@]}"; do
    d=${dirs[$i]}
    printf '%-36s | %-20s | %-20s | %-20s | %-20s\n' "${names[$i]}" "${fresh[$d]}" "${quiet[$d]}" "${busy[$d]}" \
        "${quiet_again[$d]}"
done

printf '\nwhere the quiet default daemon'"'"'s memory is (resident MiB by mapping, the largest 12):\n'
python3 - "${daemon_pid[$tmp/release]}" <<'PY'
import collections, re, sys
resident, anonymous = collections.Counter(), collections.Counter()
name = None
for line in open(f"/proc/{sys.argv[1]}/smaps"):
    header = re.match(r"^[0-9a-f]+-[0-9a-f]+ (\S+) \S+ \S+ \S+\s*(.*)$", line)
    if header:
        name = f"{(header.group(2) or '[anonymous]').split('/')[-1]} {header.group(1)}"
    elif line.startswith("Rss:"):
        resident[name] += int(line.split()[1])
    elif line.startswith("Anonymous:"):
        anonymous[name] += int(line.split()[1])
for name, kib in resident.most_common(12):
    print(f"  {kib / 1024:6.2f}  (anonymous {anonymous[name] / 1024:5.2f})  {name}")
PY

slowest() { # DIR [load-client flags] -> the slowest of 20 calls in 1 s on a new connection, us
    local d=$1
    shift
    "$client" --socket "$d/otpd.sock" --connections 1 --seconds 1 --rate 20 --warmup 0 --json "$@" 2>/dev/null |
        python3 -c 'import json,sys; print(json.load(sys.stdin)["max_us"])' || echo "?"
}
printf '\nthe first calls after a release (the slowest of 20 calls in 1 s on a new connection, us;\n'
printf 'Health first, then Verify with a wrong code):\n'
for i in "${!dirs[@]}"; do
    d=${dirs[$i]}
    health=$(slowest "$d")
    verify=$(slowest "$d" --method /otp.v1.TwoFactor/Verify --payload-file "$d/wrong.hex" --count-rejections)
    printf '  %-36s Health %8s   Verify %8s\n' "${names[$i]}" "$health" "$verify"
done
printf '\nreleases logged by the default daemon: %s\n' "$(grep -c 'idle: memory released' "$tmp/release/otpd.log" || true)"
