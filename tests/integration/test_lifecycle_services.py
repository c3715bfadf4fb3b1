"""The lifecycle against its services: S3 (SeaweedFS, also failing), the mail catcher, schedules.

The engine and its data operations are real; S3 failures come from a small HTTP proxy in front
of the real server that answers 500 to chosen requests, so the failure lands exactly mid-upload.
"""

from __future__ import annotations

import http.client
import os
import socket
import subprocess
import threading
import uuid
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import urlsplit

import pytest
import yaml

from reconciler.core.errors import OdooOpsError
from reconciler.core.model import EnvKey
from reconciler.data.backup.errors import BackupStorageError
from reconciler.engine.status import Health, Sync
from tests.integration.s3server import ACCESS_KEY, SECRET_KEY, S3Server
from tests.integration.world import World

pytestmark = pytest.mark.integration


def converge(world: World, *envs: str) -> None:
    result = world.reconcile()
    assert result.errors == {}, result.errors
    for env in envs:
        status = world.engine().status.get(f"{world.project}/{env}")
        assert status is not None
        assert (status.sync, status.health) == (Sync.SYNCED, Health.HEALTHY), status


def set_platform(world: World, **sections: Any) -> None:
    """Commit changed sections of odooops.yaml (a user editing the platform file)."""
    doc = yaml.safe_load((world.state.dir / "odooops.yaml").read_text())
    doc.update(sections)
    world.state.write({"odooops.yaml": yaml.safe_dump(doc)}, "platform settings")


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


class FlakyS3:
    """An HTTP proxy to the S3 server that fails every upload of a part after the first N."""

    def __init__(self, upstream: str, fail_after_parts: int) -> None:
        target = urlsplit(upstream)
        self.failed = 0
        proxy = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def _forward(self) -> None:
                length = int(self.headers.get("Content-Length") or 0)
                body = self.rfile.read(length) if length else None
                query = urlsplit(self.path).query
                part = [p for p in query.split("&") if p.startswith("partNumber=")]
                if part and int(part[0].split("=")[1]) > fail_after_parts:
                    proxy.failed += 1
                    self.send_response(500)
                    self.send_header("Content-Length", "0")
                    self.end_headers()
                    return
                conn = http.client.HTTPConnection(target.hostname, target.port, timeout=30)
                headers = {k: v for k, v in self.headers.items() if k.lower() != "host"}
                headers["Host"] = target.netloc
                conn.request(self.command, self.path, body=body, headers=headers)
                resp = conn.getresponse()
                data = resp.read()
                self.send_response(resp.status)
                for key, value in resp.getheaders():
                    if key.lower() not in ("transfer-encoding", "content-length", "connection"):
                        self.send_header(key, value)
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)
                conn.close()

            do_GET = do_PUT = do_POST = do_DELETE = do_HEAD = _forward

            def log_message(self, format: str, *args: Any) -> None:
                return None

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.endpoint = f"http://127.0.0.1:{self.server.server_address[1]}"
        self._thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self._thread.start()

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()
        self._thread.join()


@pytest.fixture
def bucket(s3_server: S3Server) -> Iterator[str]:
    name = f"odooops-{uuid.uuid4().hex[:12]}"
    client = s3_server.client()
    client.create_bucket(Bucket=name)
    yield name
    for upload in client.list_multipart_uploads(Bucket=name).get("Uploads", []):
        client.abort_multipart_upload(Bucket=name, Key=upload["Key"], UploadId=upload["UploadId"])
    for item in client.list_objects_v2(Bucket=name).get("Contents", []):
        client.delete_object(Bucket=name, Key=item["Key"])
    client.delete_bucket(Bucket=name)


@pytest.fixture
def s3_creds(monkeypatch: pytest.MonkeyPatch) -> dict[str, Any]:
    monkeypatch.setenv("ODOOOPS_SECRET_TEST_S3_ACCESS", ACCESS_KEY)
    monkeypatch.setenv("ODOOOPS_SECRET_TEST_S3_SECRET", SECRET_KEY)
    return {
        "access_key": {"env": "ODOOOPS_SECRET_TEST_S3_ACCESS"},
        "secret_key": {"env": "ODOOOPS_SECRET_TEST_S3_SECRET"},
    }


def use_s3(world: World, endpoint: str, bucket: str, creds: dict[str, Any]) -> None:
    set_platform(
        world,
        backups={
            "storage": f"s3://{bucket}/odooops",
            "s3": {"endpoint": endpoint, "region": "us-east-1", **creds},
            "encryption_key": {"file": str(world.backup_key_file)},
        },
    )


def big_production(world: World) -> None:
    """A production database holding ~12 MB of incompressible data (several upload parts)."""
    import psycopg

    world.declare("prod", branch="main", tier="production")
    converge(world, "prod")
    with psycopg.connect(
        host="127.0.0.1", user="postgres", dbname=f"{world.project}__prod"
    ) as conn:
        conn.execute(
            "INSERT INTO ir_attachment (name, type, db_datas) VALUES ('blob', 'binary', %s)",
            [os.urandom(12 * 1024 * 1024)],
        )


def test_backup_to_s3_restores_into_staging(
    world: World, s3_server: S3Server, bucket: str, s3_creds: dict[str, Any]
) -> None:
    big_production(world)
    world.declare("staging", branch="release/v1")
    use_s3(world, s3_server.endpoint, bucket, s3_creds)
    converge(world, "prod", "staging")
    key = EnvKey(world.project, "prod")
    manifest = world.engine().data.backup(key, "manual")
    assert manifest["status"] == "good"
    objects = {
        o["Key"]: o["Size"] for o in s3_server.client().list_objects_v2(Bucket=bucket)["Contents"]
    }
    stored = f"odooops/{world.project}/prod/{manifest['id']}.backup"
    assert objects[stored] == manifest["sizes"]["stored_bytes"] > 12 * 1024 * 1024
    world.engine().data.restore(EnvKey(world.project, "staging"), "latest", key)
    converge(world, "staging")
    rows = world.query(
        f"{world.project}__staging",
        "SELECT length(db_datas) FROM ir_attachment WHERE name = 'blob'",
    )
    assert rows == [(12 * 1024 * 1024,)]


def test_s3_failing_mid_upload_marks_the_backup_failed_and_aborts_the_upload(
    world: World, s3_server: S3Server, bucket: str, s3_creds: dict[str, Any]
) -> None:
    """Parts after the first fail: the backup is failed, no multipart upload stays behind."""
    big_production(world)
    proxy = FlakyS3(s3_server.endpoint, fail_after_parts=1)
    try:
        use_s3(world, proxy.endpoint, bucket, s3_creds)
        converge(world, "prod")
        key = EnvKey(world.project, "prod")
        with pytest.raises(BackupStorageError) as failed:
            world.engine().data.backup(key, "manual")
        assert proxy.failed >= 1
        assert SECRET_KEY not in failed.value.message + failed.value.remediation
        client = s3_server.client()
        assert client.list_multipart_uploads(Bucket=bucket).get("Uploads", []) == []
        backups = world.engine().data.backups(key)
        assert backups and all(b["status"] == "failed" for b in backups)
        assert not any(
            o["Key"].endswith(".backup")
            for o in client.list_objects_v2(Bucket=bucket).get("Contents", [])
        )
        status = world.engine().status.get(f"{world.project}/prod")
        assert status is not None and not status.last_backup
    finally:
        proxy.close()


def test_unreachable_s3_is_a_structured_error_and_writes_nothing(
    world: World, bucket: str, s3_creds: dict[str, Any]
) -> None:
    world.declare("prod", branch="main", tier="production")
    converge(world, "prod")
    use_s3(world, f"http://127.0.0.1:{free_port()}", bucket, s3_creds)
    converge(world, "prod")
    with pytest.raises(OdooOpsError) as failed:
        world.engine().data.backup(EnvKey(world.project, "prod"), "manual")
    assert failed.value.code == "backup_storage_unreachable"
    assert failed.value.remediation


def test_missing_backup_key_is_refused_before_anything_is_written(world: World) -> None:
    world.declare("prod", branch="main", tier="production")
    converge(world, "prod")
    set_platform(world, backups={"storage": world.backup_dir.as_uri()})
    converge(world, "prod")
    with pytest.raises(OdooOpsError) as refused:
        world.engine().data.backup(EnvKey(world.project, "prod"), "manual")
    assert refused.value.code == "backup_key_missing"
    assert "odooops init-key" in refused.value.remediation
    assert list(world.backup_dir.rglob("*")) == []


def send_as_odoo(world: World, env: str, starttls: bool = True) -> tuple[int, str]:
    """Send from the environment's Odoo container through the active ir_mail_server of its
    database, as Odoo does: STARTTLS when ``smtp_encryption`` says so (without verifying the
    certificate, like Odoo's ``starttls``), then login. ``starttls=False`` skips it."""
    container = world.containers()[f"odooops-{world.project}-{env}-odoo"]
    script = (
        "import os, smtplib, psycopg2; from email.message import EmailMessage\n"
        "pw = open(os.environ['PASSWORD_FILE']).read().strip()\n"
        "c = psycopg2.connect(host=os.environ['HOST'], port=os.environ['PORT'],"
        " user=os.environ['USER'], password=pw, dbname='" + f"{world.project}__{env}" + "')\n"
        "cur = c.cursor(); cur.execute('SELECT smtp_host, smtp_port, smtp_user, smtp_pass,"
        " smtp_encryption FROM ir_mail_server WHERE active ORDER BY sequence LIMIT 1')\n"
        "host, port, user, password, encryption = cur.fetchone()\n"
        "m = EmailMessage(); m['From'] = 'shop@acme.example'; m['To'] = 'client@example.com'\n"
        "m['Subject'] = 'Your order S00042'; m.set_content('Thank you for your order.')\n"
        "s = smtplib.SMTP(host, port, timeout=10)\n"
        f"if encryption == 'starttls' and {starttls}: s.starttls()\n"
        "s.login(user, password); s.send_message(m); s.quit()\n"
    )
    code, output = container.exec_run(["python3", "-c", script])
    return code, output.decode()


def test_staging_mail_is_caught_per_environment(world: World) -> None:
    """What staging's Odoo sends through its configured server (STARTTLS, then AUTH) lands in
    the catcher, listening on the Docker bridge gateway the container reaches."""
    port = free_port()
    set_platform(world, mail_catcher={"port": port})
    world.declare("staging", branch="release/v1")
    converge(world, "staging")
    data = world.engine().data
    data.start_mail_catcher()
    try:
        code, output = send_as_odoo(world, "staging")
        assert code == 0, output
        key = EnvKey(world.project, "staging")
        items = data.mail_list(key, 10, None)
        assert [m["subject"] for m in items] == ["Your order S00042"]
        message = data.mail_get(key, items[0]["id"])
        assert "Thank you for your order." in message["text"]
        assert data.mail_list(EnvKey(world.project, "other"), 10, None) == []
        refused, output = send_as_odoo(world, "staging", starttls=False)
        assert refused != 0 and "AUTH extension not supported" in output
        assert len(data.mail_list(key, 10, None)) == 1
    finally:
        data.stop_mail_catcher()


def test_the_catcher_listens_on_loopback_and_the_bridge_gateway_only(world: World) -> None:
    """Not on every interface: the addresses of its settings' default, and nothing else."""
    port = free_port()
    set_platform(world, mail_catcher={"port": port})
    world.reconcile()
    data = world.engine().data
    data.start_mail_catcher()
    try:
        gateway = world.engine().docker.host_gateway()
        listening = subprocess.run(
            ["ss", "-Hltn", f"sport = :{port}"], capture_output=True, text=True, check=True
        ).stdout
        local = sorted(line.split()[3] for line in listening.splitlines())
        assert local == sorted([f"127.0.0.1:{port}", f"{gateway}:{port}"])
        key_file = world.data_dir / "mail-tls" / "mail-catcher.key"
        assert key_file.stat().st_mode & 0o777 == 0o600
    finally:
        data.stop_mail_catcher()


def test_scheduled_backups_follow_the_tier_schedule_and_restore_tests_run(
    world: World,
) -> None:
    """Production every 6 h: due at once, not an hour later, due again after 6 h; the first
    restore test runs once a backup exists, then weekly."""
    # An interval, not the example app's cron ("0 */6 * * *"), whose slots depend on the hour.
    world.declare("prod", branch="main", tier="production", overrides={"backup_schedule": "6h"})
    converge(world, "prod")
    engine = world.engine()
    data = engine.data
    now = datetime.now(UTC)
    prod = f"{world.project}/prod"
    assert engine.schedules.run(now, wait=True) == [f"backup {prod}"]
    assert engine.schedules.run(now + timedelta(hours=1), wait=True) == [f"restore test {prod}"]
    assert engine.schedules.run(now + timedelta(hours=2), wait=True) == []
    assert engine.schedules.run(now + timedelta(hours=7), wait=True) == [f"backup {prod}"]
    status = world.engine().status.get(f"{world.project}/prod")
    assert status is not None and status.last_restore_test
    good = [b for b in data.backups(EnvKey(world.project, "prod")) if b["status"] == "good"]
    assert len(good) == 2
    assert world.scratch_databases() == set()  # each restore test dropped its database
