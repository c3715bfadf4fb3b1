"""``odooops previews``: the pull requests that have an environment, from the daemon's API."""

from __future__ import annotations

import argparse
from typing import Any

from rich.table import Table

from reconciler.cli.console import out
from reconciler.cli.data import EXIT_OK, _client, _emit


def add_commands(sub: Any) -> None:
    pv = sub.add_parser("previews", help="pull-request previews: request, URL, expiry (API)")
    pv.add_argument("-o", "--output", choices=["table", "json", "yaml"], default="table")
    pv.set_defaults(func=cmd_previews)


def cmd_previews(args: argparse.Namespace) -> int:
    items = _client().get("/previews")["items"]
    if args.output != "table":
        _emit(items, args.output)
        return EXIT_OK
    table = Table(title="Previews", title_justify="left")
    for column in ("environment", "request", "author", "head", "health", "expires", "url"):
        table.add_column(column)
    for p in items:
        table.add_row(
            p["environment"],
            p["request"],
            p["author"] or "",
            p["head"],
            p["health"],
            p["expires"] or "",
            p["url"],
        )
    out.print(table)
    return EXIT_OK
