"""Docker driver: networks, volumes, images and containers of environments on one host.

Every object we create carries ``odooops.*`` labels, including the daemon's instance name, so
observation is one filtered listing per object type and several daemons (or test runs) on one
engine never see, let alone prune, each other's objects. Secrets reach containers as files
copied into the created container before it starts (``put_archive``), so they appear in no
``docker inspect`` output, no environment variable and no host file.

Work on an environment's data that needs a process (filestore helpers, ``psql`` and
``pg_restore`` of restores and imports) runs in throw-away containers of the platform's own
image, never a project's, confined (no capability, read-only root, no new privileges), not
as root, and with that one environment's volumes or network only: uploaded input and what a
workload stored never run on the daemon's host.
"""

from __future__ import annotations

import asyncio
import contextlib
import io
import ipaddress
import logging
import math
import os
import re
import socket
import tarfile
import threading
import time
from collections.abc import AsyncIterator, Callable, Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any, Literal

import docker
import docker.errors
import docker.types
import requests.exceptions
import urllib3.exceptions

from reconciler.core.errors import DriverError, sanitize
from reconciler.core.imagegc import Image
from reconciler.core.model import (
    LABEL_PREFIX,
    MAIL_CATCHER_HOST,
    DatabaseServer,
    DesiredEnvironment,
    EnvKey,
    Tier,
    check_instance,
)
from reconciler.core.observed import ObservedContainer, Role
from reconciler.core.policies import odoo_memory
from reconciler.drivers.logstream import Source, stream_logs
from reconciler.drivers.protocols import ImageListing, Listing, OneOff, RuntimeEvent
from reconciler.drivers.tarstream import empty_tar, owned

SECRET_DIR = "/run/odooops"
PASSWORD_FILE = f"{SECRET_DIR}/db_password"
FILESTORE = "/var/lib/odoo"
# Odoo's health route, asked to check its database server too (ODOO-CONTRACT.md, Health): a
# container whose PostgreSQL is unreachable is not healthy, so no rollout switches to it.
HEALTH_CMD = (
    "import sys, urllib.request; "
    "sys.exit(0 if urllib.request.urlopen("
    "'http://127.0.0.1:8069/web/health?db_server_status=1', timeout=4).status == 200 else 1)"
)
# A smoke check run inside the container: each path must answer below 400 (after redirects).
SMOKE_CMD = """import sys, urllib.error, urllib.request
bad = []
for path in sys.argv[1:]:
    try:
        status = urllib.request.urlopen("http://127.0.0.1:8069" + path, timeout=30).status
    except urllib.error.HTTPError as exc:
        status = exc.code
    except Exception as exc:
        status = type(exc).__name__
    if not isinstance(status, int) or status >= 400:
        bad.append(f"{path} answered {status}")
print("; ".join(bad))
sys.exit(1 if bad else 0)
"""
_SECONDS = 1_000_000_000
# Lines of a one-off run's log kept: enough for the lines that name a module left out of an
# install (reconciler.core.modules picks those), not only the traceback at the end.
ONE_OFF_LOG_LINES = 2000
_PORT_TAKEN = re.compile(r"port is already allocated|address already in use", re.IGNORECASE)
# Container events that mean an environment may need healing.
_EVENT_ACTIONS = ("die", "destroy", "stop", "kill", "oom", "health_status: unhealthy", "pause")
log = logging.getLogger("odooops.docker")

# A build whose cached layer was removed under it (Docker's own words), not a fault of the app.
_ENGINE_CACHE_RACE = re.compile(r"failed to get digest|/var/lib/docker/\S* no such file", re.I)
_HEALTH = re.compile(r"\((healthy|unhealthy|health: starting)\)")
# Where the throw-away containers see volumes: paths no image has, so Docker never copies the
# platform image's own files into a new volume (only Odoo's image may fill one: ``prime``).
VOLUME_MOUNT = "/odooops/volume"
SOURCE_MOUNT = "/odooops/source"
NOBODY = "65534:65534"
TOOL_TIMEOUT = 6 * 3600
# rm -rf as the owner, not root: a directory Odoo made read-only is made writable first.
_REMOVE = 'rm -rf "{path}" 2>/dev/null || {{ chmod -R u+rwX "{path}"; rm -rf "{path}"; }}'


def _label(name: str) -> str:
    return LABEL_PREFIX + name


@dataclass(frozen=True)
class DatabaseReach:
    """How a container on an environment's network reaches the environment's database: as
    its Odoo does, at ``db`` (the dedicated container's alias, or a name mapped to the shared
    server's ``container_host``) or at the shared server's host name."""

    network: str
    host: str
    port: int
    extra_hosts: Mapping[str, str] = field(default_factory=dict)


def database_reach(key: EnvKey, server: DatabaseServer | None) -> DatabaseReach:
    if server is None:
        return DatabaseReach(key.network, "db", 5432)
    target = server.container_host
    if target == "host-gateway" or re.fullmatch(r"[0-9.]+|[0-9a-fA-F:]+", target):
        return DatabaseReach(key.network, "db", server.port, {"db": target})
    return DatabaseReach(key.network, target, server.port)


class DockerDriver:
    """The only code that talks to the Docker engine."""

    def __init__(
        self, instance: str, base_url: str | None = None, health_interval: int = 5
    ) -> None:
        self.instance = check_instance(instance)
        self.health_interval = health_interval
        self._tool_versions: dict[tuple[str, str], str] = {}  # (image ID, tool) -> --version
        url = base_url or os.environ.get("DOCKER_HOST") or "unix:///var/run/docker.sock"
        self.url = url
        if url.startswith("unix://") and not os.path.exists(url.removeprefix("unix://")):
            raise DriverError(
                f"the Docker engine is unreachable: no socket at {url}",
                code="docker_unreachable",
                remediation="start it (bash scripts/setup.sh services) and check: docker info",
            )
        self.client = docker.DockerClient(base_url=base_url) if base_url else docker.from_env()
        # Ids of containers whose own health check this driver ran and saw pass while Docker
        # still said "starting" (by id: a rollout renames its container): observation reports
        # them healthy until Docker's next check speaks for itself (``wait_healthy``).
        self._probed: set[str] = set()
        try:
            self.client.ping()
            self._ncpu = int(self.client.info().get("NCPU", 1))
        except (docker.errors.DockerException, requests.exceptions.RequestException) as exc:
            self.client.close()
            raise DriverError(
                f"the Docker engine is unreachable: {exc}",
                code="docker_unreachable",
                remediation="start it (bash scripts/setup.sh services) and check: docker info",
            ) from exc

    def close(self) -> None:
        self.client.close()

    # ----------------------------------------------------------------------------- labels
    def labels(self, key: EnvKey, **extra: str) -> dict[str, str]:
        base = {_label("instance"): self.instance, _label("managed-by"): "odooops"}
        base.update(key.labels())
        base.update({_label(k.replace("_", "-")): v for k, v in extra.items()})
        return base

    def _filters(self, key: EnvKey | None = None) -> dict[str, list[str]]:
        labels = [f"{_label('instance')}={self.instance}"]
        if key is not None:
            labels += [f"{_label('project')}={key.project}", f"{_label('env')}={key.env}"]
        return {"label": labels}

    def _check_owner(self, labels: Mapping[str, str] | None, kind: str, name: str) -> None:
        """Refuse to act on an object of our name that this instance did not make.

        Names come from PROJECT/ENV, not from the instance, so a second daemon on this engine
        declaring the same environment (or anything else under our name) would otherwise have
        its container removed, its network or volume taken as ours. Labels are set by the
        daemon at creation and cannot be changed afterwards, by a workload or anyone.
        """
        owner = (labels or {}).get(_label("instance"))
        if owner == self.instance:
            return
        made_by = f"daemon instance {owner!r}" if owner else "something other than OdooOps"
        raise DriverError(
            f"{kind} {name} was made by {made_by}, not by this daemon ({self.instance}): "
            "left alone",
            code="claimed_by_other_instance",
            remediation="name the project differently in this daemon's state repository, or "
            f"run the environment from that instance; look at it with: docker {kind} inspect "
            f"{name}",
        )

    def _own_container(self, name: str) -> Any:
        """The container of this name, if this instance made it (``NotFound`` propagates)."""
        container = self.client.containers.get(name)
        self._check_owner(container.labels, "container", name)
        return container

    def ping(self) -> None:
        with self._errors("ping the Docker engine"):
            self.client.ping()

    # ---------------------------------------------------------------------------- observe
    def observe(self, key: EnvKey | None = None) -> Listing:
        """Three listings (networks, volumes, containers) and one of images; no inspect calls.

        With ``key``, only that environment's objects (the label filter is applied by Docker),
        so a run for one environment costs the same with ten environments or a thousand.
        """
        with self._errors("list Docker objects"):
            nets = self.client.api.networks(filters=self._filters(key))
            vols = self.client.api.volumes(filters=self._filters(key)).get("Volumes") or []
            conts = self.client.api.containers(all=True, filters=self._filters(key))
            imgs = self.client.api.images(filters={"label": [f"{_label('built-by')}=odooops"]})
        networks = {k for n in nets if (k := _key(n.get("Labels")))}
        protected = {k for n in nets if (k := _key(n.get("Labels"))) and _protected(n)}
        branch_made = {
            k
            for n in nets
            if (k := _key(n.get("Labels")))
            and (n.get("Labels") or {}).get(_label("origin")) == "branch"
        }
        volumes: dict[EnvKey, set[str]] = {}
        for v in vols:
            if key := _key(v.get("Labels")):
                volumes.setdefault(key, set()).add(v["Name"])
                if _protected(v):
                    protected.add(key)
        containers: dict[EnvKey, dict[Role, ObservedContainer]] = {}
        stale: dict[EnvKey, list[str]] = {}
        for c in conts:
            labels = c.get("Labels") or {}
            key = _key(labels)
            if key is None:
                continue
            name = c["Names"][0].lstrip("/")
            role = labels.get(_label("role"), "")
            if _protected(c):
                protected.add(key)
            expected = {Role.ODOO: key.odoo_container, Role.DB: key.db_container}
            if role not in (Role.ODOO, Role.DB) or name != expected[Role(role)]:
                stale.setdefault(key, []).append(name)
                continue
            health = _HEALTH.search(c.get("Status", ""))
            said = None if health is None else health.group(1).replace("health: ", "")
            if said == "starting" and c.get("Id") in self._probed:
                said = "healthy"
            elif said != "starting":
                self._probed.discard(str(c.get("Id")))
            port = labels.get(_label("port"))
            containers.setdefault(key, {})[Role(role)] = ObservedContainer(
                name=name,
                role=Role(role),
                state=c.get("State", "unknown"),
                health=said,
                spec_hash=labels.get(_label("spec-hash")),
                revision=labels.get(_label("revision")),
                image=c.get("Image"),
                port=int(port) if port else None,
                protected=_protected(c),
            )
        images = frozenset(t for i in imgs for t in (i.get("RepoTags") or []))
        return Listing(
            networks=frozenset(networks),
            volumes={k: frozenset(v) for k, v in volumes.items()},
            containers=containers,
            stale={k: tuple(sorted(v)) for k, v in stale.items()},
            protected=frozenset(protected),
            branch_made=frozenset(branch_made),
            images=images,
        )

    # --------------------------------------------------------------------- networks/volumes
    def create_network(self, key: EnvKey, protected: bool, origin: str = "file") -> None:
        with self._errors(f"create network {key.network}"):
            existing = [
                n for n in self.client.networks.list(names=[key.network]) if n.name == key.network
            ]
            for net in existing:
                self._check_owner(net.attrs.get("Labels"), "network", key.network)
            if existing:
                return
            try:
                self.client.networks.create(
                    key.network,
                    driver="bridge",
                    labels=self.labels(key, protected=str(protected).lower(), origin=origin),
                )
            except docker.errors.APIError as exc:
                if "non-overlapping" not in str(exc):
                    raise
                raise DriverError(
                    "Docker has no address pool left for another environment network",
                    code="network_pool_exhausted",
                    remediation='add "default-address-pools": [{"base": "172.20.0.0/14", '
                    '"size": 27}] to /etc/docker/daemon.json and restart dockerd',
                ) from exc

    def remove_network(self, name: str) -> None:
        with self._errors(f"remove network {name}"):
            for net in self.client.networks.list(names=[name]):
                # Docker allows two networks of one name: only ours is removed.
                if (
                    net.name == name
                    and (net.attrs.get("Labels") or {}).get(_label("instance")) == self.instance
                ):
                    net.remove()

    def create_volume(self, key: EnvKey, name: str, protected: bool) -> None:
        with self._errors(f"create volume {name}"):
            with contextlib.suppress(docker.errors.NotFound):
                self._check_owner(self.client.volumes.get(name).attrs.get("Labels"), "volume", name)
            self.client.volumes.create(
                name=name, labels=self.labels(key, protected=str(protected).lower())
            )

    def remove_volume(self, name: str) -> None:
        with self._errors(f"remove volume {name}"), contextlib.suppress(docker.errors.NotFound):
            volume = self.client.volumes.get(name)
            self._check_owner(volume.attrs.get("Labels"), "volume", name)
            volume.remove(force=True)

    # ------------------------------------------------------------------------------ images
    def has_image(self, ref: str) -> bool:
        with self._errors(f"inspect image {ref}"):
            try:
                self.client.images.get(ref)
            except docker.errors.ImageNotFound:
                return False
        return True

    def image_id(self, ref: str, *, pull: bool = True) -> str:
        """The local image ID of a base image, pulling it once when absent."""
        image = self._local_or_pulled(
            ref, pull=pull, what="base image", hint="or set odoo.image in the project file"
        )
        return str(image.id)

    def _local_or_pulled(self, ref: str, *, pull: bool, what: str, hint: str) -> Any:
        """An image from the local store, else pulled once; ``image_missing`` when neither."""
        with self._errors(f"inspect image {ref}"):  # an engine away is docker_unreachable
            try:
                return self.client.images.get(ref)
            except docker.errors.ImageNotFound:
                if not pull:
                    raise DriverError(
                        f"image {ref} is not available locally",
                        code="image_missing",
                        remediation=f"docker pull {ref}",
                    ) from None
            try:
                return self.client.images.pull(ref)
            except docker.errors.DockerException as exc:
                raise DriverError(
                    f"{what} {ref} is not available locally and cannot be pulled",
                    code="image_missing",
                    remediation=f"docker pull {ref}  ({hint})",
                ) from exc

    def list_images(self, *, shared: bool = False) -> ImageListing:
        """Images labelled as built by OdooOps, of every instance (the label says who built
        nothing for sure: the collector decides ownership from its ledger), and every
        container of the engine, running or stopped, as the users of its image.

        ``shared`` asks the engine's disk usage (``docker system df``) for the bytes each
        image shares with others; Docker API 1.41 has no cheaper way, and it measures
        volumes too, so only a listing for humans asks for it.
        """
        with self._errors("list images"):
            found = self.client.api.images(filters={"label": [f"{_label('built-by')}=odooops"]})
            containers = self.client.api.containers(all=True)
            usage = (self.client.df().get("Images") or []) if shared else []
        shared_sizes = {
            str(u.get("Id")): int(u["SharedSize"])
            for u in usage
            if isinstance(u.get("SharedSize"), int) and u["SharedSize"] >= 0
        }
        users: dict[str, set[str]] = {}
        for c in containers:
            labels = c.get("Labels") or {}
            key = _key(labels)
            owner = labels.get(_label("instance"))
            if key is not None and owner == self.instance:
                user = str(key)
            else:
                name = str((c.get("Names") or ["?"])[0]).lstrip("/")
                user = f"{name} (instance {owner})" if owner else name
            users.setdefault(str(c.get("ImageID", "")), set()).add(user)
        images = tuple(
            Image(
                id=str(i["Id"]),
                tags=tuple(t for t in i.get("RepoTags") or () if t != "<none>:<none>"),
                created=datetime.fromtimestamp(int(i.get("Created", 0)), UTC),
                size=int(i.get("Size", 0)),
                shared_size=shared_sizes.get(str(i["Id"])),
                project=str((i.get("Labels") or {}).get(_label("project"), "")),
            )
            for i in found
        )
        return ImageListing(images, {k: tuple(sorted(v)) for k, v in users.items()})

    def remove_image(self, image_id: str) -> None:
        """Remove one image by id, never forced, so the engine itself refuses one a container
        uses (running or stopped, anyone's) or one under several tags. An image without the
        built-by label is refused before the engine is asked."""
        with self._errors(f"remove image {image_id}"):
            try:
                labels = self.client.images.get(image_id).labels or {}
            except docker.errors.ImageNotFound:
                return
            if labels.get(_label("built-by")) != "odooops":
                raise DriverError(
                    f"image {image_id} was not built by OdooOps: left alone",
                    code="image_not_ours",
                    remediation=f"nothing to do; look at it with: docker image inspect {image_id}",
                )
            try:
                self.client.api.remove_image(image_id, force=False, noprune=False)
            except docker.errors.ImageNotFound:
                return
            except docker.errors.APIError as exc:
                if exc.status_code != 409:
                    raise
                raise DriverError(
                    f"image {image_id} not removed: {exc.explanation or exc}",
                    code="image_in_use",
                    retryable=True,
                    remediation="nothing to do: it is kept while the engine refuses; to see "
                    f"who uses it: docker ps -a --filter ancestor={image_id}",
                ) from exc

    def build_image(
        self,
        tag: str,
        context: bytes,
        labels: Mapping[str, str],
        build_args: Mapping[str, str] | None = None,
        *,
        on_line: Callable[[str], None] | None = None,
        deadline: float | None = None,
    ) -> str:
        """Build the context's ``Dockerfile`` as ``tag`` (content addressed by the caller);
        the build's log. Each line goes to ``on_line`` as the builder says it. Never pulls:
        the base is in the local store or the build fails. Past ``deadline`` (a monotonic
        time) the build is abandoned, which makes the engine stop it, and ``build_timed_out``
        is raised."""
        all_labels = {_label("built-by"): "odooops", **labels}
        if deadline is not None and not math.isfinite(deadline):
            deadline = None
        for nocache in (False, True):
            lines: list[str] = []
            error = self._stream_build(
                tag, context, all_labels, build_args, nocache, lines, on_line, deadline
            )
            if error is None:
                return "".join(lines)
            tail = "".join(lines)[-2000:]
            if not nocache and _ENGINE_CACHE_RACE.search(f"{error}\n{tail}"):
                # A cached layer was deleted under the build (an image removed at the same
                # moment): the engine's trouble, not the app's; built again without the
                # cache, once.
                log.warning("build of %s lost a cached layer; building without cache", tag)
                continue
            raise DriverError(
                f"image build failed: {error}\n{tail}",
                code="build_failed",
                retryable=False,
                remediation="fix the app repository and push a new commit",
            )
        raise AssertionError("unreachable")  # pragma: no cover

    def _stream_build(
        self,
        tag: str,
        context: bytes,
        labels: Mapping[str, str],
        build_args: Mapping[str, str] | None,
        nocache: bool,
        lines: list[str],
        on_line: Callable[[str], None] | None,
        deadline: float | None,
    ) -> str | None:
        """One build, streamed: None when the image was made, else the builder's error."""

        def timed_out() -> DriverError:
            return DriverError(
                f"image build of {tag} timed out (quotas.build_timeout); the build was stopped",
                code="build_timed_out",
                retryable=False,
                remediation="make the slow step faster (or raise quotas.build_timeout in "
                "odooops.yaml), then push",
            )

        # The read timeout ends a step that hangs without a word at the deadline; a step that
        # keeps talking is stopped by the check between lines.
        read_timeout = None if deadline is None else max(1, math.ceil(deadline - time.monotonic()))
        try:
            with self._errors(f"build image {tag}"):
                stream = self.client.api.build(
                    fileobj=io.BytesIO(context),
                    custom_context=True,
                    tag=tag,
                    rm=True,
                    forcerm=True,
                    pull=False,
                    nocache=nocache,
                    labels=dict(labels),
                    buildargs=dict(build_args or {}),
                    decode=True,
                    timeout=read_timeout,
                )
                try:
                    for chunk in stream:
                        if deadline is not None and time.monotonic() > deadline:
                            raise timed_out()
                        if not isinstance(chunk, dict):
                            continue
                        text = chunk.get("stream")
                        if isinstance(text, str):
                            lines.append(text)
                            if on_line is not None:
                                on_line(text)
                        elif "error" in chunk:
                            message = str(chunk.get("error", "")).strip()
                            if on_line is not None:
                                on_line(message + "\n")
                            return message
                finally:
                    close = getattr(stream, "close", None)
                    if close is not None:
                        close()  # the engine stops a build whose client went away
        except (DriverError, urllib3.exceptions.HTTPError, OSError) as exc:
            # Reading the stream straight from its socket, a read timeout is urllib3's.
            if deadline is not None and time.monotonic() >= deadline - 0.5:
                raise timed_out() from exc
            if isinstance(exc, DriverError):
                raise
            raise DriverError(
                f"build image {tag}: the Docker engine is unreachable ({exc})",
                code="docker_unreachable",
                remediation="docker info",
            ) from exc
        return None

    # -------------------------------------------------------------------------- containers
    @staticmethod
    def common_args(want: DesiredEnvironment) -> list[str]:
        """Options every Odoo process of the environment shares (server and one-off runs)."""
        return [f"--addons-path={','.join(want.addons_paths)}", f"--data-dir={FILESTORE}"]

    def odoo_command(
        self, want: DesiredEnvironment, trial_database: str | None = None
    ) -> list[str]:
        """The server's options; the memory limits are per process, shared out of the
        container's memory by ``odoo_memory`` (workers, cron workers, gevent, master).
        A trial server (``create_odoo``) serves ``trial_database`` and runs no cron."""
        s = want.settings
        memory = odoo_memory(s)
        database = trial_database or want.key.database
        crons = 0 if trial_database is not None else s.max_cron_threads
        return [
            *self.common_args(want),
            f"--database={database}",
            f"--db-filter=^{database}$",
            "--no-database-list",
            # Published ports reach the container's own interface: all of them, said
            # explicitly (Odoo 19 warns that its default becomes 127.0.0.1 in 20.0).
            "--http-interface=0.0.0.0",
            "--proxy-mode",
            f"--workers={s.workers}",
            f"--max-cron-threads={crons}",
            f"--limit-memory-soft={memory.soft}",
            f"--limit-memory-hard={memory.hard}",
        ]

    def _db_endpoint(self, want: DesiredEnvironment) -> tuple[dict[str, str], dict[str, str]]:
        """Environment and extra hosts so that the container reaches its database as ``db``."""
        reach = database_reach(want.key, want.server)
        return {"HOST": reach.host, "PORT": str(reach.port)}, dict(reach.extra_hosts)

    def _odoo_kwargs(
        self, want: DesiredEnvironment, name: str, command: Sequence[str], role: str
    ) -> dict[str, Any]:
        env, hosts = self._db_endpoint(want)
        env.update({"USER": want.key.role, "PASSWORD_FILE": PASSWORD_FILE})
        if want.spec.tier is not Tier.PRODUCTION:
            # Outgoing mail of non-production goes to the platform's catcher on the host.
            hosts = {**hosts, MAIL_CATCHER_HOST: "host-gateway"}
        return {
            "image": want.image,
            "command": list(command),
            "name": name,
            "environment": env,
            "extra_hosts": hosts,
            "labels": self.labels(
                want.key,
                role=role,
                spec_hash=want.odoo_spec_hash(),
                revision=want.revision,
                port=str(want.port),
                protected=str(want.spec.protected).lower(),
                tier=want.spec.tier.value,
                state_commit=want.state_commit,
            ),
            "network": want.key.network,
            "volumes": {want.key.filestore_volume: {"bind": FILESTORE, "mode": "rw"}},
            "nano_cpus": int(min(want.settings.cpu, self._ncpu) * _SECONDS),
            "mem_limit": want.settings.memory,
        }

    def create_odoo(
        self,
        want: DesiredEnvironment,
        password: str,
        name: str | None = None,
        *,
        trial_database: str | None = None,
    ) -> None:
        """Create (not start) the Odoo container with its password file in place.

        It is created under a scratch name and renamed only once the password file is in it:
        a daemon killed in between leaves a container that observation reports as stale (and
        the next run removes), never one under the real name that would start without its
        password. The server answers to the environment's internal name on its network.

        ``trial_database``: a trial server on that database (an updated copy, checked before
        it is swapped in): no published port, no internal name, no scheduled actions (a cron
        must not act for a copy that may be dropped).
        """
        final = name or want.key.odoo_container
        command = self.odoo_command(want, trial_database)
        kwargs = self._odoo_kwargs(want, f"{final}-creating", command, Role.ODOO)
        if trial_database is None:
            endpoint = docker.types.EndpointConfig(
                self.client.api.api_version, aliases=[want.key.internal_name]
            )
            kwargs["networking_config"] = {want.key.network: endpoint}
            if not want.routed:  # routed: the proxy reaches it on its network, by name
                kwargs["ports"] = {"8069/tcp": ("127.0.0.1", want.port)}
        kwargs.update(
            restart_policy={"Name": "unless-stopped"},
            healthcheck={
                "test": ["CMD", "python3", "-c", HEALTH_CMD],
                "interval": self.health_interval * _SECONDS,
                "timeout": 5 * _SECONDS,
                "retries": 3,
                "start_period": 120 * _SECONDS,
            },
        )
        self.remove_container(str(kwargs["name"]))
        with self._errors(f"create container {final}"):
            container = self.client.containers.create(**kwargs)
            container.put_archive("/run", _secret_tar({"db_password": password}))
            container.rename(final)

    def run_once(
        self,
        want: DesiredEnvironment,
        password: str,
        args: Sequence[str],
        timeout: float,
        cancel: threading.Event | None = None,
        *,
        command: str | None = None,
        stdout: bool = False,
    ) -> OneOff:
        """Run ``odoo [command] <args>`` in a one-off container and say how it ended.

        124 when ``timeout`` passes, 130 when ``cancel`` is set (the daemon is stopping): the
        container is removed either way, and the step is redone by the next run. The container
        has the one-off budget (``init_memory``, at least one core), not the server's: an
        install of several apps takes far more than a request, and a kill by the memory limit
        is reported as such (``oom_killed``).
        """
        name = want.key.init_container
        self.remove_container(name)
        argv = [*self.common_args(want), *args]
        if command is not None:  # `odoo neutralize ...`: the entrypoint passes `odoo` through
            argv = ["odoo", command, *argv]
        kwargs = self._odoo_kwargs(want, name, argv, Role.INIT)
        kwargs["mem_limit"] = want.settings.init_memory
        kwargs["nano_cpus"] = int(min(max(want.settings.cpu, 1.0), self._ncpu) * _SECONDS)
        out = ""
        with self._errors(f"run {name}"):
            container = self.client.containers.create(**kwargs)
            try:
                container.put_archive("/run", _secret_tar({"db_password": password}))
                container.start()
                code = self._wait_exit(container, timeout, cancel)
                logs = bytes(container.logs(tail=ONE_OFF_LOG_LINES)).decode(errors="replace")
                if stdout:
                    out = bytes(container.logs(stdout=True, stderr=False)).decode(errors="replace")
                state = self.client.api.inspect_container(str(container.id))["State"]
            finally:
                container.remove(force=True, v=True)
        return OneOff(
            code,
            sanitize(logs.replace(password, "***")),
            out,
            oom_killed=bool(state.get("OOMKilled")),
            memory_limit=want.settings.init_memory,
        )

    @staticmethod
    def _wait_exit(container: Any, timeout: float, cancel: threading.Event | None) -> int:
        deadline = time.monotonic() + timeout
        while True:
            try:
                return int(container.wait(timeout=2)["StatusCode"])
            except requests.exceptions.RequestException:
                pass
            if cancel is not None and cancel.is_set():
                container.kill()
                return 130
            if time.monotonic() > deadline:
                container.kill()
                return 124

    def create_db_container(self, want: DesiredEnvironment, password: str) -> None:
        key = want.key
        endpoint = docker.types.EndpointConfig(self.client.api.api_version, aliases=["db"])
        scratch = f"{key.db_container}-creating"
        self.remove_container(scratch)
        with self._errors(f"create container {key.db_container}"):
            with contextlib.suppress(docker.errors.NotFound):
                self._own_container(key.db_container)  # another instance's: refused here
            container = self.client.containers.create(
                image=want.dev_db_image,
                name=scratch,
                environment={
                    "POSTGRES_USER": key.role,
                    "POSTGRES_DB": key.database,
                    "POSTGRES_PASSWORD_FILE": PASSWORD_FILE,
                },
                labels=self.labels(
                    key,
                    role=Role.DB,
                    spec_hash=want.db_spec_hash(),
                    protected=str(want.spec.protected).lower(),
                ),
                network=key.network,
                networking_config={key.network: endpoint},
                volumes={key.pgdata_volume: {"bind": "/var/lib/postgresql/data", "mode": "rw"}},
                restart_policy={"Name": "unless-stopped"},  # type: ignore[arg-type]
                healthcheck={
                    # TCP, not the socket: the image's initdb phase runs a socket-only server.
                    "test": [
                        "CMD",
                        "pg_isready",
                        "-h",
                        "127.0.0.1",
                        "-U",
                        key.role,
                        "-d",
                        key.database,
                    ],
                    "interval": 1 * _SECONDS,
                    "timeout": 3 * _SECONDS,
                    "retries": 60,
                },
                mem_limit=512 * 1024**2,
            )
            container.put_archive("/run", _secret_tar({"db_password": password}))
            container.rename(key.db_container)  # named only once its password is in it
            container.start()

    def exec_psql(self, container_name: str, user: str, database: str, sql: str) -> str:
        with self._errors(f"query {container_name}"):
            container = self._own_container(container_name)
            code, out = container.exec_run(
                ["psql", "-X", "-v", "ON_ERROR_STOP=1", "-U", user, "-d", database, "-tAc", sql],
                user="postgres",
            )
        text = out.decode(errors="replace") if isinstance(out, bytes) else ""
        if code != 0:
            raise DriverError(f"psql in {container_name} failed: {text.strip()[-500:]}")
        return text.strip()

    def start(self, name: str) -> None:
        with self._errors(f"start {name}"):
            self._own_container(name).start()

    def running(self, name: str) -> bool | None:
        """Whether our container of that name runs; None when there is none."""
        with self._errors(f"inspect {name}"):
            try:
                return bool(self._own_container(name).status == "running")
            except docker.errors.NotFound:
                return None

    def stop(self, name: str, timeout: int = 20) -> None:
        with self._errors(f"stop {name}"):
            self._own_container(name).stop(timeout=timeout)

    def rename(self, name: str, new_name: str) -> None:
        with self._errors(f"rename {name}"):
            self._own_container(name).rename(new_name)

    def remove_container(self, name: str) -> None:
        with self._errors(f"remove {name}"), contextlib.suppress(docker.errors.NotFound):
            self._own_container(name).remove(force=True, v=True)

    def wait_healthy(
        self, name: str, timeout: float, cancel: threading.Event | None = None
    ) -> tuple[bool, str]:
        """Wait until the container is healthy; ``(ok, detail)``. A dead container fails at
        once; ``cancel`` (the daemon stopping, a newer revision) ends the wait within a second.

        Docker runs the health check once per interval (5 s by default, and Docker API 1.41
        has no faster start interval), which would pace every start, rollout and rollback.
        So while Docker still says "starting", the container's own health check command is
        run here, twice a second: the first pass is the answer, and observation reports the
        container healthy from then on, until Docker's own next check replaces the report.
        """
        deadline = time.monotonic() + timeout
        detail = "no health report yet"
        while time.monotonic() < deadline:
            if cancel is not None and cancel.is_set():
                return False, "interrupted: the daemon is stopping"
            with self._errors(f"inspect {name}"):
                found = self.client.api.inspect_container(name)
            state = found["State"]
            status = (state.get("Health") or {}).get("Status")
            if status == "healthy":
                return True, "healthy"
            if state.get("Status") in ("exited", "dead"):
                return False, f"container exited with code {state.get('ExitCode')}"
            if status == "unhealthy":
                return False, "health check on /web/health failed"
            if state.get("Status") == "running" and self._probe(found):
                self._probed.add(str(found["Id"]))
                return True, "healthy (its health check passed)"
            detail = f"health: {status or state.get('Status')}"
            time.sleep(0.5)
        return False, f"not healthy after {int(timeout)} s ({detail})"

    def smoke(self, name: str, paths: Sequence[str]) -> tuple[bool, str]:
        """GET each of ``paths`` inside the container, on Odoo's own port; ``(ok, detail)``.

        Run after the health check passes: ``/web/health`` answers before the registry is
        loaded, a login page answers only once the database and its modules serve. The
        paths travel as arguments, never through a shell."""
        if not paths:
            return True, "no smoke paths"
        try:
            code, out = self._exec(name, ["python3", "-c", SMOKE_CMD, *paths])
        except (docker.errors.DockerException, requests.exceptions.RequestException) as exc:
            return False, f"smoke check could not run in {name}: {exc}"
        if code == 0:
            return True, f"{', '.join(paths)} answered"
        lines = [line for line in out.strip().splitlines() if line.strip()]
        return False, sanitize(lines[-1] if lines else f"smoke check exited with code {code}")

    def _probe(self, found: Mapping[str, Any]) -> bool:
        """Run the container's own health check command in it once: did it pass?"""
        test = ((found.get("Config") or {}).get("Healthcheck") or {}).get("Test") or []
        if not test or test[0] not in ("CMD", "CMD-SHELL"):
            return False
        argv = list(test[1:]) if test[0] == "CMD" else ["/bin/sh", "-c", str(test[1])]
        try:
            return self._exec(str(found["Id"]), argv)[0] == 0
        except (docker.errors.DockerException, requests.exceptions.RequestException):
            return False  # gone or not ready for exec yet: Docker's report decides

    def _exec(self, container: str, argv: Sequence[str]) -> tuple[int | None, str]:
        """Run ``argv`` in a running container to its end: its exit code and output."""
        found = self.client.api.exec_create(container, list(argv))
        out = bytes(self.client.api.exec_start(found["Id"])).decode(errors="replace")
        return self.client.api.exec_inspect(found["Id"]).get("ExitCode"), out

    def logs(self, name: str, tail: int = 40) -> str:
        try:
            return bytes(self.client.containers.get(name).logs(tail=tail)).decode(errors="replace")
        except (docker.errors.DockerException, requests.exceptions.RequestException):
            return ""  # context for an error message; the error itself says what failed

    async def environment_logs(
        self, key: EnvKey, *, follow: bool, since: int | None, tail: int
    ) -> AsyncIterator[str]:
        """Log lines of every container of an environment, as ``role | timestamp line``,
        read on the event loop (``reconciler.drivers.logstream``): a followed stream holds no
        thread, and ends when the caller stops reading."""
        found = await asyncio.to_thread(self._containers_of, key)
        sources = [
            Source(str(c.id), str(c.labels.get(_label("role"), "?")))
            for c in sorted(found, key=lambda c: str(c.name))
        ]
        async for line in stream_logs(self.url, sources, follow=follow, since=since, tail=tail):
            yield line

    def _containers_of(self, key: EnvKey) -> list[Any]:
        with self._errors(f"list containers of {key}"):
            labels: dict[str, str | list[str] | bool] = {**self._filters(key)}
            return list(self.client.containers.list(all=True, filters=labels))

    def events(self, stop: threading.Event) -> Iterator[RuntimeEvent]:
        """Our containers' events (died, removed, stopped, unhealthy) until ``stop`` is set.

        Docker's event stream blocks; a watcher closes it when ``stop`` is set, which ends the
        iteration. A broken stream (dockerd restarted) ends it too: the caller reconnects.
        """
        filters = {**self._filters(), "type": ["container"]}
        with self._errors("follow Docker events"):
            stream = self.client.events(decode=True, filters=filters)

        def close_on_stop() -> None:
            stop.wait()
            with contextlib.suppress(Exception):
                stream.close()

        threading.Thread(target=close_on_stop, name="docker-events-stop", daemon=True).start()
        try:
            for event in stream:
                action = str(event.get("Action") or event.get("status") or "")
                attrs = (event.get("Actor") or {}).get("Attributes") or {}
                key = _key(attrs)
                if key is None or not action.startswith(_EVENT_ACTIONS):
                    continue
                yield RuntimeEvent(key, str(attrs.get("name", "")), action)
        except Exception:  # the stream was closed under us, or dockerd went away
            return

    def container_args(self, name: str) -> list[str]:
        with self._errors(f"inspect {name}"):
            return [str(a) for a in self.client.api.inspect_container(name).get("Args") or []]

    def open_shell(self, container: str, command: Sequence[str], tty: bool = True) -> ShellSession:
        """A ``docker exec`` with stdin, with or without a TTY (``docker exec -it`` / ``-i``);
        the caller pumps bytes both ways."""
        with self._errors(f"open a shell in {container}"):
            exec_id = self.client.api.exec_create(container, list(command), stdin=True, tty=tty)
            sock = self.client.api.exec_start(exec_id["Id"], socket=True, tty=tty)
        return ShellSession(self.client, str(exec_id["Id"]), sock, tty)

    # ------------------------------------------------------------------ database and filestore
    def container_address(self, name: str, network: str) -> str:
        """The container's address on its environment network (reachable from the host:
        environment networks are plain bridges)."""
        with self._errors(f"inspect {name}"):
            info = self.client.api.inspect_container(name)
        address = (
            ((info.get("NetworkSettings") or {}).get("Networks") or {})
            .get(network, {})
            .get("IPAddress")
        )
        if not address:
            raise DriverError(
                f"{name} has no address on network {network}",
                remediation=f"docker inspect {name}; odooops reconcile",
            )
        return str(address)

    def host_gateway(self) -> str:
        """The host's address that containers reach as ``host-gateway``: the gateway of
        Docker's default bridge (docker0), which Docker maps ``host-gateway`` to unless its
        daemon is told otherwise (``host-gateway-ip``)."""
        with self._errors("inspect the bridge network"):
            network = self.client.api.inspect_network("bridge")
        for config in (network.get("IPAM") or {}).get("Config") or []:
            if config.get("Gateway"):
                return str(ipaddress.ip_address(config["Gateway"]))
            if config.get("Subnet"):  # Docker gives a bridge the first address of its subnet
                return str(next(ipaddress.ip_network(config["Subnet"]).hosts()))
        raise DriverError(
            "the Docker bridge network has no gateway address",
            remediation="docker network inspect bridge (is dockerd running with a bridge?)",
        )

    # ------------------------------------------------------------------ throw-away containers
    def _platform_image(self, image: str) -> Mapping[str, Any]:
        """The platform's own image (``dev_database.image``), pulled once when absent.

        Filestore helpers and database tools run in it, never in a project's image: a
        project's image is built from code the platform does not control.
        """
        found = self._local_or_pulled(
            image,
            pull=True,
            what="the platform image",
            hint="or set dev_database.image in odooops.yaml",
        )
        return dict(found.attrs)

    def _confined(self, image: str) -> dict[str, Any]:
        """What every throw-away container gets, whatever it runs.

        No capability and no way to gain one (``no-new-privileges`` also defeats set-id
        binaries), a read-only root, a few processes, our labels. Each volume the image
        declares gets a tiny read-only tmpfs, or Docker would create an anonymous volume.
        """
        config = self._platform_image(image).get("Config") or {}
        declared = sorted((config.get("Volumes") or {}).keys())
        return {
            "image": image,
            "name": f"odooops-{self.instance}-helper-{os.urandom(4).hex()}",
            "cap_drop": ["ALL"],
            "security_opt": ["no-new-privileges"],
            "read_only": True,
            "pids_limit": 64,
            "tmpfs": {path: "ro,size=16k" for path in declared},
            "labels": {_label("instance"): self.instance, _label("role"): "helper"},
        }

    def remove_leftover_helpers(self) -> int:
        """Remove this instance's throw-away containers a killed daemon left (it removes its
        own when they end): called at start-up, before anything runs one. Returns how many."""
        labels = [f"{_label('instance')}={self.instance}", f"{_label('role')}=helper"]
        with self._errors("list leftover helper containers"):
            found = self.client.containers.list(all=True, filters={"label": labels})
        for container in found:
            with contextlib.suppress(docker.errors.NotFound):
                container.remove(force=True, v=True)
        return len(found)

    def _run(self, kwargs: Mapping[str, Any], what: str, timeout: float) -> tuple[int, str]:
        """Create, start, wait for and remove one container; its exit code and output."""
        with self._errors(what):
            container = self.client.containers.create(**kwargs)
            try:
                container.start()
                try:
                    code = int(container.wait(timeout=timeout)["StatusCode"])
                except requests.exceptions.RequestException:
                    container.kill()
                    code = 124
                out = bytes(container.logs()).decode(errors="replace")
            finally:
                container.remove(force=True, v=True)  # and its anonymous volumes
        return code, out

    def _owner(self, image: str, volume: str) -> str:
        """``uid:gid`` of the volume's top directory: who Odoo writes the filestore as.

        Docker gave the directory that owner from Odoo's image when the volume was first
        mounted (``filestore_prime``); asked as nobody, read-only, in a container of its own.
        """
        kwargs = {
            **self._confined(image),
            "entrypoint": ["stat", "-c", "%u:%g", VOLUME_MOUNT],
            "command": [],
            "user": NOBODY,
            "network_mode": "none",
            "volumes": {volume: {"bind": VOLUME_MOUNT, "mode": "ro"}},
        }
        code, out = self._run(kwargs, f"inspect volume {volume}", 120)
        owner = (out.strip().splitlines() or [""])[-1]
        if code != 0 or not re.fullmatch(r"[0-9]+:[0-9]+", owner):
            raise DriverError(
                f"cannot read the owner of volume {volume}: {out.strip()[-300:]}",
                remediation=f"docker volume inspect {volume}",
            )
        return owner

    def _helper(
        self,
        image: str,
        script: str,
        env: Mapping[str, str],
        volume: str,
        owner: str,
        *,
        source: str | None = None,
        timeout: float = 3600,
    ) -> str:
        """Run a script of ours in a throw-away container of the platform's image.

        It runs as the filestore's owner (root, still without any capability, only when
        the volume itself belongs to root), without network, and sees ``volume`` alone at
        ``VOLUME_MOUNT``, plus ``source`` read-only at ``SOURCE_MOUNT`` when it copies
        another environment's filestore. A workload controls the names and links in a
        volume, never the script; and a link it planted resolves inside this container,
        where nothing but these mounts is writable or worth reading.
        """
        binds: dict[str, dict[str, str]] = {volume: {"bind": VOLUME_MOUNT, "mode": "rw"}}
        if source is not None:
            binds[source] = {"bind": SOURCE_MOUNT, "mode": "ro"}
        kwargs = {
            **self._confined(image),
            "entrypoint": ["/bin/sh", "-c", script],
            "command": [],
            "user": owner,
            "environment": dict(env),
            "volumes": binds,
            "network_mode": "none",
        }
        code, out = self._run(kwargs, f"run helper for {volume}", timeout)
        if code != 0:
            raise DriverError(
                f"filestore operation on {volume} failed (exit {code}): {out.strip()[-500:]}",
                remediation=f"docker volume inspect {volume}",
            )
        return out

    def _parked(self, image: str, volume: str, mode: str) -> Any:
        """A created, never started container with the volume mounted: Docker's archive API
        reads and writes its files without running anything at all."""
        return self.client.containers.create(
            **self._confined(image),
            entrypoint=["/bin/true"],
            command=[],
            user=NOBODY,
            network_mode="none",
            volumes={volume: {"bind": VOLUME_MOUNT, "mode": mode}},
        )

    def filestore_prime(self, odoo_image: str, volume: str) -> None:
        """Let Docker fill a still empty volume with Odoo's ``/var/lib/odoo``, owner included,
        as Odoo's own first container would: the helpers then act as that owner.

        Docker copies at creation: the container of Odoo's image is created and removed,
        never started, so nothing of that image runs. A volume holding anything is left as
        it is.
        """
        with self._errors(f"prepare volume {volume}"):
            container = self.client.containers.create(
                image=odoo_image,
                name=f"odooops-{self.instance}-helper-{os.urandom(4).hex()}",
                entrypoint=["/bin/true"],
                command=[],
                network_mode="none",
                volumes={volume: {"bind": FILESTORE, "mode": "rw"}},
                labels={_label("instance"): self.instance, _label("role"): "helper"},
            )
            container.remove(force=True, v=True)

    def filestore_copy(
        self, image: str, src_volume: str, src_db: str, dst_volume: str, dst_db: str
    ) -> int:
        """Copy a filestore into another volume; returns the number of files.

        Each volume is its own mount, the source read-only, so the copy is ``cp
        --reflink=auto``: a copy-on-write clone where the filesystem has them (btrfs, XFS),
        a full copy elsewhere. Hard links cost less on ext4 (bench/db_copy.py, 2,000 files of
        300 MB: 0.9 s, owner probe included, against 0.3 s; they grow with the number of
        files, a copy with their size) but cannot cross mounts: they needed every volume of
        the host mounted read-write in one root helper, where a link a workload planted in
        its filestore resolves to any other environment's volume. And a linked file is one
        inode: the target's Odoo, running a branch's code as the same uid, could rewrite the
        source's (production's) attachments through it. Anything but files and directories
        (links a workload planted) is dropped from the copy.
        """
        owner = self._owner(image, dst_volume)
        script = (
            f'set -e; src="{SOURCE_MOUNT}/filestore/$SRC_DB"; '
            f'dst="{VOLUME_MOUNT}/filestore/$DST_DB"; '
            f'mkdir -p "{VOLUME_MOUNT}/filestore"; {_REMOVE.format(path="$dst.copying")}; '
            'if [ -d "$src" ] && [ ! -L "$src" ]; then '
            'cp -R --no-dereference --preserve=mode,timestamps --reflink=auto "$src" '
            '"$dst.copying"; else mkdir "$dst.copying"; fi; '
            'find "$dst.copying" ! -type f ! -type d -exec rm -f {} +; '
            f'{_REMOVE.format(path="$dst")}; mv "$dst.copying" "$dst"; '
            'find "$dst" -type f | wc -l'
        )
        out = self._helper(
            image,
            script,
            {"SRC_DB": src_db, "DST_DB": dst_db},
            dst_volume,
            owner,
            source=src_volume,
        )
        return int(out.strip().splitlines()[-1] or 0)

    def filestore_link_copy(self, image: str, volume: str, src_db: str, dst: str) -> int:
        """``filestore/<dst>``: a copy of ``filestore/<src_db>`` in the same volume made of
        hard links (seconds for any size); returns the number of files.

        Only within one environment's own volume, for an update run on a copy of its own
        data: Odoo writes an attachment's file once under its checksum and never rewrites it,
        so sharing inodes with the live directory changes nothing there, and the copy is
        either swapped in for it or discarded. Across environments a link would let one
        rewrite the other's files (``filestore_copy`` says why). Anything but files and
        directories (links a workload planted) is dropped from the copy.
        """
        script = (
            f'set -e; mkdir -p "{VOLUME_MOUNT}/filestore"; cd "{VOLUME_MOUNT}/filestore"; '
            f"{_REMOVE.format(path='$DST.copying')}; "
            'if [ -d "$SRC" ] && [ ! -L "$SRC" ]; then cp -al "$SRC" "$DST.copying"; '
            'else mkdir "$DST.copying"; fi; '
            'find "$DST.copying" ! -type f ! -type d -exec rm -f {} +; '
            f'{_REMOVE.format(path="$DST")}; mv "$DST.copying" "$DST"; '
            'find "$DST" -type f | wc -l'
        )
        out = self._helper(
            image, script, {"SRC": src_db, "DST": dst}, volume, self._owner(image, volume)
        )
        return int(out.strip().splitlines()[-1] or 0)

    def filestore_export(self, image: str, volume: str, db: str) -> Iterator[bytes]:
        """A tar stream of ``filestore/<db>`` (members ``<db>/...``); empty when there is none."""
        with self._errors(f"read filestore of {volume}"):
            container = self._parked(image, volume, "ro")
        try:
            try:
                stream, _stat = container.get_archive(f"{VOLUME_MOUNT}/filestore/{db}")
            except docker.errors.NotFound:
                yield from empty_tar()
                return
            yield from stream
        finally:
            with contextlib.suppress(docker.errors.DockerException):
                container.remove(force=True, v=True)  # and its anonymous volumes

    def filestore_stage(
        self, image: str, volume: str, staged: str, tar_stream: Iterable[bytes]
    ) -> None:
        """Unpack a tar whose members are ``<staged>/...`` beside the live filestores.

        Staging never touches a live filestore: ``filestore_swap`` swaps it in later, so an
        interrupted transfer leaves the environment's files as they were. Docker unpacks as
        root and keeps what the tar says, so the tar is re-streamed (``owned``) into plain
        files and directories of the filestore's owner.
        """
        owner = self._owner(image, volume)
        self._helper(
            image,
            f'set -e; mkdir -p "{VOLUME_MOUNT}/filestore"; cd "{VOLUME_MOUNT}/filestore"; '
            f'{_REMOVE.format(path="$STAGED")}; mkdir "$STAGED"',
            {"STAGED": staged},
            volume,
            owner,
        )
        uid, gid = (int(n) for n in owner.split(":"))
        with self._errors(f"write filestore of {volume}"):
            container = self._parked(image, volume, "rw")
            try:
                archive = _Chunked(owned(tar_stream, uid, gid))
                if not container.put_archive(f"{VOLUME_MOUNT}/filestore", archive):
                    raise DriverError(f"Docker refused the filestore archive for {volume}")
            finally:
                container.remove(force=True, v=True)  # and its anonymous volumes

    def filestore_swap(
        self, image: str, volume: str, staged: str, db: str, old: str, *, keep_old: bool = False
    ) -> None:
        """Swap a staged filestore in for the live one of ``db``; safe to run again.

        The live directory is moved aside first and removed last (``keep_old``: kept there,
        for a data rollback), so a crash between any two commands leaves either the old or
        the new files under ``db``, never neither for good: the next run finds ``staged``
        and finishes the same way.
        """
        remove = "" if keep_old else f'if [ -e "$OLD" ]; then {_REMOVE.format(path="$OLD")}; fi'
        self._helper(
            image,
            f'set -e; cd "{VOLUME_MOUNT}/filestore" 2>/dev/null || exit 0; '
            'if [ -d "$STAGED" ]; then '
            'if [ -d "$DB" ]; then mv "$DB" "$OLD"; fi; mv "$STAGED" "$DB"; fi; '
            f"{remove}",
            {"STAGED": staged, "DB": db, "OLD": old},
            volume,
            self._owner(image, volume),
        )

    def filestore_discard(self, image: str, volume: str, staged: str) -> None:
        """Remove a staged filestore that will never be swapped in (and a copy in progress)."""
        self._helper(
            image,
            f'set -e; cd "{VOLUME_MOUNT}/filestore" 2>/dev/null || exit 0; '
            f"{_REMOVE.format(path='$STAGED')}; {_REMOVE.format(path='$STAGED.copying')}",
            {"STAGED": staged},
            volume,
            self._owner(image, volume),
        )

    def filestore_remove(self, image: str, volume: str, db: str) -> None:
        self._helper(
            image,
            f'set -e; cd "{VOLUME_MOUNT}/filestore" 2>/dev/null || exit 0; '
            f"{_REMOVE.format(path='$DB')}",
            {"DB": db},
            volume,
            self._owner(image, volume),
        )

    def run_database_tool(
        self,
        image: str,
        reach: DatabaseReach,
        *,
        user: str,
        password: str,
        dbname: str,
        command: Sequence[str],
        stdin: Iterable[bytes],
        timeout: float = TOOL_TIMEOUT,
    ) -> tuple[int, str]:
        """Run ``psql`` or ``pg_restore`` on the environment's network, ``stdin`` streamed in
        through Docker's attach socket; its exit code and the tail of its output.

        The tool runs in the platform's image as nobody, in a confined container with no
        volume at all, logged in as ``user`` (the environment's role): whatever the input
        makes it do, it does there, with that role's rights. The password is the first line
        of stdin, read by the shell into the tool's environment, so it is on no command line,
        in no container config and in no file. When ``stdin`` fails (a forged backup, a
        refused line of SQL), the tool is killed before it reads the end of its input.
        """
        kwargs = {
            **self._confined(image),
            "entrypoint": [
                "/bin/sh",
                "-c",
                'IFS= read -r PGPASSWORD && export PGPASSWORD && exec "$@"',
                "odooops-tool",
            ],
            "command": list(command),
            "user": NOBODY,
            "environment": {
                "PGHOST": reach.host,
                "PGPORT": str(reach.port),
                "PGUSER": user,
                "PGDATABASE": dbname,
                "PGAPPNAME": "odooops",
                "PGCONNECT_TIMEOUT": "10",
                # Session defaults a role or database may have changed would let psql read
                # the input otherwise than it was checked: the connection's own settings win.
                "PGCLIENTENCODING": "UTF8",
                "PGOPTIONS": "-c standard_conforming_strings=on",
                "LC_ALL": "C.UTF-8",
            },
            "network": reach.network,
            "extra_hosts": dict(reach.extra_hosts),
            "stdin_open": True,
            "detach": False,  # with stdin_open: StdinOnce, so closing our side is the tool's EOF
        }
        what = f"run {command[0]} on network {reach.network}"
        with self._errors(what):
            container = self.client.containers.create(**kwargs)
        attached: Any = None
        try:
            with self._errors(what):
                attached = container.attach_socket(params={"stdin": 1, "stream": 1})
                container.start()
            raw: Any = getattr(attached, "_sock", attached)  # the socket under the wrapper
            raw.settimeout(timeout)
            try:
                raw.sendall(password.encode() + b"\n")
                for chunk in stdin:
                    raw.sendall(chunk)
            except (BrokenPipeError, ConnectionResetError):
                pass  # the tool stopped reading because it failed: its output says why
            except BaseException:
                with contextlib.suppress(docker.errors.DockerException):
                    container.kill()
                raise
            finally:
                with contextlib.suppress(OSError):
                    raw.shutdown(socket.SHUT_WR)
            with self._errors(what):
                try:
                    code = int(container.wait(timeout=timeout)["StatusCode"])
                except requests.exceptions.RequestException:
                    container.kill()
                    code = 124
                out = bytes(container.logs()).decode(errors="replace")
        finally:
            if attached is not None:  # the wrapper, then the socket it does not close itself
                for part in (attached, getattr(attached, "_sock", attached)):
                    with contextlib.suppress(OSError):
                        part.close()
            with contextlib.suppress(docker.errors.DockerException):
                container.remove(force=True, v=True)
        return code, sanitize(out.replace(password, "***") if password else out)[-4000:]

    def database_tool_version(self, image: str, tool: Literal["psql", "pg_restore"]) -> str:
        """What ``TOOL --version`` prints in the platform's image (``psql (PostgreSQL) 15.14
        ...``): which dumps ``run_database_tool`` can load. Asked once per image ID, in a
        confined container with no network; a re-pulled tag is asked again."""
        key = (str(self._platform_image(image).get("Id") or image), tool)
        if key not in self._tool_versions:
            kwargs = {
                **self._confined(image),
                "entrypoint": [tool, "--version"],
                "command": [],
                "user": NOBODY,
                "network_mode": "none",
            }
            code, out = self._run(kwargs, f"ask {tool} of {image} for its version", 120)
            if code != 0:
                raise DriverError(
                    f"{tool} of the platform image {image} does not run: {out.strip()[-300:]}",
                    remediation=f"docker run --rm --entrypoint {tool} {image} --version  (set "
                    "dev_database.image in odooops.yaml to a postgres image)",
                )
            self._tool_versions[key] = out.strip()
        return self._tool_versions[key]

    # ------------------------------------------------------------------------------ errors
    class _ErrorScope:
        def __init__(self, what: str) -> None:
            self.what = what

        def __enter__(self) -> None:
            return None

        def __exit__(self, exc_type: Any, exc: BaseException | None, tb: Any) -> Literal[False]:
            if exc is None or isinstance(exc, DriverError):
                return False
            if isinstance(exc, docker.errors.APIError):
                said = str(exc.explanation or exc)
                if _PORT_TAKEN.search(said):
                    # Another program (or another daemon's container) took the port after it
                    # was handed out: the engine gives the environment another one.
                    raise DriverError(
                        f"{self.what}: {said}",
                        code="port_in_use",
                        retryable=True,
                        remediation="nothing to do: the environment moves to another port of "
                        "runtime.port_range by itself; to see it: odooops status",
                    ) from exc
                raise DriverError(f"{self.what}: {said}") from exc
            if isinstance(
                exc, (docker.errors.DockerException, requests.exceptions.RequestException)
            ):
                raise DriverError(
                    f"{self.what}: the Docker engine is unreachable ({exc})",
                    code="docker_unreachable",
                    remediation="docker info",
                ) from exc
            return False

    def _errors(self, what: str) -> DockerDriver._ErrorScope:
        return DockerDriver._ErrorScope(what)


class ShellSession:
    """One exec: bytes in and out, end of input, window size, exit code, close.

    With a TTY the output is the terminal's raw bytes (stdout and stderr are one stream, as on
    any terminal). Without one, Docker frames every chunk with an 8-byte header naming its
    stream (1 stdout, 2 stderr, then a big-endian length), which ``read`` takes apart so that
    stderr stays stderr.
    """

    STDOUT, STDERR = 1, 2

    def __init__(
        self, client: docker.DockerClient, exec_id: str, wrapper: Any, tty: bool = True
    ) -> None:
        # exec_start hands back a file-like wrapper around the HTTP connection's socket;
        # bytes go through the socket itself, and both are closed at the end.
        self._client, self.exec_id, self._wrapper = client, exec_id, wrapper
        self._sock = getattr(wrapper, "_sock", wrapper)
        self.tty = tty

    def read(self) -> tuple[int, bytes]:
        """The next output chunk and its stream; ``b""`` once the process has ended."""
        if self.tty:
            return self.STDOUT, self._recv(4096)
        while True:
            header = self._exactly(8)
            if len(header) < 8:
                return self.STDOUT, b""
            size = int.from_bytes(header[4:8], "big")
            payload = self._exactly(size)
            if len(payload) < size:
                return self.STDOUT, b""
            if payload:
                return (self.STDERR if header[0] == 2 else self.STDOUT), payload

    def _recv(self, size: int) -> bytes:
        try:
            return bytes(self._sock.recv(size))
        except OSError:
            return b""

    def _exactly(self, size: int) -> bytes:
        data = b""
        while len(data) < size:
            chunk = self._recv(size - len(data))
            if not chunk:
                break
            data += chunk
        return data

    def write(self, data: bytes) -> None:
        self._sock.sendall(data)

    def close_input(self) -> None:
        """End of input. Without a TTY the process reads end-of-file (Docker closes its stdin
        when our side of the connection is shut for writing, as ``docker exec -i`` does);
        with one, the terminal's end-of-file character is typed (Ctrl-D)."""
        if self.tty:
            self.write(b"\x04")
            return
        with contextlib.suppress(OSError):
            self._sock.shutdown(socket.SHUT_WR)

    def exit_code(self) -> int | None:
        """The process's exit status once it has ended (None if Docker does not say)."""
        for _ in range(20):
            with contextlib.suppress(docker.errors.APIError, requests.exceptions.RequestException):
                info = self._client.api.exec_inspect(self.exec_id)
                if not info.get("Running"):
                    code = info.get("ExitCode")
                    return int(code) if code is not None else None
            time.sleep(0.1)
        return None

    def resize(self, columns: int, rows: int) -> None:
        if not self.tty:
            return
        with contextlib.suppress(docker.errors.APIError):
            self._client.api.exec_resize(self.exec_id, height=rows, width=columns)

    def close(self) -> None:
        for part in (self._wrapper, self._sock):
            with contextlib.suppress(OSError):
                part.close()


def _key(labels: Mapping[str, str] | None) -> EnvKey | None:
    if not labels:
        return None
    project, env = labels.get(_label("project")), labels.get(_label("env"))
    return EnvKey(project, env) if project and env else None


def _protected(obj: Mapping[str, Any]) -> bool:
    return bool((obj.get("Labels") or {}).get(_label("protected")) == "true")


def _secret_tar(files: Mapping[str, str]) -> bytes:
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w") as tar:
        info = tarfile.TarInfo("odooops")
        info.type, info.mode = tarfile.DIRTYPE, 0o755
        tar.addfile(info)
        for name, content in files.items():
            data = content.encode()
            info = tarfile.TarInfo(f"odooops/{name}")
            info.size, info.mode = len(data), 0o444
            tar.addfile(info, io.BytesIO(data))
    return buf.getvalue()


class _Chunked:
    """An iterable body for ``put_archive``: requests sends it chunked, nothing buffered,
    and an exception in the producer (a failed authentication tag) aborts the upload."""

    def __init__(self, chunks: Iterable[bytes]) -> None:
        self._chunks = chunks

    def __iter__(self) -> Iterator[bytes]:
        return iter(self._chunks)
