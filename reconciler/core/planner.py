"""``plan(desired, observed) -> Plan``: pure, deterministic, printable like ``terraform plan``.

The planner decides *what* to do and *why*; it never touches Docker, PostgreSQL or git, so
``odooops plan`` is an exact, side-effect-free dry run and the whole decision table is unit
tested without services. Actions of one environment are ordered so that each step's
prerequisites come first (network and volumes before containers, the database before
initialisation, initialisation before the server); the engine applies them in that order.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from enum import StrEnum
from typing import Protocol

from reconciler.core.model import Desired, DesiredEnvironment, EnvKey, Tier
from reconciler.core.modules import update_plan
from reconciler.core.observed import Observed, ObservedEnvironment, Role
from reconciler.core.testgate import gate_key


class Kind(StrEnum):
    REMOVE_STALE = "remove-stale"
    CREATE_NETWORK = "create-network"
    CREATE_VOLUME = "create-volume"
    CREATE_DB_CONTAINER = "create-db-container"
    REPLACE_DB_CONTAINER = "replace-db-container"
    START_DB_CONTAINER = "start-db-container"
    CREATE_DATABASE = "create-database"
    ADOPT_DATABASE = "adopt-database"
    RECREATE_DATABASE = "recreate-database"
    BUILD_IMAGE = "build-image"
    RUN_TESTS = "run-tests"
    INIT_DATABASE = "init-database"
    UPDATE_MODULES = "update-modules"
    CREATE_ODOO = "create-odoo"
    FINISH_ROLLOUT = "finish-rollout"
    REPLACE_ODOO = "replace-odoo"
    WAKE = "wake"
    START_ODOO = "start-odoo"
    STOP_ODOO = "stop-odoo"
    STOP_DB_CONTAINER = "stop-db-container"
    REMOVE_ODOO = "remove-odoo"
    REMOVE_DB_CONTAINER = "remove-db-container"
    DROP_DATABASE = "drop-database"
    REMOVE_VOLUME = "remove-volume"
    REMOVE_NETWORK = "remove-network"


_SYMBOL = {
    "create": "+",
    "adopt": "~",
    "build": "+",
    "run": "~",
    "init": "+",
    "start": "~",
    "stop": "~",
    "wake": "~",
    "update": "~",
    "finish": "~",
    "replace": "-/+",
    "recreate": "-/+",
    "remove": "-",
    "drop": "-",
}


DESTRUCTIVE = frozenset({Kind.DROP_DATABASE, Kind.REMOVE_VOLUME, Kind.RECREATE_DATABASE})


@dataclass(frozen=True)
class Action:
    key: EnvKey
    kind: Kind
    target: str
    reason: str

    @property
    def destructive(self) -> bool:
        """Loses data if wrong: apply re-checks it live behind one guard before acting."""
        return self.kind in DESTRUCTIVE

    @property
    def symbol(self) -> str:
        return _SYMBOL[self.kind.value.split("-", 1)[0]]


@dataclass(frozen=True)
class Plan:
    """The ordered actions, and what gets no action and why: data kept of protected
    environments (``retained``), declared environments that cannot be resolved now (``held``),
    and branches whose environment is past its TTL (``expired``: none is made, a live one is
    removed), so a branch never silently goes without an environment."""

    actions: tuple[Action, ...] = ()
    retained: tuple[str, ...] = ()
    held: Mapping[EnvKey, str] = field(default_factory=dict)
    expired: Mapping[EnvKey, str] = field(default_factory=dict)

    @property
    def has_changes(self) -> bool:
        return bool(self.actions)

    def by_env(self) -> dict[EnvKey, tuple[Action, ...]]:
        out: dict[EnvKey, list[Action]] = {}
        for action in self.actions:
            out.setdefault(action.key, []).append(action)
        return {key: tuple(actions) for key, actions in out.items()}

    def render(self) -> str:
        """Text like ``terraform plan``: one block per environment, a symbol and a reason each."""
        lines: list[str] = []
        for key, actions in self.by_env().items():
            lines.append(f"# {key}")
            lines.extend(
                f"  {a.symbol:>3} {a.kind.value} {a.target}  ({a.reason})" for a in actions
            )
        for note in self.retained:
            lines.append(f"  = kept: {note}")
        for key, why in sorted(self.held.items()):
            lines.append(f"  ! held: {key}: {why}")
        for key, why in sorted(self.expired.items()):
            lines.append(f"  x no environment: {key}: {why}")
        creates = sum(1 for a in self.actions if a.symbol == "+")
        changes = sum(1 for a in self.actions if a.symbol in ("~", "-/+"))
        removes = sum(1 for a in self.actions if a.symbol == "-")
        if self.actions:
            lines.append(f"Plan: {creates} to add, {changes} to change, {removes} to remove.")
        else:
            lines.append("No changes. Live state matches the state repository.")
        return "\n".join(lines)


def plan(desired: Desired, observed: Observed) -> Plan:
    """Compare every declared and every observed environment; return the ordered actions."""
    actions: list[Action] = []
    retained: list[str] = []
    guarded = _empty_state_guard(desired, observed)
    if guarded:
        retained.append(
            f"{len(guarded)} environments: the state declares no environment file any more, "
            "which looks like a mistake (set prune.allow_empty: true in policies.yaml to allow "
            "removing them)"
        )
    for key in sorted(set(desired.environments) | set(observed.environments)):
        if key in desired.held or key in guarded or key in observed.unreachable:
            continue
        have = observed.environments.get(key, ObservedEnvironment(key))
        more, kept = plan_environment(desired, key, have, observed.images)
        actions.extend(more)
        retained.extend(kept)
    return Plan(tuple(actions), tuple(retained), dict(desired.held), dict(desired.expired))


def plan_environment(
    desired: Desired, key: EnvKey, have: ObservedEnvironment, images: frozenset[str]
) -> tuple[tuple[Action, ...], tuple[str, ...]]:
    """The actions for one environment (and what is kept on purpose), in apply order.

    The engine plans each environment on its own, right before applying it, from a fresh
    observation of that environment alone; ``plan`` is this over every environment. Held and
    guarded environments are the caller's to skip (``plan`` does).
    """
    want = desired.environments.get(key)
    if want is not None:
        actions = tuple(_converge(want, have, images))
        if have.asleep and not want.spec.suspended:
            actions = _asleep(want, have, actions)
        return actions, ()
    if not (have.network or have.volumes or have.containers or have.database or have.stale):
        return (), ()
    removal, kept = _prune(have, desired.expired.get(key, "no longer declared"))
    return tuple(removal), tuple(kept)


def guarded_by_empty_state(desired: Desired, observed: Observed) -> frozenset[EnvKey]:
    """The environments the empty-state guard keeps (see ``_empty_state_guard``)."""
    return _empty_state_guard(desired, observed)


def _empty_state_guard(desired: Desired, observed: Observed) -> frozenset[EnvKey]:
    """File-declared environments that a state without any environment file would remove.

    Argo CD refuses to empty an application unless told to (``allowEmpty``); a commit that
    drops every environment file is far more often a mistake than a decision. Environments
    made by branch rules are not guarded: deleting the branch is the decision.
    """
    if desired.allow_empty or desired.held:
        return frozenset()
    if any(w.spec.origin == "file" for w in desired.environments.values()):
        return frozenset()
    return frozenset(
        key
        for key, have in observed.environments.items()
        if have.origin == "file" and key not in desired.environments
    )


def _converge(
    want: DesiredEnvironment, have: ObservedEnvironment, images: frozenset[str]
) -> Iterator[Action]:
    key = want.key

    def act(kind: Kind, target: str, reason: str) -> Action:
        return Action(key, kind, target, reason)

    # A blue/green rollout stopped after its switch (the old container stopped or gone, the
    # new one not yet renamed) is finished, not undone: the new one is what the proxy serves.
    odoo = have.container(Role.ODOO)
    finishing = (
        want.routed
        and not want.spec.suspended
        and (odoo is None or not odoo.running)
        and key.odoo_next_container in have.stale
    )
    for name in have.stale:
        if not (finishing and name == key.odoo_next_container):
            yield act(Kind.REMOVE_STALE, name, "left behind by an interrupted apply")
    if not have.network:
        yield act(Kind.CREATE_NETWORK, key.network, "private network missing")
    if key.filestore_volume not in have.volumes:
        yield act(Kind.CREATE_VOLUME, key.filestore_volume, "filestore volume missing")

    if want.server is None:
        yield from _dedicated_db(want, have, act)

    db = have.database
    if db is None:
        yield act(Kind.CREATE_DATABASE, key.database, "database missing")
    elif not db.owned:
        yield act(
            Kind.ADOPT_DATABASE,
            key.database,
            "a database of that name exists that this daemon's ledger does not record",
        )
    elif not db.initialised and not want.spec.protected:
        yield act(Kind.RECREATE_DATABASE, key.database, "database was never initialised")
    if want.image not in images:
        yield act(Kind.BUILD_IMAGE, want.image, f"no image for revision {want.revision[:12]}")
    # A protected database whose initialisation never finished is initialised again in place
    # (``-i`` installs what is missing), never dropped and recreated.
    initialised = db is not None and db.owned and db.initialised
    deploys = (
        not initialised
        or odoo is None
        or (odoo.spec_hash != want.odoo_spec_hash() and odoo.revision != want.revision)
    )
    if want.tests is not None and deploys and gate_key(want) not in have.gates:
        yield act(
            Kind.RUN_TESTS,
            want.image,
            f"the {want.spec.tier.value} tier waits for the tests of revision {want.revision[:12]}",
        )
    if not initialised:
        yield act(Kind.INIT_DATABASE, key.database, _init_reason(want))

    if want.spec.suspended:
        if odoo is not None and odoo.running:
            yield act(Kind.STOP_ODOO, key.odoo_container, "environment is suspended")
        return
    if finishing:
        yield act(
            Kind.FINISH_ROLLOUT,
            key.odoo_next_container,
            "a rollout was interrupted after its switch: the new container takes the name",
        )
        return
    if odoo is None:
        yield act(Kind.CREATE_ODOO, key.odoo_container, "Odoo container missing")
        return
    if odoo.spec_hash != want.odoo_spec_hash():
        if initialised and odoo.revision not in (None, want.revision):
            # What git says to update (the step reads the module table to decide for good).
            recorded = db.modules if db is not None else None
            which = update_plan(recorded, dict(want.addons), want.base_image_id, want.modules)
            yield act(
                Kind.UPDATE_MODULES,
                key.database,
                f"revision {odoo.revision[:12]} -> {want.revision[:12]}: {which}",
            )
        yield act(Kind.REPLACE_ODOO, key.odoo_container, _what_changed(want, odoo.revision))
    elif not odoo.running:
        yield act(Kind.START_ODOO, key.odoo_container, f"container is {odoo.state}")


def _asleep(
    want: DesiredEnvironment, have: ObservedEnvironment, actions: tuple[Action, ...]
) -> tuple[Action, ...]:
    """A sleeping environment (``reconciler.core.sleep``): its stopped containers stay
    stopped (running ones are stopped: Odoo first, then a dev tier's own database server).
    Anything else it needs (a new revision, changed settings, a container gone) wakes it
    first: a deploy is applied at once, not on some later visit, so what git says is what
    runs, and the deploy's health check is the wake's."""
    key = want.key
    starts = (Kind.START_ODOO, Kind.START_DB_CONTAINER)
    if any(a.kind not in starts for a in actions):
        why = ", ".join(a.kind.value for a in actions if a.kind not in starts)
        wake = Action(key, Kind.WAKE, key.odoo_container, f"asleep, and it needs: {why}")
        return (wake, *actions)
    stops: list[Action] = []
    odoo = have.container(Role.ODOO)
    if odoo is not None and odoo.running:
        stops.append(Action(key, Kind.STOP_ODOO, odoo.name, "environment is asleep"))
    dbc = have.container(Role.DB)
    if want.server is None and dbc is not None and dbc.running:
        stops.append(Action(key, Kind.STOP_DB_CONTAINER, dbc.name, "environment is asleep"))
    return tuple(stops)


def _dedicated_db(
    want: DesiredEnvironment, have: ObservedEnvironment, act: _Act
) -> Iterator[Action]:
    key = want.key
    if key.pgdata_volume not in have.volumes:
        yield act(Kind.CREATE_VOLUME, key.pgdata_volume, "database volume missing")
    dbc = have.container(Role.DB)
    if dbc is None:
        yield act(Kind.CREATE_DB_CONTAINER, key.db_container, "database container missing")
    elif dbc.spec_hash != want.db_spec_hash():
        yield act(Kind.REPLACE_DB_CONTAINER, key.db_container, "database image changed")
    elif not dbc.running:
        yield act(Kind.START_DB_CONTAINER, key.db_container, f"container is {dbc.state}")


def _init_reason(want: DesiredEnvironment) -> str:
    spec = want.spec
    if spec.db_source == "fresh":
        return f"odoo -i {','.join(want.modules)}"
    steps = [] if spec.tier is Tier.PRODUCTION else ["neutralised"]
    if spec.mask and spec.tier is not Tier.PRODUCTION:
        steps.append("masked")
    done = f" ({', '.join(steps)})" if steps else ""
    return f"copy of {spec.db_source}{done}, then odoo -u"


def _what_changed(want: DesiredEnvironment, old_revision: str | None) -> str:
    if old_revision is not None and old_revision != want.revision:
        return f"new revision {want.revision[:12]}"
    return "settings changed"


def _prune(have: ObservedEnvironment, why: str) -> tuple[list[Action], list[str]]:
    """Remove what is ours and no longer declared; a protected environment keeps its data."""
    key = have.key
    protected = have.protected or (have.database is not None and have.database.protected)
    out: list[Action] = []
    kept: list[str] = []
    out.extend(Action(key, Kind.REMOVE_STALE, name, why) for name in have.stale)
    for role, kind in ((Role.ODOO, Kind.REMOVE_ODOO), (Role.DB, Kind.REMOVE_DB_CONTAINER)):
        container = have.container(role)
        if container is not None:
            out.append(Action(key, kind, container.name, why))
    data = sorted(have.volumes)
    if protected:
        if have.database is not None:
            kept.append(f"database {have.database.name} of protected {key}")
        kept.extend(f"volume {v} of protected {key}" for v in data)
    else:
        db = have.database
        if db is not None and db.server != "dedicated":
            if db.owned:
                out.append(Action(key, Kind.DROP_DATABASE, db.name, why))
            else:
                kept.append(f"database {db.name}: not created by this daemon (not in its ledger)")
        out.extend(Action(key, Kind.REMOVE_VOLUME, v, why) for v in data)
    if have.network:
        out.append(Action(key, Kind.REMOVE_NETWORK, key.network, why))
    return out, kept


class _Act(Protocol):
    """Signature of the small ``act`` closure handed to step helpers."""

    def __call__(self, kind: Kind, target: str, reason: str) -> Action: ...
