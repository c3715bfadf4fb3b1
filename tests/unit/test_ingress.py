"""The route table: hosts per environment, domain rules, conflicts, all-or-nothing."""

from __future__ import annotations

import pytest

from reconciler.core.errors import InvalidState
from reconciler.core.ingress import (
    DEFAULT_BODY_LIMITS,
    EnvironmentRoute,
    HostRoute,
    describe,
    domain_problem,
    generated_host,
    route_table,
)
from reconciler.core.model import EnvKey, Tier

PROD = EnvKey("acme", "production")
QA = EnvKey("acme", "qa")
SHOP = EnvKey("shop", "main")


def route(key: EnvKey, *domains: str, tier: Tier = Tier.STAGING, **kw: object) -> EnvironmentRoute:
    return EnvironmentRoute(
        key,
        tier,
        (f"{key.slug}-odoo",),
        key.network,
        domains=tuple(domains),
        **kw,  # type: ignore[arg-type]
    )


def problems_of(exc: pytest.ExceptionInfo[InvalidState]) -> list[tuple[str, str, str | None]]:
    return [(p.code, p.location.file, p.location.key) for p in exc.value.problems]


@pytest.mark.parametrize(
    "name",
    [
        "example.com",  # an apex
        "erp.example.com",
        "a.b.c.d.example.co.uk",
        "xn--bcher-kva.example",  # an internationalised name in its xn-- form
        "1and1.com",  # a label may start with a digit (RFC 1123)
        "x" * 63 + ".com",
        ".".join(["a" * 61] * 4),  # 247 characters
    ],
)
def test_a_host_name_is_accepted(name: str) -> None:
    assert domain_problem(name) is None


@pytest.mark.parametrize(
    ("name", "says"),
    [
        ("", "empty"),
        ("*.example.com", "wildcard"),
        ("bücher.example", "xn--"),
        ("erp.example.com.", "trailing dot"),
        ("erp", "single label"),
        ("-erp.example.com", "label '-erp'"),
        ("erp-.example.com", "label 'erp-'"),
        ("erp..example.com", "label ''"),
        ("erp_1.example.com", "label 'erp_1'"),
        ("x" * 64 + ".com", "1 to 63"),
        (".".join(["a" * 62] * 4) + ".com", "at most 253"),
        ("10.0.0.1", "an address"),
        ("erp.example.com:8443", "label 'com:8443'"),
        ("localhost", "single label"),
        ("erp.localhost", "special-use"),
        ("printer.local", "special-use"),
        ("qa.acme.internal", "special-use"),
        ("nas.home.arpa", "special-use"),
    ],
)
def test_a_malformed_host_name_is_refused_with_the_reason(name: str, says: str) -> None:
    why = domain_problem(name)
    assert why is not None and says in why


def test_every_environment_gets_its_generated_host_and_its_domains() -> None:
    table = route_table(
        [route(QA, "QA.Example.com"), route(PROD, "example.com", "erp.example.com")],
        "apps.example.net",
    )
    assert table.hosts == (
        HostRoute("erp.example.com", PROD, "custom"),
        HostRoute("example.com", PROD, "custom"),
        HostRoute("production.acme.apps.example.net", PROD, "generated"),
        HostRoute("qa.acme.apps.example.net", QA, "generated"),
        HostRoute("qa.example.com", QA, "custom"),
    )
    assert table.hosts_of(PROD) == (
        "production.acme.apps.example.net",
        "erp.example.com",
        "example.com",
    )
    assert table.lookup("QA.example.COM") == QA
    assert table.lookup("nowhere.example.com") is None
    assert [r.key for r in table.environments] == [PROD, QA]


def test_without_a_platform_domain_only_custom_domains_route() -> None:
    table = route_table([route(QA, "qa.example.com"), route(PROD)], None)
    assert [h.host for h in table.hosts] == ["qa.example.com"]
    assert table.hosts_of(PROD) == ()


def test_a_repeated_domain_or_the_generated_host_again_is_one_route() -> None:
    table = route_table(
        [route(QA, "erp.example.com", "ERP.example.com", "qa.acme.example.net")], "example.net"
    )
    assert [(h.host, h.kind) for h in table.hosts] == [
        ("erp.example.com", "custom"),
        ("qa.acme.example.net", "generated"),
    ]
    assert table.environments[0].domains == ("erp.example.com",)


def test_a_domain_claimed_by_two_environments_names_both() -> None:
    with pytest.raises(InvalidState) as exc:
        route_table([route(SHOP, "erp.example.com"), route(QA, "erp.example.com")], None)
    (problem,) = exc.value.problems
    assert problem.code == "domain_conflict"
    assert "acme/qa" in problem.message and "shop/main" in problem.message
    assert "erp.example.com" in problem.message
    assert problem.location.file == "environments/shop/main.yaml"


def test_a_custom_domain_equal_to_another_environments_generated_host_is_a_conflict() -> None:
    with pytest.raises(InvalidState) as exc:
        route_table([route(QA), route(SHOP, "qa.acme.example.net")], "example.net")
    (problem,) = exc.value.problems
    assert problem.code == "domain_conflict"
    assert "acme/qa (generated) and shop/main (custom)" in problem.message
    assert problem.location.file == "environments/shop/main.yaml"  # the custom claim is fixed


def test_every_problem_is_reported_at_once_and_no_table_is_made() -> None:
    with pytest.raises(InvalidState) as exc:
        route_table(
            [
                route(PROD, "ok.example.com", "*.example.com", tier=Tier.PRODUCTION),
                route(QA, "bad_name.example.com", "ok.example.com", allowlist=("10.0.0.0/33",)),
            ],
            "example.net",
        )
    assert problems_of(exc) == [
        ("invalid_domain", "environments/acme/production.yaml", "domains[1]"),
        ("invalid_allowlist", "environments/acme/qa.yaml", "allowlist[0]"),
        ("invalid_domain", "environments/acme/qa.yaml", "domains[0]"),
        ("domain_conflict", "environments/acme/qa.yaml", "domains"),
    ]
    assert "every route keeps serving" in exc.value.message
    assert "odooops validate" in exc.value.remediation


def test_a_bad_platform_domain_is_a_problem_of_odooops_yaml() -> None:
    with pytest.raises(InvalidState) as exc:
        route_table([route(QA)], "*.example.net")
    assert problems_of(exc) == [("invalid_domain", "odooops.yaml", "ingress.domain")]


def test_a_generated_host_too_long_for_dns_is_a_problem_of_the_environment() -> None:
    key = EnvKey("acme", "feature-" + "x" * 60)
    with pytest.raises(InvalidState) as exc:
        route_table([route(key)], "example.net")
    assert problems_of(exc) == [("invalid_domain", f"environments/acme/{key.env}.yaml", None)]


def test_allowlist_entries_are_addresses_or_networks() -> None:
    table = route_table(
        [route(PROD, allowlist=("203.0.113.7", "198.51.100.0/24", "2001:db8::/32"))], None
    )
    assert table.environments[0].allowlist == ("203.0.113.7", "198.51.100.0/24", "2001:db8::/32")


def test_the_body_limit_is_the_tiers_unless_the_route_says() -> None:
    table = route_table(
        [
            route(PROD, tier=Tier.PRODUCTION),
            route(QA, tier=Tier.EPHEMERAL),
            route(SHOP, tier=Tier.DEV, max_body_bytes=1000),
        ],
        None,
        body_limits={Tier.EPHEMERAL: 5_000_000},
    )
    limits = {r.key: table.body_limit(r) for r in table.environments}
    assert limits == {
        PROD: DEFAULT_BODY_LIMITS[Tier.PRODUCTION],
        QA: 5_000_000,
        SHOP: 1000,
    }


def test_the_table_for_the_api_lists_hosts_with_their_environment() -> None:
    table = route_table([route(QA, "erp.example.com")], "example.net")
    assert table.to_dict() == [
        {"host": "erp.example.com", "project": "acme", "env": "qa", "kind": "custom"},
        {"host": "qa.acme.example.net", "project": "acme", "env": "qa", "kind": "generated"},
    ]


def test_the_same_routes_in_another_order_give_the_same_table() -> None:
    a = route_table([route(QA, "b.example.com", "a.example.com"), route(PROD)], "example.net")
    b = route_table([route(PROD), route(QA, "a.example.com", "b.example.com")], "example.net")
    assert a == b


def test_an_environment_routed_twice_is_a_programming_error() -> None:
    with pytest.raises(ValueError, match="routed twice"):
        route_table([route(QA), route(QA)], None)


def test_the_generated_host_is_env_project_domain() -> None:
    assert generated_host(QA, "Apps.Example.NET") == "qa.acme.apps.example.net"


def test_the_description_of_an_environment_lists_its_hosts_and_limits() -> None:
    table = route_table(
        [route(PROD, "erp.example.com", tier=Tier.PRODUCTION, allowlist=("203.0.113.7",))],
        "example.net",
    )
    assert describe(table) == [
        {
            "project": "acme",
            "env": "production",
            "tier": "production",
            "hosts": ["production.acme.example.net", "erp.example.com"],
            "internal": "production.acme.internal",
            "upstreams": ["odooops-acme-production-odoo"],
            "allowlist": ["203.0.113.7"],
            "max_body_bytes": DEFAULT_BODY_LIMITS[Tier.PRODUCTION],
            "maintenance": False,
            "asleep": False,
        }
    ]
