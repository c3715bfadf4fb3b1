#!/usr/bin/env python3
"""Wait until PostgreSQL accepts a connection to database `postgres` (odoo:19.0's wait-for-psql.py).

Parameters come from $ODOO_RC first, then the command line, then the PG* variables;
one attempt per second until --timeout seconds have passed, then exit 1 with the error.
"""

import argparse
import configparser
import os
import sys
import time

import psycopg2


def main() -> int:
    parser = argparse.ArgumentParser()
    for key in ("--db_host", "--db_port", "--db_user", "--db_password"):
        parser.add_argument(key)
    parser.add_argument("--timeout", type=int, default=5)
    args = parser.parse_args()

    from_file: dict[str, str] = {}
    rc_path = os.environ.get("ODOO_RC")
    if rc_path:
        rc = configparser.RawConfigParser()
        rc.read(rc_path)
        from_file = dict(rc.items("options"))

    params = {
        key: from_file.get(key) or getattr(args, key) or os.environ.get(env)
        for key, env in (
            ("db_host", "PGHOST"),
            ("db_port", "PGPORT"),
            ("db_user", "PGUSER"),
            ("db_password", "PGPASSWORD"),
        )
    }
    missing = [key for key, value in params.items() if value is None]
    if missing:
        print(f"Missing required database parameters: {', '.join(missing)}", file=sys.stderr)
        return 1

    error: Exception | None = None
    started = time.time()
    while time.time() - started < args.timeout:
        try:
            psycopg2.connect(
                host=params["db_host"],
                port=params["db_port"],
                user=params["db_user"],
                password=params["db_password"],
                dbname="postgres",
            ).close()
        except psycopg2.OperationalError as exc:
            error = exc
        else:
            return 0
        time.sleep(1)
    print(f"Database connection failure: {error}", file=sys.stderr)
    return 1


if __name__ == "__main__":
    sys.exit(main())
