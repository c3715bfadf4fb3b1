"""The image collection policy against a fixed clock: what goes, and why each other image stays."""

from __future__ import annotations

from dataclasses import replace
from datetime import UTC, datetime, timedelta

import pytest

from reconciler.core.imagegc import (
    Deployment,
    Facts,
    Image,
    ImageVerdict,
    Policy,
    Reason,
    judge,
)

NOW = datetime(2026, 11, 25, 12, 0, tzinfo=UTC)
DAY = timedelta(days=1)


def image(n: int, age_days: float = 30, **kw: object) -> Image:
    base = Image(
        id=f"sha256:{n:064x}",
        tags=(tag(n),),
        created=NOW - age_days * DAY,
        size=1000,
        shared_size=400,
        project="acme",
    )
    return replace(base, **kw)  # type: ignore[arg-type]


def tag(n: int) -> str:
    return f"odooops/acme:{n:016x}"


def deployed(env: str, n: int, days_ago: float, base: str = "") -> Deployment:
    return Deployment(env, tag(n), f"sha256:{n:064x}", f"rev{n}", NOW - days_ago * DAY, base)


def one(facts: Facts) -> ImageVerdict:
    (verdict,) = judge(facts, NOW)
    return verdict


OURS = frozenset({image(1).id})
OLD = image(1)

CASES = [
    # (why, facts, reasons kept, when it is collected)
    ("old, ours, unused, never deployed: removed now", Facts((OLD,), built=OURS), set(), NOW),
    (
        "not in the ledger (another instance's, or a workload's labels): never ours",
        Facts((OLD,)),
        {Reason.NOT_OURS},
        None,
    ),
    (
        "not ours and young: still never collected",
        Facts((image(1, age_days=1),)),
        {Reason.NOT_OURS, Reason.YOUNG},
        None,
    ),
    (
        "used by a stopped container of another instance",
        Facts((OLD,), users={OLD.id: ("odooops-acme-main-odoo (instance other)",)}, built=OURS),
        {Reason.IN_USE},
        None,
    ),
    (
        "named by an environment's desired state (a rollout may be about to use it)",
        Facts((OLD,), built=OURS, wanted={tag(1): ("acme/main",)}),
        {Reason.WANTED},
        None,
    ),
    (
        "built three days ago: kept until its seventh day",
        Facts((image(1, age_days=3),), built=OURS),
        {Reason.YOUNG},
        NOW + 4 * DAY,
    ),
    (
        "exactly seven days old: removed",
        Facts((image(1, age_days=7),), built=OURS),
        set(),
        NOW,
    ),
    (
        "built long ago but replaced two days ago, its environment gone: seven days from then",
        Facts(
            (OLD,),
            history=(deployed("acme/qa", 1, 30), deployed("acme/qa", 2, 2)),
            environments=frozenset(),
        ),
        {Reason.YOUNG},
        NOW + 5 * DAY,
    ),
    (
        "deployed, so ours without a build record; its environment exists: kept for rollback",
        Facts(
            (OLD,), history=(deployed("acme/main", 1, 30),), environments=frozenset({"acme/main"})
        ),
        {Reason.ROLLBACK},
        None,
    ),
    (
        "its environment is gone: no rollback to keep it for",
        Facts(
            (OLD,),
            history=(deployed("acme/qa", 1, 30), deployed("acme/qa", 2, 20)),
            environments=frozenset({"acme/main"}),
        ),
        set(),
        NOW,
    ),
    (
        "without a state to say which environments exist, every one of the history counts",
        Facts((OLD,), history=(deployed("acme/qa", 1, 30),), environments=None),
        {Reason.ROLLBACK},
        None,
    ),
    (
        "an app's own base image of a kept deployment stays with it",
        Facts(
            (image(9, tags=("odooops/acme-base:00000000000000aa",)),),
            history=(deployed("acme/main", 1, 30, base="odooops/acme-base:00000000000000aa"),),
            built=frozenset({image(9).id}),
            environments=frozenset({"acme/main"}),
        ),
        {Reason.ROLLBACK},
        None,
    ),
    (
        "ownership is by id: a tag deployed by this daemon, now on another image, is not ours",
        Facts(
            (image(1, id="sha256:" + "f" * 64),),
            history=(deployed("acme/main", 1, 30),),
            environments=frozenset({"acme/main"}),
        ),
        {Reason.NOT_OURS, Reason.ROLLBACK},
        None,
    ),
]


@pytest.mark.parametrize(
    ("facts", "reasons", "collect_at"), [c[1:] for c in CASES], ids=[c[0] for c in CASES]
)
def test_each_image_is_kept_for_exactly_its_reasons(
    facts: Facts, reasons: set[Reason], collect_at: datetime | None
) -> None:
    verdict = one(facts)
    assert verdict.reasons == reasons
    assert verdict.remove is (not reasons)
    assert verdict.collect_at == collect_at


def test_the_last_ten_deployed_of_an_environment_are_kept_the_older_ones_go() -> None:
    """Twelve deployments a day apart, a month ago: the first two go, the last ten stay."""
    history = tuple(deployed("acme/main", n, 40 - n) for n in range(1, 13))
    facts = Facts(
        tuple(image(n, age_days=41) for n in range(1, 13)),
        users={image(12).id: ("acme/main",)},
        history=history,
        environments=frozenset({"acme/main"}),
    )
    verdicts = judge(facts, NOW)
    assert [v.image.id for v in verdicts if v.remove] == [image(1).id, image(2).id]
    kept = [v for v in verdicts if not v.remove]
    assert all(v.rollback_for == ("acme/main",) for v in kept)
    assert "among the last 10 deployed of acme/main" in kept[0].kept[0].message
    assert kept[-1].reasons == {Reason.IN_USE, Reason.ROLLBACK}


def test_a_redeploy_of_the_same_image_takes_no_rollback_slot() -> None:
    """A setting changed three times on image 11: still ten distinct images are kept."""
    history = (
        *(deployed("acme/main", n, 40 - n) for n in range(1, 12)),
        deployed("acme/main", 11, 20),
        deployed("acme/main", 11, 19),
        deployed("acme/main", 12, 18),
    )
    facts = Facts(
        tuple(image(n, age_days=41) for n in range(1, 13)),
        history=history,
        environments=frozenset({"acme/main"}),
    )
    removed = [v.image.id for v in judge(facts, NOW) if v.remove]
    assert removed == [image(1).id, image(2).id]


def test_each_environment_keeps_its_own_last_deployed() -> None:
    """An image among the last ten of one environment stays though another moved past it."""
    history = (
        deployed("acme/qa", 1, 30),
        *(deployed("acme/main", n, 30 - n) for n in range(1, 13)),
    )
    facts = Facts(
        tuple(image(n, age_days=41) for n in range(1, 13)),
        history=history,
        environments=frozenset({"acme/main", "acme/qa"}),
    )
    verdicts = {v.image.id: v for v in judge(facts, NOW)}
    assert verdicts[image(1).id].rollback_for == ("acme/qa",)
    assert verdicts[image(2).id].remove


def test_a_smaller_policy_keeps_fewer_for_a_shorter_time() -> None:
    history = tuple(deployed("acme/main", n, 10 - n) for n in range(1, 5))
    facts = Facts(
        tuple(image(n, age_days=11) for n in range(1, 5)),
        history=history,
        environments=frozenset({"acme/main"}),
    )
    policy = Policy(keep_deployed=2, min_age=timedelta(days=1))
    removed = [v.image.id for v in judge(facts, NOW, policy) if v.remove]
    assert removed == [image(1).id, image(2).id]


def test_images_come_oldest_first_with_who_uses_and_keeps_each() -> None:
    facts = Facts(
        (image(2, age_days=1), image(1, age_days=9)),
        users={image(1).id: ("acme/main", "helper")},
        built=frozenset({image(1).id, image(2).id}),
        wanted={tag(2): ("acme/qa", "acme/dev")},
    )
    first, second = judge(facts, NOW)
    assert first.image.id == image(1).id and first.used_by == ("acme/main", "helper")
    assert second.wanted_by == ("acme/dev", "acme/qa")
    assert second.kept[0].message == "the desired image of acme/dev, acme/qa"
