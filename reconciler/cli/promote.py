"""``odooops promote``, ``odooops branch`` and ``odooops db migrate``: revisions moved between
environments, from what the daemon sees them run (so through its API only).

``promote`` is a dry run unless ``--confirm``, whatever the target: it prints the commit it
would make and exits 1 when that would change the target (as ``plan`` does with changes), 0
when the target is pinned there already. Writes to a protected target become a change request;
the output says so with the command that approves it.
"""

from __future__ import annotations

import argparse
from typing import Any

from reconciler.cli.console import out
from reconciler.cli.data import EXIT_FAILED, EXIT_OK, _client, _emit, _path


def add_commands(sub: Any, db_sub: Any) -> None:
    pr = sub.add_parser(
        "promote",
        help="pin DST to the commit SRC serves, once SRC passed its gates (API; dry run "
        "without --confirm)",
    )
    pr.add_argument("source", metavar="SRC", help="PROJECT/ENV or ENV, e.g. acme/staging")
    pr.add_argument("target", metavar="DST", help="PROJECT/ENV or ENV of the same project")
    pr.add_argument("--confirm", action="store_true", help="commit it (default: show it only)")
    _write_args(pr)
    pr.set_defaults(func=cmd_promote)

    br = sub.add_parser(
        "branch",
        help="create branch NAME of the app repository at the commit ENV serves, and its "
        "environment (API)",
    )
    br.add_argument("name", help="the new branch, e.g. hotfix/invoice-rounding")
    br.add_argument("--from", dest="source", required=True, metavar="ENV", help="PROJECT/ENV")
    _write_args(br)
    br.set_defaults(func=cmd_branch)

    mg = db_sub.add_parser(
        "migrate",
        help="approve the module update held by migration_pending (that revision only; API)",
    )
    mg.add_argument("name", help="PROJECT/ENV or ENV")
    _write_args(mg)
    mg.set_defaults(func=cmd_migrate)


def _write_args(sp: argparse.ArgumentParser) -> None:
    sp.add_argument(
        "--pr", action="store_true", help="go to a change-request branch even if not protected"
    )
    sp.add_argument(
        "--request", metavar="ID", help="add this write to your own open change request ID"
    )
    sp.add_argument("-o", "--output", choices=["table", "json", "yaml"], default="table")


def _routing(args: argparse.Namespace) -> dict[str, Any]:
    return {
        **({"pr": True} if args.pr else {}),
        **({"change_request": args.request} if args.request else {}),
    }


def cmd_promote(args: argparse.Namespace) -> int:
    client = _client()
    target = client.resolve(args.target)
    source = client.resolve(args.source, project=target.project)
    body = {"from": str(source), "confirm": args.confirm, **_routing(args)}
    doc = client.request("POST", f"{_path(target)}/promote", body)
    if args.output != "table":
        _emit(doc, args.output)
    promotion = doc.get("promotion")
    if promotion is not None and not doc.get("committed", True):  # nothing was committed
        if args.output == "table":
            _print_dry_run(promotion, doc, args.confirm)
        return EXIT_FAILED if promotion["changes"] and not args.confirm else EXIT_OK
    if args.output == "table":
        _print_written(doc, str(target))
    return EXIT_OK


def _print_dry_run(promotion: dict[str, Any], doc: dict[str, Any], confirmed: bool) -> None:
    src, dst, rev = promotion["from"], promotion["to"], promotion["revision"]
    if not promotion["changes"]:
        out.print(f"{dst} is pinned to {rev[:12]} already (what {src} serves): nothing to do")
        return
    out.print(
        f"would promote {src} to {dst}:\n"
        f"  revision  {promotion['previous'][:12]} -> {rev[:12]}\n"
        f"  image     {promotion['image']}\n"
        f"  modules   {_modules(promotion.get('modules'))}",
        markup=False,
        highlight=False,
    )
    review = " (protected: it becomes a change request)" if doc.get("protected") else ""
    if not confirmed:
        out.print(f"nothing committed; to commit it{review}:")
        out.print(f"  odooops promote {src} {dst} --confirm", markup=False, highlight=False)


def _modules(changed: list[str] | None) -> str:
    if changed is None:
        return "not known (the target serves no resolved revision)"
    return ", ".join(changed) + " (their folders differ)" if changed else "none change"


def cmd_migrate(args: argparse.Namespace) -> int:
    client = _client()
    key = client.resolve(args.name)
    doc = client.request("POST", f"{_path(key)}/migrate", _routing(args))
    if args.output != "table":
        _emit(doc, args.output)
    else:
        _print_written(doc, str(key))
    return EXIT_OK


def cmd_branch(args: argparse.Namespace) -> int:
    client = _client()
    source = client.resolve(args.source)
    doc = client.request("POST", f"{_path(source)}/branch", {"name": args.name, **_routing(args)})
    if args.output != "table":
        _emit(doc, args.output)
        return EXIT_OK
    out.print(
        f"branch {doc['app_branch']} created at {doc['revision'][:12]} (what {source} serves)",
        markup=False,
        highlight=False,
    )
    _print_written(doc, doc["environment"])
    return EXIT_OK


def _print_written(doc: dict[str, Any], key: str) -> None:
    if doc["change_request"]:
        out.print(
            f"{key} is protected: committed {doc['commit'][:12]} to the change-request "
            f"branch [bold]{doc['branch']}[/] (change request {doc['change_request_id']}). "
            "It applies once another person approves it and it is merged:\n"
            f"  odooops requests approve {doc['change_request_id']} --state-repo URL"
            + (f"\n  review: {doc['change_request_url']}" if doc.get("change_request_url") else "")
        )
    else:
        out.print(
            f"committed {doc['commit'][:12]} to {doc['branch']} for {key} (request "
            f"{doc['request_id']}); the daemon applies it on its next pass"
        )
