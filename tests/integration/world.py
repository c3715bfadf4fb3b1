"""A throw-away OdooOps world for integration tests: real git remotes, Docker and PostgreSQL.

Each ``World`` gets its own daemon instance label, project name and port range, so tests never
see each other's objects (nor those of a ``make run`` daemon on the same engine), and its
teardown removes everything labelled with its instance.
"""

from __future__ import annotations

import base64
import json
import os
import secrets
import shutil
import socket
import subprocess
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import docker
import docker.errors
import psycopg
import yaml

from reconciler.core.secretrefs import SecretPolicy
from reconciler.drivers.secrets import SecretStore
from reconciler.engine.engine import Engine, EngineConfig, PassResult
from tests.integration import pgadmin

REPO_ROOT = Path(__file__).resolve().parents[2]
GIT_ENV = {
    **os.environ,
    "GIT_CONFIG_NOSYSTEM": "1",
    "GIT_CONFIG_GLOBAL": os.devnull,
    "GIT_TERMINAL_PROMPT": "0",
}


def git(*args: str, cwd: Path | None = None) -> str:
    done = subprocess.run(
        [
            "git",
            "-c",
            "user.name=Ann Integrator",
            "-c",
            "user.email=ann@acme.example",
            "-c",
            "init.defaultBranch=main",
            *args,
        ],
        cwd=cwd,
        env=GIT_ENV,
        check=True,
        capture_output=True,
        text=True,
    )
    return done.stdout.strip()


def fixture_images() -> dict[str, str]:
    """Build (or reuse, ~0.1 s) the fixture images, so an edited stand-in is never stale."""
    env_file = REPO_ROOT / "build" / "images.env"
    subprocess.run(
        ["bash", str(REPO_ROOT / "scripts" / "build-images.sh")],
        check=True,
        stdout=subprocess.DEVNULL,
    )
    pairs = (line.split("=", 1) for line in env_file.read_text().split() if "=" in line)
    return {k: v for k, v in pairs}


def acme_state_remote(root: Path, environments: Mapping[str, str] | None = None) -> Path:
    """A bare state repository: the template, project ``acme`` and its environment files
    (by default ``production`` on main and ``qa`` on release/v1). No Docker needed."""
    envs = (
        environments
        if environments is not None
        else {"production": "branch: main\n", "qa": "branch: release/v1\n"}
    )
    seed = root / "state-seed"
    shutil.copytree(REPO_ROOT / "state-repo-template", seed)
    (seed / "projects" / "acme.yaml").write_text("repository: {url: 'file:///x'}\n")
    (seed / "environments" / "acme").mkdir()
    for name, content in envs.items():
        (seed / "environments" / "acme" / f"{name}.yaml").write_text(content)
    bare = root / "state.git"
    git("init", "-q", "--bare", str(bare))
    git("init", "-q", cwd=seed)
    git("add", "-A", cwd=seed)
    git("commit", "-q", "-m", "seed", cwd=seed)
    git("push", "-q", str(bare), "main", cwd=seed)
    shutil.rmtree(seed)
    return bare


class Checkout:
    """A user's clone of a bare remote, committing and pushing with the git CLI."""

    def __init__(self, remote: Path, workdir: Path) -> None:
        self.remote, self.dir = remote, workdir
        git("clone", "-q", str(remote), str(workdir))

    def write(self, files: Mapping[str, str | None], message: str, branch: str = "main") -> str:
        git(
            "checkout",
            "-q",
            "-B",
            branch,
            f"origin/{branch}" if self._has_remote(branch) else "HEAD",
            cwd=self.dir,
        )
        for path, content in files.items():
            target = self.dir / path
            if content is None:
                target.unlink(missing_ok=True)
            else:
                target.parent.mkdir(parents=True, exist_ok=True)
                target.write_text(content)
        git("add", "-A", cwd=self.dir)
        git("commit", "-q", "--allow-empty", "-m", message, cwd=self.dir)
        git("push", "-q", "origin", f"HEAD:refs/heads/{branch}", cwd=self.dir)
        return git("rev-parse", "HEAD", cwd=self.dir)

    def delete_branch(self, branch: str) -> None:
        git("push", "-q", "origin", f":refs/heads/{branch}", cwd=self.dir)

    def _has_remote(self, branch: str) -> bool:
        git("fetch", "-q", "origin", cwd=self.dir)
        out = git("branch", "-r", "--list", f"origin/{branch}", cwd=self.dir)
        return bool(out.strip())


class World:
    def __init__(
        self, root: Path, images: Mapping[str, str], port_base: int, project: str | None = None
    ) -> None:
        self.root = root
        self.instance = "t" + secrets.token_hex(4)
        self.project = project or "p" + secrets.token_hex(3)
        # Images are tagged by project and commit, so a twin of another world's project shares
        # them: only the world that made the project removes them.
        self.owns_images = project is None
        self.images = images
        self.port_base = port_base
        self.data_dir = root / "data"
        # The world's own secrets directory: its daemons allow {file: ...} only in there.
        self.secrets_dir = root / "secrets"
        self.secrets_dir.mkdir(mode=0o700, parents=True)
        self.secret_policy = SecretPolicy(secrets_dir=str(self.secrets_dir))
        (root / "remotes").mkdir(parents=True)
        self.app_remote = root / "remotes" / "app.git"
        self.state_remote = root / "remotes" / "state.git"
        git("init", "-q", "--bare", str(self.app_remote))
        git("init", "-q", "--bare", str(self.state_remote))
        self.app = self._seed(self.app_remote, root / "app", REPO_ROOT / "examples" / "acme-addons")
        git("push", "-q", "origin", "main:refs/heads/release/v1", cwd=self.app.dir)
        self.state = self._seed(
            self.state_remote,
            root / "state",
            REPO_ROOT / "state-repo-template",
            self._state_files(),
        )
        self.key = secrets.token_bytes(32)
        self._engine: Engine | None = None
        self._engines: list[Engine] = []
        self.docker = docker.from_env()

    def _seed(
        self, remote: Path, workdir: Path, template: Path, extra: Mapping[str, str] | None = None
    ) -> Checkout:
        seed = workdir.with_name(workdir.name + "-seed")
        shutil.copytree(template, seed)
        for path, content in (extra or {}).items():
            (seed / path).parent.mkdir(parents=True, exist_ok=True)
            (seed / path).write_text(content)
        git("init", "-q", cwd=seed)
        git("add", "-A", cwd=seed)
        git("commit", "-q", "-m", "seed", cwd=seed)
        git("push", "-q", str(remote), "main", cwd=seed)
        shutil.rmtree(seed)
        return Checkout(remote, workdir)

    def _state_files(self) -> dict[str, str]:
        platform = yaml.safe_load((REPO_ROOT / "state-repo-template" / "odooops.yaml").read_text())
        platform["runtime"]["port_range"] = {"start": self.port_base, "end": self.port_base + 19}
        platform["dev_database"]["image"] = self.images["ODOOOPS_FIXTURE_POSTGRES_IMAGE"]
        # The template names the machine's /etc/odooops/secrets/pg-admin; a world's daemon
        # reads the same password from the variable the postgres_server fixture exports.
        platform["database_servers"]["shared"]["admin_password"] = {"env": pgadmin.ENV_REF}
        self.backup_key_file = self.secrets_dir / "backup.key"
        self.backup_key_file.write_text(base64.b64encode(secrets.token_bytes(32)).decode())
        self.backup_dir = self.root / "backups"
        self.backup_dir.mkdir(mode=0o700)
        with socket.socket() as probe:  # the catcher of a daemon under test: a free port
            probe.bind(("127.0.0.1", 0))
            platform["mail_catcher"] = {"port": probe.getsockname()[1]}
        platform["backups"] = {
            "storage": self.backup_dir.as_uri(),
            "encryption_key": {"file": str(self.backup_key_file)},
        }
        project = {
            "repository": {"url": f"file://{self.app_remote}"},
            "odoo": {"version": "19.0", "image": self.images["ODOOOPS_FIXTURE_ODOO_IMAGE"]},
            "addons_paths": ["."],
            "modules": ["acme_base"],
            "database_server": "shared",
        }
        return {
            "odooops.yaml": yaml.safe_dump(platform),
            f"projects/{self.project}.yaml": yaml.safe_dump(project),
        }

    # ----------------------------------------------------------------------- as a user
    def env_path(self, env: str) -> str:
        return f"environments/{self.project}/{env}.yaml"

    def declare(self, env: str, message: str | None = None, **fields: Any) -> str:
        """Commit ``environments/<project>/<env>.yaml`` with these fields to the state repo."""
        return self.state.write(
            {self.env_path(env): yaml.safe_dump(fields)}, message or f"declare {env}"
        )

    def allow_empty(self) -> str:
        """Let the state remove its last environment file (prune.allow_empty in policies)."""
        policies = yaml.safe_load((self.state.dir / "policies.yaml").read_text())
        policies["prune"] = {"allow_empty": True}
        return self.state.write({"policies.yaml": yaml.safe_dump(policies)}, "allow empty")

    def remove(self, env: str) -> str:
        return self.state.write({self.env_path(env): None}, f"remove {env}")

    # -------------------------------------------------------------------------- daemon
    def engine(self, **config: Any) -> Engine:
        if self._engine is None:
            self._engine = self.new_engine(**config)
        return self._engine

    def new_engine(self, **config: Any) -> Engine:
        store = SecretStore(self.data_dir / "secrets.enc", self.key, self.secret_policy)
        settings: dict[str, Any] = {"health_timeout": 90, "health_interval": 1, **config}
        cfg = EngineConfig(
            state_url=f"file://{self.state_remote}",
            data_dir=self.data_dir,
            instance=self.instance,
            **settings,
        )
        engine = Engine(cfg, store)
        self._engines.append(engine)
        return engine

    def reconcile(self) -> PassResult:
        return self.engine().reconcile()

    def cli_env(self) -> dict[str, str]:
        """What an ``odooops`` subprocess of this world runs with: its master key and its
        secrets directory (the default of ``--secrets-dir``)."""
        return {
            **os.environ,
            "ODOOOPS_MASTER_KEY": base64.b64encode(self.key).decode(),
            "ODOOOPS_SECRETS_DIR": str(self.secrets_dir),
        }

    # ------------------------------------------------------------------------ teardown
    def cleanup(self) -> None:
        for engine in self._engines:
            engine.close()
        self._engines.clear()  # garbage now, so the fixture's collection reports their leaks
        client = self.docker
        remove_instance(client, self.instance)
        if self.owns_images:
            for image in client.images.list(filters={"label": f"odooops.project={self.project}"}):
                client.images.remove(str(image.id), force=True)
        client.close()

    # ------------------------------------------------------------------------- looking
    def containers(self) -> dict[str, Any]:
        """This world's containers, inspected. A listing inspects each container it found, so
        one the daemon removes in between (a scratch ``-creating`` one, a finished one-off)
        fails it with NotFound: the listing is then simply taken again."""
        client = self.docker
        label: dict[str, str | list[str] | bool] = {"label": f"odooops.instance={self.instance}"}
        for attempt in range(5):
            try:
                found = client.containers.list(all=True, filters=label)
            except docker.errors.NotFound:
                if attempt == 4:
                    raise
                continue
            return {str(c.name): c for c in found}
        raise AssertionError("unreachable")

    def databases(self) -> dict[str, dict[str, str]]:
        with psycopg.connect(host="127.0.0.1", user="postgres", dbname="postgres") as conn:
            rows = conn.execute(
                "SELECT datname, shobj_description(oid, 'pg_database') FROM pg_database"
            ).fetchall()
        out = {}
        for name, comment in rows:
            if comment and f'"odooops.instance": "{self.instance}"' in comment:
                out[name] = json.loads(comment)
        return out

    def owned_databases(self) -> set[str]:
        """Every database this world's roles own: live ones, and any scratch or set-aside one
        (a pattern on the name alone would see another test's operation in flight)."""
        rows = self.query(
            "postgres",
            "SELECT d.datname FROM pg_database d JOIN pg_roles r ON r.oid = d.datdba "
            f"WHERE r.rolname LIKE 'odooops\\_\\_{self.project}\\_\\_%'",
        )
        return {str(r[0]) for r in rows}

    def scratch_databases(self) -> set[str]:
        """This world's databases under a scratch or set-aside name: none once a move is over."""
        return {d for d in self.owned_databases() if d.startswith(("odooops_tmp_", "odooops_old_"))}

    def query(self, database: str, sql: str) -> list[tuple[Any, ...]]:
        with psycopg.connect(host="127.0.0.1", user="postgres", dbname=database) as conn:
            return conn.execute(sql).fetchall()


def remove_instance(client: docker.DockerClient, instance: str) -> None:
    """Remove everything a daemon instance made: containers with their anonymous volumes,
    volumes, networks, the roles that carry its label, every database those roles own (live,
    scratch and set-aside ones alike), and the roles. Another test's databases, operations in
    flight included, belong to other roles and are never touched."""
    label: dict[str, str | list[str] | bool] = {"label": f"odooops.instance={instance}"}
    for c in client.containers.list(all=True, filters=label):
        c.remove(force=True, v=True)
    for v in client.volumes.list(filters=label):
        v.remove(force=True)
    for n in client.networks.list(filters=label):
        n.remove()
    with psycopg.connect(
        host="127.0.0.1", user="postgres", dbname="postgres", autocommit=True
    ) as conn:
        tagged = f'%"odooops.instance": "{instance}"%'
        roles = [
            str(name)
            for (name,) in conn.execute(
                "SELECT rolname FROM pg_roles WHERE shobj_description(oid, 'pg_authid') LIKE %s",
                [tagged],
            ).fetchall()
        ]
        databases = conn.execute(
            "SELECT d.datname FROM pg_database d JOIN pg_roles r ON r.oid = d.datdba "
            "WHERE r.rolname = ANY(%s) OR shobj_description(d.oid, 'pg_database') LIKE %s",
            [roles, tagged],
        ).fetchall()
        for (name,) in databases:
            conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        for name in roles:
            conn.execute(f'DROP ROLE IF EXISTS "{name}"')
