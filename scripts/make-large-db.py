#!/usr/bin/env python3
"""Makes, once, a large otpd database for start-up and load measurements.

    scripts/make-large-db.py --otpd .build/debug/otpd --out /var/tmp/otpd-large/otpd.sqlite
    scripts/make-large-db.py --otpd ... --out ... --accounts 1000000 --events 10000000

otpd itself makes the schema (it is started once on the empty file with the key file
OUT.key, which every later start must use: the database records the key's fingerprint); the
rows are then inserted with plain SQL in large transactions, in the shapes otpd writes them:
accounts with a verified number and SMS preferred, audit events spread over the last 360 days
(inside the default 400-day retention, so the pruner deletes none) in id order, each for a
random account. An existing OUT is left alone (delete it to make a new one).

Debian's python3 sqlite3 module is enough; 1 M accounts and 10 M events take a few minutes and
about 1.2 GB.
"""

import argparse
import os
import random
import signal
import sqlite3
import subprocess
import sys
import tempfile
import time

KINDS = [
    ("verify", "success"),
    ("verify", "failure"),
    ("code_sent", "accepted"),
    ("code_sent", "success"),
    ("proof", "success"),
    ("code_refused", "rate_limited"),
    ("phone_verified", "success"),
]


def make_schema(otpd: str, out: str) -> None:
    """Starts otpd once on the empty file so that it applies its migrations, then stops it."""
    with tempfile.TemporaryDirectory(prefix="otpd-make-large-db.") as tmp:
        socket_path = os.path.join(tmp, "otpd.sock")
        log = open(os.path.join(tmp, "otpd.log"), "w+")
        process = subprocess.Popen(
            [otpd, "--socket", socket_path, "--database", out, "--key-file", out + ".key",
             "--outbox", os.path.join(tmp, "outbox.jsonl"), "--log-level", "warning"],
            cwd=tmp, stderr=log)
        deadline = time.monotonic() + 60
        while not os.path.exists(socket_path):
            if process.poll() is not None or time.monotonic() > deadline:
                log.seek(0)
                sys.exit(f"otpd did not start: {log.read()}")
            time.sleep(0.05)
        process.send_signal(signal.SIGTERM)
        if process.wait(timeout=30) != 0:
            log.seek(0)
            sys.exit(f"otpd did not stop cleanly: {log.read()}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--otpd", required=True, help="the otpd binary that makes the schema")
    parser.add_argument("--out", required=True, help="the database to make (its key goes to OUT.key)")
    parser.add_argument("--accounts", type=int, default=1_000_000)
    parser.add_argument("--events", type=int, default=10_000_000)
    parser.add_argument("--seed", type=int, default=15)
    args = parser.parse_args()

    if os.path.exists(args.out):
        print(f"{args.out} exists; left alone (delete it and {args.out}.key to make a new one)")
        return
    os.makedirs(os.path.dirname(os.path.abspath(args.out)), exist_ok=True)
    started = time.monotonic()
    make_schema(args.otpd, args.out)

    rng = random.Random(args.seed)
    db = sqlite3.connect(args.out, isolation_level=None)
    db.execute("PRAGMA synchronous=OFF")
    db.execute("PRAGMA cache_size=-1500000")  # 1.5 GB: the random index inserts stay in memory
    version = db.execute("PRAGMA user_version").fetchone()[0]
    print(f"schema version {version}; inserting {args.accounts} accounts", flush=True)

    now_ms = int(time.time() * 1000)
    day_ms = 86_400_000

    def accounts():
        for i in range(args.accounts):
            created = now_ms - rng.randrange(360 * day_ms)
            yield (f"acct-{i:07d}", f"+1555{i:07d}", 1, None, None, None, None, None, "sms", 0, 0, None,
                   created, created)

    db.execute("BEGIN")
    db.executemany(
        "INSERT INTO accounts (id, phone, phone_verified, pending_phone, totp_secret, totp_last_step, "
        "pending_totp, pending_totp_expires_at, preferred, consecutive_failures, lock_count, locked_until, "
        "created_at, updated_at) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
        accounts())
    db.execute("COMMIT")

    chunk = 1_000_000
    first_at = now_ms - 360 * day_ms
    step = (360 * day_ms) / max(1, args.events)
    for start in range(0, args.events, chunk):
        count = min(chunk, args.events - start)

        def events():
            for n in range(start, start + count):
                i = rng.randrange(args.accounts)
                kind, outcome = KINDS[rng.randrange(len(KINDS))]
                yield (f"acct-{i:07d}", kind, outcome, "", f"+1******{i % 10000:04d}", int(first_at + n * step))

        db.execute("BEGIN")
        db.executemany(
            "INSERT INTO events (account_id, kind, outcome, detail, destination_masked, at) VALUES (?, ?, ?, ?, ?, ?)",
            events())
        db.execute("COMMIT")
        print(f"  {start + count} events ({time.monotonic() - started:.0f} s)", flush=True)

    db.execute("PRAGMA wal_checkpoint(TRUNCATE)")
    db.close()
    size = os.path.getsize(args.out)
    print(f"{args.out}: {size / 1e6:.0f} MB, {args.accounts} accounts, {args.events} events, "
          f"key {args.out}.key, made in {time.monotonic() - started:.0f} s")


if __name__ == "__main__":
    main()
