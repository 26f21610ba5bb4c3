#!/usr/bin/env bash
# Fails when the committed protobuf-c output in Sources/COTPProto differs from what
# scripts/generate-proto.sh makes from proto/ now, and likewise the Swift message types that
# scripts/generate-swift-messages.py makes. CI runs this.
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
tmp=$(mktemp -d); trap 'rm -rf "$tmp"' EXIT
"$root/scripts/generate-proto.sh" "$tmp/c" >/dev/null
python3 "$root/scripts/generate-swift-messages.py" "$tmp/Messages.generated.swift" >/dev/null
if ! { diff -ru "$tmp/c" "$root/Sources/COTPProto" &&
       diff -u "$tmp/Messages.generated.swift" "$root/Sources/OTPProtocol/Messages.generated.swift"; } > "$tmp.diff" 2>&1; then
  cat "$tmp.diff" | head -50
  rm -f "$tmp.diff"
  echo "generated code is stale: run scripts/generate-proto.sh and scripts/generate-swift-messages.py and commit the result" >&2
  exit 1
fi
rm -f "$tmp.diff"
"$root/scripts/generate-php.sh" --check
echo "generated code matches proto/"
