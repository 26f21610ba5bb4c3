#!/usr/bin/env bash
# The demo shop (`make demo`): otpd with its development SMS sender (texts go to an outbox
# file, not Twilio) and PHP's built-in web server on 127.0.0.1 with a minimal shop admin
# (clients/php/demo/index.php): a password login for a seeded admin, then every page of the
# PHP integration, and, in the demo only, a page that shows the outbox. Ctrl-C stops both.
#
# Environment:
#   OTPD_BIN       the daemon (default .build/debug/otpd; `make demo` builds it when missing)
#   DEMO_DIR       socket, database, key, outbox, logs and the user file (default ./run/demo;
#                  kept between runs, so the admin's factors survive a restart)
#   DEMO_PORT      the web server's port (default: the first free one from 8080)
#   DEMO_PASSWORD  the admin's password (default: made on the first run, kept in DEMO_DIR)
#   DEMO_READY_FILE  when set, the URL is written there once both servers answer (for tests)
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
bin=${OTPD_BIN:-$root/.build/debug/otpd}
dir=${DEMO_DIR:-$root/run/demo}
php=${PHP:-php}

[ -x "$bin" ] || { echo "demo: no otpd at $bin: run make demo (it builds one), or set OTPD_BIN" >&2; exit 1; }
command -v "$php" >/dev/null || { echo "demo: php is missing: apt-get install php-cli php-google-protobuf" >&2; exit 1; }
mkdir -p "$dir"
dir=$(cd "$dir" && pwd)

# otpd's configuration for the demo: the defaults, with an SMS budget that lets one person
# walk every page several times in an hour (the resend cooldown stays at its 30 s default,
# so "Send again" shows a real wait).
if [ ! -f "$dir/otpd.toml" ]; then
  cat > "$dir/otpd.toml" <<'EOF'
[sms]
per_account_per_hour = 40
per_phone_per_day = 100
verifications_per_phone_per_day = 40

[totp]
issuer = "otpd demo shop"
EOF
fi

# The seeded admin: user "admin", password made once and kept (mode 0600).
if [ -n "${DEMO_PASSWORD:-}" ]; then
  password=$DEMO_PASSWORD
elif [ -f "$dir/admin-password" ]; then
  password=$(cat "$dir/admin-password")
else
  password=$(head -c 12 /dev/urandom | base64 | tr -d '/+=' | head -c 12)
  (umask 077 && printf '%s' "$password" > "$dir/admin-password")
fi
DEMO_PASSWORD=$password "$php" -r 'file_put_contents($argv[1], json_encode(["admin" => password_hash(getenv("DEMO_PASSWORD"), PASSWORD_DEFAULT)]));' "$dir/users.json"
chmod 600 "$dir/users.json"

port=${DEMO_PORT:-}
if [ -z "$port" ]; then
  for candidate in $(seq 8080 8099); do
    if ! (exec 3<>"/dev/tcp/127.0.0.1/$candidate") 2>/dev/null; then port=$candidate; break; fi
  done
  [ -n "$port" ] || { echo "demo: no free port in 8080-8099: set DEMO_PORT" >&2; exit 1; }
fi

pids=()
cleanup() {
  for pid in "${pids[@]}"; do kill "$pid" 2>/dev/null || true; done
  for pid in "${pids[@]}"; do wait "$pid" 2>/dev/null || true; done
}
trap cleanup EXIT
trap 'exit 130' INT
trap 'exit 143' TERM

rm -f "$dir/otpd.sock"
"$bin" --config "$dir/otpd.toml" --socket "$dir/otpd.sock" --database "$dir/otpd.sqlite" \
  --key-file "$dir/otpd.key" --outbox "$dir/outbox.jsonl" >> "$dir/otpd.log" 2>&1 &
pids+=($!)

# Wait until otpd answers Health (at most 30 s: a loaded machine starts it slowly).
health='require $argv[1]; try { exit((new Otpd\Client\Client($argv[2], 1.0))->health()->getStatus() === "SERVING" ? 0 : 1); } catch (Throwable) { exit(1); }'
for _ in $(seq 1 300); do
  kill -0 "${pids[0]}" 2>/dev/null || { echo "demo: otpd exited; its log:" >&2; tail -20 "$dir/otpd.log" >&2; exit 1; }
  [ -S "$dir/otpd.sock" ] && "$php" -r "$health" "$root/clients/php/autoload.php" "$dir/otpd.sock" && break
  sleep 0.1
done
"$php" -r "$health" "$root/clients/php/autoload.php" "$dir/otpd.sock" || { echo "demo: otpd does not answer" >&2; exit 1; }

OTPD_DEMO=1 OTPD_DEMO_SOCKET="$dir/otpd.sock" OTPD_DEMO_OUTBOX="$dir/outbox.jsonl" OTPD_DEMO_USERS="$dir/users.json" \
  "$php" -d error_reporting=-1 -d log_errors=1 -d display_errors=0 -S "127.0.0.1:$port" -t "$root/clients/php/demo" "$root/clients/php/demo/index.php" \
  >> "$dir/php.log" 2>&1 &
pids+=($!)
for _ in $(seq 1 300); do
  (exec 3<>"/dev/tcp/127.0.0.1/$port") 2>/dev/null && break
  kill -0 "${pids[1]}" 2>/dev/null || { echo "demo: the PHP web server exited; its log:" >&2; tail -20 "$dir/php.log" >&2; exit 1; }
  sleep 0.1
done

url="http://127.0.0.1:$port/"
cat <<EOF

  otpd demo shop: $url
  sign in as:     admin / $password
  SMS outbox:     ${url}outbox (demo only: the texts otpd "sends", with their codes)
  files:          $dir (otpd.log, php.log, outbox.jsonl; delete the directory to start afresh)

  Ctrl-C stops otpd and the web server.
EOF
[ -z "${DEMO_READY_FILE:-}" ] || printf '%s\n' "$url" > "$DEMO_READY_FILE"
wait -n "${pids[@]}" || true
echo "demo: a server exited; see $dir/otpd.log and $dir/php.log" >&2
exit 1
