"""Repositories declared in a project file and the platform's pins of them (the lock file):
read into the model, validated with located problems, followed by the incremental index."""

from __future__ import annotations

from typing import Any

import pytest
import yaml

from reconciler.core.config import LoadedState, load_state
from reconciler.core.errors import InvalidState

COMMIT = "d" * 40


def files(repositories: list[dict[str, Any]], lock: dict[str, Any] | None) -> dict[str, bytes]:
    out = {
        "odooops.yaml": yaml.safe_dump({"database_servers": {"shared": {"host": "127.0.0.1"}}}),
        "policies.yaml": yaml.safe_dump({"branches": [{"match": "main", "tier": "production"}]}),
        "projects/acme.yaml": yaml.safe_dump(
            {
                "repository": {"url": "https://git.example/acme/app.git"},
                "repositories": repositories,
            }
        ),
    }
    if lock is not None:
        out["projects/acme.lock.yaml"] = yaml.safe_dump(lock)
    return {k: v.encode() for k, v in out.items()}


WEB = {"url": "https://github.com/OCA/web.git", "ref": "19.0", "addons": ["web_responsive"]}


def pin(url: str = WEB["url"], ref: str = "19.0") -> dict[str, Any]:
    return {"version": 1, "repositories": {"web": {"url": url, "ref": ref, "commit": COMMIT}}}


def test_a_pin_for_the_same_url_and_ref_is_the_repositorys_commit() -> None:
    (repo,) = load_state(files([WEB], pin()), "c" * 40).projects["acme"].repositories
    assert (repo.name, repo.ref, repo.addons, repo.commit) == (
        "web",
        "19.0",
        ("web_responsive",),
        COMMIT,
    )


@pytest.mark.parametrize("lock", [None, pin(ref="18.0"), pin(url="https://x/web.git")])
def test_no_pin_or_a_pin_for_another_ref_or_url_waits_for_a_new_one(lock: Any) -> None:
    (repo,) = load_state(files([WEB], lock), "c" * 40).projects["acme"].repositories
    assert repo.commit is None


def test_two_repositories_of_one_name_are_refused_where_the_second_is() -> None:
    twice = [WEB, {"url": "https://github.com/acme/web", "ref": "main"}]
    with pytest.raises(InvalidState) as err:
        load_state(files(twice, None), "c" * 40)
    (problem,) = err.value.problems
    assert problem.code == "duplicate_repository"
    assert problem.location.file == "projects/acme.yaml" and problem.location.line is not None


def test_a_lock_without_its_project_is_a_problem_and_a_bad_commit_too() -> None:
    orphan = files([], None)
    orphan["projects/gone.lock.yaml"] = yaml.safe_dump(pin()).encode()
    with pytest.raises(InvalidState) as err:
        load_state(orphan, "c" * 40)
    assert [p.code for p in err.value.problems] == ["lock_without_project"]
    bad = pin()
    bad["repositories"]["web"]["commit"] = "main"
    with pytest.raises(InvalidState):
        load_state(files([WEB], bad), "c" * 40)


def test_a_new_pin_reaches_the_project_through_an_incremental_update() -> None:
    loaded = LoadedState.load(files([WEB], None), "c" * 40)
    assert loaded.config.projects["acme"].repositories[0].commit is None
    updated = loaded.update({"projects/acme.lock.yaml": yaml.safe_dump(pin()).encode()}, "e" * 40)
    assert updated.config.projects["acme"].repositories[0].commit == COMMIT
    assert updated.config == load_state(files([WEB], pin()), "e" * 40)
    removed = updated.update({"projects/acme.lock.yaml": None}, "f" * 40)
    assert removed.config.projects["acme"].repositories[0].commit is None
