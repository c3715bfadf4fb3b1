"""The whole Caddy configuration for a route table, as one JSON document.

The proxy is configured by replacing its entire configuration in one ``POST /load``: Caddy
starts the new servers on the listeners the old ones hold (nothing is closed, no connection is
refused), then drains the old ones, and keeps the old configuration if the new one fails to
load. So the document is rendered whole from the route table every time, never patched, and
the same table renders the same bytes (keys sorted): "no change" is a byte comparison.

Shape (Caddy 2 JSON, valid from 2.6, Debian bookworm's version):

- ``admin``: a unix socket in a directory the daemon bind-mounts into the proxy container
  (``ADMIN_DIR``); never a TCP port, because the proxy joins every environment's network and
  a port listening there would let any workload rewrite the routes. The socket is the only
  way in; ``origins`` names the Host the daemon sends. Every loaded document carries this
  block: a document without it would move the admin endpoint to Caddy's default and lock the
  daemon out. ``config.persist`` autosaves each load, so a restarted proxy (``caddy run
  --resume``) serves the last routes before the daemon has said anything.
- ``apps.http.servers.https`` listens on ``:443`` with one route per environment, matched by
  its hosts, whose subroute runs in this order: the allowlist (403 to any other source
  address; the connection's own address, never a forwarded header), the waking page of an
  environment that sleeps (503, ``Retry-After``, a page that reloads itself; see
  ``reconciler.core.sleep``), the maintenance page
  (503 with ``Retry-After`` and the environment's text), the tier's body limit
  (``request_body``), ``/websocket*`` to the gevent port (8072), everything else to 8069.
  ``reverse_proxy`` sets ``X-Forwarded-For``/``-Proto``/``-Host`` itself and, with no
  ``trusted_proxies`` anywhere (none are configured, on purpose), replaces whatever a client
  sent in them, so Odoo's ``proxy_mode`` sees the real client address.
- ``logging``: the https server's access log goes, as JSON lines, to ``ACCESS_LOG`` in the
  directory shared with the daemon (not to the container's output): the daemon reads it to
  know when each environment was last asked for, and to wake a sleeping one. Only the time,
  host, method, status and sizes are kept: headers (cookies, authorization), the URI (tokens
  in query strings) and the client's address are deleted before the line is written. The
  file rolls at ``ACCESS_LOG_ROLL_MB`` keeping one old file.
- ``apps.http.servers.http`` listens on ``:80`` and answers every request with a 308 to the
  same URL over HTTPS. Caddy answers ACME HTTP-01 challenges before any route, on every server,
  so the redirect does not hide them.
- ``apps.tls.automation.policies``: one policy for every routed host, with the ACME issuer of
  the settings (Let's Encrypt by default; pebble in tests, whose endpoint is trusted through
  ``trusted_roots_pem_files``). Certificates and the ACME account live in ``storage``, a
  directory on the proxy's data volume.

Two things are added by the driver at load time, from what the storage holds
(``with_stored_certificates``, ``restricted``), because the pure table cannot know them:

- Caddy 2.6 starts every load with an empty certificate cache and fills it from storage only
  after the new servers already accept connections (caddyserver/caddy#5589; 2.7 reuses the
  cache), so a handshake in that gap fails with "no certificate available" (a TLS internal
  error for the client). ``tls.certificates.load_files`` is loaded while the configuration is
  provisioned, before any server starts, so a copy of each stored certificate loaded that way
  covers the gap; ``automatic_https.ignore_loaded_certificates`` keeps the hosts managed
  anyway. Caddy's cache is keyed by the hash of the chain, and an unmanaged copy with the
  managed one's hash would keep the managed one out of the cache, and so out of the timer
  that renews it: the copy's chain therefore repeats its last certificate (an extraneous
  certificate clients ignore, RFC 8446 4.4.2), which makes it a distinct entry.
- Caddy 2.6 registers an ACME account per certificate it starts at once and can save a key
  that does not match the account, after which every order fails. Without an account in
  storage the driver first loads the configuration ``restricted`` to one host, waits for its
  account, then loads the whole.
"""

from __future__ import annotations

import json
import re
from collections.abc import Collection, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import urlsplit

from reconciler.core.ingress import EnvironmentRoute, Maintenance, RouteTable

__all__ = [
    "ACCESS_LOG",
    "ACCESS_LOG_NAME",
    "ADMIN_DIR",
    "ADMIN_ORIGIN",
    "ADMIN_SOCKET",
    "BRIDGE_DIR",
    "FILES_DIR",
    "GRACE_PERIOD",
    "LETS_ENCRYPT",
    "STORAGE_ROOT",
    "AcmeSettings",
    "ProxyConfig",
    "StoredCertificate",
    "acme_account",
    "caddy_config",
    "issuer_key",
    "managed_subjects",
    "restricted",
    "storage_key",
    "with_stored_certificates",
]

ADMIN_DIR = "/run/odooops-proxy"
"""Inside the proxy container: the directory the daemon mounts, holding the admin socket."""

ADMIN_SOCKET = f"{ADMIN_DIR}/admin.sock"
ACCESS_LOG_NAME = "access.log"
ACCESS_LOG = f"{ADMIN_DIR}/{ACCESS_LOG_NAME}"
"""Inside the proxy container: the access log the daemon reads (``reconciler.core.sleep``)."""
ACCESS_LOG_ROLL_MB = 10
_ACCESS_LOGGER = "odooops"
# What an access log line must not carry: credentials, tokens, personal data.
_ACCESS_LOG_DELETED = (
    "request>headers",
    "request>uri",
    "request>remote_ip",
    "request>remote_port",
    "request>tls",
    "resp_headers",
    "user_id",
)
WAKING_RETRY_AFTER = 5  # seconds: a cold Odoo start takes a few
ADMIN_ORIGIN = "odooops-proxy"
"""The Host header the daemon's admin requests carry (Caddy checks it against ``origins``)."""

STORAGE_ROOT = "/data/caddy"
"""Certificates, keys and the ACME account: on the proxy's data volume."""

FILES_DIR = "/data/odooops/files"
"""Inside the proxy container: files a configuration refers to (placed before it is loaded).
On the data volume, like the storage: a proxy made anew (a changed image) resumes its last
configuration, which names these files, before the daemon has loaded anything."""

ACME_ROOTS_FILE = f"{FILES_DIR}/acme-roots.pem"

BRIDGE_DIR = "/data/odooops/bridge"
"""The copies of stored certificates each load carries (``with_stored_certificates``): on the
data volume, beside the storage, so a proxy made anew can resume a configuration naming them."""

LETS_ENCRYPT = "https://acme-v02.api.letsencrypt.org/directory"
INTERNAL_CA = "internal"  # as ``ingress.acme.ca``: Caddy's own CA, not an ACME directory

GRACE_PERIOD = "60s"
"""How long a replaced configuration's in-flight requests may run before they are cut."""

_TOO_LARGE = "request body too large"
_TRY_DURATION = "5s"  # a rollout's rename takes well under this
_TRY_INTERVAL = "50ms"
_FAIL_DURATION = "1s"  # the longest a request waits for a renamed upstream
_PEM_CERTIFICATE = re.compile(
    rb"-----BEGIN CERTIFICATE-----\r?\n.*?-----END CERTIFICATE-----\r?\n?", re.DOTALL
)
_WEBSOCKET_PATHS = ["/websocket*"]  # as Odoo's documented nginx `location /websocket`


@dataclass(frozen=True)
class AcmeSettings:
    """Where certificates come from: the ACME directory ``ca``, an optional account ``email``,
    and ``trusted_roots_pem``, the PEM of the roots that sign the CA's own HTTPS endpoint when
    the system's roots do not (a test CA such as pebble); None trusts the system's."""

    ca: str = LETS_ENCRYPT
    email: str | None = None
    trusted_roots_pem: str | None = None


@dataclass(frozen=True)
class ProxyConfig:
    """A Caddy configuration and the files it refers to, by their path in the container."""

    document: Mapping[str, Any]
    files: Mapping[str, bytes] = field(default_factory=dict)

    def body(self) -> bytes:
        """The document as ``POST /load`` sends it: the same table, the same bytes."""
        return json.dumps(self.document, sort_keys=True, separators=(",", ":")).encode()


def caddy_config(table: RouteTable, acme: AcmeSettings | None = None) -> ProxyConfig:
    """The whole configuration for ``table``; an empty table gives a proxy that serves only
    the HTTPS redirect (the bootstrap configuration is this with no routes)."""
    acme = acme or AcmeSettings()
    files: dict[str, bytes] = {}
    issuer: dict[str, Any] = {"module": "acme", "ca": acme.ca}
    if acme.ca == INTERNAL_CA:
        # Caddy's own local CA: any name, no ACME, no account; browsers trust it only once
        # its root (in the proxy's storage, pki/authorities/local) is installed.
        issuer = {"module": "internal"}
    if acme.email and acme.ca != INTERNAL_CA:
        issuer["email"] = acme.email
    if acme.trusted_roots_pem and acme.ca != INTERNAL_CA:
        files[ACME_ROOTS_FILE] = acme.trusted_roots_pem.encode()
        issuer["trusted_roots_pem_files"] = [ACME_ROOTS_FILE]
    subjects = [h.host for h in table.hosts]
    apps: dict[str, Any] = {
        "http": {
            "grace_period": GRACE_PERIOD,
            "servers": {
                "https": {
                    "listen": [":443"],
                    # No HTTP/3: only TCP ports are published, so h3 must not be advertised.
                    "protocols": ["h1", "h2"],
                    # An environment without a host has no route: an empty host
                    # matcher would match every host.
                    "routes": [
                        _environment(r, table) for r in table.environments if table.hosts_of(r.key)
                    ],
                    "automatic_https": {"disable_redirects": True},
                    "errors": {"routes": [_too_large()]},
                    "logs": {"default_logger_name": _ACCESS_LOGGER},
                },
                "http": {
                    "listen": [":80"],
                    "routes": [{"handle": [_redirect_to_https()], "terminal": True}],
                },
            },
        },
    }
    if subjects:
        apps["tls"] = {"automation": {"policies": [{"subjects": subjects, "issuers": [issuer]}]}}
    if acme.ca == INTERNAL_CA:
        # Caddy installs its local CA's root in the trust store of the machine it runs on at
        # every load (about a second with Caddy 2.6, a second during which a sleeping
        # environment's waking page or a rollout's switch waits); the proxy's own container
        # has no use for it: browsers are told to trust the root, not the proxy.
        apps["pki"] = {"certificate_authorities": {"local": {"install_trust": False}}}
    document = {
        "admin": {
            "listen": f"unix/{ADMIN_SOCKET}",
            "origins": [ADMIN_ORIGIN],
            "config": {"persist": True},
        },
        "storage": {"module": "file_system", "root": STORAGE_ROOT},
        "logging": _logging(),
        "apps": apps,
    }
    return ProxyConfig(document, files)


@dataclass(frozen=True)
class StoredCertificate:
    """A certificate in Caddy's storage: its host, the PEM chain (leaf first) and key."""

    host: str
    chain_pem: bytes
    key_pem: bytes


def issuer_key(ca: str) -> str:
    """The folder an ACME CA's certificates and accounts have in Caddy's storage, as certmagic
    names it: the directory URL's host and path, made one safe path component
    (``https://pebble:14000/dir`` gives ``pebble-14000-dir``)."""
    parts = urlsplit(ca)
    key = parts.netloc if parts.scheme else ca
    path = parts.path.replace("\\", "/").replace("/", "-").strip("-") if parts.scheme else ""
    if path:
        key += "-" + path
    return storage_key(key)


def storage_key(name: str) -> str:
    """``name`` as a component of a path in Caddy's storage (certmagic's ``StorageKeys.Safe``)."""
    name = name.lower().strip()
    for old, new in ((" ", "_"), ("+", "_plus_"), ("*", "wildcard_"), (":", "-"), ("..", "")):
        name = name.replace(old, new)
    return re.sub(r"[^\w@.-]", "", name)


def managed_subjects(config: ProxyConfig) -> list[str]:
    """The hosts the configuration obtains certificates for, as listed in its policies."""
    tls = config.document.get("apps", {}).get("tls", {})
    return [s for p in tls.get("automation", {}).get("policies", []) for s in p["subjects"]]


def acme_account(config: ProxyConfig) -> tuple[str, str | None] | None:
    """The ACME CA and account email of the configuration's certificates (None: no ACME)."""
    tls = config.document.get("apps", {}).get("tls", {})
    for policy in tls.get("automation", {}).get("policies", []):
        for issuer in policy.get("issuers", []):
            if issuer.get("module") == "acme":
                return str(issuer["ca"]), issuer.get("email")
    return None


def restricted(config: ProxyConfig, keep: Collection[str]) -> ProxyConfig:
    """``config`` obtaining certificates for the ``keep`` hosts only: every route still serves,
    the other hosts are left out of automatic HTTPS (``skip_certificates``) until the whole
    configuration is loaded."""
    document = json.loads(config.body())
    skipped = [s for s in managed_subjects(config) if s not in keep]
    if skipped:
        https = document["apps"]["http"]["servers"]["https"]
        https["automatic_https"]["skip_certificates"] = skipped
    return ProxyConfig(document, config.files)


def with_stored_certificates(
    config: ProxyConfig, stored: Iterable[StoredCertificate]
) -> ProxyConfig:
    """``config`` loading a copy of each stored certificate of its hosts while it is
    provisioned (``BRIDGE_DIR``), so no handshake finds the new configuration's cache empty;
    the hosts stay managed and renewed by automatic HTTPS. The copy's chain repeats its last
    certificate to be a distinct cache entry (see the module's docstring)."""
    wanted = set(managed_subjects(config))
    files = dict(config.files)
    loaded: list[dict[str, Any]] = []
    for cert in sorted(stored, key=lambda c: c.host):
        blocks = _PEM_CERTIFICATE.findall(cert.chain_pem)
        if cert.host not in wanted or not blocks or not cert.key_pem:
            continue
        chain = b"".join(b if b.endswith(b"\n") else b + b"\n" for b in [*blocks, blocks[-1]])
        base = f"{BRIDGE_DIR}/{storage_key(cert.host)}"
        files[f"{base}.crt"], files[f"{base}.key"] = chain, cert.key_pem
        loaded.append({"certificate": f"{base}.crt", "key": f"{base}.key", "format": "pem"})
    if not loaded:
        return config
    document = json.loads(config.body())
    document["apps"]["tls"]["certificates"] = {"load_files": loaded}
    https = document["apps"]["http"]["servers"]["https"]
    https["automatic_https"]["ignore_loaded_certificates"] = True
    return ProxyConfig(document, files)


def _environment(route: EnvironmentRoute, table: RouteTable) -> dict[str, Any]:
    steps: list[dict[str, Any]] = []
    if route.allowlist:
        steps.append(
            {
                "match": [
                    {"not": [{"remote_ip": {"ranges": [a.strip() for a in route.allowlist]}}]}
                ],
                "handle": [_static(403, "Forbidden: this address may not reach this site.\n")],
                "terminal": True,
            }
        )
    if route.asleep:
        steps.append({"handle": [_waking()], "terminal": True})
    if route.maintenance is not None:
        steps.append({"handle": [_maintenance(route.maintenance)], "terminal": True})
    steps.append({"handle": [{"handler": "request_body", "max_size": table.body_limit(route)}]})
    steps.append(
        {
            "match": [{"path": _WEBSOCKET_PATHS}],
            "handle": [_proxy(route.upstreams, route.websocket_port)],
            "terminal": True,
        }
    )
    steps.append({"handle": [_proxy(route.upstreams, route.http_port)]})
    return {
        "match": [{"host": list(table.hosts_of(route.key))}],
        "handle": [{"handler": "subroute", "routes": steps}],
        "terminal": True,
    }


def _too_large() -> dict[str, Any]:
    """A body over the limit: Caddy stops reading it and ``reverse_proxy`` fails with Go's
    "request body too large", which it reports as 502; the client is told 413 instead."""
    return {
        "match": [{"vars_regexp": {"{http.error.message}": {"pattern": _TOO_LARGE}}}],
        "handle": [_static(413, "Request body too large for this site.\n")],
    }


def _proxy(upstreams: Sequence[str], port: int) -> dict[str, Any]:
    """The first upstream that answers: a dial that fails (the name does not resolve, the
    port refuses) marks that upstream down for ``_FAIL_DURATION`` and the request is tried
    on the next one, for up to ``_TRY_DURATION``. Only a failed dial is retried for any
    method (nothing was sent); an answer, even a 5xx, is passed on as it is."""
    return {
        "handler": "reverse_proxy",
        "upstreams": [{"dial": f"{u}:{port}"} for u in upstreams],
        "load_balancing": {
            "selection_policy": {"policy": "first"},
            "try_duration": _TRY_DURATION,
            "try_interval": _TRY_INTERVAL,
        },
        "health_checks": {"passive": {"fail_duration": _FAIL_DURATION, "max_fails": 1}},
    }


def _redirect_to_https() -> dict[str, Any]:
    return {
        "handler": "static_response",
        "status_code": 308,
        "headers": {"Location": ["https://{http.request.host}{http.request.uri}"]},
    }


def _maintenance(page: Maintenance) -> dict[str, Any]:
    response = _static(503, page.text if page.text.endswith("\n") else page.text + "\n")
    response["headers"]["Retry-After"] = [str(max(0, int(page.retry_after)))]
    response["headers"]["Cache-Control"] = ["no-store"]
    return response


def _logging() -> dict[str, Any]:
    """Access lines to ``ACCESS_LOG`` (filtered), every other line to the container's output
    as before; the access lines are kept out of it."""
    access = f"http.log.access.{_ACCESS_LOGGER}"
    return {
        "logs": {
            "default": {"exclude": [access]},
            _ACCESS_LOGGER: {
                "writer": {
                    "output": "file",
                    "filename": ACCESS_LOG,
                    "roll_size_mb": ACCESS_LOG_ROLL_MB,
                    "roll_keep": 1,
                },
                "encoder": {
                    "format": "filter",
                    "wrap": {"format": "json"},
                    "fields": {f: {"filter": "delete"} for f in _ACCESS_LOG_DELETED},
                },
                "include": [access],
            },
        }
    }


_WAKING_PAGE = f"""<!doctype html>
<html lang="en">
<head>
<meta charset="utf-8">
<meta http-equiv="refresh" content="{WAKING_RETRY_AFTER}">
<title>Waking up</title>
</head>
<body style="font-family: sans-serif; text-align: center; margin-top: 4em">
<h1>Waking up</h1>
<p>This environment was asleep after a while without visits. It is starting now;
this page reloads by itself in a few seconds.</p>
</body>
</html>
"""


def _waking() -> dict[str, Any]:
    """A sleeping environment's answer to every request: nothing of the environment in it
    (no name, no setting), so it tells a visitor nothing they did not type."""
    return {
        "handler": "static_response",
        "status_code": 503,
        "headers": {
            "Content-Type": ["text/html; charset=utf-8"],
            "Retry-After": [str(WAKING_RETRY_AFTER)],
            "Cache-Control": ["no-store"],
        },
        "body": _literal(_WAKING_PAGE),
    }


def _static(status: int, text: str) -> dict[str, Any]:
    return {
        "handler": "static_response",
        "status_code": status,
        "headers": {"Content-Type": ["text/plain; charset=utf-8"]},
        "body": _literal(text),
    }


def _literal(text: str) -> str:
    """``text`` with Caddy's placeholders escaped: a response body is expanded by Caddy, so an
    environment's maintenance text ``{env.SECRET}`` would otherwise print the proxy's
    environment. ``\\{`` and ``\\}`` are Caddy's escapes (one backslash before a brace is
    consumed, anything else is kept as written)."""
    return text.replace("{", "\\{").replace("}", "\\}")
