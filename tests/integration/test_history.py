"""Deployment history and rollback end to end: the real engine, Docker, PostgreSQL, git, the API.

Production (protected: every rollback goes through a change request, approved by a second
person and merged here) deploys v1, gets customer rows, then v2, whose module update migrates
those rows. ``odooops history`` lists both with their health; ``odooops rollback`` pins v1
again and reuses v1's image; ``--with-data`` restores the backup taken before the update, and
the rows are compared one by one with what they were before it.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import jsonschema
import psycopg
import pytest
import yaml
from starlette.testclient import TestClient

from reconciler.api.app import OPENAPI_PATH, create_app
from reconciler.api.auth import AuthConfig, TokenAuthority
from reconciler.api.controlplane import DaemonControlPlane
from reconciler.core.model import EnvKey
from reconciler.core.planner import Kind
from reconciler.engine.status import Health, Sync
from reconciler.gitops.changerequests import ChangeRequests
from reconciler.gitops.gitsource import Author, GitSource
from reconciler.gitops.statewriter import StateWriter
from tests.integration.world import World, git

pytestmark = pytest.mark.integration

BOB = Author("Bob Reviewer", "bob@acme.example")
SCHEMAS = yaml.safe_load(OPENAPI_PATH.read_text())["components"]["schemas"]
V1, V2 = "19.0.1.0.0", "19.0.1.1.0"
CUSTOMERS = 40
MIGRATION = (
    "def migrate(cr, version):\n"
    "    cr.execute(\"UPDATE res_partner SET name = name || ' (v2)', \"\n"
    "               \"email = upper(email) WHERE name LIKE 'Customer %%'\")\n"
)


def manifest(version: str) -> str:
    return repr(
        {
            "name": "ACME Base",
            "version": version,
            "depends": ["contacts"],
            "data": [],
            "license": "LGPL-3",
            "installable": True,
        }
    )


@dataclass
class Api:
    world: World
    client: TestClient
    authority: TokenAuthority
    key: EnvKey

    @property
    def path(self) -> str:
        return f"/v1/environments/{self.key.project}/{self.key.env}"

    def headers(self, *scopes: str) -> dict[str, str]:
        token = self.authority.mint(
            "ann", list(scopes), name="Ann Integrator", email="ann@acme.example"
        )
        return {"Authorization": f"Bearer {token}"}

    def history(self) -> dict[str, Any]:
        answer = self.client.get(f"{self.path}/history", headers=self.headers("env:read"))
        assert answer.status_code == 200, answer.json()
        doc: dict[str, Any] = answer.json()
        for item in doc["items"]:  # as the OpenAPI document says
            jsonschema.validate(item, SCHEMAS["HistoryItem"])
        return doc

    def rollback(self, **body: Any) -> Any:
        answer = self.client.post(
            f"{self.path}/rollback-version",
            json=body,
            headers=self.headers("deploy", "db:restore"),
        )
        if answer.status_code == 202:  # as the OpenAPI document says
            jsonschema.validate(answer.json()["rollback"], SCHEMAS["Rollback"])
            result = dict(SCHEMAS["RollbackResult"])
            result["properties"] = {**result["properties"], "rollback": {"type": "object"}}
            jsonschema.validate(answer.json(), result)
        return answer


def converge(world: World, env: str) -> list[Kind]:
    result = world.reconcile()
    assert result.errors == {}, result.errors
    status = world.engine().status.get(f"{world.project}/{env}")
    assert status is not None
    assert (status.sync, status.health) == (Sync.SYNCED, Health.HEALTHY), status
    return [a.kind for a in result.plan.actions]


def rows(world: World, key: EnvKey) -> list[tuple[Any, ...]]:
    """Every partner, as the admin reads it, in id order: compared one by one."""
    return [
        tuple(r)
        for r in world.query(
            key.database, "SELECT id, name, email, phone FROM res_partner ORDER BY id"
        )
    ]


def execute(world: World, key: EnvKey, statement: str) -> None:
    with psycopg.connect(host="127.0.0.1", user="postgres", dbname=key.database) as conn:
        conn.execute(statement)


def head(world: World) -> str:
    return git("--git-dir", str(world.state_remote), "rev-parse", "main")


def branches(world: World) -> str:
    return git("--git-dir", str(world.state_remote), "branch", "--list")


def merge(world: World, doc: dict[str, Any]) -> str:
    """A second person approves the change request of a protected write, and merges it."""
    assert doc["change_request"], doc
    crs = ChangeRequests(
        GitSource(f"file://{world.state_remote}", world.root / "reviews"),
        secrets=lambda: world.secret_policy,
    )
    crs.approve(doc["change_request_id"], BOB)
    return crs.merge(doc["change_request_id"], BOB)


def running_revision(world: World, key: EnvKey) -> str:
    return str(world.containers()[key.odoo_container].labels["odooops.revision"])


def image_id_of(world: World, key: EnvKey) -> str:
    return str(world.containers()[key.odoo_container].image.id)


@pytest.fixture
def prod(world: World) -> Iterator[tuple[Api, str, str, list[tuple[Any, ...]]]]:
    """Production at v2 after v1: v1's rows, as they were before the update, are returned."""
    key = EnvKey(world.project, "prod")
    world.declare("prod", branch="main", tier="production")
    converge(world, "prod")
    v1 = running_revision(world, key)
    execute(
        world,
        key,
        "INSERT INTO res_partner (name, email, phone) SELECT 'Customer ' || g, "
        "'customer' || g || '@acme.example', '+32 470 ' || g "
        f"FROM generate_series(1, {CUSTOMERS}) g",
    )
    before = rows(world, key)
    v2 = world.app.write(
        {
            "acme_base/__manifest__.py": manifest(V2),
            f"acme_base/migrations/{V2}/post-migrate.py": MIGRATION,
        },
        "acme_base 1.1: partners migrated",
    )
    converge(world, "prod")
    assert running_revision(world, key) == v2
    after = rows(world, key)
    assert len(after) == len(before) and after != before  # the update migrated the rows
    assert any(str(r[1]).endswith(" (v2)") for r in after)
    authority = TokenAuthority(AuthConfig(secret=b"h" * 32))
    writer = StateWriter(
        GitSource(f"file://{world.state_remote}", world.root / "writes"),
        secrets=lambda: world.secret_policy,
    )
    plane = DaemonControlPlane(world.engine(), writer, lambda: None)
    with TestClient(create_app(plane, authority)) as client:
        yield Api(world, client, authority, key), v1, v2, before


def test_history_lists_both_versions_with_their_health_and_what_a_rollback_finds(
    prod: tuple[Api, str, str, list[tuple[Any, ...]]],
) -> None:
    api, v1, v2, _ = prod
    doc = api.history()
    assert doc["current"] == v2
    newest, older = doc["items"]
    assert (newest["revision"], newest["health"], newest["current"]) == (v2, "healthy", True)
    assert (older["revision"], older["health"], older["current"]) == (v1, "healthy", False)
    assert newest["retained"] and older["retained"]
    assert newest["image_id"] != older["image_id"]
    # The backup production takes before an update is the data as v1 left it.
    assert older["backup"] is not None and newest["backup"] is None
    assert not older["kept_data"]  # no proxy here: the update ran in place, nothing kept
    commit = older["commit"]
    assert commit is not None and commit["message"] == "declare prod"
    assert older["state_commit"] == commit["sha"]


def test_a_rollback_without_data_pins_v1_through_a_change_request_and_reuses_its_image(
    prod: tuple[Api, str, str, list[tuple[Any, ...]]],
) -> None:
    api, v1, v2, _ = prod
    world, key = api.world, api.key
    v1_image = api.history()["items"][1]["image_id"]
    migrated = rows(world, key)
    before = head(world)
    answer = api.rollback()
    assert answer.status_code == 202, answer.json()
    doc = answer.json()
    assert doc["rollback"]["to"] == v1 and doc["rollback"]["data"] == "none"
    assert head(world) == before  # protected: on a change-request branch, main untouched
    message = git("--git-dir", str(world.state_remote), "log", "-1", "--format=%B", doc["commit"])
    assert message.startswith(f"revert(deploy): roll back {key} to {v1[:12]}\n")
    assert f"Rollback-From: {v2}" in message and f"Rollback-To: {v1}" in message
    merged = merge(world, doc)
    assert head(world) == merged
    pinned = yaml.safe_load(
        git("--git-dir", str(world.state_remote), "show", f"main:{world.env_path('prod')}")
    )
    assert pinned["revision"] == v1
    kinds = converge(world, "prod")
    assert Kind.BUILD_IMAGE not in kinds  # no build: v1's image was still there
    assert running_revision(world, key) == v1
    assert image_id_of(world, key) == v1_image
    assert rows(world, key) == migrated  # the code alone: the data stays as it is
    items = api.history()["items"]
    assert [(i["revision"], i["health"], i["current"]) for i in items] == [
        (v1, "healthy", True),
        (v2, "rolled-back", False),
        (v1, "healthy", False),
    ]
    assert items[1]["reason"] == f"rolled back to {v1[:12]}"


def test_a_rollback_with_data_restores_the_pre_update_state_row_by_row(
    prod: tuple[Api, str, str, list[tuple[Any, ...]]],
) -> None:
    """Refused without --confirm (the exact command in the remediation), then: the current
    data backed up, the pre-update backup restored once v1 is deployed, the rows exactly as
    they were before the update (a row written after it is gone with it)."""
    api, v1, v2, before = prod
    world, key = api.world, api.key
    execute(world, key, "INSERT INTO res_partner (name) VALUES ('Written after the update')")
    head_before, branches_before = head(world), branches(world)
    refused = api.rollback(with_data=True)
    assert (refused.status_code, refused.json()["error"]) == (409, "confirm_required")
    assert refused.json()["remediation"] == (
        f"odooops rollback {key} --to {v1[:12]} --with-data --confirm"
    )
    assert (head(world), branches(world)) == (head_before, branches_before)
    assert world.engine().ledger.restore_mark(key) is None

    answer = api.rollback(with_data=True, confirm=True)
    assert answer.status_code == 202, answer.json()
    doc = answer.json()
    assert doc["rollback"]["data"] == "backup" and doc["rollback"]["backup"]
    mark = world.engine().ledger.restore_mark(key)
    assert (
        mark is not None and mark["revision"] == v1 and mark["backup"] == doc["rollback"]["backup"]
    )
    merge(world, doc)
    kinds = converge(world, "prod")
    assert Kind.BUILD_IMAGE not in kinds
    assert running_revision(world, key) == v1
    assert rows(world, key) == before  # row by row: the data as v1 left it
    record = world.engine().ledger.database(key)
    assert record is not None and record.revision == v1
    assert world.engine().ledger.restore_mark(key) is None
    backups = world.engine().data.backups(key)
    safety = [b for b in backups if str(b.get("reason", "")).startswith("before rollback")]
    assert len(safety) == 1 and safety[0]["data_revision"] == v2 and safety[0]["status"] == "good"
    assert world.scratch_databases() == set()
    # Converged: the next pass has nothing to do, and restores nothing again.
    assert world.reconcile().plan.actions == ()
    assert rows(world, key) == before


def test_a_rollback_to_a_collected_image_or_without_data_to_bring_back_is_refused(
    world: World,
) -> None:
    """Nothing is committed and nothing marked: the remediation says how to go back anyway."""
    key = EnvKey(world.project, "staging")
    world.declare("staging", branch="release/v1", tier="staging")
    converge(world, "staging")
    v1 = running_revision(world, key)
    v1_tag = str(world.containers()[key.odoo_container].image.tags[0])
    v2 = world.app.write({"acme_base/README.md": "v2\n"}, "v2", branch="release/v1")
    converge(world, "staging")
    assert running_revision(world, key) == v2
    authority = TokenAuthority(AuthConfig(secret=b"h" * 32))
    writer = StateWriter(
        GitSource(f"file://{world.state_remote}", world.root / "writes"),
        secrets=lambda: world.secret_policy,
    )
    plane = DaemonControlPlane(world.engine(), writer, lambda: None)
    with TestClient(create_app(plane, authority)) as client:
        api = Api(world, client, authority, key)
        before = head(world)

        # No update replaced data on a copy, and staging takes no backup before updates.
        nothing = api.rollback(with_data=True, confirm=True)
        assert (nothing.status_code, nothing.json()["error"]) == (409, "nothing_kept")
        assert f"odooops db backups {key}" in nothing.json()["remediation"]
        never = api.rollback(to="0" * 40)
        assert (never.status_code, never.json()["error"]) == (422, "revision_not_deployed")

        world.docker.images.remove(v1_tag)  # as the collector does once it is old enough
        assert not api.history()["items"][1]["retained"]
        collected = api.rollback()
        assert (collected.status_code, collected.json()["error"]) == (409, "image_collected")
        assert collected.json()["remediation"] == f"odooops deploy {key} --revision {v1}"
        assert api.rollback(with_data=True, confirm=True).json()["error"] == "image_collected"
        assert head(world) == before
        assert world.engine().ledger.restore_mark(key) is None
        assert world.engine().ledger.kept(key) is None


def test_a_revision_that_fails_is_in_the_history_and_the_rollback_skips_it(
    world: World,
) -> None:
    """v3's migration fails: the history shows it as a failed attempt that never served (with
    the error), and a rollback from it goes to v2, the last healthy version, still serving."""
    key = EnvKey(world.project, "staging")
    world.declare("staging", branch="release/v1", tier="staging")
    converge(world, "staging")
    v2 = world.app.write({"acme_base/README.md": "v2\n"}, "v2", branch="release/v1")
    converge(world, "staging")
    v3 = world.app.write(
        {
            "acme_base/__manifest__.py": manifest(V2),
            f"acme_base/migrations/{V2}/post-migrate.py": (
                "def migrate(cr, version):\n    raise ValueError('cannot migrate this data')\n"
            ),
        },
        "v3: a migration that fails",
        branch="release/v1",
    )
    result = world.reconcile()
    assert key in result.errors
    assert running_revision(world, key) == v2  # the previous version keeps serving
    authority = TokenAuthority(AuthConfig(secret=b"h" * 32))
    writer = StateWriter(
        GitSource(f"file://{world.state_remote}", world.root / "writes"),
        secrets=lambda: world.secret_policy,
    )
    plane = DaemonControlPlane(world.engine(), writer, lambda: None)
    with TestClient(create_app(plane, authority)) as client:
        api = Api(world, client, authority, key)
        failed, serving, first = api.history()["items"]
        assert (failed["revision"], failed["health"], failed["attempt"]) == (v3, "failed", True)
        assert failed["current"] and not failed["retained"]
        assert failed["reason"].startswith(result.errors[key].code)
        assert (serving["revision"], serving["health"]) == (v2, "healthy")
        assert first["health"] == "healthy"
        answer = api.rollback()
        assert answer.status_code == 202, answer.json()
        assert answer.json()["rollback"]["to"] == v2
        assert not answer.json()["change_request"]  # staging: straight to main
        converge(world, "staging")  # pinned to what serves: converged, v3 tried no more
        assert running_revision(world, key) == v2
        items = api.history()["items"]
        assert [(i["revision"], i["current"]) for i in items[:2]] == [(v3, False), (v2, True)]
