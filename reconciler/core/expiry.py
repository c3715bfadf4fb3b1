"""Expiry of file-declared environments: their lifetime, the sweeper's verdict, an extension.

Every non-permanent environment file carries ``expires`` (a UTC time): written at creation,
stamped by the sweeper on a file that has none, pushed back by ``odooops env extend``, and
acted on by the sweeper, which removes the file by a commit once the time is past. The time
lives in the file, not in the daemon, so it is reviewed, diffed and reverted like any other
state, and a restarted daemon reaches the same verdict.

Everything here is pure: a validated state and a clock reading in, a decision out. The
commits are made by the callers (``reconciler.engine.sweeper``, the CLI, the API).

Branch-made environments (``auto_create`` rules) keep their own rule
(``reconciler.core.desired``): they live ``ttl`` past their branch's last commit, and have no
file to carry an expiry.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from reconciler.core import durations
from reconciler.core.config import environment_spec
from reconciler.core.errors import OdooOpsError
from reconciler.core.model import EnvironmentSpec, EnvKey, StateConfig
from reconciler.core.policies import TIER_DEFAULTS, merge

MAX_AHEAD = timedelta(days=90)
"""An extension may not put an expiry further than this from now: a longer-lived environment
should be made permanent on purpose (a tier without ttl), not kept by ever larger extensions."""

WARN_BEFORE = timedelta(hours=24)
"""The ``Expiring`` condition turns true this long before the expiry."""


class NotExpiring(OdooOpsError):
    """An extension of an environment that never expires: protected, of a tier without ttl,
    or made by a branch rule (a push to its branch is what keeps that one)."""

    code = "not_expiring"


class TtlTooLong(OdooOpsError):
    """An extension past ``MAX_AHEAD`` from now."""

    code = "ttl_too_long"


def lifetime(spec: EnvironmentSpec, config: StateConfig) -> timedelta | None:
    """How long a new (or not yet stamped) environment file lives; None: it is permanent.

    A protected environment is always permanent. A preview lives as the ``previews`` policy
    says. Any other lives its tier's ``ttl``: the built-in default < the platform's ``tiers``
    of odooops.yaml < the environment's own ``overrides``. The app's ``.odooops.yaml`` is not
    a layer here: it is not known when the file is written (the writer reads no app
    repository, and the branch may not even exist yet), and an application's developers do
    not decide how long the platform keeps their environments.
    """
    if spec.protected:
        return None
    if spec.preview is not None and config.policies.previews is not None:
        return config.policies.previews.ttl
    raw: dict[str, Any] = dict(TIER_DEFAULTS[spec.tier])
    for layer in (config.platform.tier_overrides.get(spec.tier.value, {}), spec.overrides):
        raw = merge(raw, layer)
    ttl = raw.get("ttl")
    return None if ttl is None else durations.parse_duration(str(ttl))


def at_creation(spec: EnvironmentSpec, config: StateConfig, now: datetime) -> datetime | None:
    """The ``expires`` a new environment file is written with (``now`` + its lifetime)."""
    ttl = lifetime(spec, config)
    return None if ttl is None else whole_seconds(now + ttl)


def for_new_file(
    key: EnvKey, doc: Mapping[str, Any], config: StateConfig, now: datetime
) -> datetime | None:
    """The ``expires`` of the file ``doc`` about to be created for ``key`` in ``config``.

    None when it is permanent, and when ``doc`` cannot be read as a declaration (an unknown
    tier, a malformed ttl): validation then refuses the write with its own words."""
    try:
        spec = environment_spec(key, doc, config.policies)
        return at_creation(spec, config, now)
    except (KeyError, TypeError, ValueError):
        return None


@dataclass(frozen=True)
class Sweep:
    """What the sweeper does to the state at ``now``: the files it removes (with the expiry
    each passed) and the files without ``expires`` it stamps (with the expiry each gets).

    An environment is never in both: a stamp lies in the future, and a file is removed only
    when it already carried an expiry, so nothing is deleted on the pass that stamps it.
    """

    remove: Mapping[EnvKey, datetime]
    stamp: Mapping[EnvKey, datetime]

    def __bool__(self) -> bool:
        return bool(self.remove or self.stamp)


def sweep(config: StateConfig, now: datetime) -> Sweep:
    """The sweeper's verdict on every file-declared, non-protected environment."""
    remove: dict[EnvKey, datetime] = {}
    stamp: dict[EnvKey, datetime] = {}
    for spec in config.environments:
        if spec.origin != "file" or spec.protected:
            continue
        if spec.expires is not None:
            if spec.expires <= now:
                remove[spec.key] = spec.expires
        elif (expires := at_creation(spec, config, now)) is not None:
            stamp[spec.key] = expires
    return Sweep(dict(sorted(remove.items())), dict(sorted(stamp.items())))


def parse_extension(text: str) -> timedelta:
    """An extension (``"3d"``); ``ValueError`` in the words of every duration of the format."""
    return durations.parse_duration(text)


def extended(current: datetime | None, by: timedelta, now: datetime, key: EnvKey) -> datetime:
    """``max(current, now) + by``: an extension of an expired (not yet swept) environment
    counts from now, never from the past. Refused past ``MAX_AHEAD`` from now."""
    base = now if current is None or current < now else current
    expires = whole_seconds(base + by)
    if expires - now > MAX_AHEAD:
        room = (now + MAX_AHEAD - base).days
        raise TtlTooLong(
            f"extending {key} by {describe_span(by)} would put its expiry at "
            f"{durations.format_instant(expires)}, more than {MAX_AHEAD.days} days from now "
            "(the furthest an extension may reach)",
            remediation=(
                f"extend by {room} days at most: odooops env extend {key} --ttl {room}d"
                if room >= 1
                else f"nothing to extend yet, it expires in {describe_span(base - now)}"
            )
            + "; to keep an environment for good, give it a tier without ttl",
        )
    return expires


def check_extensible(spec: EnvironmentSpec, config: StateConfig) -> None:
    """Refuse to extend an environment that never expires (it has nothing to push back)."""
    if spec.expires is not None and not spec.protected:
        return
    if spec.protected:
        why = "it is protected"
    elif spec.origin != "file":
        raise branch_made(spec.key)
    elif lifetime(spec, config) is None:
        why = f"its tier ({spec.tier.value}) has no ttl"
    else:
        return
    raise NotExpiring(
        f"{spec.key} does not expire ({why}): there is no expiry to extend",
        remediation="nothing to do: it stays until its file is removed "
        f"(odooops status {spec.key})",
    )


def branch_made(key: EnvKey) -> NotExpiring:
    """The refusal to extend an environment a branch rule makes: it has no file to carry an
    expiry, and lives ``ttl`` past its branch's last commit, so a push is what keeps it."""
    return NotExpiring(
        f"{key} is made by a branch rule (auto_create): it has no expiry to extend, it lives "
        "ttl past its branch's last commit",
        remediation="push a commit to its branch to keep it, or declare it with a file: "
        f"odooops env create {key} --branch BRANCH",
    )


def expiring(name: str, expires: datetime, now: datetime) -> tuple[bool, str, str]:
    """The ``Expiring`` condition of an environment that expires: (status, reason, message),
    true from ``WARN_BEFORE`` ahead, its message naming the command that keeps it."""
    command = f"odooops env extend {name} --ttl 3d"
    if expires <= now:
        return (
            True,
            "Expired",
            f"expired at {durations.format_instant(expires)}: the sweeper removes it on its "
            f"next run; to keep it: {command}",
        )
    if expires - now <= WARN_BEFORE:
        return (
            True,
            "ExpiresSoon",
            f"removed at {durations.format_instant(expires)} ({describe(expires, now)}); to "
            f"keep it: {command}",
        )
    return False, "ExpiresLater", f"removed at {durations.format_instant(expires)}"


def describe(expires: datetime | None, now: datetime) -> str:
    """``expires in 2d 3h``, ``expires in 40m``, ``expired``, or ``-`` for a permanent one."""
    if expires is None:
        return "-"
    if expires <= now:
        return "expired"
    return f"expires in {describe_span(expires - now)}"


def describe_span(span: timedelta) -> str:
    """A span in its two largest units: ``2d 3h``, ``5h 10m``, ``40m``, ``30s``."""
    seconds = int(span.total_seconds())
    days, rest = divmod(seconds, 86400)
    hours, rest = divmod(rest, 3600)
    minutes, secs = divmod(rest, 60)
    parts = [(days, "d"), (hours, "h"), (minutes, "m"), (secs, "s")]
    while parts and parts[0][0] == 0:
        parts.pop(0)
    shown = [f"{n}{unit}" for n, unit in parts[:2] if n]
    return " ".join(shown) or "0s"


def whole_seconds(at: datetime) -> datetime:
    """The state format writes expiries to the second: compare what will be read back."""
    return at.replace(microsecond=0)
