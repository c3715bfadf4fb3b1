"""Resolution of the desired world from a state commit and app repositories (in memory)."""

from __future__ import annotations

from collections.abc import Mapping
from datetime import UTC, datetime, timedelta
from typing import Any

import yaml

from reconciler.core.buildplan import FileTree
from reconciler.core.config import load_state
from reconciler.core.desired import BranchHead, Inputs, resolve
from reconciler.core.errors import OdooOpsError, SourceError
from reconciler.core.model import EnvKey, StateConfig, Tier
from reconciler.core.validation import validate_app_config

NOW = datetime(2026, 11, 25, 12, 0, tzinfo=UTC)


class MemoryRepo:
    """An app repository held in memory: branch -> (commit, files)."""

    def __init__(self, branches: Mapping[str, tuple[str, Mapping[str, bytes]]]) -> None:
        self._branches = dict(branches)

    def branches(self) -> dict[str, str]:
        return {b: sha for b, (sha, _) in self._branches.items()}

    def _files(self, commit: str) -> Mapping[str, bytes]:
        for sha, files in self._branches.values():
            if sha.startswith(commit) or commit.startswith(sha):
                return files
        raise SourceError(f"unknown revision {commit}", code="unknown_revision")

    def resolve(self, rev: str) -> str:
        for sha, _ in self._branches.values():
            if sha.startswith(rev):
                return sha
        raise SourceError(f"unknown revision {rev}", code="unknown_revision")

    def read_file(self, commit: str, path: str) -> bytes | None:
        return self._files(commit).get(path)

    def view(self, commit: str) -> FileTree:
        return FileTree(self._files(commit))


def state(envs: Mapping[str, Mapping[str, Any]], **platform: Any) -> StateConfig:
    files = {
        "odooops.yaml": yaml.safe_dump(
            {"database_servers": {"shared": {"host": "127.0.0.1"}}, **platform}
        ).encode(),
        "policies.yaml": yaml.safe_dump(
            {
                "branches": [
                    {"match": "main", "tier": "production"},
                    {"match": "release/*", "tier": "staging"},
                    {"match": "feature/*", "tier": "ephemeral", "auto_create": True},
                ]
            }
        ).encode(),
        "projects/acme.yaml": yaml.safe_dump(
            {"repository": {"url": "file:///x"}, "modules": ["acme_base"]}
        ).encode(),
    }
    for name, doc in envs.items():
        files[f"environments/acme/{name}.yaml"] = yaml.safe_dump(dict(doc)).encode()
    return load_state(files, "c" * 40)


def inputs(
    repo: MemoryRepo | OdooOpsError,
    age: timedelta = timedelta(hours=1),
    base: Mapping[str, str] | None = None,
) -> Inputs:
    heads = (
        {}
        if isinstance(repo, OdooOpsError)
        else {"acme": {b: BranchHead("ann@acme.example", NOW - age) for b in repo.branches()}}
    )
    return Inputs(
        apps={"acme": repo},
        heads=heads,
        base_images={"odoo:19.0": "sha256:base"} if base is None else base,
        port_for=lambda key: 18000 + len(key.env),
        load_app_config=_load,
        now=NOW,
    )


def _load(content: bytes, label: str) -> Mapping[str, Any]:
    data = validate_app_config(content, label).data
    return data if isinstance(data, dict) else {}


APP = {".odooops.yaml": b"version: 1\nmodules: [acme_sale]\ntiers:\n  production: {workers: 6}\n"}
REPO = MemoryRepo(
    {"main": ("a" * 40, APP), "release/v1": ("b" * 40, APP), "feature/crm": ("d" * 40, {})}
)


def test_declared_environment_tracks_its_branch_head() -> None:
    d = resolve(state({"prod": {"branch": "main"}}), inputs(REPO))
    want = d.environments[EnvKey("acme", "prod")]
    assert want.revision == "a" * 40
    assert want.spec.tier is Tier.PRODUCTION
    assert want.modules == ("base", "acme_base", "acme_sale")
    assert want.settings.workers == 6  # from the app's .odooops.yaml


def test_pinned_revision_wins_over_the_branch_head() -> None:
    d = resolve(state({"stg": {"branch": "release/v1", "revision": "a" * 7}}), inputs(REPO))
    assert d.environments[EnvKey("acme", "stg")].revision == "a" * 40


def test_auto_create_rule_adds_an_environment_per_matching_branch() -> None:
    d = resolve(state({}), inputs(REPO))
    assert list(d.environments) == [EnvKey("acme", "feature-crm")]
    assert d.environments[EnvKey("acme", "feature-crm")].server is None  # dedicated database


def test_branch_environment_past_its_ttl_is_expired_not_desired() -> None:
    d = resolve(state({}), inputs(REPO, age=timedelta(days=8)))
    assert d.environments == {}
    assert "ttl" in d.expired[EnvKey("acme", "feature-crm")]


def test_missing_branch_holds_the_environment() -> None:
    d = resolve(state({"stg": {"branch": "release/v9", "tier": "staging"}}), inputs(REPO))
    assert "release/v9" in d.held[EnvKey("acme", "stg")]


def test_unreachable_app_repository_holds_its_environments() -> None:
    error = SourceError("cannot fetch file:///x", code="fetch_failed")
    d = resolve(state({"prod": {"branch": "main"}}), inputs(error))
    assert d.environments == {}
    assert d.held[EnvKey("acme", "prod")] == "cannot fetch file:///x"


def test_invalid_app_config_holds_only_that_environment() -> None:
    bad = MemoryRepo(
        {"main": ("a" * 40, {".odooops.yaml": b"colour: blue\n"}), "release/v1": ("b" * 40, {})}
    )
    d = resolve(state({"prod": {"branch": "main"}, "stg": {"branch": "release/v1"}}), inputs(bad))
    assert list(d.environments) == [EnvKey("acme", "stg")]
    assert "colour" in d.held[EnvKey("acme", "prod")]


def test_missing_base_image_holds_the_environment_with_a_pull_command() -> None:
    d = resolve(state({"prod": {"branch": "main"}}), inputs(REPO, base={}))
    assert "odoo:19.0" in d.held[EnvKey("acme", "prod")]


def test_image_tag_is_content_addressed() -> None:
    """Two branches with the same tree share one image; a new tree gets a new tag."""
    same = MemoryRepo({"main": ("a" * 40, APP), "release/v1": ("b" * 40, APP)})
    d = resolve(state({"prod": {"branch": "main"}, "stg": {"branch": "release/v1"}}), inputs(same))
    prod, stg = d.environments[EnvKey("acme", "prod")], d.environments[EnvKey("acme", "stg")]
    assert prod.image == stg.image
    other = MemoryRepo({"main": ("a" * 40, {}), "release/v1": ("b" * 40, APP)})
    d2 = resolve(state({"prod": {"branch": "main"}}), inputs(other))
    assert d2.environments[EnvKey("acme", "prod")].image != prod.image


def test_dev_quota_holds_environments_beyond_the_owner_limit() -> None:
    repo = MemoryRepo({f"feature/f{i}": (f"{i}" * 40, {}) for i in range(3)})
    d = resolve(state({}, quotas={"dev_environments_per_user": 2}), inputs(repo))
    assert len(d.environments) == 2
    assert len(d.held) == 1


def test_database_copy_resolves_with_its_source() -> None:
    """A declared copy is a normal environment whose spec names the source to copy from."""
    envs = {"prod": {"branch": "main"}, "stg": {"branch": "release/v1", "db": {"source": "prod"}}}
    d = resolve(state(envs), inputs(REPO))
    want = d.environments[EnvKey("acme", "stg")]
    assert (want.spec.db_source, want.spec.neutralize, want.spec.mask) == ("prod", True, True)
    assert EnvKey("acme", "stg") not in d.held


def test_the_app_s_block_for_an_environment_beats_its_tier_and_yields_to_the_state() -> None:
    """Precedence: tier default < odooops.yaml tiers < app tiers < app environments.<name> <
    the environment file's overrides."""
    app = {
        ".odooops.yaml": b"tiers:\n  production: {workers: 6, max_cron_threads: 1}\n"
        b"environments:\n  prod:\n    workers: 10\n    backup_schedule: '0 */3 * * *'\n"
        b"    resource_limits: {cpu: '4000m', memory: '8Gi'}\n"
    }
    repo = MemoryRepo(
        {"main": ("a" * 40, app), "release/v1": ("b" * 40, app), "release/v2": ("c" * 40, app)}
    )
    d = resolve(
        state(
            {
                "prod": {"branch": "main"},
                "other": {"branch": "release/v1", "tier": "production"},
                "pinned": {
                    "branch": "release/v2",
                    "tier": "production",
                    "overrides": {"workers": 3},
                },
            }
        ),
        inputs(repo),
    )
    prod = d.environments[EnvKey("acme", "prod")].settings
    assert (prod.workers, prod.max_cron_threads, prod.backup_schedule) == (10, 1, "0 */3 * * *")
    assert (prod.cpu, prod.memory) == (4.0, 8 * 2**30)
    other = d.environments[EnvKey("acme", "other")].settings  # same tier, another name
    assert (other.workers, other.backup_schedule) == (6, "6h")  # the tier default
    pinned = d.environments[EnvKey("acme", "pinned")].settings  # the state's overrides win
    assert pinned.workers == 3
