"""Small builders of model values for tests (pure, no services)."""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable, Mapping
from dataclasses import replace
from typing import Any

from reconciler.core.errors import OdooOpsError
from reconciler.core.model import (
    DatabaseServer,
    DesiredEnvironment,
    EnvironmentSpec,
    EnvKey,
    Project,
    StateConfig,
    Tier,
)
from reconciler.core.observed import ObservedContainer, ObservedDatabase, ObservedEnvironment, Role
from reconciler.core.planner import Plan
from reconciler.core.policies import resolve_settings
from reconciler.engine.status import DaemonStatus, EnvironmentStatus
from reconciler.gitops import changes
from reconciler.gitops.changerequests import ChangeRequests
from reconciler.gitops.gitsource import Author, CommitInfo
from reconciler.gitops.statewriter import WriteResult

SERVER = DatabaseServer("shared", "127.0.0.1", 5432, "host-gateway", "postgres")
PROJECT = Project("acme", "file:///dev/null", "19.0", "odoo:19.0", (".",), ("acme_base",), "shared")


def spec(env: str = "prod", tier: Tier = Tier.PRODUCTION, **kw: Any) -> EnvironmentSpec:
    base = EnvironmentSpec(
        key=EnvKey("acme", env),
        branch="main",
        tier=tier,
        revision="track",
        protected=tier is Tier.PRODUCTION,
        suspended=False,
        owner=None,
        overrides={},
    )
    return replace(base, **kw)


def desired(
    env: str = "prod",
    tier: Tier = Tier.PRODUCTION,
    revision: str = "a" * 40,
    workers: int | None = None,
    addons: Mapping[str, str] | None = None,
    **spec_kw: Any,
) -> DesiredEnvironment:
    overrides = {} if workers is None else {"workers": workers}
    s = spec(env, tier, overrides=overrides, **spec_kw)
    return DesiredEnvironment(
        spec=s,
        project=PROJECT,
        revision=revision,
        image=f"odooops/acme:{revision[:16]}",
        settings=resolve_settings(tier, {}, {}, overrides),
        modules=("base", "acme_base"),
        addons_paths=("/opt/odooops/app",),
        port=18000,
        server=None if tier.dedicated_database else SERVER,
        dev_db_image="postgres:15",
        state_commit="c" * 40,
        # Each revision changes the app's one addon, unless a test says otherwise.
        addons=tuple(sorted((addons or {"acme_base": f"tree-{revision[:12]}"}).items())),
        base_image_id="sha256:base",
    )


def live(
    want: DesiredEnvironment,
    *,
    state: str = "running",
    health: str | None = "healthy",
    spec_hash: str | None = None,
    revision: str | None = None,
    initialised: bool = True,
    owned: bool = True,
) -> ObservedEnvironment:
    """The observation of an environment that fully matches ``want`` (then tweak it)."""
    key = want.key
    containers = {
        Role.ODOO: ObservedContainer(
            key.odoo_container,
            Role.ODOO,
            state,
            health,
            spec_hash or want.odoo_spec_hash(),
            revision or want.revision,
            port=want.port,
            protected=want.spec.protected,
        )
    }
    volumes = {key.filestore_volume}
    if want.server is None:
        containers[Role.DB] = ObservedContainer(
            key.db_container, Role.DB, "running", "healthy", want.db_spec_hash(), None
        )
        volumes.add(key.pgdata_volume)
    return ObservedEnvironment(
        key=key,
        network=True,
        volumes=frozenset(volumes),
        containers=containers,
        database=ObservedDatabase(
            key.database,
            "shared" if want.server else "dedicated",
            initialised,
            want.spec.protected,
            owned,
        ),
        protected=want.spec.protected,
    )


class UncalledPlane:
    """An API control plane for tests that never get past authentication: any call fails them."""

    def statuses(self) -> Mapping[str, EnvironmentStatus]:
        raise AssertionError("the control plane was called")

    def events(self, key: EnvKey) -> list[dict[str, Any]]:
        raise AssertionError("the control plane was called")

    def daemon_status(self) -> DaemonStatus:
        raise AssertionError("the control plane was called")

    def state(self) -> StateConfig | None:
        raise AssertionError("the control plane was called")

    def plan(self) -> Plan:
        raise AssertionError("the control plane was called")

    def routes(self) -> dict[str, Any]:
        raise AssertionError("the control plane was called")

    def write(
        self,
        op: changes.Operation | changes.FileOperation,
        author: Author,
        *,
        subject: str,
        request_id: str,
        pr: bool,
        change_request: str | None = None,
    ) -> WriteResult:
        raise AssertionError("the control plane was called")

    def trigger(self) -> None:
        raise AssertionError("the control plane was called")

    def retry(self) -> None:
        raise AssertionError("the control plane was called")

    def state_repository(self) -> str:
        raise AssertionError("the control plane was called")

    def audit(
        self, limit: int, visible: Callable[[frozenset[str]], bool] | None = None
    ) -> list[CommitInfo]:
        raise AssertionError("the control plane was called")

    def change_requests(self) -> ChangeRequests:
        raise AssertionError("the control plane was called")

    def logs(self, key: EnvKey, follow: bool, since: int | None, tail: int) -> AsyncIterator[str]:
        raise AssertionError("the control plane was called")

    def shell(self, key: EnvKey, kind: str, tty: bool = True) -> Any:
        raise AssertionError("the control plane was called")

    def record_session(self, entry: Mapping[str, str]) -> None:
        raise AssertionError("the control plane was called")

    def sessions(self, limit: int) -> list[dict[str, str]]:
        raise AssertionError("the control plane was called")

    def data(self) -> Any:
        raise AssertionError("the control plane was called")

    def jobs(self) -> Any:
        raise AssertionError("the control plane was called")

    def builds(self) -> Any:
        raise AssertionError("the control plane was called")

    def pull_request(self, event: Any) -> None:
        pass


class MemoryData:
    """The data plane in memory (backups are records, mail a list), for API tests.

    It keeps the real rules: an operation on an unknown environment fails (inside its job), an
    unknown backup is a 404, a protected target needs ``confirm``, a copy never lands on a
    protected environment; and like the real stores, listing the backups or the mail of an
    environment nobody declared answers an empty list (the API must refuse it itself).
    """

    def __init__(self, state: Callable[[], StateConfig | None]) -> None:
        self._state = state
        self.records: dict[EnvKey, list[dict[str, Any]]] = {}
        self.mail: dict[EnvKey, list[dict[str, Any]]] = {}
        self.admin_passwords: dict[EnvKey, str] = {}
        self.kept: dict[EnvKey, dict[str, Any]] = {}  # data an update replaced, per env
        self.golden: dict[EnvKey, dict[str, Any]] = {}  # golden copies made, per production

    def _spec(self, key: EnvKey) -> Any:
        state = self._state()
        for s in state.environments if state else ():
            if s.key == key:
                return s
        raise changes.UnknownEnvironment(
            f"environment {key} is not known", remediation="odooops env list"
        )

    def environment(self, key: EnvKey) -> DesiredEnvironment:
        """Every declared environment counts as resolved; the daemon's word for the others."""
        try:
            found = self._spec(key)
        except changes.UnknownEnvironment:
            raise OdooOpsError(
                f"environment {key} is not declared (or not resolved yet)",
                code="environment_not_found",
                remediation="odooops env list",
            ) from None
        return replace(desired(key.env, found.tier), spec=found)

    def backups(self, key: EnvKey) -> list[dict[str, Any]]:
        return list(reversed(self.records.get(key, [])))

    def backup(self, key: EnvKey, reason: str, progress: Any = None) -> dict[str, Any]:
        self._spec(key)
        items = self.records.setdefault(key, [])
        record = {"id": f"2026-11-25-12-{len(items):02d}", "status": "good", "reason": reason}
        items.append(record)
        return record

    def restore(
        self,
        target_key: EnvKey,
        backup_id: str,
        source_key: EnvKey | None = None,
        *,
        confirm: bool = False,
        progress: Any = None,
    ) -> dict[str, Any]:
        source_key = source_key or target_key
        if self._spec(target_key).protected and not confirm:
            raise OdooOpsError("protected", code="confirm_required", remediation="--confirm")
        found = [r for r in self.backups(source_key) if backup_id in (r["id"], "latest")]
        if not found:
            raise OdooOpsError(
                "no such backup", code="backup_not_found", remediation="odooops db backups"
            )
        return {"backup": found[0]["id"], "from": str(source_key)}

    def request_rollback(self, key: EnvKey, confirm: bool = False) -> dict[str, Any]:
        if self._spec(key).protected and not confirm:
            raise OdooOpsError("protected", code="confirm_required", remediation="--confirm")
        if key not in self.kept:
            raise OdooOpsError(
                "nothing kept", code="nothing_kept", remediation="odooops db backups"
            )
        self.kept[key]["rollback"] = True
        return dict(self.kept[key])

    def cancel_rollback(self, key: EnvKey) -> None:
        self.kept.get(key, {}).pop("rollback", None)

    def clone(self, source_key: EnvKey, target_key: EnvKey, progress: Any = None) -> dict[str, Any]:
        self._spec(source_key)
        if self._spec(target_key).protected:
            raise OdooOpsError("protected", code="copy_onto_protected", remediation="restore")
        return {"from": str(source_key), "to": str(target_key), "strategy": "template"}

    def export(self, key: EnvKey, out: Any) -> dict[str, Any]:
        import io
        import zipfile

        self._spec(key)
        buf = io.BytesIO()
        with zipfile.ZipFile(buf, "w") as zf:
            zf.writestr("dump.sql", "-- empty\n")
            zf.writestr("manifest.json", "{}")
        out.write(buf.getvalue())
        return {"files": 0}

    def import_dump(
        self, key: EnvKey, path: Any, *, confirm: bool = False, progress: Any = None
    ) -> dict[str, Any]:
        if self._spec(key).protected and not confirm:
            raise OdooOpsError("protected", code="confirm_required", remediation="--confirm")
        return {"format": "zip", "bytes": path.stat().st_size}

    def mail_list(self, key: EnvKey, limit: int, query: str | None) -> list[dict[str, Any]]:
        return self.mail.get(key, [])[:limit]

    def mail_get(self, key: EnvKey, mail_id: str) -> dict[str, Any]:
        for item in self.mail.get(key, []):
            if item["id"] == mail_id:
                return item
        raise OdooOpsError("no such mail", code="mail_not_found", remediation="odooops mail list")

    def admin_credentials(self, key: EnvKey) -> dict[str, Any]:
        self._spec(key)
        password = self.admin_passwords.setdefault(key, f"pw-{key.env}-0")
        return {"environment": str(key), "login": "admin", "password": password, "verified": True}

    def rotate_admin_password(self, key: EnvKey) -> dict[str, Any]:
        self._spec(key)
        turn = int(self.admin_passwords.get(key, "pw-x-0").rsplit("-", 1)[1]) + 1
        self.admin_passwords[key] = f"pw-{key.env}-{turn}"
        return self.admin_credentials(key)

    def golden_status(self, key: EnvKey) -> dict[str, Any]:
        """A production environment's golden copy (none made: ``exists`` false until
        ``refresh_golden``); ``golden_not_production`` for another tier."""
        if self.environment(key).spec.tier is not Tier.PRODUCTION:
            raise OdooOpsError(
                f"{key} is not a production environment", code="golden_not_production"
            )
        made = self.golden.get(key)
        return {
            "source": str(key),
            "kept": False,
            "why": [],
            "refresh": None,
            "database": "odooops_golden_000000000000",
            "exists": made is not None,
            **(made or {}),
        }

    def refresh_golden(self, key: EnvKey, reason: str, progress: Any = None) -> dict[str, Any]:
        self.golden_status(key)
        self.golden[key] = {"refreshed_at": "2026-12-05T21:00:00+00:00", "reason": reason}
        return {"source": str(key), "reason": reason}
