"""The state format's expiry and preview fields: what validates, and what the model gets."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from reconciler.core import durations
from reconciler.core.config import load_state
from reconciler.core.model import PreviewOf, Tier
from tests.unit.test_validation import POLICIES, problems_of, state


def test_an_expiry_and_a_preview_block_reach_the_model() -> None:
    files = state(
        {
            "policies.yaml": POLICIES
            + "previews:\n  bases: [main, 'release/*']\n  seed: {copy-of: staging}\n"
            "  ttl: 2d\n  max_per_project: 3\n  labels: [preview]\n",
            "environments/acme/pr-7.yaml": "branch: feature/x\n"
            "expires: '2026-12-19T10:00:00Z'\n"
            "preview: {forge: gitlab, number: 7, head: feature/x, base: main, author: alice,"
            " url: 'https://gitlab.example.com/acme/erp/-/merge_requests/7'}\n",
        }
    )
    config = load_state(files, "c0ffee")
    policy = config.policies.previews
    assert policy is not None
    assert (policy.bases, policy.tier, policy.ttl, policy.seed) == (
        ("main", "release/*"),
        Tier.EPHEMERAL,
        timedelta(days=2),
        "staging",
    )
    assert (policy.max_per_project, policy.labels, policy.forks) == (3, ("preview",), False)
    spec = next(s for s in config.environments if s.key.env == "pr-7")
    assert spec.expires == datetime(2026, 12, 19, 10, tzinfo=UTC)
    assert spec.preview == PreviewOf(
        "gitlab",
        7,
        "feature/x",
        "main",
        "https://gitlab.example.com/acme/erp/-/merge_requests/7",
        "alice",
    )
    plain = next(s for s in config.environments if s.key.env == "prod")
    assert (plain.expires, plain.preview) == (None, None)


def test_previews_default_to_demo_data_on_an_ephemeral_tier() -> None:
    config = load_state(state({"policies.yaml": POLICIES + "previews: {bases: [main]}\n"}), "c")
    assert config.policies.previews is not None
    assert config.policies.previews.seed == "demo"
    assert config.policies.previews.ttl == timedelta(days=3)


@pytest.mark.parametrize(
    "expires", ["2026-13-01T00:00:00Z", "2026-12-19 10:00:00", "2026-12-19T10:00:00+01:00", "soon"]
)
def test_an_expiry_that_is_not_a_utc_time_is_refused_where_it_is(expires: str) -> None:
    problems = problems_of(
        {"environments/acme/dev.yaml": f"branch: develop\nexpires: '{expires}'\n"}
    )
    assert [(p.location.file, p.location.line) for p in problems] == [
        ("environments/acme/dev.yaml", 2)
    ]
    assert "YYYY-MM-DDTHH:MM:SSZ" in problems[0].message or "UTC time" in problems[0].message


@pytest.mark.parametrize(
    "previews",
    [
        "{bases: []}",
        "{bases: [main], seed: golden}",
        "{bases: [main], seed: {copy-of: Prod}}",
        "{bases: [main], ttl: 0d}",
        "{bases: [main], tier: production}",
        "{bases: [main], max_per_project: 0}",
    ],
)
def test_a_previews_policy_out_of_its_shape_is_refused(previews: str) -> None:
    problems = problems_of({"policies.yaml": POLICIES + f"previews: {previews}\n"})
    assert problems and {p.location.file for p in problems} == {"policies.yaml"}


def test_instants_are_written_as_they_are_read() -> None:
    at = datetime(2026, 12, 5, 21, 30, 15, 999, tzinfo=UTC)
    text = durations.format_instant(at)
    assert text == "2026-12-05T21:30:15Z"
    assert durations.parse_instant(text) == at.replace(microsecond=0)
