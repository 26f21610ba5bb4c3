# Sourced by scripts/bench-verify.sh and scripts/bench-uniform.sh: builds otpd, otpbench and the
# C load client (release), and starts otpd in a temporary directory with the SMS budgets off
# (the preparations send tens of thousands of codes). Before sourcing, set `bench_name` and
# `default_seconds`; after, `start_otpd [EXTRA TOML]` starts the daemon. Defines: duration (the
# SECONDS environment variable, read with printenv because bash's own SECONDS counts from it,
# else default_seconds), root, say, otpd, otpbench, client, tmp. OTPD_BIN and OTPBENCH_BIN name
# binaries to use instead of building them.
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
cleanup() { [[ -n $pid ]] && kill "$pid" 2>/dev/null; wait 2>/dev/null || true; [[ ${KEEP_TMP:-0} == 1 ]] || rm -rf "$tmp"; }
trap cleanup EXIT INT TERM

# start_otpd [TOML]: otpd with synchronous=FULL, budgets and the SMS pumping breaker off (the
# preparation texts thousands of new numbers of one range and verifies only some: to the
# breaker that is a pumping run), and TOML appended.
start_otpd() {
    cat > "$tmp/otpd.toml" <<TOML
[storage]
synchronous = "full"
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
${1:-}
TOML
    (cd "$tmp" && exec "$otpd" --config otpd.toml --socket "$tmp/otpd.sock" --database "$tmp/otpd.sqlite" \
        --key-file "$tmp/otpd.key" --outbox "$tmp/outbox.jsonl" 2>"$tmp/otpd.log") &
    pid=$!
    for _ in $(seq 200); do [[ -S $tmp/otpd.sock ]] && return 0; sleep 0.05; done
    echo "otpd did not start; its log:" >&2
    cat "$tmp/otpd.log" >&2
    exit 1
}
