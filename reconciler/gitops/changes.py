"""Writes to the state repository: a user's intent turned into file changes, then validated.

Every write (CLI ``--state-repo`` mode today, the REST API next) is an ``Operation`` applied
to the files of the branch head. ``apply`` is pure and re-run on the new head when a
concurrent writer got there first (``GitSource.commit_with``), so two patches to one file both
survive; ``validated`` judges the whole resulting state with the daemon's own validator, so a
write that would make the state invalid is refused and nothing is committed.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

import yaml

from reconciler.core import durations, expiry
from reconciler.core.config import LoadedState, load_state
from reconciler.core.errors import InvalidState, OdooOpsError
from reconciler.core.model import EnvironmentSpec, EnvKey, Project, StateConfig
from reconciler.core.policies import check_dev_quota, env_name_for_branch
from reconciler.core.secretrefs import SecretPolicy
from reconciler.core.validation import applied

VERBS = (
    "create",
    "update",
    "destroy",
    "suspend",
    "resume",
    "deploy",
    "extend",
    "promote",
    "migrate",
    "rollback",
)
_MESSAGE = {
    "create": "feat(env): create {key}",
    "update": "chore(env): update {key}",
    "destroy": "feat(env): destroy {key}",
    "suspend": "chore(env): suspend {key}",
    "resume": "chore(env): resume {key}",
    "deploy": "feat(deploy): deploy {what} to {key}",
    "extend": "chore(ttl): extend {key} by {by}",
    "promote": "feat(promote): promote {what} to {key}",
    "migrate": "feat(migrate): approve the module update of {what} on {key}",
    "rollback": "revert(deploy): roll back {key} to {what}",
}


class UnknownEnvironment(OdooOpsError):
    code = "unknown_environment"


class EnvironmentExists(OdooOpsError):
    code = "environment_exists"


class InvalidName(OdooOpsError):
    """A name that cannot be an environment's (it would reach a path, a container name)."""

    code = "invalid_name"


@dataclass(frozen=True)
class Operation:
    """One environment write. ``fields`` are the file's keys for create, update and deploy;
    for ``extend`` they are ``by`` (a duration) and ``now`` (the caller's clock, an instant),
    so the new expiry is computed from the file at the head the commit lands on: an extension
    that races another one adds to it instead of overwriting it."""

    verb: str
    key: EnvKey
    fields: Mapping[str, Any] = field(default_factory=dict)
    title: str = ""  # the commit's title, when the verb's own would say too little
    # (name, value) lines git log keeps: a promotion's source, a rollback's from and to
    trailers: tuple[tuple[str, str], ...] = ()
    # A create counted against its owner's quotas.dev_environments_per_user (``check``), on
    # the very head the commit lands on, so two writes at once cannot both take the last one.
    quota: bool = False

    def __post_init__(self) -> None:
        if self.verb not in VERBS:
            raise ValueError(f"unknown operation {self.verb!r}; one of {', '.join(VERBS)}")

    @property
    def target(self) -> str:
        return str(self.key)

    def apply(self, files: Mapping[str, bytes]) -> dict[str, bytes | None]:
        return apply(self, files)

    def message(self, request_id: str, via: str) -> str:
        return message(self, request_id, via)

    def check(self, before: StateConfig, after: StateConfig) -> None:
        """Refuse the write if it takes its owner over their quota (``quota_exceeded``)."""
        if not (self.quota and self.verb == "create"):
            return
        spec = next(s for s in after.environments if s.key == self.key)
        if spec.owner is not None and spec.preview is None:
            per_user = after.platform.quotas.dev_environments_per_user
            check_dev_quota(before.environments, spec.owner, spec.tier, per_user)


@dataclass(frozen=True)
class FileOperation:
    """Replace one platform file whole: ``policies.yaml`` or ``projects/<name>.yaml``."""

    path: str
    doc: Mapping[str, Any]
    title: str

    @property
    def target(self) -> str:
        return self.path

    def apply(self, files: Mapping[str, bytes]) -> dict[str, bytes | None]:
        return {self.path: _dump(self.doc)}

    def message(self, request_id: str, via: str) -> str:
        return f"{self.title}\n\nRequest-Id: {request_id}\nOdooOps-Via: {via}\n"


class PreviewGone(OdooOpsError):
    """The preview a write was for is not (or no longer) what the file at its name says."""

    code = "preview_gone"


@dataclass(frozen=True)
class PreviewOperation:
    """Open, extend or close the preview of one pull request (``engine.previews``).

    Applied again on each new head (``commit_with``), so every check is made on the files
    the commit lands on, not on the state the decision was read from: an open finds no
    preview of the request yet and a free name and stays within ``limit``; an extend or a
    close finds at ``key`` the preview of exactly this request, so a hand-made environment
    that took the name meanwhile is never changed or removed."""

    kind: str  # open, extend, close
    key: EnvKey
    forge: str
    number: int
    fields: Mapping[str, Any] = field(default_factory=dict)
    limit: int = 0  # open: previews the project may have at most
    reason: str = ""

    @property
    def target(self) -> str:
        return str(self.key)

    def apply(self, files: Mapping[str, bytes]) -> dict[str, bytes | None]:
        path = env_path(self.key)
        mine = _previews_in(files, self.key.project)
        if self.kind == "open":
            if (self.forge, self.number) in mine.values():
                raise PreviewGone(
                    f"{self.forge}#{self.number} has a preview already",
                    remediation="nothing to do",
                )
            if len(mine) >= self.limit:
                raise PreviewGone(
                    f"{self.key.project} has {len(mine)} previews, the most allowed",
                    remediation="close a request, or raise previews.max_per_project",
                )
            if path in files:
                raise EnvironmentExists(
                    f"environment {self.key} already exists", remediation="nothing to do"
                )
            return {path: _dump(self.fields)}
        if mine.get(path) != (self.forge, self.number):
            raise PreviewGone(
                f"{self.key} is not the preview of {self.forge}#{self.number} any more",
                remediation="nothing to do",
            )
        if self.kind == "close":
            return {path: None}
        doc = yaml.safe_load(files[path]) or {}
        return {path: _dump(_merge_patch(doc, self.fields))}

    def message(self, request_id: str, via: str) -> str:
        verb = {"open": "open", "extend": "extend", "close": "close"}[self.kind]
        title = f"feat(preview): {verb} {self.key} for {self.forge}#{self.number}"
        if self.reason:
            title += f" ({self.reason})"
        return (
            f"{title}\n\nRequest-Id: {request_id}\nOdooOps-Via: {via}\n"
            f"Preview-Of: {self.forge}#{self.number}\n"
        )


def _previews_in(files: Mapping[str, bytes], project: str) -> dict[str, tuple[str, int]]:
    """The previews of ``project`` among ``files``: path -> (forge, number). A file that is
    not YAML, or has no well-formed ``preview`` block, is no preview."""
    out: dict[str, tuple[str, int]] = {}
    prefix = f"environments/{project}/"
    for path, content in files.items():
        if not (path.startswith(prefix) and path.endswith(".yaml") and b"preview" in content):
            continue
        try:
            doc = yaml.safe_load(content)
        except yaml.YAMLError:
            continue
        block = doc.get("preview") if isinstance(doc, dict) else None
        if isinstance(block, dict) and isinstance(block.get("number"), int):
            out[path] = (str(block.get("forge", "")), block["number"])
    return out


Write = Operation | FileOperation | PreviewOperation
"""Every kind of write the state writer commits."""


def touched_protected(before: StateConfig, after: StateConfig) -> list[EnvKey]:
    """Protected environments (before or after) whose declaration or project changes.

    One rule for every write: an environment edit, a project edit that changes what
    production runs, or a policy edit that unprotects production all need a change request.
    A platform edit (``odooops.yaml``) touches every protected environment.
    """

    # Only environments protected on one side can count: those are few, the others many.
    b = {s.key: s for s in before.environments if s.protected}
    a = {s.key: s for s in after.environments if s.protected}
    platform_changed = before.platform != after.platform
    out = []
    for key in sorted(set(a) | set(b)):
        sides = [_side(config, key, known) for config, known in ((before, b), (after, a))]
        if platform_changed or sides[0] != sides[1]:
            out.append(key)
    return out


def _side(
    config: StateConfig, key: EnvKey, protected: Mapping[EnvKey, EnvironmentSpec]
) -> tuple[EnvironmentSpec | None, Project | None]:
    """An environment's declaration and its project's, as one side of a write sees them."""
    spec = protected.get(key) or next((s for s in config.environments if s.key == key), None)
    return spec, config.projects.get(key.project) if spec is not None else None


def env_path(key: EnvKey) -> str:
    return f"environments/{key.project}/{key.env}.yaml"


def env_of_path(path: str) -> EnvKey | None:
    """The environment whose file ``path`` is (``environments/P/E.yaml``), else None."""
    parts = path.split("/")
    if len(parts) == 3 and parts[0] == "environments" and parts[2].endswith(".yaml"):
        env = parts[2].removesuffix(".yaml")
        if parts[1] and env:
            return EnvKey(parts[1], env)
    return None


# The name rule of schemas/common.schema.json: what a project or environment name may be.
_NAME = re.compile(r"[a-z]([a-z0-9-]{0,30}[a-z0-9])?")


def resolve_name(
    name: str,
    projects: Iterable[str],
    environments: Iterable[EnvKey] = (),
    *,
    project: str | None = None,
) -> EnvKey:
    """The one reading of an environment name, for every command and the API.

    ``acme/qa`` is always that. A bare ``qa`` (or a branch such as ``feature/crm-reports``)
    belongs to ``project`` when the context gives one (``--to`` of a copy: the source's
    project), else to the only project, else to the only project that has an environment of
    that name among ``environments``; otherwise it is ambiguous and the error lists the full
    names to choose from. A malformed name is refused, never rewritten into another one.
    """
    known = sorted(set(projects))
    head, sep, tail = name.partition("/")
    if sep and head in known:
        key = EnvKey(head, tail)
    else:
        env = env_name_for_branch(name) if sep else name
        if project is not None:
            owners = [project]
        elif len(known) == 1:
            owners = known
        else:
            owners = sorted({k.project for k in environments if k.env == env})
        if len(owners) != 1:
            choices = [f"{p}/{env}" for p in owners or known]
            raise UnknownEnvironment(
                f"{name!r} names "
                + ("several environments" if owners else "no known environment")
                + f": give it as PROJECT/ENV ({', '.join(choices) or 'no project is declared'})",
                remediation="odooops env list",
            )
        key = EnvKey(owners[0], env)
    if not (_NAME.fullmatch(key.project) and _NAME.fullmatch(key.env)):
        raise InvalidName(
            f"{name!r} is not an environment name: PROJECT/ENV, each of lowercase letters, "
            "digits and hyphens, starting with a letter (at most 32 characters)",
            remediation="odooops env list",
        )
    return key


def default_branch(name: str, projects: Iterable[str]) -> str:
    """The branch an ``env create NAME`` without one tracks: the name as given, without its
    ``PROJECT/`` (``acme/qa`` tracks ``qa``; ``feature/crm-reports`` tracks itself)."""
    head, sep, tail = name.partition("/")
    return tail if sep and head in set(projects) else name


def apply(op: Operation, files: Mapping[str, bytes]) -> dict[str, bytes | None]:
    """The file changes for ``op`` against the current files (pure)."""
    path = env_path(op.key)
    current = files.get(path)
    if op.verb == "create":
        if current is not None:
            raise EnvironmentExists(
                f"environment {op.key} already exists",
                remediation=f"choose another name, or point this one elsewhere: odooops deploy "
                f"{op.key} --branch BRANCH",
            )
        return {path: _dump({k: v for k, v in op.fields.items() if v is not None})}
    if current is None:
        raise UnknownEnvironment(
            f"environment {op.key} is not declared in the state repository",
            remediation="odooops env list --state-repo URL",
        )
    if op.verb == "destroy":
        return {path: None}
    doc = yaml.safe_load(current) or {}
    if op.verb == "extend":
        doc["expires"] = durations.format_instant(_extended(op, doc))
    elif op.verb in ("suspend", "resume"):
        doc["suspended"] = op.verb == "suspend"
    else:  # update, deploy, promote, migrate, rollback: a merge patch; None removes a key
        doc = _merge_patch(doc, op.fields)
    return {path: _dump(doc)}


def _extended(op: Operation, doc: Mapping[str, Any]) -> Any:
    """The expiry ``op`` (an extension) gives the file ``doc``: counted from its current
    ``expires``, or from now when it has none yet (not stamped) or it is past."""
    try:
        current = durations.parse_instant(doc["expires"]) if "expires" in doc else None
    except ValueError:
        current = None  # an expiry validation would refuse: the new one replaces it
    now = durations.parse_instant(op.fields["now"])
    return expiry.extended(current, durations.parse_duration(op.fields["by"]), now, op.key)


def message(op: Operation, request_id: str, via: str) -> str:
    """A conventional-commit message carrying the request id, so git log is the audit trail."""
    what = (
        op.fields.get("revision")
        or op.fields.get("migrate")
        or op.fields.get("branch")
        or "the branch head"
    )
    if op.verb == "rollback":
        what = str(what)[:12]
    title = op.title or _MESSAGE[op.verb].format(key=op.key, what=what, by=op.fields.get("by", ""))
    trailers = "".join(f"{name}: {value}\n" for name, value in op.trailers)
    return f"{title}\n\n{trailers}Request-Id: {request_id}\nOdooOps-Via: {via}\n"


def validated(
    files: Mapping[str, bytes],
    changes: Mapping[str, bytes | None],
    label: str,
    secrets: SecretPolicy | None = None,
) -> StateConfig:
    """The state after ``changes``, validated as a whole (with the daemon's allowlist of
    secret references, ``secrets``); ``InvalidState`` if it would break."""
    try:
        return load_state(applied(files, changes), "pending", label, secrets)
    except InvalidState as exc:
        raise _refused(exc) from exc


def validated_after(
    loaded: LoadedState, changes: Mapping[str, bytes | None], commit: str = "pending"
) -> LoadedState:
    """Like ``validated``, from the validated state ``loaded`` the changes apply to: only the
    files they touch and the checks those feed are run again (``StateIndex.update``)."""
    try:
        return loaded.update(changes, commit)
    except InvalidState as exc:
        raise _refused(exc) from exc


def _refused(exc: InvalidState) -> InvalidState:
    return InvalidState(
        f"refused: the change would make the state invalid: {exc.message}",
        remediation="fix the request; nothing was committed",
        problems=exc.problems,
    )


def _merge_patch(doc: dict[str, Any], patch: Mapping[str, Any]) -> dict[str, Any]:
    out = dict(doc)
    for k, v in patch.items():
        if v is None:
            out.pop(k, None)
        elif isinstance(v, Mapping) and isinstance(out.get(k), dict):
            out[k] = _merge_patch(out[k], v)
        else:
            out[k] = v
    return out


def _dump(doc: Mapping[str, Any]) -> bytes:
    return yaml.safe_dump(dict(doc), sort_keys=False, default_flow_style=False).encode()
