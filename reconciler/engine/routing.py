"""The daemon's side of ingress: keep the shared reverse proxy serving the desired routes.

The route table is pure (``core.ingress``) and the proxy is a driver (``drivers.caddy``); this
module decides *when* the proxy is told what, and what the environments' status says of it:

- Every refresh ends with ``sync``: the proxy runs, is on exactly the networks of the
  environments that exist, and has the table of the desired environments loaded. The table is
  rendered whole and sent only when its bytes differ from the last one loaded, so a quiet pass
  costs a comparison, not a reload.
- A rollout moves one environment's traffic with ``serve`` (which upstream first, or a
  maintenance page) and gives it back with ``release``: these overrides live in memory only.
  A daemon killed in the middle loses them, and the default order (the environment's own
  container first, its ``-next`` second, failing over between them on a refused dial) still
  reaches whichever of the two exists.
- An environment that sleeps, or is waking up, shows the waking page (``core.sleep``): which
  ones do is read from the ledger (through ``asleep``) at every load, so a restarted daemon
  renders the same routes as the one before it; ``reload`` applies a change at once.
- A proxy or ACME failure never fails a refresh or an environment's run: it is logged, shown
  as each environment's ``Routed``/``Certificate`` condition, and retried on the next pass.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable, Collection, Iterable, Mapping
from dataclasses import dataclass, replace
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from reconciler.core.caddyconfig import AcmeSettings, ProxyConfig, caddy_config
from reconciler.core.errors import OdooOpsError
from reconciler.core.ingress import (
    EnvironmentRoute,
    Maintenance,
    RouteTable,
    describe,
    environment_file,
    route_table,
)
from reconciler.core.model import (
    Desired,
    DesiredEnvironment,
    EnvKey,
    IngressSettings,
    SecretRef,
    Tier,
)
from reconciler.drivers.caddy import CaddyDriver, Certificate, ProxySettings
from reconciler.engine.status import Condition, EnvironmentStatus, StatusStore

__all__ = ["CERTIFICATE_CHECK_SECONDS", "RENEW_DAYS", "Routes", "upstreams_of"]

log = logging.getLogger(__name__)

CERTIFICATE_CHECK_SECONDS = 60.0
"""How often the certificates in the proxy's storage are read for status and metrics."""

RENEW_DAYS = 20.0
"""An ACME client renews at a third of the lifetime left (30 of 90 days): fewer days than this
left means renewal is failing."""


def upstreams_of(key: EnvKey) -> tuple[str, ...]:
    """The default order: the environment's container, then a rollout's new one (a dial to a
    name that does not resolve fails over to the next)."""
    return (key.odoo_container, key.odoo_next_container)


ProxyFactory = Callable[[str, ProxySettings], CaddyDriver]


@dataclass(frozen=True)
class _Loaded:
    body: bytes
    table: RouteTable


class Routes:
    """One daemon instance's proxy and the routes it was last given."""

    def __init__(
        self,
        instance: str,
        admin_dir: Path,
        status: StatusStore,
        resolve_secret: Callable[[SecretRef], str],
        labels: Mapping[str, str] | None = None,
        factory: ProxyFactory = CaddyDriver,
        asleep: Callable[[], Collection[EnvKey]] = frozenset,
    ) -> None:
        self.instance = instance
        self.admin_dir = admin_dir
        self.status = status
        self._resolve = resolve_secret
        self._labels = dict(labels or {})
        self._factory = factory
        self._asleep = asleep
        self._proxy: CaddyDriver | None = None
        self._settings: IngressSettings | None = None
        self._desired: Desired | None = None
        self._networks: frozenset[str] = frozenset()
        self._overrides: dict[EnvKey, tuple[str, ...]] = {}
        self._maintenance: dict[EnvKey, Maintenance] = {}
        self._loaded: _Loaded | None = None
        # Load even an unchanged table: the proxy or its settings are new, or a load (or what
        # precedes it) failed and the environments' Routed condition still says so.
        self._stale = True
        # No proxy container of ours is known to exist; False at start, since a daemon
        # restarted after the ingress block went never made the proxy that may still run.
        self._removed = False
        self._certificates: dict[str, Certificate] = {}
        self._checked: float | None = None  # monotonic time of the last read; None: read soon
        self._lock = threading.RLock()

    # ------------------------------------------------------------------------ accessors
    @property
    def enabled(self) -> bool:
        return self._settings is not None

    @property
    def proxy(self) -> CaddyDriver | None:
        return self._proxy

    def table(self) -> RouteTable | None:
        """The table the proxy serves now (None before the first load)."""
        return self._loaded.table if self._loaded else None

    def certificates(self) -> dict[str, Certificate]:
        return dict(self._certificates)

    def describe(self) -> dict[str, Any]:
        """The route table in force with each host's certificate: ``GET /v1/routes``."""
        settings, table = self._settings, self.table()
        rows = describe(table) if table is not None else []
        for row in rows:
            row["certificates"] = [
                self._certificates.get(h, Certificate(h)).to_dict() for h in row["hosts"]
            ]
        return {
            "enabled": settings is not None,
            "domain": settings.domain if settings else None,
            "proxy": self._proxy.name if self._proxy else None,
            "routes": rows,
        }

    def close(self) -> None:
        with self._lock:
            if self._proxy is not None:
                self._proxy.close()
                self._proxy = None

    # ------------------------------------------------------------------------ the pass
    def sync(
        self, settings: IngressSettings | None, desired: Desired, networks: Iterable[str]
    ) -> None:
        """Make the proxy serve ``desired`` (its environments on ``networks``, those that
        exist); called at the end of every refresh. Never raises an ``OdooOpsError``: a
        failure is each environment's ``Routed`` condition, retried next pass."""
        with self._lock:
            self._desired = desired
            self._networks = frozenset(networks)
            if settings is None:
                self._disable()
                return
            try:
                self._apply(settings)
            except OdooOpsError as exc:
                log.error("ingress: %s", exc.render())
                self._condition(
                    desired.environments,
                    Condition("Routed", False, exc.code, exc.message),
                )
                return
            self._check_certificates()

    def attach(self, key: EnvKey, network: str) -> None:
        """Route ``key`` now (its network exists now, a container is about to serve): a new
        environment need not wait for the next pass to be reachable. A failure is ``key``'s
        ``Routed`` condition, as in a pass, and the next pass tries again: the run that made
        the environment goes on (a rollout's switch, ``serve``, is what must not)."""
        with self._lock:
            self._networks = self._networks | {network}
            if self._settings is None:
                return
            try:
                self._apply(self._settings)
            except OdooOpsError as exc:
                log.error("ingress: %s", exc.render())
                self._condition((key,), Condition("Routed", False, exc.code, exc.message))

    def serve(
        self,
        key: EnvKey,
        upstreams: tuple[str, ...] | None = None,
        maintenance: Maintenance | None = None,
    ) -> None:
        """During a rollout: send ``key``'s traffic to ``upstreams`` (in that order) or show
        ``maintenance``; the load is done when this returns (raises on failure). A failed
        load keeps the route as it was, so the next pass does not make the switch the
        rollout was told did not happen."""
        with self._lock:
            overrides, maintenances = dict(self._overrides), dict(self._maintenance)
            if upstreams is not None:
                self._overrides[key] = upstreams
            if maintenance is not None:
                self._maintenance[key] = maintenance
            if self._settings is not None:
                try:
                    self._apply(self._settings)
                except BaseException:
                    self._overrides, self._maintenance = overrides, maintenances
                    raise

    def reload(self) -> None:
        """An environment fell asleep or woke: its route now (raises on failure, and the
        next pass tries again)."""
        with self._lock:
            if self._settings is not None:
                self._apply(self._settings)

    def release(self, key: EnvKey) -> None:
        """The rollout of ``key`` is over: its default route again."""
        with self._lock:
            self._overrides.pop(key, None)
            self._maintenance.pop(key, None)
            if self._settings is not None:
                self._apply(self._settings)

    # ------------------------------------------------------------------------ internals
    def _apply(self, settings: IngressSettings) -> None:
        try:
            self._load_table(settings)
        except BaseException:
            self._stale = True
            raise

    def _load_table(self, settings: IngressSettings) -> None:
        proxy = self._ensure(settings)
        desired = self._desired
        wants = dict(desired.environments) if desired else {}
        routed = {k: w for k, w in wants.items() if w.key.network in self._networks}
        proxy.join(w.key.network for w in routed.values())
        asleep = frozenset(self._asleep())
        table = route_table(
            (self._route(settings, w, w.key in asleep) for w in routed.values()),
            settings.domain,
            public=settings.public,
        )
        acme = AcmeSettings(
            ca=settings.acme_ca,
            email=settings.acme_email,
            trusted_roots_pem=self._resolve(settings.acme_trusted_roots)
            if settings.acme_trusted_roots is not None
            else None,
        )
        config = caddy_config(table, acme)
        body = config.body()
        if not self._stale and self._loaded is not None and self._loaded.body == body:
            return
        self._load(proxy, config)
        self._loaded = _Loaded(body, table)
        self._stale = False
        self._checked = None  # new hosts: look at their certificates soon
        changes = {str(key): _with(_routed_condition(table, key)) for key in routed}
        if changes:
            self.status.modify_many(changes)

    def _load(self, proxy: CaddyDriver, config: ProxyConfig) -> None:
        started = time.monotonic()
        proxy.load(config)
        log.info("ingress: routes loaded in %.2f s", time.monotonic() - started)

    def _ensure(self, settings: IngressSettings) -> CaddyDriver:
        wanted = ProxySettings(
            image=settings.image,
            admin_dir=self.admin_dir,
            publish_host=settings.listen,
            http_port=settings.http_port,
            https_port=settings.https_port,
            labels=self._labels,
        )
        if self._proxy is None or self._proxy.settings != wanted:
            if self._proxy is not None:
                self._proxy.close()
            self._proxy = self._factory(self.instance, wanted)
            self._stale = True
        if self._settings != settings:
            self._settings = settings
            self._stale = True
        self._removed = False
        self._proxy.ensure()
        return self._proxy

    def _route(
        self, settings: IngressSettings, want: DesiredEnvironment, asleep: bool
    ) -> EnvironmentRoute:
        spec = want.spec
        allowlist = spec.allowlist
        if allowlist is None:
            allowlist = settings.production_allowlist if spec.tier is Tier.PRODUCTION else ()
        return EnvironmentRoute(
            want.key,
            spec.tier,
            self._overrides.get(want.key, upstreams_of(want.key)),
            want.key.network,
            domains=spec.domains,
            allowlist=allowlist,
            maintenance=self._maintenance.get(want.key),
            asleep=asleep,
        )

    def _disable(self) -> None:
        """No ingress block (any more): the proxy container goes, its certificates stay in
        their volume for the day the block comes back.

        Also on the first pass of a daemon that never made a proxy: one restarted after the
        block went would otherwise leave the old proxy running (Docker restarts it with the
        host, and it resumes its last routes), still serving the environments' networks. A
        removal that fails is tried again on the next pass. No certificate is watched any
        more: the environments' expiries go, and with them their expiry metric.
        """
        self._settings = None
        self._loaded = None
        self._stale = True
        if self._removed:
            return  # every later pass of a daemon without ingress: nothing to do, no status read
        self._certificates = {}
        watched = {k: _unwatched for k, s in self.status.all().items() if s.certificate_expires}
        if watched:
            self.status.modify_many(watched)
        if self._proxy is not None:
            log.info("ingress: no ingress block; removing the proxy container")
        try:
            proxy = self._proxy or self._factory(
                self.instance, ProxySettings(image="", admin_dir=self.admin_dir)
            )
            self._proxy = proxy
            proxy.remove(volumes=False)
        except OdooOpsError as exc:
            log.error("ingress: %s", exc.render())
        else:
            self._removed = True
        finally:
            self.close()

    def _check_certificates(self) -> None:
        if self._proxy is None or self._loaded is None:
            return
        if self._checked is not None and (
            time.monotonic() - self._checked < CERTIFICATE_CHECK_SECONDS
        ):
            return
        table = self._loaded.table
        try:
            held = self._proxy.certificates([h.host for h in table.hosts])
        except OdooOpsError as exc:
            log.warning("ingress: cannot read the certificates: %s", exc.message)
            return
        self._checked = time.monotonic()
        self._certificates = held
        now = datetime.now(UTC)
        changes: dict[str, Callable[[EnvironmentStatus], EnvironmentStatus]] = {}
        for route in table.environments:
            hosts = table.hosts_of(route.key)
            certs = [held.get(h, Certificate(h)) for h in hosts]
            changes[str(route.key)] = _certificate_status(certs, now)
        if changes:
            self.status.modify_many(changes)

    def _condition(self, keys: Iterable[EnvKey], cond: Condition) -> None:
        changes = {str(k): _with(cond) for k in keys}
        if changes:
            self.status.modify_many(changes)


def _with(cond: Condition) -> Callable[[EnvironmentStatus], EnvironmentStatus]:
    def change(status: EnvironmentStatus) -> EnvironmentStatus:
        return status.with_condition(cond)

    return change


def _unwatched(status: EnvironmentStatus) -> EnvironmentStatus:
    return replace(status, certificate_expires="")


def _routed_condition(table: RouteTable, key: EnvKey) -> Condition:
    """``Routed`` of one environment: its own hosts (never the other environments': a token
    limited to one project reads this), or why it has none."""
    hosts = table.hosts_of(key)
    if not hosts:
        return Condition(
            "Routed",
            False,
            "NoHost",
            "no host name reaches it: set ingress.domain in odooops.yaml or domains in "
            f"{environment_file(key)}",
        )
    return Condition("Routed", True, "Loaded", ", ".join(hosts)[:400])


def _certificate_status(
    certs: list[Certificate], now: datetime
) -> Callable[[EnvironmentStatus], EnvironmentStatus]:
    """The ``Certificate`` condition (True when every host has a certificate with more than
    ``RENEW_DAYS`` left) and the earliest expiry, for the days-to-expiry metric."""
    missing = [c.host for c in certs if not c.managed]
    expiries = [c.not_after for c in certs if c.not_after is not None]
    earliest = min(expiries) if expiries else None
    if not certs:
        cond = Condition("Certificate", True, "NoHost", "no host name: no certificate to hold")
    elif missing:
        cond = Condition(
            "Certificate", False, "Pending", f"no certificate yet for {', '.join(missing)}"
        )
    elif earliest is not None and (earliest - now).total_seconds() / 86400 < RENEW_DAYS:
        days = (earliest - now).total_seconds() / 86400
        cond = Condition(
            "Certificate",
            False,
            "ExpiringSoon" if days > 0 else "Expired",
            f"expires {earliest.isoformat(timespec='seconds')} ({days:.1f} days): renewal is "
            "failing; docker logs of the proxy say why",
        )
    else:
        shown = earliest.isoformat(timespec="seconds") if earliest else "never"
        cond = Condition("Certificate", True, "Valid", f"valid until {shown}")

    def change(status: EnvironmentStatus) -> EnvironmentStatus:
        return replace(
            status.with_condition(cond),
            certificate_expires=earliest.isoformat(timespec="seconds") if earliest else "",
        )

    return change
