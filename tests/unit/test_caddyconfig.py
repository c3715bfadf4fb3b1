"""The Caddy configuration rendered from a route table: one whole document, deterministic."""

from __future__ import annotations

import json
from typing import Any

import pytest

from reconciler.core.caddyconfig import (
    ACME_ROOTS_FILE,
    ADMIN_ORIGIN,
    ADMIN_SOCKET,
    BRIDGE_DIR,
    LETS_ENCRYPT,
    STORAGE_ROOT,
    AcmeSettings,
    StoredCertificate,
    acme_account,
    caddy_config,
    issuer_key,
    managed_subjects,
    restricted,
    storage_key,
    with_stored_certificates,
)
from reconciler.core.ingress import EnvironmentRoute, Maintenance, RouteTable, route_table
from reconciler.core.model import EnvKey, Tier

PROD = EnvKey("acme", "production")
QA = EnvKey("acme", "qa")


def table(*routes: EnvironmentRoute) -> RouteTable:
    return route_table(routes, "example.net")


def prod(**kw: Any) -> EnvironmentRoute:
    return EnvironmentRoute(
        PROD, Tier.PRODUCTION, ("odooops-acme-production-odoo",), PROD.network, **kw
    )


def qa(**kw: Any) -> EnvironmentRoute:
    kw.setdefault("upstreams", ("odooops-acme-qa-odoo",))
    return EnvironmentRoute(QA, Tier.STAGING, network=QA.network, **kw)


def server(doc: Any, name: str) -> dict[str, Any]:
    found: dict[str, Any] = doc["apps"]["http"]["servers"][name]
    return found


def steps(doc: Any, index: int = 0) -> list[dict[str, Any]]:
    """The subroute of the index-th environment on the HTTPS server."""
    found: list[dict[str, Any]] = server(doc, "https")["routes"][index]["handle"][0]["routes"]
    return found


def handlers(step: dict[str, Any]) -> list[str]:
    return [h["handler"] for h in step["handle"]]


def test_https_on_443_and_a_redirect_on_80() -> None:
    doc = caddy_config(table(qa())).document
    assert server(doc, "https")["listen"] == [":443"]
    assert server(doc, "http")["listen"] == [":80"]
    (redirect,) = server(doc, "http")["routes"]
    response = redirect["handle"][0]
    assert response["status_code"] == 308
    assert response["headers"]["Location"] == ["https://{http.request.host}{http.request.uri}"]
    assert "match" not in redirect  # every host, so a typed http:// URL never dead-ends


def test_an_environment_is_matched_by_all_its_hosts() -> None:
    doc = caddy_config(table(qa(domains=("erp.example.com",)))).document
    (route,) = server(doc, "https")["routes"]
    assert route["match"] == [{"host": ["qa.acme.example.net", "erp.example.com"]}]
    assert route["terminal"] is True


def test_websocket_goes_to_the_gevent_port_and_the_rest_to_http() -> None:
    *_, websocket, rest = steps(caddy_config(table(qa())).document)
    assert websocket["match"] == [{"path": ["/websocket*"]}]
    (ws_proxy,) = websocket["handle"]
    assert ws_proxy["upstreams"] == [{"dial": "odooops-acme-qa-odoo:8072"}]
    assert websocket["terminal"] is True
    (http_proxy,) = rest["handle"]
    assert http_proxy["upstreams"] == [{"dial": "odooops-acme-qa-odoo:8069"}]
    assert "match" not in rest


def test_upstreams_are_tried_in_order_and_a_failed_dial_goes_to_the_next() -> None:
    """A rollout lists [new, old] then [name, name-next]: the first that answers serves, and a
    name that no longer resolves costs a retry, not a failed request."""
    route = qa(upstreams=("odooops-acme-qa-odoo-next", "odooops-acme-qa-odoo"))
    *_, websocket, rest = steps(caddy_config(table(route)).document)
    for step, port in ((websocket, 8072), (rest, 8069)):
        (proxy,) = step["handle"]
        assert proxy["upstreams"] == [
            {"dial": f"odooops-acme-qa-odoo-next:{port}"},
            {"dial": f"odooops-acme-qa-odoo:{port}"},
        ]
        balancing = proxy["load_balancing"]
        assert balancing["selection_policy"] == {"policy": "first"}
        assert balancing["try_duration"] == "5s"
        assert proxy["health_checks"]["passive"]["max_fails"] == 1


def test_a_route_needs_an_upstream_tuple() -> None:
    with pytest.raises(ValueError, match="non-empty tuple"):
        qa(upstreams=())
    with pytest.raises(ValueError, match="non-empty tuple"):
        qa(upstreams="odooops-acme-qa-odoo")


def test_no_proxy_is_trusted_so_forwarded_headers_are_caddys_own() -> None:
    """reverse_proxy replaces a client's X-Forwarded-* unless the client is a trusted proxy."""
    body = caddy_config(table(qa(), prod(allowlist=("203.0.113.7",)))).body().decode()
    assert "trusted_proxies" not in body
    assert '"forwarded"' not in body  # the allowlist looks at the connection, not a header
    assert "header_up" not in body


def test_the_tiers_body_limit_comes_before_the_upstream() -> None:
    doc = caddy_config(route_table([qa(domains=("q.example.com",))], None, {Tier.STAGING: 1234}))
    assert steps(doc.document)[0]["handle"] == [{"handler": "request_body", "max_size": 1234}]


def test_an_environment_without_a_host_has_no_route() -> None:
    """An empty host matcher would match every host: the route is left out instead."""
    doc = caddy_config(route_table([qa(), prod(domains=("erp.example.com",))], None)).document
    (route,) = server(doc, "https")["routes"]
    assert route["match"] == [{"host": ["erp.example.com"]}]


def test_a_body_over_the_limit_is_answered_413() -> None:
    (too_large,) = server(caddy_config(table(qa())).document, "https")["errors"]["routes"]
    assert too_large["handle"][0]["status_code"] == 413
    assert "request body too large" in json.dumps(too_large["match"])


def test_production_with_an_allowlist_refuses_other_addresses_first() -> None:
    first, *_ = steps(caddy_config(table(prod(allowlist=("203.0.113.7", " 10.0.0.0/8")))).document)
    assert first["match"] == [{"not": [{"remote_ip": {"ranges": ["203.0.113.7", "10.0.0.0/8"]}}]}]
    assert first["handle"][0]["status_code"] == 403
    assert first["terminal"] is True


def test_without_an_allowlist_nobody_is_refused() -> None:
    assert all(
        "match" not in s or "path" in s["match"][0]
        for s in steps(caddy_config(table(prod())).document)
    )


def test_maintenance_answers_503_with_retry_after_and_the_text() -> None:
    route = qa(maintenance=Maintenance("Back at 14:00.", retry_after=300))
    page = steps(caddy_config(table(route)).document)[0]
    assert page["terminal"] is True
    (response,) = page["handle"]
    assert response["status_code"] == 503
    assert response["headers"]["Retry-After"] == ["300"]
    assert response["body"] == "Back at 14:00.\n"


def test_the_allowlist_still_applies_during_maintenance() -> None:
    route = prod(allowlist=("203.0.113.7",), maintenance=Maintenance("x"))
    first, second, *_ = steps(caddy_config(table(route)).document)
    assert first["handle"][0]["status_code"] == 403
    assert second["handle"][0]["status_code"] == 503


def test_maintenance_text_cannot_expand_caddy_placeholders() -> None:
    """A body is expanded by Caddy: ``{env.X}`` would print the proxy's environment."""
    route = qa(maintenance=Maintenance("{env.HOME} and \\{x}"))
    (response,) = steps(caddy_config(table(route)).document)[0]["handle"]
    assert response["body"] == "\\{env.HOME\\} and \\\\{x\\}\n"


def test_certificates_come_from_lets_encrypt_by_default_for_every_host() -> None:
    config = caddy_config(table(qa(domains=("erp.example.com",)), prod()))
    (policy,) = config.document["apps"]["tls"]["automation"]["policies"]
    assert policy["subjects"] == [
        "erp.example.com",
        "production.acme.example.net",
        "qa.acme.example.net",
    ]
    assert policy["issuers"] == [{"module": "acme", "ca": LETS_ENCRYPT}]
    assert config.files == {}
    assert config.document["storage"] == {"module": "file_system", "root": STORAGE_ROOT}


def test_a_test_ca_and_the_roots_of_its_endpoint_come_from_the_settings() -> None:
    acme = AcmeSettings(
        ca="https://pebble:14000/dir", email="ops@example.com", trusted_roots_pem="PEM"
    )
    config = caddy_config(table(qa()), acme)
    (policy,) = config.document["apps"]["tls"]["automation"]["policies"]
    assert policy["issuers"] == [
        {
            "module": "acme",
            "ca": "https://pebble:14000/dir",
            "email": "ops@example.com",
            "trusted_roots_pem_files": [ACME_ROOTS_FILE],
        }
    ]
    assert config.files == {ACME_ROOTS_FILE: b"PEM"}


def test_no_host_no_certificate_policy() -> None:
    assert "tls" not in caddy_config(RouteTable()).document["apps"]


def test_the_admin_api_is_only_the_unix_socket_in_every_document() -> None:
    for doc in (caddy_config(RouteTable()).document, caddy_config(table(qa())).document):
        assert doc["admin"] == {
            "listen": f"unix/{ADMIN_SOCKET}",
            "origins": [ADMIN_ORIGIN],
            "config": {"persist": True},
        }


def test_http3_is_not_advertised_since_only_tcp_is_published() -> None:
    assert server(caddy_config(table(qa())).document, "https")["protocols"] == ["h1", "h2"]


def test_the_same_table_renders_the_same_bytes() -> None:
    a = caddy_config(
        route_table([qa(domains=("b.example.com", "a.example.com")), prod()], "example.net")
    )
    b = caddy_config(
        route_table([prod(), qa(domains=("a.example.com", "b.example.com"))], "example.net")
    )
    assert a.body() == b.body()
    assert json.loads(a.body()) == a.document


def test_the_storage_key_of_an_acme_ca_is_certmagics() -> None:
    assert issuer_key("https://pebble:14000/dir") == "pebble-14000-dir"
    assert issuer_key(LETS_ENCRYPT) == "acme-v02.api.letsencrypt.org-directory"
    assert issuer_key("https://acme.zerossl.com/v2/DV90") == "acme.zerossl.com-v2-dv90"
    assert storage_key("Ops+Caddy@Example.com") == "ops_plus_caddy@example.com"


LEAF = b"-----BEGIN CERTIFICATE-----\nTEFG\n-----END CERTIFICATE-----\n"
CHAIN = LEAF + b"-----BEGIN CERTIFICATE-----\nSU5U\n-----END CERTIFICATE-----\n"


def test_a_stored_certificate_is_loaded_as_a_copy_that_is_its_own_cache_entry() -> None:
    """Loaded while provisioning (before any server starts); the chain repeats its last
    certificate so its hash differs from the managed copy's, which stays managed."""
    config = caddy_config(table(qa(domains=("erp.example.com",))))
    stored = [
        StoredCertificate("qa.acme.example.net", CHAIN, b"KEY"),
        StoredCertificate("gone.example.org", CHAIN, b"KEY"),  # no longer routed: left out
    ]
    bridged = with_stored_certificates(config, stored)
    base = f"{BRIDGE_DIR}/qa.acme.example.net"
    assert bridged.document["apps"]["tls"]["certificates"] == {
        "load_files": [{"certificate": f"{base}.crt", "key": f"{base}.key", "format": "pem"}]
    }
    https = server(bridged.document, "https")
    assert https["automatic_https"]["ignore_loaded_certificates"] is True
    assert bridged.files[f"{base}.crt"] == CHAIN + CHAIN[len(LEAF) :]
    assert bridged.files[f"{base}.key"] == b"KEY"
    assert (
        bridged.document["apps"]["tls"]["automation"]
        == config.document["apps"]["tls"]["automation"]
    )
    assert "certificates" not in config.document["apps"]["tls"]  # the input is unchanged


def test_without_stored_certificates_the_configuration_is_as_rendered() -> None:
    config = caddy_config(table(qa()))
    assert with_stored_certificates(config, []) is config
    no_chain = StoredCertificate("qa.acme.example.net", b"", b"KEY")
    assert with_stored_certificates(config, [no_chain]) is config


def test_a_restricted_configuration_serves_every_route_and_certifies_the_kept_hosts() -> None:
    config = caddy_config(table(qa(domains=("erp.example.com",)), prod()))
    subjects = managed_subjects(config)
    assert subjects == ["erp.example.com", "production.acme.example.net", "qa.acme.example.net"]
    first = restricted(config, subjects[:1])
    https = server(first.document, "https")
    assert https["automatic_https"]["skip_certificates"] == subjects[1:]
    assert https["routes"] == server(config.document, "https")["routes"]
    assert restricted(config, subjects).body() == config.body()


def test_the_acme_account_is_the_policys_issuer() -> None:
    acme = AcmeSettings(ca="https://pebble:14000/dir", email="ops@example.com")
    assert acme_account(caddy_config(table(qa()), acme)) == (
        "https://pebble:14000/dir",
        "ops@example.com",
    )
    assert acme_account(caddy_config(table(qa()))) == (LETS_ENCRYPT, None)
    assert acme_account(caddy_config(RouteTable())) is None


def test_the_internal_ca_is_caddys_own_issuer_without_acme_settings() -> None:
    config = caddy_config(
        table(qa()), AcmeSettings(ca="internal", email="ops@example.com", trusted_roots_pem="x")
    )
    (policy,) = config.document["apps"]["tls"]["automation"]["policies"]
    assert policy["issuers"] == [{"module": "internal"}]
    assert config.files == {}


def test_the_internal_ca_s_root_is_not_installed_in_the_proxy_s_own_trust_store() -> None:
    """Caddy would install it at every load, a second each: a switch waits for none."""
    internal = caddy_config(table(qa()), AcmeSettings(ca="internal")).document
    assert internal["apps"]["pki"] == {
        "certificate_authorities": {"local": {"install_trust": False}}
    }
    assert "pki" not in caddy_config(table(qa())).document["apps"]


def test_files_a_configuration_names_live_on_the_data_volume() -> None:
    """A proxy made anew resumes its saved configuration before any load: its files must
    still be there."""
    config = caddy_config(table(qa()), AcmeSettings(trusted_roots_pem="PEM"))
    assert all(path.startswith("/data/") for path in config.files)


def test_a_sleeping_environment_answers_the_waking_page_that_reloads_itself() -> None:
    (response,) = steps(caddy_config(table(qa(asleep=True))).document)[0]["handle"]
    assert response["status_code"] == 503
    assert response["headers"]["Retry-After"] == ["5"]
    assert response["headers"]["Cache-Control"] == ["no-store"]
    assert response["headers"]["Content-Type"] == ["text/html; charset=utf-8"]
    assert '<meta http-equiv="refresh" content="5">' in response["body"]
    # Nothing of the environment: its name, its upstreams.
    assert "qa" not in response["body"].lower()
    assert "odooops" not in response["body"]


def test_a_sleeping_environment_reaches_no_upstream_but_keeps_its_allowlist() -> None:
    route = prod(allowlist=("203.0.113.7",), asleep=True, maintenance=Maintenance("x"))
    first, second, *_ = steps(caddy_config(table(route)).document)
    assert first["handle"][0]["status_code"] == 403
    assert second["terminal"] is True and second["handle"][0]["status_code"] == 503
    assert "Waking up" in second["handle"][0]["body"]
    awake = steps(caddy_config(table(prod(allowlist=("203.0.113.7",)))).document)
    assert not any("Waking up" in json.dumps(s) for s in awake)


def test_the_access_log_goes_to_the_shared_directory_without_credentials() -> None:
    """The daemon reads it for idle times; headers, URIs and addresses never reach it."""
    doc = caddy_config(table(qa())).document
    assert server(doc, "https")["logs"] == {"default_logger_name": "odooops"}
    logs = doc["logging"]["logs"]
    access = logs["odooops"]
    assert access["writer"]["filename"] == f"{ADMIN_SOCKET.rsplit('/', 1)[0]}/access.log"
    assert access["include"] == ["http.log.access.odooops"]
    assert logs["default"]["exclude"] == ["http.log.access.odooops"]
    deleted = {f for f, rule in access["encoder"]["fields"].items() if rule == {"filter": "delete"}}
    assert {"request>headers", "request>uri", "request>remote_ip", "resp_headers"} <= deleted
