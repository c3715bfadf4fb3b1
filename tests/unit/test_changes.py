"""Operations on the state repository as pure file changes (no git, no services)."""

from __future__ import annotations

import pytest
import yaml

from reconciler.core.config import load_state
from reconciler.core.errors import InvalidState
from reconciler.core.model import EnvKey
from reconciler.gitops import changes
from reconciler.gitops.changes import (
    EnvironmentExists,
    InvalidName,
    Operation,
    UnknownEnvironment,
)

FILES = {
    "odooops.yaml": b"database_servers: {shared: {host: 127.0.0.1}}\n",
    "policies.yaml": b"branches:\n  - {match: main, tier: production}\n"
    b"  - {match: 'release/*', tier: staging}\n",
    "projects/acme.yaml": b"repository: {url: 'file:///x'}\n",
    "environments/acme/prod.yaml": b"branch: main\n",
    "environments/acme/qa.yaml": b"branch: release/v1\noverrides: {workers: 2}\n",
}
QA = EnvKey("acme", "qa")


def after(op: Operation) -> dict:
    edit = changes.apply(op, FILES)
    content = edit[changes.env_path(op.key)]
    return {} if content is None else yaml.safe_load(content)


def test_create_writes_only_the_given_fields() -> None:
    doc = after(Operation("create", EnvKey("acme", "new"), {"branch": "release/v2", "tier": None}))
    assert doc == {"branch": "release/v2"}


def test_create_refuses_an_existing_environment() -> None:
    with pytest.raises(EnvironmentExists):
        changes.apply(Operation("create", QA, {"branch": "x"}), FILES)


@pytest.mark.parametrize("verb", ["update", "destroy", "suspend", "resume", "deploy"])
def test_operations_on_an_unknown_environment_are_refused(verb: str) -> None:
    with pytest.raises(UnknownEnvironment) as info:
        changes.apply(Operation(verb, EnvKey("acme", "nope")), FILES)
    assert "odooops env list" in info.value.remediation


def test_destroy_deletes_the_file() -> None:
    assert changes.apply(Operation("destroy", QA), FILES) == {changes.env_path(QA): None}


@pytest.mark.parametrize(("verb", "suspended"), [("suspend", True), ("resume", False)])
def test_suspend_and_resume_flip_one_key(verb: str, suspended: bool) -> None:
    doc = after(Operation(verb, QA))
    assert doc == {"branch": "release/v1", "overrides": {"workers": 2}, "suspended": suspended}


def test_update_is_a_merge_patch() -> None:
    doc = after(Operation("update", QA, {"overrides": {"max_cron_threads": 1}, "branch": None}))
    assert doc == {"overrides": {"workers": 2, "max_cron_threads": 1}}


def test_deploy_sets_branch_and_revision() -> None:
    doc = after(Operation("deploy", QA, {"branch": "release/v2", "revision": "track"}))
    assert (doc["branch"], doc["revision"]) == ("release/v2", "track")


def test_a_change_that_breaks_the_state_is_refused_with_the_problems() -> None:
    edit = changes.apply(Operation("update", QA, {"overrides": {"workers": "four"}}), FILES)
    with pytest.raises(InvalidState) as info:
        changes.validated(FILES, edit, "state")
    assert "nothing was committed" in info.value.remediation
    assert info.value.problems[0].location.file == "environments/acme/qa.yaml"


def test_production_is_protected_and_unprotecting_it_is_too() -> None:
    before = load_state(FILES, "c")
    prod = EnvKey("acme", "prod")
    edit = changes.apply(Operation("update", prod, {"protected": False}), FILES)
    assert changes.touched_protected(before, changes.validated(FILES, edit, "s")) == [prod]
    qa_edit = changes.apply(Operation("suspend", QA), FILES)
    assert changes.touched_protected(before, changes.validated(FILES, qa_edit, "s")) == []


@pytest.mark.parametrize(
    ("path", "doc", "touched"),
    [
        ("projects/acme.yaml", {"repository": {"url": "file:///y"}}, ["acme/prod"]),
        (
            "policies.yaml",
            {
                "branches": [
                    {"match": "main", "tier": "production"},
                    {"match": "release/*", "tier": "staging"},
                ],
                "protected_tiers": [],
            },
            ["acme/prod"],
        ),
        (
            "policies.yaml",
            {
                "branches": [
                    {"match": "main", "tier": "production"},
                    {"match": "release/*", "tier": "staging"},
                ],
                "prune": {"allow_empty": True},
            },
            [],
        ),
    ],
    ids=["project-of-production", "unprotect-by-policy", "harmless-policy"],
)
def test_file_writes_that_change_production_are_protected(
    path: str, doc: dict, touched: list[str]
) -> None:
    before = load_state(FILES, "c")
    op = changes.FileOperation(path, doc, "chore: update")
    after = changes.validated(FILES, op.apply(FILES), "s")
    assert [str(k) for k in changes.touched_protected(before, after)] == touched


@pytest.mark.parametrize(
    ("name", "key"),
    [
        ("acme/qa", EnvKey("acme", "qa")),
        ("qa", EnvKey("acme", "qa")),
        ("feature/crm-reports", EnvKey("acme", "feature-crm-reports")),
    ],
)
def test_names_resolve_with_a_single_project(name: str, key: EnvKey) -> None:
    assert changes.resolve_name(name, ["acme"]) == key


def test_an_ambiguous_name_is_a_clear_error() -> None:
    with pytest.raises(UnknownEnvironment):
        changes.resolve_name("qa", ["acme", "shop"])


TWO_PROJECTS = ["acme", "shop"]
KNOWN = [
    EnvKey("acme", "production"),
    EnvKey("acme", "staging"),
    EnvKey("shop", "production"),
    EnvKey("acme", "feature-crm-reports"),
]


@pytest.mark.parametrize(
    ("name", "context", "key"),
    [
        ("acme/staging", None, EnvKey("acme", "staging")),
        ("shop/production", None, EnvKey("shop", "production")),
        ("staging", None, EnvKey("acme", "staging")),
        ("feature/crm-reports", None, EnvKey("acme", "feature-crm-reports")),
        ("staging", "acme", EnvKey("acme", "staging")),
        ("production", "shop", EnvKey("shop", "production")),
        ("acme/staging", "acme", EnvKey("acme", "staging")),
        ("shop/production", "acme", EnvKey("shop", "production")),
    ],
    ids=lambda v: str(v),
)
def test_full_names_always_and_bare_names_where_unambiguous(
    name: str, context: str | None, key: EnvKey
) -> None:
    """PROJECT/ENV works everywhere; a bare name needs one project, one owner or a context."""
    assert changes.resolve_name(name, TWO_PROJECTS, KNOWN, project=context) == key


@pytest.mark.parametrize(
    ("name", "says"),
    [
        ("production", "acme/production, shop/production"),
        ("qa", "acme/qa, shop/qa"),
        ("acme/", "not an environment name"),
        ("acme/qa;rm", "not an environment name"),
        ("acme/QA", "not an environment name"),
        ("acme/../shop", "not an environment name"),
    ],
)
def test_a_name_that_is_ambiguous_or_malformed_says_what_to_type(name: str, says: str) -> None:
    with pytest.raises((UnknownEnvironment, InvalidName)) as caught:
        changes.resolve_name(name, TWO_PROJECTS, KNOWN)
    assert says in caught.value.message


def test_commit_message_is_conventional_and_carries_the_request_id() -> None:
    text = changes.message(Operation("deploy", QA, {"branch": "release/v2"}), "r-1", "cli")
    assert text.splitlines()[0] == "feat(deploy): deploy release/v2 to acme/qa"
    assert "Request-Id: r-1" in text


@pytest.mark.parametrize(
    ("name", "branch"),
    [
        ("acme/qa", "qa"),
        ("qa", "qa"),
        ("feature/crm-reports", "feature/crm-reports"),  # a branch name, not PROJECT/ENV
        ("acme/feature-x", "feature-x"),
    ],
)
def test_an_environment_created_without_a_branch_tracks_the_one_of_its_name(
    name: str, branch: str
) -> None:
    assert changes.default_branch(name, ["acme", "shop"]) == branch
