"""Incremental validation (``StateIndex.update``) against full validation (``build``).

A write re-validates only the files it touches and the cross-file units they feed (branch per
project, hosts, sibling references, project directories); that is only sound if the result is
exactly what validating every file gives. Random edit sequences, seeded so a failure replays,
hold the two together on every step: problems, documents and the verdict.
"""

from __future__ import annotations

import random
from collections.abc import Mapping
from pathlib import Path

import pytest

from reconciler.core.config import LoadedState, load_state
from reconciler.core.errors import InvalidState
from reconciler.core.validation import StateIndex, applied, validate_state

TEMPLATE = Path(__file__).resolve().parents[2] / "state-repo-template"
PROJECTS = ("acme", "shop", "Bad_Dir")
ENVS = ("production", "qa", "stg-1", "stg-2", "dev-a", "dev-b", "x", "Bad Name")
BRANCHES = ("main", "release/one", "release/two", "develop", "feature/a", "hotfix/z", "main")
DOMAINS = ("erp.example.com", "shop.example.com", "qa.acme.example.net", "bad..example", "x")


def base_files(ingress: bool) -> dict[str, bytes]:
    files = {
        str(p.relative_to(TEMPLATE)): p.read_bytes() for p in TEMPLATE.rglob("*") if p.is_file()
    }
    if ingress:
        files["odooops.yaml"] += b"ingress:\n  domain: example.net\n"
    return files


def random_environment(rng: random.Random) -> bytes:
    lines = [f"branch: {rng.choice(BRANCHES)}"]
    if rng.random() < 0.2:
        lines.append(f"tier: {rng.choice(['production', 'staging', 'dev', 'ephemeral', 'gold'])}")
    if rng.random() < 0.3:
        lines.append(f"db: {{source: {rng.choice([*ENVS[:6], 'fresh', 'nowhere'])}}}")
    if rng.random() < 0.1:
        lines.append("db: {neutralize: false}")
    if rng.random() < 0.3:
        lines.append(f"domains: [{', '.join(rng.sample(DOMAINS, rng.randint(1, 2)))}]")
    if rng.random() < 0.15:
        lines.append(f"allowlist: [{rng.choice(['10.0.0.0/8', 'not-a-net', '203.0.113.7'])}]")
    if rng.random() < 0.1:
        lines.append("protected: true")
    if rng.random() < 0.05:
        lines.append("branch: twice")  # a duplicate key
    if rng.random() < 0.05:
        lines.append("  : [unbalanced")  # a YAML syntax error
    return ("\n".join(lines) + "\n").encode()


def random_project(rng: random.Random) -> bytes:
    server = rng.choice(["shared", "shared", "elsewhere"])
    return f"repository: {{url: 'file:///x'}}\ndatabase_server: {server}\n".encode()


def random_change(rng: random.Random, files: Mapping[str, bytes]) -> dict[str, bytes | None]:
    """One write: mostly environment files, sometimes projects, stray files or the root."""
    roll = rng.random()
    if roll < 0.6:
        path = f"environments/{rng.choice(PROJECTS)}/{rng.choice(ENVS)}.yaml"
        return {path: None if path in files and rng.random() < 0.3 else random_environment(rng)}
    if roll < 0.72:
        path = f"projects/{rng.choice(PROJECTS)}.yaml"
        return {path: None if path in files and rng.random() < 0.3 else random_project(rng)}
    if roll < 0.75:  # the platform's pins, sometimes of a project that is gone
        path = f"projects/{rng.choice(PROJECTS)}.lock.yaml"
        lock = (
            b"version: 1\nrepositories: {web: {url: u, ref: '19.0', commit: " + b"d" * 40 + b"}}\n"
        )
        return {path: None if path in files and rng.random() < 0.5 else lock}
    if roll < 0.85:
        path = rng.choice(
            [
                "environments/acme/README.md",
                "environments/acme/qa.yml",
                "environments/acme/deep/qa.yaml",
                "projects/notes.txt",
                "environments/.keep",
            ]
        )
        return {path: None if path in files else b"x: 1\n"}
    if roll < 0.9:  # several files in one write
        return {
            f"environments/acme/{rng.choice(ENVS)}.yaml": random_environment(rng),
            f"environments/shop/{rng.choice(ENVS)}.yaml": random_environment(rng),
        }
    if roll < 0.95:
        policies = files.get("policies.yaml", b"")
        extra = b"  - match: 'hotfix/*'\n    tier: staging\n"
        return {"policies.yaml": policies.replace(extra, b"") if extra in policies else policies}
    platform = files["odooops.yaml"]
    ingress = b"ingress:\n  domain: example.net\n"
    return {
        "odooops.yaml": platform.replace(ingress, b"")
        if ingress in platform
        else platform + ingress
    }


def verdict(index: StateIndex) -> object:
    try:
        state = index.validated()
    except InvalidState as exc:
        return ("invalid", exc.message, exc.problems)
    return ("valid", state)


def assert_same(incremental: StateIndex, full: StateIndex) -> None:
    assert incremental.problems == full.problems
    assert incremental.projects == full.projects
    assert incremental.environments == full.environments
    assert incremental.host_claims == full.host_claims
    assert incremental.branch_groups == full.branch_groups
    assert verdict(incremental) == verdict(full)


@pytest.mark.parametrize("seed", range(12))
@pytest.mark.parametrize("ingress", [True, False], ids=["ingress", "no-ingress"])
def test_incremental_validation_equals_full_validation_on_random_edits(
    seed: int, ingress: bool
) -> None:
    rng = random.Random(seed)
    files = base_files(ingress)
    index = StateIndex.build(files)
    problems_seen = 0
    for _ in range(60):
        change = random_change(rng, files)
        files = applied(files, change)
        index = index.update(change)
        assert_same(index, StateIndex.build(files))
        problems_seen += len(index.problems)
    assert problems_seen, "the edits never made the state invalid: the sequence tests nothing"


def test_an_update_leaves_the_index_it_came_from_as_it_was() -> None:
    files = base_files(True)
    files["projects/acme.yaml"] = b"repository: {url: 'file:///x'}\n"
    files["environments/acme/qa.yaml"] = b"branch: release/qa\n"
    before = StateIndex.build(files)
    problems, environments = before.problems, dict(before.environments)
    after = before.update({"environments/acme/stg.yaml": b"branch: release/qa\n"})
    assert [p.code for p in after.problems] == ["duplicate_branch"]
    assert before.problems == problems
    assert before.environments == environments
    assert before.validated().environments.keys() == {("acme", "qa")}


def test_validate_state_is_the_full_build() -> None:
    files = base_files(False)
    files["projects/acme.yaml"] = b"repository: {url: 'file:///x'}\n"
    files["environments/acme/qa.yaml"] = b"branch: release/qa\n"
    assert validate_state(files) == StateIndex.build(files).validated()


def test_an_unchanged_file_is_not_parsed_again(monkeypatch: pytest.MonkeyPatch) -> None:
    from reconciler.core import validation

    files = base_files(False)
    files["projects/acme.yaml"] = b"repository: {url: 'file:///x'}\n"
    for i in range(50):
        files[f"environments/acme/e-{i}.yaml"] = f"branch: release/e-{i}\n".encode()
    index = StateIndex.build(files)
    parsed: list[str] = []
    real = validation._load

    def counting(text: str, path: str, recheck: object) -> object:
        parsed.append(path)
        return real(text, path, recheck)  # type: ignore[arg-type]

    monkeypatch.setattr(validation, "_load", counting)
    index = index.update({"environments/acme/new.yaml": b"branch: release/new\n"})
    StateIndex.build({**files, "environments/acme/new.yaml": b"branch: release/new\n"})
    assert parsed == ["environments/acme/new.yaml"]
    assert ("acme", "new") in index.environments


CROSS_FILE_CODES = {
    "duplicate_branch",
    "domain_conflict",
    "unknown_reference",
    "unknown_project",
    "unmatched_branch",
    "copy_onto_protected",
    "neutralize_required",
    "invalid_domain",
    "invalid_allowlist",
    "ingress_disabled",
    "invalid_name",
    "unexpected_file",
    "lock_without_project",
}


def test_the_random_edits_reach_every_cross_file_check() -> None:
    """The property test above means something only if its edits make each kind of problem."""
    seen: set[str] = set()
    for ingress in (True, False):
        for seed in range(12):
            rng = random.Random(seed)
            files = base_files(ingress)
            index = StateIndex.build(files)
            for _ in range(60):
                change = random_change(rng, files)
                files = applied(files, change)
                index = index.update(change)
                seen.update(p.code for p in index.problems)
    assert seen >= CROSS_FILE_CODES, CROSS_FILE_CODES - seen


def test_a_model_updated_from_changes_is_the_model_loaded_from_every_file() -> None:
    """``LoadedState.update`` (what a write runs) gives what ``load_state`` gives, on writes
    that keep the state valid; one that would not raises and leaves the state it came from."""
    rng = random.Random(7)
    files = base_files(True)
    files["projects/acme.yaml"] = b"repository: {url: 'file:///x'}\n"
    loaded = LoadedState.load(files, "c0")
    for step in range(80):
        env = f"e-{rng.randrange(30)}"
        path = f"environments/{rng.choice(['acme', 'shop'])}/{env}.yaml"
        roll = rng.random()
        if roll < 0.2 and path in files:
            change: dict[str, bytes | None] = {path: None}
        elif roll < 0.3:
            change = {"projects/shop.yaml": b"repository: {url: 'file:///s'}\nmodules: [crm]\n"}
        elif roll < 0.35:
            change = {"policies.yaml": files["policies.yaml"] + b"\n"}
        else:
            tier = rng.choice(["", "tier: dev\n", "suspended: true\n"])
            change = {path: f"branch: release/{env}-{step}\n{tier}".encode()}
        after = applied(files, change)
        try:
            expected = load_state(after, f"c{step}")
        except InvalidState as exc:
            with pytest.raises(InvalidState) as raised:
                loaded.update(change, f"c{step}")
            assert raised.value.problems == exc.problems
            continue
        loaded = loaded.update(change, f"c{step}")
        files = after
        assert loaded.config == expected
    assert len(loaded.config.environments) > 5
