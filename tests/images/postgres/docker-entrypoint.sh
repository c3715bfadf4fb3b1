#!/usr/bin/env bash
# Entry point of the postgres fixture. It honours the contract of the official
# postgres:15 image's docker-entrypoint.sh, which the product relies on:
#   - POSTGRES_USER (default postgres), POSTGRES_PASSWORD or POSTGRES_PASSWORD_FILE
#     (setting both is an error, as upstream), POSTGRES_DB (default = user),
#     POSTGRES_INITDB_ARGS, POSTGRES_HOST_AUTH_METHOD;
#   - initdb only when $PGDATA has no PG_VERSION, so a restart never re-initialises;
#   - pg_hba: initdb's defaults (local and loopback trust) plus
#     `host all all all scram-sha-256` (the server's password_encryption);
#   - *.sh / *.sql / *.sql.gz in /docker-entrypoint-initdb.d run once, after the database exists;
#   - the server runs as the postgres OS user in the foreground (exec, signals reach it).
set -Eeo pipefail

# file_env VAR [DEFAULT]: export VAR from itself or from the file named by VAR_FILE.
file_env() {
  local var=$1 file_var="${1}_FILE" default=${2:-} value
  if [[ -n "${!var:-}" && -n "${!file_var:-}" ]]; then
    echo >&2 "error: both $var and $file_var are set (but are exclusive)"
    exit 1
  fi
  value=$default
  if [[ -n "${!var:-}" ]]; then
    value=${!var}
  elif [[ -n "${!file_var:-}" ]]; then
    value="$(<"${!file_var}")"
  fi
  export "$var=$value"
  unset "$file_var"
}

setup_env() {
  file_env POSTGRES_PASSWORD
  file_env POSTGRES_USER postgres
  file_env POSTGRES_DB "$POSTGRES_USER"
  file_env POSTGRES_INITDB_ARGS
  DATABASE_ALREADY_EXISTS=
  if [[ -s "$PGDATA/PG_VERSION" ]]; then DATABASE_ALREADY_EXISTS=true; fi
}

create_directories() {
  mkdir -p "$PGDATA" /var/run/postgresql
  chmod 00700 "$PGDATA" || :
  chmod 03775 /var/run/postgresql || :
  if [[ "$(id -u)" = 0 ]]; then
    find "$PGDATA" \! -user postgres -exec chown postgres '{}' +
    find /var/run/postgresql \! -user postgres -exec chown postgres '{}' +
  fi
}

verify_minimum_env() {
  if [[ -z "$POSTGRES_PASSWORD" && "$POSTGRES_HOST_AUTH_METHOD" != trust ]]; then
    cat >&2 <<'EOM'
Error: Database is uninitialized and superuser password is not specified.
       You must specify POSTGRES_PASSWORD to a non-empty value for the
       superuser. For example, "-e POSTGRES_PASSWORD=password" on "docker run".
EOM
    exit 1
  fi
}

init_database_dir() {
  # shellcheck disable=SC2086 # POSTGRES_INITDB_ARGS is a list of words, as upstream.
  initdb --username="$POSTGRES_USER" --pwfile=<(printf '%s\n' "$POSTGRES_PASSWORD") \
    $POSTGRES_INITDB_ARGS
}

setup_hba_conf() {
  local method
  method="$(postgres -C password_encryption)"
  : "${POSTGRES_HOST_AUTH_METHOD:=$method}"
  printf '\nhost all all all %s\n' "$POSTGRES_HOST_AUTH_METHOD" >>"$PGDATA/pg_hba.conf"
}

run_sql() {
  psql -v ON_ERROR_STOP=1 --username "$POSTGRES_USER" --no-password --no-psqlrc "$@"
}

setup_db() {
  local exists
  exists="$(run_sql --dbname postgres --set db="$POSTGRES_DB" --tuples-only \
    <<<"SELECT 1 FROM pg_database WHERE datname = :'db';")"
  if [[ -z "${exists// /}" ]]; then
    run_sql --dbname postgres --set db="$POSTGRES_DB" <<<'CREATE DATABASE :"db";'
    echo
  fi
}

process_init_files() {
  local f
  for f in /docker-entrypoint-initdb.d/*; do
    case "$f" in
      *.sh)
        # shellcheck source=/dev/null
        if [[ -x "$f" ]]; then echo "running $f"; "$f"; else echo "sourcing $f"; . "$f"; fi ;;
      *.sql) echo "running $f"; run_sql --dbname "$POSTGRES_DB" -f "$f" ;;
      *.sql.gz) echo "running $f"; gunzip -c "$f" | run_sql --dbname "$POSTGRES_DB" ;;
      *) if [[ -e "$f" ]]; then echo "ignoring $f"; fi ;;
    esac
  done
}

initialise() {
  verify_minimum_env
  init_database_dir
  setup_hba_conf
  # A temporary server on the socket only, so nothing connects before setup ends.
  PGUSER="$POSTGRES_USER" pg_ctl -D "$PGDATA" -o "-c listen_addresses='' -p 5432" -w start
  setup_db
  process_init_files
  PGUSER="$POSTGRES_USER" pg_ctl -D "$PGDATA" -m fast -w stop
  echo
  echo 'PostgreSQL init process complete; ready for start up.'
  echo
}

wants_help() {
  local arg
  for arg; do
    case "$arg" in -'?' | --help | --describe-config | -V | --version) return 0 ;; esac
  done
  return 1
}

main() {
  if [[ "${1:0:1}" = '-' ]]; then set -- postgres "$@"; fi
  if [[ "$1" = postgres ]] && ! wants_help "$@"; then
    setup_env
    create_directories
    if [[ "$(id -u)" = 0 ]]; then
      exec gosu postgres "${BASH_SOURCE[0]}" "$@"
    fi
    if [[ -z "$DATABASE_ALREADY_EXISTS" ]]; then
      initialise
    else
      echo
      echo 'PostgreSQL Database directory appears to contain a database; Skipping initialization'
      echo
    fi
  fi
  exec "$@"
}

main "$@"
