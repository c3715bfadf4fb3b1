"""What an environment runs, gathered from the daemon's view for a promotion decision.

The status says which commit serves and how healthy it is; the last pass's resolution says
which image that commit is and whether the tier is gated by tests; the ledger says whether
the gate of that image passed. ``release_of`` joins the three into a ``Release``
(``reconciler.core.promotion``) and does nothing else: the decision stays pure.
"""

from __future__ import annotations

from collections.abc import Collection, Sequence

from reconciler.core.imagegc import Deployment
from reconciler.core.model import DesiredEnvironment, EnvKey
from reconciler.core.promotion import Release
from reconciler.core.testgate import gate_key
from reconciler.engine.engine import Engine
from reconciler.engine.status import EnvironmentStatus


def engine_release(engine: Engine, key: EnvKey) -> Release | None:
    """``key``'s release as the running daemon sees it now."""
    current = engine.current
    return release_of(
        key,
        engine.status.get(str(key)),
        current.environments.get(key) if current else None,
        engine.ledger.deployments(key),
        engine.ledger.passed_gates().get(str(key), frozenset()),
    )


def release_of(
    key: EnvKey,
    status: EnvironmentStatus | None,
    want: DesiredEnvironment | None,
    deployments: Sequence[Deployment],
    passed: Collection[str],
) -> Release | None:
    """``key``'s release: None when the daemon has no status for it.

    The image is the resolved one when the resolved revision is the one serving (then its
    gate key is that image's); otherwise the ledger's newest deployment of the serving commit
    names the image and the gate cannot be vouched for."""
    if status is None:
        return None
    serving = status.serving
    image, tested = "", False
    addons: tuple[tuple[str, str], ...] = ()
    if want is not None and want.revision == serving:
        image, tested, addons = want.image, gate_key(want) in passed, want.addons
    else:
        image = next((d.image for d in reversed(deployments) if d.revision == serving), "")
    ready = next((c.status for c in status.conditions if c.type == "Ready"), True)
    # Not resolved (held): whether its tier is gated is unknown, so it counts as gated.
    return Release(
        key=key,
        serving=serving,
        wanted=status.revision,
        image=image,
        health=status.health.value,
        sync=status.sync.value,
        gated=want is None or want.tests is not None,
        tested=tested,
        ready=ready,
        addons=addons,
    )
