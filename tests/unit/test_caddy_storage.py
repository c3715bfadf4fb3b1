"""What the Caddy driver reads without Docker: certificates in Caddy's storage layout, the
ACME errors it logged, and when its container must be replaced."""

from __future__ import annotations

import gc
import io
import json
import tarfile
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import cast

import docker
import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

from reconciler.core.errors import DriverError
from reconciler.drivers.caddy import (
    CaddyDriver,
    Certificate,
    ProxySettings,
    _acme_excerpt,
    _holds_account,
    _parse_storage,
    _stored_certificates,
)

NOW = datetime(2026, 1, 18, 10, 0, tzinfo=UTC)


def pem(host: str, not_after: datetime, key: ec.EllipticCurvePrivateKey | None = None) -> bytes:
    key = key or ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, host)])
    cert = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(1)
        .not_valid_before(not_after - timedelta(days=90))
        .not_valid_after(not_after)
        .sign(key, hashes.SHA256())
    )
    return cert.public_bytes(serialization.Encoding.PEM)


def storage(files: dict[str, bytes]) -> bytes:
    """A tar as ``get_archive`` of ``/data/caddy/certificates`` gives it."""
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w") as tar:
        for path, data in files.items():
            info = tarfile.TarInfo(path)
            info.size = len(data)
            tar.addfile(info, io.BytesIO(data))
    return buffer.getvalue()


def test_each_hosts_leaf_certificate_is_read_with_its_issuer_and_expiry() -> None:
    expiry = NOW + timedelta(days=60)
    archive = storage(
        {
            "certificates/acme-v02.api.letsencrypt.org-directory/erp.example.com/"
            "erp.example.com.crt": pem("erp.example.com", expiry),
            "certificates/acme-v02.api.letsencrypt.org-directory/erp.example.com/"
            "erp.example.com.key": b"not a certificate",
            "certificates/acme-v02.api.letsencrypt.org-directory/erp.example.com/"
            "erp.example.com.json": b"{}",
        }
    )
    (cert,) = _parse_storage(archive)
    assert cert.host == "erp.example.com"
    assert cert.issuer == "acme-v02.api.letsencrypt.org-directory"
    assert cert.not_after == expiry
    assert cert.managed and cert.days_left(NOW) == 60


def test_files_out_of_the_layout_and_half_written_ones_are_skipped() -> None:
    archive = storage(
        {
            "certificates/ca/a.example.com/b.example.com.crt": pem("b.example.com", NOW),
            "certificates/ca/a.example.com/a.example.com.crt": b"-----BEGIN CERT",
            "certificates/top.crt": pem("top", NOW),
        }
    )
    assert list(_parse_storage(archive)) == []
    assert list(_parse_storage(b"")) == []


def test_a_host_without_a_certificate_is_not_managed() -> None:
    assert not Certificate("erp.example.com").managed
    assert Certificate("erp.example.com").days_left(NOW) is None
    assert Certificate("x.example.com", NOW, "ca").to_dict() == {
        "host": "x.example.com",
        "managed": True,
        "not_after": NOW.isoformat(),
        "issuer": "ca",
    }


def test_the_acme_excerpt_keeps_the_last_errors_about_the_hosts_asked_for() -> None:
    lines = [
        json.dumps({"level": "info", "msg": "obtaining certificate", "identifier": "a.example"}),
        json.dumps(
            {
                "level": "error",
                "msg": "could not get certificate from issuer",
                "identifier": "a.example",
                "error": "dial tcp: lookup pebble: no such host",
            }
        ),
        json.dumps({"level": "error", "msg": "other", "identifier": "b.example", "error": "x"}),
    ]
    said = _acme_excerpt("\n".join(lines), ["a.example"])
    assert "could not get certificate from issuer: dial tcp: lookup pebble" in said
    assert "other" not in said
    assert "no error" in _acme_excerpt("", ["a.example"])


def test_changed_settings_replace_the_container_and_labels_do_not() -> None:
    base = ProxySettings(image="caddy:2", admin_dir=Path("/var/lib/odooops/proxy"))
    assert (
        base.spec_hash()
        == ProxySettings(
            image="caddy:2", admin_dir=Path("/var/lib/odooops/proxy"), labels={"x": "y"}
        ).spec_hash()
    )
    for changed in (
        ProxySettings(image="caddy:2.8", admin_dir=base.admin_dir),
        ProxySettings(image="caddy:2", admin_dir=base.admin_dir, https_port=8443),
        ProxySettings(image="caddy:2", admin_dir=base.admin_dir, publish_host="127.0.0.1"),
        ProxySettings(image="caddy:2", admin_dir=Path("/run/odooops-proxy")),
    ):
        assert changed.spec_hash() != base.spec_hash()


def key_pem(key: ec.EllipticCurvePrivateKey) -> bytes:
    return key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    )


def test_the_stored_certificates_to_load_are_whole_unexpired_and_of_the_ca() -> None:
    """A pair Caddy is writing (the key not matching) or an expired one would make Caddy
    refuse the whole load; another CA's certificate would be served before the managed one."""
    good, other = ec.generate_private_key(ec.SECP256R1()), ec.generate_private_key(ec.SECP256R1())
    later = NOW + timedelta(days=60)
    files = {
        "certificates/ca/a.example.com/a.example.com.crt": pem("a.example.com", later, good),
        "certificates/ca/a.example.com/a.example.com.key": key_pem(good),
        "certificates/ca/b.example.com/b.example.com.crt": pem("b.example.com", later, good),
        "certificates/ca/b.example.com/b.example.com.key": key_pem(other),  # mid-renewal
        "certificates/ca/c.example.com/c.example.com.crt": pem("c.example.com", NOW, good),
        "certificates/ca/c.example.com/c.example.com.key": key_pem(good),  # expired
        "certificates/ca/d.example.com/d.example.com.crt": pem("d.example.com", later, good),
        "certificates/old/e.example.com/e.example.com.crt": pem("e.example.com", later, good),
        "certificates/old/e.example.com/e.example.com.key": key_pem(good),
    }
    (only,) = _stored_certificates(storage(files), "ca", NOW)
    assert only.host == "a.example.com"
    assert only.chain_pem == files["certificates/ca/a.example.com/a.example.com.crt"]
    assert only.key_pem == key_pem(good)
    assert {c.host for c in _stored_certificates(storage(files), None, NOW)} == {
        "a.example.com",
        "e.example.com",
    }
    assert _stored_certificates(b"", "ca", NOW) == []


def test_an_acme_account_is_a_registration_in_the_users_folder() -> None:
    registered = storage({"users/default/default.json": b"{}", "users/default/default.key": b"k"})
    assert _holds_account(registered, None)
    assert not _holds_account(registered, "ops@example.com")
    assert _holds_account(storage({"users/ops@example.com/ops.json": b"{}"}), "Ops@example.com")
    assert not _holds_account(storage({"users/default/default.key": b"k"}), None)
    assert not _holds_account(b"", None)


def test_an_admin_socket_that_does_not_answer_is_proxy_unavailable_and_leaks_nothing(
    tmp_path: Path,
) -> None:
    """httpcore leaves the socket of a failed unix connect open; the driver's probe does not
    get that far (warnings are errors here, so a collected open socket fails the test)."""
    settings = ProxySettings(image="caddy:2", admin_dir=tmp_path)
    driver = CaddyDriver("unit", settings, client=cast(docker.DockerClient, object()))
    (tmp_path / "admin.sock").touch()  # a stale file, no listener
    for _ in range(2):
        with pytest.raises(DriverError) as exc:
            driver.config()
        assert exc.value.code == "proxy_unavailable"
        (tmp_path / "admin.sock").unlink(missing_ok=True)
    gc.collect()
