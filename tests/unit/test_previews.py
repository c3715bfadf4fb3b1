"""Pull-request previews, decided: which request gets one, its file, and when it goes."""

from __future__ import annotations

from dataclasses import replace
from datetime import UTC, datetime, timedelta

import pytest
import yaml

from reconciler.core import previews
from reconciler.core.model import EnvironmentSpec, EnvKey, PreviewOf, PreviewPolicy, Tier
from reconciler.core.previews import PullRequest, decide
from reconciler.gitops import changes
from reconciler.gitops.forges import Forge

NOW = datetime(2026, 12, 5, 12, tzinfo=UTC)
POLICY = PreviewPolicy(bases=("main", "release/*"), ttl=timedelta(days=3))
PR = PullRequest(
    "github", 12, "open", "feature/crm", "a" * 40, "main", "https://github.test/acme/erp/pull/12",
    "alice",
)  # fmt: skip


def spec(
    env: str,
    preview: PreviewOf | None = None,
    expires: datetime | None = None,
    branch: str = "",
) -> EnvironmentSpec:
    return EnvironmentSpec(
        key=EnvKey("acme", env),
        branch=branch or f"branch/{env}",
        tier=Tier.EPHEMERAL,
        revision="track",
        protected=False,
        suspended=False,
        owner=None,
        overrides={},
        expires=expires,
        preview=preview,
    )


def preview(
    env: str, number: int, forge: str = "github", expires: datetime | None = None
) -> EnvironmentSpec:
    return spec(env, PreviewOf(forge, number, "feature/x"), expires)


def test_an_open_request_into_a_base_gets_a_preview_tracking_its_head() -> None:
    decision = decide("acme", POLICY, PR, [spec("prod")], NOW)
    assert (decision.kind, decision.key) == ("open", EnvKey("acme", "pr-12"))
    assert decision.fields == {
        "branch": "feature/crm",
        "tier": "ephemeral",
        "expires": "2026-12-08T12:00:00Z",
        "preview": {
            "forge": "github",
            "number": 12,
            "head": "feature/crm",
            "base": "main",
            "url": "https://github.test/acme/erp/pull/12",
            "author": "alice",
        },
        "owner": "github:alice",
        "overrides": {"demo": True},
    }


def test_a_copy_seed_copies_the_named_environment_but_never_for_a_fork() -> None:
    policy = replace(POLICY, seed="staging", forks=True)
    opened = decide("acme", policy, PR, [], NOW)
    assert opened.fields["db"] == {
        "source": "staging",
        "neutralize": True,
        "mask": True,
        "placement": "shared",
    }
    assert "overrides" not in opened.fields
    fields = previews.preview_fields("acme", policy, replace(PR, fork=True), NOW)
    assert fields["overrides"] == {"demo": True} and "db" not in fields
    assert fields["preview"]["fork"] is True


@pytest.mark.parametrize(
    ("pr", "policy", "words"),
    [
        (replace(PR, base="develop"), POLICY, "base branch develop is not one of previews.bases"),
        (PR, replace(POLICY, labels=("preview",)), "labels previews.labels asks for (preview)"),
        (replace(PR, fork=True), POLICY, "previews of forks are off"),
    ],
)
def test_a_request_the_policy_does_not_cover_is_refused_with_why(
    pr: PullRequest, policy: PreviewPolicy, words: str
) -> None:
    decision = decide("acme", policy, pr, [], NOW)
    assert decision.kind == "refuse" and decision.key is None
    assert words in decision.reason


def test_a_label_the_policy_asks_for_opens_it() -> None:
    policy = replace(POLICY, labels=("preview",))
    assert decide("acme", policy, replace(PR, labels=("bug", "preview")), [], NOW).kind == "open"


def test_the_project_limit_refuses_naming_the_limit_and_what_counts() -> None:
    policy = replace(POLICY, max_per_project=2)
    held = [preview("pr-1", 1), preview("pr-2", 2), spec("qa")]
    decision = decide("acme", policy, PR, held, NOW)
    assert decision.kind == "refuse"
    assert "acme has 2 previews already" in decision.reason
    assert "previews.max_per_project allows (2): pr-1, pr-2" in decision.reason


def test_closed_or_merged_closes_only_the_preview_of_that_request() -> None:
    mine = preview("pr-12", 12)
    other_forge = preview("pr-12-x", 12, forge="gitlab")
    hand_made = spec("pr-13")
    for state in ("closed", "merged"):
        decision = decide("acme", POLICY, replace(PR, state=state), [other_forge, mine], NOW)
        assert (decision.kind, decision.key) == ("close", mine.key)
    closed = decide("acme", POLICY, replace(PR, number=13, state="closed"), [hand_made], NOW)
    assert closed.kind == "none" and closed.key is None


def test_a_name_taken_by_another_environment_gets_a_stable_hashed_one() -> None:
    taken = [spec("pr-12")]
    first = decide("acme", POLICY, PR, taken, NOW)
    again = decide("acme", POLICY, PR, taken, NOW + timedelta(hours=1))
    assert first.key == again.key and first.key is not None
    assert first.key.env.startswith("pr-12-") and len(first.key.env) == len("pr-12-") + 6


def test_an_open_request_extends_its_preview_only_when_half_its_ttl_is_gone() -> None:
    fresh = preview("pr-12", 12, expires=NOW + timedelta(days=2))
    assert decide("acme", POLICY, PR, [fresh], NOW).kind == "none"
    old = preview("pr-12", 12, expires=NOW + timedelta(hours=30))
    extended = decide("acme", POLICY, PR, [old], NOW)
    assert (extended.kind, dict(extended.fields)) == ("extend", {"expires": "2026-12-08T12:00:00Z"})


def test_a_preview_stays_when_its_request_stops_matching_the_policy() -> None:
    current = preview("pr-12", 12, expires=NOW + timedelta(days=3))
    decision = decide("acme", replace(POLICY, labels=("preview",)), PR, [current], NOW)
    assert decision.kind == "none" and decision.reason.startswith("kept;")


def test_no_policy_no_preview_but_closing_still_works() -> None:
    assert decide("acme", None, PR, [], NOW).kind == "none"
    current = preview("pr-12", 12)
    assert decide("acme", None, replace(PR, state="merged"), [current], NOW).kind == "close"


def test_previews_missing_from_the_open_list_are_only_looked_up() -> None:
    specs = [preview("pr-1", 1), preview("pr-2", 2), preview("pr-3", 3, forge="gitlab")]
    gone = previews.sweep_closed("acme", {"github": frozenset({2})}, specs)
    assert [s.key.env for s in gone] == ["pr-1"]  # gitlab's list was not read: not judged


def test_the_comment_names_the_preview_and_how_to_follow_it() -> None:
    key = EnvKey("acme", "pr-12")
    ready = previews.comment_body(key, "ready", "https://pr-12.acme.example", "b" * 40)
    assert ready == (
        "**OdooOps preview** `acme/pr-12` is ready at revision `bbbbbbbbbbbb`: "
        "https://pr-12.acme.example"
    )
    assert "odooops status acme/pr-12" in previews.comment_body(key, "preparing")


# ------------------------------------------------------------------ the commit's own checks
def files_with(*paths_docs: tuple[str, dict]) -> dict[str, bytes]:
    return {path: yaml.safe_dump(doc).encode() for path, doc in paths_docs}


def test_an_open_is_refused_on_a_head_that_has_the_preview_or_is_full() -> None:
    op = changes.PreviewOperation("open", EnvKey("acme", "pr-12"), "github", 12, {"branch": "x"}, 2)
    existing = (
        "environments/acme/pr-9.yaml",
        {"branch": "x", "preview": {"forge": "github", "number": 12, "head": "x"}},
    )
    with pytest.raises(changes.PreviewGone, match="has a preview already"):
        op.apply(files_with(existing))
    full = files_with(
        ("environments/acme/pr-1.yaml", {"preview": {"forge": "github", "number": 1}}),
        ("environments/acme/pr-2.yaml", {"preview": {"forge": "github", "number": 2}}),
    )
    with pytest.raises(changes.PreviewGone, match="2 previews"):
        op.apply(full)
    assert op.apply({}) == {"environments/acme/pr-12.yaml": b"branch: x\n"}


def test_a_close_never_removes_a_file_that_is_not_that_preview() -> None:
    op = changes.PreviewOperation("close", EnvKey("acme", "pr-12"), "github", 12)
    hand_made = files_with(("environments/acme/pr-12.yaml", {"branch": "x"}))
    with pytest.raises(changes.PreviewGone):
        op.apply(hand_made)
    other = files_with(
        ("environments/acme/pr-12.yaml", {"preview": {"forge": "gitea", "number": 12}})
    )
    with pytest.raises(changes.PreviewGone):
        op.apply(other)
    mine = files_with(
        ("environments/acme/pr-12.yaml", {"preview": {"forge": "github", "number": 12}})
    )
    assert op.apply(mine) == {"environments/acme/pr-12.yaml": None}
    assert "Preview-Of: github#12" in op.message("r1", "previews")


# ------------------------------------------------------------------ each forge's answer
@pytest.mark.parametrize(
    ("kind", "item", "want"),
    [
        (
            "github",
            {"number": 4, "state": "closed", "merged_at": "2026-12-01T00:00:00Z",
             "head": {"ref": "f", "sha": "s", "repo": {"full_name": "acme/erp"}},
             "base": {"ref": "main", "repo": {"full_name": "Acme/ERP"}},
             "html_url": "u", "user": {"login": "al"}, "labels": [{"name": "l"}, 5]},
            PullRequest("github", 4, "merged", "f", "s", "main", "u", "al", ("l",), False),
        ),
        (
            "gitea",
            {"number": 5, "state": "open", "merged": False,
             "head": {"ref": "f", "sha": "s", "repo": {"full_name": "bob/erp"}},
             "base": {"ref": "main", "repo": {"full_name": "acme/erp"}}},
            PullRequest("gitea", 5, "open", "f", "s", "main", fork=True),
        ),
        (
            "gitlab",
            {"iid": 6, "state": "closed", "source_branch": "f", "target_branch": "main",
             "sha": "s", "web_url": "u", "author": {"username": "al"}, "labels": ["l"],
             "source_project_id": 1, "target_project_id": 1},
            PullRequest("gitlab", 6, "closed", "f", "s", "main", "u", "al", ("l",), False),
        ),
    ],
)  # fmt: skip
def test_each_forges_request_reads_as_one_fact(kind: str, item: dict, want: PullRequest) -> None:
    assert Forge(kind, "https://api.test", "acme/erp", "t").parse_request(item) == want


@pytest.mark.parametrize("item", [None, [], {"number": "4"}, {"number": 4}, {"iid": 0}])
def test_a_malformed_request_is_no_request(item: object) -> None:
    assert Forge("github", "https://api.test", "acme/erp", "t").parse_request(item) is None


def test_a_branch_deployed_already_is_its_own_preview() -> None:
    decision = decide("acme", POLICY, PR, [spec("crm", branch="feature/crm")], NOW)
    assert (decision.kind, decision.key) == ("refuse", EnvKey("acme", "crm"))
    assert "deployed by acme/crm already (odooops status acme/crm)" in decision.reason


# ------------------------------------------------------------ the state repository's requests
def test_a_reviewed_state_says_its_plan_or_its_problems() -> None:
    from reconciler.core.errors import InvalidState, Location, Problem
    from reconciler.core.planner import Plan
    from reconciler.engine.reviews import verdict

    state, description, comment = verdict(StateConfigStub(), Plan())  # type: ignore[arg-type]
    assert (state, description) == (
        "success",
        "No changes. Live state matches the state repository.",
    )
    assert comment.startswith("**OdooOps**: this state is valid; if merged:\n\n```\n")
    problem = Problem(
        "unknown_key", "unknown key `workers`", Location("environments/a/b.yaml", 2), "fix"
    )
    invalid = InvalidState("state repository is invalid", problems=[problem])
    state, description, comment = verdict(invalid, None)
    assert state == "failure" and "1 problem(s); environments/a/b.yaml" in description
    assert "unknown key `workers`" in comment and "is **invalid**" in comment


class StateConfigStub:
    """A validated state, for ``verdict`` (which only tells it from an ``InvalidState``)."""


@pytest.mark.parametrize(("forge", "branch"), [("github", "pull/12"), ("gitea", "pull/12"),
                                               ("gitlab", "merge-requests/12")])  # fmt: skip
def test_a_fork_allowed_by_the_policy_tracks_the_forges_ref_with_demo_data(
    forge: str, branch: str
) -> None:
    policy = replace(POLICY, forks=True, seed="prod")
    fork = replace(PR, forge=forge, fork=True, head="main")  # the fork's own main
    decision = decide("acme", policy, fork, [spec("prod", branch="main")], NOW)
    assert (decision.kind, decision.fields["branch"]) == ("open", branch)
    assert decision.fields["overrides"] == {"demo": True} and "db" not in decision.fields
    assert decision.fields["preview"]["fork"] is True
    assert previews.pull_refspec(forge).endswith(f":refs/heads/{branch.split('/')[0]}/*")
