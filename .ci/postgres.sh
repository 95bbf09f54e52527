#!/usr/bin/env bash
# Starts a local PostgreSQL for the store tests, idempotently, on a Debian/Ubuntu machine.
#
#   .ci/postgres.sh                     prepare the server; prints `export CASCADE_TEST_PG=...`
#   eval "$(.ci/postgres.sh)"           ... and set the variable in this shell
#   source .ci/postgres.sh              same, from bash
#
# It installs the `postgresql` package when missing, creates and starts the cluster when it is
# not running, then creates the login role and the database when they do not exist. Running it
# again on a machine where all this is done changes nothing. Progress goes to stderr; only the
# export line goes to stdout. Overrides: CASCADE_PG_USER, CASCADE_PG_PASSWORD, CASCADE_PG_DB,
# CASCADE_PG_HOST (defaults cascade / cascade / cascade_test / 127.0.0.1).

cascade_pg_setup() (
  set -euo pipefail
  local user="${CASCADE_PG_USER:-cascade}"
  local password="${CASCADE_PG_PASSWORD:-cascade}"
  local db="${CASCADE_PG_DB:-cascade_test}"
  local host="${CASCADE_PG_HOST:-127.0.0.1}"
  log() { echo "postgres.sh: $*" >&2; }

  local sudo=''
  if [ "$(id -u)" -ne 0 ]; then
    if command -v sudo >/dev/null 2>&1; then sudo='sudo -n'; else log 'not root and no sudo: install and start PostgreSQL yourself'; fi
  fi

  if ! ls -d /usr/lib/postgresql/*/bin >/dev/null 2>&1 || ! command -v pg_ctlcluster >/dev/null 2>&1; then
    log 'installing postgresql'
    $sudo env DEBIAN_FRONTEND=noninteractive apt-get update -qq >&2
    $sudo env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq postgresql >&2
  fi

  # The newest installed major version.
  local ver
  ver="$(ls -1 /usr/lib/postgresql | sort -n | tail -n 1)"
  [ -n "$ver" ] || { log 'no PostgreSQL version under /usr/lib/postgresql'; exit 1; }

  # pg_lsclusters -h: version cluster port status owner datadir logfile
  local line
  line="$(pg_lsclusters -h 2>/dev/null | awk -v v="$ver" '$1==v && $2=="main"' || true)"
  if [ -z "$line" ]; then
    log "creating cluster $ver/main"
    $sudo pg_createcluster "$ver" main >&2
    line="$(pg_lsclusters -h | awk -v v="$ver" '$1==v && $2=="main"')"
  fi
  local port status
  port="$(echo "$line" | awk '{print $3}')"
  status="$(echo "$line" | awk '{print $4}')"
  if [ "$status" != 'online' ]; then
    log "starting cluster $ver/main on port $port"
    # A stale pid file after an unclean stop makes start fail once; pg_ctlcluster then recovers.
    $sudo pg_ctlcluster "$ver" main start >&2 || {
      sleep 1
      pg_lsclusters -h | awk -v v="$ver" '$1==v && $2=="main" {print $4}' | grep -q online || $sudo pg_ctlcluster "$ver" main start >&2
    }
  else
    log "cluster $ver/main already running on port $port"
  fi

  local i
  for i in $(seq 1 60); do
    if "/usr/lib/postgresql/$ver/bin/pg_isready" -q -h "$host" -p "$port"; then break; fi
    [ "$i" -eq 60 ] && { log "PostgreSQL did not become ready on $host:$port"; exit 1; }
    sleep 0.5
  done

  # psql as the postgres superuser over the local socket.
  as_postgres() {
    if [ "$(id -un)" = postgres ]; then "$@"
    elif [ "$(id -u)" -eq 0 ]; then
      if command -v runuser >/dev/null 2>&1; then runuser -u postgres -- "$@"; else su postgres -s /bin/sh -c "$(printf '%q ' "$@")"; fi
    else sudo -n -u postgres "$@"; fi
  }
  psql_admin() { as_postgres psql -X -q -v ON_ERROR_STOP=1 -p "$port" -d postgres "$@"; }

  # Identifiers and the password are passed as psql variables, quoted by psql itself.
  if [ "$(psql_admin -tA -v u="$user" <<<"SELECT 1 FROM pg_roles WHERE rolname = :'u'")" != 1 ]; then
    log "creating role $user"
    psql_admin -v u="$user" -v p="$password" <<<"CREATE ROLE :\"u\" LOGIN SUPERUSER PASSWORD :'p'"
  else
    psql_admin -v u="$user" -v p="$password" <<<"ALTER ROLE :\"u\" LOGIN SUPERUSER PASSWORD :'p'"
  fi
  if [ "$(psql_admin -tA -v d="$db" <<<"SELECT 1 FROM pg_database WHERE datname = :'d'")" != 1 ]; then
    log "creating database $db"
    psql_admin -v d="$db" -v u="$user" <<<"CREATE DATABASE :\"d\" OWNER :\"u\""
  fi

  local url="postgres://${user}:${password}@${host}:${port}/${db}"
  PGPASSWORD="$password" psql -X -q -h "$host" -p "$port" -U "$user" -d "$db" -tAc 'SELECT 1' >/dev/null \
    || { log "cannot log in as $user at $host:$port/$db"; exit 1; }
  log "ready: $url"
  echo "$url"
)

if __cascade_pg_url="$(cascade_pg_setup)"; then
  if [ "${BASH_SOURCE[0]}" != "$0" ]; then
    export CASCADE_TEST_PG="$__cascade_pg_url"
    echo "postgres.sh: CASCADE_TEST_PG is set" >&2
  else
    echo "export CASCADE_TEST_PG='$__cascade_pg_url'"
  fi
  unset __cascade_pg_url
else
  echo 'postgres.sh: setup failed' >&2
  unset __cascade_pg_url
  if [ "${BASH_SOURCE[0]}" != "$0" ]; then return 1; else exit 1; fi
fi
