"""``odooops builds ...``: the daemon's image builds, from its API.

What a push turned into: each build's colour, and for a red one the step that failed and the
lines that say why, with the whole log one command away (streamed while the build runs).
"""

from __future__ import annotations

import argparse
from typing import Any
from urllib.parse import urlencode

from rich.table import Table

from reconciler.cli.console import out
from reconciler.cli.data import EXIT_FAILED, EXIT_OK, _client, _emit

COLOURS = {"green": "green", "yellow": "yellow", "red": "red", "running": "cyan"}


def add_commands(sub: Any) -> None:
    builds = sub.add_parser("builds", help="image builds of the daemon: queue, result, log (API)")
    builds_sub = builds.add_subparsers(required=True, metavar="ACTION")
    ls = builds_sub.add_parser("list", help="builds, newest first")
    ls.add_argument("--project", help="only this project's builds")
    ls.add_argument("--limit", type=int, default=50)
    ls.add_argument("-o", "--output", choices=["table", "json", "yaml"], default="table")
    ls.set_defaults(func=cmd_builds_list)
    show = builds_sub.add_parser("show", help="one build: result, failing step, excerpt")
    show.add_argument("id")
    show.add_argument("-o", "--output", choices=["table", "json", "yaml"], default="table")
    show.set_defaults(func=cmd_builds_show)
    logs = builds_sub.add_parser("logs", help="a build's log")
    logs.add_argument("id")
    logs.add_argument("-f", "--follow", action="store_true", help="until the build ends")
    logs.set_defaults(func=cmd_builds_logs)


def cmd_builds_list(args: argparse.Namespace) -> int:
    query = {"limit": args.limit, **({"project": args.project} if args.project else {})}
    items = _client().get(f"/builds?{urlencode(query)}")["items"]
    if args.output != "table":
        _emit(items, args.output)
        return EXIT_OK
    table = Table(title="Builds")
    for column in ("id", "environment", "image", "state", "queued", "seconds"):
        table.add_column(column)
    for b in items:
        state = b["state"] + (f" ({b['position']})" if b["state"] == "queued" else "")
        colour = COLOURS.get(b["state"], "white")
        table.add_row(
            b["id"],
            b["environment"],
            b["image"],
            f"[{colour}]{state}[/]",
            b["queued_at"],
            str(b.get("seconds", "")),
        )
    out.print(table)
    return EXIT_OK


def cmd_builds_show(args: argparse.Namespace) -> int:
    doc = _client().get(f"/builds/{args.id}")
    if args.output != "table":
        _emit(doc, args.output)
    else:
        colour = COLOURS.get(doc["state"], "white")
        out.print(f"build {doc['id']} of {doc['image']} for {doc['environment']}: ", end="")
        out.print(f"[{colour}]{doc['state']}[/]")
        if doc["step"]:
            out.print(f"failed step: {doc['step']}", markup=False, highlight=False)
        if doc["error"]:
            out.print(doc["error"], markup=False, highlight=False)
        for line in doc["excerpt"]:
            out.print(f"  {line}", markup=False, highlight=False)
    return EXIT_FAILED if doc["state"] == "red" else EXIT_OK


def cmd_builds_logs(args: argparse.Namespace) -> int:
    params = {"follow": str(args.follow).lower()}
    for line in _client().lines(f"/builds/{args.id}/log", params):
        print(line, flush=True)
    return EXIT_OK
