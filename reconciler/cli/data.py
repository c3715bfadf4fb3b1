"""``odooops db ...``, ``odooops mail ...`` and ``odooops jobs``: data operations from the CLI.

They talk to the daemon's API (``odooops login`` first): the daemon holds the database
credentials, the backup key and the storage. Long operations are jobs; the CLI follows them
with a progress bar and exits 0 when the job succeeded, 1 when it failed (its structured error
printed), 2 on a usage or API error.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path
from typing import Any
from urllib.parse import urlencode

from rich.progress import BarColumn, DownloadColumn, Progress, TextColumn, TimeElapsedColumn
from rich.table import Table

from reconciler.cli.console import err, out, print_error
from reconciler.core.errors import OdooOpsError

EXIT_OK, EXIT_FAILED = 0, 1


def add_commands(sub: Any) -> Any:
    """``db``, ``mail`` and ``jobs``; returns the ``db`` group's subparsers (other modules
    register their ``db`` commands there)."""
    db = sub.add_parser("db", help="backups, restores, copies and Odoo dumps (API)")
    db_sub = db.add_subparsers(required=True, metavar="ACTION")

    def env_arg(sp: argparse.ArgumentParser, help_text: str = "PROJECT/ENV or ENV") -> None:
        sp.add_argument("name", help=help_text)

    def follow(sp: argparse.ArgumentParser) -> None:
        sp.add_argument(
            "--no-wait", dest="wait", action="store_false", help="return once the job started"
        )
        sp.add_argument("--timeout", type=float, default=7200)
        sp.add_argument("-o", "--output", choices=["table", "json", "yaml"], default="table")

    cl = db_sub.add_parser("clone", help="copy an environment's data onto another (sanitised)")
    env_arg(cl, "source environment")
    cl.add_argument("--to", required=True, help="target environment (never a protected one)")
    follow(cl)
    cl.set_defaults(func=cmd_clone)

    bk = db_sub.add_parser("backup", help="back up an environment now")
    env_arg(bk)
    bk.add_argument("--reason", default="manual")
    follow(bk)
    bk.set_defaults(func=cmd_backup)

    ls = db_sub.add_parser("backups", help="list an environment's backups")
    env_arg(ls)
    ls.add_argument("-o", "--output", choices=["table", "json", "yaml"], default="table")
    ls.set_defaults(func=cmd_backups)

    rs = db_sub.add_parser("restore", help="restore a backup into this or another environment")
    env_arg(rs, "environment whose backup it is")
    rs.add_argument("--backup", required=True, help="backup id (odooops db backups ENV) or latest")
    rs.add_argument("--to", help="target environment (default: the same)")
    rs.add_argument(
        "--confirm", action="store_true", help="needed to replace a protected environment's data"
    )
    follow(rs)
    rs.set_defaults(func=cmd_restore)

    rb = db_sub.add_parser(
        "rollback",
        help="put back the data an update on a copy replaced (kept for keep_previous), "
        "pinning the environment to the revision it was at",
    )
    env_arg(rb)
    rb.add_argument(
        "--confirm", action="store_true", help="needed to replace a protected environment's data"
    )
    rb.add_argument("--pr", action="store_true", help="pin through a change request")
    rb.add_argument("-o", "--output", choices=["table", "json", "yaml"], default="table")
    rb.set_defaults(func=cmd_rollback)

    ex = db_sub.add_parser("export", help="download Odoo's dump zip (dump.sql, filestore)")
    env_arg(ex)
    ex.add_argument("-f", "--file", type=Path, help="where to write (default PROJECT-ENV.zip)")
    ex.set_defaults(func=cmd_export)

    im = db_sub.add_parser("import", help="replace an environment's data by an Odoo dump")
    env_arg(im)
    im.add_argument("file", type=Path, help="Odoo zip, pg_dump file or plain SQL")
    im.add_argument("--confirm", action="store_true")
    follow(im)
    im.set_defaults(func=cmd_import)

    mail = sub.add_parser("mail", help="mail caught from non-production environments (API)")
    mail_sub = mail.add_subparsers(required=True, metavar="ACTION")
    ml = mail_sub.add_parser("list", help="messages an environment tried to send")
    env_arg(ml)
    ml.add_argument("--limit", type=int, default=50)
    ml.add_argument("-q", "--query", help="filter on subject, sender, recipients")
    ml.add_argument("-o", "--output", choices=["table", "json", "yaml"], default="table")
    ml.set_defaults(func=cmd_mail_list)
    ms = mail_sub.add_parser("show", help="one message")
    env_arg(ms)
    ms.add_argument("id")
    ms.add_argument("-o", "--output", choices=["table", "json", "yaml"], default="table")
    ms.set_defaults(func=cmd_mail_show)

    jb = sub.add_parser("jobs", help="data jobs of the daemon (API)")
    jb.add_argument("id", nargs="?")
    jb.add_argument("-o", "--output", choices=["table", "json", "yaml"], default="table")
    jb.set_defaults(func=cmd_jobs)
    return db_sub


def _client() -> Any:
    from reconciler.cli.client import ApiClient, load_login

    return ApiClient(load_login())


def _key(client: Any, name: str) -> Any:
    return client.resolve(name)


def _sibling(client: Any, source: Any, name: str) -> Any:
    """The other environment of a copy or restore: a bare name is the source's project's, and
    data moves only within one project (the API's rule too)."""
    target = client.resolve(name, project=source.project)
    if target.project != source.project:
        raise OdooOpsError(
            f"{target} is in another project than {source}: data is copied and restored "
            "within one project",
            code="usage",
            remediation=f"odooops db backups {source}  (then restore within {source.project})",
        )
    return target


def _path(key: Any) -> str:
    return f"/environments/{key.project}/{key.env}"


def _emit(doc: Any, fmt: str) -> None:
    if fmt == "json":
        print(json.dumps(doc, indent=2))
    else:
        import yaml

        print(yaml.safe_dump(doc, sort_keys=False), end="")


def _follow(client: Any, job: dict[str, Any], args: argparse.Namespace) -> int:
    """Draw the job's progress until it ends; print its result or its error."""
    if args.wait:
        deadline = time.monotonic() + args.timeout
        columns = [TextColumn("{task.description}"), BarColumn(), DownloadColumn()]
        with Progress(*columns, TimeElapsedColumn(), console=err, transient=True) as bar:
            task = bar.add_task(f"{job['kind']} {job['environment']}: {job['phase']}", total=None)
            while job["state"] == "running" and time.monotonic() < deadline:
                time.sleep(1)
                job = client.get(f"/jobs/{job['id']}")
                total = job["total"] or None
                bar.update(
                    task,
                    description=f"{job['kind']} {job['environment']}: {job['phase']}",
                    completed=job["done"],
                    total=total,
                )
    if args.output != "table":
        _emit(job, args.output)
    elif job["state"] == "running":
        out.print(f"job {job['id']} started: odooops jobs {job['id']}")
    elif job["state"] == "succeeded":
        result = job["result"] or {}
        out.print(f"[green]{job['kind']} of {job['environment']} succeeded[/]")
        for field, value in result.items():
            if isinstance(value, list):
                value = ", ".join(str(v) for v in value)
            if not isinstance(value, dict):
                out.print(f"  {field}: {value}", highlight=False)
    if job["state"] == "failed":
        error = job["error"] or {}
        exc = OdooOpsError(
            error.get("message", "failed"),
            code=error.get("error", "job_failed"),
            remediation=error.get("remediation", ""),
        )
        if args.output == "table":
            print_error(exc)
        return EXIT_FAILED
    return EXIT_OK


def _start(client: Any, path: str, body: dict[str, Any]) -> dict[str, Any]:
    return dict(client.request("POST", path, body))


def cmd_clone(args: argparse.Namespace) -> int:
    client = _client()
    source = _key(client, args.name)
    target = _sibling(client, source, args.to)
    job = _start(client, f"{_path(source)}/clone", {"to": target.env})
    return _follow(client, job, args)


def cmd_backup(args: argparse.Namespace) -> int:
    client = _client()
    key = _key(client, args.name)
    job = _start(client, f"{_path(key)}/backups", {"reason": args.reason})
    return _follow(client, job, args)


def cmd_backups(args: argparse.Namespace) -> int:
    client = _client()
    key = _key(client, args.name)
    items = client.get(f"{_path(key)}/backups")["items"]
    if args.output != "table":
        _emit(items, args.output)
        return EXIT_OK
    table = Table(title=f"Backups of {key}")
    for column in ("id", "status", "reason", "revision", "size", "key"):
        table.add_column(column, no_wrap=column in ("id", "status", "size"))
    for b in items:
        size = (b.get("sizes") or {}).get("stored_bytes")
        table.add_row(
            b["id"],
            "[green]good[/]" if b["status"] == "good" else f"[red]{b['status']}[/]",
            str(b.get("reason", "")),
            str(b.get("revision", ""))[:12],
            _size(size) if isinstance(size, int) else "-",
            str(b.get("key_id", "")),
        )
    out.print(table)
    return EXIT_OK


def _size(n: int) -> str:
    for unit, scale in (("GiB", 1024**3), ("MiB", 1024**2), ("KiB", 1024)):
        if n >= scale:
            return f"{n / scale:.1f} {unit}"
    return f"{n} B"


def cmd_restore(args: argparse.Namespace) -> int:
    client = _client()
    source = _key(client, args.name)
    target = _sibling(client, source, args.to) if args.to else source
    body: dict[str, Any] = {"backup": args.backup, "confirm": args.confirm}
    if target != source:
        body["from"] = source.env
    job = _start(client, f"{_path(target)}/restore", body)
    return _follow(client, job, args)


def cmd_rollback(args: argparse.Namespace) -> int:
    """A data rollback is a pin (a commit) plus a mark on the kept data: the daemon puts the
    data back when it deploys the pinned revision."""
    client = _client()
    key = _key(client, args.name)
    body: dict[str, Any] = {"confirm": args.confirm}
    if args.pr:
        body["pr"] = True
    doc = client.request("POST", f"{_path(key)}/rollback", body)
    if args.output != "table":
        _emit(doc, args.output)
    elif doc["change_request"]:
        out.print(
            f"{key} is protected: the pin to the kept data's revision is on the change-request "
            f"branch [bold]{doc['branch']}[/]; the data is put back once it is approved, "
            "merged and deployed (odooops requests list)"
        )
    else:
        out.print(
            f"committed {doc['commit'][:12]} (the pin to the kept data's revision); the daemon "
            f"puts the data back when it deploys it: odooops status {key}"
        )
    return EXIT_OK


def cmd_export(args: argparse.Namespace) -> int:
    client = _client()
    key = _key(client, args.name)
    dest: Path = args.file or Path(f"{key.project}-{key.env}.zip")
    partial = dest.with_name(dest.name + ".partial")
    try:
        with partial.open("wb") as fh, err.status(f"exporting {key} to {dest}"):
            size = client.download(f"{_path(key)}/export", fh)
        partial.replace(dest)
    except BaseException:
        partial.unlink(missing_ok=True)
        raise
    out.print(f"[green]{dest}[/] ({_size(size)})")
    return EXIT_OK


def cmd_import(args: argparse.Namespace) -> int:
    if not args.file.is_file():
        raise OdooOpsError(
            f"{args.file} is not a file",
            code="invalid_request",
            remediation="odooops db import ENV path/to/dump.zip",
        )
    client = _client()
    key = _key(client, args.name)
    params = {"confirm": str(args.confirm).lower()}
    with err.status(f"uploading {args.file}"):
        job = client.upload(f"{_path(key)}/import", args.file, params)
    return _follow(client, job, args)


def cmd_mail_list(args: argparse.Namespace) -> int:
    client = _client()
    key = _key(client, args.name)
    params = {"limit": args.limit, **({"q": args.query} if args.query else {})}
    items = client.get(f"{_path(key)}/mail?{urlencode(params)}")["items"]
    if args.output != "table":
        _emit(items, args.output)
        return EXIT_OK
    table = Table(title=f"Mail caught from {key}")
    for column in ("id", "received", "from", "to", "subject"):
        table.add_column(column)
    for m in items:
        table.add_row(
            m["id"], m["received_at"], m["sender"], ", ".join(m["recipients"]), m["subject"]
        )
    out.print(table)
    return EXIT_OK


def cmd_mail_show(args: argparse.Namespace) -> int:
    client = _client()
    key = _key(client, args.name)
    doc = client.get(f"{_path(key)}/mail/{args.id}")
    if args.output != "table":
        _emit(doc, args.output)
        return EXIT_OK
    out.print(f"[bold]{doc['subject']}[/]", highlight=False)
    out.print(f"From: {doc['sender']}\nTo: {', '.join(doc['recipients'])}", highlight=False)
    out.print(f"Date: {doc['received_at']}\n", highlight=False)
    sys.stdout.flush()
    print(doc.get("text") or doc.get("html") or "")
    for att in doc.get("attachments", []):
        out.print(f"[dim]attachment: {att.get('filename')} ({att.get('size')} bytes)[/]")
    return EXIT_OK


def cmd_jobs(args: argparse.Namespace) -> int:
    client = _client()
    if args.id:
        doc = client.get(f"/jobs/{args.id}")
        _emit(doc, "json" if args.output == "table" else args.output)
        return EXIT_OK if doc["state"] != "failed" else EXIT_FAILED
    items = client.get("/jobs")["items"]
    if args.output != "table":
        _emit(items, args.output)
        return EXIT_OK
    table = Table(title="Data jobs")
    for column in ("id", "kind", "environment", "state", "phase", "by", "started"):
        table.add_column(column)
    for j in items:
        table.add_row(
            j["id"],
            j["kind"],
            j["environment"],
            j["state"],
            j["phase"],
            j["requested_by"],
            j["started"],
        )
    out.print(table)
    return EXIT_OK
