#!/usr/bin/env bash
# Regenerates the committed PHP message classes in clients/php/generated/ from
# proto/otp/v1/*.proto with `protoc --php_out` (Debian protobuf-compiler 3.21, the version of the
# php-google-protobuf runtime). Namespaces are protoc's defaults: Otp\V1 for the messages and
# GPBMetadata\Otp\V1 for the descriptors (the .proto files carry no php_namespace option).
#
# Usage:
#   scripts/generate-php.sh            regenerate clients/php/generated/ (replaced as a whole)
#   scripts/generate-php.sh --check    regenerate into a temporary directory and fail (exit 1,
#                                      with a diff) when it differs from clients/php/generated/
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
committed=$root/clients/php/generated

command -v protoc >/dev/null || { echo "protoc missing: apt-get install protobuf-compiler" >&2; exit 1; }
version=$(protoc --version | awk '{print $2}')
case "$version" in
  3.21.*) ;;
  *) echo "protoc $version: the committed PHP code is made with protoc 3.21 (Debian 12 protobuf-compiler)" >&2; exit 1 ;;
esac

# generate OUT: writes the generated tree into OUT (created or emptied).
generate() {
  local out=$1 tmp
  tmp=$(mktemp -d)
  # Sorted file list and a fixed working directory, so the output depends on proto/ alone.
  (cd "$root/proto" && LC_ALL=C protoc --php_out="$tmp" $(LC_ALL=C ls otp/v1/*.proto))
  rm -rf "$out"
  mkdir -p "$out"
  cp -R "$tmp"/. "$out"/
  rm -rf "$tmp"
}

if [ "${1:-}" = "--check" ]; then
  tmp=$(mktemp -d); trap 'rm -rf "$tmp"' EXIT
  generate "$tmp/generated"
  if ! diff -ru "$tmp/generated" "$committed" > "$tmp/diff" 2>&1; then
    head -50 "$tmp/diff"
    echo "clients/php/generated is stale: run scripts/generate-php.sh and commit the result" >&2
    exit 1
  fi
  echo "PHP generated code matches proto/"
  exit 0
fi

if [ $# -ne 0 ]; then
  echo "usage: scripts/generate-php.sh [--check]" >&2
  exit 2
fi
generate "$committed"
echo "generated into $committed: $(find "$committed" -name '*.php' | wc -l) files"
