"""Turn one commit of the state repository into the frozen ``StateConfig``.

Validation (schemas and cross-file checks) happens first and completely; only a state that
validated as a whole is converted, so nothing downstream ever sees a half-valid commit.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, replace
from typing import Any

from reconciler.core import validation
from reconciler.core.durations import parse_duration, parse_instant
from reconciler.core.model import (
    BackupSettings,
    BranchRule,
    CopySettings,
    DatabaseServer,
    DeclaredRepo,
    EnvironmentSpec,
    EnvKey,
    ForgeSettings,
    GatePolicy,
    GoldenPolicy,
    IngressSettings,
    MailCatcherSettings,
    Platform,
    Policies,
    PreviewOf,
    PreviewPolicy,
    Project,
    PromotedFrom,
    PromoteRule,
    Quotas,
    S3Settings,
    SecretRef,
    StateConfig,
    Tier,
)
from reconciler.core.policies import tier_for
from reconciler.core.secretrefs import SecretPolicy


def load_state(
    files: Mapping[str, bytes],
    commit: str,
    repo_label: str = ".",
    secrets: SecretPolicy | None = None,
) -> StateConfig:
    """Validate every file, then build the model. Raises ``InvalidState`` with all problems.

    ``secrets`` is the daemon's allowlist of secret references (the defaults when ``None``).
    """
    return LoadedState.load(files, commit, repo_label, secrets).config


@dataclass(frozen=True)
class LoadedState:
    """A validated commit: its model and what built it, so that a write (one or two files
    changed) is validated and modelled from its changes alone (``update``), not from every
    file of the repository again. The result is the one ``load_state`` gives."""

    index: validation.StateIndex
    config: StateConfig
    specs: Mapping[tuple[str, str], EnvironmentSpec]
    """The environments by (project, env), in that order (``config.environments``' order)."""

    @classmethod
    def load(
        cls,
        files: Mapping[str, bytes],
        commit: str,
        repo_label: str = ".",
        secrets: SecretPolicy | None = None,
    ) -> LoadedState:
        return cls._model(validation.StateIndex.build(files, repo_label, secrets), commit)

    def update(self, changes: Mapping[str, bytes | None], commit: str) -> LoadedState:
        """The state after ``changes`` (path -> content, None deletes); ``InvalidState``
        with every problem when it would be invalid."""
        index = self.index.update(changes)
        if any("/" not in path for path in changes):
            return LoadedState._model(index, commit)  # a root file: every part may change
        index.check()
        projects = dict(self.config.projects)
        specs = dict(self.specs)
        for path in changes:
            slot = validation.path_slot(path, index.repo_label)
            if slot is None:
                continue
            if slot.kind in ("project", "lock"):
                project_doc = index.projects.get(slot.project)
                projects.pop(slot.project, None)
                if project_doc is not None:
                    lock = _data(index.locks.get(slot.project))
                    projects[slot.project] = _project(slot.project, project_doc.data or {}, lock)
            elif slot.kind == "environment":
                key = (slot.project, slot.env)
                doc = index.environments.get(key)
                if doc is None:
                    specs.pop(key, None)
                else:  # an existing key keeps its place
                    specs[key] = _environment(EnvKey(*key), doc.data or {}, self.config.policies)
        if specs.keys() - self.specs.keys():
            specs = dict(sorted(specs.items()))  # a new environment: kept in key order
        config = replace(
            self.config,
            commit=commit,
            projects=dict(sorted(projects.items())),
            environments=tuple(specs.values()),
        )
        return LoadedState(index, config, specs)

    @staticmethod
    def _model(index: validation.StateIndex, commit: str) -> LoadedState:
        state = index.validated()
        platform = _platform(state.platform.data or {})
        policies = _policies(state.policies.data or {})
        projects = {
            name: _project(name, doc.data or {}, _data(state.locks.get(name)))
            for name, doc in state.projects.items()
        }
        specs = {
            key: _environment(EnvKey(*key), doc.data or {}, policies)
            for key, doc in state.environments.items()
        }
        masking = state.masking.data if state.masking is not None else None
        config = StateConfig(
            commit, platform, policies, projects, tuple(specs.values()), masking or None
        )
        return LoadedState(index, config, specs)


def _data(doc: validation.Document | None) -> Mapping[str, Any] | None:
    return doc.data if doc is not None and isinstance(doc.data, Mapping) else None


def _platform(raw: Mapping[str, Any]) -> Platform:
    runtime = raw.get("runtime", {})
    ports = runtime.get("port_range", {})
    servers = {
        name: DatabaseServer(
            name=name,
            host=s.get("host", "127.0.0.1"),
            port=int(s.get("port", 5432)),
            container_host=s.get("container_host", "host-gateway"),
            admin_user=s.get("admin_user", "postgres"),
            admin_password=SecretRef.parse(s.get("admin_password")),
        )
        for name, s in raw.get("database_servers", {}).items()
    }
    quotas = raw.get("quotas", {})
    reconcile = raw.get("reconcile", {})
    defaults = Platform()
    backups, s3 = raw.get("backups", {}), raw.get("backups", {}).get("s3", {})
    mail, copy = raw.get("mail_catcher", {}), raw.get("database_copy", {})
    return Platform(
        publish_host=runtime.get("publish_host", defaults.publish_host),
        port_start=int(ports.get("start", defaults.port_start)),
        port_end=int(ports.get("end", defaults.port_end)),
        database_servers=servers,
        dev_db_image=raw.get("dev_database", {}).get("image", defaults.dev_db_image),
        ingress=_ingress(raw["ingress"]) if "ingress" in raw else None,
        tier_overrides=raw.get("tiers", {}),
        quotas=Quotas(
            dev_environments_per_user=int(
                quotas.get("dev_environments_per_user", Quotas.dev_environments_per_user)
            ),
            max_concurrent_deployments=int(
                quotas.get("max_concurrent_deployments", Quotas.max_concurrent_deployments)
            ),
            max_concurrent_builds=int(
                quotas.get("max_concurrent_builds", Quotas.max_concurrent_builds)
            ),
            build_timeout=parse_duration(quotas["build_timeout"])
            if "build_timeout" in quotas
            else Quotas.build_timeout,
        ),
        interval=int(reconcile.get("interval", defaults.interval)),
        jitter=int(reconcile.get("jitter", defaults.jitter)),
        backups=BackupSettings(
            storage=backups.get("storage"),
            s3=S3Settings(
                endpoint=s3.get("endpoint"),
                region=s3.get("region"),
                access_key=SecretRef.parse(s3.get("access_key")),
                secret_key=SecretRef.parse(s3.get("secret_key")),
            ),
            encryption_key=SecretRef.parse(backups.get("encryption_key")),
            compression_level=int(backups.get("compression_level", 3)),
            restore_test=str(backups.get("restore_test", BackupSettings.restore_test)),
        ),
        mail_catcher=MailCatcherSettings(
            listen=_addresses(mail.get("listen", MailCatcherSettings.listen)),
            port=int(mail.get("port", MailCatcherSettings.port)),
            keep=int(mail.get("keep", MailCatcherSettings.keep)),
        ),
        copy=CopySettings(
            max_quiesce_seconds=float(
                copy.get("max_quiesce_seconds", CopySettings.max_quiesce_seconds)
            ),
            jobs=int(copy.get("jobs", CopySettings.jobs)),
        ),
    )


def _ingress(raw: Mapping[str, Any]) -> IngressSettings:
    acme, proxy, defaults = raw.get("acme", {}), raw.get("proxy", {}), IngressSettings()
    return IngressSettings(
        domain=raw.get("domain"),
        acme_ca=acme.get("ca", defaults.acme_ca),
        acme_email=acme.get("email"),
        acme_trusted_roots=SecretRef.parse(acme.get("trusted_roots")),
        image=proxy.get("image", defaults.image),
        listen=proxy.get("listen", defaults.listen),
        http_port=int(proxy.get("http_port", defaults.http_port)),
        https_port=int(proxy.get("https_port", defaults.https_port)),
        production_allowlist=tuple(raw.get("production_allowlist", ())),
        maintenance_text=raw.get("maintenance_text", defaults.maintenance_text),
    )


def _addresses(raw: str | Sequence[str]) -> tuple[str, ...]:
    """One address or a list of them (validation made sure of it)."""
    return (raw,) if isinstance(raw, str) else tuple(raw)


def _policies(raw: Mapping[str, Any]) -> Policies:
    rules = tuple(
        BranchRule(r["match"], Tier(r["tier"]), bool(r.get("auto_create", False)))
        for r in raw.get("branches", [])
    )
    protected = frozenset(Tier(t) for t in raw.get("protected_tiers", ["production"]))
    allow_empty = bool(raw.get("prune", {}).get("allow_empty", False))
    tests = raw.get("tests")
    gate = None
    if tests is not None:
        gate = GatePolicy(
            tiers=frozenset(Tier(t) for t in tests.get("on", ())),
            tags=tuple(tests.get("tags", GatePolicy.tags)),
            timeout=parse_duration(tests["timeout"]) if "timeout" in tests else GatePolicy.timeout,
        )
    promote = tuple(
        PromoteRule(
            source=r["from"],
            target=r["to"],
            schedule=r.get("schedule", PromoteRule.schedule),
            when=r.get("when", PromoteRule.when),
        )
        for r in raw.get("promote", ())
    )
    golden = raw.get("golden")
    return Policies(
        rules,
        protected,
        allow_empty,
        gate,
        previews=_preview_policy(raw.get("previews")),
        promote=promote,
        golden=(
            None
            if golden is None
            else GoldenPolicy(str(golden.get("refresh", GoldenPolicy.refresh)))
        ),
    )


def _preview_policy(raw: Mapping[str, Any] | None) -> PreviewPolicy | None:
    if raw is None:
        return None
    seed = raw.get("seed", "demo")
    return PreviewPolicy(
        bases=tuple(raw["bases"]),
        tier=Tier(raw.get("tier", PreviewPolicy.tier.value)),
        ttl=parse_duration(raw["ttl"]) if "ttl" in raw else PreviewPolicy.ttl,
        seed=seed if isinstance(seed, str) else seed["copy-of"],
        max_per_project=int(raw.get("max_per_project", PreviewPolicy.max_per_project)),
        labels=tuple(raw.get("labels", ())),
        forks=bool(raw.get("forks", False)),
    )


def _project(name: str, raw: Mapping[str, Any], lock: Mapping[str, Any] | None = None) -> Project:
    repo = raw["repository"]
    odoo = raw.get("odoo", {})
    return Project(
        name=name,
        repo_url=repo["url"],
        odoo_version=str(odoo.get("version", "19.0")),
        image=odoo.get("image", "odoo:19.0"),
        addons_paths=tuple(raw.get("addons_paths", ())),  # none: the scan decides
        modules=tuple(raw.get("modules", [])),
        database_server=raw.get("database_server", "shared"),
        token=SecretRef.parse(repo.get("token")),
        ssh_key=SecretRef.parse(repo.get("ssh_key")),
        forge=_forge(repo["url"], repo["forge"]) if "forge" in repo else None,
        repositories=_declared(raw.get("repositories", ()), lock or {}),
    )


def _declared(
    items: Sequence[Mapping[str, Any]], lock: Mapping[str, Any]
) -> tuple[DeclaredRepo, ...]:
    """The declared repositories, each with its pin when the lock has one for exactly its
    URL and ref (a changed URL or ref waits for a new pin)."""
    pins = lock.get("repositories", {})
    out = []
    for item in items:
        name = validation.repository_name(item)
        pin = pins.get(name, {})
        same = pin.get("url") == item["url"] and pin.get("ref") == item["ref"]
        addons = item.get("addons")
        out.append(
            DeclaredRepo(
                name=name,
                url=item["url"],
                ref=item["ref"],
                addons=tuple(addons) if addons is not None else None,
                commit=pin.get("commit") if same else None,
            )
        )
    return tuple(out)


def _forge(url: str, raw: Mapping[str, Any]) -> ForgeSettings:
    token = SecretRef.parse(raw["token"])
    assert token is not None  # the schema requires it
    return ForgeSettings(
        kind=raw["kind"], api=raw["api"], repo=raw.get("repo") or repo_path(url), token=token
    )


def repo_path(url: str) -> str:
    """``owner/name`` of a forge URL (https, ssh or scp-like), without ``.git``."""
    path = url.split("://", 1)[-1]
    path = path.split("/", 1)[1] if "://" in url else path.split(":", 1)[-1]
    path = path.strip("/")
    return path[: -len(".git")] if path.endswith(".git") else path


def environment_spec(key: EnvKey, raw: Mapping[str, Any], policies: Policies) -> EnvironmentSpec:
    """The declaration an environment file makes (``raw``, validated), as the loader reads it:
    also what a writer asks of a file it is about to write (its tier, its protection)."""
    return _environment(key, raw, policies)


def _environment(key: EnvKey, raw: Mapping[str, Any], policies: Policies) -> EnvironmentSpec:
    branch = raw["branch"]
    tier = Tier(raw["tier"]) if "tier" in raw else tier_for(policies, branch)
    db = raw.get("db", {})
    return EnvironmentSpec(
        key=key,
        branch=branch,
        tier=tier,
        revision=str(raw.get("revision", "track")),
        protected=bool(raw.get("protected", tier in policies.protected_tiers)),
        suspended=bool(raw.get("suspended", False)),
        owner=raw.get("owner"),
        overrides=raw.get("overrides", {}),
        db_source=db.get("source", "fresh"),
        neutralize=bool(db.get("neutralize", True)),
        mask=bool(db.get("mask", True)),
        origin="file",
        domains=tuple(raw.get("domains", ())),
        maintenance_text=raw.get("maintenance_text"),
        allowlist=tuple(raw["allowlist"]) if "allowlist" in raw else None,
        expires=parse_instant(raw["expires"]) if "expires" in raw else None,
        preview=_preview(raw["preview"]) if "preview" in raw else None,
        placement=db.get("placement"),
        migrate=raw.get("migrate"),
        promoted=_promoted(raw["promoted"]) if "promoted" in raw else None,
    )


def _promoted(raw: Mapping[str, Any]) -> PromotedFrom:
    return PromotedFrom(source=raw["from"], revision=raw["revision"], image=raw["image"])


def _preview(raw: Mapping[str, Any]) -> PreviewOf:
    return PreviewOf(
        forge=raw["forge"],
        number=int(raw["number"]),
        head=raw["head"],
        base=raw.get("base", ""),
        url=raw.get("url", ""),
        author=raw.get("author"),
        fork=bool(raw.get("fork", False)),
    )
