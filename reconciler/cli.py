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
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import yaml
from rich.console import Console
from rich.table import Table

from reconciler.errors import OdooOpsError, SecretsError
from reconciler.status import EnvironmentStatus, StatusStore

DEFAULT_DATA_DIR = Path(os.environ.get("ODOOOPS_DATA_DIR", "/var/lib/odooops"))
EXIT_OK, EXIT_CHANGES, EXIT_ERROR = 0, 1, 2

# Piped output (scripts, CI logs) gets wide tables instead of 80 truncated columns.
_WIDTH = None if sys.stdout.isatty() else int(os.environ.get("COLUMNS", "220"))
out = Console(width=_WIDTH)
err = Console(stderr=True, width=_WIDTH)


def main(argv: Sequence[str] | None = None) -> int:
    parser = _parser()
    args = parser.parse_args(argv)
    logging.basicConfig(
        level=logging.DEBUG if getattr(args, "verbose", False) else logging.INFO,
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
        stream=sys.stderr,
    )
    logging.getLogger("apscheduler").setLevel(logging.WARNING)
    try:
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
        err.print(exc.render(), markup=False, highlight=False)


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="odooops", description=__doc__.splitlines()[0])
    p.add_argument("-v", "--verbose", action="store_true")
    sub = p.add_subparsers(required=True, metavar="COMMAND")

    def common(sp: argparse.ArgumentParser, state: bool = True) -> None:
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
            sp.add_argument("--state-repo", required=True, help="state repository URL or path")
            sp.add_argument("--state-branch", default="main")
            sp.add_argument(
                "--master-key-file",
                type=Path,
                default=None,
                help="file with the base64 master key (or $ODOOOPS_MASTER_KEY)",
            )

    v = sub.add_parser("validate", help="check a state repository working tree (exit 0/1)")
    v.add_argument("path", nargs="?", default=".", type=Path)
    v.add_argument("-o", "--output", choices=["table", "json"], default="table")
    v.set_defaults(func=cmd_validate)

    pl = sub.add_parser("plan", help="show what the daemon would change (exit 0 none, 1 changes)")
    common(pl)
    pl.set_defaults(func=cmd_plan)

    d = sub.add_parser("daemon", help="run the reconciler until interrupted")
    common(d)
    d.add_argument("--interval", type=int, default=None, help="override reconcile.interval")
    d.add_argument("--jitter", type=int, default=None, help="override reconcile.jitter")
    d.add_argument("--once", action="store_true", help="one pass, then exit (1 on errors)")
    d.add_argument("--health-timeout", type=float, default=300.0)
    d.set_defaults(func=cmd_daemon)

    s = sub.add_parser("status", help="status of every environment")
    s.add_argument("--data-dir", type=Path, default=DEFAULT_DATA_DIR)
    s.add_argument("-o", "--output", choices=["table", "json", "yaml"], default="table")
    s.add_argument("env", nargs="?", help="project/env to show in detail")
    s.set_defaults(func=cmd_status)

    k = sub.add_parser("init-key", help="write a new master key file (mode 0600)")
    k.add_argument("path", type=Path)
    k.set_defaults(func=cmd_init_key)
    return p


# --------------------------------------------------------------------------- commands
def cmd_validate(args: argparse.Namespace) -> int:
    from reconciler import validation

    root: Path = args.path
    if not root.is_dir():
        raise OdooOpsError(
            f"{root} is not a directory",
            code="usage",
            remediation="odooops validate PATH-TO-STATE-REPO-CHECKOUT",
        )
    files = {
        p.relative_to(root).as_posix(): p.read_bytes()
        for p in sorted(root.rglob("*"))
        if p.is_file() and ".git" not in p.relative_to(root).parts
    }
    try:
        validation.validate_state(files, str(root))
    except OdooOpsError as exc:
        _print_error(exc, args.output)
        return EXIT_CHANGES
    if args.output == "json":
        print(json.dumps({"valid": True, "path": str(root)}))
    else:
        out.print(f"[green]valid[/]: {root}")
    return EXIT_OK


def _engine(args: argparse.Namespace) -> Any:
    from reconciler.engine import Engine, EngineConfig
    from reconciler.secrets import SecretStore, load_master_key

    data_dir: Path = args.data_dir
    key_file = args.master_key_file or (data_dir / "master.key")
    if (
        args.master_key_file is None
        and not key_file.exists()
        and "ODOOOPS_MASTER_KEY" not in os.environ
    ):
        raise SecretsError(
            f"no master key: neither --master-key-file, $ODOOOPS_MASTER_KEY nor {key_file}",
            remediation=f"odooops init-key {key_file}",
        )
    secrets = SecretStore(data_dir / "secrets.enc", load_master_key(key_file))
    config = EngineConfig(
        state_url=args.state_repo,
        data_dir=data_dir,
        instance=args.instance,
        state_branch=args.state_branch,
        health_timeout=getattr(args, "health_timeout", 300.0),
        read_only=args.func is cmd_plan,
    )
    return Engine(config, secrets)


def cmd_plan(args: argparse.Namespace) -> int:
    engine = _engine(args)
    _config, _desired, _observed, the_plan = engine.plan()
    state_error = engine.status.daemon.state_error
    if args.output == "table":
        if state_error:
            err.print(
                f"[yellow]warning[/]: head of the state repository is invalid; planning "
                f"from the last valid commit {engine.last_good.commit[:12]}"
            )
        out.print(the_plan.render(), markup=False, highlight=False)
    else:
        doc = {
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
        }
        _emit(doc, args.output)
    return EXIT_CHANGES if the_plan.has_changes else EXIT_OK


def cmd_daemon(args: argparse.Namespace) -> int:
    from reconciler.daemon import Daemon
    from reconciler.engine import PassResult

    engine = _engine(args)
    if args.once:
        result = engine.reconcile()
        print_status_table(engine.status)
        if result.state_error:
            err.print(f"error[{result.state_error.code}]: {result.state_error.message}")
        return EXIT_CHANGES if (result.errors or result.state_error) else EXIT_OK

    last_shown: list[str] = []

    def on_pass(result: PassResult) -> None:
        rows = [f"{k}:{s.sync}:{s.health}:{s.revision}" for k, s in engine.status.all().items()]
        if rows != last_shown or result.plan.has_changes:
            last_shown[:] = rows
            print_status_table(engine.status)

    out.print(
        f"odooops daemon: state repository {args.state_repo} (branch {args.state_branch}),"
        f" data in {args.data_dir}. Ctrl-C to stop."
    )
    Daemon(engine, args.interval, args.jitter, on_pass).run()
    return EXIT_OK


def cmd_status(args: argparse.Namespace) -> int:
    path = args.data_dir / "status.json"
    if not path.exists():
        raise OdooOpsError(
            f"no status in {args.data_dir}",
            code="no_status",
            remediation=f"odooops daemon --data-dir {args.data_dir} --state-repo URL",
        )
    store = StatusStore(path)
    envs = store.all()
    if args.env:
        if args.env not in envs:
            raise OdooOpsError(
                f"unknown environment {args.env}",
                code="unknown_environment",
                remediation=f"odooops status --data-dir {args.data_dir}",
            )
        envs = {args.env: envs[args.env]}
    if args.output != "table":
        _emit(
            {
                "daemon": store.daemon.__dict__,
                "environments": {k: v.to_dict() for k, v in envs.items()},
            },
            args.output,
        )
        return EXIT_OK
    print_status_table(store, envs if args.env else None)
    if args.env:
        for cond in envs[args.env].conditions:
            colour = "green" if cond.status == (cond.type == "Ready") else "yellow"
            out.print(
                f"  [{colour}]{cond.type}={cond.status}[/] {cond.reason} "
                f"(since {cond.since}) {cond.message}",
                highlight=False,
            )
    return EXIT_OK


def cmd_init_key(args: argparse.Namespace) -> int:
    from reconciler.secrets import write_new_key

    if args.path.exists():
        raise SecretsError(
            f"{args.path} exists; refusing to overwrite a master key",
            remediation="choose another path, or keep using the existing key",
        )
    write_new_key(args.path)
    out.print(f"wrote a new master key to {args.path} (mode 0600). Keep a copy somewhere safe.")
    return EXIT_OK


# ----------------------------------------------------------------------------- output
_STYLE = {
    "Synced": "green",
    "OutOfSync": "yellow",
    "Healthy": "green",
    "Progressing": "cyan",
    "Degraded": "red",
    "Missing": "red",
    "Suspended": "blue",
}


def print_status_table(
    store: StatusStore, envs: dict[str, EnvironmentStatus] | None = None
) -> None:
    envs = store.all() if envs is None else envs
    table = Table(title="OdooOps environments", title_justify="left")
    for col in ("ENVIRONMENT", "BRANCH", "TIER", "REVISION", "SYNC", "HEALTH", "URL"):
        table.add_column(col)
    for key, s in envs.items():
        table.add_row(
            key,
            s.branch,
            s.tier,
            s.revision[:12],
            f"[{_STYLE.get(s.sync, 'white')}]{s.sync}[/]",
            f"[{_STYLE.get(s.health, 'white')}]{s.health}[/]",
            s.url,
        )
    out.print(table)
    daemon = store.daemon
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


def _emit(doc: Any, fmt: str) -> None:
    if fmt == "json":
        print(json.dumps(doc, indent=2, default=str))
    else:
        print(yaml.safe_dump(doc, sort_keys=False, default_flow_style=False))


if __name__ == "__main__":
    sys.exit(main())
