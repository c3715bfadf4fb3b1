"""From a validated state commit and the app repositories to the desired world.

Deterministic given its inputs: the app repositories are read from local mirrors (fetched
before), base image IDs and ports are handed in. An environment that cannot be resolved
(branch gone, invalid ``.odooops.yaml``, app repository unreachable, over quota) is *held*:
reported, and its live objects left exactly as they are.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, Protocol

from reconciler.core import policies
from reconciler.core.buildplan import (
    APP_ROOT,
    BuildPlan,
    RepoTree,
    Submodule,
    TreeView,
    plan_build,
    submodules,
)
from reconciler.core.errors import InvalidState, OdooOpsError, sanitize
from reconciler.core.ingress import generated_host
from reconciler.core.model import (
    DeclaredRepo,
    Desired,
    DesiredEnvironment,
    EnvironmentSpec,
    EnvKey,
    IngressSettings,
    Project,
    StateConfig,
)

APP_CONFIG = ".odooops.yaml"


class AppRepo(Protocol):
    """What resolution needs of an app repository (``GitSource`` satisfies it)."""

    def branches(self) -> dict[str, str]: ...

    def resolve(self, rev: str) -> str: ...

    def read_file(self, commit: str, path: str) -> bytes | None: ...

    def view(self, commit: str) -> TreeView: ...


AppConfigLoader = Callable[[bytes, str], Mapping[str, Any]]
# A submodule of a project's app repository at its pinned commit, fetched if need be; raises
# ``OdooOpsError`` when it cannot be read (the environment is then held).
PinnedTree = Callable[[Project, Submodule], RepoTree]


DeclaredTree = Callable[[Project, DeclaredRepo], RepoTree]


def _no_declared(project: Project, repo: DeclaredRepo) -> RepoTree:
    raise OdooOpsError(
        f"repository {repo.name} of {project.name} cannot be read here",
        code="submodule_unavailable",
        remediation="odooops status PROJECT/ENV",
    )


def _no_submodules(project: Project, sub: Submodule) -> RepoTree:
    raise OdooOpsError(
        f"submodule {sub.path} of {project.name} cannot be read here",
        code="submodule_unavailable",
        remediation="odooops status PROJECT/ENV",
    )


@dataclass(frozen=True)
class Inputs:
    """The impure facts resolution needs, gathered by the engine before calling ``resolve``."""

    apps: Mapping[str, AppRepo | OdooOpsError]  # project -> repo, or why it is unavailable
    heads: Mapping[str, Mapping[str, BranchHead]]  # project -> branch -> its head commit
    base_images: Mapping[str, str]  # image reference -> local image ID
    port_for: Callable[[EnvKey], int]
    load_app_config: AppConfigLoader
    now: datetime
    pinned: PinnedTree = _no_submodules
    declared: DeclaredTree = _no_declared
    wheelhouse: bool = False  # Python distributions come from the platform's wheel directory
    # Plans already made, by everything that decides them (a pass resolves 1,000 environments
    # on a few trees; the same trees give the same plan).
    plans: dict[tuple[Any, ...], BuildPlan] = field(default_factory=dict)


@dataclass(frozen=True)
class BranchHead:
    """Who last committed to a branch, and when: the owner (quotas) and the age (TTL)."""

    author_email: str
    committed_at: datetime


def _pinned(project: Project) -> tuple[DeclaredRepo, ...]:
    """The declared repositories, each pinned; ``repository_not_pinned`` while one waits
    for the platform's pin (the daemon writes it, then the environment goes on)."""
    waiting = [r.name for r in project.repositories if r.commit is None]
    if waiting:
        raise OdooOpsError(
            f"repository {', '.join(waiting)} of {project.name} is not pinned yet: the daemon "
            f"pins it to the head of its ref in projects/{project.name}.lock.yaml",
            code="repository_not_pinned",
            retryable=True,
            remediation=f"nothing to do, the next pass pins it; if it stays, check the URL and "
            f"ref in projects/{project.name}.yaml and the daemon's log",
        )
    return project.repositories


def build_plan(
    project: Project,
    repo: AppRepo,
    revision: str,
    app: Mapping[str, Any],
    base_id: str,
    inputs: Inputs,
) -> BuildPlan:
    """The image plan of ``revision``: its tree, its submodules' trees at their pins, the
    ``build`` block of its ``.odooops.yaml``; kept in ``inputs.plans`` by what decides it."""
    view = repo.view(revision)
    build = app.get("build", {})
    key = (
        project,
        view.tree_id,
        base_id,
        tuple(build.get("system_packages", ())),
        build.get("python_lock"),
        inputs.wheelhouse,
    )
    plan = inputs.plans.get(key)
    if plan is None:
        third = tuple(inputs.pinned(project, sub) for sub in submodules(view))
        third += tuple(inputs.declared(project, repo) for repo in _pinned(project))
        plan = plan_build(
            project.name,
            project.image,
            base_id,
            RepoTree(view, "app", sanitize(project.repo_url), revision, APP_ROOT),
            third,
            addons_paths=project.addons_paths,
            system_packages=build.get("system_packages", ()),
            python_lock=build.get("python_lock"),
            series=project.odoo_version,
            wheelhouse=inputs.wheelhouse,
        )
        if len(inputs.plans) > 1024:
            inputs.plans.clear()
        inputs.plans[key] = plan
    return plan


def resolve(config: StateConfig, inputs: Inputs) -> Desired:
    specs = list(config.environments)
    # One listing of branches per project and pass: listing peels every ref, so doing it per
    # environment would make a project with many branch environments quadratic.
    branches: dict[str, dict[str, str]] = {}
    for name in sorted(config.projects):
        repo = inputs.apps.get(name)
        if repo is not None and not isinstance(repo, OdooOpsError):
            branches[name] = repo.branches()
            specs.extend(
                policies.auto_environments(
                    name,
                    config.policies,
                    branches[name],
                    config.environments,
                    {b: h.author_email for b, h in inputs.heads.get(name, {}).items()},
                )
            )
    held: dict[EnvKey, str] = policies.over_quota(
        specs, config.platform.quotas.dev_environments_per_user
    )
    envs: dict[EnvKey, DesiredEnvironment] = {}
    expired: dict[EnvKey, str] = {}
    for spec in specs:
        if spec.key in held:
            continue
        try:
            want = _resolve_one(config, spec, inputs, branches.get(spec.key.project, {}))
        except OdooOpsError as exc:
            held[spec.key] = exc.message
            continue
        why = _expiry(want, inputs)
        if why:
            expired[spec.key] = why
        else:
            envs[spec.key] = want
    return Desired(config.commit, envs, held, expired, config.policies.allow_empty)


def _expiry(want: DesiredEnvironment, inputs: Inputs) -> str:
    """A branch-made environment lives ``ttl`` past its branch's last commit, then is pruned.

    Measured from the commit, not from creation, so an active branch keeps its environment and
    an abandoned one is cleaned up, and the verdict is the same after a daemon restart.
    """
    ttl = want.settings.ttl
    if ttl is None or want.spec.origin != "branch":
        return ""
    head = inputs.heads.get(want.key.project, {}).get(want.spec.branch)
    if head is None or inputs.now - head.committed_at <= ttl:
        return ""
    return f"branch {want.spec.branch} has had no commit for more than {ttl.days} days (ttl)"


def _resolve_one(
    config: StateConfig, spec: EnvironmentSpec, inputs: Inputs, branches: Mapping[str, str]
) -> DesiredEnvironment:
    project = config.projects[spec.key.project]
    repo = inputs.apps[project.name]
    if isinstance(repo, OdooOpsError):
        raise repo
    if spec.revision == "track":
        head = branches.get(spec.branch)
        if head is None:
            raise OdooOpsError(
                f"branch {spec.branch} does not exist in {project.name}'s repository",
                code="branch_missing",
                remediation=f"push the branch, or edit environments/{spec.key}.yaml",
            )
        revision = head
    else:
        revision = repo.resolve(spec.revision)
    raw_app = repo.read_file(revision, APP_CONFIG)
    app: Mapping[str, Any] = {}
    if raw_app is not None:
        try:
            app = inputs.load_app_config(raw_app, f"{project.name}@{revision[:12]}:{APP_CONFIG}")
        except InvalidState as exc:
            raise OdooOpsError(
                exc.message + "".join(f"; {p}" for p in exc.problems),
                code="invalid_app_config",
                remediation=exc.remediation,
            ) from exc
    settings = policies.resolve_settings(
        spec.tier,
        config.platform.tier_overrides,
        app.get("tiers", {}),
        spec.overrides,
        app.get("environments", {}).get(spec.key.env),
    )
    modules = tuple(dict.fromkeys(("base", *project.modules, *app.get("modules", ()))))
    base_id = inputs.base_images.get(project.image)
    if base_id is None:
        raise OdooOpsError(
            f"base image {project.image} is not available",
            code="image_missing",
            remediation=f"docker pull {project.image}",
        )
    plan = build_plan(project, repo, revision, app, base_id, inputs)
    gate = config.policies.tests
    server = None
    if not spec.dedicated_database:
        server = config.platform.database_servers[project.database_server]
    return DesiredEnvironment(
        spec=spec,
        project=project,
        revision=revision,
        image=plan.tag,
        settings=settings,
        modules=modules,
        addons_paths=plan.addons_paths,
        port=inputs.port_for(spec.key),
        server=server,
        dev_db_image=config.platform.dev_db_image,
        state_commit=config.commit,
        addons=plan.addon_trees,
        base_image_id=base_id,
        build=plan,
        tests=gate if gate is not None and spec.tier in gate.tiers else None,
        routed=config.platform.ingress is not None,
        public_url=public_url(spec, config.platform.ingress),
        maintenance_text=spec.maintenance_text
        or (config.platform.ingress.maintenance_text if config.platform.ingress else ""),
    )


def public_url(spec: EnvironmentSpec, ingress: IngressSettings | None) -> str:
    """Where the proxy serves the environment: its generated host, else its first domain
    ("" without ingress, or with neither: the route table then has no host for it)."""
    if ingress is None:
        return ""
    host = generated_host(spec.key, ingress.domain) if ingress.domain else None
    host = host or (spec.domains[0].strip().lower() if spec.domains else None)
    if host is None:
        return ""
    port = "" if ingress.https_port == 443 else f":{ingress.https_port}"
    return f"https://{host}{port}"
