"""The fixture images honour the contracts of odoo:19.0 and postgres:15 (docs/ODOO-CONTRACT.md).

They run on the real Docker engine: a fixture PostgreSQL on a user-defined bridge network
under the alias `db`, and one-shot or serving Odoo stand-in containers beside it, the way
the product runs them. Every container and network is named `odooops-test-*`, started and
waited for by testcontainers, and removed with its anonymous volumes by the fixture that
made it (tests/integration/containers.py).
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import re
import secrets
import subprocess
import time
import zipfile
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import docker
import psycopg
import pytest
from docker.models.containers import Container
from testcontainers.core.container import DockerContainer
from testcontainers.core.network import Network

from tests.integration.containers import (
    Exited,
    bridge,
    odoo_serving,
    postgres_ready,
    publish_on_loopback,
    run_once,
    running,
    throwaway,
)
from tests.wheels import make_wheel

pytestmark = pytest.mark.integration

REPO_ROOT = Path(__file__).resolve().parents[2]
DB_PASSWORD = "fixture-" + secrets.token_hex(8)
PROBE_MANIFEST = {
    "name": "OdooOps probe",
    "version": "1.0",
    "depends": ["contacts"],
    "license": "LGPL-3",
}
PROBE_INSTALL_SQL = """
CREATE TABLE odooops_probe_note (id serial PRIMARY KEY, body text NOT NULL);
INSERT INTO odooops_probe_note (body) VALUES ('installed');
"""
HEALTH_PROBE = """
import sys, urllib.error, urllib.request
try:
    answer = urllib.request.urlopen("http://127.0.0.1:8069" + sys.argv[1], timeout=5)
except urllib.error.HTTPError as exc:
    answer = exc
print(answer.status, answer.read().decode())
"""


@dataclass(frozen=True)
class Postgres:
    """A running postgres fixture, on its own network and published on a loopback port."""

    server: DockerContainer
    network: Network

    @property
    def container(self) -> Container:
        return self.server.get_wrapped_container()

    @property
    def port(self) -> int:
        """The host port, read again because Docker picks a new one on restart."""
        self.container.reload()
        return int(self.container.ports["5432/tcp"][0]["HostPort"])

    def wait_ready(self) -> None:
        """After a restart: the same readiness as at the start."""
        postgres_ready().wait_until_ready(self.server)

    def connect(self, dbname: str, password: str = DB_PASSWORD) -> psycopg.Connection[Any]:
        return psycopg.connect(
            host="127.0.0.1",
            port=self.port,
            user="odoo",
            password=password,
            dbname=dbname,
            connect_timeout=5,
            autocommit=True,
        )

    def query(self, dbname: str, sql: str) -> list[tuple[Any, ...]]:
        with self.connect(dbname) as conn:
            return conn.execute(sql).fetchall()

    def execute(self, dbname: str, sql: str) -> None:
        with self.connect(dbname) as conn:
            conn.execute(sql)


@pytest.fixture(scope="session")
def engine(docker_engine: docker.DockerClient) -> docker.DockerClient:
    """The shared session client (conftest fails loudly when the engine is missing)."""
    return docker_engine


@pytest.fixture(scope="session")
def image_refs(engine: docker.DockerClient) -> dict[str, str]:
    """Run the idempotent build (a second when warm) and read build/images.env."""
    subprocess.run(
        ["bash", str(REPO_ROOT / "scripts" / "build-images.sh")],
        check=True,
        stdout=subprocess.DEVNULL,
    )
    lines = (REPO_ROOT / "build" / "images.env").read_text().split()
    refs = dict(line.split("=", 1) for line in lines)
    return {
        "odoo": refs["ODOOOPS_FIXTURE_ODOO_IMAGE"],
        "postgres": refs["ODOOOPS_FIXTURE_POSTGRES_IMAGE"],
    }


@contextlib.contextmanager
def _postgres(image: str, password_dir: Path, **environment: str) -> Iterator[Postgres]:
    """The postgres fixture as `db` on a network of its own, ready for connections; removed
    with its network and anonymous data volume when the block ends."""
    (password_dir / "pg_password").write_text(DB_PASSWORD + "\n")
    with bridge() as network:
        server = publish_on_loopback(
            throwaway(
                image,
                "pg",
                env={
                    "POSTGRES_USER": "odoo",
                    "POSTGRES_PASSWORD_FILE": "/run/secrets/pg_password",
                    **environment,
                },
                volumes={str(password_dir): {"bind": "/run/secrets", "mode": "ro"}},
                network=network,
                aliases=["db"],
            ),
            5432,
        ).waiting_for(postgres_ready())
        with running(server):
            yield Postgres(server, network)


@pytest.fixture(scope="module")
def pg(image_refs: dict[str, str], tmp_path_factory: pytest.TempPathFactory) -> Iterator[Postgres]:
    """The shared database server: user odoo, password from a file, database `odooops`."""
    with _postgres(
        image_refs["postgres"], tmp_path_factory.mktemp("pgpw"), POSTGRES_DB="odooops"
    ) as server:
        yield server


@pytest.fixture
def own_pg(image_refs: dict[str, str], tmp_path: Path) -> Iterator[Postgres]:
    """A database server for one test that stops or restarts it (database `odoo`)."""
    with _postgres(image_refs["postgres"], tmp_path) as server:
        yield server


def _run_odoo(
    image: str,
    pg: Postgres,
    command: tuple[str, ...],
    environment: dict[str, str] | None = None,
    volumes: dict[str, dict[str, str]] | None = None,
) -> Exited:
    """Run the stand-in to completion beside `db`, with the entrypoint's defaults."""
    return run_once(
        throwaway(
            image,
            "odoo",
            command=command,
            env={"PASSWORD": DB_PASSWORD, **(environment or {})},
            volumes=volumes,
            network=pg.network,
        ),
        timeout=90,
    )


@pytest.fixture
def run_odoo(image_refs: dict[str, str], pg: Postgres) -> Callable[..., Exited]:
    """`run_odoo(*command, environment=..., volumes=...)`: _run_odoo for one test."""

    def run(*command: str, **options: Any) -> Exited:
        return _run_odoo(image_refs["odoo"], pg, command, **options)

    return run


def _write_module(addons: Path, name: str, manifest: str, install_sql: str | None = None) -> None:
    module = addons / name
    (module / "data").mkdir(parents=True, exist_ok=True)
    (module / "__init__.py").write_text("")
    (module / "__manifest__.py").write_text(manifest)
    if install_sql:
        (module / "data" / "install.sql").write_text(install_sql)


def _write_migration(addons: Path, module: str, version: str, script: str, body: str) -> None:
    """migrations/<version>/<script>.py of a module: `body` defines migrate(cr, version)."""
    folder = addons / module / "migrations" / version
    folder.mkdir(parents=True, exist_ok=True)
    (folder / f"{script}.py").write_text(body)


def _states(pg: Postgres, dbname: str) -> dict[str, str]:
    return dict(pg.query(dbname, "SELECT name, state FROM ir_module_module"))


def _latest_versions(pg: Postgres, dbname: str, modules: list[str]) -> list[str]:
    rows = dict(pg.query(dbname, "SELECT name, latest_version FROM ir_module_module"))
    return [rows[name] for name in modules]


def _partial_flag(pg: Postgres, dbname: str) -> list[tuple[Any, ...]]:
    return pg.query(
        dbname,
        "SELECT value FROM ir_config_parameter WHERE key = 'base.partially_updated_database'",
    )


@pytest.fixture
def addons(tmp_path: Path) -> Path:
    """A custom addons directory holding `odooops_probe` (depends on contacts)."""
    path = tmp_path / "addons"
    _write_module(path, "odooops_probe", repr(PROBE_MANIFEST), PROBE_INSTALL_SQL)
    return path


def _mounts(addons: Path, data_dir: Path | None = None) -> dict[str, dict[str, str]]:
    mounts = {str(addons): {"bind": "/mnt/extra-addons", "mode": "ro"}}
    if data_dir is not None:
        data_dir.mkdir(mode=0o777, exist_ok=True)
        data_dir.chmod(0o777)  # the container writes as odoo (uid 101)
        mounts[str(data_dir)] = {"bind": "/var/lib/odoo", "mode": "rw"}
    return mounts


@pytest.fixture(scope="module")
def initialised(
    image_refs: dict[str, str], pg: Postgres, tmp_path_factory: pytest.TempPathFactory
) -> tuple[str, Path]:
    """`-d initdb -i odooops_probe --without-demo=all --stop-after-init`, run once."""
    root = tmp_path_factory.mktemp("init")
    _write_module(root / "addons", "odooops_probe", repr(PROBE_MANIFEST), PROBE_INSTALL_SQL)
    command = ("-d", "initdb", "-i", "odooops_probe", "--without-demo=all", "--stop-after-init")
    mounts = _mounts(root / "addons", root / "data")
    result = _run_odoo(image_refs["odoo"], pg, command, volumes=mounts)
    assert result.exit_code == 0, result.logs
    return "initdb", root / "data"


def _health(odoo: DockerContainer, path: str) -> tuple[int, dict[str, Any]]:
    """GET a path the way the product's health check does: python3 inside the container."""
    probe = odoo.exec(["python3", "-c", HEALTH_PROBE, path])
    assert probe.exit_code == 0, probe.output.decode()
    status, body = probe.output.decode().split(" ", 1)
    return int(status), json.loads(body)


@pytest.fixture
def serve(
    image_refs: dict[str, str], start_container: Callable[[DockerContainer], DockerContainer]
) -> Callable[..., DockerContainer]:
    """`serve(network, *options, environment=...)`: the stand-in serving database `servedb`
    beside that network's `db`, once its HTTP socket is bound; removed at the end of the test."""

    def start(
        network: Network, *options: str, environment: dict[str, str] | None = None
    ) -> DockerContainer:
        odoo = throwaway(
            image_refs["odoo"],
            "odoo",
            command=["odoo", "-d", "servedb", *options],
            env={"PASSWORD": DB_PASSWORD, **(environment or {})},
            network=network,
        ).waiting_for(odoo_serving())
        return start_container(odoo)

    return start


# --- image layout -----------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("attribute", "expected"),
    [
        ("User", "odoo"),
        ("Entrypoint", ["/entrypoint.sh"]),
        ("Cmd", ["odoo"]),
        ("ExposedPorts", {"8069/tcp": {}, "8071/tcp": {}, "8072/tcp": {}}),
        ("Volumes", {"/var/lib/odoo": {}, "/mnt/extra-addons": {}}),
        ("Healthcheck", None),
    ],
)
def test_odoo_image_config_matches_the_official_image(
    engine: docker.DockerClient, image_refs: dict[str, str], attribute: str, expected: Any
) -> None:
    """The stand-in image declares what odoo:19.0 declares, and no health check."""
    config = engine.images.get(image_refs["odoo"]).attrs["Config"]
    assert config.get(attribute) == expected


def test_odoo_image_layout(image_refs: dict[str, str]) -> None:
    """odoo is 101:101, ODOO_RC's default file points at the two volumes, tools are on PATH."""
    script = (
        "id -u; id -g; echo $ODOO_RC; grep -E '^[a-z_]+ *=' $ODOO_RC; "
        "stat -c %U /var/lib/odoo /mnt/extra-addons; "
        "command -v odoo wait-for-psql.py python3 psql"
    )
    out = (
        run_once(throwaway(image_refs["odoo"], "odoo", command=["bash", "-c", script]))
        .stdout.decode()
        .splitlines()
    )
    assert out == [
        "101",
        "101",
        "/etc/odoo/odoo.conf",
        "addons_path = /mnt/extra-addons",
        "data_dir = /var/lib/odoo",
        "odoo",
        "odoo",
        "/usr/bin/odoo",
        "/usr/local/bin/wait-for-psql.py",
        "/usr/bin/python3",
        "/usr/bin/psql",
    ]


def test_version(image_refs: dict[str, str]) -> None:
    """`odoo --version` prints the server series."""
    out = run_once(throwaway(image_refs["odoo"], "odoo", command=["bash", "-c", "odoo --version"]))
    assert out.stdout.decode().strip() == "Odoo Server 19.0"


# --- postgres fixture -------------------------------------------------------------------------


def test_postgres_creates_user_and_database_from_environment(pg: Postgres) -> None:
    """POSTGRES_USER, POSTGRES_PASSWORD_FILE and POSTGRES_DB make a superuser and its database."""
    rows = pg.query(
        "odooops",
        "SELECT current_user, current_database(), "
        "(SELECT rolsuper FROM pg_roles WHERE rolname = current_user)",
    )
    assert rows == [("odoo", "odooops", True)]


def test_postgres_rejects_a_wrong_password_over_tcp(pg: Postgres) -> None:
    """Remote connections use scram-sha-256 password authentication."""
    with pytest.raises(psycopg.OperationalError, match="password authentication failed"):
        pg.connect("odooops", password="wrong").close()


def test_postgres_restart_keeps_the_data_directory(own_pg: Postgres) -> None:
    """A restart with an existing PGDATA does not run initdb again."""
    own = own_pg
    own.execute("odoo", "CREATE TABLE survivor (id int)")
    own.container.restart(timeout=10)
    own.wait_ready()
    assert "Skipping initialization" in own.container.logs().decode()
    assert own.query("odoo", "SELECT to_regclass('survivor')::text") == [("survivor",)]


# --- entrypoint -------------------------------------------------------------------------------


def test_password_file_wins_over_password(run_odoo: Callable[..., Exited], tmp_path: Path) -> None:
    """With PASSWORD_FILE set, the (wrong) PASSWORD is not used."""
    (tmp_path / "pw").write_text(DB_PASSWORD)
    result = run_odoo(
        "-d",
        "pwfile",
        "--stop-after-init",
        environment={"PASSWORD": "wrong", "PASSWORD_FILE": "/run/secrets/pw"},
        volumes={str(tmp_path / "pw"): {"bind": "/run/secrets/pw", "mode": "ro"}},
    )
    assert result.exit_code == 0, result.logs


def test_wrong_password_file_makes_wait_for_psql_exit_1(
    run_odoo: Callable[..., Exited], tmp_path: Path
) -> None:
    """wait-for-psql gives up after its 30 s and the container exits 1 without starting odoo."""
    (tmp_path / "pw").write_text("wrong")
    result = run_odoo(
        "-d",
        "never",
        "--stop-after-init",
        environment={"PASSWORD_FILE": "/run/secrets/pw"},
        volumes={str(tmp_path / "pw"): {"bind": "/run/secrets/pw", "mode": "ro"}},
    )
    assert result.exit_code == 1
    assert "Database connection failure" in result.logs
    assert "Odoo version" not in result.logs


def test_unknown_option_is_a_usage_error(run_odoo: Callable[..., Exited]) -> None:
    """An option odoo does not know exits 2 with optparse's usage message."""
    result = run_odoo("--no-such-option")
    assert result.exit_code == 2
    assert "odoo: error: no such option: --no-such-option" in result.logs


# --- configuration: flags and variables -------------------------------------------------------

INVALID_DEMO = "option --without-demo: since 19.0, invalid boolean value: 'all', assume True"


@pytest.mark.parametrize(
    ("dbname", "options", "demo", "warning"),
    [
        ("demo_none", [], False, None),
        ("demo_with", ["--with-demo"], True, None),
        ("demo_all", ["--without-demo=all"], False, INVALID_DEMO),
        ("demo_true", ["--without-demo=True"], False, None),
        ("demo_bare", ["--without-demo"], False, None),
        ("demo_false", ["--without-demo=False"], True, None),
    ],
    ids=[
        "default",
        "with-demo",
        "without-demo-all",
        "without-demo-true",
        "without-demo",
        "without-demo-false",
    ],
)
def test_demo_flags_of_odoo_19(
    run_odoo: Callable[..., Exited],
    pg: Postgres,
    dbname: str,
    options: list[str],
    demo: bool,
    warning: str | None,
) -> None:
    """--with-demo turns demo data on; --without-demo takes a boolean, and anything else is a
    WARNING "invalid boolean value" that leaves demo data off."""
    result = run_odoo("-d", dbname, *options, "--stop-after-init")
    assert result.exit_code == 0, result.logs
    assert pg.query(dbname, "SELECT demo FROM ir_module_module WHERE name = 'base'") == [(demo,)]
    assert (warning is not None) == ("invalid boolean value" in result.logs)
    if warning:
        assert f"WARNING ? odoo.tools.config: {warning}" in result.logs


def test_test_enable_implies_stop_after_init(run_odoo: Callable[..., Exited]) -> None:
    """With --test-enable the server initialises the database and exits instead of serving."""
    result = run_odoo("-d", "testenable", "--test-enable")
    assert result.exit_code == 0, result.logs
    assert "Modules loaded." in result.logs
    assert "HTTP service" not in result.logs


MISSING_INTERFACE = (
    "WARNING ? odoo.tools.config: missing --http-interface/http_interface, using 0.0.0.0 by "
    "default, will change to 127.0.0.1 in 20.0"
)


@pytest.mark.parametrize(
    ("options", "environment", "warned"),
    [
        ([], {}, True),
        (["--http-interface=0.0.0.0"], {}, False),
        ([], {"ODOO_HTTP_INTERFACE": "0.0.0.0"}, False),
        (["--no-http"], {}, False),
    ],
)
def test_missing_http_interface_is_a_warning(
    run_odoo: Callable[..., Exited],
    initialised: tuple[str, Path],
    options: list[str],
    environment: dict[str, str],
    warned: bool,
) -> None:
    """Without an http_interface, Odoo 19 warns that its default changes in 20.0."""
    result = run_odoo("-d", initialised[0], *options, "--stop-after-init", environment=environment)
    assert result.exit_code == 0, result.logs
    assert (MISSING_INTERFACE in result.logs) == warned


@pytest.mark.parametrize(
    ("options", "environment", "expected"),
    [
        ([], {}, "/mnt/extra-addons"),
        ([], {"ODOO_ADDONS_PATH": "/mnt/other"}, "/mnt/other"),
        (
            ["--addons-path=/mnt/extra-addons"],
            {"ODOO_ADDONS_PATH": "/mnt/other"},
            "/mnt/extra-addons",
        ),
    ],
)
def test_odoo_variables_sit_between_command_line_and_file(
    run_odoo: Callable[..., Exited],
    initialised: tuple[str, Path],
    addons: Path,
    options: list[str],
    environment: dict[str, str],
    expected: str,
) -> None:
    """ODOO_<OPTION> overrides the configuration file and yields to the command line."""
    other = addons.parent / "other"
    _write_module(other, "odooops_other", repr(PROBE_MANIFEST))
    mounts = {**_mounts(addons), str(other): {"bind": "/mnt/other", "mode": "ro"}}
    result = run_odoo(
        "-d", initialised[0], *options, "--stop-after-init", environment=environment,
        volumes=mounts,
    )  # fmt: skip
    assert result.exit_code == 0, result.logs
    assert f"addons paths: ['/usr/lib/python3/dist-packages/odoo/addons', '{expected}']" in (
        result.logs
    )


def test_odoo_variable_turns_demo_data_on(run_odoo: Callable[..., Exited], pg: Postgres) -> None:
    """ODOO_WITH_DEMO=1 is --with-demo."""
    result = run_odoo("-d", "envdemo", "--stop-after-init", environment={"ODOO_WITH_DEMO": "1"})
    assert result.exit_code == 0, result.logs
    assert pg.query("envdemo", "SELECT demo FROM ir_module_module WHERE name = 'base'") == [(True,)]


def test_pgdatabase_names_the_database(run_odoo: Callable[..., Exited], pg: Postgres) -> None:
    """PGDATABASE is the database when -d is not given: created and initialised."""
    result = run_odoo("--stop-after-init", environment={"PGDATABASE": "fromenv"})
    assert result.exit_code == 0, result.logs
    assert _states(pg, "fromenv")["base"] == "installed"


def test_pgappname_names_the_connections(
    run_odoo: Callable[..., Exited], initialised: tuple[str, Path]
) -> None:
    """PGAPPNAME becomes the application_name of Odoo's connections ({pid} substituted)."""
    script = (
        "echo \"env.cr.execute('SHOW application_name'); print('app=' + env.cr.fetchone()[0])\""
        f" | odoo shell -d {initialised[0]}"
    )
    environment = {"PGHOST": "db", "PGUSER": "odoo", "PGPASSWORD": DB_PASSWORD}
    result = run_odoo("bash", "-c", script, environment={**environment, "PGAPPNAME": "ops-{pid}"})
    assert result.exit_code == 0, result.logs
    assert re.search(r"^app=ops-\d+$", result.logs, re.MULTILINE), result.logs


def test_pgsslmode_reaches_the_connections(run_odoo: Callable[..., Exited]) -> None:
    """PGSSLMODE=require is Odoo's db_sslmode: the fixture server has no SSL, so it fails."""
    environment = {"PGHOST": "db", "PGUSER": "odoo", "PGPASSWORD": DB_PASSWORD}
    result = run_odoo(
        "bash", "-c", "exec odoo -d sslmode --stop-after-init",
        environment={**environment, "PGSSLMODE": "require"},
    )  # fmt: skip
    assert result.exit_code != 0
    assert "server does not support SSL" in result.logs


# --- initialisation and update ----------------------------------------------------------------


def test_init_installs_base_and_the_dependencies_of_the_custom_module(
    pg: Postgres, initialised: tuple[str, Path]
) -> None:
    """-i installs base, web (auto_install) and the module's depends, recursively."""
    rows = pg.query(
        initialised[0], "SELECT name FROM ir_module_module WHERE state = 'installed' ORDER BY name"
    )
    assert [name for (name,) in rows] == ["base", "contacts", "mail", "odooops_probe", "web"]


def test_init_runs_the_custom_module_install_sql(
    pg: Postgres, initialised: tuple[str, Path]
) -> None:
    """A custom module's data/install.sql runs, and its version gets the series prefix."""
    assert pg.query(initialised[0], "SELECT body FROM odooops_probe_note") == [("installed",)]
    assert pg.query(
        initialised[0], "SELECT latest_version FROM ir_module_module WHERE name = 'odooops_probe'"
    ) == [("19.0.1.0",)]


def test_init_writes_a_content_addressed_filestore(
    pg: Postgres, initialised: tuple[str, Path]
) -> None:
    """Attachments live at <data_dir>/filestore/<db>/<sha1[:2]>/<sha1>."""
    dbname, data_dir = initialised
    [(store_fname, checksum)] = pg.query(
        dbname, "SELECT store_fname, checksum FROM ir_attachment WHERE store_fname IS NOT NULL"
    )
    path = data_dir / "filestore" / dbname / store_fname
    assert store_fname == f"{checksum[:2]}/{checksum}"
    assert hashlib.sha1(path.read_bytes()).hexdigest() == checksum


def test_init_sets_database_identity(pg: Postgres, initialised: tuple[str, Path]) -> None:
    """base stores database.uuid, database.secret and database.create_date."""
    rows = pg.query(
        initialised[0],
        "SELECT key FROM ir_config_parameter WHERE key LIKE 'database.%' ORDER BY key",
    )
    assert [key for (key,) in rows] == ["database.create_date", "database.secret", "database.uuid"]


def test_demo_data_needs_with_demo(
    run_odoo: Callable[..., Exited], pg: Postgres, initialised: tuple[str, Path]
) -> None:
    """Odoo 19 creates databases without demo data unless --with-demo is given."""
    assert run_odoo("-d", "withdemo", "--with-demo", "--stop-after-init").exit_code == 0
    assert pg.query(
        "withdemo", "SELECT count(*) FROM res_partner WHERE name = 'Azure Interior'"
    ) == [(1,)]
    assert pg.query(
        initialised[0], "SELECT count(*) FROM res_partner WHERE name = 'Azure Interior'"
    ) == [(0,)]


def test_unknown_module_is_a_warning(run_odoo: Callable[..., Exited], pg: Postgres) -> None:
    """-i with a name not on the addons path logs a WARNING and still exits 0."""
    result = run_odoo("-d", "unknownmod", "-i", "no_such_module", "--stop-after-init")
    assert result.exit_code == 0, result.logs
    assert (
        "WARNING unknownmod odoo.modules.loading: invalid module names, ignored: "
        "no_such_module" in result.logs
    )


def test_unparsable_manifest_is_invisible(
    run_odoo: Callable[..., Exited], pg: Postgres, addons: Path
) -> None:
    """A manifest that is not a Python literal is logged at DEBUG only: the module gets no row,
    -i of it is an unknown name, and the run succeeds."""
    _write_module(addons, "broken", "{'name': 'Broken',")
    result = run_odoo(
        "-d", "broken", "-i", "odooops_probe,broken", "--log-level=debug", "--stop-after-init",
        volumes=_mounts(addons),
    )  # fmt: skip
    assert result.exit_code == 0, result.logs
    assert (
        "DEBUG broken odoo.modules.module: Failed to parse the manifest file at "
        "'/mnt/extra-addons/broken'" in result.logs
    )
    assert "odoo.modules.loading: invalid module names, ignored: broken" in result.logs
    states = _states(pg, "broken")
    assert "broken" not in states
    assert states["odooops_probe"] == "installed"


def test_version_of_another_series_is_uninstallable(
    run_odoo: Callable[..., Exited], pg: Postgres, addons: Path
) -> None:
    """A manifest version of 18.0 makes the module uninstallable with a warning; -i of it
    installs nothing and still exits 0."""
    manifest = {**PROBE_MANIFEST, "name": "Old", "version": "18.0.1.0.0"}
    _write_module(addons, "odooops_old", repr(manifest), "CREATE TABLE odooops_old (id int);")
    result = run_odoo(
        "-d", "oldseries", "-i", "odooops_old", "--stop-after-init", volumes=_mounts(addons)
    )
    assert result.exit_code == 0, result.logs
    assert (
        "WARNING oldseries odoo.modules.module: The module odooops_old has an incompatible "
        "version, setting installable=False" in result.logs
    )
    assert _states(pg, "oldseries")["odooops_old"] == "uninstallable"
    assert pg.query("oldseries", "SELECT to_regclass('odooops_old')") == [(None,)]


def test_dependency_of_another_series_leaves_the_module_pending(
    run_odoo: Callable[..., Exited], pg: Postgres, addons: Path
) -> None:
    """A module depending on an uninstallable one stays 'to install', two ERROR lines say so,
    base.partially_updated_database is set for the next start, and the run exits 0."""
    _write_module(addons, "odooops_old", repr({**PROBE_MANIFEST, "version": "18.0.1.0.0"}))
    _write_module(addons, "odooops_new", repr({**PROBE_MANIFEST, "depends": ["odooops_old"]}))
    result = run_odoo(
        "-d", "pending", "-i", "odooops_new", "--stop-after-init", volumes=_mounts(addons)
    )
    assert result.exit_code == 0, result.logs
    assert (
        "INFO pending odoo.modules.module_graph: module odooops_new: some depends are not "
        "loaded, skipped" in result.logs
    )
    assert (
        "ERROR pending odoo.modules.loading: Some modules have inconsistent states, some "
        "dependencies may be missing: ['odooops_new']" in result.logs
    )
    assert _states(pg, "pending")["odooops_new"] == "to install"
    assert _partial_flag(pg, "pending") == [("1",)]


@pytest.mark.parametrize(
    ("options", "warnings"),
    [
        (
            ["--addons-path=/nowhere,/tmp,/mnt/extra-addons"],
            [
                "option --addons-path, no such directory '/nowhere', skipped",
                "option --addons-path, invalid addons directory '/tmp', skipped",
            ],
        ),
        (["--addons-path=/mnt/extra-addons"], []),
    ],
)
def test_bad_addons_path_entries_are_skipped_with_a_warning(
    run_odoo: Callable[..., Exited], addons: Path, options: list[str], warnings: list[str]
) -> None:
    """A missing directory, or one without modules, is a WARNING and skipped; the rest works."""
    dbname = f"adpath{len(warnings)}"
    result = run_odoo(
        "-d", dbname, "-i", "odooops_probe", *options, "--stop-after-init",
        volumes=_mounts(addons),
    )  # fmt: skip
    assert result.exit_code == 0, result.logs
    logged = [line.split("odoo.tools.config: ", 1)[1] for line in result.logs.splitlines()
              if "WARNING ? odoo.tools.config: option" in line]  # fmt: skip
    assert logged == warnings
    assert "'/usr/lib/python3/dist-packages/odoo/addons', '/mnt/extra-addons']" in result.logs


def test_empty_extra_addons_volume_is_a_warning(run_odoo: Callable[..., Exited]) -> None:
    """The image's own addons_path (/mnt/extra-addons) holding no module is skipped with the
    WARNING real Odoo 19 logs on every start of a bare image."""
    result = run_odoo("-d", "bareimage", "--stop-after-init")
    assert result.exit_code == 0, result.logs
    assert (
        "WARNING ? odoo.tools.config: option addons_path, invalid addons directory "
        "'/mnt/extra-addons', skipped" in result.logs
    )


def test_missing_dependency_fails_the_run(
    run_odoo: Callable[..., Exited], pg: Postgres, addons: Path
) -> None:
    """Installing a module whose dependency is nowhere is Odoo's UserError: CRITICAL, exit
    255, the module left uninstalled; base, committed first, stays installed."""
    _write_module(addons, "odooops_orphan", repr({**PROBE_MANIFEST, "depends": ["ghost"]}))
    result = run_odoo(
        "-d", "ghostdep", "-i", "odooops_orphan", "--stop-after-init", volumes=_mounts(addons)
    )
    assert result.exit_code == 255
    assert (
        "CRITICAL ghostdep odoo.service.server: Failed to initialize database `ghostdep`."
        in result.logs
    )
    assert (
        "odoo.exceptions.UserError: You try to install module 'odooops_orphan' that depends on "
        "module 'ghost'." in result.logs
    )
    states = _states(pg, "ghostdep")
    assert (states["base"], states["odooops_orphan"]) == ("installed", "uninstalled")
    assert not [name for name, state in states.items() if state.startswith("to ")]


def test_unmet_external_dependency_fails_the_install_until_pythonpath_has_it(
    run_odoo: Callable[..., Exited], pg: Postgres, addons: Path, tmp_path: Path
) -> None:
    """A manifest's external_dependencies python entry is looked up by distribution name:
    missing, -i is Odoo's UserError (exit 255, the module uninstalled); once a directory on
    PYTHONPATH holds the distribution (a wheel unpacked, as pip --target leaves it), the
    same -i installs it."""
    manifest = {**PROBE_MANIFEST, "external_dependencies": {"python": ["odooops-probe-lib"]}}
    _write_module(addons, "odooops_probe", repr(manifest), PROBE_INSTALL_SQL)
    command = ("-d", "extdeps", "-i", "odooops_probe", "--stop-after-init")
    missing = run_odoo(*command, volumes=_mounts(addons))
    assert missing.exit_code == 255, missing.logs
    assert (
        'odoo.exceptions.UserError: Unable to install module "odooops_probe" because an '
        "external dependency is not met: odooops-probe-lib" in missing.logs
    )
    assert _states(pg, "extdeps")["odooops_probe"] == "uninstalled"

    wheel = make_wheel(tmp_path, "odooops-probe-lib", "1.0", {"odooops_probe_lib/__init__.py": ""})
    with zipfile.ZipFile(wheel) as archive:
        archive.extractall(tmp_path / "python")
    mounts = {**_mounts(addons), str(tmp_path / "python"): {"bind": "/opt/python", "mode": "ro"}}
    found = run_odoo(*command, environment={"PYTHONPATH": "/opt/python"}, volumes=mounts)
    assert found.exit_code == 0, found.logs
    assert _states(pg, "extdeps")["odooops_probe"] == "installed"


def test_update_refreshes_latest_version(
    run_odoo: Callable[..., Exited], pg: Postgres, addons: Path
) -> None:
    """-u reads the module's manifest again and records its new version."""
    assert (
        run_odoo(
            "-d", "upd", "-i", "odooops_probe", "--stop-after-init", volumes=_mounts(addons)
        ).exit_code
        == 0
    )
    _write_module(addons, "odooops_probe", repr({**PROBE_MANIFEST, "version": "1.1"}))
    result = run_odoo(
        "-d", "upd", "-u", "odooops_probe", "--stop-after-init", volumes=_mounts(addons)
    )
    assert result.exit_code == 0, result.logs
    assert pg.query(
        "upd", "SELECT latest_version FROM ir_module_module WHERE name = 'odooops_probe'"
    ) == [("19.0.1.1",)]


# --- module by module: migrations, hooks, failures -------------------------------------------

STEPS = [f"odooops_step{n}" for n in range(1, 6)]
NOTE_VERSION = """
def migrate(cr, version):
    cr.execute("INSERT INTO {table} (note) VALUES (%s)", ("{stage} from " + version,))
"""
REFUSE = """
def migrate(cr, version):
    raise RuntimeError("{module} refuses to migrate")
"""


def _write_steps(addons: Path, version: str) -> None:
    """Five independent modules at `version`, each with a table of notes its scripts fill."""
    for module in STEPS:
        manifest = {**PROBE_MANIFEST, "name": module, "version": version, "depends": ["base"]}
        _write_module(addons, module, repr(manifest), f"CREATE TABLE {module} (note text);")


@pytest.fixture(scope="module")
def failed_update(
    image_refs: dict[str, str], pg: Postgres, tmp_path_factory: pytest.TempPathFactory
) -> tuple[str, Exited]:
    """Five modules installed at 1.0, then `-u` of all five at 1.1: each has pre- and post-
    migration scripts writing a note, and the third's post-migration raises."""
    addons = tmp_path_factory.mktemp("steps") / "addons"
    _write_steps(addons, "1.0")
    dbname, mounts = "stepsfail", _mounts(addons)
    install = ("-d", dbname, "-i", ",".join(STEPS), "--stop-after-init")
    installed = _run_odoo(image_refs["odoo"], pg, install, volumes=mounts)
    assert installed.exit_code == 0, installed.logs
    _write_steps(addons, "1.1")
    for module in STEPS:
        for stage in ("pre", "post"):
            body = NOTE_VERSION.format(table=module, stage=stage)
            _write_migration(addons, module, "1.1", f"{stage}-note", body)
    _write_migration(addons, STEPS[2], "1.1", "post-refuse", REFUSE.format(module=STEPS[2]))
    update = ("-d", dbname, "-u", ",".join(STEPS), "--stop-after-init")
    return dbname, _run_odoo(image_refs["odoo"], pg, update, volumes=mounts)


def test_failed_update_exits_255_with_odoos_critical_line(
    failed_update: tuple[str, Exited],
) -> None:
    """The failing script's traceback comes with CRITICAL "Failed to initialize database"."""
    dbname, result = failed_update
    assert result.exit_code == 255, result.logs
    critical = f"CRITICAL {dbname} odoo.service.server: Failed to initialize database `{dbname}`."
    assert critical in result.logs
    assert f"RuntimeError: {STEPS[2]} refuses to migrate" in result.logs
    assert (
        f"INFO {dbname} odoo.modules.migration: module {STEPS[2]}: Running upgrade [1.1>] "
        "post-refuse" in result.logs
    )


def test_failed_update_keeps_the_modules_done_before(
    pg: Postgres, failed_update: tuple[str, Exited]
) -> None:
    """Modules are committed one by one: the two before the failing one have their new version
    and their notes, the failing one and those after it keep the old version."""
    dbname, _result = failed_update
    assert _latest_versions(pg, dbname, STEPS) == ["19.0.1.1"] * 2 + ["19.0.1.0"] * 3
    for module in STEPS[:2]:
        notes = pg.query(dbname, f"SELECT note FROM {module} ORDER BY note")
        assert notes == [("post from 19.0.1.0",), ("pre from 19.0.1.0",)]


def test_failed_update_rolls_the_failing_module_back(
    pg: Postgres, failed_update: tuple[str, Exited]
) -> None:
    """What the failing module's pre-migration wrote went with its transaction; the modules
    after it never started."""
    dbname, _result = failed_update
    for module in STEPS[2:]:
        assert pg.query(dbname, f"SELECT note FROM {module}") == []


def test_failed_update_resets_the_transient_states(
    pg: Postgres, failed_update: tuple[str, Exited]
) -> None:
    """No module is left 'to upgrade': Odoo's reset_modules_state, with its warning. Nothing is
    pending, so Odoo 19 does not set base.partially_updated_database."""
    dbname, result = failed_update
    assert f"WARNING {dbname} odoo.modules.loading: Transient module states were reset" in (
        result.logs
    )
    states = _states(pg, dbname)
    assert [states[module] for module in STEPS] == ["installed"] * 5
    assert not [name for name, state in states.items() if state.startswith("to ")]
    assert _partial_flag(pg, dbname) == []


def test_migrations_run_only_for_newer_versions(
    run_odoo: Callable[..., Exited], pg: Postgres, addons: Path
) -> None:
    """Only the folders above the installed version and up to the manifest's run, in order."""
    run_odoo("-d", "migorder", "-i", "odooops_probe", "--stop-after-init", volumes=_mounts(addons))
    _write_module(addons, "odooops_probe", repr({**PROBE_MANIFEST, "version": "1.2"}))
    for version in ("1.0", "1.1", "19.0.1.2", "1.3"):
        body = f"""
def migrate(cr, version):
    cr.execute("INSERT INTO odooops_probe_note (body) VALUES ('{version}')")
"""
        _write_migration(addons, "odooops_probe", version, "post-note", body)
    result = run_odoo(
        "-d", "migorder", "-u", "odooops_probe", "--stop-after-init", volumes=_mounts(addons)
    )
    assert result.exit_code == 0, result.logs
    notes = pg.query("migorder", "SELECT body FROM odooops_probe_note ORDER BY id")
    assert notes == [("installed",), ("1.1",), ("19.0.1.2",)]


def test_successful_update_clears_the_partial_flag(
    run_odoo: Callable[..., Exited], pg: Postgres, addons: Path
) -> None:
    """A start finds base.partially_updated_database, deletes it and finishes the update."""
    mounts = _mounts(addons)
    run_odoo("-d", "flagged", "-i", "odooops_probe", "--stop-after-init", volumes=mounts)
    pg.execute(
        "flagged",
        "INSERT INTO ir_config_parameter (key, value)"
        " VALUES ('base.partially_updated_database', '1')",
    )
    result = run_odoo("-d", "flagged", "-u", "odooops_probe", "--stop-after-init", volumes=mounts)
    assert result.exit_code == 0, result.logs
    assert _partial_flag(pg, "flagged") == []


def test_post_init_hook_runs_with_env(
    run_odoo: Callable[..., Exited], pg: Postgres, addons: Path
) -> None:
    """On install, the manifest's post_init_hook is called from the module's package with an
    `env` whose cursor writes in the module's transaction."""
    manifest = {**PROBE_MANIFEST, "post_init_hook": "_note_hook"}
    _write_module(addons, "odooops_probe", repr(manifest), PROBE_INSTALL_SQL)
    (addons / "odooops_probe" / "__init__.py").write_text(
        "def _note_hook(env):\n"
        "    env.cr.execute(\"INSERT INTO odooops_probe_note (body) VALUES ('hooked')\")\n"
    )
    result = run_odoo(
        "-d", "hooked", "-i", "odooops_probe", "--stop-after-init", volumes=_mounts(addons)
    )
    assert result.exit_code == 0, result.logs
    notes = pg.query("hooked", "SELECT body FROM odooops_probe_note ORDER BY id")
    assert notes == [("installed",), ("hooked",)]


def test_failing_post_init_hook_fails_the_install(
    run_odoo: Callable[..., Exited], pg: Postgres, addons: Path
) -> None:
    """An exception in the hook rolls the module back: exit 255, the module uninstalled."""
    manifest = {**PROBE_MANIFEST, "post_init_hook": "_refuse"}
    _write_module(addons, "odooops_probe", repr(manifest), PROBE_INSTALL_SQL)
    (addons / "odooops_probe" / "__init__.py").write_text(
        "def _refuse(env):\n    raise ValueError('odooops_probe refuses to install')\n"
    )
    result = run_odoo(
        "-d", "hookfails", "-i", "odooops_probe", "--stop-after-init", volumes=_mounts(addons)
    )
    assert result.exit_code == 255
    assert "ValueError: odooops_probe refuses to install" in result.logs
    assert _states(pg, "hookfails")["odooops_probe"] == "uninstalled"
    assert pg.query("hookfails", "SELECT to_regclass('odooops_probe_note')") == [(None,)]


# --- neutralisation and shell -----------------------------------------------------------------


@pytest.fixture(scope="module")
def neutralized(image_refs: dict[str, str], pg: Postgres) -> str:
    """A database with mail, an active mail server and a webhook, then `odoo neutralize`."""

    def run(*command: str) -> None:
        result = _run_odoo(image_refs["odoo"], pg, command)
        assert result.exit_code == 0, result.logs

    run("-d", "neutral", "-i", "contacts", "--stop-after-init")
    with pg.connect("neutral") as conn:
        conn.execute("INSERT INTO ir_mail_server (name, smtp_host) VALUES ('prod', 'smtp.x')")
        conn.execute(
            "INSERT INTO ir_act_server (name, state, webhook_url) "
            "VALUES ('{\"en_US\": \"hook\"}', 'webhook', 'https://example.com/h')"
        )
    run("odoo", "neutralize", "-d", "neutral")
    return "neutral"


def test_neutralize_sets_the_flag(pg: Postgres, neutralized: str) -> None:
    """database.is_neutralized becomes true."""
    assert pg.query(
        neutralized, "SELECT value FROM ir_config_parameter WHERE key = 'database.is_neutralized'"
    ) == [("true",)]


def test_neutralize_stops_every_cron_but_autovacuum(pg: Postgres, neutralized: str) -> None:
    """Only 'Base: Auto-vacuum internal data' stays active."""
    rows = pg.query(neutralized, "SELECT cron_name FROM ir_cron WHERE active")
    assert rows == [("Base: Auto-vacuum internal data",)]
    assert pg.query(neutralized, "SELECT count(*) > 1 FROM ir_cron") == [(True,)]


def test_neutralize_replaces_mail_servers_with_a_dummy(pg: Postgres, neutralized: str) -> None:
    """Existing servers are deactivated; the only active one points to host 'invalid'."""
    rows = pg.query(neutralized, "SELECT name, smtp_host, active FROM ir_mail_server ORDER BY id")
    assert rows == [("prod", "smtp.x", False), ("neutralization - disable emails", "invalid", True)]


def test_neutralize_disables_webhooks_and_shows_the_banner(pg: Postgres, neutralized: str) -> None:
    """Webhook actions lose their URL; web's banner view is activated."""
    assert pg.query(
        neutralized, "SELECT webhook_url FROM ir_act_server WHERE state = 'webhook'"
    ) == [("neutralization - disable webhook",)]
    assert pg.query(
        neutralized, "SELECT active FROM ir_ui_view WHERE key = 'web.neutralize_banner'"
    ) == [(True,)]


def test_neutralize_stdout_prints_custom_addon_scripts(
    run_odoo: Callable[..., Exited], pg: Postgres, addons: Path
) -> None:
    """`odoo neutralize --stdout` prints every installed module's data/neutralize.sql, custom
    addons on the addons path included, between BEGIN and COMMIT on stdout, runs none of it,
    and logs on stderr only."""
    script = "UPDATE odooops_probe_note SET body = 'neutralized';"
    (addons / "odooops_probe" / "data" / "neutralize.sql").write_text(script + "\n")
    mounts = _mounts(addons)
    run_odoo("-d", "neutralsql", "-i", "odooops_probe", "--stop-after-init", volumes=mounts)
    result = run_odoo("odoo", "neutralize", "-d", "neutralsql", "--stdout", volumes=mounts)
    assert result.exit_code == 0, result.logs
    out = result.stdout.decode().strip().splitlines()
    assert (out[0], out[-1]) == ("BEGIN;", "COMMIT;")
    assert script in out
    assert "UPDATE ir_mail_server" in out  # base's own script
    assert not [line for line in out if " odoo." in line]  # no log line on stdout
    assert "BEGIN;" not in result.stderr.decode()
    assert pg.query("neutralsql", "SELECT body FROM odooops_probe_note") == [("installed",)]


def test_neutralize_refuses_an_uninitialised_database(
    run_odoo: Callable[..., Exited], pg: Postgres
) -> None:
    """On a database without Odoo's tables neutralize exits 1."""
    pg.execute("odooops", "CREATE DATABASE empty_db")
    result = run_odoo("odoo", "neutralize", "-d", "empty_db")
    assert result.exit_code == 1
    assert "THE DATABASE IS NOT NEUTRALIZED" in result.logs


def test_shell_runs_stdin_with_pg_variables(
    run_odoo: Callable[..., Exited], initialised: tuple[str, Path]
) -> None:
    """`odoo shell` execs stdin with env.cr; PG* variables reach the database natively."""
    script = (
        "echo \"env.cr.execute('SELECT login FROM res_users WHERE id = 2'); "
        "print('login=' + env.cr.fetchone()[0])\" | odoo shell -d " + initialised[0]
    )
    result = run_odoo(
        "bash",
        "-c",
        script,
        environment={"PGHOST": "db", "PGUSER": "odoo", "PGPASSWORD": DB_PASSWORD},
    )
    assert result.exit_code == 0, result.logs
    assert "login=admin" in result.logs


# --- HTTP service -----------------------------------------------------------------------------


def test_health_passes_with_the_database_up(
    serve: Callable[[Network], DockerContainer], pg: Postgres
) -> None:
    """/web/health answers 200 pass, and db_server_status true when PostgreSQL answers."""
    odoo = serve(pg.network)
    assert _health(odoo, "/web/health") == (200, {"status": "pass"})
    assert _health(odoo, "/web/health?db_server_status=1") == (
        200,
        {"status": "pass", "db_server_status": True},
    )


def test_health_fails_db_server_status_when_the_database_is_down(
    serve: Callable[[Network], DockerContainer], own_pg: Postgres
) -> None:
    """With PostgreSQL stopped, db_server_status=1 answers 500 fail; plain health still passes."""
    own = own_pg
    odoo = serve(own.network)
    _health(odoo, "/web/health")
    own.container.stop(timeout=10)
    assert _health(odoo, "/web/health?db_server_status=1") == (
        500,
        {"status": "fail", "db_server_status": False},
    )
    assert _health(odoo, "/web/health") == (200, {"status": "pass"})


def _address_space_limit(odoo: DockerContainer) -> str:
    """The soft 'Max address space' of the server process (PID 1) once its database is loaded
    (the moment a worker would start)."""
    server = odoo.get_wrapped_container()
    deadline = time.monotonic() + 30
    while b"Registry loaded" not in server.logs() and time.monotonic() < deadline:
        time.sleep(0.3)
    deadline = time.monotonic() + 3
    while True:
        limits = odoo.exec(["grep", "Max address space", "/proc/1/limits"]).output.decode()
        soft = limits.split()[3]
        if soft != "unlimited" or time.monotonic() > deadline:
            return soft
        time.sleep(0.3)


@pytest.mark.parametrize(
    ("options", "environment", "limit"),
    [
        (["--workers=2", "--limit-memory-hard=1073741824"], {}, "1073741824"),
        ([], {"ODOO_WORKERS": "2", "ODOO_LIMIT_MEMORY_HARD": "1258291200"}, "1258291200"),
        (["--workers=0", "--limit-memory-hard=1073741824"], {}, "unlimited"),
    ],
)
def test_workers_get_the_hard_memory_limit_as_address_space(
    serve: Callable[..., DockerContainer],
    pg: Postgres,
    options: list[str],
    environment: dict[str, str],
    limit: str,
) -> None:
    """With workers, --limit-memory-hard is RLIMIT_AS of the serving process, which still
    answers; the threaded server (workers 0) has no limit."""
    odoo = serve(pg.network, *options, environment=environment)
    assert _address_space_limit(odoo) == limit
    assert _health(odoo, "/web/health") == (200, {"status": "pass"})


def test_server_stops_promptly_on_sigterm(
    serve: Callable[[Network], DockerContainer], pg: Postgres
) -> None:
    """`docker stop` ends the server with exit code 0 well within the grace period."""
    odoo = serve(pg.network)
    _health(odoo, "/web/health")
    server = odoo.get_wrapped_container()
    started = time.monotonic()
    server.stop(timeout=10)
    assert time.monotonic() - started < 5
    assert server.wait(timeout=10)["StatusCode"] == 0
    assert '"GET /web/health HTTP/1.1" 200' in server.logs().decode()


# --- module tests: --test-enable / --test-tags -------------------------------------------------

TESTED_MANIFEST = {**PROBE_MANIFEST, "name": "OdooOps tested", "depends": ["base"]}
TESTED_AT_INSTALL = """
from odoo.tests import TransactionCase


class TestNotes(TransactionCase):
    def test_passes(self):
        self.env.cr.execute("INSERT INTO odooops_tested_note (body) VALUES ('from a test')")
        self.env.cr.execute("SELECT body FROM odooops_tested_note ORDER BY id")
        self.assertEqual(self.env.cr.fetchall(), [("installed",), ("from a test",)])

    def test_fails(self):
        self.assertEqual(1, 2, "odooops deliberate failure")

    def test_errors(self):
        raise ValueError("odooops deliberate error")
"""
TESTED_POST = """
from odoo.tests import BaseCase, TransactionCase, tagged


@tagged("post_install", "-at_install")
class TestAfterAll(TransactionCase):
    def test_after_everything(self):
        self.env.cr.execute("SELECT state FROM ir_module_module WHERE name = 'odooops_other'")
        self.assertEqual(self.env.cr.fetchall(), [("installed",)])


@tagged("-standard", "nightly")
class TestNightly(BaseCase):
    def test_nightly(self):
        pass
"""
OTHER_TESTS = """
from odoo.tests import HttpCase, TransactionCase, tagged


class TestOther(TransactionCase):
    def test_other_passes(self):
        self.assertEqual(self.env.uid, 1)


@tagged("post_install", "-at_install")
class TestHealth(HttpCase):
    def test_health(self):
        self.assertEqual(self.url_open("/web/health").json(), {"status": "pass"})
"""


def _write_tests(addons: Path, module: str, files: dict[str, str]) -> None:
    """tests/<name>.py of a module, each imported by its tests/__init__.py as Odoo needs."""
    folder = addons / module / "tests"
    folder.mkdir(parents=True, exist_ok=True)
    for name, body in files.items():
        (folder / f"{name}.py").write_text(body)
    (folder / "__init__.py").write_text("".join(f"from . import {name}\n" for name in files))


def _write_tested(addons: Path) -> None:
    """odooops_tested (a passing, a failing and an erroring at_install test, a post_install
    test, a test outside 'standard') and odooops_other, which depends on it (an at_install
    test and a post_install HttpCase)."""
    _write_module(
        addons,
        "odooops_tested",
        repr(TESTED_MANIFEST),
        "CREATE TABLE odooops_tested_note (id serial PRIMARY KEY, body text);"
        " INSERT INTO odooops_tested_note (body) VALUES ('installed');",
    )
    _write_tests(addons, "odooops_tested", {"test_at_install": TESTED_AT_INSTALL,
                                            "test_post": TESTED_POST})  # fmt: skip
    other = {**TESTED_MANIFEST, "name": "OdooOps other", "depends": ["odooops_tested"]}
    _write_module(addons, "odooops_other", repr(other))
    _write_tests(addons, "odooops_other", {"test_other": OTHER_TESTS})


@pytest.fixture(scope="module")
def tested_addons(tmp_path_factory: pytest.TempPathFactory) -> Path:
    addons = tmp_path_factory.mktemp("tested") / "addons"
    _write_tested(addons)
    return addons


@pytest.fixture(scope="module")
def tests_run(image_refs: dict[str, str], pg: Postgres, tested_addons: Path) -> Exited:
    """`-d testsall -i odooops_other --test-enable`: both modules installed and tested."""
    command = ("-d", "testsall", "-i", "odooops_other", "--test-enable")
    return _run_odoo(image_refs["odoo"], pg, command, volumes=_mounts(tested_addons))


def test_failing_tests_exit_1_with_odoos_summary_line(tests_run: Exited) -> None:
    """Odoo 19's preload_registries counts the databases whose tests failed: exit 1, after the
    summary line of odoo.tests.result (ERROR, as a test failed)."""
    assert tests_run.exit_code == 1, tests_run.logs
    assert (
        "ERROR testsall odoo.tests.result: 1 failed, 1 error(s) of 6 tests when loading "
        "database 'testsall'" in tests_run.logs
    )


def test_each_test_is_logged_on_its_module_logger(tests_run: Exited) -> None:
    """Each test: "Starting Class.method ...", then for a failure or an error a line of '=' and
    "FAIL: ..."/"ERROR: ..." with the traceback, all on the test module's logger."""
    logs, at_install = tests_run.logs, "odoo.addons.odooops_tested.tests.test_at_install"
    for method in ("test_errors", "test_fails", "test_passes"):
        assert f"INFO testsall {at_install}: Starting TestNotes.{method} ..." in logs
    assert f"INFO testsall {at_install}: {'=' * 70}\n" in logs
    fail = f"ERROR testsall {at_install}: FAIL: TestNotes.test_fails\nTraceback (most recent"
    assert fail in logs
    assert re.search(r'odooops_tested/tests/test_at_install.py", line \d+, in test_fails', logs)
    assert "AssertionError: 1 != 2 : odooops deliberate failure\n" in logs
    assert f"ERROR testsall {at_install}: ERROR: TestNotes.test_errors\nTraceback" in logs
    assert "ValueError: odooops deliberate error\n" in logs
    other = "odoo.addons.odooops_other.tests.test_other"
    assert f"INFO testsall {other}: Starting TestOther.test_other_passes ..." in logs
    assert "test_nightly" not in logs  # outside 'standard', the default selection


def test_at_install_tests_run_as_each_module_is_loaded(tests_run: Exited) -> None:
    """at_install tests run right after their module is installed, before the next module;
    post_install tests after every module, with Odoo's lines around them."""
    logs = tests_run.logs
    order = [
        "Loading module odooops_tested",
        "Starting TestNotes.test_passes ...",
        "ERROR testsall odoo.modules.loading: Module odooops_tested: 1 failures, 1 errors of "
        "3 tests",
        "Loading module odooops_other",
        "Starting TestOther.test_other_passes ...",
        "ERROR testsall odoo.modules.loading: At least one test failed when loading the modules.",
        "INFO testsall odoo.registry: Registry loaded in",
        "INFO testsall odoo.service.server: Starting post tests",
        "Starting TestAfterAll.test_after_everything ...",
        "Starting TestHealth.test_health ...",
        "INFO testsall odoo.service.server: 2 post-tests in ",
        "INFO testsall odoo.tests.stats: odooops_other: 2 tests ",
        "INFO testsall odoo.tests.stats: odooops_tested: 4 tests ",
        "odoo.tests.result: 1 failed",
    ]
    positions = [logs.find(line) for line in order]
    assert -1 not in positions, [line for line in order if line not in logs]
    assert positions == sorted(positions)
    assert "Modules loaded." not in logs


def test_tests_change_nothing_and_failures_keep_the_install(
    pg: Postgres, tests_run: Exited
) -> None:
    """TransactionCase rolls its writes back; failing tests do not undo an installation, and
    the post_install HttpCase reached the server under test (its test passed)."""
    assert pg.query("testsall", "SELECT body FROM odooops_tested_note") == [("installed",)]
    states = _states(pg, "testsall")
    assert (states["odooops_tested"], states["odooops_other"]) == ("installed", "installed")
    assert "FAIL: TestHealth" not in tests_run.logs
    assert "ERROR: TestHealth" not in tests_run.logs


@pytest.mark.parametrize(
    ("test_tags", "started", "count"),
    [
        ("/odooops_other", ["TestOther.test_other_passes", "TestHealth.test_health"], 2),
        ("odooops_other", ["TestOther.test_other_passes", "TestHealth.test_health"], 2),
        ("nightly", ["TestNightly.test_nightly"], 1),
        ("/odooops_tested:TestNotes.test_passes", ["TestNotes.test_passes"], 1),
        ("/odooops_other,-:TestHealth", ["TestOther.test_other_passes"], 1),
    ],
    ids=["by-module", "module-as-tag", "by-tag", "by-method", "excluded-class"],
)
def test_test_tags_select_the_tests(
    run_odoo: Callable[..., Exited],
    tested_addons: Path,
    test_tags: str,
    started: list[str],
    count: int,
) -> None:
    """--test-tags alone enables the tests; only the selected ones start, all passing here."""
    dbname = "tags" + hashlib.sha1(test_tags.encode()).hexdigest()[:8]
    result = run_odoo(
        "-d", dbname, "-i", "odooops_other", "--test-tags", test_tags,
        volumes=_mounts(tested_addons),
    )  # fmt: skip
    assert result.exit_code == 0, result.logs
    assert sorted(re.findall(r"Starting (\w+\.\w+) \.\.\.", result.logs)) == sorted(started)
    summary = f"0 failed, 0 error(s) of {count} tests when loading database '{dbname}'"
    assert f"INFO {dbname} odoo.tests.result: {summary}" in result.logs


def test_only_modules_updated_by_the_run_are_tested(
    run_odoo: Callable[..., Exited], pg: Postgres, tested_addons: Path
) -> None:
    """With -u (or -i) only the modules the run installs or upgrades are tested; without
    either, every installed module is."""
    mounts = _mounts(tested_addons)
    installed = run_odoo("-d", "testsrule", "-i", "odooops_other", "--stop-after-init",
                         volumes=mounts)  # fmt: skip
    assert installed.exit_code == 0, installed.logs
    assert "Starting " not in installed.logs  # no --test-enable, no tests
    upgraded = run_odoo("-d", "testsrule", "-u", "odooops_other", "--test-enable", volumes=mounts)
    assert upgraded.exit_code == 0, upgraded.logs
    assert "Starting TestOther.test_other_passes ..." in upgraded.logs
    assert "Starting TestNotes" not in upgraded.logs
    assert "Starting TestAfterAll" not in upgraded.logs
    assert "0 failed, 0 error(s) of 2 tests when loading database 'testsrule'" in upgraded.logs
    loaded = run_odoo("-d", "testsrule", "--test-enable", volumes=mounts)
    assert loaded.exit_code == 1, loaded.logs
    assert "Loading module" not in loaded.logs
    assert "1 failed, 1 error(s) of 6 tests when loading database 'testsrule'" in loaded.logs


def test_no_test_at_all_is_a_warning_summary(run_odoo: Callable[..., Exited], addons: Path) -> None:
    """A run whose selection finds no test ends with a WARNING summary and exit 0."""
    result = run_odoo("-d", "notests", "-i", "odooops_probe", "--test-enable",
                      volumes=_mounts(addons))  # fmt: skip
    assert result.exit_code == 0, result.logs
    assert (
        "WARNING notests odoo.tests.result: 0 failed, 0 error(s) of 0 tests when loading "
        "database 'notests'" in result.logs
    )
    assert "INFO notests odoo.service.server: 0 post-tests in " in result.logs


def test_test_module_that_does_not_import_fails_the_run(
    run_odoo: Callable[..., Exited], pg: Postgres, addons: Path
) -> None:
    """Odoo 19 imports a module's tests without catching errors: the load fails (CRITICAL,
    exit 255), the module installed and committed before its tests stays installed."""
    _write_tests(addons, "odooops_probe", {"test_broken": "import odooops_no_such_library\n"})
    result = run_odoo("-d", "brokentests", "-i", "odooops_probe", "--test-enable",
                      volumes=_mounts(addons))  # fmt: skip
    assert result.exit_code == 255, result.logs
    assert (
        "CRITICAL brokentests odoo.service.server: Failed to initialize database `brokentests`."
        in result.logs
    )
    assert "ModuleNotFoundError: No module named 'odooops_no_such_library'" in result.logs
    assert "when loading database" not in result.logs
    assert _states(pg, "brokentests")["odooops_probe"] == "installed"


HANGING_TEST = """
import time

from odoo.tests import BaseCase


class TestHang(BaseCase):
    def test_hang(self):
        time.sleep(3600)
"""


def test_hanging_test_hangs_the_run(
    image_refs: dict[str, str],
    pg: Postgres,
    addons: Path,
    start_container: Callable[[DockerContainer], DockerContainer],
) -> None:
    """Odoo puts no timeout on a test: the run waits for it (the caller's timeout ends it)."""
    from testcontainers.core.wait_strategies import LogMessageWaitStrategy

    _write_tests(addons, "odooops_probe", {"test_hang": HANGING_TEST})
    started = re.compile(r"INFO hangs odoo\.addons\.odooops_probe\.tests\.test_hang: Starting")
    odoo = throwaway(
        image_refs["odoo"],
        "odoo",
        command=["odoo", "-d", "hangs", "-i", "odooops_probe", "--test-enable"],
        env={"PASSWORD": DB_PASSWORD},
        volumes=_mounts(addons),
        network=pg.network,
    ).waiting_for(LogMessageWaitStrategy(started).with_startup_timeout(60))
    server = start_container(odoo).get_wrapped_container()
    time.sleep(3)
    server.reload()
    assert server.status == "running"
    assert "when loading database" not in server.logs().decode()
