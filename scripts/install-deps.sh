#!/usr/bin/env bash
# Installs the Debian packages otpd builds and tests with, when any is missing:
# libprotobuf-c-dev + protobuf-c-compiler (wire format), libsqlite3-dev (storage), pkg-config,
# and for the tests postgresql (initdb, pg_ctl, postgres and psql: the PostgreSQL storage tests
# start a throw-away cluster), systemd (systemd-socket-activate, systemd-analyze), util-linux
# (setpriv, also to run that cluster as the postgres user when the tests run as root) and openssl
# (an independent HMAC for the Twilio signature tests); for the PHP client php-cli,
# php-google-protobuf, phpunit and protobuf-compiler (protoc --php_out); for its web pages
# php-bacon-qr-code (the authenticator's QR image) and php-codesniffer (PSR-12); for the
# browser test chromium, chromium-driver and python3-selenium (Debian's: nothing is
# downloaded) and zbar-tools (zbarimg reads the QR code off the page); for the metrics tests
# python3-prometheus-client (the exposition parser) and prometheus (promtool).
set -euo pipefail
packages=(libprotobuf-c-dev protobuf-c-compiler libsqlite3-dev pkg-config systemd util-linux python3 openssl
          postgresql
          php-cli php-google-protobuf phpunit protobuf-compiler libqrencode-dev zbar-tools
          php-bacon-qr-code php-codesniffer chromium chromium-driver python3-selenium
          python3-prometheus-client prometheus)
missing=()
for p in "${packages[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
[ ${#missing[@]} -eq 0 ] && exit 0
echo "installing: ${missing[*]}"
SUDO=""
[ "$(id -u)" -eq 0 ] || SUDO="sudo"
export DEBIAN_FRONTEND=noninteractive
$SUDO apt-get update -qq
$SUDO apt-get install -y -qq --no-install-recommends "${missing[@]}"
