"""The engine's steps against in-memory drivers: what each step leaves in the world.

Each test states a situation (what the runtime, the server and the ledger hold), plans with the
real planner from the real observation join, applies with the real steps, and reads the world.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path

import pytest

from reconciler.core.errors import OdooOpsError
from reconciler.core.ingress import Maintenance
from reconciler.core.model import Desired, DesiredEnvironment, EnvKey, Tier
from reconciler.core.modules import ModuleSnapshot
from reconciler.core.planner import Kind, plan_environment
from reconciler.drivers.memory import MemoryDatabases, MemoryRuntime
from reconciler.drivers.protocols import DatabaseAdmin
from reconciler.engine.engine import observed_environment, superseded_runs
from reconciler.engine.ledger import DatabaseRecord, DbState, Ledger
from reconciler.engine.steps import (
    ClaimedElsewhere,
    DatabaseNotOwned,
    DestructiveRefused,
    Interrupted,
    ModulesNotInstalled,
    OutOfMemory,
    PartiallyUpdated,
    StepResult,
    Steps,
    Superseded,
)
from tests.factories import desired


@dataclass
class DataPlane:
    """The data plane's side of a reconcile, as state: what was neutralised, backed up, copied."""

    runtime: MemoryRuntime
    neutralized: list[EnvKey] = field(default_factory=list)
    backups: list[tuple[EnvKey, str]] = field(default_factory=list)
    copies: list[EnvKey] = field(default_factory=list)
    partial: set[str] = field(default_factory=set)  # databases an update left half-way
    admin_logins: list[EnvKey] = field(default_factory=list)

    updated_on_copy: list[EnvKey] = field(default_factory=list)
    rollbacks: dict[EnvKey, str] = field(default_factory=dict)  # requested: to this revision
    rolled_back: list[tuple[EnvKey, str]] = field(default_factory=list)
    rollback_fails: bool = False
    restores: dict[EnvKey, str] = field(default_factory=dict)  # rollback --with-data asked
    restored: list[tuple[EnvKey, str]] = field(default_factory=list)
    ledger: Ledger | None = None

    def rollback_requested(self, key: EnvKey, revision: str) -> bool:
        return self.rollbacks.get(key) == revision

    def restore_requested(self, key: EnvKey, revision: str, data_revision: str) -> bool:
        return self.restores.get(key) == revision

    def restore_for_rollback(self, want: DesiredEnvironment, data_revision, modules_at) -> object:  # type: ignore[no-untyped-def]
        """As the real restore does: the swap records the pinned revision and module record."""
        assert self.runtime.containers[want.key.odoo_container].state == "exited"
        assert self.ledger is not None
        self.restored.append((want.key, data_revision))
        del self.restores[want.key]
        self.ledger.put_modules(want.key, modules_at)
        self.ledger.update_database(want.key, revision=want.revision)
        return {}

    def roll_back_data(self, want: DesiredEnvironment, current, fallback) -> object:  # type: ignore[no-untyped-def]
        """As the real swap does: the ledger records the data put back (its revision, and
        the module record it was kept with, here the ``fallback``)."""
        if self.rollback_fails:
            raise OdooOpsError("the copy of the kept data failed", code="copy_failed")
        assert self.runtime.containers[want.key.odoo_container].state == "exited"
        assert self.ledger is not None
        self.rolled_back.append((want.key, current[0]))
        del self.rollbacks[want.key]
        self.ledger.put_modules(want.key, fallback)
        self.ledger.update_database(want.key, revision=want.revision)
        return {}

    def module_snapshot(
        self, want: DesiredEnvironment, database: str | None = None
    ) -> ModuleSnapshot:
        """What the in-memory Odoo runs left in the module table."""
        name = database or want.key.database
        states = self.runtime.modules.get(name, {})
        return ModuleSnapshot(dict(states), name in self.partial)

    def update_on_copy(
        self, want: DesiredEnvironment, update, previous=None, result=None
    ) -> object:  # type: ignore[no-untyped-def]
        """The copy is a second module table; it replaces the live one only if ``update``
        returns, and is gone either way."""
        live = want.key.database
        scratch = f"odooops_tmp_{live}"
        self.runtime.modules[scratch] = dict(self.runtime.modules.get(live, {}))
        try:
            update(scratch)
            self.runtime.modules[live] = self.runtime.modules[scratch]
            self.updated_on_copy.append(want.key)
        finally:
            del self.runtime.modules[scratch]
        return {}

    def ensure_neutralized(self, want: DesiredEnvironment) -> None:
        if want.spec.tier is not Tier.PRODUCTION:
            self.neutralized.append(want.key)

    def copy_for_init(self, want: DesiredEnvironment) -> object:
        """A copy carries its source's module table (an initialised Odoo: base installed)."""
        self.copies.append(want.key)
        self.runtime.modules[want.key.database] = {"base": "installed"}
        return {}

    def backup_before(
        self, want: DesiredEnvironment, reason: str, data_revision: str = ""
    ) -> object:
        self.backups.append((want.key, reason))
        return {}

    def prepare_admin_login(self, want: DesiredEnvironment) -> None:
        pass  # the hash the real one computes ahead is no state of its own

    def set_admin_login(self, want: DesiredEnvironment) -> None:
        self.admin_logins.append(want.key)


class World:
    def __init__(self, tmp_path: Path) -> None:
        self.runtime = MemoryRuntime()
        self.server = MemoryDatabases()
        self.dedicated: dict[EnvKey, MemoryDatabases] = {}
        self.ledger = Ledger(tmp_path / "ledger.db")
        self.passwords: dict[EnvKey, str] = {}
        self.data = DataPlane(self.runtime, ledger=self.ledger)
        self.final_backups: list[EnvKey] = []
        self.cancel = threading.Event()
        self.steps = Steps(
            runtime=self.runtime,
            ledger=self.ledger,
            admin=self.admin,
            admin_named=self.admin_named,
            password=lambda key: self.passwords.setdefault(key, f"pw-{key.env}"),
            data=self.data,
            context=lambda want, which: b"",
            final_backup=lambda key, record: self.final_backups.append(key),
            health_timeout=5,
            cancel=self.cancel,
        )

    def admin(self, key: EnvKey, server: object) -> DatabaseAdmin:
        if server is None:
            return self.dedicated.setdefault(key, MemoryDatabases("dedicated"))
        return self.server

    def admin_named(self, key: EnvKey, server: str) -> DatabaseAdmin | None:
        return self.admin(key, None if server == "dedicated" else server)

    def converge(
        self, *wants: DesiredEnvironment, gone: tuple[EnvKey, ...] = ()
    ) -> list[StepResult]:
        """Plan and apply every environment once (in-memory: Odoo's -i makes its tables)."""
        d = Desired("c" * 40, {w.key: w for w in wants}, allow_empty=True)
        results: list[StepResult] = []
        for key in [w.key for w in wants] + list(gone):
            want = d.environments.get(key)
            actions, _ = plan_environment(d, key, self.observe(key, want), self.runtime.images)
            for action in actions:
                results.append(self.steps.run(want, action))
                if action.kind is Kind.INIT_DATABASE and want is not None:
                    self.admin(key, want.server)
                    self.server.odoo.add(key.database)
        return results

    def observe(self, key: EnvKey, want: DesiredEnvironment | None):
        listing = self.runtime.observe(key)
        record = self.ledger.database(key)
        names = {key.database}
        exists = {"shared": self.server.existing(sorted(names))}
        server = want.server.name if want is not None and want.server is not None else None
        return observed_environment(key, listing, record, server, exists, frozenset({"shared"}))


@pytest.fixture
def world(tmp_path: Path) -> World:
    return World(tmp_path)


def test_a_new_environment_gets_everything_and_the_ledger_records_each_step(world: World) -> None:
    want = desired("qa", Tier.STAGING)
    world.converge(want)
    record = world.ledger.database(want.key)
    assert record is not None and record.state is DbState.INITIALISED
    assert record.revision == want.revision
    assert world.server.databases[want.key.database] == want.key.role
    assert world.server.roles[want.key.role] == "pw-qa"
    assert world.runtime.containers[want.key.odoo_container].state == "running"
    assert world.data.neutralized == [want.key]
    assert world.converge(want) == []  # converged: nothing more to do


def test_a_new_database_gets_its_admin_password_once_right_after_its_initialisation(
    world: World,
) -> None:
    want = desired("qa", Tier.STAGING)
    world.converge(want)
    world.converge(want)
    assert world.data.admin_logins == [want.key]


def test_a_failed_initialisation_sets_no_admin_password_and_is_redone_with_it(
    world: World,
) -> None:
    want = desired("qa", Tier.STAGING)
    world.runtime.exit_codes["-i"] = 1
    with pytest.raises(OdooOpsError) as failed:
        world.converge(want)
    assert failed.value.code == "deploy_failed"
    assert world.data.admin_logins == []
    world.runtime.exit_codes.clear()
    world.converge(want)
    assert world.data.admin_logins == [want.key]


def test_a_declared_copy_gets_its_admin_password_with_its_data_not_from_the_init_step(
    world: World,
) -> None:
    """The copy's own password is set on the sanitised copy before the swap (the data plane's
    ``_prepare``); the init step only sets it on a database it made with ``-i``."""
    want = desired("qa", Tier.STAGING, db_source="prod")
    world.converge(want)
    assert world.data.copies == [want.key]
    assert world.data.admin_logins == []


def test_a_crash_after_create_database_makes_the_next_run_recreate_it(world: World) -> None:
    """The ledger is written before the database: a run killed after CREATE DATABASE finds a
    record that says ours, never initialised, and starts over on a fresh database."""
    want = desired("qa", Tier.STAGING)
    world.ledger.put_database(
        DatabaseRecord(want.key, "shared", want.key.database, DbState.CREATING, False, "staging")
    )
    world.server.create_database(want.key)
    results = world.converge(want)
    kinds = [r.kind for r in results]
    assert kinds.index(Kind.RECREATE_DATABASE) < kinds.index(Kind.INIT_DATABASE)
    record = world.ledger.database(want.key)
    assert record is not None and record.initialised


def test_a_database_the_ledger_does_not_record_is_never_dropped(world: World) -> None:
    """Production's database exists, but no ledger record says it is the daemon's (a label
    forged to say "never initialised" is not even read): adopted, never recreated."""
    want = desired()
    world.server.create_database(want.key)
    world.server.odoo.add(want.key.database)
    results = world.converge(want)
    kinds = [r.kind for r in results]
    assert Kind.ADOPT_DATABASE in kinds
    assert Kind.RECREATE_DATABASE not in kinds and Kind.CREATE_DATABASE not in kinds
    assert want.key.database in world.server.databases
    record = world.ledger.database(want.key)
    assert record is not None and record.initialised and record.protected


def test_an_empty_foreign_database_is_left_alone_with_a_structured_error(world: World) -> None:
    want = desired("qa", Tier.STAGING)
    world.server.create_database(want.key)
    with pytest.raises(DatabaseNotOwned) as err:
        world.converge(want)
    assert "psql -d" in err.value.remediation
    assert world.ledger.database(want.key) is None
    assert want.key.database in world.server.databases


def test_the_guard_refuses_a_recreate_of_an_initialised_database(world: World) -> None:
    want = desired("qa", Tier.STAGING)
    world.converge(want)
    action = plan_action(want, Kind.RECREATE_DATABASE)
    with pytest.raises(DestructiveRefused):
        world.steps.run(want, action)
    assert want.key.database in world.server.databases


def test_the_guard_refuses_anything_destructive_on_a_protected_environment(world: World) -> None:
    want = desired()
    world.converge(want)
    with pytest.raises(DestructiveRefused):
        world.steps.run(want, plan_action(want, Kind.RECREATE_DATABASE))
    for kind in (Kind.DROP_DATABASE, Kind.REMOVE_VOLUME):  # as a prune would: nothing desired
        with pytest.raises(DestructiveRefused):
            world.steps.run(None, plan_action(want, kind))
    assert want.key.database in world.server.databases
    assert want.key.filestore_volume in world.runtime.volumes


def test_a_removed_environment_is_dropped_after_a_final_backup(world: World) -> None:
    want = desired("qa", Tier.STAGING)
    world.converge(want)
    world.converge(gone=(want.key,))
    assert want.key.database not in world.server.databases
    assert want.key.role not in world.server.roles
    assert world.final_backups == [want.key]
    assert world.ledger.database(want.key) is None
    assert not world.runtime.containers and not world.runtime.volumes


def test_a_protected_environment_made_unprotected_by_a_commit_can_be_removed(world: World) -> None:
    """The only way to drop production's data: a committed ``protected: false`` (applied, so
    the ledger records it), then the removal; never the removal alone."""
    want = desired()
    world.converge(want)
    world.converge(gone=(want.key,))
    assert want.key.database in world.server.databases  # kept: still protected
    world.ledger.update_database(want.key, protected=False)  # what applying the commit does
    world.converge(gone=(want.key,))
    assert want.key.database not in world.server.databases
    assert world.final_backups == [want.key]


def test_a_failing_production_update_is_backed_up_once_per_revision(world: World) -> None:
    old = desired()
    world.converge(old)
    new = desired(revision="b" * 40)
    world.runtime.exit_codes["-u"] = 1
    for _ in range(3):
        with pytest.raises(OdooOpsError):
            world.converge(new)
    assert len(world.data.backups) == 1
    world.runtime.exit_codes.clear()
    world.converge(new)
    assert len(world.data.backups) == 1
    newer = desired(revision="c" * 40)
    world.converge(newer)
    assert len(world.data.backups) == 2


def test_an_install_that_exits_0_with_a_module_left_out_fails_naming_it(world: World) -> None:
    """Real Odoo exits 0 when a module's version is of another series: judged by the table."""
    want = desired("qa", Tier.STAGING)
    world.runtime.uninstallable.add("base")
    with pytest.raises(ModulesNotInstalled) as caught:
        world.converge(want)
    assert "base (uninstallable): not installable" in caught.value.message
    assert "exited 0" in caught.value.message and not caught.value.retryable
    record = world.ledger.database(want.key)
    assert record is not None and not record.initialised  # never recorded as done


def test_a_half_updated_database_is_reported_as_such(world: World) -> None:
    old = desired()
    world.converge(old)
    new = desired(revision="b" * 40)
    world.runtime.exit_codes["-u"] = 255
    world.data.partial.add(new.key.database)
    with pytest.raises(PartiallyUpdated, match="half-updated"):
        world.converge(new)
    record = world.ledger.database(new.key)
    assert record is not None and record.revision == old.revision


def test_an_init_killed_by_its_memory_limit_is_reported_as_out_of_memory(world: World) -> None:
    want = desired("qa", Tier.STAGING)
    world.runtime.exit_codes["-i"] = 137
    with pytest.raises(OutOfMemory) as caught:
        world.converge(want)
    assert "limit of 2048Mi (resource_limits.init_memory)" in caught.value.message
    assert "raise resource_limits.init_memory" in caught.value.remediation


def test_a_code_only_revision_runs_no_update_and_takes_no_backup(world: World) -> None:
    """Git says no addon folder changed: no -u, no Odoo run, no backup; the container is
    still replaced with the new revision's image."""
    old = desired()
    world.converge(old)
    runs = len(world.runtime.runs)
    new = desired(revision="b" * 40, addons={"acme_base": "tree-aaaaaaaaaaaa"})
    results = world.converge(new)
    update = next(r for r in results if r.kind is Kind.UPDATE_MODULES)
    assert (update.outcome, update.detail) == ("skipped", "no module to update (no addon changed)")
    assert len(world.runtime.runs) == runs and world.data.backups == []
    assert world.runtime.containers[new.key.odoo_container].revision == new.revision


def test_only_the_changed_addon_is_updated(world: World) -> None:
    old = desired(addons={"acme_base": "t1", "acme_extra": "t2"})
    world.runtime.modules[old.key.database] = {"acme_extra": "installed"}
    world.converge(old)
    new = desired(revision="b" * 40, addons={"acme_base": "t1", "acme_extra": "t3"})
    world.converge(new)
    assert world.runtime.runs[-1][1] == (
        "-d",
        new.key.database,
        "-u",
        "acme_extra",
        "--stop-after-init",
    )


def test_kept_data_declared_again_gets_the_password_of_the_store(world: World) -> None:
    """Re-declaring an environment whose data was kept sets the role's password again."""
    want = desired()
    world.converge(want)
    world.server.roles[want.key.role] = "stale"
    world.runtime.containers.clear()
    world.converge(want)
    assert world.server.roles[want.key.role] == "pw-prod"


def test_a_failed_rollout_puts_the_previous_container_back(world: World) -> None:
    old = desired("qa", Tier.STAGING)
    world.converge(old)
    new = desired("qa", Tier.STAGING, workers=3)
    world.runtime.unhealthy.add(new.image)  # same image, a setting changed
    with pytest.raises(OdooOpsError, match="previous container is serving again"):
        world.converge(new)
    container = world.runtime.containers[old.key.odoo_container]
    assert container.spec_hash == old.odoo_spec_hash() and container.state == "running"


def test_a_stop_ends_the_run_before_the_next_step(world: World) -> None:
    want = desired("qa", Tier.STAGING)
    world.cancel.set()
    with pytest.raises(Interrupted):
        world.converge(want)
    assert not world.runtime.networks


def test_nothing_is_changed_while_the_runtime_is_down(world: World) -> None:
    want = desired("qa", Tier.STAGING)
    world.runtime.down = True
    with pytest.raises(OdooOpsError) as err:
        world.converge(want)
    assert err.value.code == "docker_unreachable"
    assert world.ledger.database(want.key) is None


def test_another_instance_s_production_is_neither_adopted_nor_given_a_password(
    world: World,
) -> None:
    """A second daemon on the same server declaring acme/production: adopting the first one's
    database would set its role's password and lock its Odoo out. Refused, nothing recorded."""
    want = desired()
    world.server.create_database(want.key)
    world.server.odoo.add(want.key.database)
    world.server.roles[want.key.role] = "the-other-instance-s"
    world.server.claims[want.key.role] = "prod-1"
    with pytest.raises(ClaimedElsewhere) as err:
        world.converge(want)
    assert "prod-1" in err.value.message and "COMMENT ON ROLE" in err.value.remediation
    assert world.server.roles[want.key.role] == "the-other-instance-s"
    assert world.ledger.database(want.key) is None


def test_a_role_another_instance_made_is_not_taken_for_a_new_database(world: World) -> None:
    """The other instance's role exists without its database (between its own steps): no
    ledger record is written, so no later run takes the other's database as ours to recreate."""
    want = desired("qa", Tier.STAGING)
    world.server.roles[want.key.role] = "the-other-instance-s"
    world.server.claims[want.key.role] = "prod-1"
    with pytest.raises(ClaimedElsewhere):
        world.converge(want)
    assert world.ledger.database(want.key) is None
    assert want.key.database not in world.server.databases
    assert world.server.roles[want.key.role] == "the-other-instance-s"


def test_a_database_the_ledger_records_goes_on_under_a_renamed_instance(world: World) -> None:
    """The ledger decides once it records a database: a daemon whose instance was renamed (its
    roles still noted with the old name) keeps running its environments."""
    want = desired()
    world.converge(want)
    world.server.claims[want.key.role] = "old-name"
    world.runtime.containers.clear()
    world.converge(want)
    assert world.runtime.containers[want.key.odoo_container].state == "running"


def plan_action(want: DesiredEnvironment, kind: Kind):
    from reconciler.core.planner import Action

    target = want.key.filestore_volume if kind is Kind.REMOVE_VOLUME else want.key.database
    return Action(want.key, kind, target, "test")


# ------------------------------------------------------------------ blue/green (routed)
class RecordingRouter:
    """The proxy as the steps see it: records each call with the containers running then."""

    def __init__(self, runtime: MemoryRuntime) -> None:
        self.runtime = runtime
        self.calls: list[tuple[str, EnvKey, object, frozenset[str]]] = []

    def _running(self) -> frozenset[str]:
        return frozenset(n for n, c in self.runtime.containers.items() if c.state == "running")

    def attach(self, key: EnvKey, network: str) -> None:
        self.calls.append(("attach", key, network, self._running()))

    def serve(
        self,
        key: EnvKey,
        upstreams: tuple[str, ...] | None = None,
        maintenance: Maintenance | None = None,
    ) -> None:
        self.calls.append(("serve", key, upstreams or maintenance, self._running()))

    def release(self, key: EnvKey) -> None:
        self.calls.append(("release", key, None, self._running()))


def routed(want: DesiredEnvironment) -> DesiredEnvironment:
    return replace(want, routed=True, public_url=f"https://{want.key.env}.acme.example.com")


@pytest.fixture
def router(world: World) -> RecordingRouter:
    found = RecordingRouter(world.runtime)
    world.steps.routes = found
    return found


def test_a_routed_environment_is_attached_to_the_proxy_when_made(
    world: World, router: RecordingRouter
) -> None:
    want = routed(desired("qa", Tier.STAGING))
    world.converge(want)
    assert [c[:3] for c in router.calls] == [("attach", want.key, want.key.network)]


def test_a_routed_rollout_switches_only_once_the_new_container_is_healthy(
    world: World, router: RecordingRouter
) -> None:
    """No reload moves the traffic: the route lists both names, the new one serves when the
    old one stops, which happens only after the new one is healthy."""
    old = routed(desired("qa", Tier.STAGING))
    world.converge(old)
    router.calls.clear()
    # A code-only revision: the addon's folder is the same tree.
    new = routed(desired("qa", Tier.STAGING, revision="b" * 40, addons=dict(old.addons)))
    world.runtime.images.add(new.image)
    results = world.converge(new)
    key, name, nxt = new.key, new.key.odoo_container, new.key.odoo_next_container
    assert [r.kind for r in results][-1] is Kind.REPLACE_ODOO
    assert world.data.updated_on_copy == []  # nothing to update
    assert [c[0] for c in router.calls] == ["attach", "release"]
    # When the route is made sure of, both run: the new one is healthy, the old one serves.
    assert {name, nxt} <= router.calls[0][3]
    # The end: one container, under the environment's name, with the new revision.
    assert set(world.runtime.containers) == {name}
    container = world.runtime.containers[name]
    assert container.revision == new.revision and container.state == "running"
    assert router.calls[1][1] == key


def test_a_routed_rollout_that_never_gets_healthy_leaves_the_old_one_serving_untouched(
    world: World, router: RecordingRouter
) -> None:
    old = routed(desired("qa", Tier.STAGING))
    world.converge(old)
    router.calls.clear()
    new = routed(desired("qa", Tier.STAGING, workers=3))
    world.runtime.unhealthy.add(new.image)
    with pytest.raises(OdooOpsError, match="keeps serving the previous revision"):
        world.converge(new)
    assert set(world.runtime.containers) == {old.key.odoo_container}
    container = world.runtime.containers[old.key.odoo_container]
    assert container.spec_hash == old.odoo_spec_hash() and container.state == "running"
    assert router.calls == []  # no traffic ever moved


@pytest.mark.parametrize("old_container", ["stopped", "removed"])
def test_a_rollout_killed_after_its_switch_is_finished_not_undone(
    world: World, router: RecordingRouter, old_container: str
) -> None:
    """The old container is stopped (or gone), the new one serves as -next: the next run
    renames it (no new container, no moment without one)."""
    old = routed(desired("qa", Tier.STAGING))
    world.converge(old)
    new = routed(desired("qa", Tier.STAGING, revision="b" * 40))
    world.runtime.images.add(new.image)
    name, nxt = new.key.odoo_container, new.key.odoo_next_container
    world.runtime.create_odoo(new, "pw-qa", name=nxt)
    world.runtime.start(nxt)
    if old_container == "stopped":
        world.runtime.stop(name)
    else:
        world.runtime.remove_container(name)
    router.calls.clear()
    actions, _ = plan_environment(
        Desired("c" * 40, {new.key: new}, allow_empty=True),
        new.key,
        world.observe(new.key, new),
        world.runtime.images,
    )
    assert [a.kind for a in actions] == [Kind.FINISH_ROLLOUT]
    world.converge(new)
    assert set(world.runtime.containers) == {name}
    assert world.runtime.containers[name].revision == new.revision
    assert world.runtime.containers[name].state == "running"
    assert [c[0] for c in router.calls] == ["release"]


def test_a_finish_whose_new_container_does_not_answer_removes_it(
    world: World, router: RecordingRouter
) -> None:
    old = routed(desired("qa", Tier.STAGING))
    world.converge(old)
    new = routed(desired("qa", Tier.STAGING, revision="b" * 40))
    world.runtime.images.add(new.image)
    world.runtime.unhealthy.add(new.image)
    name, nxt = new.key.odoo_container, new.key.odoo_next_container
    world.runtime.create_odoo(new, "pw-qa", name=nxt)
    world.runtime.stop(name)
    with pytest.raises(OdooOpsError, match="not healthy"):
        world.converge(new)
    assert set(world.runtime.containers) == {name}  # the old one, started by the next run


def test_a_rollout_killed_before_its_switch_drops_the_new_container(
    world: World, router: RecordingRouter
) -> None:
    old = routed(desired("qa", Tier.STAGING))
    world.converge(old)
    new = routed(desired("qa", Tier.STAGING, revision="b" * 40))
    world.runtime.images.add(new.image)
    nxt = new.key.odoo_next_container
    world.runtime.create_odoo(new, "pw-qa", name=nxt)
    world.runtime.start(nxt)
    actions, _ = plan_environment(
        Desired("c" * 40, {old.key: old}, allow_empty=True),
        old.key,
        world.observe(old.key, old),
        world.runtime.images,
    )
    assert [(a.kind, a.target) for a in actions] == [(Kind.REMOVE_STALE, nxt)]


def test_a_routed_environment_publishes_no_port_and_its_hash_ignores_the_port() -> None:
    want = routed(desired("qa", Tier.STAGING))
    assert want.odoo_spec_hash() == replace(want, port=19999).odoo_spec_hash()
    unrouted = desired("qa", Tier.STAGING)
    assert unrouted.odoo_spec_hash() != replace(unrouted, port=19999).odoo_spec_hash()
    assert want.url == "https://qa.acme.example.com"


def test_a_routed_module_update_runs_on_a_copy_behind_the_maintenance_page(
    world: World, router: RecordingRouter
) -> None:
    old = routed(desired("qa", Tier.STAGING))
    world.converge(old)
    router.calls.clear()
    new = routed(desired("qa", Tier.STAGING, revision="b" * 40))
    world.runtime.images.add(new.image)
    world.converge(new)
    assert world.data.updated_on_copy == [new.key]
    kinds = [c[0] for c in router.calls]
    assert kinds == ["serve", "attach", "release"]
    page = router.calls[0][2]
    assert isinstance(page, Maintenance)
    # The page went up while the old container still served, and was lifted only after the
    # new one had taken over (the release of the blue/green step).
    assert new.key.odoo_container in router.calls[0][3]
    assert router.calls[2][3] == frozenset({new.key.odoo_container})
    assert world.runtime.containers[new.key.odoo_container].revision == new.revision
    updates = [a for k, a in world.runtime.runs if "-u" in a]
    assert updates and all(a[a.index("-d") + 1].startswith("odooops_tmp_") for a in updates)


def test_a_failed_update_on_a_copy_leaves_the_live_database_and_the_old_container(
    world: World, router: RecordingRouter
) -> None:
    old = routed(desired("qa", Tier.STAGING))
    world.converge(old)
    live_before = dict(world.runtime.modules[old.key.database])
    router.calls.clear()
    new = routed(desired("qa", Tier.STAGING, revision="b" * 40))
    world.runtime.images.add(new.image)
    world.runtime.exit_codes["-u"] = 1
    with pytest.raises(OdooOpsError, match="the live database was not touched") as exc:
        world.converge(new)
    assert "previous revision again" in exc.value.message
    assert world.runtime.modules[old.key.database] == live_before
    assert not any(name.startswith("odooops_tmp_") for name in world.runtime.modules)
    container = world.runtime.containers[old.key.odoo_container]
    assert container.revision == old.revision and container.state == "running"
    assert [c[0] for c in router.calls] == ["serve", "release"]
    assert set(world.runtime.containers) == {old.key.odoo_container}


class SmokeRecordingRuntime(MemoryRuntime):
    """Records which server (and on which database) each smoke check ran against."""

    def __init__(self) -> None:
        super().__init__()
        self.smoked: list[tuple[str, str | None]] = []

    def smoke(self, name: str, paths: Sequence[str]) -> tuple[bool, str]:
        self.smoked.append((name, self.containers[name].database))
        return super().smoke(name, paths)


def test_an_updated_copy_is_served_on_trial_before_it_is_swapped_in(
    world: World, router: RecordingRouter
) -> None:
    """The new revision must start on the updated copy and answer its smoke paths before the
    copy replaces the live database; the trial server is gone afterwards."""
    runtime = SmokeRecordingRuntime()
    runtime.__dict__.update(world.runtime.__dict__, smoked=[])
    world.runtime = world.steps.runtime = world.data.runtime = router.runtime = runtime
    old = routed(desired("qa", Tier.STAGING))
    world.converge(old)
    runtime.smoked.clear()
    new = routed(desired("qa", Tier.STAGING, revision="b" * 40))
    runtime.images.add(new.image)
    world.converge(new)
    trial, nxt = new.key.odoo_check_container, new.key.odoo_next_container
    assert [name for name, _ in runtime.smoked] == [trial, nxt]
    assert (runtime.smoked[0][1] or "").startswith("odooops_tmp_")  # the copy, not the live one
    assert runtime.smoked[1][1] is None
    assert set(runtime.containers) == {new.key.odoo_container}


def test_a_copy_whose_new_server_fails_its_smoke_paths_is_never_swapped_in(
    world: World, router: RecordingRouter
) -> None:
    old = routed(desired("qa", Tier.STAGING))
    world.converge(old)
    live_before = dict(world.runtime.modules[old.key.database])
    router.calls.clear()
    new = routed(desired("qa", Tier.STAGING, revision="b" * 40))
    new = replace(new, settings=replace(new.settings, smoke_paths=("/web/login", "/shop")))
    world.runtime.images.add(new.image)
    world.runtime.failing_paths.add("/shop")
    with pytest.raises(OdooOpsError, match="the live database was not touched") as exc:
        world.converge(new)
    assert "/shop answered 500" in exc.value.message
    assert world.data.updated_on_copy == []
    assert world.runtime.modules[old.key.database] == live_before
    container = world.runtime.containers[old.key.odoo_container]
    assert container.revision == old.revision and container.state == "running"
    assert set(world.runtime.containers) == {old.key.odoo_container}  # no trial left
    assert [c[0] for c in router.calls] == ["serve", "release"]


def test_a_rollout_whose_new_server_fails_its_smoke_paths_leaves_the_old_one_serving(
    world: World, router: RecordingRouter
) -> None:
    old = routed(desired("qa", Tier.STAGING))
    world.converge(old)
    router.calls.clear()
    new = routed(desired("qa", Tier.STAGING, revision="b" * 40, addons=dict(old.addons)))
    new = replace(new, settings=replace(new.settings, smoke_paths=("/shop",)))
    world.runtime.images.add(new.image)
    world.runtime.failing_paths.add("/shop")
    with pytest.raises(OdooOpsError, match="smoke check failed: /shop answered 500"):
        world.converge(new)
    assert set(world.runtime.containers) == {old.key.odoo_container}
    assert world.runtime.containers[old.key.odoo_container].revision == old.revision
    assert router.calls == []


def test_a_tier_without_maintenance_holds_a_module_update_and_changes_nothing(
    world: World, router: RecordingRouter
) -> None:
    old = routed(desired("qa", Tier.STAGING))
    world.converge(old)
    router.calls.clear()
    new = routed(desired("qa", Tier.STAGING, revision="b" * 40))
    new = replace(new, settings=replace(new.settings, maintenance=False))
    world.runtime.images.add(new.image)
    with pytest.raises(OdooOpsError) as exc:
        world.converge(new)
    assert exc.value.code == "migration_pending" and not exc.value.retryable
    assert "acme_base" in exc.value.message
    assert router.calls == []
    container = world.runtime.containers[old.key.odoo_container]
    assert container.revision == old.revision and container.state == "running"
    assert world.data.updated_on_copy == []


def test_an_approved_migration_lets_that_revision_through_and_holds_the_next(
    world: World, router: RecordingRouter
) -> None:
    """``migrate: <revision>`` (odooops db migrate) approves the update of that revision only."""
    old = routed(desired("qa", Tier.STAGING))
    world.converge(old)
    held = routed(desired("qa", Tier.STAGING, revision="b" * 40))
    held = replace(held, settings=replace(held.settings, maintenance=False))
    world.runtime.images.add(held.image)
    with pytest.raises(OdooOpsError) as refused:
        world.converge(held)
    assert refused.value.remediation.endswith("odooops db migrate acme/qa")
    approved = replace(held, spec=replace(held.spec, migrate="b" * 40))
    world.converge(approved)
    assert world.data.updated_on_copy == [approved.key]
    assert world.runtime.containers[old.key.odoo_container].revision == "b" * 40
    assert "serve" in [c[0] for c in router.calls]  # the maintenance page went up
    later = routed(desired("qa", Tier.STAGING, revision="c" * 40, migrate="b" * 40))
    later = replace(later, settings=replace(later.settings, maintenance=False))
    world.runtime.images.add(later.image)
    with pytest.raises(OdooOpsError) as exc:
        world.converge(later)
    assert exc.value.code == "migration_pending"
    assert world.runtime.containers[old.key.odoo_container].revision == "b" * 40


def test_a_rollout_reports_its_phases_and_the_maintenance_window(
    world: World, router: RecordingRouter
) -> None:
    old = routed(desired("qa", Tier.STAGING))
    world.converge(old)
    phases: list[tuple[str, bool, str]] = []
    world.steps._phase = lambda key, phase, active, message: phases.append((phase, active, message))
    new = routed(desired("qa", Tier.STAGING, revision="b" * 40))
    world.runtime.images.add(new.image)
    world.converge(new)
    assert [(p, a) for p, a, _ in phases] == [
        ("UpdatingCopy", True),
        ("CheckingCopy", True),
        ("Starting", True),
        ("Switching", True),
        ("Draining", True),
        ("Complete", False),
    ]
    assert "maintenance window" in phases[-1][2]


def rollback_requested(world: World) -> tuple[DesiredEnvironment, DesiredEnvironment]:
    """qa updated from ``old`` to ``new`` (on a copy), then a rollback to ``old`` requested."""
    old = routed(desired("qa", Tier.STAGING))
    world.converge(old)
    new = routed(desired("qa", Tier.STAGING, revision="b" * 40))
    world.runtime.images.add(new.image)
    world.converge(new)
    world.data.rollbacks[old.key] = old.revision
    return old, new


def test_a_requested_data_rollback_runs_instead_of_an_update_once_its_revision_is_pinned(
    world: World, router: RecordingRouter
) -> None:
    """``odooops db rollback`` pinned the environment to the revision its kept data was at:
    that data goes back behind the maintenance page, no ``-u`` runs, and the modules are
    recorded as they were at that revision."""
    old, new = rollback_requested(world)
    world.runtime.runs.clear()
    router.calls.clear()
    phases: list[str] = []
    world.steps._phase = lambda key, phase, active, message: phases.append(phase)
    results = world.converge(old)
    assert [r.kind for r in results] == [Kind.UPDATE_MODULES, Kind.REPLACE_ODOO]
    assert world.data.rolled_back == [(old.key, new.revision)]
    assert not any("-u" in args for _, args in world.runtime.runs)
    assert phases[0] == "RollingBackData" and phases[-1] == "Complete"
    assert [c[0] for c in router.calls] == ["serve", "attach", "release"]
    assert world.runtime.containers[old.key.odoo_container].revision == old.revision
    # The modules are recorded as at the pinned revision: nothing left to update.
    assert world.converge(old) == []


def test_a_failed_data_rollback_changes_nothing_and_the_old_container_serves_again(
    world: World, router: RecordingRouter
) -> None:
    old, new = rollback_requested(world)
    world.data.rollback_fails = True
    router.calls.clear()
    with pytest.raises(OdooOpsError, match="the data rollback did not happen") as exc:
        world.converge(old)
    assert exc.value.code == "copy_failed"
    container = world.runtime.containers[new.key.odoo_container]
    assert container.revision == new.revision and container.state == "running"
    assert [c[0] for c in router.calls] == ["serve", "release"]
    assert world.data.rollbacks == {old.key: old.revision}  # tried again on the next run


def test_a_rollback_with_data_restores_instead_of_updating_once_its_revision_is_pinned(
    world: World,
) -> None:
    """``odooops rollback --with-data`` pinned production back to the revision a pre-update
    backup was taken at: the backup is restored in place of an update (no ``-u`` with the
    older code on the newer data), and the modules are recorded as at that revision."""
    old = desired("prod")
    world.converge(old)
    new = desired("prod", revision="b" * 40)
    world.runtime.images.add(new.image)
    world.converge(new)
    world.data.restores[old.key] = old.revision
    world.runtime.runs.clear()
    results = world.converge(old)
    assert [r.kind for r in results] == [Kind.UPDATE_MODULES, Kind.REPLACE_ODOO]
    assert world.data.restored == [(old.key, new.revision)]
    assert not any("-u" in args for _, args in world.runtime.runs)
    assert world.runtime.containers[old.key.odoo_container].revision == old.revision
    assert world.converge(old) == []
    # The data put back is older again: the next update to the same revision backs it up.
    world.converge(new)
    update = f"before update to {new.revision[:12]}"
    assert world.data.backups.count((old.key, update)) == 2


class StuckRuntime(MemoryRuntime):
    """A new container that never gets healthy: the wait lasts until it is cancelled."""

    def wait_healthy(
        self, name: str, timeout: float, cancel: threading.Event | None = None
    ) -> tuple[bool, str]:
        if not name.endswith("-next"):
            return super().wait_healthy(name, timeout, cancel)
        assert cancel is not None
        deadline = time.monotonic() + 10
        while not cancel.is_set():
            assert time.monotonic() < deadline, "the wait was never cancelled"
            time.sleep(0.01)
        return False, "interrupted"


def test_a_newer_commit_ends_a_rollout_stuck_waiting_for_health(
    world: World, router: RecordingRouter
) -> None:
    stuck = StuckRuntime()
    stuck.__dict__.update(world.runtime.__dict__)
    world.runtime = world.steps.runtime = world.data.runtime = router.runtime = stuck
    old = routed(desired("qa", Tier.STAGING))
    world.converge(old)
    new = routed(desired("qa", Tier.STAGING, revision="b" * 40, addons=dict(old.addons)))
    stuck.images.add(new.image)
    newer = world.steps.superseded[new.key] = threading.Event()
    threading.Timer(0.2, newer.set).start()
    with pytest.raises(Superseded):
        world.converge(new)
    assert set(stuck.containers) == {old.key.odoo_container}  # the -next one is gone
    container = stuck.containers[old.key.odoo_container]
    assert container.revision == old.revision and container.state == "running"


def test_only_runs_whose_container_changes_are_superseded() -> None:
    qa, prod = desired("qa", Tier.STAGING), desired("prod")
    running = {qa.key: qa.odoo_spec_hash(), prod.key: prod.odoo_spec_hash()}
    newer_qa = desired("qa", Tier.STAGING, revision="b" * 40)
    # Another state commit, same containers: nothing; qa's revision moves: qa; gone: prod.
    same = Desired("d" * 40, {qa.key: replace(qa, state_commit="d" * 40), prod.key: prod})
    assert superseded_runs(running, same) == []
    assert superseded_runs(running, Desired("d" * 40, {qa.key: newer_qa, prod.key: prod})) == [
        qa.key
    ]
    assert superseded_runs(running, Desired("d" * 40, {qa.key: qa})) == [prod.key]
    assert superseded_runs({qa.key: None}, Desired("d" * 40, {})) == []
