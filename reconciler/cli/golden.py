"""``odooops db golden ENV``: the golden copy of a production environment, from the daemon's API.

Shows whether one is kept and for what (the environments that copy production, the previews'
seed), when it was refreshed and at which revision, its size and what its masking took;
``--refresh`` makes it again now, as a job like every data operation.
"""

from __future__ import annotations

import argparse
from typing import Any

from rich.table import Table

from reconciler.cli.console import out
from reconciler.cli.data import EXIT_OK, _client, _emit, _follow, _key, _path, _size


def add_commands(db_sub: Any) -> None:
    """Registered under ``odooops db`` (``reconciler.cli.data`` makes that group)."""
    gd = db_sub.add_parser(
        "golden",
        help="the golden copy of a production environment (age, size, revision); "
        "--refresh makes it again",
    )
    gd.add_argument("name", help="the production environment: PROJECT/ENV or ENV")
    gd.add_argument("--refresh", action="store_true", help="make it again now (a job)")
    gd.add_argument(
        "--no-wait", dest="wait", action="store_false", help="return once the job started"
    )
    gd.add_argument("--timeout", type=float, default=7200)
    gd.add_argument("-o", "--output", choices=["table", "json", "yaml"], default="table")
    gd.set_defaults(func=cmd_golden)


def cmd_golden(args: argparse.Namespace) -> int:
    client = _client()
    key = _key(client, args.name)
    if args.refresh:
        job = dict(client.request("POST", f"{_path(key)}/golden/refresh", {}))
        return _follow(client, job, args)
    doc: dict[str, Any] = client.get(f"{_path(key)}/golden")
    if args.output != "table":
        _emit(doc, args.output)
        return EXIT_OK
    kept = "kept: " + ", ".join(doc["why"]) if doc["kept"] else "not kept (nothing copies it)"
    out.print(f"golden copy of {doc['source']}: {kept}", highlight=False)
    if not doc["exists"]:
        out.print(f"none made yet: odooops db golden {key} --refresh", highlight=False)
        return EXIT_OK
    table = Table(show_header=False)
    age = doc.get("age_seconds")
    rows = {
        "database": doc["database"],
        "refreshed at": f"{doc.get('refreshed_at', '')} ({_age(age)} ago)" if age else "-",
        "why": str(doc.get("reason", "")),
        "revision": str(doc.get("revision", ""))[:12],
        "size": _size(int(doc.get("size_bytes", 0))),
        "filestore files": str(doc.get("filestore_files", "")),
        "masked rows": f"{doc.get('masked_rows', '')} in {doc.get('masking_seconds', '')} s",
        "refresh took": f"{doc.get('seconds', '')} s",
        "refresh schedule": f"{doc.get('refresh')} and after each production update",
    }
    for field, value in rows.items():
        table.add_row(field, value)
    out.print(table)
    return EXIT_OK


def _age(seconds: int) -> str:
    for unit, scale in (("d", 86400), ("h", 3600), ("m", 60)):
        if seconds >= scale:
            return f"{seconds // scale}{unit}"
    return f"{seconds}s"
