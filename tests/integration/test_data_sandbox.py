"""Uploaded input and a workload's data never run on the daemon's host nor as the admin.

Real Docker, the shared PostgreSQL and the fixture images. Most tests drive the lifecycle
directly on a small sandbox (two environments' roles and databases made by the PostgreSQL
driver, a network, filestore volumes), with no Odoo running; one goes through the engine's
data operations end to end.
"""

from __future__ import annotations

import io
import json
import secrets
import subprocess
import tarfile
import zipfile
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import docker
import psycopg
import pytest
from psycopg import sql

from reconciler.core.errors import OdooOpsError
from reconciler.core.model import DatabaseServer, EnvKey, Tier
from reconciler.data.database import masking, neutralize
from reconciler.data.database.dumpversion import DumpTooNew
from reconciler.data.database.endpoint import Endpoint
from reconciler.data.database.plainsql import DumpForbidden
from reconciler.data.lifecycle import Lifecycle, Sanitising, Site
from reconciler.data.moves import Moves
from reconciler.drivers.docker import (
    NOBODY,
    SOURCE_MOUNT,
    VOLUME_MOUNT,
    DockerDriver,
    database_reach,
)
from reconciler.drivers.postgres import PostgresDriver
from reconciler.drivers.secrets import SecretStore
from reconciler.engine.ledger import Ledger
from tests.integration.containers import run_once, throwaway
from tests.integration.odoo_schema import build
from tests.integration.world import World

pytestmark = pytest.mark.integration

SERVER = DatabaseServer("shared", "127.0.0.1", 5432, "host-gateway", "postgres")
ODOO_UID = "101:101"  # the odoo user of Odoo's image (and of the stand-in)


@dataclass
class Sandbox:
    """Two environments on the shared server, as the engine would have made them."""

    driver: DockerDriver
    lifecycle: Lifecycle
    images: dict[str, str]
    sites: dict[str, Site]
    instance: str
    ledger: Ledger

    def site(self, env: str) -> Site:
        return self.sites[env]

    def admin(self, dbname: str = "postgres") -> psycopg.Connection[tuple[Any, ...]]:
        return psycopg.connect(host="127.0.0.1", user="postgres", dbname=dbname, autocommit=True)

    def superusers(self) -> set[str]:
        names = [site.owner for site in self.sites.values()]
        with self.admin() as conn:
            rows = conn.execute(
                "SELECT rolname FROM pg_roles WHERE rolname = ANY(%s) AND rolsuper", [names]
            ).fetchall()
        return {str(r[0]) for r in rows}

    def tables(self, env: str) -> set[str]:
        with self.site(env).login.connect() as conn:
            rows = conn.execute(
                "SELECT tablename FROM pg_tables WHERE schemaname = 'public'"
            ).fetchall()
        return {str(r[0]) for r in rows}

    def scratch_left(self) -> list[str]:
        """Databases of the sandbox's roles besides the live ones (a scratch or set-aside one
        left behind), and open journal entries."""
        owners = [site.owner for site in self.sites.values()]
        live = [site.database for site in self.sites.values()]
        with self.admin() as conn:
            rows = conn.execute(
                "SELECT d.datname FROM pg_database d JOIN pg_roles r ON r.oid = d.datdba "
                "WHERE r.rolname = ANY(%s) AND NOT d.datname = ANY(%s)",
                [owners, live],
            ).fetchall()
        return [str(r[0]) for r in rows] + [f"journal {e.id}" for e in self.ledger.entries()]


@pytest.fixture
def sandbox(
    docker_engine: docker.DockerClient,
    images: dict[str, str],
    postgres_server: None,
    tmp_path: Path,
) -> Iterator[Sandbox]:
    instance, project = "t" + secrets.token_hex(4), "p" + secrets.token_hex(3)
    driver = DockerDriver(instance)
    store = SecretStore(tmp_path / "secrets.enc", secrets.token_bytes(32))
    pg = PostgresDriver(SERVER, instance, store)
    ledger = Ledger(tmp_path / "ledger.db")
    moves = Moves(
        driver,
        lambda: ledger,
        lambda key, initialised, revision, modules: None,
        lambda key: "sandbox",
    )
    sites: dict[str, Site] = {}
    try:
        for env in ("prod", "staging"):
            key = EnvKey(project, env)
            password = secrets.token_urlsafe(24)
            pg.ensure_role(key, password)
            pg.create_database(key)
            driver.create_network(key, protected=False)
            driver.create_volume(key, key.filestore_volume, protected=False)
            admin = Endpoint.of_server(SERVER, key.database, store)
            sites[env] = Site(
                key=key,
                endpoint=admin,
                login=admin.as_login(key.role, password),
                reach=database_reach(key, SERVER),
                volume=key.filestore_volume,
                image=images["ODOOOPS_FIXTURE_POSTGRES_IMAGE"],
                odoo_image=images["ODOOOPS_FIXTURE_ODOO_IMAGE"],
                tier=Tier.STAGING,
                protected=False,
                instance=instance,
            )
        yield Sandbox(driver, Lifecycle(driver, moves), images, sites, instance, ledger)
    finally:
        label = {"label": f"odooops.instance={instance}"}
        for c in docker_engine.containers.list(all=True, filters=label):
            c.remove(force=True, v=True)
        for v in docker_engine.volumes.list(filters=label):
            v.remove(force=True)
        for n in docker_engine.networks.list(filters=label):
            n.remove()
        with psycopg.connect(host="127.0.0.1", user="postgres", autocommit=True) as conn:
            owners = [site.owner for site in sites.values()]
            owned = conn.execute(
                "SELECT d.datname FROM pg_database d JOIN pg_roles r ON r.oid = d.datdba "
                "WHERE r.rolname = ANY(%s)",
                [owners],
            ).fetchall()
            for (name,) in owned:
                conn.execute(
                    sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(sql.Identifier(name))
                )
            for owner in owners:
                conn.execute(sql.SQL("DROP ROLE IF EXISTS {}").format(sql.Identifier(owner)))
        driver.close()


def odoo_data(site: Site) -> None:
    """The stand-in's Odoo schema with people and live settings, created as the env's role."""
    with site.login.connect() as conn:
        build(conn, ["contacts"])
        conn.execute(
            "INSERT INTO res_partner (name, email) SELECT 'Person ' || g, 'p' || g ||"
            " '@real.example.com' FROM generate_series(1, 50) g"
        )
        conn.execute("UPDATE ir_cron SET active = true")


def sanitising() -> Sanitising:
    catcher = neutralize.MailTarget("odooops-mail", 2525, "catcher", "secret")
    return Sanitising(mail=catcher, mask=True, rules=masking.load_rules(None), salt="pepper")


# -------------------------------------------------------------------------------- roles
def test_an_environment_role_has_no_power_and_no_membership_even_one_granted_by_hand(
    sandbox: Sandbox,
) -> None:
    """Creating (or re-keying) the role strips what would let it become another role."""
    staging = sandbox.site("staging")
    with sandbox.admin() as conn:
        conn.execute(
            sql.SQL("GRANT pg_read_server_files, pg_execute_server_program TO {}").format(
                sql.Identifier(staging.owner)
            )
        )
        conn.execute(sql.SQL("ALTER ROLE {} CREATEDB").format(sql.Identifier(staging.owner)))
    store = SecretStore(sandbox.ledger.path.with_name("roles.enc"), secrets.token_bytes(32))
    PostgresDriver(SERVER, sandbox.instance, store).ensure_role(
        staging.key, staging.login.password or ""
    )
    with sandbox.admin() as conn:
        row = conn.execute(
            "SELECT rolsuper, rolcreaterole, rolcreatedb, rolreplication, rolbypassrls,"
            " (SELECT count(*) FROM pg_auth_members WHERE member = r.oid)"
            " FROM pg_roles r WHERE rolname = %s",
            [staging.owner],
        ).fetchone()
    assert row == (False, False, False, False, False, 0)


# ------------------------------------------------------------------------------ imports
BAD_DUMPS = {
    "shell": b"CREATE TABLE planted (id int);\n\\! touch {pwned}\n",
    "role": b"CREATE TABLE planted (id int);\nSET ROLE postgres;\nALTER ROLE {role} SUPERUSER;\n",
    "program": b"CREATE TABLE planted (id int);\nCOPY planted TO PROGRAM 'touch {pwned}';\n",
}


@pytest.mark.parametrize("kind", sorted(BAD_DUMPS))
def test_a_plain_sql_import_that_runs_a_command_or_changes_role_is_refused(
    sandbox: Sandbox, tmp_path: Path, kind: str
) -> None:
    """Refused before anything is created: no file on the host, no table, no scratch db."""
    staging = sandbox.site("staging")
    pwned = Path(f"/tmp/odooops-pwned-{secrets.token_hex(4)}")
    body = BAD_DUMPS[kind].replace(b"{pwned}", str(pwned).encode())
    dump = tmp_path / "dump.sql"
    dump.write_bytes(b"SET client_encoding = 'UTF8';\n" + body.replace(b"{role}", b"x"))
    with pytest.raises(DumpForbidden) as refused:
        sandbox.lifecycle.check_dump(dump, staging)
    assert refused.value.code == "dump_forbidden" and "[rule " in refused.value.message
    assert "line 3" in refused.value.message
    # Even past the check (a caller that skipped it), the load refuses the same line.
    with pytest.raises(DumpForbidden):
        sandbox.lifecycle.import_dump(dump, staging, None)
    assert not pwned.exists()
    assert "planted" not in sandbox.tables("staging")
    assert sandbox.scratch_left() == [] and sandbox.superusers() == set()


def pg_dump_plain(site: Site) -> bytes:
    """``pg_dump -Fp`` of the host, a current one: it writes pg_dump's \\restrict pair."""
    done = subprocess.run(
        ["pg_dump", "--format=plain", "--no-owner", "--no-acl"],
        env={"PATH": "/usr/bin:/bin", **site.login.env()},
        capture_output=True,
        check=True,
    )
    return done.stdout


def server_version(sandbox: Sandbox) -> str:
    with sandbox.admin() as conn:
        row = conn.execute("SHOW server_version").fetchone()
    assert row is not None
    return str(row[0])


NEWER_SQL = b"""--
-- PostgreSQL database dump
--

\\restrict PtbcRj0bLqzNj1SlsjuMwLTZiSb0BYb6JX8Ir6nZ1IclPDDZfxoqQbNvdhj8aK4

-- Dumped from database version 18.0 (Debian 18.0-1.pgdg13+3)
-- Dumped by pg_dump version 18.0 (Debian 18.0-1.pgdg13+3)

SET statement_timeout = 0;
CREATE TABLE public.planted (id integer);

--
-- PostgreSQL database dump complete
--

\\unrestrict PtbcRj0bLqzNj1SlsjuMwLTZiSb0BYb6JX8Ir6nZ1IclPDDZfxoqQbNvdhj8aK4

"""


def test_a_plain_dump_with_pg_dump_s_restrict_pair_imports(
    sandbox: Sandbox, tmp_path: Path
) -> None:
    """What a current pg_dump writes loads: the pair is checked and dropped (forwarded,
    psql would refuse the dump's key behind the loader's own \\restrict)."""
    prod, staging = sandbox.site("prod"), sandbox.site("staging")
    odoo_data(prod)
    plain = pg_dump_plain(prod)
    assert plain.count(b"\n\\restrict ") == 1 and plain.count(b"\n\\unrestrict ") == 1
    assert b"-- Dumped from database version " in plain
    dump = tmp_path / "prod.sql"
    dump.write_bytes(plain)
    assert sandbox.lifecycle.check_dump(dump, staging) == "sql"
    report = sandbox.lifecycle.import_dump(dump, staging, None)
    assert report["format"] == "sql"
    people = "SELECT count(*) FROM res_partner WHERE email LIKE '%@real.example.com'"
    with staging.login.connect() as conn:
        row = conn.execute(people).fetchone()
    assert row == (50,)
    assert sandbox.scratch_left() == []


def test_a_plain_dump_from_a_newer_server_is_refused_and_the_database_is_untouched(
    sandbox: Sandbox, tmp_path: Path
) -> None:
    """Its header says PostgreSQL 18, the server runs 15: dump_too_new, naming both, before
    anything is created; a caller that skipped the check meets it again before psql runs."""
    staging = sandbox.site("staging")
    with staging.login.connect() as conn:
        conn.execute("CREATE TABLE kept (id integer)")
    dump = tmp_path / "newer.sql"
    dump.write_bytes(NEWER_SQL)
    with pytest.raises(DumpTooNew) as refused:
        sandbox.lifecycle.check_dump(dump, staging)
    error = refused.value
    assert error.code == "dump_too_new"
    assert "newer.sql was dumped from PostgreSQL 18.0 (Debian 18.0-1.pgdg13+3)" in error.message
    assert f"PostgreSQL {server_version(sandbox)}" in error.message
    assert "PostgreSQL 18 (or newer) server" in error.remediation
    with pytest.raises(DumpTooNew):
        sandbox.lifecycle.import_dump(dump, staging, None)
    assert sandbox.tables("staging") == {"kept"} and sandbox.scratch_left() == []


def test_a_custom_format_dump_or_odoo_zip_from_a_newer_server_is_refused(
    sandbox: Sandbox, tmp_path: Path
) -> None:
    """The archive's own header, and an Odoo zip's manifest.json, say where it came from."""
    prod, staging = sandbox.site("prod"), sandbox.site("staging")
    with prod.login.connect() as conn:
        conn.execute("CREATE TABLE planted (id integer)")
    archive = pg_dump_custom(prod)
    major = server_version(sandbox).split(".")[0].encode()
    head = archive[:200].replace(major + b".", b"18.")
    assert head != archive[:200] and len(head) == 200, "same-length version strings"
    forged = tmp_path / "newer.dump"
    forged.write_bytes(head + archive[200:])
    with pytest.raises(DumpTooNew) as refused:
        sandbox.lifecycle.check_dump(forged, staging)
    assert "newer.dump was dumped from PostgreSQL 18." in refused.value.message
    with pytest.raises(DumpTooNew):
        sandbox.lifecycle.import_dump(forged, staging, None)
    upload = tmp_path / "newer.zip"
    with zipfile.ZipFile(upload, "w") as zipped:
        zipped.writestr("dump.sql", b"CREATE TABLE planted (id integer);\n")  # no header
        zipped.writestr(
            "manifest.json", json.dumps({"odoo_dump": "1", "major_version": "19.0",
                                         "pg_version": "18.0"})
        )  # fmt: skip
    with pytest.raises(DumpTooNew) as refused:
        sandbox.lifecycle.check_dump(upload, staging)
    assert "(as its manifest.json says)" in refused.value.message
    assert sandbox.tables("staging") == set() and sandbox.scratch_left() == []


def test_a_meta_command_that_got_past_the_check_runs_nowhere_but_the_sandbox(
    sandbox: Sandbox,
) -> None:
    """The boundary itself: psql in the tool container runs a shell as nobody, on a read-only
    root, with no volume; the host never sees it. Behind \\restrict, psql refuses it."""
    staging = sandbox.site("staging")
    pwned = f"/tmp/odooops-pwned-{secrets.token_hex(4)}"
    unchecked = f"\\! id; touch {pwned} || echo refused-write\nSELECT current_user;\n"

    def psql(script: str) -> tuple[int, str]:
        return sandbox.driver.run_database_tool(
            staging.image,
            staging.reach,
            user=staging.owner,
            password=staging.login.password or "",
            dbname=staging.database,
            command=["psql", "-X", "-At", "-v", "ON_ERROR_STOP=1"],
            stdin=[script.encode()],
        )

    code, out = psql(unchecked)
    assert code == 0, out
    assert "uid=65534(nobody)" in out and "refused-write" in out and staging.owner in out
    assert not Path(pwned).exists()
    code, out = psql(f"\\restrict k3y\n{unchecked}")
    assert code != 0 and "restricted" in out and "uid=" not in out


def test_the_database_tool_container_is_confined_to_the_environment_network(
    sandbox: Sandbox,
) -> None:
    """As Docker ran it: nobody, no capability, read-only root, no volume, the env's network,
    and the password in no part of its configuration."""
    staging = sandbox.site("staging")
    password = staging.login.password or ""
    seen: list[dict[str, Any]] = []

    def stdin() -> Iterator[bytes]:
        """Read while the tool runs: the one container of this sandbox's instance."""
        found = sandbox.driver.client.containers.list(
            filters={"label": [f"odooops.instance={sandbox.instance}"]}
        )
        seen.extend(c.attrs for c in found)
        yield b"SELECT current_user, session_user, pg_has_role('postgres', 'MEMBER');\n"
        yield b"SET ROLE postgres;\n"

    code, out = sandbox.driver.run_database_tool(
        staging.image,
        staging.reach,
        user=staging.owner,
        password=password,
        dbname=staging.database,
        command=["psql", "-X", "-At", "-v", "ON_ERROR_STOP=1"],
        stdin=stdin(),
    )
    assert code != 0 and f"{staging.owner}|{staging.owner}|f" in out
    assert "permission denied to set role" in out  # the role can never become another
    [attrs] = seen
    config, host = attrs["Config"], attrs["HostConfig"]
    assert config["User"] == NOBODY and config["Image"] == staging.image
    assert host["CapDrop"] == ["ALL"] and not host.get("CapAdd")
    assert host["ReadonlyRootfs"] is True and "no-new-privileges" in host["SecurityOpt"]
    assert attrs["Mounts"] == [] and not host.get("Binds")
    assert host["NetworkMode"] == staging.key.network
    assert list(attrs["NetworkSettings"]["Networks"]) == [staging.key.network]
    assert password not in json.dumps(attrs)


def pg_dump_custom(site: Site) -> bytes:
    """``pg_dump -Fc`` through a pipe, so the archive carries no data offsets."""
    done = subprocess.run(
        ["pg_dump", "--format=custom", "--no-owner", "--no-acl"],
        env={"PATH": "/usr/bin:/bin", **site.login.env()},
        capture_output=True,
        check=True,
    )
    return done.stdout


def with_statement_before(archive: bytes, definition: bytes, statement: bytes) -> bytes:
    """The archive with ``statement`` run just before a table's CREATE: what a forged
    custom-format dump can carry in its table of contents (a string: 4-byte length first)."""
    at = archive.index(definition)
    header = b"\x00" + len(definition).to_bytes(4, "little")
    assert archive[at - 5 : at] == header, "the definition is one length-prefixed string"
    forged = statement + definition
    return (
        archive[: at - 5]
        + b"\x00"
        + len(forged).to_bytes(4, "little")
        + forged
        + (archive[at + len(definition) :])
    )


def test_a_custom_format_dump_whose_toc_sets_role_gains_nothing(
    sandbox: Sandbox, tmp_path: Path
) -> None:
    """pg_restore runs as the environment's role: SET ROLE in the archive fails, the restore
    stops there and the target keeps its data."""
    prod, staging = sandbox.site("prod"), sandbox.site("staging")
    with prod.login.connect() as conn:
        conn.execute("CREATE TABLE planted (id integer)")
    with staging.login.connect() as conn:
        conn.execute("CREATE TABLE kept (id integer)")
    archive = with_statement_before(
        pg_dump_custom(prod),
        b"CREATE TABLE public.planted (\n    id integer\n);\n",
        f"SET ROLE postgres; ALTER ROLE {prod.owner} SUPERUSER;\n".encode(),
    )
    dump = tmp_path / "forged.dump"
    dump.write_bytes(archive)
    listed = subprocess.run(["pg_restore", "--list", str(dump)], capture_output=True)
    assert listed.returncode == 0, "a well-formed archive: only its content is hostile"
    with pytest.raises(OdooOpsError) as failed:
        sandbox.lifecycle.import_dump(dump, staging, None)
    assert failed.value.code == "restore_failed"
    assert "permission denied to set role" in failed.value.message
    assert sandbox.superusers() == set()
    assert sandbox.tables("staging") == {"kept"} and sandbox.scratch_left() == []


# ------------------------------------------------------------------------------- copies
def test_a_trigger_in_copied_data_runs_as_the_target_role_never_the_admin(
    sandbox: Sandbox,
) -> None:
    """A trigger production's code planted fires when neutralisation and masking update
    rows of the copy: it runs as staging's role, so its ALTER ROLE ... SUPERUSER fails."""
    prod, staging = sandbox.site("prod"), sandbox.site("staging")
    odoo_data(prod)
    with prod.login.connect() as conn:
        conn.execute("CREATE TABLE probe (who text, session text, escalated boolean)")
        conn.execute(
            sql.SQL(
                """
            CREATE FUNCTION escalate() RETURNS trigger LANGUAGE plpgsql AS $f$
            BEGIN
                BEGIN
                    EXECUTE format('ALTER ROLE %I SUPERUSER', {role});
                    INSERT INTO probe VALUES (current_user, session_user, true);
                EXCEPTION WHEN insufficient_privilege THEN
                    INSERT INTO probe VALUES (current_user, session_user, false);
                END;
                RETURN NEW;
            END $f$"""
            ).format(role=sql.Literal(prod.owner))
        )
        for table in ("ir_cron", "res_partner"):
            conn.execute(
                sql.SQL(
                    "CREATE TRIGGER escalate BEFORE UPDATE ON {} FOR EACH ROW "
                    "EXECUTE FUNCTION escalate()"
                ).format(sql.Identifier(table))
            )
    sandbox.driver.filestore_prime(prod.odoo_image, prod.volume)
    report = sandbox.lifecycle.clone(prod, staging, sanitising(), max_quiesce_seconds=60, jobs=2)
    assert report["strategy"] == "template" and report["masked_rows"] > 0
    with staging.login.connect() as conn:
        fired = conn.execute("SELECT DISTINCT who, session, escalated FROM probe").fetchall()
    assert fired == [(staging.owner, staging.owner, False)]
    assert sandbox.superusers() == set()


def test_a_streamed_copy_reads_and_writes_as_the_two_roles(sandbox: Sandbox) -> None:
    """Across servers (here forced) the copy's sessions are the roles' own, none the admin's."""
    prod, staging = sandbox.site("prod"), sandbox.site("staging")
    odoo_data(prod)
    sandbox.driver.filestore_prime(prod.odoo_image, prod.volume)
    report = sandbox.lifecycle.clone(prod, staging, sanitising(), max_quiesce_seconds=0, jobs=2)
    assert report["strategy"] == "stream"
    with staging.login.connect() as conn:
        owners = conn.execute(
            "SELECT DISTINCT tableowner FROM pg_tables WHERE schemaname = 'public'"
        ).fetchall()
        people = conn.execute("SELECT count(*) FROM res_partner WHERE email LIKE '%real%'")
        assert owners == [(staging.owner,)] and people.fetchone() == (0,)


# ---------------------------------------------------------------------------- filestore
def in_volume(sandbox: Sandbox, volume: str, script: str) -> str:
    """Look at (or plant into) a volume as root, from outside the code under test."""
    container = throwaway(
        sandbox.images["ODOOOPS_FIXTURE_POSTGRES_IMAGE"],
        "volume-look",
        volumes={volume: {"bind": "/v", "mode": "rw"}},
        entrypoint=["/bin/sh", "-c", script],
        user="0",
        network_mode="none",
    )
    return run_once(container).stdout.decode()


def test_filestore_helpers_run_as_the_owner_confined_with_only_their_volumes(
    sandbox: Sandbox,
) -> None:
    """As the kernel sees the helper: Odoo's uid, no capability, no new privileges, no
    network, a read-only root, its volume read-write and the source read-only; and as Docker
    holds the never-started container its archive API goes through."""
    prod, staging = sandbox.site("prod"), sandbox.site("staging")
    for site in (prod, staging):
        sandbox.driver.filestore_prime(site.odoo_image, site.volume)
    owner = sandbox.driver._owner(staging.image, staging.volume)
    assert owner == ODOO_UID, "the volume got the owner of Odoo's /var/lib/odoo"
    script = (
        'echo "id=$(id -u):$(id -g)"; grep -E "^(CapEff|CapPrm|NoNewPrivs)" /proc/self/status; '
        "echo net=$(ls /sys/class/net | tr '\\n' ,); "
        "touch /x 2>/dev/null && echo root-writable; "
        f"touch {SOURCE_MOUNT}/x 2>/dev/null && echo source-writable; "
        f"touch {VOLUME_MOUNT}/x && echo volume-writable; rm -f {VOLUME_MOUNT}/x; "
        "ls /odooops; test -e /var/run/docker.sock && echo docker-socket; "
        "grep -c ' /odooops/' /proc/self/mountinfo"
    )
    out = sandbox.driver._helper(
        staging.image, script, {}, staging.volume, owner, source=prod.volume
    )
    lines = out.split()
    assert f"id={ODOO_UID}" in lines
    assert "0000000000000000" in out and out.count("0000000000000000") == 2  # CapEff, CapPrm
    assert "NoNewPrivs:\t1" in out
    assert "net=lo," in lines
    assert "volume-writable" in lines
    assert not {"root-writable", "source-writable", "docker-socket"} & set(lines)
    assert lines[-1] == "2", "two mounts: the environment's volume and the source"
    # Docker's archive API reads and writes a volume through a container never started.
    parked = sandbox.driver._parked(staging.image, staging.volume, "rw")
    attrs = parked.attrs
    parked.remove(force=True, v=True)
    assert attrs["State"]["Status"] == "created" and attrs["Config"]["User"] == NOBODY
    assert attrs["HostConfig"]["CapDrop"] == ["ALL"] and attrs["HostConfig"]["ReadonlyRootfs"]
    assert attrs["HostConfig"]["NetworkMode"] == "none"
    mounts = [(m["Name"], m["Destination"]) for m in attrs["Mounts"]]
    assert mounts == [(staging.volume, VOLUME_MOUNT)]


def test_a_filestore_copy_is_a_copy_of_plain_files_owned_by_odoo(sandbox: Sandbox) -> None:
    """Content and names as in the source, new inodes, Odoo's owner; a link the source's
    workload planted (to another volume, as a helper of old would have seen it) is dropped."""
    prod, staging = sandbox.site("prod"), sandbox.site("staging")
    for site in (prod, staging):
        sandbox.driver.filestore_prime(site.odoo_image, site.volume)
    archive = io.BytesIO()
    with tarfile.open(fileobj=archive, mode="w") as tar:
        for name, data in (("db.staged", None), ("db.staged/ab", None), ("db.staged/ab/1", b"x")):
            info = tarfile.TarInfo(name)
            if data is None:
                info.type, info.mode = tarfile.DIRTYPE, 0o755
                tar.addfile(info)
            else:
                info.size, info.mode, info.uid = len(data), 0o4755, 0
                tar.addfile(info, io.BytesIO(data))
    sandbox.driver.filestore_stage(prod.image, prod.volume, "db.staged", [archive.getvalue()])
    sandbox.driver.filestore_swap(prod.image, prod.volume, "db.staged", "db", "db.old")
    in_volume(
        sandbox,
        prod.volume,
        "ln -s /volumes /v/filestore/db/ab/escape; mkfifo /v/filestore/db/ab/fifo",
    )
    files = sandbox.driver.filestore_copy(staging.image, prod.volume, "db", staging.volume, "dst")
    assert files == 1
    listing = in_volume(
        sandbox, staging.volume, "cd /v/filestore && find . -printf '%p %U:%G %m %i\\n'"
    )
    rows = {line.split()[0]: line.split()[1:] for line in listing.splitlines()}
    assert set(rows) == {".", "./dst", "./dst/ab", "./dst/ab/1"}
    assert {owner for owner, *_ in rows.values()} == {ODOO_UID}
    assert rows["./dst/ab/1"][1] == "755", "no set-uid bit came in"
    source = in_volume(sandbox, prod.volume, "stat -c %i /v/filestore/db/ab/1").strip()
    assert rows["./dst/ab/1"][2] != source, "a copy, not a hard link"


# ------------------------------------------------------------------------- end to end
def test_an_import_refused_through_the_api_path_changes_nothing_not_even_a_backup(
    world: World, tmp_path: Path
) -> None:
    """odooops db import with a shell escape in an Odoo zip's dump.sql: refused before the
    safety backup, the scratch database or a container exists; the environment is as it was."""
    world.declare("staging", branch="release/v1")
    result = world.reconcile()
    assert result.errors == {}, result.errors
    key = EnvKey(world.project, "staging")
    data = world.engine().data
    backups = data.backups(key)
    database = f"{world.project}__staging"
    before = world.query(database, "SELECT count(*) FROM res_partner")
    pwned = Path(f"/tmp/odooops-pwned-{secrets.token_hex(4)}")
    upload = tmp_path / "upload.zip"
    with zipfile.ZipFile(upload, "w") as archive:
        archive.writestr("dump.sql", f"SELECT 1;\n\\! touch {pwned}\n")
    with pytest.raises(DumpForbidden) as refused:
        data.import_dump(key, upload, confirm=True)
    assert "dump.sql in upload.zip, line 2" in refused.value.message
    assert "[rule meta_command]" in refused.value.message
    assert not pwned.exists()
    assert data.backups(key) == backups
    assert world.query(database, "SELECT count(*) FROM res_partner") == before
    # A dump from a newer PostgreSQL than the server: refused as early, as harmlessly.
    newer = tmp_path / "newer.sql"
    newer.write_bytes(NEWER_SQL)
    with pytest.raises(DumpTooNew) as too_new:
        data.import_dump(key, newer, confirm=True)
    assert too_new.value.code == "dump_too_new" and "PostgreSQL 18.0" in too_new.value.message
    assert data.backups(key) == backups
    assert world.query(database, "SELECT count(*) FROM res_partner") == before
    tables = "SELECT count(*) FROM pg_tables WHERE tablename = 'planted'"
    assert world.query(database, tables) == [(0,)]
