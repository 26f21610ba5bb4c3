#!/usr/bin/env bash
# A throw-away PostgreSQL cluster for benchmarks and manual tests of otpd's PostgreSQL backend.
#
#   scripts/pg-throwaway.sh start DIR   # initdb + start in DIR (new or empty), prints key=value lines
#   scripts/pg-throwaway.sh stop DIR    # pg_ctl stop -m fast, then removes DIR
#
# `start` prints, one per line (stdout; everything else goes to stderr):
#   url=postgresql://otpd@/otpd?host=DIR/socket&port=5432   ([storage] url)
#   password_file=DIR/otpd.password                        ([storage] password_file, 0600)
#   admin_user=otpd_admin                                  (the cluster's superuser)
#   admin_password_file=DIR/admin.password                 (its password, 0600)
#   socket_dir=DIR/socket  port=5432  bin_dir=/usr/lib/postgresql/N/bin  data_dir=DIR/data
# e.g. psql as the superuser:
#   PGPASSWORD=$(cat DIR/admin.password) psql -h DIR/socket -U otpd_admin -d otpd
#
# The server: the newest /usr/lib/postgresql/*/bin (Debian's `postgresql` package, installed by
# scripts/install-deps.sh), no TCP (listen_addresses=''), its socket in DIR/socket, durable
# commits (fsync=on, synchronous_commit=on), max_connections=300, shared_buffers=256MB, SCRAM
# passwords for every connection. One login role and one database, both `otpd` (PG_USER and
# PG_DATABASE change the names), with a random password. The password files belong to the user
# who runs this script, as otpd (run by that user) requires.
#
# initdb and postgres refuse to run as root: when run as root, the server-side commands (initdb,
# pg_ctl and through it postgres) run as the system user `postgres` (setpriv, else runuser),
# which then owns DIR/data, DIR/socket and DIR/postgres.log; DIR itself is made mode 0711, and
# every directory above it must let `postgres` through (/tmp does).
#
# PG_STAT_STATEMENTS=1 also loads pg_stat_statements (shared_preload_libraries) and creates the
# extension in the `postgres` database (to find where the time goes; see bench-verify.sh).
set -euo pipefail

die() { printf 'pg-throwaway: %s\n' "$*" >&2; exit 1; }
usage() { die "usage: $0 start DIR | stop DIR"; }
[[ $# -eq 2 ]] || usage
action=$1
dir=$2
[[ $dir == /* ]] || dir=$PWD/$dir
# The path goes into postgresql.conf between single quotes and into a URL: keep it plain.
[[ $dir =~ ^[A-Za-z0-9_./-]+$ ]] || die "DIR must be made of letters, digits and _ . / - only: $dir"

port=5432
admin=otpd_admin
role=${PG_USER:-otpd}
database=${PG_DATABASE:-otpd}
stat_statements=${PG_STAT_STATEMENTS:-0}
[[ $role =~ ^[a-z_][a-z0-9_]*$ && $database =~ ^[a-z_][a-z0-9_]*$ ]] || die "PG_USER and PG_DATABASE: [a-z_][a-z0-9_]*"

# The newest installed server.
bin=""
for candidate in $(ls -d /usr/lib/postgresql/*/bin 2>/dev/null | sort -t/ -k4,4n); do
    [[ -x $candidate/initdb && -x $candidate/pg_ctl && -x $candidate/postgres ]] && bin=$candidate
done
[[ -n $bin ]] || die "no /usr/lib/postgresql/*/bin/initdb: install Debian's postgresql package (scripts/install-deps.sh)"
command -v psql >/dev/null || die "no psql: install Debian's postgresql package (scripts/install-deps.sh)"

# as_server CMD...: runs CMD as the server's user (postgres when we are root, else ourselves).
if [[ $(id -u) -eq 0 ]]; then
    server_user=postgres
    id -u "$server_user" >/dev/null 2>&1 || die "running as root needs the system user postgres (Debian's postgresql package makes it)"
    if command -v setpriv >/dev/null; then
        as_server() { setpriv --reuid="$server_user" --regid="$server_user" --init-groups -- "$@"; }
    else
        as_server() { runuser -u "$server_user" -- "$@"; }
    fi
else
    server_user=$(id -un)
    as_server() { "$@"; }
fi
# Never let a developer's PGHOST, PGDATA, PGPORT ... redirect these commands (our own PG_*
# settings were read above).
for v in $(compgen -e | grep '^PG' || true); do unset "$v"; done

random_password() { od -An -tx1 -N16 /dev/urandom | tr -d ' \n'; }

# write_secret FILE CONTENT [OWNER]: a file of mode 0600 (created that way, never wider).
write_secret() {
    (umask 077 && printf '%s\n' "$2" > "$1")
    chmod 600 "$1"
    [[ -z ${3:-} ]] || chown "$3" "$1"
}

admin_psql() { # DATABASE SQL...: each SQL its own -c (CREATE DATABASE cannot run in a transaction)
    local db=$1; shift
    local args=()
    for sql in "$@"; do args+=(-c "$sql"); done
    PGPASSWORD=$(head -n1 "$dir/admin.password") PGCONNECT_TIMEOUT=10 \
        psql -X -q -A -t -v ON_ERROR_STOP=1 -h "$dir/socket" -p "$port" -U "$admin" -d "$db" "${args[@]}"
}

start() {
    if [[ -e $dir ]]; then
        [[ -d $dir && -z $(ls -A "$dir") ]] || die "$dir exists and is not an empty directory"
    else
        mkdir -p "$dir"
    fi
    chmod 0711 "$dir"
    as_server test -x "$dir" || die "$server_user cannot reach $dir (a directory above it is closed to it)"
    : > "$dir/.otpd-pg-throwaway"   # what `stop` checks before it removes anything

    local owner=""
    [[ $(id -u) -eq 0 ]] && owner=$server_user
    mkdir -m 0700 "$dir/data"
    mkdir -m 0711 "$dir/socket"
    : > "$dir/postgres.log"
    [[ -z $owner ]] || chown "$owner:" "$dir/data" "$dir/socket" "$dir/postgres.log"

    write_secret "$dir/admin.password" "$(random_password)"
    # initdb reads the superuser's password from a file the server's user can read, removed after.
    write_secret "$dir/data.pwfile" "$(head -n1 "$dir/admin.password")" "$owner"
    say "initdb ($bin, as $server_user)"
    if ! as_server "$bin/initdb" -D "$dir/data" -U "$admin" --pwfile="$dir/data.pwfile" \
        --auth-local=scram-sha-256 --auth-host=scram-sha-256 -E UTF8 --locale=C.UTF-8 -N \
        --no-instructions > "$dir/initdb.log" 2>&1; then
        rm -f "$dir/data.pwfile"
        cat "$dir/initdb.log" >&2
        die "initdb failed"
    fi
    rm -f "$dir/data.pwfile"

    {
        echo "# scripts/pg-throwaway.sh"
        echo "listen_addresses = ''"
        echo "unix_socket_directories = '$dir/socket'"
        echo "port = $port"
        echo "max_connections = 300"
        echo "shared_buffers = 256MB"
        echo "fsync = on"
        echo "synchronous_commit = on"
        if [[ $stat_statements == 1 ]]; then
            echo "shared_preload_libraries = 'pg_stat_statements'"
            echo "pg_stat_statements.track = 'top'"
            echo "pg_stat_statements.track_utility = on"
        fi
    } | as_server tee -a "$dir/data/postgresql.conf" > /dev/null

    say "starting the server (socket $dir/socket/.s.PGSQL.$port)"
    # pg_ctl's server keeps running: its output goes to the log, not to our pipes.
    if ! as_server "$bin/pg_ctl" start -D "$dir/data" -l "$dir/postgres.log" -w -t 60 > /dev/null 2>&1 < /dev/null; then
        tail -n 20 "$dir/postgres.log" >&2
        die "the server did not start"
    fi

    local password
    password=$(random_password)
    admin_psql postgres "CREATE ROLE $role LOGIN PASSWORD '$password'" "CREATE DATABASE $database OWNER $role"
    write_secret "$dir/$role.password" "$password"
    if [[ $stat_statements == 1 ]]; then
        admin_psql postgres "CREATE EXTENSION IF NOT EXISTS pg_stat_statements"
    fi

    echo "url=postgresql://$role@/$database?host=$dir/socket&port=$port"
    echo "password_file=$dir/$role.password"
    echo "admin_user=$admin"
    echo "admin_password_file=$dir/admin.password"
    echo "socket_dir=$dir/socket"
    echo "port=$port"
    echo "bin_dir=$bin"
    echo "data_dir=$dir/data"
}

stop() {
    [[ -f $dir/.otpd-pg-throwaway ]] || die "$dir was not made by this script (no $dir/.otpd-pg-throwaway); not touching it"
    if [[ -f $dir/data/postmaster.pid ]]; then
        say "stopping the server"
        as_server "$bin/pg_ctl" stop -D "$dir/data" -m fast -w -t 60 > /dev/null 2>&1 < /dev/null ||
            die "pg_ctl stop failed; see $dir/postgres.log"
    fi
    rm -rf -- "$dir"
}

say() { printf 'pg-throwaway: %s\n' "$*" >&2; }

case $action in
start) start ;;
stop) stop ;;
*) usage ;;
esac
