#!/bin/bash
# Entry point of the odoo stand-in: the behaviour of odoo/docker 19.0's entrypoint.sh.
#   - PASSWORD_FILE wins over PASSWORD; defaults HOST=db, PORT=5432, USER=odoo,
#     PASSWORD=odoo (after the legacy link variables, as upstream).
#   - --db_host/--db_port/--db_user/--db_password are appended only when neither
#     the PG* variable (read natively by odoo 19) nor the key in $ODOO_RC is set.
#   - `odoo ...`, `-- ...` and `-...` wait for PostgreSQL (wait-for-psql.py
#     --timeout=30, exit 1 when it never answers), then exec odoo; `odoo scaffold`
#     skips the wait; any other command is exec'd as is.
# Upstream's unquoted expansions are kept on purpose: they fail the same way there.
# shellcheck disable=SC2086,SC2068,SC2223
set -e

if [ -v PASSWORD_FILE ]; then
    PASSWORD="$(< $PASSWORD_FILE)"
fi

: ${HOST:=${DB_PORT_5432_TCP_ADDR:='db'}}
: ${PORT:=${DB_PORT_5432_TCP_PORT:=5432}}
: ${USER:=${DB_ENV_POSTGRES_USER:=${POSTGRES_USER:='odoo'}}}
: ${PASSWORD:=${DB_ENV_POSTGRES_PASSWORD:=${POSTGRES_PASSWORD:='odoo'}}}

DB_ARGS=()
# add_db_arg KEY VALUE PG_VARIABLE
add_db_arg() {
    local key=$1 value=$2 pg_var=$3
    if [[ -v "$pg_var" ]]; then
        return
    fi
    if ! grep -q -E "^\s*\b${key}\b\s*=" "$ODOO_RC"; then
        DB_ARGS+=("--${key}" "${value}")
    fi
}
add_db_arg db_host "$HOST" PGHOST
add_db_arg db_port "$PORT" PGPORT
add_db_arg db_user "$USER" PGUSER
add_db_arg db_password "$PASSWORD" PGPASSWORD

# DB_ARGS is expanded unquoted for wait-for-psql.py exactly as upstream does:
# a value containing spaces breaks the wait there too, so it must break here.
case "$1" in
    -- | odoo)
        shift
        if [[ "$1" == "scaffold" ]]; then
            exec odoo "$@"
        fi
        wait-for-psql.py ${DB_ARGS[@]} --timeout=30
        exec odoo "$@" "${DB_ARGS[@]}"
        ;;
    -*)
        wait-for-psql.py ${DB_ARGS[@]} --timeout=30
        exec odoo "$@" "${DB_ARGS[@]}"
        ;;
    *)
        exec "$@"
        ;;
esac

exit 1
