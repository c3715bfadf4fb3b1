"""The frozen model: what the state repository declares and what one environment needs.

Everything here is a value: built once per reconcile pass from validated YAML, never mutated,
safe to share between threads. Naming of live objects (containers, networks, databases) is
derived here and nowhere else, so the planner, the drivers and the tests agree on it.
"""

from __future__ import annotations

import hashlib
import json
import re
from collections.abc import Mapping
from dataclasses import asdict, dataclass, field
from datetime import datetime, timedelta
from enum import StrEnum
from typing import Any

from reconciler.core.buildplan import BuildPlan
from reconciler.core.errors import OdooOpsError
from reconciler.core.retention import Retention


class Tier(StrEnum):
    PRODUCTION = "production"
    STAGING = "staging"
    DEV = "dev"
    EPHEMERAL = "ephemeral"

    @property
    def dedicated_database(self) -> bool:
        """Dev tiers get their own small PostgreSQL container; the others use a shared server."""
        return self in (Tier.DEV, Tier.EPHEMERAL)


LABEL_PREFIX = "odooops."
MAIL_CATCHER_HOST = "odooops-mail"  # how non-production containers reach the mail catcher
# A DNS label, short: it is a label value that filters (``odooops.instance=NAME``) must match
# exactly, and part of container names (``odooops-NAME-helper-...``).
INSTANCE = re.compile(r"[a-z0-9]([a-z0-9-]{0,22}[a-z0-9])?")


class InvalidInstance(OdooOpsError):
    code = "invalid_instance"


def check_instance(name: str) -> str:
    """``name`` if it can name a daemon instance; ``invalid_instance`` otherwise.

    Checked where the name enters (the CLI) and where it becomes a label or a container name
    (the drivers): an instance ``a,b`` or ``x=y`` would make label filters match other
    daemons' objects, or none, and a daemon would prune what it cannot see as its own.
    """
    if not INSTANCE.fullmatch(name):
        shown = json.dumps(name[:40])
        raise InvalidInstance(
            f"instance {shown} is not an instance name: lowercase letters, digits and hyphens, "
            "starting and ending with a letter or digit, at most 24 characters",
            remediation="pass --instance NAME (or set ODOOOPS_INSTANCE), e.g. --instance prod-1",
        )
    return name


@dataclass(frozen=True, order=True)
class EnvKey:
    """Identity of an environment across git, Docker and PostgreSQL."""

    project: str
    env: str

    def __str__(self) -> str:
        return f"{self.project}/{self.env}"

    @property
    def slug(self) -> str:
        return f"odooops-{self.project}-{self.env}"

    @property
    def network(self) -> str:
        return self.slug

    @property
    def filestore_volume(self) -> str:
        return f"{self.slug}-filestore"

    @property
    def pgdata_volume(self) -> str:
        return f"{self.slug}-pgdata"

    @property
    def odoo_container(self) -> str:
        return f"{self.slug}-odoo"

    @property
    def odoo_next_container(self) -> str:
        """A blue/green rollout's new container, until it takes ``odoo_container``'s name."""
        return f"{self.slug}-odoo-next"

    @property
    def odoo_check_container(self) -> str:
        """An updated copy's trial server: checked, then removed before the copy is swapped in."""
        return f"{self.slug}-odoo-check"

    @property
    def internal_name(self) -> str:
        """The Odoo server's name on the environment's network (the proxy's and its own)."""
        return f"{self.env}.{self.project}.internal"

    @property
    def db_container(self) -> str:
        return f"{self.slug}-db"

    @property
    def init_container(self) -> str:
        return f"{self.slug}-init"

    @property
    def database(self) -> str:
        """PostgreSQL name: names never contain ``_``, so ``__`` separates unambiguously."""
        return f"{self.project}__{self.env}".replace("-", "_")

    @property
    def role(self) -> str:
        return f"odooops__{self.database}"[:63]

    def labels(self) -> dict[str, str]:
        return {f"{LABEL_PREFIX}project": self.project, f"{LABEL_PREFIX}env": self.env}


@dataclass(frozen=True)
class SecretRef:
    """A pointer to a secret outside git: a named secret of the daemon's encrypted store, an
    environment variable or a file. Exactly one is set; which ones a daemon accepts is
    ``core.secretrefs``' business, reading them is the secret store's."""

    env: str | None = None
    file: str | None = None
    secret: str | None = None

    def __str__(self) -> str:
        """What an error may name: the reference, never the value."""
        if self.secret is not None:
            return f"named secret {self.secret}"
        if self.env is not None:
            return f"environment variable {self.env}"
        return f"file {self.file}"

    @classmethod
    def parse(cls, raw: Mapping[str, str] | None) -> SecretRef | None:
        if raw is None:
            return None
        return cls(env=raw.get("env"), file=raw.get("file"), secret=raw.get("secret"))


@dataclass(frozen=True)
class Settings:
    """The resolved knobs of one environment after every layer of overrides."""

    workers: int
    max_cron_threads: int
    cpu: float
    memory: int
    backup_schedule: str
    ttl: timedelta | None
    demo: bool
    backup_retention: Retention = field(default_factory=lambda: Retention(days=7))
    init_memory: int = 2 * 1024**3
    worker_memory: int | None = None  # explicit limit_memory_soft per worker
    # A module update of a routed environment may show the maintenance page while it runs on
    # a copy; False holds such a deploy (MIGRATION_PENDING) for a person to schedule.
    maintenance: bool = True
    # Paths a new Odoo must answer (below 400, after redirects) before traffic moves to it or
    # an updated copy is swapped in: /web/health says the server runs, these that it serves.
    smoke_paths: tuple[str, ...] = ("/web/login",)
    # How long the database an update on a copy replaced is kept (renamed) for a data rollback;
    # None drops it at once.
    keep_previous: timedelta | None = None
    # Idle this long (no request through the proxy) and the environment is put to sleep: its
    # containers stopped until the next request. None: never. Runtime state, not a redeploy.
    sleep_after: timedelta | None = None

    def to_dict(self) -> dict[str, Any]:
        doc = asdict(self)
        doc["ttl"] = None if self.ttl is None else int(self.ttl.total_seconds())
        doc["smoke_paths"] = list(self.smoke_paths)
        doc["keep_previous"] = (
            None if self.keep_previous is None else int(self.keep_previous.total_seconds())
        )
        doc["sleep_after"] = (
            None if self.sleep_after is None else int(self.sleep_after.total_seconds())
        )
        return doc

    def container_settings(self) -> dict[str, Any]:
        """The settings that shape the Odoo container (backup settings and the one-off
        containers' memory do not replace it)."""
        doc = self.to_dict()
        del doc["backup_schedule"], doc["backup_retention"], doc["init_memory"]
        del doc["maintenance"], doc["smoke_paths"], doc["keep_previous"], doc["sleep_after"]
        return doc


@dataclass(frozen=True)
class DatabaseServer:
    name: str
    host: str
    port: int
    container_host: str
    admin_user: str
    admin_password: SecretRef | None = None


@dataclass(frozen=True)
class Quotas:
    dev_environments_per_user: int = 5
    max_concurrent_deployments: int = 10
    max_concurrent_builds: int = 10
    build_timeout: timedelta = timedelta(minutes=30)


@dataclass(frozen=True)
class S3Settings:
    endpoint: str | None = None
    region: str | None = None
    access_key: SecretRef | None = None
    secret_key: SecretRef | None = None


@dataclass(frozen=True)
class BackupSettings:
    """Where backups go and how they are sealed; ``storage`` None means the data directory."""

    storage: str | None = None
    s3: S3Settings = S3Settings()
    encryption_key: SecretRef | None = None
    compression_level: int = 3
    restore_test: str = "7d"


HOST_GATEWAY = "host-gateway"
"""Docker's name for the host as containers reach it (the default bridge's gateway)."""


@dataclass(frozen=True)
class MailCatcherSettings:
    """Where the catcher listens: loopback for the daemon's own checks and the address
    containers reach as ``host-gateway``; never every interface unless a state says so."""

    listen: tuple[str, ...] = ("127.0.0.1", HOST_GATEWAY)
    port: int = 2525
    keep: int = 500


@dataclass(frozen=True)
class CopySettings:
    """A template copy pauses the source's connections for about a second per GB (measured:
    ``TEMPLATE ... STRATEGY FILE_COPY`` of 1 GB in 0.9 s on PostgreSQL 15); above this pause a
    streamed copy, which needs no pause, is used instead."""

    max_quiesce_seconds: float = 5.0
    jobs: int = 4


LETS_ENCRYPT = "https://acme-v02.api.letsencrypt.org/directory"
INTERNAL_CA = "internal"
"""``ingress.acme.ca: internal``: the proxy's own local CA (no public name needed; browsers
must be told to trust its root), for a platform on a laptop or a private network."""


@dataclass(frozen=True)
class IngressSettings:
    """The shared reverse proxy (``ingress`` in odooops.yaml). With it, every environment is
    reached through the proxy at its host names and no Odoo port is published on the host,
    so a new container can start beside the old one (blue/green) and take over its traffic."""

    domain: str | None = None
    acme_ca: str = LETS_ENCRYPT
    acme_email: str | None = None
    acme_trusted_roots: SecretRef | None = None
    image: str = "caddy:2"
    listen: str = "0.0.0.0"
    http_port: int = 80
    https_port: int = 443
    production_allowlist: tuple[str, ...] = ()
    maintenance_text: str = (
        "This site is being updated and will be back in a few minutes. Thank you for waiting."
    )

    @property
    def public(self) -> bool:
        """Certificates from a public CA: host names must be public ones."""
        return self.acme_ca != INTERNAL_CA


@dataclass(frozen=True)
class Platform:
    publish_host: str = "127.0.0.1"
    port_start: int = 18000
    port_end: int = 18999
    database_servers: Mapping[str, DatabaseServer] = field(default_factory=dict)
    dev_db_image: str = "postgres:15"
    tier_overrides: Mapping[str, Mapping[str, Any]] = field(default_factory=dict)
    quotas: Quotas = Quotas()
    interval: int = 60
    jitter: int = 15
    backups: BackupSettings = BackupSettings()
    mail_catcher: MailCatcherSettings = MailCatcherSettings()
    copy: CopySettings = CopySettings()
    ingress: IngressSettings | None = None  # None: no proxy; Odoo published on a host port


@dataclass(frozen=True)
class BranchRule:
    match: str
    tier: Tier
    auto_create: bool = False


@dataclass(frozen=True)
class GatePolicy:
    """``tests`` of policies.yaml: which tiers wait for the tests, which tests, how long."""

    tiers: frozenset[Tier]
    tags: tuple[str, ...] = ("standard",)
    timeout: timedelta = timedelta(minutes=30)


@dataclass(frozen=True)
class PreviewPolicy:
    """``previews`` of policies.yaml: which pull requests get an environment, and what kind.

    ``seed`` is ``"demo"`` or the name of the environment a preview's database is copied
    from (``copy-of``); a preview of a fork always starts from demo data, whatever it says."""

    bases: tuple[str, ...]
    tier: Tier = Tier.EPHEMERAL
    ttl: timedelta = timedelta(days=3)
    seed: str = "demo"
    max_per_project: int = 5
    labels: tuple[str, ...] = ()
    forks: bool = False


@dataclass(frozen=True)
class PromoteRule:
    """One ``promote`` rule of policies.yaml: what ``source`` serves is pinned onto ``target``
    (environment names, paired within each project that has both) on ``schedule``, when it
    passed its gates (``when``, the only condition so far: ``gates-passed``)."""

    source: str
    target: str
    schedule: str = "1h"
    when: str = "gates-passed"


@dataclass(frozen=True)
class GoldenPolicy:
    """``golden`` of policies.yaml: keep a neutralised, masked golden copy of each production
    environment that something copies, so that every masked copy of production is a fast
    template copy of it instead of a copy masked again (``reconciler.core.golden``).

    ``refresh`` is a schedule (``"24h"``, a cron, or ``"never"``: only after each update of
    the production environment and on demand)."""

    refresh: str = "24h"


@dataclass(frozen=True)
class Policies:
    rules: tuple[BranchRule, ...] = ()
    protected_tiers: frozenset[Tier] = frozenset({Tier.PRODUCTION})
    allow_empty: bool = False
    tests: GatePolicy | None = None
    previews: PreviewPolicy | None = None
    promote: tuple[PromoteRule, ...] = ()
    golden: GoldenPolicy | None = None  # None: no golden copy; copies are masked each time


@dataclass(frozen=True)
class ForgeSettings:
    """``repository.forge`` of a project: where commit statuses are posted."""

    kind: str  # github, gitlab, gitea
    api: str
    repo: str  # owner/name (GitLab: the full path)
    token: SecretRef


@dataclass(frozen=True)
class DeclaredRepo:
    """One of ``repositories`` of a project file, with the platform's pin when it has one
    for exactly this URL and ref (``projects/<project>.lock.yaml``)."""

    name: str
    url: str
    ref: str
    addons: tuple[str, ...] | None = None  # None: every installable module
    commit: str | None = None  # the pin; None until the platform writes it


@dataclass(frozen=True)
class Project:
    name: str
    repo_url: str
    odoo_version: str
    image: str
    addons_paths: tuple[str, ...]
    modules: tuple[str, ...]
    database_server: str
    token: SecretRef | None = None
    ssh_key: SecretRef | None = None
    forge: ForgeSettings | None = None
    repositories: tuple[DeclaredRepo, ...] = ()


@dataclass(frozen=True)
class PreviewOf:
    """The pull (merge) request an environment previews (``preview`` of its file)."""

    forge: str  # github, gitlab, gitea
    number: int
    head: str
    base: str = ""
    url: str = ""
    author: str | None = None  # the forge account that opened it: the owner for quotas
    fork: bool = False


@dataclass(frozen=True)
class PromotedFrom:
    """``promoted`` of an environment file: the promotion that pinned its revision, and the
    image the source ran it as (which the daemon compares with the image it resolves)."""

    source: str  # PROJECT/ENV
    revision: str
    image: str


@dataclass(frozen=True)
class EnvironmentSpec:
    """An environment as declared: by a file in the state repo, or by a branch rule."""

    key: EnvKey
    branch: str
    tier: Tier
    revision: str  # "track" or a commit (7-40 hex)
    protected: bool
    suspended: bool
    owner: str | None
    overrides: Mapping[str, Any]
    db_source: str = "fresh"
    neutralize: bool = True
    mask: bool = True
    origin: str = "file"  # "file" or "branch"
    domains: tuple[str, ...] = ()  # custom host names, beside the generated one
    maintenance_text: str | None = None  # None: the platform's ingress.maintenance_text
    allowlist: tuple[str, ...] | None = None  # None: the tier's default (production's list)
    expires: datetime | None = None  # removed by the sweeper's commit after this (UTC)
    preview: PreviewOf | None = None  # the pull request it previews
    placement: str | None = None  # "shared" or "dedicated"; None: the tier's own

    @property
    def dedicated_database(self) -> bool:
        """A PostgreSQL container of its own (``db.placement``, else the tier's default)."""
        if self.placement is not None:
            return self.placement == "dedicated"
        return self.tier.dedicated_database

    # The one revision whose module update may show the maintenance page although the tier
    # says maintenance: false (``odooops db migrate``); any other revision is held again.
    migrate: str | None = None
    promoted: PromotedFrom | None = None  # written by odooops promote


@dataclass(frozen=True)
class StateConfig:
    """One validated commit of the state repository."""

    commit: str
    platform: Platform
    policies: Policies
    projects: Mapping[str, Project]
    environments: tuple[EnvironmentSpec, ...]
    masking: Mapping[str, Any] | None = None  # masking.yaml as validated, or None (defaults)


@dataclass(frozen=True)
class DesiredEnvironment:
    """Everything needed to build, run and observe one environment, fully resolved."""

    spec: EnvironmentSpec
    project: Project
    revision: str  # full commit of the app repository
    image: str  # content-addressed tag of the image for that commit
    settings: Settings
    modules: tuple[str, ...]
    addons_paths: tuple[str, ...]  # inside the container
    port: int
    server: DatabaseServer | None  # None: a dedicated container
    dev_db_image: str
    state_commit: str
    # Each addon of the app at ``revision`` with the git tree id of its folder, and the base
    # image's id: what decides which modules an update runs ``-u`` on (never in the spec hash:
    # the revision and the image already are).
    addons: tuple[tuple[str, str], ...] = ()
    base_image_id: str = ""
    # Reached through the platform's reverse proxy: no host port is published (a second
    # container can then start beside the first for a blue/green switch).
    routed: bool = False
    public_url: str = ""  # routed: where users reach it through the proxy ("" if no name)
    maintenance_text: str = ""  # routed: the page shown while its modules update on a copy
    build: BuildPlan | None = None  # what ``image`` is made of (None: prebuilt, in tests)
    tests: GatePolicy | None = None  # its tier waits for the tests before a deployment

    @property
    def key(self) -> EnvKey:
        return self.spec.key

    @property
    def url(self) -> str:
        return self.public_url if self.routed else f"http://127.0.0.1:{self.port}"

    def odoo_spec_hash(self) -> str:
        """Hash of exactly what we declare for the Odoo container; a change means replace.

        Only fields we own go in (not Docker's defaults), so drift noise from fields others
        own never triggers a replacement.
        """
        owned = {
            "image": self.image,
            "settings": self.settings.container_settings(),
            "addons_paths": self.addons_paths,
            "port": None if self.routed else self.port,
            "server": None
            if self.server is None
            else [self.server.container_host, self.server.port],
            "recipe": 1,
        }
        if self.spec.tier is not Tier.PRODUCTION:
            owned["mail_catcher"] = MAIL_CATCHER_HOST
        return hashlib.sha256(json.dumps(owned, sort_keys=True).encode()).hexdigest()[:16]

    def db_spec_hash(self) -> str:
        return hashlib.sha256(f"{self.dev_db_image}|1".encode()).hexdigest()[:16]


@dataclass(frozen=True)
class Desired:
    """The whole desired world for one pass.

    ``held`` are environments declared but not resolvable right now (app repo unreachable, invalid
    ``.odooops.yaml``, quota): the planner must leave their live objects alone rather than prune.
    ``expired`` are branch environments past their TTL: absent from ``environments``, so pruned.
    """

    state_commit: str
    environments: Mapping[EnvKey, DesiredEnvironment]
    held: Mapping[EnvKey, str] = field(default_factory=dict)
    expired: Mapping[EnvKey, str] = field(default_factory=dict)
    allow_empty: bool = False
