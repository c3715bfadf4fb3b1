"""``odooops``: the command line.

Exit codes mean the same everywhere (as ``terraform plan -detailed-exitcode`` and
``argocd app diff``): 0 ok / no difference, 1 differences or a failed operation, 2 usage,
invalid input or an unreachable service. Errors print the structured form: code, message,
and the exact command to run next.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import re
import sys
from collections.abc import Sequence
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import yaml
from rich.table import Table

from reconciler.cli.builds import add_commands as add_build_commands
from reconciler.cli.console import err, out, print_error
from reconciler.cli.data import add_commands as add_data_commands
from reconciler.cli.expiry import add_commands as add_expiry_commands
from reconciler.cli.golden import add_commands as add_golden_commands
from reconciler.cli.history import add_commands as add_history_commands
from reconciler.cli.images import add_commands as add_image_commands
from reconciler.cli.previews import add_commands as add_preview_commands
from reconciler.cli.promote import add_commands as add_promote_commands
from reconciler.cli.push import add_commands as add_push_commands
from reconciler.core.errors import OdooOpsError, SecretsError
from reconciler.core.model import check_instance
from reconciler.engine.status import EnvironmentStatus, StatusStore

DEFAULT_DATA_DIR = Path(os.environ.get("ODOOOPS_DATA_DIR", "/var/lib/odooops"))
CACHE_DIR = Path(os.environ.get("XDG_CACHE_HOME", Path.home() / ".cache")) / "odooops"
EXIT_OK, EXIT_CHANGES, EXIT_ERROR = 0, 1, 2


def main(argv: Sequence[str] | None = None) -> int:
    parser = _parser()
    args = parser.parse_args(argv)
    logging.basicConfig(
        level=logging.DEBUG if getattr(args, "verbose", False) else logging.INFO,
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
        stream=sys.stderr,
    )
    # A poll skipped because the previous pass still runs is by design (passes never overlap).
    logging.getLogger("apscheduler").setLevel(logging.ERROR)
    logging.getLogger("httpx").setLevel(logging.WARNING)  # one line per API call is noise
    try:
        if getattr(args, "instance", None) is not None:
            check_instance(args.instance)  # before it labels or names anything
        return int(args.func(args))
    except OdooOpsError as exc:
        _print_error(exc, getattr(args, "output", "table"))
        return EXIT_ERROR
    except KeyboardInterrupt:
        return 130


def _print_error(exc: OdooOpsError, output: str) -> None:
    if output == "json":
        print(json.dumps(exc.to_dict(), indent=2), file=sys.stderr)
    else:
        print_error(exc)


def _allowlist_args(sp: argparse.ArgumentParser) -> None:
    """The allowlist of secret references a state may use (``core.secretrefs``); the same
    flags (or environment) on the daemon and on every command that validates a state."""
    sp.add_argument(
        "--secret-env-prefix",
        default=os.environ.get("ODOOOPS_SECRETS_ENV_PREFIX", "ODOOOPS_SECRET_"),
        help="{env: NAME} may name only variables with this prefix (default ODOOOPS_SECRET_, "
        "or $ODOOOPS_SECRETS_ENV_PREFIX)",
    )
    sp.add_argument(
        "--secrets-dir",
        default=os.environ.get("ODOOOPS_SECRETS_DIR", "/etc/odooops/secrets"),
        help="{file: PATH} may name only files under this directory (default "
        "/etc/odooops/secrets, or $ODOOOPS_SECRETS_DIR)",
    )


def _secret_policy(args: argparse.Namespace) -> Any:
    from reconciler.core.secretrefs import SecretPolicy

    try:
        return SecretPolicy(env_prefix=args.secret_env_prefix, secrets_dir=args.secrets_dir)
    except ValueError as exc:
        raise OdooOpsError(
            str(exc),
            code="usage",
            remediation="odooops daemon --help (--secret-env-prefix, --secrets-dir)",
        ) from exc


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="odooops", description=__doc__.splitlines()[0])
    p.add_argument("-v", "--verbose", action="store_true")
    sub = p.add_subparsers(required=True, metavar="COMMAND")

    def common(
        sp: argparse.ArgumentParser, state: bool = True, state_required: bool = True
    ) -> None:
        sp.add_argument(
            "--data-dir",
            type=Path,
            default=DEFAULT_DATA_DIR,
            help="daemon data directory (status, secrets, git mirrors)",
        )
        sp.add_argument(
            "--instance",
            default=os.environ.get("ODOOOPS_INSTANCE", "default"),
            help="label that separates daemons sharing one Docker engine",
        )
        sp.add_argument("-o", "--output", choices=["table", "json", "yaml"], default="table")
        if state:
            sp.add_argument(
                "--state-repo",
                required=state_required,
                help="state repository URL or path"
                + ("" if state_required else " (default: ask the API of the login)"),
            )
            sp.add_argument("--state-branch", default="main")
            sp.add_argument(
                "--wheelhouse",
                type=Path,
                default=os.environ.get("ODOOOPS_WHEELHOUSE") or None,
                help="folder of Python distributions builds install from instead of an index "
                "(or $ODOOOPS_WHEELHOUSE)",
            )
            sp.add_argument(
                "--master-key-file",
                type=Path,
                default=None,
                help="file with the base64 master key (or $ODOOOPS_MASTER_KEY)",
            )
            _allowlist_args(sp)

    v = sub.add_parser("validate", help="check a state repository working tree (exit 0/1)")
    v.add_argument("path", nargs="?", default=".", help="a checkout (default: here)")
    v.add_argument("-o", "--output", choices=["table", "json"], default="table")
    _allowlist_args(v)
    v.set_defaults(func=cmd_validate)

    pl = sub.add_parser("plan", help="show what the daemon would change (exit 0 none, 1 changes)")
    common(pl, state_required=False)
    pl.set_defaults(func=cmd_plan)

    d = sub.add_parser("daemon", help="run the reconciler until interrupted")
    common(d)
    d.add_argument("--interval", type=int, default=None, help="override reconcile.interval")
    d.add_argument("--jitter", type=int, default=None, help="override reconcile.jitter")
    d.add_argument("--once", action="store_true", help="one pass, then exit (1 on errors)")
    d.add_argument("--health-timeout", type=float, default=300.0)
    d.add_argument(
        "--health-interval",
        type=int,
        default=5,
        help="seconds between Docker's health checks of Odoo containers (how soon a started "
        "container is seen healthy)",
    )
    d.add_argument(
        "--listen", default="127.0.0.1:8089", help="HOST:PORT of the REST API ('off' to disable)"
    )
    _jwt_args(d)
    d.add_argument(
        "--api-key-file",
        type=Path,
        default=None,
        help="HS256 signing key of API tokens (default DATA_DIR/api.key, made once)",
    )
    d.add_argument(
        "--forge",
        choices=["github", "gitlab", "gitea"],
        help="open real pull/merge requests for change requests on this forge",
    )
    d.add_argument(
        "--forge-api",
        help="e.g. https://api.github.com, https://HOST/api/v4 "
        "(GitLab), https://HOST/api/v1 (Gitea)",
    )
    d.add_argument("--forge-repo", help="owner/name of the state repository on the forge")
    d.add_argument(
        "--public-url",
        help="where users reach this daemon's API, for links in commit statuses "
        "(or $ODOOOPS_PUBLIC_URL)",
    )
    d.add_argument("--forge-token-file", type=Path)
    d.add_argument(
        "--webhook-secret-file",
        type=Path,
        default=None,
        help="shared secret of GitHub/GitLab/Gitea webhooks (/v1/webhooks/FORGE)",
    )
    d.add_argument(
        "--previews-poll",
        type=int,
        default=300,
        metavar="SECONDS",
        help="how often the forges' open pull requests are read, the safety net of "
        "pull-request webhooks for previews (default 300)",
    )
    d.add_argument(
        "--production-allowlist",
        default="",
        help="comma-separated CIDRs allowed to write to protected environments",
    )
    d.set_defaults(func=cmd_daemon)

    s = sub.add_parser("status", help="status of every environment")
    s.add_argument(
        "--data-dir",
        type=Path,
        default=None,
        help="read a local daemon's data directory (default: the API of odooops "
        "login, else /var/lib/odooops)",
    )
    s.add_argument("-o", "--output", choices=["table", "json", "yaml"], default="table")
    s.add_argument("env", nargs="?", help="project/env to show in detail")
    s.set_defaults(func=cmd_status)

    k = sub.add_parser("init-key", help="write a new master key file (mode 0600)")
    k.add_argument("path", type=Path)
    k.set_defaults(func=cmd_init_key)

    _write_commands(sub)

    lg = sub.add_parser("login", help="store the API URL and a token for the CLI (mode 0600)")
    lg.add_argument(
        "--api",
        default=os.environ.get("ODOOOPS_API", "http://127.0.0.1:8089"),
        help="the daemon's API (default: $ODOOOPS_API, else http://127.0.0.1:8089)",
    )
    lg.add_argument("--token", required=True)
    lg.set_defaults(func=cmd_login)
    rq = sub.add_parser("requests", help="change requests for protected environments")
    rq_sub = rq.add_subparsers(required=True, metavar="ACTION")
    for action, text in (
        ("list", "open, merged and closed change requests"),
        ("show", "one change request"),
        ("approve", "approve (someone other than the author)"),
        ("merge", "apply an approved change request to main"),
        ("close", "close without applying"),
    ):
        sp = rq_sub.add_parser(action, help=text)
        if action != "list":
            sp.add_argument("id")
        sp.add_argument("--state-repo", required=True)
        sp.add_argument("--state-branch", default="main")
        sp.add_argument("--cache-dir", type=Path, default=CACHE_DIR)
        sp.add_argument("--author", default=os.environ.get("ODOOOPS_AUTHOR"))
        sp.add_argument("-o", "--output", choices=["table", "json", "yaml"], default="table")
        _allowlist_args(sp)
        sp.set_defaults(func=cmd_requests, action=action)

    au = sub.add_parser("audit", help="who changed what: the state repository's history")
    au.add_argument("--state-repo", help="read the state repository directly (default: API)")
    au.add_argument("--state-branch", default="main")
    au.add_argument("--cache-dir", type=Path, default=CACHE_DIR)
    au.add_argument("-n", "--limit", type=int, default=30)
    au.add_argument("-o", "--output", choices=["table", "json", "yaml"], default="table")
    au.set_defaults(func=cmd_audit)
    ro = sub.add_parser(
        "routes", help="what the reverse proxy serves: hosts, upstreams, certificates (API)"
    )
    ro.add_argument("-o", "--output", choices=["table", "json", "yaml"], default="table")
    ro.set_defaults(func=cmd_routes)
    add_image_commands(sub)
    add_history_commands(sub)
    sh = sub.add_parser("shell", help="odoo shell, psql or bash in an environment (API)")
    sh.add_argument("name")
    sh.add_argument("--kind", choices=["odoo", "psql", "bash"], default="odoo")
    sh.add_argument(
        "--tty",
        action=argparse.BooleanOptionalAction,
        default=None,
        help="a terminal, as docker exec -t (default: when stdin is a terminal); --no-tty runs "
        "piped input as a script and exits with its status",
    )
    sh.set_defaults(func=cmd_shell)
    lo = sub.add_parser("logs", help="logs of every container of an environment (API)")
    lo.add_argument("name")
    lo.add_argument("-f", "--follow", action="store_true")
    lo.add_argument("--since", help="only newer than this, e.g. 10m, 2h")
    lo.add_argument("--tail", type=int, default=200)
    lo.set_defaults(func=cmd_logs)
    add_build_commands(sub)
    add_push_commands(sub)
    add_preview_commands(sub)
    db_commands = add_data_commands(sub)
    add_promote_commands(sub, db_commands)
    add_golden_commands(db_commands)
    rc = sub.add_parser(
        "reconcile",
        help="ask the daemon for a pass now, retrying environments held after a failure (API)",
    )
    rc.set_defaults(func=cmd_reconcile)

    co = sub.add_parser("completion", help="print a shell completion script")
    co.add_argument("shell", choices=["bash", "zsh", "tcsh"])
    co.set_defaults(func=lambda args: _completion(p, args.shell))

    tok = sub.add_parser("token", help="API tokens")
    tok_sub = tok.add_subparsers(required=True, metavar="ACTION")
    tc = tok_sub.add_parser("create", help="mint a token (needs the daemon's API signing key)")
    tc.add_argument("--subject", required=True, help="who: becomes the author of their commits")
    tc.add_argument(
        "--scope",
        action="append",
        required=True,
        help="env:read, env:write, deploy, db:backup, db:restore, shell, admin",
    )
    tc.add_argument("--env", action="append", help="limit to PROJECT/ENV globs (repeatable)")
    tc.add_argument("--ttl", default=None, help="lifetime (default 12h; at most --token-max-ttl)")
    tc.add_argument("--name")
    tc.add_argument("--email")
    tc.add_argument("--data-dir", type=Path, default=DEFAULT_DATA_DIR)
    tc.add_argument("--api-key-file", type=Path, default=None)
    _jwt_args(tc)
    tc.add_argument("-o", "--output", choices=["table", "json"], default="table")
    tc.set_defaults(func=cmd_token_create)
    tr = tok_sub.add_parser(
        "revoke", help="revoke a token (by its jti, or the token itself) on this daemon"
    )
    tr.add_argument("token", metavar="JTI|TOKEN", help="the token's jti, or the whole token")
    tr.add_argument("--reason", required=True, help="why (kept in the token audit log)")
    tr.add_argument("--data-dir", type=Path, default=DEFAULT_DATA_DIR)
    tr.add_argument("-o", "--output", choices=["table", "json"], default="table")
    tr.set_defaults(func=cmd_token_revoke)

    sec = sub.add_parser("secret", help="named secrets of the daemon's encrypted store")
    sec_sub = sec.add_subparsers(required=True, metavar="ACTION")
    ss = sec_sub.add_parser(
        "set", help="store a named secret, read from stdin (never from the command line)"
    )
    ss.add_argument(
        "name", help="letters, digits, '.', '_' and '-'; a state names it {secret: NAME}"
    )
    ss.add_argument(
        "--host",
        action="append",
        default=[],
        help="a host this secret may be sent to as a repository credential (repeatable)",
    )
    sl = sec_sub.add_parser("list", help="named secrets and their hosts (never a value)")
    sl.add_argument("-o", "--output", choices=["table", "json", "yaml"], default="table")
    for sp in (ss, sl):
        sp.add_argument("--data-dir", type=Path, default=DEFAULT_DATA_DIR)
        sp.add_argument(
            "--master-key-file",
            type=Path,
            default=None,
            help="file with the base64 master key (or $ODOOOPS_MASTER_KEY)",
        )
    ss.set_defaults(func=cmd_secret_set)
    sl.set_defaults(func=cmd_secret_list)
    return p


def _write_commands(sub: Any) -> None:
    """Commands that change the platform: each is one commit to the state repository."""

    def writer_args(sp: argparse.ArgumentParser) -> None:
        sp.add_argument(
            "--state-repo",
            help="state repository URL or path: author and push the commit directly, without "
            "the API (default: through the API of odooops login)",
        )
        sp.add_argument(
            "--wait",
            action="store_true",
            help="through the API: wait until the environment converges or fails",
        )
        sp.add_argument("--timeout", type=float, default=600.0, help="seconds --wait waits")
        sp.add_argument("--state-branch", default="main")
        sp.add_argument(
            "--author",
            default=os.environ.get("ODOOOPS_AUTHOR"),
            help='"Name <email>" (default: $ODOOOPS_AUTHOR, then git config)',
        )
        sp.add_argument(
            "--pr", action="store_true", help="go to a change-request branch even if not protected"
        )
        sp.add_argument(
            "--request",
            metavar="ID",
            help="add this write to your own open change request ID instead of opening one",
        )
        sp.add_argument("--cache-dir", type=Path, default=CACHE_DIR)
        sp.add_argument("-o", "--output", choices=["table", "json", "yaml"], default="table")
        _allowlist_args(sp)

    env = sub.add_parser("env", help="declare, change and list environments")
    env_sub = env.add_subparsers(required=True, metavar="ACTION")
    c = env_sub.add_parser("create", help="declare a new environment")
    c.add_argument("name", help="PROJECT/ENV, or ENV (or a branch name) with a single project")
    c.add_argument("--branch", help="default: the branch of the environment's name")
    c.add_argument("--tier", choices=["production", "staging", "dev", "ephemeral"])
    c.add_argument("--revision", help="pin a commit instead of tracking the branch head")
    c.add_argument("--owner")
    c.add_argument("--workers", type=int)
    writer_args(c)
    c.set_defaults(func=cmd_write, verb="create")
    for verb, text in (("suspend", "stop Odoo, keep the data"), ("resume", "start it again")):
        sp = env_sub.add_parser(verb, help=text)
        sp.add_argument("name")
        writer_args(sp)
        sp.set_defaults(func=cmd_write, verb=verb)
    add_expiry_commands(env_sub, CACHE_DIR, _allowlist_args)
    ls = env_sub.add_parser("list", help="environments declared in the state repository")
    ls.add_argument("--state-repo", help="read the state repository directly (default: the API)")
    ls.add_argument("--state-branch", default="main")
    ls.add_argument("--cache-dir", type=Path, default=CACHE_DIR)
    ls.add_argument("-o", "--output", choices=["table", "json", "yaml"], default="table")
    _allowlist_args(ls)
    ls.set_defaults(func=cmd_env_list)
    cr = env_sub.add_parser(
        "credentials",
        help="the Odoo administrator's login and password (API, scope shell; each view is "
        "recorded in the daemon's audit log)",
    )
    cr.add_argument("name", help="PROJECT/ENV, or ENV with a single project")
    cr.add_argument(
        "--rotate",
        action="store_true",
        help="set a new password first (the old one stops working), then show it",
    )
    cr.add_argument("-o", "--output", choices=["table", "json", "yaml"], default="table")
    cr.set_defaults(func=cmd_env_credentials)

    dep = sub.add_parser("deploy", help="point an environment at a branch or a commit")
    dep.add_argument("name")
    dep.add_argument("--branch")
    dep.add_argument("--revision", help='a commit, or "track" to follow the branch head')
    writer_args(dep)
    dep.set_defaults(func=cmd_write, verb="deploy")

    de = sub.add_parser("destroy", help="remove an environment (protected data is kept)")
    de.add_argument("name")
    writer_args(de)
    de.set_defaults(func=cmd_write, verb="destroy")


# --------------------------------------------------------------------------- commands
def cmd_validate(args: argparse.Namespace) -> int:
    from reconciler.core import validation

    raw: str = args.path
    if re.match(r"[A-Za-z][A-Za-z0-9+.-]*://|[^/\s]+@[^/\s]+:", raw):
        raise OdooOpsError(
            f"{raw} is a repository URL: validate reads the files of a checkout",
            code="usage",
            remediation=f"git clone {raw} state && odooops validate state",
        )
    root = Path(raw)
    if not root.is_dir():
        raise OdooOpsError(
            f"{root} is not a directory: validate reads the files of a state repository checkout",
            code="usage",
            remediation="git clone STATE-REPO-URL state && odooops validate state",
        )
    files = {
        p.relative_to(root).as_posix(): p.read_bytes()
        for p in sorted(root.rglob("*"))
        if p.is_file() and ".git" not in p.relative_to(root).parts
    }
    try:
        validation.validate_state(files, str(root), _secret_policy(args))
    except OdooOpsError as exc:
        _print_error(exc, args.output)
        return EXIT_CHANGES
    if args.output == "json":
        print(json.dumps({"valid": True, "path": str(root)}))
    else:
        out.print(f"[green]valid[/]: {root}")
    return EXIT_OK


def _engine(args: argparse.Namespace) -> Any:
    from reconciler.engine.bootstrap import open_engine
    from reconciler.engine.engine import EngineConfig

    config = EngineConfig(
        state_url=args.state_repo,
        data_dir=args.data_dir,
        instance=args.instance,
        state_branch=args.state_branch,
        health_timeout=getattr(args, "health_timeout", 300.0),
        health_interval=getattr(args, "health_interval", 5),
        read_only=args.func is cmd_plan,
        wheelhouse=getattr(args, "wheelhouse", None),
        public_url=getattr(args, "public_url", None) or os.environ.get("ODOOOPS_PUBLIC_URL", ""),
    )
    return open_engine(config, args.master_key_file, _secret_policy(args))


def cmd_plan(args: argparse.Namespace) -> int:
    """Planned here against the live engines (``--state-repo``), or by the daemon (API)."""
    from reconciler.core.model import EnvKey
    from reconciler.core.planner import Action, Kind, Plan

    if args.state_repo:
        engine = _engine(args)
        _config, _desired, _observed, the_plan = engine.plan()
        if engine.status.daemon.state_error and args.output == "table":
            err.print(
                f"[yellow]warning[/]: head of the state repository is invalid; planning "
                f"from the last valid commit {engine.last_good.commit[:12]}"
            )
    else:
        doc = _client().get("/plan")

        def key(name: str) -> EnvKey:
            project, _, env = name.partition("/")
            return EnvKey(project, env)

        the_plan = Plan(
            tuple(
                Action(key(a["environment"]), Kind(a["action"]), a["target"], a["reason"])
                for a in doc["actions"]
            ),
            tuple(doc["retained"]),
            {key(k): v for k, v in doc["held"].items()},
            {key(k): v for k, v in doc.get("expired", {}).items()},
        )
    if args.output == "table":
        out.print(the_plan.render(), markup=False, highlight=False)
    else:
        _emit(
            {
                "changes": the_plan.has_changes,
                "actions": [
                    {
                        "environment": str(a.key),
                        "action": a.kind.value,
                        "target": a.target,
                        "reason": a.reason,
                    }
                    for a in the_plan.actions
                ],
                "retained": list(the_plan.retained),
                "held": {str(k): v for k, v in the_plan.held.items()},
                "expired": {str(k): v for k, v in the_plan.expired.items()},
            },
            args.output,
        )
    return EXIT_CHANGES if the_plan.has_changes else EXIT_OK


def cmd_daemon(args: argparse.Namespace) -> int:
    import threading

    from reconciler.engine.daemon import Daemon

    engine = _engine(args)
    if args.once:
        for outcome in engine.recover():
            err.print(f"recovered: {outcome}", highlight=False)
        result = engine.reconcile()
        print_status_table(engine.status)
        if result.state_error:
            err.print(f"error[{result.state_error.code}]: {result.state_error.message}")
        return EXIT_CHANGES if (result.errors or result.state_error) else EXIT_OK

    last_shown: list[str] = []
    shown_lock = threading.Lock()

    def on_change() -> None:
        rows = [
            f"{k}:{s.sync}:{s.health}:{s.revision}:{s.serving}"
            for k, s in engine.status.all().items()
        ]
        with shown_lock:
            if rows == last_shown:
                return
            last_shown[:] = rows
        print_status_table(engine.status)

    from reconciler.engine.previews import Previews
    from reconciler.engine.promotions import Promoter
    from reconciler.engine.releases import engine_release
    from reconciler.engine.reviews import Reviews
    from reconciler.gitops.gitsource import GitSource
    from reconciler.gitops.statewriter import StateWriter

    # The API's writes and the daemon's own (previews, automatic promotions) share one writer.
    writer = StateWriter(
        GitSource(args.state_repo, args.data_dir / "git-writes", hint="--state-repo"),
        args.state_branch,
        _forge(args),
        lambda: engine.secrets.policy,
    )
    previews = Previews(writer, engine.ledger, engine.secrets.credential, engine.status.all)
    reviews = Reviews(engine.review, writer.forge, args.state_repo, engine.ledger)
    daemon = Daemon(
        engine, args.interval, args.jitter, on_change, previews, args.previews_poll, reviews
    )
    previews.on_commit = daemon.trigger
    daemon.promoter = Promoter(
        writer.current, lambda key: engine_release(engine, key), writer, engine.ledger
    )
    api_note = "API off"
    if args.listen != "off":
        from reconciler.api.app import create_app
        from reconciler.api.controlplane import DaemonControlPlane

        host, _, port = args.listen.rpartition(":")
        plane = DaemonControlPlane(engine, writer, daemon.trigger, previews, reviews)
        allowlist = tuple(x.strip() for x in args.production_allowlist.split(",") if x.strip())
        secret_file: Path | None = args.webhook_secret_file

        def webhook_secret() -> str | None:
            return secret_file.read_text().strip() if secret_file is not None else None

        app = create_app(
            plane,
            _authority(args, create=True),
            production_allowlist=allowlist,
            metrics=engine.metrics,
            webhook_secret=webhook_secret,
            upload_dir=args.data_dir / "uploads",
        )
        daemon.serve(app, host or "127.0.0.1", int(port))
        api_note = (
            f"API on http://{host or '127.0.0.1'}:{port}/v1 (tokens: odooops token "
            f"create --data-dir {args.data_dir} ...)"
        )
    out.print(
        f"odooops daemon: state repository {args.state_repo} (branch {args.state_branch}),"
        f" data in {args.data_dir}; {api_note}. Ctrl-C to stop.",
        highlight=False,
    )
    try:
        daemon.run()
    finally:
        engine.close()
    return EXIT_OK


def _forge(args: argparse.Namespace) -> Any:
    from reconciler.gitops.forges import Forge

    if not args.forge:
        return None
    if not (args.forge_api and args.forge_repo and args.forge_token_file):
        raise OdooOpsError(
            "--forge needs --forge-api, --forge-repo and --forge-token-file",
            code="usage",
            remediation="odooops daemon --help",
        )
    return Forge(
        args.forge, args.forge_api, args.forge_repo, args.forge_token_file.read_text().strip()
    )


def _api_key_file(args: argparse.Namespace, create: bool = False) -> Path:
    from reconciler.engine.bootstrap import new_key_file

    path: Path = args.api_key_file or (args.data_dir / "api.key")
    if not path.exists():
        if not create:
            raise SecretsError(
                f"no API signing key at {path}",
                remediation="start the daemon once (it creates one), or pass --api-key-file",
            )
        new_key_file(path)
    return path


def _authority(args: argparse.Namespace, create: bool = False) -> Any:
    """HS256 with the daemon's key file, or RS256/ES256 when a public key is given (then
    tokens are minted elsewhere, or here with --jwt-private-key). Tokens are checked against
    the revocation list of the data directory."""
    from reconciler.api.auth import AuthConfig, InvalidTokenRequest, TokenAuthority
    from reconciler.api.revocations import RevocationList
    from reconciler.core.durations import parse_duration

    try:
        max_ttl = parse_duration(args.token_max_ttl)
    except ValueError as exc:
        raise InvalidTokenRequest(
            f"--token-max-ttl: {exc}", remediation="--token-max-ttl 30d"
        ) from None
    if args.jwt_public_key is not None:
        config = AuthConfig(
            algorithm=args.jwt_algorithm,
            public_key=args.jwt_public_key.read_bytes(),
            private_key=args.jwt_private_key.read_bytes() if args.jwt_private_key else None,
            max_ttl=max_ttl,
        )
    else:
        key_file = _api_key_file(args, create=create)
        config = AuthConfig(secret=key_file.read_bytes().strip(), max_ttl=max_ttl)
    return TokenAuthority(config, revocations=RevocationList(args.data_dir))


def _jwt_args(sp: argparse.ArgumentParser) -> None:
    sp.add_argument(
        "--token-max-ttl",
        default="30d",
        help="the longest token lifetime minted or accepted (default 30d); tokens default to 12h",
    )
    sp.add_argument(
        "--jwt-algorithm", choices=["RS256", "ES256"], default="RS256", help="with --jwt-public-key"
    )
    sp.add_argument(
        "--jwt-public-key",
        type=Path,
        default=None,
        help="PEM public key: verify RS256/ES256 tokens instead of HS256",
    )
    sp.add_argument(
        "--jwt-private-key",
        type=Path,
        default=None,
        help="PEM private key, to mint RS256/ES256 tokens",
    )


def cmd_token_create(args: argparse.Namespace) -> int:
    """Mint with the signing key; recorded in the token audit log of an existing data dir."""
    from reconciler.api.auth import InvalidTokenRequest, peek
    from reconciler.core.durations import parse_duration

    authority = _authority(args)
    try:
        ttl = parse_duration(args.ttl) if args.ttl else None
    except ValueError as exc:
        raise InvalidTokenRequest(f"--ttl: {exc}", remediation="--ttl 12h") from None
    token = authority.mint(
        args.subject,
        args.scope,
        environments=args.env or (),
        ttl=ttl,
        name=args.name,
        email=args.email,
    )
    minted = peek(token)
    if args.data_dir.is_dir():
        authority.revocations.record(
            {
                "event": "minted",
                "jti": minted["jti"],
                "subject": args.subject,
                "scopes": " ".join(args.scope),
                "environments": " ".join(args.env or ()),
                "expires_at": minted.get("expires_at", ""),
                "by": _cli_user(),
                "via": "cli",
            }
        )
    if args.output == "json":
        print(
            json.dumps(
                {
                    "token": token,
                    "jti": minted["jti"],
                    "subject": args.subject,
                    "scopes": args.scope,
                    "expires_at": minted.get("expires_at", ""),
                }
            )
        )
    else:
        print(token)
    return EXIT_OK


def cmd_token_revoke(args: argparse.Namespace) -> int:
    """Add a token to the revocation list the daemon of ``--data-dir`` checks on every call."""
    from reconciler.api.auth import peek
    from reconciler.api.revocations import RevocationList

    if not args.data_dir.is_dir():
        raise OdooOpsError(
            f"{args.data_dir} is not a directory: a revocation there would reach no daemon",
            code="usage",
            remediation="odooops token revoke JTI --reason TEXT --data-dir DIR (the daemon's "
            "--data-dir)",
        )
    # A jti holds no dot; a JWT is three dot-separated parts.
    target = peek(args.token) if "." in args.token else {"jti": args.token}
    entry = RevocationList(args.data_dir).revoke(
        target["jti"],
        by=_cli_user(),
        reason=args.reason,
        subject=target.get("subject", ""),
        expires_at=target.get("expires_at", ""),
    )
    if args.output == "json":
        print(json.dumps({"revoked": True, **entry}))
    else:
        out.print(
            f"revoked token {entry['jti']}"
            + (f" of {entry['subject']}" if entry.get("subject") else "")
            + f"; the daemon using {args.data_dir} refuses it from now on",
            highlight=False,
        )
    return EXIT_OK


def _cli_user() -> str:
    """Who ran a token command on this host, for the token audit log."""
    import getpass

    try:
        return f"cli:{getpass.getuser()}"
    except (KeyError, OSError):
        return f"cli:uid-{os.getuid()}"


def _api_status() -> tuple[StatusStore, Any] | None:
    """The daemon's status through the API in a read-only in-memory store (None: no login)."""
    from reconciler.cli.client import load_login
    from reconciler.engine.status import DaemonStatus

    try:
        load_login()
    except OdooOpsError:
        return None
    client = _client()
    store = StatusStore(Path("/nonexistent/status.json"), read_only=True)
    items = client.get("/environments")["items"]
    store.put_many({f"{i['project']}/{i['env']}": EnvironmentStatus.from_dict(i) for i in items})
    daemon = client.get("/daemon")
    store.set_daemon(
        DaemonStatus(
            state_commit=str(daemon.get("state_commit") or ""),
            state_error=daemon.get("state_error"),
            last_poll=str(daemon.get("last_poll") or ""),
            last_pass_seconds=float(daemon.get("last_pass_seconds") or 0.0),
            passes=int(daemon.get("passes") or 0),
            expired={str(k): str(v) for k, v in (daemon.get("expired") or {}).items()},
        )
    )
    return store, client


def cmd_status(args: argparse.Namespace) -> int:
    """From the API of ``odooops login`` unless ``--data-dir`` names a local daemon's data."""
    api = _api_status() if args.data_dir is None else None
    if api is not None:
        store, client = api
        hint = "odooops status"

        def events(key: str) -> list[dict[str, Any]]:
            return list(client.get(f"/environments/{key}/events")["items"])
    else:
        data_dir = args.data_dir or DEFAULT_DATA_DIR
        path = data_dir / "status.json"
        if not path.exists():
            raise OdooOpsError(
                f"no status in {data_dir}",
                code="no_status",
                remediation="odooops login --api URL --token TOKEN, or "
                f"odooops daemon --data-dir {data_dir} --state-repo URL",
            )
        store = StatusStore(path)
        hint = f"odooops status --data-dir {data_dir}"

        def events(key: str) -> list[dict[str, Any]]:
            return store.events(key)

    envs = store.all()
    name = ""
    if args.env:
        from reconciler.core.model import EnvKey
        from reconciler.gitops import changes

        keys = [EnvKey(s.project, s.env) for s in envs.values()]
        name = str(changes.resolve_name(args.env, {k.project for k in keys}, keys))
        if name not in envs:
            raise OdooOpsError(
                f"unknown environment {name}", code="unknown_environment", remediation=hint
            )
        envs = {name: envs[name]}
    if args.output != "table":
        _emit(
            {
                "daemon": store.daemon.__dict__,
                "environments": {k: v.to_dict() for k, v in envs.items()},
            },
            args.output,
        )
        return EXIT_OK
    print_status_table(store, envs if name else None)
    if name:
        for cond in envs[name].conditions:
            colour = "green" if cond.status == (cond.type == "Ready") else "yellow"
            out.print(
                f"  [{colour}]{cond.type}={cond.status}[/] {cond.reason} "
                f"(since {cond.since}) {cond.message}",
                highlight=False,
            )
        for event in events(name)[:10]:
            out.print(
                f"  {event['time']}  {event['type']}={event['status']} {event['reason']} "
                f"{event['message'].splitlines()[0] if event['message'] else ''}",
                highlight=False,
            )
    return EXIT_OK


def _author(raw: str | None) -> Any:
    from reconciler.gitops.gitsource import Author

    if not raw:
        import pygit2

        try:
            config = pygit2.Config.get_global_config()
            raw = f"{config['user.name']} <{config['user.email']}>"
        except (KeyError, OSError, pygit2.GitError):
            raw = None
    match = re.fullmatch(r"\s*(.+?)\s*<([^<>\s]+@[^<>\s]+)>\s*", raw or "")
    if match is None:
        raise OdooOpsError(
            "who is making this change? the commit needs an author",
            code="usage",
            remediation='pass --author "Ann Integrator <ann@example.com>" (or set '
            "$ODOOOPS_AUTHOR, or git config --global user.name/user.email)",
        )
    return Author(match.group(1), match.group(2))


def _state_repo(args: argparse.Namespace) -> Any:
    from reconciler.gitops.gitsource import GitSource
    from reconciler.gitops.statewriter import StateWriter

    repo = GitSource(args.state_repo, args.cache_dir, hint="--state-repo")
    policy = _secret_policy(args)
    return StateWriter(repo, args.state_branch, secrets=lambda: policy)


def _fields(args: argparse.Namespace) -> dict[str, Any]:
    if args.verb == "create":
        fields: dict[str, Any] = {
            k: v
            for k, v in (
                ("branch", args.branch),
                ("tier", args.tier),
                ("revision", args.revision),
                ("owner", args.owner),
            )
            if v
        }
        if args.workers is not None:
            fields["overrides"] = {"workers": args.workers}
        return fields
    if args.verb == "deploy":
        if not args.branch and not args.revision:
            raise OdooOpsError(
                "deploy needs --branch or --revision",
                code="usage",
                remediation=f"odooops deploy {args.name} --branch release/v2",
            )
        fields = {k: v for k, v in (("branch", args.branch), ("revision", args.revision)) if v}
        fields.setdefault("revision", "track")
        return fields
    return {}


def cmd_write(args: argparse.Namespace) -> int:
    """One write: a commit made here (``--state-repo``) or by the daemon's API."""
    from reconciler.gitops import changes

    fields = _fields(args)
    if args.state_repo:
        if args.wait:
            raise OdooOpsError(
                "--wait follows the daemon's status: it needs the API",
                code="usage",
                remediation="odooops login --api URL --token TOKEN, then drop --state-repo",
            )
        writer = _state_repo(args)
        state = writer.current()
        key = changes.resolve_name(args.name, state.projects, [s.key for s in state.environments])
        if args.verb == "create" and "branch" not in fields:  # the branch of the same name
            fields["branch"] = changes.default_branch(args.name, [key.project])
        if args.verb == "create":
            fields.update(_expiry_at_creation(key, fields, state))
        result = writer.submit(
            changes.Operation(args.verb, key, fields, quota=args.verb == "create"),
            _author(args.author),
            pr=args.pr,
            change_request=args.request,
        )
        doc = {
            "environment": str(key),
            "commit": result.commit,
            "branch": result.branch,
            "change_request": result.change_request,
            "request_id": result.request_id,
        }
        if result.change_request:
            doc["change_request_id"] = result.change_request_id
    else:
        client = _client()
        key = client.resolve(args.name)
        if args.verb == "create" and "branch" not in fields:  # the branch of the same name
            fields["branch"] = changes.default_branch(args.name, [key.project])
        path = f"/environments/{key.project}/{key.env}"
        body: dict[str, Any] = {**fields, "pr": True} if args.pr else dict(fields)
        if args.request:
            body["change_request"] = args.request
        if args.verb == "create":
            doc = client.request("POST", "/environments", {"name": str(key), **body})
        elif args.verb == "destroy":
            query = f"?change_request={args.request}" if args.request else ""
            doc = client.request("DELETE", path + query)
        else:
            doc = client.request("POST", f"{path}/{args.verb}", body)
    if args.output != "table":
        _emit(doc, args.output)
    elif doc["change_request"]:
        out.print(
            f"{key} is protected: committed {doc['commit'][:12]} to the change-request "
            f"branch [bold]{doc['branch']}[/] (change request {doc['change_request_id']}). "
            "It applies once another person approves it and it is merged:\n"
            f"  odooops requests approve {doc['change_request_id']} --state-repo URL"
            + (f"\n  review: {doc['change_request_url']}" if doc.get("change_request_url") else "")
        )
    else:
        out.print(
            f"committed {doc['commit'][:12]} to {doc['branch']} (request "
            f"{doc['request_id']}); the daemon applies it on its next pass"
        )
    if args.wait and not doc["change_request"]:
        return _wait(client, key, doc["commit"], args.verb, args.timeout)
    return EXIT_OK


def _expiry_at_creation(key: Any, fields: dict[str, Any], state: Any) -> dict[str, str]:
    """``expires`` of a new file (as the API writes it), when it is not permanent."""
    from reconciler.core import durations, expiry

    expires = expiry.for_new_file(key, fields, state, datetime.now(UTC))
    return {"expires": durations.format_instant(expires)} if expires is not None else {}


def _client() -> Any:
    from reconciler.cli.client import ApiClient, load_login

    return ApiClient(load_login())


def _wait(client: Any, key: Any, commit: str, verb: str, timeout: float) -> int:
    """Follow the environment's status until it converges on ``commit`` or fails."""
    import time

    path = f"/environments/{key.project}/{key.env}/status"
    deadline = time.monotonic() + timeout
    with out.status(f"waiting for {key} to converge on {commit[:12]}") as spinner:
        while time.monotonic() < deadline:
            try:
                status = client.get(path)
            except OdooOpsError as exc:
                if exc.code == "unknown_environment" and verb == "destroy":
                    out.print(f"[green]{key} is gone[/]")
                    return EXIT_OK
                if exc.code != "unknown_environment":
                    raise
                status = None
            if status is not None:
                ready = next((c for c in status["conditions"] if c["type"] == "Ready"), None)
                spinner.update(
                    f"{key}: {status['sync']}, {status['health']}"
                    + (f" ({ready['reason']})" if ready else "")
                )
                if status["state_commit"] == commit and ready is not None:
                    if ready["status"] and status["sync"] == "Synced":
                        out.print(
                            f"[green]{key} is {status['health']}[/] at "
                            f"{status['revision'][:12]}: {status['url']}"
                        )
                        return EXIT_OK
                    if not ready["status"] and ready["reason"] != "Pending":
                        err.print(
                            f"[red]{key} failed[/]: {ready['reason']}: {ready['message']}",
                            highlight=False,
                        )
                        return EXIT_CHANGES
            time.sleep(2)
    err.print(f"{key} did not converge within {int(timeout)} s; odooops status {key}")
    return EXIT_CHANGES


def cmd_env_list(args: argparse.Namespace) -> int:
    from reconciler.core import durations

    if args.state_repo:
        state = _state_repo(args).current()
        title = f"Declared at {state.commit[:12]}"
        rows = [
            {
                "environment": str(s.key),
                "branch": s.branch,
                "tier": s.tier.value,
                "serving": "",
                "revision": s.revision,
                "sync": "",
                "health": "",
                "url": "",
                "expires": durations.format_instant(s.expires) if s.expires else None,
            }
            for s in state.environments
        ]
    else:
        title = "Environments"
        rows = [
            {
                "environment": f"{i['project']}/{i['env']}",
                "branch": i["branch"],
                "tier": i["tier"],
                "serving": str(i.get("serving", ""))[:12],
                "revision": i["revision"][:12],
                "sync": i["sync"],
                "health": i["health"],
                "url": i["url"],
                "expires": i.get("expires"),
            }
            for i in _client().get("/environments")["items"]
        ]
    if args.output != "table":
        _emit(rows, args.output)
        return EXIT_OK
    table = Table(title=title, title_justify="left")
    for col in STATUS_COLUMNS:
        table.add_column(col)
    fields = ("environment", "branch", "tier", "serving", "revision", "sync", "health", "url")
    at = datetime.now(UTC)
    for r in rows:
        table.add_row(*(str(r[c]) for c in fields), _expires_cell(r["expires"], at))
    out.print(table)
    return EXIT_OK


def cmd_login(args: argparse.Namespace) -> int:
    from reconciler.cli.client import ApiClient, Login, save_login

    login = Login(args.api.rstrip("/"), args.token)
    client = ApiClient(login)
    try:
        client.get("/daemon")  # answered once the token is good, valid state or not
    finally:
        client.close()
    save_login(login)
    out.print(f"logged in to {login.api}; the token is stored with mode 0600")
    return EXIT_OK


def cmd_requests(args: argparse.Namespace) -> int:
    from reconciler.gitops.changerequests import ChangeRequests
    from reconciler.gitops.gitsource import GitSource

    policy = _secret_policy(args)
    crs = ChangeRequests(
        GitSource(args.state_repo, args.cache_dir, hint="--state-repo"),
        args.state_branch,
        lambda: policy,
    )
    if args.action == "list":
        items = crs.list()
        if args.output != "table":
            _emit([c.to_dict() for c in items], args.output)
            return EXIT_OK
        table = Table(title="Change requests", title_justify="left")
        for col in ("ID", "STATE", "TITLE", "AUTHOR", "APPROVALS", "FILES"):
            table.add_column(col)
        for c in items:
            table.add_row(
                c.id, c.state, c.title, c.author, str(len(c.approvals)), ", ".join(c.files)
            )
        out.print(table)
        return EXIT_OK
    if args.action == "show":
        _emit(crs.get(args.id).to_dict(), "yaml" if args.output == "table" else args.output)
        return EXIT_OK
    who = _author(args.author)
    if args.action == "merge":
        commit = crs.merge(args.id, who)
        out.print(
            f"merged change request {args.id} into {args.state_branch} as {commit[:12]}; "
            "the daemon applies it on its next pass"
        )
        return EXIT_OK
    cr = crs.approve(args.id, who) if args.action == "approve" else crs.close(args.id, who)
    out.print(f"change request {cr.id} is {cr.state}, {len(cr.approvals)} approval(s)")
    return EXIT_OK


def cmd_audit(args: argparse.Namespace) -> int:
    """Every state is a commit, so the audit trail is the first-parent history of main."""
    from reconciler.gitops.gitsource import GitSource

    if not args.state_repo:
        rows = _client().get(f"/audit?limit={args.limit}")["items"]
        return _show_audit(rows, args)
    repo = GitSource(args.state_repo, args.cache_dir, hint="--state-repo")
    repo.fetch()
    rows = [c.audit() for c in repo.history(args.state_branch, args.limit)]
    return _show_audit(rows, args)


def _show_audit(rows: list[dict[str, Any]], args: argparse.Namespace) -> int:
    if args.output != "table":
        _emit(rows, args.output)
        return EXIT_OK
    table = Table(title=f"History of {args.state_branch}", title_justify="left")
    for col in ("DATE", "AUTHOR", "CHANGE", "VIA", "REQUEST", "COMMIT"):
        table.add_column(col)
    for r in rows:
        table.add_row(
            r["date"], r["author"], r["change"], r["via"], r["request_id"], r["commit"][:12]
        )
    out.print(table)
    return EXIT_OK


INGRESS_OFF = (
    "ingress is off: no reverse proxy runs and each Odoo is published on a loopback port. "
    "To turn it on, add an ingress: block to odooops.yaml in the state repository (for "
    "example ingress: {domain: apps.example.com}; README, Ingress), then odooops validate . "
    "and commit"
)


def cmd_routes(args: argparse.Namespace) -> int:
    """The route table the daemon's proxy serves (``GET /v1/routes``), within the token's
    globs: which host reaches which environment, and how long each certificate has left."""
    doc = _client().get("/routes")
    if args.output != "table":
        _emit(doc, args.output)
        return EXIT_OK
    if not doc["enabled"]:
        out.print(INGRESS_OFF, markup=False, highlight=False)
        return EXIT_OK
    under = f" under {doc['domain']}" if doc["domain"] else ""
    table = Table(title=f"Routes of {doc['proxy'] or 'the proxy'}{under}", title_justify="left")
    for col in ROUTE_COLUMNS:
        table.add_column(col)
    now = datetime.now(UTC)
    for r in doc["routes"]:
        table.add_row(
            f"{r['project']}/{r['env']}",
            r["tier"],
            "\n".join(r["hosts"]) or "-",
            "\n".join(r["upstreams"]),
            ", ".join(r["allowlist"]) or "everyone",
            "\n".join(_days_left(c, now) for c in r["certificates"]) or "-",
            "yes" if r["maintenance"] else "-",
        )
    out.print(table)
    if not doc["routes"]:
        out.print("no environment is routed yet", highlight=False)
    return EXIT_OK


def _days_left(cert: dict[str, Any], now: datetime) -> str:
    """One host's certificate as the table shows it: whole days left, or why there are none."""
    if not cert["managed"] or not cert["not_after"]:
        return "pending"
    expires = datetime.fromisoformat(cert["not_after"])
    if expires.tzinfo is None:
        expires = expires.replace(tzinfo=UTC)
    left = (expires - now).total_seconds() / 86400
    if left <= 0:
        return "expired"
    return f"{int(left)} day" + ("" if int(left) == 1 else "s")


def cmd_env_credentials(args: argparse.Namespace) -> int:
    """The administrator's login, through the API: the daemon records who saw it and when."""
    client = _client()
    key = client.resolve(args.name)
    path = f"/environments/{key.project}/{key.env}/credentials"
    doc = client.request("POST", f"{path}/rotate") if args.rotate else client.get(path)
    if args.output != "table":
        _emit(doc, args.output)
        return EXIT_OK
    if args.rotate:
        out.print(f"[green]new administrator password of {key}[/]", highlight=False)
    print(f"login:    {doc['login']}\npassword: {doc['password']}", flush=True)
    if not doc["verified"]:
        err.print(
            f"[yellow]warning[/]: the database of {key} holds another administrator password "
            "(changed in Odoo itself, or set before OdooOps managed it); set this one with: "
            f"odooops env credentials {key} --rotate",
            highlight=False,
        )
    return EXIT_OK


def cmd_shell(args: argparse.Namespace) -> int:
    """A shell bridged to ``docker exec`` over the API's websocket, as ``docker exec``.

    With a TTY (the default when stdin is a terminal) the local terminal is put in raw mode
    and its size is passed on. Without one (``--no-tty``, the default for piped input) stdin
    is sent as it comes, its end ends the process's input, stdout and stderr stay apart, and
    the exit status is the process's: ``echo "select 1;" | odooops shell ENV --kind psql``.
    """
    import select
    import shutil
    import termios
    import threading
    import tty

    from websockets.exceptions import ConnectionClosed
    from websockets.sync.client import connect

    from reconciler.cli.client import ApiClient, load_login

    login = load_login()
    client = ApiClient(login)
    key = client.resolve(args.name)
    client.close()
    stdin = sys.stdin.fileno()
    interactive = os.isatty(stdin)
    use_tty = interactive if args.tty is None else bool(args.tty)
    url = (
        login.api.replace("http", "ws", 1)
        + f"/v1/environments/{key.project}/{key.env}/shell?kind={args.kind}"
        + f"&tty={'true' if use_tty else 'false'}"
    )
    failure: list[dict[str, Any]] = []
    status: list[int] = []
    saved = termios.tcgetattr(stdin) if interactive and use_tty else None
    with connect(
        url, additional_headers={"Authorization": f"Bearer {login.token}"}, max_size=None
    ) as ws:

        def pump_out() -> None:
            try:
                for message in ws:
                    if isinstance(message, str):
                        doc = json.loads(message)
                        if isinstance(doc, dict) and "exit" in doc:
                            code = doc["exit"]
                            status.append(code if isinstance(code, int) else 1)
                        else:
                            failure.append(doc)
                        continue
                    if use_tty:
                        sys.stdout.buffer.write(message)
                        sys.stdout.buffer.flush()
                    elif message:
                        target = sys.stderr if message[0] == 2 else sys.stdout
                        target.buffer.write(message[1:])
                        target.buffer.flush()
            except ConnectionClosed:
                pass

        reader = threading.Thread(target=pump_out, daemon=True)
        reader.start()
        try:
            if saved is not None:
                tty.setraw(stdin)
                size = shutil.get_terminal_size()
                ws.send(json.dumps({"resize": [size.columns, size.lines]}))
            while reader.is_alive():
                # Polled, so a process that ends by itself ends the session without a key press.
                if not select.select([stdin], [], [], 0.2)[0]:
                    continue
                data = os.read(stdin, 65536)
                if not data:
                    ws.send(json.dumps({"eof": True}))
                    break
                ws.send(data)
        except ConnectionClosed:
            pass
        finally:
            if saved is not None:
                termios.tcsetattr(stdin, termios.TCSADRAIN, saved)
        # The process ends once it has read all its input; its output may take a while.
        reader.join()
    if failure:
        doc = failure[0]
        raise OdooOpsError(
            str(doc.get("message")),
            code=str(doc.get("error")),
            remediation=str(doc.get("remediation", "")),
        )
    return status[0] if status else EXIT_OK


def _completion(parser: argparse.ArgumentParser, shell: str) -> int:
    """``eval "$(odooops completion bash)"`` in ~/.bashrc completes commands and options."""
    import shtab

    print(shtab.complete(parser, shell=shell))
    return EXIT_OK


def cmd_logs(args: argparse.Namespace) -> int:
    client = _client()
    key = client.resolve(args.name)
    params = {"follow": str(args.follow).lower(), "tail": str(args.tail)}
    if args.since:
        params["since"] = args.since
    for line in client.lines(f"/environments/{key.project}/{key.env}/logs", params):
        print(line, flush=True)
    return EXIT_OK


def cmd_reconcile(args: argparse.Namespace) -> int:
    _client().request("POST", "/reconcile")
    out.print("reconcile pass triggered")
    return EXIT_OK


def cmd_secret_set(args: argparse.Namespace) -> int:
    """The value comes from stdin only: an argument would sit in the shell history and in
    ``ps`` for every local user to read. On a terminal it is asked for without echo."""
    from reconciler.engine.bootstrap import set_secret

    if sys.stdin.isatty():
        import getpass

        value = getpass.getpass(f"value of {args.name}: ")
    else:
        value = sys.stdin.read()
    value = value.rstrip("\r\n")
    set_secret(args.data_dir, args.master_key_file, args.name, value, tuple(args.host))
    hosts = ", ".join(args.host) or "no host (not usable as a repository credential)"
    out.print(
        f"stored secret {args.name} (sent only to: {hosts}); a state names it {{secret: "
        f"{args.name}}}",
        markup=False,
        highlight=False,
    )
    return EXIT_OK


def cmd_secret_list(args: argparse.Namespace) -> int:
    from reconciler.engine.bootstrap import list_secrets

    named = list_secrets(args.data_dir, args.master_key_file)
    if args.output != "table":
        _emit([{"name": k, "hosts": list(v)} for k, v in named.items()], args.output)
        return EXIT_OK
    table = Table(title="Named secrets", title_justify="left")
    table.add_column("NAME")
    table.add_column("HOSTS")
    for name, hosts in named.items():
        table.add_row(name, ", ".join(hosts) or "-")
    out.print(table)
    return EXIT_OK


def cmd_init_key(args: argparse.Namespace) -> int:
    from reconciler.engine.bootstrap import new_key_file

    if args.path.exists():
        raise SecretsError(
            f"{args.path} exists; refusing to overwrite a master key",
            remediation="choose another path, or keep using the existing key",
        )
    new_key_file(args.path)
    out.print(f"wrote a new master key to {args.path} (mode 0600). Keep a copy somewhere safe.")
    return EXIT_OK


# ----------------------------------------------------------------------------- output
STATUS_COLUMNS = (
    "ENVIRONMENT",
    "BRANCH",
    "TIER",
    "SERVING",
    "WANTED",
    "SYNC",
    "HEALTH",
    "URL",
    "EXPIRES",
)
ROUTE_COLUMNS = (
    "ENVIRONMENT",
    "TIER",
    "HOSTS",
    "UPSTREAMS",
    "ALLOWLIST",
    "CERTIFICATE",
    "MAINTENANCE",
)
_STYLE = {
    "Synced": "green",
    "OutOfSync": "yellow",
    "Healthy": "green",
    "Progressing": "cyan",
    "Degraded": "red",
    "Missing": "red",
    "Suspended": "blue",
    "Asleep": "blue",
}


def print_status_table(
    store: StatusStore, envs: dict[str, EnvironmentStatus] | None = None
) -> None:
    """Every environment with the commit it serves and the one it is asked to run (they
    differ while an update is under way, or failed and the previous container still serves),
    then the daemon's last pass and every environment that needs a look, and why."""
    envs = store.all() if envs is None else envs
    at = datetime.now(UTC)
    table = Table(title="OdooOps environments", title_justify="left")
    for col in STATUS_COLUMNS:
        table.add_column(col)
    for key, s in envs.items():
        table.add_row(
            key,
            s.branch,
            s.tier,
            s.serving[:12] or "-",
            s.revision[:12],
            f"[{_STYLE.get(s.sync, 'white')}]{s.sync}[/]",
            f"[{_STYLE.get(s.health, 'white')}]{s.health}[/]",
            s.url,
            _expires_cell(s.expires, at),
        )
    out.print(table)
    daemon = store.daemon
    if daemon.last_poll:
        out.print(
            f"state commit {daemon.state_commit[:12] or '-'}; last poll {daemon.last_poll}; "
            f"last pass took {daemon.last_pass_seconds:.1f} s; {daemon.passes} passes",
            highlight=False,
        )
    if daemon.state_error:
        out.print(
            f"[red]state commit {str(daemon.state_error.get('commit', ''))[:12]} rejected:"
            f"[/] {daemon.state_error.get('message')}; applying "
            f"{daemon.state_commit[:12]} (last valid)",
            highlight=False,
        )
    for key, s in envs.items():
        for cond in s.conditions:
            if not cond.status and cond.type == "Ready" and cond.reason not in ("Pending",):
                out.print(
                    f"[red]{key}[/]: {cond.reason}: {cond.message.splitlines()[0]}", highlight=False
                )
            if cond.status and cond.type == "Held":
                out.print(f"[yellow]{key} held[/]: {cond.message}", highlight=False)
            if cond.status and cond.type == "Expiring":
                out.print(f"[yellow]{key} expiring[/]: {cond.message}", highlight=False)
        if s.asleep_since:
            out.print(
                f"[blue]{key} asleep[/] since {s.asleep_since}: the next request wakes it",
                highlight=False,
            )
    for key, why in sorted(daemon.expired.items()):
        out.print(f"[yellow]{key}: no environment[/]: {why}", highlight=False)


def _expires_cell(expires: str | None, at: datetime) -> str:
    """``expires in 2d 3h`` (yellow within a day), ``expired`` (red), ``-`` when permanent."""
    from reconciler.core import durations, expiry

    if not expires:
        return "-"
    when = durations.parse_instant(expires)
    text = expiry.describe(when, at)
    colour = "red" if when <= at else "yellow" if when - at <= expiry.WARN_BEFORE else "white"
    return f"[{colour}]{text}[/]"


def _emit(doc: Any, fmt: str) -> None:
    if fmt == "json":
        print(json.dumps(doc, indent=2, default=str))
    else:
        print(yaml.safe_dump(doc, sort_keys=False, default_flow_style=False))


if __name__ == "__main__":
    sys.exit(main())
