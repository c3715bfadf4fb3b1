"""``odooops images`` and ``odooops images prune``: the daemon's environment images, from its API.

Each image with its size and the part it shares with others, the environments that use it or
keep it for a rollback, why it is kept and when the daily collection would remove it; and the
collection on demand, dry (``--dry-run``) or confirmed (``--confirm``), as every destructive
command of the CLI.
"""

from __future__ import annotations

import argparse
from datetime import UTC, datetime
from typing import Any

from rich.table import Table

from reconciler.cli.console import err, out
from reconciler.cli.data import EXIT_OK, _client, _emit

COLUMNS = ("IMAGE", "PROJECT", "SIZE", "SHARED", "USED BY", "ROLLBACK FOR", "KEPT", "COLLECTED")
SHORT = {
    "not-ours": "not ours",
    "in-use": "in use",
    "wanted": "wanted",
    "rollback": "rollback",
    "young": "young",
}


def add_commands(sub: Any) -> None:
    images = sub.add_parser(
        "images",
        help="environment images: size, sharing, who uses or keeps each, when it goes (API)",
    )
    images.add_argument("-o", "--output", choices=["table", "json", "yaml"], default="table")
    images.set_defaults(func=cmd_images)
    images_sub = images.add_subparsers(metavar="ACTION")
    prune = images_sub.add_parser(
        "prune", help="remove now what the daily collection would (needs --confirm)"
    )
    prune.add_argument("--dry-run", action="store_true", help="only say what would be removed")
    prune.add_argument("--confirm", action="store_true", help="needed to remove")
    prune.add_argument("-o", "--output", choices=["table", "json", "yaml"], default="table")
    prune.set_defaults(func=cmd_images_prune)


def cmd_images(args: argparse.Namespace) -> int:
    doc = _client().get("/images")
    if args.output != "table":
        _emit(doc, args.output)
        return EXIT_OK
    now = datetime.now(UTC)
    table = Table(title="Environment images", title_justify="left")
    for column in COLUMNS:
        table.add_column(column)
    for item in doc["items"]:
        table.add_row(*row(item, now))
    out.print(table)
    total = sum(int(i["size"]) - int(i["shared_size"] or 0) for i in doc["items"])
    going = [i for i in doc["items"] if not i["kept"]]
    last = doc["last_run"] or "never"
    out.print(
        f"{len(doc['items'])} images, {human(total)} of their own; {len(going)} "
        f"({human(sum(own(i) for i in going))}) go at the next collection (last: {last}). "
        f"Kept: the last {doc['policy']['keep_deployed']} deployed of each environment, and "
        f"any image used or built within {doc['policy']['min_age_days']:g} days.",
        highlight=False,
    )
    return EXIT_OK


def cmd_images_prune(args: argparse.Namespace) -> int:
    doc = _client().request(
        "POST", "/images/prune", {"dry_run": args.dry_run, "confirm": args.confirm}
    )
    if args.output != "table":
        _emit(doc, args.output)
        return EXIT_OK
    verb = "would remove" if doc["dry_run"] else "removed"
    for item in doc["removed"]:
        out.print(f"{verb} {name(item)} ({human(own(item))})", highlight=False)
    for failed in doc["failed"]:
        err.print(
            f"kept {name(failed['image'])}: {failed['error']['code']}: "
            f"{failed['error']['message']}",
            markup=False,
            highlight=False,
        )
    out.print(
        f"{verb} {len(doc['removed'])} images ({human(doc['freed'])}); {doc['kept']} kept"
        + (
            "; remove them with: odooops images prune --confirm"
            if doc["dry_run"] and doc["removed"]
            else ""
        ),
        highlight=False,
    )
    return EXIT_OK


def row(item: dict[str, Any], now: datetime) -> tuple[str, ...]:
    """One image as the table shows it."""
    reasons = [k["reason"] for k in item["kept"]]
    if item["collect_at"] is None:
        collected = "never" if "not-ours" in reasons else "-"
    elif datetime.fromisoformat(item["collect_at"]) <= now:
        collected = "next run"
    else:
        collected = item["collect_at"][:10]
    shared = item["shared_size"]
    return (
        name(item),
        item["project"] or "-",
        human(int(item["size"])),
        "-" if shared is None else human(int(shared)),
        "\n".join(item["used_by"]) or "-",
        ", ".join(item["kept_for_rollback_by"]) or "-",
        ", ".join(SHORT.get(r, r) for r in reasons) or "no",
        collected,
    )


def name(item: dict[str, Any]) -> str:
    return "\n".join(item["tags"]) or str(item["id"])[:19]


def own(item: dict[str, Any]) -> int:
    return max(0, int(item["size"]) - int(item["shared_size"] or 0))


def human(size: int) -> str:
    value = float(size)
    for unit in ("B", "kB", "MB", "GB"):
        if value < 1000 or unit == "GB":
            return f"{value:.0f} {unit}" if unit == "B" else f"{value:.1f} {unit}"
        value /= 1000
    raise AssertionError("unreachable")  # pragma: no cover
