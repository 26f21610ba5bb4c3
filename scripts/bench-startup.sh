#!/usr/bin/env bash
# Measures otpd's start-up to ready: from exec to READY=1 (sent to a NOTIFY_SOCKET this script
# listens on, as systemd would) and to the first answered Health, the median (and the range)
# over ROUNDS starts (default 5), on a small database and on DATABASE (made once by
# scripts/make-large-db.py; its key is DATABASE.key).
#
#   scripts/bench-startup.sh /var/tmp/otpd-large/otpd.sqlite
#   OTPD=.build/release/otpd ROUNDS=7 COLD=1 scripts/bench-startup.sh /var/tmp/otpd-large/otpd.sqlite
#
# Each database is copied once into a temporary directory and every round starts otpd on that
# copy and stops it with SIGTERM (a clean shutdown). Warm by default (the file is in the OS's
# page cache after the copy); COLD=1 drops the copy's pages from the page cache before each
# start (posix_fadvise DONTNEED on that one file; nothing else is evicted). KILL=1 ends every
# round with SIGKILL instead, so every start follows an unclean shutdown (otpd then checks every
# page in the background after it is ready; the last round waits for that check and prints how
# long it took). Also prints how
# many pages otpd's start-up read (its "database opened" log line). OTPD defaults to the debug
# build (built if missing).
set -euo pipefail
root=$(cd -- "$(dirname -- "${BASH_SOURCE[0]}")/.." && pwd -P)
otpd=${OTPD:-$root/.build/debug/otpd}
rounds=${ROUNDS:-5}
large=${1:-}
if [[ ! -x $otpd ]]; then (cd "$root" && swift build --product otpd >/dev/null); fi
tmp=$(mktemp -d /tmp/otpd-bench-startup.XXXXXX)
trap 'rm -rf "$tmp"' EXIT INT TERM

# The small database, the baseline: 1,000 accounts and 10,000 events, made like the large one.
mkdir -p "$tmp/small"
python3 "$root/scripts/make-large-db.py" --otpd "$otpd" --out "$tmp/small/otpd.sqlite" --accounts 1000 \
    --events 10000 >/dev/null
databases=("$tmp/small/otpd.sqlite")
if [[ -n $large ]]; then
    mkdir -p "$tmp/large"
    cp "$large" "$tmp/large/otpd.sqlite"
    cp "$large.key" "$tmp/large/otpd.sqlite.key"
    databases+=("$tmp/large/otpd.sqlite")
fi

python3 - "$otpd" "$rounds" "${COLD:-0}" "${KILL:-0}" "${databases[@]}" <<'PY'
import os, signal, socket, statistics, subprocess, sys, tempfile, time

otpd, rounds, cold, kill, databases = sys.argv[1], int(sys.argv[2]), sys.argv[3] == "1", sys.argv[4] == "1", sys.argv[5:]

def health_frame():
    method = b"/otp.v1.TwoFactor/Health"
    request = b"\x08\x01" + b"\x12" + bytes([len(method)]) + method
    return b"\x00" + len(request).to_bytes(4, "big") + request

def ask_health(path):
    """True once otpd answers Health with SERVING on `path`."""
    s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    try:
        s.settimeout(5)
        s.connect(path)
        s.sendall(health_frame())
        answer = b""
        while len(answer) < 5 or len(answer) < 5 + int.from_bytes(answer[1:5], "big"):
            data = s.recv(4096)
            if not data:
                return False
            answer += data
        return b"SERVING" in answer
    except OSError:
        return False
    finally:
        s.close()

def evict(path):
    for name in (path, path + "-wal"):
        if os.path.exists(name):
            fd = os.open(name, os.O_RDONLY)
            os.fsync(fd)
            os.posix_fadvise(fd, 0, 0, os.POSIX_FADV_DONTNEED)
            os.close(fd)

def one_start(database, tmp, wait_for_check=False):
    sock = os.path.join(tmp, "otpd.sock")
    notify_path = os.path.join(tmp, "notify")
    for name in (sock, notify_path):
        if os.path.exists(name):
            os.unlink(name)
    notify = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    notify.bind(notify_path)
    notify.setblocking(False)
    env = dict(os.environ, NOTIFY_SOCKET=notify_path)
    if cold:
        evict(database)
    log = open(os.path.join(tmp, "otpd.log"), "w+")
    started = time.monotonic()
    process = subprocess.Popen(
        [otpd, "--socket", sock, "--database", database, "--key-file", database + ".key",
         "--outbox", os.path.join(tmp, "outbox.jsonl"), "--log-level", "info"],
        cwd=tmp, env=env, stderr=log)
    ready = health = None
    while health is None or ready is None:
        if process.poll() is not None:
            log.seek(0)
            sys.exit(f"otpd exited: {log.read()}")
        if time.monotonic() - started > 120:
            process.kill()
            sys.exit("otpd did not become ready in 120 s")
        if ready is None:
            try:
                if b"READY=1" in notify.recv(4096):
                    ready = time.monotonic() - started
            except BlockingIOError:
                pass
        if health is None and os.path.exists(sock) and ask_health(sock):
            health = time.monotonic() - started
        time.sleep(0.0005)
    check = ""
    if wait_for_check:
        while time.monotonic() - started < 600:
            log.seek(0)
            line = next((l for l in log.read().splitlines() if "database check passed" in l or "database check found" in l), None)
            if line:
                check = line.split("duration=")[1].split()[0] if "duration=" in line else "?"
                break
            time.sleep(0.05)
    process.send_signal(signal.SIGKILL if kill else signal.SIGTERM)
    status = process.wait(timeout=120)
    if kill:
        status = 0
    notify.close()
    log.seek(0)
    text = log.read()
    if status != 0:
        sys.exit(f"otpd exited with {status}: {text}")
    pages = ""
    for line in text.splitlines():
        if "database opened" in line and "pages_read" in line:
            pages = line.split("pages_read=")[1].split()[0].strip(",]")
    return ready * 1000, health * 1000, pages, check

print(f"otpd start-up to ready: {os.path.relpath(otpd)}, {rounds} starts each, {'cold' if cold else 'warm'} page cache"
      + (", each after a SIGKILL" if kill else ""))
print(f"{'database':<44}{'size MB':>9}{'READY=1 ms':>22}{'Health ms':>22}{'pages read':>12}")
for database in databases:
    size = os.path.getsize(database) / 1e6
    with tempfile.TemporaryDirectory(prefix="otpd-start.") as tmp:
        one_start(database, tmp)  # a first start that may apply migrations or recover a WAL
        runs = [one_start(database, tmp, wait_for_check=kill and n == rounds - 1) for n in range(rounds)]
    ready = [r for r, _, _, _ in runs]
    health = [h for _, h, _, _ in runs]
    span = lambda xs: f"{statistics.median(xs):7.1f} ({min(xs):.0f}-{max(xs):.0f})"
    print(f"{os.path.basename(os.path.dirname(database)) + '/' + os.path.basename(database):<44}{size:>9.0f}"
          f"{span(ready):>22}{span(health):>22}{runs[-1][2] or '-':>12}"
          + (f"   background check: {runs[-1][3]} s" if kill else ""))
PY
