"""Caddy driver: the one reverse proxy of a daemon instance, its networks, routes and certificates.

The proxy is a container the daemon owns, named ``odooops-<instance>-proxy`` and labelled like
every object of the instance (``odooops.instance``, ``odooops.managed-by``, plus
``odooops.role=proxy`` and a hash of its settings: changed settings replace it). It publishes
80 and 443 on the configured host address, keeps certificates and the ACME account on a data
volume (``/data``) and its autosaved configuration on a config volume (``/config``), and
starts with ``caddy run --resume``: after a restart it serves the last loaded routes at once,
whether or not the daemon is up. Docker restarts it with the host (``unless-stopped``).

The admin API is a unix socket in a host directory the daemon owns (``admin_dir``, mode 0700,
bind-mounted at ``reconciler.core.caddyconfig.ADMIN_DIR``). Not a TCP port: the proxy joins
every environment's network, and Docker's port publishing forwards to the container's
network address, not its loopback, so a published admin port would also listen where every
workload can reach it and rewrite the routes. The socket is reachable by the daemon's host
user (and root) only. The daemon must therefore run where ``admin_dir`` is (on the host, or
in a container that mounts the same host path at the same place).

``load`` sends the whole configuration in one ``POST /load``; Caddy swaps it in without
closing its listeners and keeps the previous one if the new one fails. Certificates are read
from the storage on the data volume (``get_archive`` of the certificates folder, parsed
here): Caddy's API reports certificates only for its internal CA. Each load carries a copy of
the stored certificates of its hosts, and the first load of a storage without an ACME account
obtains one host's certificate before the others (both in ``reconciler.core.caddyconfig``).

Caddy 2.6 binds each configuration's listeners anew with ``SO_REUSEPORT`` and closes the old
ones after the swap; Linux drops the connections still queued on a closed one, which a client
sees as a reset handshake. ``net.ipv4.tcp_migrate_req`` (Linux 5.14, per network namespace)
moves them to the new listener instead, so the container gets it where the kernel has it.
"""

from __future__ import annotations

import contextlib
import hashlib
import io
import json
import os
import re
import socket
import tarfile
import time
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path, PurePosixPath
from typing import Any, Literal, Protocol
from urllib.parse import urlsplit

import docker
import docker.errors
import httpx
import requests.exceptions
from cryptography import x509
from cryptography.hazmat.primitives import serialization

from reconciler.core.caddyconfig import (
    ACCESS_LOG_NAME,
    ADMIN_DIR,
    ADMIN_ORIGIN,
    FILES_DIR,
    STORAGE_ROOT,
    ProxyConfig,
    StoredCertificate,
    acme_account,
    caddy_config,
    issuer_key,
    managed_subjects,
    restricted,
    storage_key,
    with_stored_certificates,
)
from reconciler.core.errors import DriverError
from reconciler.core.ingress import RouteTable
from reconciler.core.model import LABEL_PREFIX, check_instance

__all__ = ["CaddyDriver", "Certificate", "ProxySettings", "ReverseProxy"]

BOOTSTRAP_FILE = f"{FILES_DIR}/bootstrap.json"
ADMIN_SOCKET_NAME = "admin.sock"
LOAD_TIMEOUT = 90.0  # above the configuration's grace period: a load waits for the old to drain
ACCOUNT_TIMEOUT = 60.0  # how long a first load waits for the ACME account before the others
_MIGRATE_REQ = "net.ipv4.tcp_migrate_req"
_LOG_LINES = 400
_PORT_TAKEN = re.compile(r"port is already allocated|address already in use", re.IGNORECASE)


@dataclass(frozen=True)
class ProxySettings:
    """How the proxy container is made.

    ``http_port``/``https_port`` are the host ports for 80 and 443 (None: Docker picks a free
    one, as tests do). ``labels`` are added to every object the driver makes (tests mark their
    run with them).
    """

    image: str
    admin_dir: Path
    publish_host: str = "0.0.0.0"
    http_port: int | None = 80
    https_port: int | None = 443
    start_timeout: float = 30.0
    labels: Mapping[str, str] = field(default_factory=dict)

    def spec_hash(self) -> str:
        """What the container was made from: a change replaces it."""
        spec = {
            "image": self.image,
            "admin_dir": str(self.admin_dir),
            "publish": [self.publish_host, self.http_port, self.https_port],
            "bootstrap": BOOTSTRAP_FILE,
            "sysctls": _sysctls(),
        }
        return hashlib.sha256(json.dumps(spec, sort_keys=True).encode()).hexdigest()[:16]


@dataclass(frozen=True)
class Certificate:
    """What the proxy's storage holds for one host: the newest certificate, if any."""

    host: str
    not_after: datetime | None = None
    issuer: str | None = None  # the CA's storage key, e.g. acme-v02.api.letsencrypt.org-directory

    @property
    def managed(self) -> bool:
        """A certificate is stored for the host (it may still have expired: see ``days_left``)."""
        return self.not_after is not None

    def days_left(self, now: datetime) -> float | None:
        if self.not_after is None:
            return None
        return (self.not_after - now).total_seconds() / 86400

    def to_dict(self) -> dict[str, Any]:
        return {
            "host": self.host,
            "managed": self.managed,
            "not_after": self.not_after.isoformat() if self.not_after else None,
            "issuer": self.issuer,
        }


class ReverseProxy(Protocol):
    """What the engine needs of the shared reverse proxy."""

    def ensure(self) -> None:
        """The proxy runs and answers its admin API (made or started if needed)."""

    def join(self, networks: Iterable[str]) -> None:
        """The proxy is on exactly these environment networks (and its own)."""

    def load(self, config: ProxyConfig) -> None:
        """Replace the whole configuration atomically; the previous one stays on failure."""

    def certificates(self, hosts: Iterable[str] | None = None) -> dict[str, Certificate]:
        """Per host, the certificate the proxy holds (``managed`` False when none yet)."""


def _label(name: str) -> str:
    return LABEL_PREFIX + name


class CaddyDriver:
    """The daemon instance's Caddy container, driven through Docker and Caddy's admin socket."""

    def __init__(
        self, instance: str, settings: ProxySettings, client: docker.DockerClient | None = None
    ) -> None:
        self.instance = check_instance(instance)
        self.settings = settings
        self.name = f"odooops-{self.instance}-proxy"
        self.network = self.name
        self.data_volume = f"{self.name}-data"
        self.config_volume = f"{self.name}-config"
        self.socket = Path(settings.admin_dir) / ADMIN_SOCKET_NAME
        self._own_client = client is None
        try:
            self.client = client or docker.from_env()
        except docker.errors.DockerException as exc:
            raise _unreachable("connect to the Docker engine", exc) from exc

    def close(self) -> None:
        if self._own_client:
            self.client.close()

    # ---------------------------------------------------------------------------- labels
    def labels(self, **extra: str) -> dict[str, str]:
        found = dict(self.settings.labels)
        found.update(
            {
                _label("instance"): self.instance,
                _label("managed-by"): "odooops",
                _label("role"): "proxy",
            }
        )
        found.update({_label(k.replace("_", "-")): v for k, v in extra.items()})
        return found

    def _check_owner(self, labels: Mapping[str, str] | None, kind: str, name: str) -> None:
        owner = (labels or {}).get(_label("instance"))
        if owner == self.instance:
            return
        made_by = f"daemon instance {owner!r}" if owner else "something other than OdooOps"
        raise DriverError(
            f"{kind} {name} was made by {made_by}, not by this daemon ({self.instance}): "
            "left alone",
            code="claimed_by_other_instance",
            remediation=f"look at it with: docker {kind} inspect {name}",
        )

    # ---------------------------------------------------------------------------- lifecycle
    def ensure(self) -> None:
        """Make (or replace, or start) the proxy container and wait for its admin socket."""
        with _errors(f"set up the proxy {self.name}"):
            self._admin_dir()
            self._own_network()
            for volume in (self.data_volume, self.config_volume):
                self._volume(volume)
            container = self._container()
            if container is not None and container.labels.get(_label("spec-hash")) != (
                self.settings.spec_hash()
            ):
                container.remove(force=True)
                container = None
            if container is None:
                container = self._create()
            if container.status != "running":
                self._start(container)
        self._wait_admin()

    def remove(self, *, volumes: bool = False) -> None:
        """Remove the container and its network; its volumes (certificates, ACME account)
        only when asked: a new proxy reuses them instead of asking the CA again."""
        with _errors(f"remove the proxy {self.name}"):
            with contextlib.suppress(docker.errors.NotFound):
                container = self.client.containers.get(self.name)
                self._check_owner(container.labels, "container", self.name)
                container.remove(force=True)
            for net in self.client.networks.list(names=[self.network]):
                if (
                    net.name == self.network
                    and (net.attrs.get("Labels") or {}).get(_label("instance")) == self.instance
                ):
                    net.remove()
            if volumes:
                for name in (self.data_volume, self.config_volume):
                    with contextlib.suppress(docker.errors.NotFound):
                        volume = self.client.volumes.get(name)
                        self._check_owner(volume.attrs.get("Labels"), "volume", name)
                        volume.remove(force=True)

    def ports(self) -> dict[int, tuple[str, int]]:
        """Where 80 and 443 are published on the host: ``{80: (address, port), ...}``."""
        with _errors(f"inspect the proxy {self.name}"):
            container = self._running()
            found: dict[int, tuple[str, int]] = {}
            for spec, bindings in (container.attrs["NetworkSettings"]["Ports"] or {}).items():
                port = int(spec.split("/")[0])
                if bindings:
                    found[port] = (bindings[0]["HostIp"], int(bindings[0]["HostPort"]))
            return found

    def logs(self, tail: int = 40) -> str:
        with _errors(f"read the proxy's log ({self.name})"):
            container = self.client.containers.get(self.name)
            return bytes(container.logs(tail=tail)).decode(errors="replace")

    # ---------------------------------------------------------------------------- networks
    def networks(self) -> set[str]:
        """The environment networks the proxy is on (its own network left out)."""
        with _errors(f"inspect the proxy {self.name}"):
            container = self._running()
            attached = container.attrs["NetworkSettings"]["Networks"] or {}
            return {name for name in attached if name != self.network}

    def join(self, networks: Iterable[str]) -> None:
        """Be on exactly ``networks`` (and the proxy's own): connect to the missing ones, leave
        the others. Only networks this instance made are joined."""
        wanted = set(networks) - {self.network}
        with _errors(f"connect the proxy {self.name} to its networks"):
            container = self._running()
            attached = set(container.attrs["NetworkSettings"]["Networks"] or {})
            for name in sorted(wanted - attached):
                try:
                    net = self.client.networks.get(name)
                except docker.errors.NotFound:
                    raise DriverError(
                        f"the proxy cannot join network {name}: it does not exist",
                        code="proxy_unavailable",
                        retryable=True,
                        remediation="nothing to do if the environment is being made: the next "
                        "run joins it; to see the environments: odooops status",
                    ) from None
                self._check_owner(net.attrs.get("Labels"), "network", name)
                net.connect(container)
            for name in sorted(attached - wanted - {self.network}):
                with contextlib.suppress(docker.errors.NotFound):
                    self.client.networks.get(name).disconnect(container)

    # ---------------------------------------------------------------------------- routes
    def load(self, config: ProxyConfig) -> None:
        """Replace the whole configuration, with a copy of the stored certificates of its
        hosts (so none is missing while Caddy 2.6 refills its cache).

        When the storage holds no account with the configuration's ACME CA and more than one
        host needs a certificate, the configuration restricted to one host is loaded first
        and the account awaited (``ACCOUNT_TIMEOUT``): Caddy 2.6 would otherwise register
        an account per certificate at once and may save a key that matches none of them.
        ``acme_failed`` when the account does not come; the restricted configuration then
        serves every route, and the next load tries again.
        """
        subjects = managed_subjects(config)
        account = acme_account(config)
        issuer = issuer_key(account[0]) if account else None
        with _errors(f"read the storage of {self.name}"):
            archive = self._archive(f"{STORAGE_ROOT}/certificates")
        stored = _stored_certificates(archive, issuer, datetime.now(UTC))
        config = with_stored_certificates(config, stored)
        if account is not None and len(subjects) > 1 and not self._has_account(*account):
            self._load(restricted(config, subjects[:1]))
            self._wait_account(*account)
        self._load(config)

    def _load(self, config: ProxyConfig) -> None:
        """Place the files ``config`` refers to, then replace the whole configuration in one
        ``POST /load``. Caddy keeps the previous configuration when it refuses the new one."""
        if config.files:
            with _errors(f"copy files into the proxy {self.name}"):
                self._put(self._running(), config.files)
        answer = self._admin("POST", "/load", body=config.body(), timeout=LOAD_TIMEOUT)
        if answer.status_code != 200:
            said = _caddy_error(answer)
            raise DriverError(
                f"the proxy refused the new configuration ({answer.status_code}): {said}; "
                "it keeps serving the previous one",
                code="proxy_config_rejected",
                retryable=False,
                remediation=f"look at the proxy's log: docker logs {self.name}",
            )

    def _has_account(self, ca: str, email: str | None) -> bool:
        """An ACME account with ``ca`` (for ``email``, or any without one) is in storage."""
        users = f"{STORAGE_ROOT}/acme/{issuer_key(ca)}/users"
        with _errors(f"read the storage of {self.name}"):
            return _holds_account(self._archive(users), email)

    def _wait_account(self, ca: str, email: str | None) -> None:
        deadline = time.monotonic() + ACCOUNT_TIMEOUT
        while not self._has_account(ca, email):
            if time.monotonic() >= deadline:
                raise DriverError(
                    f"no ACME account with {ca} after {ACCOUNT_TIMEOUT:.0f} s; every route "
                    "serves, and a certificate is asked for one host only until it exists"
                    + _acme_excerpt(self.logs(_LOG_LINES), [urlsplit(ca).netloc or ca]),
                    code="acme_failed",
                    retryable=True,
                    remediation="check that the proxy reaches the CA (the next run tries "
                    f"again); the proxy's log: docker logs {self.name}",
                )
            time.sleep(0.5)

    def config(self) -> Any:
        """The configuration in force, as Caddy reports it."""
        answer = self._admin("GET", "/config/")
        if answer.status_code != 200:
            raise DriverError(
                f"the proxy's admin API answered {answer.status_code}: {_caddy_error(answer)}",
                code="proxy_unavailable",
                remediation=f"docker logs {self.name}",
            )
        return answer.json()

    # ---------------------------------------------------------------------------- certificates
    def certificates(self, hosts: Iterable[str] | None = None) -> dict[str, Certificate]:
        """The newest certificate per host in the proxy's storage (read from the data volume).

        With ``hosts``, exactly those hosts (``managed`` False for one without a certificate);
        without, every host that has one.
        """
        found: dict[str, Certificate] = {}
        with _errors(f"read the certificates of {self.name}"):
            for cert in _parse_storage(self._archive(f"{STORAGE_ROOT}/certificates")):
                held = found.get(cert.host)
                if held is None or (held.not_after or datetime.min.replace(tzinfo=UTC)) < (
                    cert.not_after or datetime.min.replace(tzinfo=UTC)
                ):
                    found[cert.host] = cert
        if hosts is None:
            return found
        return {h: found.get(h, Certificate(h)) for h in (x.lower() for x in hosts)}

    def wait_certificates(
        self, hosts: Iterable[str], timeout: float = 60.0, interval: float = 0.5
    ) -> dict[str, Certificate]:
        """Wait until every host has an unexpired certificate; ``acme_failed`` with what Caddy
        logged about the missing ones when ``timeout`` passes first (Caddy keeps retrying by
        itself, with backoff, so this is a report, not a give-up)."""
        wanted = sorted({h.lower() for h in hosts})
        deadline = time.monotonic() + timeout
        while True:
            now = datetime.now(UTC)
            held = self.certificates(wanted)
            missing = [h for h, c in held.items() if not c.managed or (c.days_left(now) or 0) <= 0]
            if not missing:
                return held
            if time.monotonic() >= deadline:
                raise DriverError(
                    f"no certificate for {', '.join(missing)} after {timeout:.0f} s"
                    + _acme_excerpt(self.logs(_LOG_LINES), missing),
                    code="acme_failed",
                    retryable=True,
                    remediation="check that the hosts' DNS points at this machine and that "
                    f"ports 80 and 443 reach it; the proxy's log: docker logs {self.name}",
                )
            time.sleep(interval)

    # ---------------------------------------------------------------------------- internals
    def _archive(self, path: str) -> bytes:
        """A tar of ``path`` in the running proxy; empty when it does not exist (yet)."""
        try:
            stream, _ = self._running().get_archive(path)
        except docker.errors.NotFound:
            return b""
        return b"".join(stream)

    def _admin_dir(self) -> None:
        path = Path(self.settings.admin_dir)
        path.mkdir(parents=True, exist_ok=True)
        os.chmod(path, 0o700)
        # The access log, made here so it is the daemon's user's and readable by it: Caddy
        # (root in its container) appends to a file that exists, and a roll keeps the owner
        # and mode of the file it replaces. The directory keeps it from anyone else.
        access_log = path / ACCESS_LOG_NAME
        if not access_log.exists():
            access_log.touch(mode=0o644)

    def _own_network(self) -> None:
        found = [
            n for n in self.client.networks.list(names=[self.network]) if n.name == self.network
        ]
        for net in found:
            self._check_owner(net.attrs.get("Labels"), "network", self.network)
        if not found:
            self.client.networks.create(self.network, driver="bridge", labels=self.labels())

    def _volume(self, name: str) -> None:
        try:
            volume = self.client.volumes.get(name)
        except docker.errors.NotFound:
            self.client.volumes.create(name=name, labels=self.labels())
            return
        self._check_owner(volume.attrs.get("Labels"), "volume", name)

    def _container(self) -> Any:
        try:
            container = self.client.containers.get(self.name)
        except docker.errors.NotFound:
            return None
        self._check_owner(container.labels, "container", self.name)
        return container

    def _running(self) -> Any:
        container = self._container()
        if container is None or container.status != "running":
            state = "does not exist" if container is None else f"is {container.status}"
            raise DriverError(
                f"the proxy {self.name} {state}",
                code="proxy_unavailable",
                remediation="the daemon starts it on its next run; to see why it stopped: "
                f"docker logs {self.name}",
            )
        return container

    def _create(self) -> Any:
        s = self.settings
        # None as a host port: Docker picks a free one.
        ports: dict[str, Any] = {
            "80/tcp": (s.publish_host, s.http_port),
            "443/tcp": (s.publish_host, s.https_port),
        }
        container = self.client.containers.create(
            s.image,
            name=self.name,
            command=["caddy", "run", "--resume", "--config", BOOTSTRAP_FILE],
            environment={"XDG_CONFIG_HOME": "/config", "XDG_DATA_HOME": "/data"},
            labels=self.labels(spec_hash=s.spec_hash()),
            network=self.network,
            ports=ports,
            volumes={
                self.data_volume: {"bind": "/data", "mode": "rw"},
                self.config_volume: {"bind": "/config", "mode": "rw"},
                str(s.admin_dir): {"bind": ADMIN_DIR, "mode": "rw"},
            },
            restart_policy={"Name": "unless-stopped"},  # type: ignore[arg-type]
            sysctls=_sysctls(),
            cap_drop=["ALL"],
            cap_add=["NET_BIND_SERVICE"],
            security_opt=["no-new-privileges"],
        )
        # The bootstrap is the configuration of no routes: it sets the admin socket. With
        # --resume it is used only until the first load has been autosaved.
        self._put(container, {BOOTSTRAP_FILE: caddy_config(RouteTable()).body()})
        return container

    def _start(self, container: Any) -> None:
        try:
            container.start()
        except docker.errors.APIError as exc:
            said = str(exc.explanation or exc)
            taken = _PORT_TAKEN.search(said)
            raise DriverError(
                f"the proxy {self.name} cannot start: {said}",
                code="proxy_unavailable",
                retryable=True,
                remediation=(
                    f"free ports {self.settings.http_port} and {self.settings.https_port} on "
                    f"{self.settings.publish_host} (ss -ltnp shows who holds them)"
                    if taken
                    else f"docker logs {self.name}"
                ),
            ) from exc

    def _put(self, container: Any, files: Mapping[str, bytes]) -> None:
        """Write ``files`` (absolute paths) into the container, making their folders."""
        buffer = io.BytesIO()
        with tarfile.open(fileobj=buffer, mode="w") as tar:
            folders: set[str] = set()
            for path, data in sorted(files.items()):
                parts = PurePosixPath(path).relative_to("/").parts
                for depth in range(1, len(parts)):
                    folder = "/".join(parts[:depth])
                    if folder not in folders:
                        folders.add(folder)
                        info = tarfile.TarInfo(folder)
                        info.type, info.mode = tarfile.DIRTYPE, 0o755
                        tar.addfile(info)
                info = tarfile.TarInfo("/".join(parts))
                mode = 0o600 if path.endswith(".key") else 0o644
                info.size, info.mode, info.mtime = len(data), mode, int(time.time())
                tar.addfile(info, io.BytesIO(data))
        container.put_archive("/", buffer.getvalue())

    def _wait_admin(self) -> None:
        deadline = time.monotonic() + self.settings.start_timeout
        while True:
            try:
                answer = self._admin("GET", "/config/admin", timeout=5.0)
                if answer.status_code == 200:
                    return
                last = f"{answer.status_code}: {_caddy_error(answer)}"
            except DriverError as exc:
                last = exc.message
            container = self._container()
            if container is None or container.status in ("exited", "dead"):
                raise DriverError(
                    f"the proxy {self.name} stopped while starting: "
                    + self.logs(10).strip()[-800:],
                    code="proxy_unavailable",
                    retryable=True,
                    remediation=f"docker logs {self.name}",
                )
            if time.monotonic() >= deadline:
                raise DriverError(
                    f"the proxy {self.name} did not answer on {self.socket} within "
                    f"{self.settings.start_timeout:.0f} s ({last})",
                    code="proxy_unavailable",
                    retryable=True,
                    remediation=f"docker logs {self.name}",
                )
            time.sleep(0.2)

    def _admin(
        self,
        method: Literal["GET", "POST"],
        path: str,
        body: bytes | None = None,
        timeout: float = 30.0,
    ) -> httpx.Response:
        headers = {"Content-Type": "application/json"} if body is not None else {}
        try:
            # httpcore leaves a unix socket it failed to connect unclosed (a ResourceWarning
            # when it is collected): a connection is tried here first, and closed.
            with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as probe:
                probe.settimeout(timeout)
                probe.connect(str(self.socket))
        except OSError as exc:
            raise DriverError(
                f"the proxy's admin API ({self.socket}) is unreachable: {exc}",
                code="proxy_unavailable",
                retryable=True,
                remediation=f"is the proxy running? docker ps --filter name={self.name}",
            ) from exc
        transport = httpx.HTTPTransport(uds=str(self.socket))
        try:
            with httpx.Client(
                transport=transport, base_url=f"http://{ADMIN_ORIGIN}", timeout=timeout
            ) as client:
                return client.request(method, path, content=body, headers=headers)
        except httpx.HTTPError as exc:
            raise DriverError(
                f"the proxy's admin API ({self.socket}) is unreachable: {exc}",
                code="proxy_unavailable",
                retryable=True,
                remediation=f"is the proxy running? docker ps --filter name={self.name}",
            ) from exc


def _caddy_error(answer: httpx.Response) -> str:
    with contextlib.suppress(ValueError):
        doc = answer.json()
        if isinstance(doc, dict) and "error" in doc:
            return str(doc["error"])
    return answer.text.strip()[:500] or "(no message)"


def _parse_storage(archive: bytes) -> Iterator[Certificate]:
    """Certificates of Caddy's file storage, from a tar of ``<storage>/certificates``:
    ``certificates/<issuer>/<host>/<host>.crt``, a PEM chain whose first block is the leaf."""
    if not archive:
        return
    with tarfile.open(fileobj=io.BytesIO(archive)) as tar:
        for member in tar:
            parts = PurePosixPath(member.name).parts
            if not member.isfile() or len(parts) != 4 or parts[3] != f"{parts[2]}.crt":
                continue
            handle = tar.extractfile(member)
            if handle is None:
                continue
            try:
                leaf = x509.load_pem_x509_certificate(handle.read())
            except ValueError:
                continue  # a half-written file: the next look sees it whole
            yield Certificate(parts[2].lower(), leaf.not_valid_after_utc, parts[1])


def _stored_certificates(
    archive: bytes, issuer: str | None, now: datetime
) -> list[StoredCertificate]:
    """The unexpired certificates and keys of a tar of ``<storage>/certificates`` issued by
    ``issuer`` (a storage key; None: by any), each checked to be whole: a certificate Caddy
    is writing, or whose key does not match, would make Caddy refuse the load."""
    if not archive:
        return []
    found: dict[tuple[str, str], dict[str, bytes]] = {}
    with tarfile.open(fileobj=io.BytesIO(archive)) as tar:
        for member in tar:
            parts = PurePosixPath(member.name).parts
            if not member.isfile() or len(parts) != 4 or (issuer and parts[1] != issuer):
                continue
            stem, _, ext = parts[3].rpartition(".")
            handle = tar.extractfile(member)
            if stem == parts[2] and ext in ("crt", "key") and handle is not None:
                found.setdefault((parts[1], parts[2]), {})[ext] = handle.read()
    newest: dict[str, tuple[datetime, StoredCertificate]] = {}
    for (_, host), pair in sorted(found.items()):
        try:
            leaf = x509.load_pem_x509_certificate(pair["crt"])
            key = serialization.load_pem_private_key(pair["key"], password=None)
        except (KeyError, ValueError, TypeError):
            continue
        if leaf.not_valid_after_utc <= now or key.public_key() != leaf.public_key():
            continue
        if host not in newest or newest[host][0] < leaf.not_valid_after_utc:
            newest[host] = (
                leaf.not_valid_after_utc,
                StoredCertificate(host.lower(), pair["crt"], pair["key"]),
            )
    return [cert for _, cert in newest.values()]


def _holds_account(archive: bytes, email: str | None) -> bool:
    """A tar of ``<storage>/acme/<issuer>/users`` holds a registration: for ``email``, in its
    own folder; without one, any (Caddy then uses the most recent)."""
    if not archive:
        return False
    with tarfile.open(fileobj=io.BytesIO(archive)) as tar:
        for member in tar:
            parts = PurePosixPath(member.name).parts
            registration = member.isfile() and len(parts) == 3 and parts[2].endswith(".json")
            if registration and (email is None or parts[1] == storage_key(email)):
                return True
    return False


def _acme_excerpt(log: str, hosts: Iterable[str]) -> str:
    """The last errors Caddy logged (one JSON object a line) about ``hosts``, short."""
    wanted = list(hosts)
    lines = []
    for line in log.splitlines():
        try:
            entry = json.loads(line)
        except ValueError:
            continue
        if not isinstance(entry, dict) or entry.get("level") != "error":
            continue
        if any(h in line for h in wanted):
            lines.append(f"{entry.get('msg', '')}: {entry.get('error', '')}".strip())
    if not lines:
        return " (the proxy logged no error about them yet)"
    return "; the proxy said: " + " | ".join(lines[-3:])[:1200]


def _sysctls() -> dict[str, str]:
    """``tcp_migrate_req`` where the kernel has it (it is visible in every namespace then)."""
    if Path("/proc/sys/net/ipv4/tcp_migrate_req").exists():
        return {_MIGRATE_REQ: "1"}
    return {}


def _unreachable(what: str, exc: BaseException) -> DriverError:
    return DriverError(
        f"{what}: the Docker engine is unreachable ({exc})",
        code="docker_unreachable",
        remediation="docker info",
    )


@contextlib.contextmanager
def _errors(what: str) -> Iterator[None]:
    """Docker's exceptions as structured errors (ours pass through)."""
    try:
        yield
    except DriverError:
        raise
    except docker.errors.APIError as exc:
        raise DriverError(f"{what}: {exc.explanation or exc}", code="proxy_unavailable") from exc
    except (docker.errors.DockerException, requests.exceptions.RequestException) as exc:
        raise _unreachable(what, exc) from exc
