#!/usr/bin/env bash
# Fails when any committed generated file differs from what proto/ makes now (CI runs this):
#   Sources/COTPProto/                  protoc-c output and descriptor accessors (generate-proto.sh)
#   Sources/OTPProtocol/*.generated.swift, Sources/OTPServer/*.generated.swift,
#   Sources/OTPClient/*.generated.swift, clients/php/src/GeneratedMethods.php
#                                       generate-from-proto.py (which also fails on a file marked
#                                       as its output that it does not make)
#   clients/php/generated/              protoc --php_out (generate-php.sh)
# Every check runs, so one run names every stale file. `make generate` regenerates them all.
set -uo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
tmp=$(mktemp -d); trap 'rm -rf "$tmp"' EXIT
stale=0

if ! "$root/scripts/generate-proto.sh" "$tmp/c" >/dev/null; then
  stale=1
elif ! diff -ru "$tmp/c" "$root/Sources/COTPProto" > "$tmp/c.diff" 2>&1; then
  head -50 "$tmp/c.diff"
  echo "Sources/COTPProto is stale: run scripts/generate-proto.sh and commit the result" >&2
  stale=1
fi
python3 "$root/scripts/generate-from-proto.py" --check | head -100
[ "${PIPESTATUS[0]}" -eq 0 ] || stale=1
"$root/scripts/generate-php.sh" --check || stale=1

if [ $stale -ne 0 ]; then
  echo "generated code is stale: run make generate and commit the result" >&2
  exit 1
fi
echo "generated code matches proto/"
