"""Ingress: which host name reaches which environment, checked before anything is applied.

Every environment answers at its generated host ``<env>.<project>.<domain>`` and at the custom
``domains`` its file declares. The route table maps each host to exactly one environment; it is
what ``GET /v1/routes`` and ``odooops routes`` show, and what the proxy configuration
(``reconciler.core.caddyconfig``) is rendered from. Building it is pure and all-or-nothing:
every problem (a malformed domain, a domain two environments claim, an allowlist entry that is
no network) is collected and raised as one ``InvalidState``, so a bad commit changes no route
and the proxy keeps serving the table it had.

Domain rules, and why:

- RFC 1123 host names: labels of letters, digits and hyphens, 1-63 characters, not starting or
  ending with a hyphen, at most 253 characters in all; at least two labels, because a single
  label (``erp``) cannot get a public certificate. An apex (``example.com``) is allowed, unlike
  Odoo.sh. Names are compared in lower case, as DNS does; ``xn--`` labels carry
  internationalised names, which must be written in that form.
- No wildcard (``*.example.com``). An ACME CA issues a wildcard only through the DNS-01
  challenge, which needs credentials for the domain's DNS provider and a Caddy built with that
  provider's plugin; neither Debian's ``caddy`` nor the official image has one, so a wildcard
  route would serve without a certificate. A wildcard would also overlap the other
  environments' hosts, and a route that silently loses to a more specific one is worse than a
  refusal.
- No address (``10.0.0.1``: its last label is all digits) and no special-use name
  (``localhost``, ``.local``, ``.internal``, ``.home.arpa``, ...): no public CA certifies them,
  and ``<env>.<project>.internal`` is the platform's own name space for internal DNS.
"""

from __future__ import annotations

import ipaddress
import re
from collections.abc import Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field, replace
from typing import Any

from reconciler.core.errors import InvalidState, Location, Problem
from reconciler.core.model import EnvKey, Tier

__all__ = [
    "DEFAULT_BODY_LIMITS",
    "HTTP_PORT",
    "WEBSOCKET_PORT",
    "EnvironmentRoute",
    "HostRoute",
    "Maintenance",
    "RouteTable",
    "describe",
    "domain_problem",
    "environment_file",
    "generated_host",
    "host_conflict",
    "platform_domain_problem",
    "route_hosts",
    "route_table",
]

HTTP_PORT = 8069
"""Odoo's HTTP port: every path but ``/websocket``."""

WEBSOCKET_PORT = 8072
"""Odoo's gevent port: with ``workers > 0`` only it serves ``/websocket`` (ODOO-CONTRACT.md)."""

MiB = 1024 * 1024
DEFAULT_BODY_LIMITS: Mapping[Tier, int] = {
    # Odoo's own upload limit (web.max_file_upload_size) is 128 MiB: an upload Odoo would take
    # is never refused at the proxy of an environment that holds real data.
    Tier.PRODUCTION: 128 * MiB,
    Tier.STAGING: 128 * MiB,
    # Previews share the host with everyone's: less, still enough for a test import.
    Tier.DEV: 64 * MiB,
    Tier.EPHEMERAL: 64 * MiB,
}
"""The largest request body the proxy passes on, per tier (a larger one is refused there)."""

_LABEL = re.compile(r"[a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?")
_MAX_NAME = 253
# Special-use names (RFC 6761, RFC 6762, RFC 8375, ICANN's .internal): no public CA signs them.
_SPECIAL_USE = ("localhost", "local", "internal", "home.arpa", "invalid", "test.invalid")
_RECHECK = "then run: odooops validate ."


def environment_file(key: EnvKey) -> str:
    """Where an environment's routes are declared (its ``domains`` key)."""
    return f"environments/{key.project}/{key.env}.yaml"


def generated_host(key: EnvKey, domain: str) -> str:
    """``<env>.<project>.<domain>``: the host every environment gets under the platform's domain."""
    return f"{key.env}.{key.project}.{domain.lower()}"


def domain_problem(name: str, public: bool = True) -> str | None:
    """Why ``name`` cannot be a route's host name, or None when it can.

    ``name`` is taken as written: callers lower-case it first if they accept upper case.
    ``public`` False (the proxy's own internal CA) allows special-use names such as
    ``erp.localhost``: that CA certifies any name.
    """
    shown = repr(name[:80])
    if not name:
        return "a domain cannot be empty"
    if name.startswith("*"):
        return (
            f"{shown} is a wildcard: a wildcard certificate needs the DNS-01 challenge, which "
            "this platform does not run; list each host instead"
        )
    if not name.isascii():
        return f"{shown} is not ASCII: write an internationalised name in its xn-- form"
    if name.endswith("."):
        return f"{shown} ends with a dot: write it without the trailing dot"
    if len(name) > _MAX_NAME:
        return f"{shown}... is {len(name)} characters long: a host name has at most {_MAX_NAME}"
    labels = name.split(".")
    if len(labels) < 2:
        return f"{shown} is a single label: a public certificate needs a name like erp.example.com"
    for label in labels:
        if not _LABEL.fullmatch(label):
            return (
                f"{shown} has the label {label[:70]!r}: a label is 1 to 63 letters, digits and "
                "hyphens, neither starting nor ending with a hyphen"
            )
    if labels[-1].isdigit():
        return f"{shown} is an address, not a domain: routes are by host name"
    for special in _SPECIAL_USE if public else ():
        if name == special or name.endswith("." + special):
            return f"{shown} is under the special-use name {special!r}: no public CA certifies it"
    return None


@dataclass(frozen=True)
class Maintenance:
    """The page an environment shows while a module update runs on a copy of its database."""

    text: str
    retry_after: int = 120  # seconds, for the Retry-After header


@dataclass(frozen=True)
class EnvironmentRoute:
    """What the proxy needs to know of one environment.

    ``upstreams`` are Odoo containers' names, resolved by Docker's DNS on the environment's
    ``network`` (which the proxy joins), in order of preference: the first that answers gets
    the request, and a refused dial (a name that no longer resolves, a stopped container)
    fails over to the next. That is what lets a blue/green rollout switch and rename its
    containers without a failed request.
    ``allowlist`` (addresses or networks) is given for production by the engine; an empty
    one lets everyone in. ``max_body_bytes`` overrides the tier's limit. ``asleep``: the
    environment sleeps or is waking up (``reconciler.core.sleep``), and every request gets
    the waking page instead of reaching Odoo.
    """

    key: EnvKey
    tier: Tier
    upstreams: tuple[str, ...]
    network: str
    domains: tuple[str, ...] = ()
    allowlist: tuple[str, ...] = ()
    max_body_bytes: int | None = None
    maintenance: Maintenance | None = None
    asleep: bool = False
    http_port: int = HTTP_PORT
    websocket_port: int = WEBSOCKET_PORT

    def __post_init__(self) -> None:
        if isinstance(self.upstreams, str) or not self.upstreams:
            raise ValueError(f"{self.key}: upstreams must be a non-empty tuple of names")

    @property
    def upstream(self) -> str:
        """The preferred upstream."""
        return self.upstreams[0]


@dataclass(frozen=True)
class HostRoute:
    """One row of the route table: a host, the environment it reaches, and why it is there."""

    host: str
    key: EnvKey
    kind: str  # "generated" or "custom"

    def to_dict(self) -> dict[str, str]:
        return {
            "host": self.host,
            "project": self.key.project,
            "env": self.key.env,
            "kind": self.kind,
        }


@dataclass(frozen=True)
class RouteTable:
    """Every host and the environment it reaches, plus the routes they came from, validated.

    ``hosts`` is sorted by host; ``environments`` by key. A value: the same routes give the same
    table, so two tables compare equal exactly when the proxy needs no new configuration.
    """

    hosts: tuple[HostRoute, ...] = ()
    environments: tuple[EnvironmentRoute, ...] = ()
    domain: str | None = None
    body_limits: Mapping[Tier, int] = field(default_factory=lambda: dict(DEFAULT_BODY_LIMITS))

    def hosts_of(self, key: EnvKey) -> tuple[str, ...]:
        """The hosts of one environment: its generated host first, then its domains as sorted."""
        mine = [h for h in self.hosts if h.key == key]
        mine.sort(key=lambda h: (h.kind != "generated", h.host))
        return tuple(h.host for h in mine)

    def lookup(self, host: str) -> EnvKey | None:
        wanted = host.lower()
        return next((h.key for h in self.hosts if h.host == wanted), None)

    def body_limit(self, route: EnvironmentRoute) -> int:
        if route.max_body_bytes is not None:
            return route.max_body_bytes
        return self.body_limits.get(route.tier, DEFAULT_BODY_LIMITS[route.tier])

    def to_dict(self) -> list[dict[str, str]]:
        """The table as ``GET /v1/routes`` answers it."""
        return [h.to_dict() for h in self.hosts]


def route_table(
    routes: Iterable[EnvironmentRoute],
    domain: str | None,
    body_limits: Mapping[Tier, int] | None = None,
    public: bool = True,
) -> RouteTable:
    """The validated table of ``routes`` under the platform ``domain`` (None: custom domains
    only). Raises ``InvalidState`` listing every problem; nothing partial is returned."""
    ordered = sorted(routes, key=lambda r: r.key)
    keys = [r.key for r in ordered]
    if len(set(keys)) != len(keys):
        raise ValueError(f"an environment is routed twice: {sorted(keys)}")
    problems: list[Problem] = []
    if domain is not None and (found := platform_domain_problem(domain, public)) is not None:
        problems.append(found)
        domain = None
    claims: dict[str, list[tuple[EnvKey, str]]] = {}
    normalised: list[EnvironmentRoute] = []
    for route in ordered:
        found_problems, own = route_hosts(route, domain, public)
        problems.extend(found_problems)
        for host, kind in own.items():
            claims.setdefault(host, []).append((route.key, kind))
        custom = tuple(sorted(h for h, kind in own.items() if kind == "custom"))
        normalised.append(replace(route, domains=custom))
    problems.extend(
        conflict
        for host, owners in sorted(claims.items())
        if (conflict := host_conflict(host, owners))
    )
    if problems:
        raise InvalidState(
            f"the routes cannot be built: {len(problems)} problem"
            + ("s" if len(problems) > 1 else "")
            + "; every route keeps serving as before",
            remediation=f"fix the files listed, {_RECHECK}",
            problems=tuple(problems),
        )
    hosts = tuple(
        HostRoute(host, owners[0][0], owners[0][1]) for host, owners in sorted(claims.items())
    )
    limits = dict(DEFAULT_BODY_LIMITS)
    limits.update(body_limits or {})
    return RouteTable(hosts, tuple(normalised), domain.lower() if domain else None, limits)


def platform_domain_problem(domain: str, public: bool = True) -> Problem | None:
    """Why the platform's ``ingress.domain`` cannot carry generated hosts, or None."""
    why = domain_problem(domain.lower(), public)
    if why is None:
        return None
    return Problem(
        "invalid_domain",
        f"the platform domain: {why}",
        Location("odooops.yaml", key="ingress.domain"),
        f"set ingress.domain to a domain such as apps.example.com, {_RECHECK}",
    )


def route_hosts(
    route: EnvironmentRoute, domain: str | None, public: bool = True
) -> tuple[list[Problem], dict[str, str]]:
    """One route's own problems (allowlist, malformed domains) and its hosts (lower case, each
    once) with their kind. Only a host's other claimants can add a problem (``host_conflict``),
    which is what lets validation re-check one environment's routes alone."""
    problems = list(_allowlist_problems(route))
    found: dict[str, str] = {}
    if domain is not None:
        host = generated_host(route.key, domain)
        why = domain_problem(host, public)
        if why is None:
            found[host] = "generated"
        else:
            problems.append(
                Problem(
                    "invalid_domain",
                    f"{route.key}'s generated host: {why}",
                    Location(environment_file(route.key)),
                    "shorten the environment's or the project's name, or the platform's "
                    f"ingress.domain, {_RECHECK}",
                )
            )
    for index, raw in enumerate(route.domains):
        name = raw.strip().lower()
        why = domain_problem(name, public)
        if why is not None:
            problems.append(
                Problem(
                    "invalid_domain",
                    f"{route.key}: {why}",
                    Location(environment_file(route.key), key=f"domains[{index}]"),
                    f"correct or remove the domain in {environment_file(route.key)}, {_RECHECK}",
                )
            )
            continue
        found.setdefault(name, "custom")  # its own generated host, or a repeat: once
    return problems, found


def _allowlist_problems(route: EnvironmentRoute) -> Iterator[Problem]:
    for index, entry in enumerate(route.allowlist):
        try:
            ipaddress.ip_network(entry.strip(), strict=False)
        except ValueError:
            yield Problem(
                "invalid_allowlist",
                f"{route.key}: allowlist entry {entry[:60]!r} is neither an address nor a network "
                "(such as 203.0.113.7 or 198.51.100.0/24)",
                Location(environment_file(route.key), key=f"allowlist[{index}]"),
                f"correct the entry, {_RECHECK}",
            )


def host_conflict(host: str, owners: Sequence[tuple[EnvKey, str]]) -> Problem | None:
    """The problem of a host claimed by more than one environment (``owners`` in key order),
    naming every claimant; it points at the last custom claimant, since a generated host is not
    the one to change. None for a host with one owner."""
    if len(owners) < 2:
        return None
    named = " and ".join(f"{key} ({kind})" for key, kind in owners)
    blamed = next((key for key, kind in reversed(owners) if kind == "custom"), owners[-1][0])
    return Problem(
        "domain_conflict",
        f"{host} is claimed by {named}: a host reaches one environment",
        Location(environment_file(blamed), key="domains"),
        f"remove {host} from all but one of them, {_RECHECK}",
    )


def describe(table: RouteTable) -> list[dict[str, Any]]:
    """Per environment: its hosts, upstream and limits, for ``odooops routes -o json``."""
    return [
        {
            "project": r.key.project,
            "env": r.key.env,
            "tier": r.tier.value,
            "hosts": list(table.hosts_of(r.key)),
            "internal": r.key.internal_name,
            "upstreams": list(r.upstreams),
            "allowlist": list(r.allowlist),
            "max_body_bytes": table.body_limit(r),
            "maintenance": r.maintenance is not None,
            "asleep": r.asleep,
        }
        for r in table.environments
    ]
