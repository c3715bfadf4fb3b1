"""Specification of state repository validation: every problem a user can see, and where."""

from __future__ import annotations

import json
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any

import pytest
from jsonschema import Draft202012Validator

from reconciler.core import validation
from reconciler.core.errors import InvalidState, Location, Problem
from reconciler.core.secretrefs import SecretPolicy
from reconciler.core.validation import (
    SCHEMA_DIR,
    Document,
    ValidatedState,
    load_yaml,
    validate_app_config,
    validate_document,
    validate_state,
)

PLATFORM = """\
version: 1
runtime:
  backend: docker
  publish_host: 127.0.0.1
  port_range: {start: 18000, end: 18999}
database_servers:
  shared:
    host: 127.0.0.1
    port: 5432
    container_host: host-gateway
    admin_user: postgres
    admin_password: {env: ODOOOPS_SECRET_PG_ADMIN}
dev_database:
  image: postgres:15
ingress:
  domain: apps.example.com
tiers:
  staging: {workers: 2}
  dev:
    ttl: null
    backup_schedule: "0 */6 * * *"
    resource_limits: {cpu: "1500m", memory: 3.5Gi}
quotas:
  dev_environments_per_user: 5
  max_concurrent_deployments: 10
reconcile:
  interval: 60
  jitter: 15
"""

POLICIES = """\
branches:
  - match: main
    tier: production
  - match: "release/*"
    tier: staging
  - match: develop
    tier: dev
  - match: "feature/*"
    tier: ephemeral
    auto_create: true
protected_tiers: [production]
"""

PROJECT = """\
repository:
  url: https://github.com/acme/odoo-addons.git
  token: {secret: acme-git}
odoo:
  version: "19.0"
  image: odoo:19.0
addons_paths: ["."]
modules: [sale_management]
database_server: shared
"""

PROD = """\
branch: main
tier: production
revision: track
protected: true
suspended: false
owner: alice@example.com
overrides: {workers: 2, resource_limits: {memory: 2Gi}}
db:
  source: fresh
  neutralize: true
  mask: true
"""

VALID: dict[str, str] = {
    "odooops.yaml": PLATFORM,
    "policies.yaml": POLICIES,
    "projects/acme.yaml": PROJECT,
    "projects/beta.yaml": """\
repository:
  url: git@github.com:acme/beta.git
  ssh_key: {secret: beta-deploy-key}
odoo: {version: "19.0", image: "registry.example.com:5000/odoo:19.0"}
addons_paths: [addons, vendor/oca]
modules: []
database_server: shared
""",
    "environments/acme/prod.yaml": PROD,
    "environments/acme/staging.yaml": "branch: release/1.0\nrevision: 0a1b2c3\n",
    "environments/acme/dev.yaml": """\
branch: develop
owner: bob
overrides:
  ttl: 36h
  backup_schedule: never
  resource_limits: {cpu: 0.5}
db: {source: prod, neutralize: true, mask: true}
""",
    "environments/beta/b.yaml": "branch: main\n",
    "README.md": "# our platform\n",
    "masking.yaml": "version: 1\nkeep_defaults: true\n",
    "notes.yaml": "anything: [goes, here]\n",
    ".gitignore": "*.swp\n",
    "projects/README.md": "one file per project\n",
    "environments/.gitkeep": "",
    "environments/acme/.notes.yaml": "not: [valid\n",
}


PLATFORM_WITHOUT_SERVERS = (
    PLATFORM[: PLATFORM.index("database_servers:")]
    + "database_servers: {}\n"
    + PLATFORM[PLATFORM.index("dev_database:") :]
)


def state(changes: Mapping[str, str | None] | None = None) -> dict[str, bytes]:
    """The valid sample with some files replaced (a text) or deleted (``None``)."""
    files = dict(VALID)
    for path, text in (changes or {}).items():
        if text is None:
            files.pop(path, None)
        else:
            files[path] = text
    return {path: text.encode() for path, text in files.items()}


def problems_of(changes: Mapping[str, str | None]) -> list[Problem]:
    try:
        validate_state(state(changes))
    except InvalidState as exc:
        return list(exc.problems)
    return []


def only(problems: list[Problem], code: str) -> Problem:
    """The single problem of ``code``; fails listing all problems otherwise."""
    found = [p for p in problems if p.code == code]
    assert len(found) == 1, "\n".join(str(p) for p in problems)
    return found[0]


def where(problem: Problem) -> tuple[str, int | None, int | None]:
    return problem.location.file, problem.location.line, problem.location.column


# ---------------------------------------------------------------------------- YAML loading


def test_load_yaml_records_where_each_value_and_key_starts() -> None:
    doc = load_yaml("branch: main\noverrides:\n  workers: 2\nlist: [a, b]\n", "e.yaml")
    assert doc.data == {"branch": "main", "overrides": {"workers": 2}, "list": ["a", "b"]}
    assert doc.positions[("branch",)] == (1, 9)
    assert doc.key_positions[("branch",)] == (1, 1)
    assert doc.positions[("overrides", "workers")] == (3, 12)
    assert doc.key_positions[("overrides", "workers")] == (3, 3)
    assert doc.positions[("list", 1)] == (4, 11)


@pytest.mark.parametrize("text", ["", "\n", "# only a comment\n", "---\n"])
def test_load_yaml_reads_an_empty_file_as_an_empty_mapping(text: str) -> None:
    assert load_yaml(text, "f.yaml").data == {}


def test_load_yaml_builds_plain_json_values() -> None:
    """Numbers, booleans and null as YAML reads them; dates stay the text they were written as."""
    doc = load_yaml("a: 1\nb: 1.5\nc: true\nd: null\ne: 2024-01-31\nf: !!str 5\n", "f.yaml")
    assert doc.data == {"a": 1, "b": 1.5, "c": True, "d": None, "e": "2024-01-31", "f": "5"}


def test_duplicate_key_is_reported_on_the_second_occurrence() -> None:
    with pytest.raises(InvalidState) as info:
        load_yaml("overrides:\n  workers: 2\n  workers: 3\n", "e.yaml")
    problem = only(list(info.value.problems), "duplicate_key")
    assert where(problem) == ("e.yaml", 3, 3)
    assert problem.location.key == "overrides.workers"
    assert "first on line 2" in problem.message


@pytest.mark.parametrize(
    ("text", "line", "column"),
    [
        ("a: [1, 2\nb: 3\n", 2, 2),
        ("a: b: c\n", 1, 5),
        ("a:\n  - x\n   y: 1\n", 3, 5),
        ('a: "open\n', 2, 1),
        ("a: 1\n---\nb: 2\n", 2, 1),
    ],
)
def test_malformed_yaml_is_reported_at_the_parser_position(
    text: str, line: int, column: int
) -> None:
    with pytest.raises(InvalidState) as info:
        load_yaml(text, "f.yaml")
    problem = only(list(info.value.problems), "yaml_syntax")
    assert where(problem) == ("f.yaml", line, column)
    assert problem.message.startswith("invalid YAML: ")


@pytest.mark.parametrize(
    ("text", "line", "column", "words"),
    [
        ("a: &x 1\nb: *x\n", 2, 4, "aliases"),
        ("base: &b {x: 1}\nc:\n  <<: {x: 2}\n", 3, 3, "merge keys"),
        ("1: a\n", 1, 1, "key `1` is read by YAML as an integer"),
        ("on: a\n", 1, 1, "key `on` is read by YAML as true or false"),
        ("? [a]\n: b\n", 1, 3, "a key must be text"),
        ("a: !!python/object:os.system x\n", 1, 4, "!!python/object:os.system"),
        ("a: !!binary aGk=\n", 1, 4, "!!binary"),
        ("a: !!set {x}\n", 1, 4, "!!set"),
        ("a: !custom x\n", 1, 4, "!custom"),
    ],
)
def test_yaml_beyond_plain_data_is_refused(text: str, line: int, column: int, words: str) -> None:
    with pytest.raises(InvalidState) as info:
        load_yaml(text, "f.yaml")
    problem = next(p for p in info.value.problems if words in p.message)
    assert problem.code == "yaml_unsupported"
    assert where(problem) == ("f.yaml", line, column)


def test_non_printable_characters_are_a_syntax_problem_with_their_line() -> None:
    with pytest.raises(InvalidState) as info:
        load_yaml("a: 1\nb: \x07\n", "f.yaml")
    assert where(only(list(info.value.problems), "yaml_syntax")) == ("f.yaml", 2, None)


def test_location_falls_back_to_the_nearest_known_parent() -> None:
    doc = load_yaml("db:\n  source: fresh\n", "e.yaml")
    assert doc.location(("db", "source")) == Location("e.yaml", 2, 11, "db.source")
    assert doc.location(("db",), key="source") == Location("e.yaml", 2, 3, "db.source")
    assert doc.location(("db",), key="mask") == Location("e.yaml", 1, 1, "db.mask")
    assert doc.location(("nope", "deeper")) == Location("e.yaml", 1, 1, "nope.deeper")
    assert Document("x.yaml", {}, {}).location(("a",)) == Location("x.yaml", key="a")


# -------------------------------------------------------------------------------- schemas


def schema_files() -> list[Path]:
    return sorted(SCHEMA_DIR.glob("*.schema.json"))


def walk(node: Any, path: str = "") -> Iterator[tuple[str, dict[str, Any]]]:
    """Every subschema of a schema document, with a readable path."""
    if isinstance(node, dict):
        yield path, node
        for key, value in node.items():
            yield from walk(value, f"{path}/{key}")
    elif isinstance(node, list):
        for i, value in enumerate(node):
            yield from walk(value, f"{path}/{i}")


def test_there_is_one_schema_per_file_kind_plus_the_shared_definitions() -> None:
    assert [f.name for f in schema_files()] == [
        "app.schema.json",
        "common.schema.json",
        "environment.schema.json",
        "lock.schema.json",
        "masking.schema.json",
        "odooops.schema.json",
        "policies.schema.json",
        "project.schema.json",
    ]


@pytest.mark.parametrize("file", schema_files(), ids=lambda f: f.name)
def test_schema_is_valid_json_schema_2020_12_with_its_id(file: Path) -> None:
    schema = json.loads(file.read_text())
    Draft202012Validator.check_schema(schema)
    assert schema["$schema"] == "https://json-schema.org/draft/2020-12/schema"
    assert schema["$id"] == f"https://odooops.dev/schemas/{file.name}"


@pytest.mark.parametrize("file", schema_files(), ids=lambda f: f.name)
def test_every_property_has_a_description(file: Path) -> None:
    for path, node in walk(json.loads(file.read_text())):
        if path.endswith("/properties"):
            continue  # the mapping of properties itself, not a schema
        for name, prop in node.get("properties", {}).items():
            assert prop.get("description"), f"{file.name}{path}/properties/{name}"


@pytest.mark.parametrize("file", schema_files(), ids=lambda f: f.name)
def test_every_mapping_forbids_unknown_keys(file: Path) -> None:
    for path, node in walk(json.loads(file.read_text())):
        if node.get("type") == "object" or "properties" in node:
            assert "additionalProperties" in node, f"{file.name}{path}"
            assert node["additionalProperties"] is not True, f"{file.name}{path}"


def test_db_source_accepts_exactly_the_environment_names() -> None:
    """``db.source`` inlines the name pattern so its own title reaches error messages."""
    common = json.loads((SCHEMA_DIR / "common.schema.json").read_text())
    environment = json.loads((SCHEMA_DIR / "environment.schema.json").read_text())
    source = environment["properties"]["db"]["properties"]["source"]
    assert source["pattern"] == common["$defs"]["name"]["pattern"]


def test_a_schema_error_of_no_known_kind_falls_back_to_the_schema_code() -> None:
    """No shipped schema uses ``not``; should one appear, its errors still become problems."""
    doc = load_yaml("branch: main\n", "e.yaml")
    error = next(Draft202012Validator({"not": {"type": "object"}}).iter_errors(doc.data))
    (problem,) = validation._from_error(doc, error, validation._state_recheck("."))
    assert problem.code == "schema"
    assert where(problem) == ("e.yaml", 1, 1)
    assert problem.remediation == "correct the file at e.yaml line 1, then run: odooops validate ."


@pytest.mark.parametrize("name", ["environment", "environment.schema.json"])
def test_validate_document_takes_a_schema_name_or_file_name(name: str) -> None:
    assert validate_document(load_yaml("branch: main\n", "e.yaml"), name) == []


def test_validate_document_refuses_an_unknown_schema() -> None:
    with pytest.raises(ValueError, match="unknown schema 'nope'"):
        validate_document(load_yaml("", "e.yaml"), "nope")


# ------------------------------------------------------------------------- the whole state


def test_the_sample_state_is_valid() -> None:
    validated = validate_state(state())
    assert isinstance(validated, ValidatedState)
    assert validated.platform.path == "odooops.yaml"
    assert validated.policies.data["protected_tiers"] == ["production"]
    assert sorted(validated.projects) == ["acme", "beta"]
    assert sorted(validated.environments) == [
        ("acme", "dev"),
        ("acme", "prod"),
        ("acme", "staging"),
        ("beta", "b"),
    ]
    assert validated.environments[("acme", "prod")].data["overrides"]["workers"] == 2


def test_files_outside_the_state_folders_are_ignored() -> None:
    """READMEs, dotfiles and unrelated root files never fail a commit, however they look."""
    assert problems_of({"notes.txt": "\x07", "docs/x.yml": "a: [", "README": "b: {"}) == []


def test_one_invalid_state_error_carries_every_problem_with_a_summary() -> None:
    with pytest.raises(InvalidState) as info:
        validate_state(
            state(
                {
                    "environments/acme/dev.yaml": "branch: develop\nwokers: 2\ntier: prod\n",
                    "projects/beta.yaml": PROJECT + "extra: 1\n",
                }
            ),
            repo_label="/srv/state",
        )
    error = info.value
    assert error.code == "invalid_state"
    assert error.message == "state repository is invalid: 3 problems in 2 files"
    assert error.remediation == "fix the files listed, then run: odooops validate /srv/state"
    assert [(p.location.file, p.location.line) for p in error.problems] == [
        ("environments/acme/dev.yaml", 2),
        ("environments/acme/dev.yaml", 3),
        ("projects/beta.yaml", 10),
    ]
    assert all(p.remediation.endswith("odooops validate /srv/state") for p in error.problems)
    assert not error.retryable


@pytest.mark.parametrize(
    ("path", "text", "line", "column", "key"),
    [
        ("odooops.yaml", PLATFORM + "colour: blue\n", 29, 1, "colour"),
        (
            "odooops.yaml",
            PLATFORM.replace("  publish_host:", "  publish_hots: x\n  publish_host:"),
            4,
            3,
            "runtime.publish_hots",
        ),
        (
            "odooops.yaml",
            PLATFORM.replace("{start: 18000, end: 18999}", "{start: 18000, end: 18999, step: 2}"),
            5,
            42,
            "runtime.port_range.step",
        ),
        (
            "odooops.yaml",
            PLATFORM.replace("    port: 5432\n", "    port: 5432\n    sslmode: require\n"),
            10,
            5,
            "database_servers.shared.sslmode",
        ),
        (
            "odooops.yaml",
            PLATFORM.replace("{env: ODOOOPS_SECRET_PG_ADMIN}", "{vault: pg}"),
            12,
            22,
            "database_servers.shared.admin_password.vault",
        ),
        (
            "odooops.yaml",
            PLATFORM.replace("staging: {workers: 2}", "staging: {workers: 2, threads: 4}"),
            18,
            25,
            "tiers.staging.threads",
        ),
        (
            "odooops.yaml",
            PLATFORM.replace("  dev:\n", "  devel:\n"),
            19,
            3,
            "tiers.devel",
        ),
        (
            "policies.yaml",
            POLICIES.replace("    auto_create", "    ttl: 7d\n    auto_create"),
            10,
            5,
            "branches[3].ttl",
        ),
        (
            "projects/acme.yaml",
            PROJECT.replace("  image:", "  edition: ce\n  image:"),
            6,
            3,
            "odoo.edition",
        ),
        ("environments/acme/prod.yaml", PROD + "replicas: 2\n", 12, 1, "replicas"),
        (
            "environments/acme/prod.yaml",
            PROD.replace("{memory: 2Gi}", "{memory: 2Gi, swap: 1Gi}"),
            7,
            56,
            "overrides.resource_limits.swap",
        ),
        (
            "environments/acme/prod.yaml",
            PROD.replace("  mask:", "  anonymize: true\n  mask:"),
            11,
            3,
            "db.anonymize",
        ),
    ],
)
def test_unknown_keys_are_reported_on_the_key_at_any_depth(
    path: str, text: str, line: int, column: int, key: str
) -> None:
    problem = only(problems_of({path: text}), "unknown_key")
    assert where(problem) == (path, line, column)
    assert problem.location.key == key
    leaf = key.rsplit(".", 1)[-1]
    assert f"`{leaf}`" in problem.message
    assert "allowed keys: " in problem.remediation
    assert problem.remediation.endswith("then run: odooops validate .")


def test_unknown_key_remediation_lists_the_allowed_keys_and_the_line() -> None:
    problem = only(problems_of({"environments/acme/prod.yaml": PROD + "foo: 1\n"}), "unknown_key")
    assert problem.remediation == (
        "remove `foo` from environments/acme/prod.yaml line 12 (allowed keys: allowlist, branch, "
        "db, domains, expires, maintenance_text, migrate, overrides, owner, preview, promoted, "
        "protected, revision, suspended, tier), then run: odooops validate ."
    )


def test_unknown_key_close_to_an_allowed_one_suggests_the_rename() -> None:
    problem = only(
        problems_of({"environments/acme/prod.yaml": "branch: main\noverrides: {wokers: 2}\n"}),
        "unknown_key",
    )
    assert problem.remediation.startswith(
        "rename `wokers` to `workers` in environments/acme/prod.yaml line 2 (allowed keys: "
    )


@pytest.mark.parametrize(
    ("path", "text", "line", "column", "key"),
    [
        ("odooops.yaml", "", 1, 1, "database_servers"),
        ("odooops.yaml", PLATFORM.replace(", end: 18999", ""), 5, 3, "runtime.port_range.end"),
        ("policies.yaml", POLICIES.replace("    tier: dev\n", ""), 6, 5, "branches[2].tier"),
        ("projects/acme.yaml", "modules: []\n", 1, 1, "repository"),
        ("environments/acme/prod.yaml", "", 1, 1, "branch"),
        ("environments/acme/prod.yaml", "# nothing yet\ntier: dev\n", 2, 1, "branch"),
    ],
)
def test_missing_required_keys_are_reported_on_their_parent(
    path: str, text: str, line: int, column: int, key: str
) -> None:
    problems = [p for p in problems_of({path: text}) if p.location.key == key]
    assert len(problems) == 1
    problem = problems[0]
    assert problem.code == "missing_key"
    assert where(problem) == (path, line, column)
    assert f"missing required key `{key.rsplit('.', 1)[-1]}`" in problem.message


def test_missing_key_message_carries_the_schema_description() -> None:
    problem = only(problems_of({"environments/acme/prod.yaml": "tier: dev\n"}), "missing_key")
    assert problem.message == (
        "missing required key `branch`: Branch of the application repository this environment "
        "deploys."
    )
    assert problem.remediation == (
        "add `branch:` at the top level of environments/acme/prod.yaml, "
        "then run: odooops validate ."
    )


def test_wrong_type_message_says_what_is_expected_and_what_was_written() -> None:
    problem = only(
        problems_of({"environments/acme/staging.yaml": "branch: b\noverrides:\n  workers: four\n"}),
        "wrong_type",
    )
    assert str(problem.location) == "environments/acme/staging.yaml:3:12 (overrides.workers)"
    assert problem.message == 'overrides.workers must be an integer from 0 to 64, got "four"'


@pytest.mark.parametrize(
    ("path", "text", "line", "column", "message"),
    [
        (
            "environments/acme/prod.yaml",
            "branch: main\nsuspended: no way\n",
            2,
            12,
            'suspended must be true or false, got "no way"',
        ),
        (
            "environments/acme/prod.yaml",
            "branch: [main]\n",
            1,
            9,
            "branch must be a git branch name, got a list",
        ),
        (
            "projects/acme.yaml",
            PROJECT.replace("[sale_management]", "sale_management"),
            8,
            10,
            'modules must be a list, got "sale_management"',
        ),
        (
            "odooops.yaml",
            PLATFORM.replace("    port: 5432", "    port: '5432'"),
            9,
            11,
            'database_servers.shared.port must be an integer from 1 to 65535, got "5432"',
        ),
        (
            "environments/acme/prod.yaml",
            "branch: main\noverrides: 2\n",
            2,
            12,
            "overrides must be a mapping of settings (workers, max_cron_threads, resource_limits, "
            "backup_schedule, backup_retention, ttl, demo), got 2",
        ),
        (
            "policies.yaml",
            "branches: {main: production}\nprotected_tiers: []\n",
            1,
            11,
            "branches must be a list, got a mapping",
        ),
    ],
)
def test_wrong_types_are_reported_on_the_value(
    path: str, text: str, line: int, column: int, message: str
) -> None:
    problem = only(problems_of({path: text}), "wrong_type")
    assert where(problem) == (path, line, column)
    assert problem.message == message


def test_a_number_where_text_is_expected_is_shown_as_written_and_quoting_is_suggested() -> None:
    """``0123456`` is an octal number to YAML; the user sees their text and the fix."""
    problem = only(
        problems_of({"environments/acme/prod.yaml": "branch: main\nrevision: 0123456\n"}),
        "wrong_type",
    )
    assert problem.message.endswith("got 0123456")
    assert problem.remediation.startswith(
        "quote the value at environments/acme/prod.yaml line 2 so YAML reads it as text: "
        'revision: "0123456"'
    )


def test_an_unquoted_odoo_version_is_invalid_and_quoting_is_suggested() -> None:
    problem = only(
        problems_of({"projects/acme.yaml": PROJECT.replace('"19.0"', "19.0")}), "invalid_value"
    )
    assert where(problem) == ("projects/acme.yaml", 5, 12)
    assert problem.message == 'odoo.version must be "19.0", got 19.0'
    assert 'version: "19.0"' in problem.remediation


@pytest.mark.parametrize(
    ("path", "text", "line", "column", "message"),
    [
        (
            "environments/acme/prod.yaml",
            "branch: main\ntier: prod\n",
            2,
            7,
            'tier must be one of production, staging, dev or ephemeral, got "prod"',
        ),
        (
            "environments/acme/prod.yaml",
            "branch: main\noverrides: {workers: 65}\n",
            2,
            22,
            "overrides.workers must be an integer from 0 to 64, got 65",
        ),
        (
            "environments/acme/prod.yaml",
            "branch: main\noverrides: {max_cron_threads: -1}\n",
            2,
            31,
            "overrides.max_cron_threads must be an integer from 0 to 16, got -1",
        ),
        (
            "environments/acme/prod.yaml",
            "branch: main\nrevision: HEAD\n",
            2,
            11,
            'revision must be "track" or a commit hash of 7 to 40 lowercase hex digits, got "HEAD"',
        ),
        (
            "environments/acme/prod.yaml",
            "branch: feature//x\n",
            1,
            9,
            'branch must be a git branch name, got "feature//x"',
        ),
        (
            "environments/acme/prod.yaml",
            "branch: main\ndb: {source: Prod}\n",
            2,
            14,
            'db.source must be "fresh" or the name of another environment of the same project, '
            'got "Prod"',
        ),
        (
            "odooops.yaml",
            PLATFORM.replace("interval: 60", "interval: 4"),
            27,
            13,
            "reconcile.interval must be an integer of at least 5, got 4",
        ),
        (
            "odooops.yaml",
            PLATFORM.replace("version: 1", "version: 2"),
            1,
            10,
            "version must be 1, got 2",
        ),
        (
            "odooops.yaml",
            PLATFORM.replace("backend: docker", "backend: swarm"),
            3,
            12,
            'runtime.backend must be "docker" (one host; "swarm" is planned, not available yet), '
            'got "swarm"',
        ),
        (
            "odooops.yaml",
            PLATFORM.replace("publish_host: 127.0.0.1", "publish_host: 'my host'"),
            4,
            17,
            'runtime.publish_host must be a host name or an IP address, got "my host"',
        ),
        (
            "odooops.yaml",
            PLATFORM.replace("domain: apps.example.com", "domain: -bad-"),
            16,
            11,
            'ingress.domain must be a DNS domain name such as "apps.example.com", got "-bad-"',
        ),
        (
            "odooops.yaml",
            PLATFORM.replace("  image: postgres:15", "  image: 'Postgres 15'"),
            14,
            10,
            'dev_database.image must be a container image reference such as "odoo:19.0" or '
            '"registry.example.com:5000/odoo:19.0", got "Postgres 15"',
        ),
        (
            "odooops.yaml",
            PLATFORM_WITHOUT_SERVERS,
            6,
            19,
            "database_servers must be a mapping from server name to database "
            "server, with at least one server, got a mapping with 0 key(s)",
        ),
        (
            "policies.yaml",
            POLICIES.replace("[production]", "[production, production]"),
            11,
            31,
            'protected_tiers lists "production" more than once',
        ),
        (
            "projects/acme.yaml",
            PROJECT.replace('["."]', '["../shared"]'),
            7,
            16,
            "addons_paths[0] must be a relative path inside the application repository (no leading "
            '/ and no ..), got "../shared"',
        ),
        (
            "projects/acme.yaml",
            PROJECT.replace("[sale_management]", "[Sale]"),
            8,
            11,
            "modules[0] must be an Odoo module technical name (lowercase letters, digits and "
            'underscores), got "Sale"',
        ),
    ],
)
def test_invalid_values_say_what_is_allowed_in_words(
    path: str, text: str, line: int, column: int, message: str
) -> None:
    problems = [p for p in problems_of({path: text}) if p.code == "invalid_value"]
    assert [(where(p), p.message) for p in problems] == [((path, line, column), message)]


def test_an_invalid_enum_value_close_to_an_allowed_one_suggests_it() -> None:
    problem = only(
        problems_of({"environments/acme/prod.yaml": "branch: main\ntier: stagin\n"}),
        "invalid_value",
    )
    assert problem.remediation.startswith(
        "set tier at environments/acme/prod.yaml line 2 to staging"
    )


def test_a_database_server_key_must_be_a_name() -> None:
    problem = only(
        problems_of({"odooops.yaml": PLATFORM.replace("  shared:", "  Shared:")}), "invalid_name"
    )
    assert where(problem) == ("odooops.yaml", 7, 3)
    assert problem.message.startswith('database_servers key "Shared" must be a name of')


# -------------------------------------------------------------------------- secret references

SECRET_LINE = "    admin_password: {env: ODOOOPS_SECRET_PG_ADMIN}"


def with_password(value: str) -> dict[str, str]:
    return {"odooops.yaml": PLATFORM.replace(SECRET_LINE, f"    admin_password: {value}")}


@pytest.mark.parametrize(
    "value",
    ["{secret: pg-admin}", "{env: ODOOOPS_SECRET_PG}", "{file: /etc/odooops/secrets/pg-admin}"],
)
def test_a_secret_reference_names_a_stored_secret_a_prefixed_variable_or_a_secrets_file(
    value: str,
) -> None:
    assert problems_of(with_password(value)) == []


@pytest.mark.parametrize(
    ("value", "rule"),
    [
        ("{env: ODOOOPS_MASTER_KEY}", "only variables starting with ODOOOPS_SECRET_"),
        ("{env: PGPASSWORD}", "only variables starting with ODOOOPS_SECRET_"),
        ("{env: ODOOOPS_SECRET_}", "only variables starting with ODOOOPS_SECRET_"),
        ("{file: /var/lib/odooops/api.key}", "only files under /etc/odooops/secrets"),
        ("{file: /etc/odooops/backup.key}", "only files under /etc/odooops/secrets"),
        ("{file: /etc/odooops/secrets/../backup.key}", "only files under /etc/odooops/secrets"),
        ("{file: /etc/odooops/secrets/./pg}", "only files under /etc/odooops/secrets"),
        ("{file: /etc/odooops/secrets}", "only files under /etc/odooops/secrets"),
        ("{file: /etc/odooops/secretsx/pg}", "only files under /etc/odooops/secrets"),
    ],
)
def test_a_reference_outside_the_allowlist_is_refused_naming_the_rule(
    value: str, rule: str
) -> None:
    """The daemon's own keys (master key, API key, backup key) cannot be named by a state."""
    problem = only(problems_of(with_password(value)), "secret_ref_forbidden")
    assert where(problem) == ("odooops.yaml", 12, 21)
    assert problem.message.startswith("database_servers.shared.admin_password: ")
    assert rule in problem.message
    assert problem.remediation.endswith("(at odooops.yaml line 12), then run: odooops validate .")


def test_the_store_s_own_entries_cannot_be_named() -> None:
    """``db/...`` and ``mail/...`` are the daemon's: a name has no ``/``."""
    problem = only(problems_of(with_password("{secret: db/acme/prod}")), "invalid_value")
    assert problem.message.startswith("database_servers.shared.admin_password.secret must be")


def test_the_allowlist_is_an_input_of_validation() -> None:
    """Another prefix and directory (the daemon's flags) allow exactly those instead."""
    policy = SecretPolicy(env_prefix="ACME_", secrets_dir="/run/secrets")
    files = state(with_password("{env: ACME_PG}"))
    assert validate_state(files, policy=policy)
    assert validate_state(state(with_password("{file: /run/secrets/pg}")), policy=policy)
    with pytest.raises(InvalidState) as info:
        validate_state(state(with_password("{env: ODOOOPS_SECRET_PG}")), policy=policy)
    assert [p.code for p in info.value.problems] == ["secret_ref_forbidden"]


KNOWN = SecretPolicy(named={"acme-git": ("github.com",), "beta-deploy-key": ("github.com",)})


def test_every_secret_reference_of_the_schemas_is_checked() -> None:
    """``SECRET_REF_PATHS`` lists every use of ``secret_ref`` in ``schemas/``."""

    def walk(node: Any, path: tuple[str, ...]) -> Iterator[tuple[str, ...]]:
        if isinstance(node, dict):
            if node.get("$ref") == "common.schema.json#/$defs/secret_ref":
                yield path
            for key, value in node.items():
                if key == "properties":
                    for name, sub in value.items():
                        yield from walk(sub, (*path, name))
                elif key == "additionalProperties":
                    yield from walk(value, (*path, "*"))
                elif key not in ("$defs",):
                    yield from walk(value, path)
        elif isinstance(node, list):
            for item in node:
                yield from walk(item, path)

    found = {
        name: tuple(walk(json.loads((SCHEMA_DIR / f"{name}.schema.json").read_text()), ()))
        for name in validation.SCHEMA_NAMES
    }
    declared = {name: tuple(paths) for name, paths in validation.SECRET_REF_PATHS.items()}
    assert {k: sorted(v) for k, v in found.items() if v} == {
        k: sorted(v) for k, v in declared.items()
    }


def test_a_repository_credential_must_be_a_named_secret() -> None:
    text = PROJECT.replace("{secret: acme-git}", "{env: ODOOOPS_SECRET_GIT}")
    problem = only(problems_of({"projects/acme.yaml": text}), "secret_ref_forbidden")
    assert problem.location.key == "repository.token"
    assert "must be a named secret" in problem.message
    assert problem.remediation.startswith("odooops secret set NAME --host github.com")


@pytest.mark.parametrize(
    ("url", "code"),
    [
        ("https://github.com/acme/odoo-addons.git", None),
        ("https://GitHub.com./acme/odoo-addons.git", None),
        ("git@github.com:acme/odoo-addons.git", None),
        ("ssh://git@github.com:2222/acme/odoo-addons.git", None),
        ("https://evil.example/acme/odoo-addons.git", "credential_host_forbidden"),
        ("https://github.com.evil.example/x.git", "credential_host_forbidden"),
        ("git@127.0.0.1:acme/x.git", "credential_host_forbidden"),
        ("file:///srv/git/x.git", "credential_host_forbidden"),
    ],
)
def test_a_repository_credential_goes_only_to_the_hosts_declared_for_it(
    url: str, code: str | None
) -> None:
    text = PROJECT.replace("https://github.com/acme/odoo-addons.git", url)
    files = state({"projects/acme.yaml": text})
    if code is None:
        assert validate_state(files, policy=KNOWN)
        return
    with pytest.raises(InvalidState) as info:
        validate_state(files, policy=KNOWN)
    assert [(p.code, p.location.key) for p in info.value.problems] == [(code, "repository.token")]


def test_a_named_secret_missing_from_the_store_is_refused() -> None:
    text = PROJECT.replace("{secret: acme-git}", "{secret: acme-gti}")
    with pytest.raises(InvalidState) as info:
        validate_state(state({"projects/acme.yaml": text}), policy=KNOWN)
    (problem,) = info.value.problems
    assert problem.code == "secret_unknown"
    assert problem.remediation.startswith("odooops secret set acme-gti --data-dir DATA_DIR")


@pytest.mark.parametrize(
    ("value", "code", "column", "message"),
    [
        (
            "{env: PG, file: /pg}",
            "invalid_value",
            21,
            "database_servers.shared.admin_password must be a secret reference, {secret: NAME}, "
            "{env: NAME} or {file: /path}, with exactly one of the three keys, got a mapping "
            "with 2 key(s)",
        ),
        (
            "{}",
            "invalid_value",
            21,
            "database_servers.shared.admin_password must be a secret reference, {secret: NAME}, "
            "{env: NAME} or {file: /path}, with exactly one of the three keys, got a mapping "
            "with 0 key(s)",
        ),
        (
            "{file: relative/pg}",
            "invalid_value",
            28,
            "database_servers.shared.admin_password.file must be an absolute file path, got a "
            "string",
        ),
        (
            "{env: 1PG}",
            "invalid_value",
            27,
            "database_servers.shared.admin_password.env must be an environment variable name "
            "(letters, digits and underscores, not starting with a digit), got a string",
        ),
        (
            "hunter2",
            "wrong_type",
            21,
            "database_servers.shared.admin_password must be a secret reference, {secret: NAME}, "
            "{env: NAME} or {file: /path}, with exactly one of the three keys, got a string",
        ),
        (
            "123456",
            "wrong_type",
            21,
            "database_servers.shared.admin_password must be a secret reference, {secret: NAME}, "
            "{env: NAME} or {file: /path}, with exactly one of the three keys, got a number",
        ),
    ],
)
def test_a_malformed_secret_reference_is_refused_without_echoing_it(
    value: str, code: str, column: int, message: str
) -> None:
    problem = only(problems_of(with_password(value)), code)
    assert where(problem) == ("odooops.yaml", 12, column)
    assert problem.message == message


def test_an_inline_secret_is_never_echoed_and_must_move_out_of_git() -> None:
    changes = {
        "projects/acme.yaml": PROJECT.replace("{secret: acme-git}", "ghp_S3cr3tT0ken"),
        **with_password("'correct horse battery staple'"),
    }
    with pytest.raises(InvalidState) as info:
        validate_state(state(changes))
    rendered = info.value.render() + json.dumps(info.value.to_dict())
    assert "ghp_S3cr3tT0ken" not in rendered
    assert "battery" not in rendered
    token = next(p for p in info.value.problems if p.location.key == "repository.token")
    assert token.code == "wrong_type"
    assert token.remediation.startswith(
        "move the secret out of git: store it with `odooops secret set NAME` and write "
        "`token: {secret: NAME}` at projects/acme.yaml line 3, and rotate the secret if it was "
        "pushed"
    )


def test_credentials_in_a_repository_url_are_refused_and_masked() -> None:
    problem = only(
        problems_of({"projects/acme.yaml": PROJECT.replace("https://", "https://bot:s3cret@")}),
        "invalid_value",
    )
    assert where(problem) == ("projects/acme.yaml", 2, 8)
    assert "s3cret" not in problem.message
    assert problem.message.endswith('got "https://***@github.com/acme/odoo-addons.git"')


@pytest.mark.parametrize(
    "url",
    [
        "https://github.com/acme/x.git",
        "ssh://git@github.com/acme/x.git",
        "git@github.com:acme/x.git",
        "file:///srv/git/x.git",
        "/srv/git/x.git",
    ],
)
def test_repository_urls_of_every_documented_kind_are_accepted(url: str) -> None:
    text = PROJECT.replace("https://github.com/acme/odoo-addons.git", url)
    text = text.replace("  token: {secret: acme-git}\n", "")
    assert problems_of({"projects/acme.yaml": text}) == []


# ------------------------------------------------------------------------- settings values


@pytest.mark.parametrize(
    ("overrides", "column", "key", "message"),
    [
        (
            "{resource_limits: {memory: 8 gigs}}",
            39,
            "overrides.resource_limits.memory",
            'overrides.resource_limits.memory must be a size such as "512Mi", "8Gi", "8G" or '
            '"1024M" (Ki, Mi, Gi, Ti are binary; K, M, G, T decimal) or a whole number of bytes, '
            'got "8 gigs"',
        ),
        (
            "{resource_limits: {memory: 0.1Ki}}",
            39,
            "overrides.resource_limits.memory",
            'overrides.resource_limits.memory: "0.1Ki" is not a valid size: it is not a whole '
            "number of bytes",
        ),
        (
            "{resource_limits: {memory: 512}}",
            39,
            "overrides.resource_limits.memory",
            "overrides.resource_limits.memory: 512 is below the 64Mi an Odoo container needs at "
            'the very least (a bare number is bytes: did you mean "512Mi"?)',
        ),
        (
            "{resource_limits: {cpu: 0m}}",
            36,
            "overrides.resource_limits.cpu",
            'overrides.resource_limits.cpu: "0m" is not a valid CPU limit: it must be greater than '
            "zero",
        ),
        (
            "{resource_limits: {cpu: 0}}",
            36,
            "overrides.resource_limits.cpu",
            "overrides.resource_limits.cpu must be a number of cores greater than zero (0.5, 4) or "
            'millicores ("4000m"), got 0',
        ),
        (
            "{ttl: 0d}",
            18,
            "overrides.ttl",
            'overrides.ttl: "0d" is not a valid duration: it must be greater than zero',
        ),
        (
            "{ttl: 2 weeks}",
            18,
            "overrides.ttl",
            'overrides.ttl must be null (permanent) or a duration such as "7d", "14d" or "36h", '
            'got "2 weeks"',
        ),
        (
            "{backup_schedule: '0 25 * * *'}",
            30,
            "overrides.backup_schedule",
            'overrides.backup_schedule: "0 25 * * *" is not a valid cron expression: hour "25" is '
            "not a number from 0 to 23",
        ),
        (
            "{sleep_after: 0s}",
            26,
            "overrides.sleep_after",
            'overrides.sleep_after: "0s" is not a valid duration: it must be greater than zero',
        ),
        (
            "{keep_previous: 0h}",
            28,
            "overrides.keep_previous",
            'overrides.keep_previous: "0h" is not a valid duration: it must be greater than zero',
        ),
        (
            "{backup_schedule: daily}",
            30,
            "overrides.backup_schedule",
            'overrides.backup_schedule: "daily" is not a valid schedule: use "never", an interval '
            'such as "6h" or a cron expression has 5 fields: minute hour day-of-month month '
            'day-of-week, e.g. "0 */6 * * *"',
        ),
    ],
)
def test_settings_values_are_parsed_and_reported_once_on_their_line(
    overrides: str, column: int, key: str, message: str
) -> None:
    text = f"branch: main\noverrides: {overrides}\n"
    problem = only(problems_of({"environments/acme/prod.yaml": text}), "invalid_value")
    assert where(problem) == ("environments/acme/prod.yaml", 2, column)
    assert problem.location.key == key
    assert problem.message == message


@pytest.mark.parametrize("path", ["http://elsewhere.example/", "/a b", "web/login", "/$(id)"])
def test_a_smoke_path_is_a_path_on_the_server_and_nothing_else(path: str) -> None:
    text = f'branch: main\noverrides: {{smoke_paths: ["{path}"]}}\n'
    problem = only(problems_of({"environments/acme/prod.yaml": text}), "invalid_value")
    assert problem.location.key == "overrides.smoke_paths[0]"
    assert "a path on the server such as /web/login" in problem.message


def test_settings_of_platform_tiers_are_parsed_too() -> None:
    text = PLATFORM.replace('"0 */6 * * *"', '"0 */6 * *"')
    problem = only(problems_of({"odooops.yaml": text}), "invalid_value")
    assert where(problem) == ("odooops.yaml", 21, 22)
    assert problem.location.key == "tiers.dev.backup_schedule"


def test_a_port_range_must_not_run_backwards() -> None:
    text = PLATFORM.replace("{start: 18000, end: 18999}", "{start: 18999, end: 18000}")
    problem = only(problems_of({"odooops.yaml": text}), "invalid_value")
    assert where(problem) == ("odooops.yaml", 5, 23)
    assert problem.message == (
        "runtime.port_range.start (18999) is greater than runtime.port_range.end (18000)"
    )


# -------------------------------------------------------------------------- files and names


@pytest.mark.parametrize("path", ["odooops.yaml", "policies.yaml"])
def test_the_two_root_files_are_required(path: str) -> None:
    problem = only(problems_of({path: None}), "missing_file")
    assert where(problem) == (path, None, None)
    assert problem.remediation.startswith(f"create {path} at the root of the state repository")


def test_a_missing_root_file_written_as_yml_is_to_be_renamed() -> None:
    problem = only(problems_of({"policies.yaml": None, "policies.yml": POLICIES}), "missing_file")
    assert problem.remediation.startswith("rename policies.yml to policies.yaml: git mv ")


@pytest.mark.parametrize(
    ("path", "reason"),
    [
        ("projects/gamma.yml", "a .yml file is not read"),
        ("projects/notes.txt", "projects/ holds only <project>.yaml files"),
        ("projects/old/acme.yaml", "projects/ holds one <project>.yaml per project"),
        ("environments/prod.yaml", "environment files live in environments/<project>/<env>.yaml"),
        ("environments/acme/qa.yml", "a .yml file is not read"),
        ("environments/acme/qa.json", "environments/<project>/ holds only <env>.yaml files"),
        (
            "environments/acme/old/qa.yaml",
            "environment files live in environments/<project>/<env>.yaml",
        ),
    ],
)
def test_unexpected_files_in_the_state_folders_are_errors(path: str, reason: str) -> None:
    problem = only(problems_of({path: "branch: x\n"}), "unexpected_file")
    assert where(problem) == (path, None, None)
    assert reason in problem.message


def test_a_yml_file_is_to_be_renamed_with_git_mv() -> None:
    problem = only(problems_of({"environments/acme/qa.yml": "branch: qa\n"}), "unexpected_file")
    assert problem.remediation.startswith(
        "rename it: git mv environments/acme/qa.yml environments/acme/qa.yaml"
    )


@pytest.mark.parametrize(
    "path",
    [
        "projects/README",
        "projects/readme.txt",
        "projects/.gitkeep",
        "environments/acme/README.md",
        "environments/.archive/old.yaml",
        "environments/acme/.draft.yaml",
    ],
)
def test_readmes_and_dotfiles_in_the_state_folders_are_ignored(path: str) -> None:
    assert problems_of({path: "a: ["}) == []


@pytest.mark.parametrize(
    ("path", "file", "kind", "suggestion"),
    [
        ("projects/Acme_Shop.yaml", "projects/Acme_Shop.yaml", "project", "acme-shop"),
        ("environments/acme/QA.yaml", "environments/acme/QA.yaml", "environment", "qa"),
        ("environments/acme/-x.yaml", "environments/acme/-x.yaml", "environment", "x"),
        ("environments/acme/x-.yaml", "environments/acme/x-.yaml", "environment", "x"),
        (
            "environments/acme/" + "a" * 33 + ".yaml",
            "environments/acme/" + "a" * 33 + ".yaml",
            "environment",
            "a" * 32,
        ),
    ],
)
def test_file_stems_must_be_valid_names(path: str, file: str, kind: str, suggestion: str) -> None:
    text = PROJECT if path.startswith("projects/") else "branch: other\n"
    problem = only(problems_of({path: text}), "invalid_name")
    assert where(problem) == (file, None, None)
    assert f"is not a valid {kind} name" in problem.message
    assert f"e.g. `{suggestion}`" in problem.remediation


@pytest.mark.parametrize("name", ["a", "ab", "a1", "a-b", "acme-shop-2", "a" * 32])
def test_valid_names_are_accepted(name: str) -> None:
    text = f"branch: b-{name}\ntier: dev\n"
    assert problems_of({f"environments/acme/{name}.yaml": text}) == []


def test_an_environment_folder_needs_its_project_file() -> None:
    problem = only(
        problems_of({"environments/ghost/prod.yaml": "branch: main\n"}), "unknown_project"
    )
    assert where(problem) == ("environments/ghost/", None, None)
    assert problem.message == (
        "environments/ghost/ has no project: projects/ghost.yaml does not exist"
    )


# ------------------------------------------------------------------------------- references


def test_a_project_database_server_must_be_defined_in_the_platform() -> None:
    text = PROJECT.replace("database_server: shared", "database_server: main-pg")
    problem = only(problems_of({"projects/acme.yaml": text}), "unknown_reference")
    assert where(problem) == ("projects/acme.yaml", 9, 18)
    assert problem.message == (
        "database_server `main-pg` is not defined in odooops.yaml (defined: shared)"
    )


def test_db_source_must_name_another_environment_of_the_same_project() -> None:
    text = "branch: develop\ndb: {source: b}\n"
    problem = only(problems_of({"environments/acme/dev.yaml": text}), "unknown_reference")
    assert where(problem) == ("environments/acme/dev.yaml", 2, 14)
    assert problem.message == (
        "db.source `b` is not an environment of project `acme` (environments: dev, prod, staging)"
    )


def test_db_source_cannot_name_its_own_environment() -> None:
    text = "branch: develop\ndb:\n  source: dev\n"
    problem = only(problems_of({"environments/acme/dev.yaml": text}), "unknown_reference")
    assert where(problem) == ("environments/acme/dev.yaml", 3, 11)
    assert "names this environment itself" in problem.message


def test_a_protected_environment_cannot_be_declared_as_a_copy() -> None:
    """Production's data is only ever replaced by a confirmed restore, never by a copy."""
    text = "branch: main\ntier: production\ndb:\n  source: staging\n"
    problem = only(problems_of({"environments/acme/prod.yaml": text}), "copy_onto_protected")
    assert where(problem) == ("environments/acme/prod.yaml", 4, 11)
    assert "--confirm" in problem.remediation


def test_an_environment_marked_protected_cannot_be_a_copy_either() -> None:
    text = "branch: develop\nprotected: true\ndb: {source: prod}\n"
    only(problems_of({"environments/acme/dev.yaml": text}), "copy_onto_protected")


def test_non_production_copies_are_always_neutralised() -> None:
    text = "branch: develop\ndb: {source: prod, neutralize: false}\n"
    problem = only(problems_of({"environments/acme/dev.yaml": text}), "neutralize_required")
    assert "remove db.neutralize" in problem.remediation


def test_two_environments_of_a_project_cannot_deploy_the_same_branch() -> None:
    problem = only(
        problems_of({"environments/acme/staging.yaml": "tier: staging\nbranch: main\n"}),
        "duplicate_branch",
    )
    assert where(problem) == ("environments/acme/staging.yaml", 2, 9)
    assert problem.message.startswith(
        "branch `main` is already deployed by environments/acme/prod.yaml"
    )


def test_the_same_branch_in_two_projects_is_fine() -> None:
    """``beta/b.yaml`` deploys ``main`` like ``acme/prod.yaml`` does, in the sample itself."""
    assert problems_of({}) == []


def test_an_environment_without_tier_needs_a_matching_branch_rule() -> None:
    problem = only(
        problems_of({"environments/acme/staging.yaml": "branch: hotfix/1\n"}), "unmatched_branch"
    )
    assert where(problem) == ("environments/acme/staging.yaml", 1, 9)
    assert problem.remediation.startswith(
        "add `tier: <production|staging|dev|ephemeral>` to environments/acme/staging.yaml"
    )


def test_an_environment_with_a_tier_needs_no_branch_rule() -> None:
    assert problems_of({"environments/acme/staging.yaml": "branch: hotfix/1\ntier: dev\n"}) == []


# ----------------------------------------------------------------------------- branch rules


def rules(*matches: str) -> str:
    body = "".join(f"  - match: '{m}'\n    tier: dev\n" for m in matches)
    return f"branches:\n{body}protected_tiers: []\n"


def test_two_rules_with_the_same_match_are_ambiguous() -> None:
    problem = only(
        problems_of({"policies.yaml": rules("main", "develop", "main")}), "ambiguous_rule"
    )
    assert where(problem) == ("policies.yaml", 6, 12)
    assert problem.location.key == "branches[2].match"
    assert problem.message == (
        "rule 3 repeats match `main` of rule 1: a branch must map to one tier"
    )


@pytest.mark.parametrize(
    ("matches", "hidden", "by"),
    [
        (("**", "main"), 2, 1),
        (("feature/*", "feature/login"), 2, 1),
        (("main", "feature/*", "feature/a*"), 3, 2),
        (("release/**", "hotfix", "release/*"), 3, 1),
    ],
)
def test_a_rule_hidden_by_an_earlier_rule_is_ambiguous(
    matches: tuple[str, ...], hidden: int, by: int
) -> None:
    problem = only(problems_of({"policies.yaml": rules(*matches)}), "ambiguous_rule")
    assert where(problem) == ("policies.yaml", 2 * hidden, 12)
    assert problem.message.startswith(f"rule {hidden} (match `{matches[hidden - 1]}`) can never")
    assert f"rule {by} (match `{matches[by - 1]}`, line {2 * by})" in problem.message


@pytest.mark.parametrize(
    "matches",
    [
        ("main", "release/*", "develop", "feature/*"),
        ("feature/login", "feature/*"),
        ("release/*", "release/**"),
        ("*", "a/b"),
    ],
)
def test_rules_from_specific_to_general_are_not_ambiguous(matches: tuple[str, ...]) -> None:
    problems = problems_of({"policies.yaml": rules(*matches)})
    assert [p for p in problems if p.code == "ambiguous_rule"] == []


# ---------------------------------------------------------------------- YAML inside a state


def test_yaml_problems_of_a_state_file_carry_its_repo_relative_path() -> None:
    problems = problems_of({"environments/acme/prod.yaml": "branch: main\nbranch: dev\n"})
    problem = only(problems, "duplicate_key")
    assert where(problem) == ("environments/acme/prod.yaml", 2, 1)
    assert problem.remediation.endswith("then run: odooops validate .")


def test_a_syntax_error_in_one_file_does_not_hide_problems_of_the_others() -> None:
    problems = problems_of(
        {"projects/acme.yaml": "repository: [\n", "environments/acme/prod.yaml": "brunch: x\n"}
    )
    assert {(p.code, p.location.file) for p in problems} >= {
        ("yaml_syntax", "projects/acme.yaml"),
        ("unknown_key", "environments/acme/prod.yaml"),
        ("missing_key", "environments/acme/prod.yaml"),
    }


def test_a_file_that_is_not_utf8_is_a_syntax_problem() -> None:
    files = state()
    files["environments/acme/prod.yaml"] = b"branch: main\nowner: caf\xe9\n"
    with pytest.raises(InvalidState) as info:
        validate_state(files)
    problem = only(list(info.value.problems), "yaml_syntax")
    assert where(problem) == ("environments/acme/prod.yaml", 2, None)
    assert "not UTF-8" in problem.message


def test_a_file_that_is_not_a_mapping_is_a_wrong_type() -> None:
    problem = only(problems_of({"environments/acme/prod.yaml": "- main\n"}), "wrong_type")
    assert where(problem) == ("environments/acme/prod.yaml", 1, 1)
    assert problem.message == "the file must be a mapping, got a list"


# ---------------------------------------------------------------------------- app config

APP = """\
version: 1
modules: [acme_sale]
tiers:
  production:
    workers: 8
    backup_schedule: "0 */6 * * *"
    resource_limits: {cpu: "4000m", memory: "8Gi"}
"""


@pytest.mark.parametrize("text", [APP, "", "# nothing to override\n"])
def test_an_app_config_may_be_empty_or_full(text: str) -> None:
    doc = validate_app_config(text.encode())
    assert doc.path == ".odooops.yaml"
    assert isinstance(doc.data, dict)


def test_an_invalid_app_config_lists_every_problem_and_says_to_push_a_fix() -> None:
    text = APP.replace("workers: 8", "workers: 80").replace("[acme_sale]", "[acme_sale, Bad]")
    with pytest.raises(InvalidState) as info:
        validate_app_config(text.encode(), "acme/.odooops.yaml")
    error = info.value
    assert error.message == "acme/.odooops.yaml is invalid: 2 problems"
    assert [(p.code, p.location.line, p.location.column) for p in error.problems] == [
        ("invalid_value", 2, 22),
        ("invalid_value", 5, 14),
    ]
    assert all(
        p.remediation.endswith("then push the fix to the application repository")
        for p in error.problems
    )


def test_app_config_settings_values_are_parsed() -> None:
    with pytest.raises(InvalidState) as info:
        validate_app_config(APP.replace('"8Gi"', '"8 gigs"').encode())
    problem = only(list(info.value.problems), "invalid_value")
    assert where(problem) == (".odooops.yaml", 7, 45)
    assert problem.location.key == "tiers.production.resource_limits.memory"


# ------------------------------------------------------------------------------ branch names

# (branch, why it is refused); each was accepted before, and ``git check-ref-format --branch``
# refuses the first group (tests/integration/test_statewriter.py asks git itself).
REFUSED_BY_GIT = [
    ("-x", "starts with a hyphen"),
    ("HEAD", "HEAD"),
    ("main\n", "a trailing newline"),
    ("a\x7fb", "DEL"),
    ("feature/x.lock", "ends with .lock"),
    ("a@{1}", "@{"),
]
REFUSED_AS_HOSTILE = [
    ("a\x84b", "a C1 control character"),
    ("a\x85b", "NEL, which YAML reads as a line break"),
    ("feature/\u202ecod.exe", "a right-to-left override"),
    ("feat\u200bure/x", "a zero-width space"),
    ("feature/\u2066x", "a bidirectional isolate"),
    ("x\U000e0041", "an invisible tag character"),
    ("main\u00a0", "a no-break space"),
    ("release/v\u20091", "a thin space"),
    ("refs/heads/main", "a full ref pasted as a branch"),
    ("@", "@, which git reads as HEAD"),
    ("x" * 256, "longer than 255 characters"),
]


@pytest.mark.parametrize(
    ("branch", "why"),
    REFUSED_BY_GIT + REFUSED_AS_HOSTILE,
    ids=[why for _, why in REFUSED_BY_GIT + REFUSED_AS_HOSTILE],
)
def test_a_hostile_or_invalid_branch_is_refused(branch: str, why: str) -> None:
    text = "branch: " + json.dumps(branch) + "\n"
    problem = only(problems_of({"environments/acme/prod.yaml": text}), "invalid_value")
    assert where(problem) == ("environments/acme/prod.yaml", 1, 9)
    assert not validation.is_branch_name(branch)


@pytest.mark.parametrize(
    "branch", ["main", "release/v2.1", "feature/crm-reports", "fix/ré-ça", "a@b", "HEADS", "x-"]
)
def test_ordinary_branches_are_accepted(branch: str) -> None:
    text = f"branch: {json.dumps(branch)}\ntier: production\n"
    assert problems_of({"environments/acme/prod.yaml": text}) == []
    assert validation.is_branch_name(branch)


def test_a_refused_branch_is_quoted_with_its_invisible_characters_escaped() -> None:
    """A message must not carry a right-to-left override to the terminal that prints it."""
    text = 'branch: "feature/\\u202Ecod.exe"\n'
    problem = only(problems_of({"environments/acme/prod.yaml": text}), "invalid_value")
    assert "\u202e" not in problem.message
    assert '"feature/\\u202ecod.exe"' in problem.message


@pytest.mark.parametrize(
    ("path", "text"),
    [
        ("environments/acme/prod.yaml", 'branch: main\nrevision: "track\\n"\n'),
        ("environments/acme/prod.yaml", 'branch: main\nowner: "ann\\n"\n'),
        ("environments/acme/prod.yaml", 'branch: main\ndb: {source: "prod\\n"}\n'),
        ("policies.yaml", POLICIES.replace('"release/*"', '"release/*\\n"')),
    ],
    ids=["revision", "owner", "db.source", "match"],
)
def test_no_pattern_takes_a_trailing_newline(path: str, text: str) -> None:
    """JSON Schema's ``$`` is the end of the text; Python's also matched before a newline."""
    assert only(problems_of({path: text}), "invalid_value").location.file == path


# ------------------------------------------------------------------------------ mail catcher


@pytest.mark.parametrize(
    ("listen", "addresses"),
    [
        (None, ("127.0.0.1", "host-gateway")),
        ("172.17.0.1", ("172.17.0.1",)),
        ("[127.0.0.1, host-gateway, 10.0.0.5]", ("127.0.0.1", "host-gateway", "10.0.0.5")),
    ],
)
def test_the_mail_catcher_listens_on_loopback_and_the_gateway_unless_told(
    listen: str | None, addresses: tuple[str, ...]
) -> None:
    from reconciler.core.config import load_state

    section = "" if listen is None else f"mail_catcher:\n  listen: {listen}\n"
    config = load_state(state({"odooops.yaml": PLATFORM + section}), "c")
    assert config.platform.mail_catcher.listen == addresses


def test_the_mail_catcher_needs_an_address() -> None:
    problems = problems_of({"odooops.yaml": PLATFORM + "mail_catcher:\n  listen: []\n"})
    assert [p.location.key for p in problems] == ["mail_catcher.listen"]


def test_a_tier_whose_memory_cannot_hold_its_processes_is_refused_with_the_arithmetic() -> None:
    """8 workers + 2 cron + gevent + master need more than 4Gi at Odoo's 600Mi per worker."""
    with pytest.raises(InvalidState) as info:
        validate_app_config(APP.replace('"8Gi"', '"4Gi"').encode(), "acme/.odooops.yaml")
    problem = only(list(info.value.problems), "memory_too_small")
    assert problem.location.key == "tiers.production.resource_limits.memory"
    assert "8 HTTP worker(s) + 2 cron worker(s) + 1 gevent process" in problem.message
    assert problem.remediation == (
        "set resource_limits.memory to at least 6.75Gi for the production tier (or fewer "
        "workers / max_cron_threads, or an explicit resource_limits.worker_memory), then push "
        "the fix to the application repository"
    )


# The issue's text, as the product's own design documents show it: rejected with "unknown key
# `environments`" before, valid now.
APP_BY_ENVIRONMENT = """\
environments:
  production:
    workers: 12
    backup_schedule: "0 */3 * * *"
    resource_limits: {cpu: "4000m", memory: "8Gi"}
"""


def test_an_app_config_sets_an_environment_by_its_name() -> None:
    doc = validate_app_config(APP_BY_ENVIRONMENT.encode())
    assert doc.data["environments"]["production"]["workers"] == 12


@pytest.mark.parametrize(
    ("edit", "code", "key", "line"),
    [
        (("workers: 12", "workers: many"), "wrong_type", "environments.production.workers", 3),
        (
            ('"8Gi"', '"8 gigs"'),
            "invalid_value",
            "environments.production.resource_limits.memory",
            5,
        ),
        (('"4000m"', '"four"'), "invalid_value", "environments.production.resource_limits.cpu", 5),
        (
            ('"0 */3 * * *"', '"often"'),
            "invalid_value",
            "environments.production.backup_schedule",
            4,
        ),
        (("  production:", "  Production:"), "invalid_name", "environments.Production", 2),
        (("workers: 12", "wokers: 12"), "unknown_key", "environments.production.wokers", 3),
    ],
)
def test_an_app_config_environment_block_is_checked_where_it_is_written(
    edit: tuple[str, str], code: str, key: str, line: int
) -> None:
    with pytest.raises(InvalidState) as info:
        validate_app_config(APP_BY_ENVIRONMENT.replace(*edit).encode(), "acme@abc:.odooops.yaml")
    problem = only(list(info.value.problems), code)
    assert (problem.location.file, problem.location.line) == ("acme@abc:.odooops.yaml", line)
    assert problem.location.key == key
    assert problem.remediation.endswith("then push the fix to the application repository")
