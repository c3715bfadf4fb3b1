"""``odooops history ENV`` and ``odooops rollback ENV``: deployed versions and the way back.

Both talk to the daemon's API (``odooops login`` first): the outcomes are in the daemon's
ledger, the images in its engine. A rollback is a commit like ``odooops deploy``; the output
says which version it goes to, whether the data comes back too, and, for a protected
environment, the change request to approve.
"""

from __future__ import annotations

import argparse
from typing import Any

from rich.table import Table

from reconciler.cli.console import out
from reconciler.cli.data import EXIT_OK, _client, _emit, _key, _path

COLUMNS = ("REVISION", "DEPLOYED", "HEALTH", "IMAGE", "DATA", "STATE COMMIT")
STYLE = {"healthy": "green", "failed": "red", "rolled-back": "yellow", "progressing": "cyan"}


def add_commands(sub: Any) -> None:
    hi = sub.add_parser(
        "history",
        help="the last 10 deployed versions of an environment, their health, what is kept (API)",
    )
    hi.add_argument("name", help="PROJECT/ENV or ENV")
    hi.add_argument("-o", "--output", choices=["table", "json", "yaml"], default="table")
    hi.set_defaults(func=cmd_history)

    rb = sub.add_parser(
        "rollback",
        help="pin an environment back to its last healthy version (or --to REV), reusing its "
        "image; --with-data brings its data back too (API)",
    )
    rb.add_argument("name", help="PROJECT/ENV or ENV")
    rb.add_argument("--to", metavar="REV", help="a deployed revision (odooops history ENV)")
    rb.add_argument(
        "--with-data",
        action="store_true",
        help="also put back the data of that version: the data an update replaced, or the "
        "backup taken before it (the current data is backed up first)",
    )
    rb.add_argument("--confirm", action="store_true", help="needed with --with-data")
    rb.add_argument("--pr", action="store_true", help="commit through a change request")
    rb.add_argument("--request", metavar="ID", help="add the commit to this change request")
    rb.add_argument("-o", "--output", choices=["table", "json", "yaml"], default="table")
    rb.set_defaults(func=cmd_rollback)


def cmd_history(args: argparse.Namespace) -> int:
    client = _client()
    key = _key(client, args.name)
    doc = client.get(f"{_path(key)}/history")
    if args.output != "table":
        _emit(doc, args.output)
        return EXIT_OK
    table = Table(title=f"Deployments of {key}", title_justify="left")
    for column in COLUMNS:
        table.add_column(column)
    for item in doc["items"]:
        table.add_row(*row(item))
    out.print(table)
    out.print(
        f"roll back: odooops rollback {key} (to the last healthy version before the current "
        f"one) or odooops rollback {key} --to REV; add --with-data --confirm to bring its data "
        "back",
        highlight=False,
    )
    return EXIT_OK


def row(item: dict[str, Any]) -> tuple[str, ...]:
    """One deployment as the table shows it."""
    revision = item["revision"][:12] + (" *" if item["current"] else "")
    health = item["health"] + (" (never served)" if item["attempt"] else "")
    if item["reason"] and item["health"] in ("failed", "rolled-back"):
        health += f"\n{item['reason'][:60]}"
    style = STYLE.get(item["health"])
    image = item["image"].rsplit(":", 1)[-1][:12] + ("" if item["retained"] else " (collected)")
    data = []
    if item["kept_data"]:
        data.append("kept")
    if item["backup"]:
        data.append(f"backup {item['backup']}")
    commit = item["commit"]
    said = "-"
    if commit:
        said = f"{commit['sha'][:12]} {commit['author']}\n{commit['message'][:60]}"
    return (
        revision,
        item["deployed_at"].replace("T", " ")[:16],
        f"[{style}]{health}[/]" if style else health,
        "-" if item["attempt"] else image,
        ", ".join(data) or "-",
        said,
    )


def cmd_rollback(args: argparse.Namespace) -> int:
    """A commit pinning the environment back; the daemon reuses the version's image."""
    client = _client()
    key = _key(client, args.name)
    body: dict[str, Any] = {"with_data": args.with_data, "confirm": args.confirm}
    if args.to:
        body["to"] = args.to
    if args.pr:
        body["pr"] = True
    if args.request:
        body["change_request"] = args.request
    doc = client.request("POST", f"{_path(key)}/rollback-version", body)
    if args.output != "table":
        _emit(doc, args.output)
        return EXIT_OK
    rollback = doc["rollback"]
    to = rollback["to"][:12]
    data = {
        "none": "the data stays as it is",
        "kept": "the data the update replaced is put back",
        "backup": f"backup {rollback['backup']} is restored (the current data is backed up first)",
    }[rollback["data"]]
    if doc["change_request"]:
        out.print(
            f"{key} is protected: the rollback to {to} is committed ({doc['commit'][:12]}) to "
            f"the change-request branch [bold]{doc['branch']}[/] (change request "
            f"{doc['change_request_id']}). It applies once another person approves it and it "
            f"is merged; then {data}:\n"
            f"  odooops requests approve {doc['change_request_id']} --state-repo URL"
            + (f"\n  review: {doc['change_request_url']}" if doc.get("change_request_url") else "")
        )
    else:
        out.print(
            f"committed {doc['commit'][:12]}: {key} rolls back to {to} with its image "
            f"{rollback['image']} (no build); {data}. Follow it: odooops status {key}",
            highlight=False,
        )
    return EXIT_OK
