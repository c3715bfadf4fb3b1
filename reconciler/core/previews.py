"""Pull-request previews: which request gets an environment, under what name, and when it goes.

Pure decisions over what a forge says of a request (a webhook delivery or its API) and what the
state repository declares; the engine turns them into commits (``engine.previews``). A preview
is an environment file with a ``preview`` block, so it is found by the request it names, never
by its file name: a hand-made ``pr-12`` is never taken for a preview, nor removed as one.

Removal is the one destructive decision, so it has one narrow door: a request the forge says
is closed or merged (``PullRequest.state``). A request that cannot be read (the forge down, a
token refused, a timeout) is ``None`` to these functions, and ``None`` never removes anything;
a preview whose request stays unreadable goes only when its ``expires`` passes.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from reconciler.core import globs
from reconciler.core.durations import format_instant
from reconciler.core.model import EnvironmentSpec, EnvKey, PreviewPolicy

OPEN, CLOSED, MERGED = "open", "closed", "merged"


@dataclass(frozen=True)
class PullRequest:
    """One pull (merge) request as its forge describes it."""

    forge: str  # github, gitlab, gitea
    number: int
    state: str  # open, closed, merged
    head: str  # its branch (in the fork, for a fork)
    head_sha: str
    base: str
    url: str = ""
    author: str = ""
    labels: tuple[str, ...] = ()
    fork: bool = False

    @property
    def ref(self) -> str:
        """How the request is named in messages: ``github#12``."""
        return f"{self.forge}#{self.number}"


@dataclass(frozen=True)
class Decision:
    """What to do about one request of one project.

    ``open``: declare the preview (``fields`` is its file); ``extend``: move its expiry
    (``fields`` has the new ``expires``); ``close``: remove it; ``refuse``: it wants a
    preview and gets none (``reason`` says why, for the request's comment); ``none``: nothing
    to do (``reason`` says why, for the log)."""

    kind: str
    project: str
    pr: PullRequest
    key: EnvKey | None = None
    fields: Mapping[str, Any] = field(default_factory=dict)
    reason: str = ""


# Where each forge keeps a request's head in the base repository, even for a fork: fetched
# into the mirror as the branch ``<prefix>/<number>`` for projects that allow previews of forks.
_PULL_REFS = {"github": "pull", "gitea": "pull", "gitlab": "merge-requests"}


def pull_refspec(forge: str) -> str:
    """The refspec that mirrors ``forge``'s request heads as branches (``pull/12``)."""
    prefix = _PULL_REFS[forge]
    return f"+refs/{prefix}/*/head:refs/heads/{prefix}/*"


def tracked_branch(pr: PullRequest) -> str:
    """The branch a preview of ``pr`` tracks: its head branch, or for a fork (whose branch is
    in another repository) the forge's ref of the request, mirrored as ``pull/12``."""
    return f"{_PULL_REFS[pr.forge]}/{pr.number}" if pr.fork else pr.head


def name_for(project: str, pr: PullRequest, taken: Iterable[str]) -> str:
    """``pr-12``, or ``pr-12-3f2a1c`` (a hash of the forge and number) when ``pr-12`` is an
    environment already (a hand-made one, or a preview of the same number on another forge)."""
    plain = f"pr-{pr.number}"
    if plain not in set(taken):
        return plain
    digest = hashlib.sha256(f"{project}|{pr.forge}|{pr.number}".encode()).hexdigest()[:6]
    return f"{plain}-{digest}"


def preview_of(
    specs: Iterable[EnvironmentSpec], project: str, pr: PullRequest
) -> EnvironmentSpec | None:
    """The environment previewing ``pr`` in ``project``, found by its ``preview`` block."""
    for spec in specs:
        p = spec.preview
        if (
            spec.key.project == project
            and p is not None
            and (p.forge, p.number) == (pr.forge, pr.number)
        ):
            return spec
    return None


def previews(specs: Iterable[EnvironmentSpec], project: str) -> list[EnvironmentSpec]:
    return sorted(
        (s for s in specs if s.key.project == project and s.preview is not None),
        key=lambda s: s.key,
    )


def refusal(policy: PreviewPolicy, pr: PullRequest) -> str:
    """Why ``pr`` gets no preview by the policy alone ("" when it does)."""
    if not any(globs.matches(base, pr.base) for base in policy.bases):
        return (
            f"its base branch {pr.base} is not one of previews.bases in policies.yaml "
            f"({', '.join(policy.bases)})"
        )
    if policy.labels and not set(policy.labels) & set(pr.labels):
        return f"it has none of the labels previews.labels asks for ({', '.join(policy.labels)})"
    if pr.fork and not policy.forks:
        return (
            "it comes from a fork, and previews of forks are off (previews.forks in "
            "policies.yaml): a fork's code would run with the platform's settings"
        )
    return ""


def preview_fields(
    project: str, policy: PreviewPolicy, pr: PullRequest, now: datetime
) -> dict[str, Any]:
    """The environment file of a new preview of ``pr``.

    It tracks the request's head branch (a fork's: the forge's ref of the request, mirrored as
    ``pull/12``), so each push redeploys it. Its seed is demo data, or
    a copy of the environment ``copy-of`` names (neutralised and masked as every copy is, on
    the shared server); a fork's preview never gets a copy, whatever the policy says."""
    doc: dict[str, Any] = {
        "branch": tracked_branch(pr),
        "tier": policy.tier.value,
        "expires": format_instant(now + policy.ttl),
        "preview": {
            "forge": pr.forge,
            "number": pr.number,
            "head": pr.head,
            "base": pr.base,
        },
    }
    if pr.url:
        doc["preview"]["url"] = pr.url
    if pr.author:
        doc["owner"] = f"{pr.forge}:{pr.author}"
        doc["preview"]["author"] = pr.author
    if pr.fork:
        doc["preview"]["fork"] = True
    if policy.seed == "demo" or pr.fork:
        doc["overrides"] = {"demo": True}
    else:
        # On the shared server, beside its source (or the source's golden copy): a template
        # copy takes seconds per GB where a copy into a container of its own is streamed.
        doc["db"] = {"source": policy.seed, "neutralize": True, "mask": True, "placement": "shared"}
    return doc


def decide(
    project: str,
    policy: PreviewPolicy | None,
    pr: PullRequest,
    specs: Iterable[EnvironmentSpec],
    now: datetime,
) -> Decision:
    """What a fact about ``pr`` (from a delivery or the forge's API) asks of ``project``."""
    specs = list(specs)
    current = preview_of(specs, project, pr)
    if pr.state in (CLOSED, MERGED):
        if current is None:
            return Decision("none", project, pr, reason=f"{pr.ref} is {pr.state}; no preview")
        return Decision("close", project, pr, current.key, reason=f"{pr.ref} was {pr.state}")
    if policy is None:
        return Decision("none", project, pr, reason="policies.yaml has no previews")
    why = refusal(policy, pr)
    if current is not None:
        if why:  # a label removed, a base changed: the preview stays until it closes
            return Decision("none", project, pr, current.key, reason=f"kept; {why}")
        return _extend(project, policy, pr, current, now)
    if why:
        return Decision("refuse", project, pr, reason=f"{pr.ref} gets no preview: {why}")
    branch = tracked_branch(pr)
    deployed = next((s for s in specs if s.key.project == project and s.branch == branch), None)
    if deployed is not None:  # one branch, one environment: that one is its preview
        return Decision(
            "refuse",
            project,
            pr,
            deployed.key,
            reason=f"{pr.ref} gets no preview of its own: its branch {branch} is deployed by "
            f"{deployed.key} already (odooops status {deployed.key})",
        )
    existing = previews(specs, project)
    if len(existing) >= policy.max_per_project:
        names = ", ".join(str(s.key.env) for s in existing)
        return Decision(
            "refuse",
            project,
            pr,
            reason=f"{pr.ref} gets no preview: {project} has {len(existing)} previews already, "
            f"the most previews.max_per_project allows ({policy.max_per_project}): {names}; "
            "close one of their requests, or raise previews.max_per_project in policies.yaml",
        )
    taken = [s.key.env for s in specs if s.key.project == project]
    key = EnvKey(project, name_for(project, pr, taken))
    return Decision(
        "open", project, pr, key, preview_fields(project, policy, pr, now), f"{pr.ref} opened"
    )


def _extend(
    project: str, policy: PreviewPolicy, pr: PullRequest, current: EnvironmentSpec, now: datetime
) -> Decision:
    """A request still open keeps its preview: when less than half of the policy's ttl is
    left, the expiry moves to a full ttl from now (one commit per half-ttl at most, not one
    per push)."""
    if current.expires is not None and current.expires - now >= policy.ttl / 2:
        return Decision("none", project, pr, current.key, reason="up to date")
    return Decision(
        "extend",
        project,
        pr,
        current.key,
        {"expires": format_instant(now + policy.ttl)},
        f"{pr.ref} is still open",
    )


def sweep_closed(
    project: str, open_numbers: Mapping[str, frozenset[int]], specs: Iterable[EnvironmentSpec]
) -> list[EnvironmentSpec]:
    """The previews of ``project`` whose request is not among the forge's open ones: to be
    looked up one by one (a request missing from a list is not yet a closed one)."""
    out = []
    for spec in previews(specs, project):
        assert spec.preview is not None
        numbers = open_numbers.get(spec.preview.forge)
        if numbers is not None and spec.preview.number not in numbers:
            out.append(spec)
    return out


def marker(project: str) -> str:
    """What finds the platform's comment for ``project`` among a request's comments (a
    repository shared by two projects gets one comment per project)."""
    return f"<!-- odooops-preview:{project} -->"


def comment_body(key: EnvKey | None, phase: str, url: str = "", revision: str = "",
                 detail: str = "") -> str:  # fmt: skip
    """The request's comment for its preview in ``phase`` (``preparing``, ``ready``,
    ``failed``, ``removed``, ``refused``); one comment, updated in place as it moves on."""
    name = f"`{key}`" if key is not None else "no environment"
    at = f" at revision `{revision[:12]}`" if revision else ""
    lines = {
        "preparing": f"**OdooOps preview** {name} is being prepared{at}; this comment is "
        "updated when it answers.",
        "ready": f"**OdooOps preview** {name} is ready{at}: {url or '(no public URL)'}",
        "failed": f"**OdooOps preview** {name} failed{at}: {detail}",
        "removed": f"**OdooOps preview** {name} was removed: {detail}",
        "refused": f"**OdooOps preview**: {detail}",
    }
    text = lines[phase]
    if phase in ("preparing", "failed") and key is not None:
        text += f"\n\nStatus: `odooops status {key}`"
    return text
