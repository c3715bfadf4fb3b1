"""Docker driver: networks, volumes, images and containers of environments on one host.

Every object we create carries ``odooops.*`` labels, including the daemon's instance name, so
observation is one filtered listing per object type and several daemons (or test runs) on one
engine never see, let alone prune, each other's objects. Secrets reach containers as files
copied into the created container before it starts (``put_archive``), so they appear in no
``docker inspect`` output, no environment variable and no host file.
"""

from __future__ import annotations

import asyncio
import contextlib
import io
import ipaddress
import os
import re
import socket
import tarfile
import threading
import time
from collections.abc import AsyncIterator, Iterable, Iterator, Mapping, Sequence
from typing import Any, Literal

import docker
import docker.errors
import docker.types
import requests.exceptions

from reconciler.core.errors import DriverError, sanitize
from reconciler.core.model import (
    LABEL_PREFIX,
    MAIL_CATCHER_HOST,
    DesiredEnvironment,
    EnvKey,
    Tier,
    check_instance,
)
from reconciler.core.observed import ObservedContainer, Role
from reconciler.drivers.logstream import Source, stream_logs
from reconciler.drivers.protocols import Listing, RuntimeEvent
from reconciler.drivers.tarstream import empty_tar

SECRET_DIR = "/run/odooops"
PASSWORD_FILE = f"{SECRET_DIR}/db_password"
APP_ROOT = "/opt/odooops/app"
FILESTORE = "/var/lib/odoo"
HEALTH_CMD = (
    "import sys, urllib.request; "
    "sys.exit(0 if urllib.request.urlopen('http://127.0.0.1:8069/web/health', timeout=4)"
    ".status == 200 else 1)"
)
_SECONDS = 1_000_000_000
# Container events that mean an environment may need healing.
_EVENT_ACTIONS = ("die", "destroy", "stop", "kill", "oom", "health_status: unhealthy", "pause")
_HEALTH = re.compile(r"\((healthy|unhealthy|health: starting)\)")


def _label(name: str) -> str:
    return LABEL_PREFIX + name


class DockerDriver:
    """The only code that talks to the Docker engine."""

    def __init__(
        self, instance: str, base_url: str | None = None, health_interval: int = 5
    ) -> None:
        self.instance = check_instance(instance)
        self.health_interval = health_interval
        url = base_url or os.environ.get("DOCKER_HOST") or "unix:///var/run/docker.sock"
        self.url = url
        if url.startswith("unix://") and not os.path.exists(url.removeprefix("unix://")):
            raise DriverError(
                f"the Docker engine is unreachable: no socket at {url}",
                code="docker_unreachable",
                remediation="start it (bash scripts/setup.sh services) and check: docker info",
            )
        self.client = docker.DockerClient(base_url=base_url) if base_url else docker.from_env()
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
            port = labels.get(_label("port"))
            containers.setdefault(key, {})[Role(role)] = ObservedContainer(
                name=name,
                role=Role(role),
                state=c.get("State", "unknown"),
                health=None if health is None else health.group(1).replace("health: ", ""),
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
            existing = self.client.networks.list(names=[key.network])
            if any(n.name == key.network for n in existing):
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
                if net.name == name:
                    net.remove()

    def create_volume(self, key: EnvKey, name: str, protected: bool) -> None:
        with self._errors(f"create volume {name}"):
            self.client.volumes.create(
                name=name, labels=self.labels(key, protected=str(protected).lower())
            )

    def remove_volume(self, name: str) -> None:
        with self._errors(f"remove volume {name}"), contextlib.suppress(docker.errors.NotFound):
            self.client.volumes.get(name).remove(force=True)

    # ------------------------------------------------------------------------------ images
    def has_image(self, ref: str) -> bool:
        try:
            self.client.images.get(ref)
            return True
        except docker.errors.ImageNotFound:
            return False
        except docker.errors.APIError as exc:
            raise DriverError(f"cannot inspect image {ref}: {exc.explanation}") from exc

    def image_id(self, ref: str, *, pull: bool = True) -> str:
        """The local image ID of a base image, pulling it once when absent."""
        try:
            return str(self.client.images.get(ref).id)
        except docker.errors.ImageNotFound:
            if not pull:
                raise DriverError(
                    f"image {ref} is not available locally",
                    code="image_missing",
                    remediation=f"docker pull {ref}",
                ) from None
        try:
            return str(self.client.images.pull(ref).id)
        except docker.errors.DockerException as exc:
            raise DriverError(
                f"base image {ref} is not available locally and cannot be pulled",
                code="image_missing",
                remediation=f"docker pull {ref}  (or set odoo.image in the project file)",
            ) from exc

    def build_image(self, tag: str, base: str, app_tar: bytes, labels: Mapping[str, str]) -> str:
        """Layer the app tree on the base image; the tag is content addressed by the caller."""
        dockerfile = (f"FROM {base}\nCOPY app/ {APP_ROOT}/\n").encode()
        context = _tar_with(app_tar, {"Dockerfile": dockerfile})
        all_labels = {_label("built-by"): "odooops", **labels}
        with self._errors(f"build image {tag}"):
            try:
                _image, logs = self.client.images.build(
                    fileobj=io.BytesIO(context),
                    custom_context=True,
                    tag=tag,
                    rm=True,
                    forcerm=True,
                    pull=False,
                    labels=all_labels,
                )
            except docker.errors.BuildError as exc:
                tail = "".join(
                    str(x.get("stream", x.get("error", "")))
                    for x in exc.build_log
                    if isinstance(x, dict)
                )
                raise DriverError(
                    f"image build failed: {exc.msg}\n{tail[-2000:]}",
                    code="build_failed",
                    retryable=False,
                    remediation="fix the app repository and push a new commit",
                ) from exc
        return "".join(str(x.get("stream", "")) for x in logs if isinstance(x, dict))

    # -------------------------------------------------------------------------- containers
    @staticmethod
    def common_args(want: DesiredEnvironment) -> list[str]:
        """Options every Odoo process of the environment shares (server and one-off runs)."""
        return [f"--addons-path={','.join(want.addons_paths)}", f"--data-dir={FILESTORE}"]

    def odoo_command(self, want: DesiredEnvironment) -> list[str]:
        s = want.settings
        per_worker = s.memory // max(s.workers + 1, 2)
        return [
            *self.common_args(want),
            f"--database={want.key.database}",
            f"--db-filter=^{want.key.database}$",
            "--no-database-list",
            "--proxy-mode",
            f"--workers={s.workers}",
            f"--max-cron-threads={s.max_cron_threads}",
            f"--limit-memory-soft={int(per_worker * 0.8)}",
            f"--limit-memory-hard={per_worker}",
        ]

    def _db_endpoint(self, want: DesiredEnvironment) -> tuple[dict[str, str], dict[str, str]]:
        """Environment and extra hosts so that the container reaches its database as ``db``."""
        if want.server is None:
            return {"HOST": "db", "PORT": "5432"}, {}
        target = want.server.container_host
        env = {"HOST": "db", "PORT": str(want.server.port)}
        if target == "host-gateway" or re.fullmatch(r"[0-9.]+|[0-9a-fA-F:]+", target):
            return env, {"db": target}
        return {**env, "HOST": target}, {}

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

    def create_odoo(self, want: DesiredEnvironment, password: str, name: str | None = None) -> None:
        """Create (not start) the Odoo container with its password file in place.

        It is created under a scratch name and renamed only once the password file is in it:
        a daemon killed in between leaves a container that observation reports as stale (and
        the next run removes), never one under the real name that would start without its
        password.
        """
        final = name or want.key.odoo_container
        kwargs = self._odoo_kwargs(want, f"{final}-creating", self.odoo_command(want), Role.ODOO)
        kwargs.update(
            ports={"8069/tcp": ("127.0.0.1", want.port)},
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
    ) -> tuple[int, str]:
        """Run ``odoo <args>`` in a one-off container; return exit code and the log tail.

        124 when ``timeout`` passes, 130 when ``cancel`` is set (the daemon is stopping): the
        container is removed either way, and the step is redone by the next run.
        """
        name = want.key.init_container
        self.remove_container(name)
        kwargs = self._odoo_kwargs(want, name, [*self.common_args(want), *args], Role.INIT)
        with self._errors(f"run {name}"):
            container = self.client.containers.create(**kwargs)
            try:
                container.put_archive("/run", _secret_tar({"db_password": password}))
                container.start()
                code = self._wait_exit(container, timeout, cancel)
                logs = bytes(container.logs(tail=60)).decode(errors="replace")
            finally:
                container.remove(force=True, v=True)
        return code, sanitize(logs.replace(password, "***"))

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
            container = self.client.containers.get(container_name)
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
            self.client.containers.get(name).start()

    def stop(self, name: str, timeout: int = 20) -> None:
        with self._errors(f"stop {name}"):
            self.client.containers.get(name).stop(timeout=timeout)

    def rename(self, name: str, new_name: str) -> None:
        with self._errors(f"rename {name}"):
            self.client.containers.get(name).rename(new_name)

    def remove_container(self, name: str) -> None:
        with self._errors(f"remove {name}"), contextlib.suppress(docker.errors.NotFound):
            self.client.containers.get(name).remove(force=True, v=True)

    def wait_healthy(
        self, name: str, timeout: float, cancel: threading.Event | None = None
    ) -> tuple[bool, str]:
        """Wait for Docker's health status; ``(ok, detail)``. A dead container fails at once;
        ``cancel`` (the daemon stopping) ends the wait within a second."""
        deadline = time.monotonic() + timeout
        detail = "no health report yet"
        while time.monotonic() < deadline:
            if cancel is not None and cancel.is_set():
                return False, "interrupted: the daemon is stopping"
            with self._errors(f"inspect {name}"):
                state = self.client.api.inspect_container(name)["State"]
            status = (state.get("Health") or {}).get("Status")
            if status == "healthy":
                return True, "healthy"
            if state.get("Status") in ("exited", "dead"):
                return False, f"container exited with code {state.get('ExitCode')}"
            if status == "unhealthy":
                return False, "health check on /web/health failed"
            detail = f"health: {status or state.get('Status')}"
            time.sleep(1)
        return False, f"not healthy after {int(timeout)} s ({detail})"

    def logs(self, name: str, tail: int = 40) -> str:
        try:
            return bytes(self.client.containers.get(name).logs(tail=tail)).decode(errors="replace")
        except docker.errors.DockerException:
            return ""

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

    def _volumes_root(self) -> str:
        with self._errors("docker info"):
            root = str(self.client.info().get("DockerRootDir") or "/var/lib/docker")
        return f"{root}/volumes"

    def _helper(
        self,
        image: str,
        script: str,
        env: Mapping[str, str],
        volume: str,
        *,
        with_all_volumes: bool = False,
        timeout: float = 3600,
    ) -> str:
        """Run a shell script as root in a throw-away container of the environment's image.

        ``volume`` is mounted at the filestore path, so an empty new volume is first filled
        with the image's ``/var/lib/odoo`` (owner included) exactly as Odoo's own container
        would see it; ``chown --reference`` in scripts then gives new files that owner.
        """
        binds: dict[str, dict[str, str]] = {volume: {"bind": FILESTORE, "mode": "rw"}}
        if with_all_volumes:
            # One mount holding both volumes: hard links cannot cross mount points.
            binds[self._volumes_root()] = {"bind": "/volumes", "mode": "rw"}
        name = f"odooops-{self.instance}-helper-{os.urandom(4).hex()}"
        with self._errors(f"run helper for {volume}"):
            container = self.client.containers.create(
                image=image,
                name=name,
                entrypoint=["/bin/sh", "-c", script],
                command=[],
                user="0:0",
                environment=dict(env),
                volumes=binds,
                network_mode="none",
                labels={_label("instance"): self.instance, _label("role"): "helper"},
            )
            try:
                container.start()
                code = int(container.wait(timeout=timeout)["StatusCode"])
                out = bytes(container.logs()).decode(errors="replace")
            finally:
                container.remove(force=True, v=True)  # and its anonymous volumes
        if code != 0:
            raise DriverError(
                f"filestore operation on {volume} failed (exit {code}): {out.strip()[-500:]}",
                remediation=f"docker volume inspect {volume}",
            )
        return out

    def _parked(self, image: str, volume: str, mode: str) -> Any:
        """A created, never started container with the volume mounted: Docker's archive API
        reads and writes its files without running anything in the image."""
        return self.client.containers.create(
            image=image,
            name=f"odooops-{self.instance}-helper-{os.urandom(4).hex()}",
            entrypoint=["/bin/true"],
            command=[],
            volumes={volume: {"bind": FILESTORE, "mode": mode}},
            network_mode="none",
            labels={_label("instance"): self.instance, _label("role"): "helper"},
        )

    def filestore_link_copy(
        self, image: str, src_volume: str, src_db: str, dst_volume: str, dst_db: str
    ) -> int:
        """Copy a filestore by hard links: files are content addressed and never modified in
        place, so two environments may share them. Returns the number of files."""
        script = (
            "set -e; src=/volumes/$SRC_VOLUME/_data/filestore/$SRC_DB; "
            "dst=/volumes/$DST_VOLUME/_data/filestore/$DST_DB; "
            f"mkdir -p {FILESTORE}/filestore; chown --reference={FILESTORE} {FILESTORE}/filestore; "
            'rm -rf "$dst.copying"; '
            'if [ -d "$src" ]; then cp -al "$src" "$dst.copying"; else mkdir "$dst.copying"; fi; '
            'chown --reference=/var/lib/odoo "$dst.copying"; '
            'rm -rf "$dst"; mv "$dst.copying" "$dst"; find "$dst" -type f | wc -l'
        )
        out = self._helper(
            image,
            script,
            {
                "SRC_VOLUME": src_volume,
                "SRC_DB": src_db,
                "DST_VOLUME": dst_volume,
                "DST_DB": dst_db,
            },
            dst_volume,
            with_all_volumes=True,
        )
        return int(out.strip().splitlines()[-1] or 0)

    def filestore_export(self, image: str, volume: str, db: str) -> Iterator[bytes]:
        """A tar stream of ``filestore/<db>`` (members ``<db>/...``); empty when there is none."""
        with self._errors(f"read filestore of {volume}"):
            container = self._parked(image, volume, "ro")
        try:
            try:
                stream, _stat = container.get_archive(f"{FILESTORE}/filestore/{db}")
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

        Staging never touches a live filestore: ``filestore_commit`` swaps it in later, so an
        interrupted transfer leaves the environment's files as they were.
        """
        self._helper(
            image,
            f"set -e; mkdir -p {FILESTORE}/filestore; "
            f"chown --reference={FILESTORE} {FILESTORE}/filestore; "
            f'rm -rf "{FILESTORE}/filestore/$STAGED"',
            {"STAGED": staged},
            volume,
        )
        with self._errors(f"write filestore of {volume}"):
            container = self._parked(image, volume, "rw")
            try:
                if not container.put_archive(f"{FILESTORE}/filestore", _Chunked(tar_stream)):
                    raise DriverError(f"Docker refused the filestore archive for {volume}")
            finally:
                container.remove(force=True, v=True)  # and its anonymous volumes
        self._helper(
            image,
            f'set -e; cd {FILESTORE}/filestore; mkdir -p "$STAGED"; '
            f'chown -R --reference={FILESTORE} "$STAGED"',
            {"STAGED": staged},
            volume,
        )

    def filestore_swap(self, image: str, volume: str, staged: str, db: str, old: str) -> None:
        """Swap a staged filestore in for the live one of ``db``; safe to run again.

        The live directory is moved aside first and removed last, so a crash between any two
        commands leaves either the old or the new files under ``db``, never neither for good:
        the next run finds ``staged`` and finishes the same way.
        """
        self._helper(
            image,
            f"set -e; cd {FILESTORE}/filestore 2>/dev/null || exit 0; "
            'if [ -d "$STAGED" ]; then '
            '[ -d "$DB" ] && mv "$DB" "$OLD"; mv "$STAGED" "$DB"; fi; rm -rf "$OLD"',
            {"STAGED": staged, "DB": db, "OLD": old},
            volume,
        )

    def filestore_discard(self, image: str, volume: str, staged: str) -> None:
        """Remove a staged filestore that will never be swapped in."""
        self._helper(
            image,
            f'rm -rf "{FILESTORE}/filestore/$STAGED" "{FILESTORE}/filestore/$STAGED.copying"',
            {"STAGED": staged},
            volume,
        )

    def filestore_remove(self, image: str, volume: str, db: str) -> None:
        self._helper(image, f'rm -rf "{FILESTORE}/filestore/$DB"', {"DB": db}, volume)

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
                raise DriverError(f"{self.what}: {exc.explanation or exc}") from exc
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


def _tar_with(app_tar: bytes, extra: Mapping[str, bytes]) -> bytes:
    """Append files to an existing tar (the app tree placed under ``app/`` by the caller)."""
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w") as out:
        for name, data in extra.items():
            info = tarfile.TarInfo(name)
            info.size, info.mode, info.mtime = len(data), 0o644, 0
            out.addfile(info, io.BytesIO(data))
        with tarfile.open(fileobj=io.BytesIO(app_tar), mode="r") as src:
            for member in src.getmembers():
                out.addfile(member, src.extractfile(member) if member.isfile() else None)
    return buf.getvalue()
