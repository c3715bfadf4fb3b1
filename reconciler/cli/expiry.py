"""``odooops env extend ENV --ttl 3d``: push a non-permanent environment's expiry back.

One commit, like every write: made here with ``--state-repo``, else by the daemon's API
(``POST /v1/environments/{project}/{env}/extend``). The new expiry is ``max(expires, now) +
ttl``, computed on the file the commit lands on, and at most ``core.expiry.MAX_AHEAD`` from
now. A protected environment, or one whose tier has no ttl, never expires: ``not_expiring``.
"""

from __future__ import annotations

import argparse
import os
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from reconciler.cli.console import out
from reconciler.cli.data import EXIT_OK, _client, _emit
from reconciler.core import durations, expiry
from reconciler.core.errors import OdooOpsError


def add_commands(
    env_sub: Any, cache_dir: Path, allowlist_args: Callable[[argparse.ArgumentParser], None]
) -> None:
    ex = env_sub.add_parser(
        "extend", help="push an environment's expiry back (from now when it is past)"
    )
    ex.add_argument("name", help="PROJECT/ENV, or ENV with a single project")
    ex.add_argument(
        "--ttl",
        required=True,
        help=f'how much longer, e.g. "3d" or "36h" (the expiry stays within '
        f"{expiry.MAX_AHEAD.days} days from now)",
    )
    ex.add_argument(
        "--state-repo",
        help="state repository URL or path: author and push the commit directly, without "
        "the API (default: through the API of odooops login)",
    )
    ex.add_argument("--state-branch", default="main")
    ex.add_argument(
        "--author",
        default=os.environ.get("ODOOOPS_AUTHOR"),
        help='"Name <email>" (default: $ODOOOPS_AUTHOR, then git config)',
    )
    ex.add_argument("--cache-dir", type=Path, default=cache_dir)
    ex.add_argument("-o", "--output", choices=["table", "json", "yaml"], default="table")
    allowlist_args(ex)
    ex.set_defaults(func=cmd_extend)


def cmd_extend(args: argparse.Namespace) -> int:
    try:
        expiry.parse_extension(args.ttl)
    except ValueError as exc:
        raise OdooOpsError(
            f"--ttl: {exc}", code="usage", remediation=f"odooops env extend {args.name} --ttl 3d"
        ) from None
    if args.state_repo:
        doc = _extend_here(args)
    else:
        client = _client()
        key = client.resolve(args.name)
        doc = client.request(
            "POST", f"/environments/{key.project}/{key.env}/extend", {"ttl": args.ttl}
        )
    if args.output != "table":
        _emit(doc, args.output)
        return EXIT_OK
    when = f"; it now expires at {doc['expires']}" if doc.get("expires") else ""
    out.print(
        f"committed {doc['commit'][:12]} to {doc['branch']} (request {doc['request_id']}){when}",
        highlight=False,
    )
    return EXIT_OK


def _extend_here(args: argparse.Namespace) -> dict[str, Any]:
    """The commit made from this machine, then the expiry it wrote (read back from the
    branch: a concurrent extension may have added to it)."""
    # main registers this module's commands: its helpers are imported when the command runs.
    from reconciler.cli.main import _author, _state_repo
    from reconciler.gitops import changes

    writer = _state_repo(args)
    state = writer.current()
    key = changes.resolve_name(args.name, state.projects, [s.key for s in state.environments])
    spec = next((s for s in state.environments if s.key == key), None)
    if spec is None:
        raise changes.UnknownEnvironment(
            f"environment {key} is not declared in the state repository",
            remediation=f"odooops env list --state-repo {args.state_repo}",
        )
    expiry.check_extensible(spec, state)
    now = durations.format_instant(datetime.now(UTC))
    result = writer.submit(
        changes.Operation("extend", key, {"by": args.ttl, "now": now}), _author(args.author)
    )
    after = next((s for s in writer.current().environments if s.key == key), None)
    expires = after.expires if after is not None else None
    return {
        "environment": str(key),
        "commit": result.commit,
        "branch": result.branch,
        "change_request": result.change_request,
        "request_id": result.request_id,
        "expires": durations.format_instant(expires) if expires else None,
    }
