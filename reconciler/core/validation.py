"""Validation of the state repository and of application ``.odooops.yaml`` files.

A commit of the state repository is accepted or rejected as a whole, so validation never stops at
the first finding: it collects every ``Problem`` (YAML, schema, values, cross-file references)
and raises one ``InvalidState`` carrying all of them, each pinned to ``file:line:column`` and
ending in the command that re-checks the fix.

Why YAML is not loaded with ``yaml.safe_load``: PyYAML silently keeps the last of two duplicate
keys and forgets where values came from. We compose the node tree instead (no object is
constructed from a tag) and build plain JSON values ourselves, recording the position of every
key and value; aliases, merge keys, non-text keys and custom tags are refused as problems.

Order of checks, per file: YAML, then the JSON Schema, then the value parsers of
``durations`` on whatever the schema accepted (a value the schema already rejected is not
reported twice), then single-file rules (port range, branch rules), then the daemon's
allowlist of secret references (``core.secretrefs``, an input like the files); across files
last.

Everything here is pure: callers read the files (a git tree at one commit) and pass their bytes.
The only input read from disk is the set of JSON Schemas in ``schemas/``, once per process.
"""

from __future__ import annotations

import difflib
import functools
import ipaddress
import json
import re
import unicodedata
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path, PurePosixPath
from typing import Any

import yaml
from jsonschema import Draft202012Validator, FormatChecker, validators
from jsonschema.exceptions import ValidationError, relevance
from referencing import Registry, Resource
from referencing.jsonschema import DRAFT202012
from yaml.constructor import SafeConstructor
from yaml.error import Mark
from yaml.nodes import MappingNode, Node, ScalarNode, SequenceNode

from reconciler.core.durations import (
    parse_cpu,
    parse_duration,
    parse_instant,
    parse_schedule,
    parse_size,
)
from reconciler.core.errors import InvalidState, Location, Problem, sanitize
from reconciler.core.globs import matches, shadows
from reconciler.core.ingress import (
    EnvironmentRoute,
    host_conflict,
    platform_domain_problem,
    route_hosts,
)
from reconciler.core.model import INTERNAL_CA, EnvKey, SecretRef, Tier
from reconciler.core.policies import MemoryTooSmall, resolve_settings
from reconciler.core.secretrefs import SecretPolicy, refusal

__all__ = [
    "SCHEMA_DIR",
    "SCHEMA_NAMES",
    "SECRET_REF_PATHS",
    "TIERS",
    "Document",
    "JsonPath",
    "PathSlot",
    "StateIndex",
    "ValidatedState",
    "applied",
    "is_branch_name",
    "load_yaml",
    "path_slot",
    "tier_by_rule",
    "validate_app_config",
    "validate_document",
    "validate_state",
]

# ``reconciler/schemas`` links to the repository's top-level ``schemas/`` (one copy, in the
# place users look); building a wheel follows the link, so installed packages carry the files.
SCHEMA_DIR = Path(__file__).resolve().parents[1] / "schemas"
SCHEMA_BASE_URI = "https://odooops.dev/schemas/"
SCHEMA_NAMES = ("odooops", "policies", "project", "environment", "app", "masking", "lock")
LOCK_SUFFIX = ".lock.yaml"  # projects/<project>.lock.yaml: the platform's pins
TIERS = ("production", "staging", "dev", "ephemeral")

PLATFORM_FILE = "odooops.yaml"
POLICIES_FILE = "policies.yaml"
MASKING_FILE = "masking.yaml"
PROJECTS_DIR = "projects"
ENVIRONMENTS_DIR = "environments"

_NAME_RULE = (
    "lowercase letters, digits and hyphens, starting with a letter, not ending with a hyphen, "
    "at most 32 characters"
)
_MIN_MEMORY = 64 * 2**20
_SECRET_KEY = re.compile(r"(?i)password|passwd|secret|token|ssh_key|private_key")

JsonPath = tuple[str | int, ...]
"""A path into a document's data: mapping keys and sequence indexes, from the root."""

Position = tuple[int, int]
"""A 1-based (line, column) in a YAML file."""


def _dotted(path: Iterable[str | int]) -> str:
    """``("branches", 2, "match")`` -> ``branches[2].match``."""
    text = ""
    for part in path:
        text += f"[{part}]" if isinstance(part, int) else (f".{part}" if text else part)
    return text


@dataclass(frozen=True)
class Document:
    """A parsed YAML file: plain JSON-compatible ``data`` plus where each part was written.

    ``positions`` maps the path of every value to where the value starts; ``key_positions``
    maps the path of every mapping entry to where its key starts (an unknown key is reported
    on the key, a wrong value on the value). ``scalar_texts`` keeps the text of every scalar
    YAML did not read as a string, so messages show ``0123456`` as written, not the octal
    number 42798 YAML made of it.
    """

    path: str
    data: Any
    positions: Mapping[JsonPath, Position]
    key_positions: Mapping[JsonPath, Position] = field(default_factory=dict)
    scalar_texts: Mapping[JsonPath, str] = field(default_factory=dict)

    def location(self, json_path: Sequence[str | int], key: str | None = None) -> Location:
        """Where ``json_path`` (or its entry ``key``) is written, else its nearest known parent.

        A missing key falls back to its parent mapping, on the parent's key when there is one
        (``db:`` rather than the first key under it).
        """
        target: JsonPath = (*json_path, key) if key is not None else tuple(json_path)
        label = _dotted(target) or None
        if target in self.key_positions and key is not None:
            return Location(self.path, *self.key_positions[target], key=label)
        if target in self.positions:
            return Location(self.path, *self.positions[target], key=label)
        probe = target
        while probe:
            probe = probe[:-1]
            for known in (self.key_positions, self.positions):
                if probe in known:
                    return Location(self.path, *known[probe], key=label)
        return Location(self.path, key=label)


@dataclass(frozen=True)
class ValidatedState:
    """Every document of a state repository commit that passed validation."""

    platform: Document
    policies: Document
    projects: Mapping[str, Document]
    """By project name (the file stem)."""
    environments: Mapping[tuple[str, str], Document]
    """By (project name, environment name)."""
    masking: Document | None = None
    """``masking.yaml`` when the repository has one (otherwise the built-in rules apply)."""
    locks: Mapping[str, Document] = field(default_factory=dict)
    """``projects/<project>.lock.yaml`` by project: the platform's pins of its repositories."""


@dataclass(frozen=True)
class _Recheck:
    """What the user does after a fix; ends every remediation."""

    then: str | None

    def fix(self, action: str) -> str:
        return f"{action}, then {self.then}" if self.then else action


def _state_recheck(repo_label: str) -> _Recheck:
    return _Recheck(f"run: odooops validate {repo_label}")


_APP_RECHECK = _Recheck("push the fix to the application repository")


def _problem(code: str, message: str, location: Location, remediation: str) -> Problem:
    return Problem(code, sanitize(message), location, sanitize(remediation))


def _at(location: Location) -> str:
    """``file line N`` for remediations, or just the file when the line is unknown."""
    if location.line is None:
        return location.file
    return f"{location.file} line {location.line}"


# --------------------------------------------------------------------------------------- YAML

_YAML_TAG_PREFIX = "tag:yaml.org,2002:"
_STR = "tag:yaml.org,2002:str"
_INT = "tag:yaml.org,2002:int"
_FLOAT = "tag:yaml.org,2002:float"
_BOOL = "tag:yaml.org,2002:bool"
_NULL = "tag:yaml.org,2002:null"
_TIMESTAMP = "tag:yaml.org,2002:timestamp"
_MAP = "tag:yaml.org,2002:map"
_SEQ = "tag:yaml.org,2002:seq"
_MERGE = "tag:yaml.org,2002:merge"
_ALIAS_PLACEHOLDER = "!odooops/alias"
_SCALAR_KINDS = {_INT: "an integer", _FLOAT: "a number", _BOOL: "true or false", _NULL: "null"}


def _short_tag(tag: str) -> str:
    """``tag:yaml.org,2002:binary`` -> ``!!binary``, as it is written in YAML."""
    return "!!" + tag.removeprefix(_YAML_TAG_PREFIX) if tag.startswith(_YAML_TAG_PREFIX) else tag


def _position(mark: Mark | None) -> Position | None:
    return None if mark is None else (mark.line + 1, mark.column + 1)


class _Composer(yaml.SafeLoader):
    """A ``SafeLoader`` that notes aliases (``*name``) instead of sharing the anchored node.

    Shared nodes would make one value appear at two paths with one position, and unbounded
    alias expansion is a denial of service; the state format is plain data, written out.
    """

    def __init__(self, stream: str) -> None:
        super().__init__(stream)
        self.alias_marks: list[Mark] = []

    def compose_node(self, parent: Node | None, index: int) -> Node | None:
        if self.check_event(yaml.AliasEvent):
            event = self.get_event()  # type: ignore[no-untyped-call]
            self.alias_marks.append(event.start_mark)
            return ScalarNode(_ALIAS_PLACEHOLDER, "", event.start_mark, event.end_mark)
        return super().compose_node(parent, index)


class _Builder:
    """Walks a composed node tree into plain values, positions and problems."""

    def __init__(self, path: str, recheck: _Recheck) -> None:
        self.path = path
        self.recheck = recheck
        self.problems: list[Problem] = []
        self.positions: dict[JsonPath, Position] = {}
        self.key_positions: dict[JsonPath, Position] = {}
        self.scalar_texts: dict[JsonPath, str] = {}
        self._scalars = SafeConstructor()

    def _unsupported(self, node: Node, json_path: JsonPath, message: str, action: str) -> None:
        line, column = _position(node.start_mark) or (None, None)
        location = Location(self.path, line, column, _dotted(json_path) or None)
        self.problems.append(
            _problem("yaml_unsupported", message, location, self.recheck.fix(action))
        )

    def value(self, node: Node, json_path: JsonPath) -> Any:
        position = _position(node.start_mark)
        if position is not None:
            self.positions[json_path] = position
        if isinstance(node, MappingNode):
            if node.tag != _MAP:
                self._bad_tag(node, json_path)
                return None
            return self.mapping(node, json_path)
        if isinstance(node, SequenceNode):
            if node.tag != _SEQ:
                self._bad_tag(node, json_path)
                return None
            return [self.value(item, (*json_path, i)) for i, item in enumerate(node.value)]
        return self.scalar(node, json_path)

    def _bad_tag(self, node: Node, json_path: JsonPath) -> None:
        tag = _short_tag(node.tag)
        self._unsupported(
            node,
            json_path,
            f"the YAML tag {tag} is not supported: the state format is plain data",
            f"remove the tag {tag} at {self.path} line {node.start_mark.line + 1}"
            if node.start_mark
            else f"remove the tag {tag} from {self.path}",
        )

    def scalar(self, node: Node, json_path: JsonPath) -> Any:
        tag = node.tag
        if tag == _ALIAS_PLACEHOLDER:
            return None
        if tag in (_STR, _TIMESTAMP):
            # A date stays the text it was written as: no value of the format is a date.
            return str(node.value)
        self.scalar_texts[json_path] = str(node.value)
        try:
            if tag == _INT:
                return self._scalars.construct_yaml_int(node)  # type: ignore[arg-type]
            if tag == _FLOAT:
                return self._scalars.construct_yaml_float(node)  # type: ignore[arg-type]
            if tag == _BOOL:
                return self._scalars.construct_yaml_bool(node)  # type: ignore[arg-type]
        except (ValueError, yaml.YAMLError):
            self._unsupported(
                node,
                json_path,
                f"{node.value!r} is not a valid {_short_tag(tag)}",
                "write the value without a tag",
            )
            return None
        if tag == _NULL:
            return None
        self._bad_tag(node, json_path)
        return None

    def mapping(self, node: MappingNode, json_path: JsonPath) -> dict[str, Any]:
        result: dict[str, Any] = {}
        first_lines: dict[str, int] = {}
        for key_node, value_node in node.value:
            if key_node.tag == _ALIAS_PLACEHOLDER:
                continue
            if key_node.tag == _MERGE:
                self._unsupported(
                    key_node,
                    json_path,
                    "merge keys (<<) are not supported: the state format is plain data",
                    f"write the merged keys out in {self.path}",
                )
                continue
            if not isinstance(key_node, ScalarNode) or key_node.tag != _STR:
                self._bad_key(key_node, json_path)
                continue
            key = str(key_node.value)
            key_position = _position(key_node.start_mark) or (0, 0)
            if key in result or key in first_lines:
                location = Location(self.path, *key_position, key=_dotted((*json_path, key)))
                self.problems.append(
                    _problem(
                        "duplicate_key",
                        f"key `{key}` appears twice in {_dotted(json_path) or 'the file'} "
                        f"(first on line {first_lines[key]}); YAML would silently keep the last",
                        location,
                        self.recheck.fix(
                            f"keep one `{key}` in {self.path} (lines {first_lines[key]} and "
                            f"{key_position[0]})"
                        ),
                    )
                )
                continue
            first_lines[key] = key_position[0]
            self.key_positions[(*json_path, key)] = key_position
            result[key] = self.value(value_node, (*json_path, key))
        return result

    def _bad_key(self, key_node: Node, json_path: JsonPath) -> None:
        if isinstance(key_node, ScalarNode):
            kind = _SCALAR_KINDS.get(key_node.tag, f"tagged {_short_tag(key_node.tag)}")
            self._unsupported(
                key_node,
                json_path,
                f"key `{key_node.value}` is read by YAML as {kind}, not as text",
                f'quote the key in {self.path}: "{key_node.value}":',
            )
        else:
            self._unsupported(
                key_node,
                json_path,
                "a key must be text, not a mapping or a list",
                f"write the key as plain text in {self.path}",
            )


def _syntax_problem(exc: yaml.MarkedYAMLError, path: str, recheck: _Recheck) -> Problem:
    """Pin a parser error on the mark where parsing failed, naming where the construct began."""
    mark = exc.problem_mark or exc.context_mark
    line, column = _position(mark) or (None, None)
    what = exc.problem or exc.context or "unreadable YAML"
    context_line = exc.context_mark.line + 1 if exc.context_mark else None
    if exc.context and exc.problem:
        what += f" ({exc.context}" + (
            f" started on line {context_line})" if context_line and context_line != line else ")"
        )
    location = Location(path, line, column)
    action = f"fix the YAML syntax at {_at(location)}" + (f", column {column}" if column else "")
    return _problem("yaml_syntax", f"invalid YAML: {what}", location, recheck.fix(action))


def _load(text: str, path: str, recheck: _Recheck) -> tuple[Document | None, list[Problem]]:
    """Parse ``text``; the document is ``None`` when the YAML cannot be read at all."""
    loader: _Composer | None = None
    try:
        loader = _Composer(text)
        root = loader.get_single_node()
    except yaml.MarkedYAMLError as exc:
        return None, [_syntax_problem(exc, path, recheck)]
    except yaml.YAMLError as exc:
        location = Location(path)
        position = getattr(exc, "position", None)
        if isinstance(position, int):
            location = Location(path, text.count("\n", 0, position) + 1)
        character, reason = getattr(exc, "character", None), getattr(exc, "reason", None)
        what = f"character #x{character:04x}: {reason}" if isinstance(character, int) else exc
        return None, [
            _problem(
                "yaml_syntax",
                f"invalid YAML: unacceptable {what}",
                location,
                recheck.fix(f"remove the character at {_at(location)}"),
            )
        ]
    finally:
        if loader is not None:
            loader.dispose()
    builder = _Builder(path, recheck)
    for mark in loader.alias_marks:
        line, column = _position(mark) or (None, None)
        builder.problems.append(
            _problem(
                "yaml_unsupported",
                "YAML aliases (*name) are not supported: the state format is plain data",
                Location(path, line, column),
                recheck.fix(f"write the value out in full at {path} line {line}"),
            )
        )
    if root is None or (isinstance(root, ScalarNode) and root.tag == _NULL and not root.value):
        # Nothing but comments or a bare ``---``: an empty mapping, so missing keys are named.
        return Document(path, {}, {(): (1, 1)}, {}), builder.problems
    data = builder.value(root, ())
    document = Document(path, data, builder.positions, builder.key_positions, builder.scalar_texts)
    return document, builder.problems


def load_yaml(text: str, path: str) -> Document:
    """Parse one YAML file into a ``Document`` (an empty file is an empty mapping).

    Raises ``InvalidState`` with every problem found: ``yaml_syntax`` (with the line and column
    of the parser), ``duplicate_key``, ``yaml_unsupported`` (aliases, merge keys, tags,
    keys that are not text).
    """
    document, problems = _load(text, path, _Recheck(None))
    if problems or document is None:
        raise InvalidState(
            f"{path} cannot be read as plain YAML data: {_count(len(problems), 'problem')}",
            remediation=f"fix {path} as listed",
            problems=tuple(_sorted(problems)),
        )
    return document


def _decode(content: bytes, path: str, recheck: _Recheck) -> tuple[str | None, list[Problem]]:
    try:
        return content.decode("utf-8-sig"), []
    except UnicodeDecodeError as exc:
        location = Location(path, content.count(b"\n", 0, exc.start) + 1)
        return None, [
            _problem(
                "yaml_syntax",
                f"the file is not UTF-8 text (byte {exc.start + 1})",
                location,
                recheck.fix(f"save {path} as UTF-8"),
            )
        ]


# ------------------------------------------------------------------------------------ schemas


def _is_hostname(value: object) -> bool:
    if not isinstance(value, str):
        return True
    labels = value.split(".")
    return len(value) <= 253 and all(
        re.fullmatch(r"[A-Za-z0-9]([A-Za-z0-9-]{0,61}[A-Za-z0-9])?", label) for label in labels
    )


def _is_host(value: object) -> bool:
    if not isinstance(value, str):
        return True
    try:
        ipaddress.ip_address(value)
    except ValueError:
        return _is_hostname(value)
    return True


def _is_instant(value: object) -> bool:
    if isinstance(value, str):
        parse_instant(value)  # its ValueError says what is accepted
    return True


def _format_checker() -> Any:
    """Our own formats, so results never depend on optional packages of ``jsonschema``."""
    checker = FormatChecker(formats=())
    checker.checks("hostname")(_is_hostname)
    checker.checks("host")(_is_host)
    checker.checks("date-time", raises=ValueError)(_is_instant)
    return checker


@functools.cache
def _registry() -> Registry[Any]:
    resources: list[tuple[str, Resource[Any]]] = []
    for file in sorted(SCHEMA_DIR.glob("*.schema.json")):
        contents = json.loads(file.read_text(encoding="utf-8"))
        resources.append(
            (contents["$id"], Resource.from_contents(contents, default_specification=DRAFT202012))
        )
    registry: Registry[Any] = Registry()
    return registry.with_resources(resources)


@functools.cache
def _name_pattern() -> re.Pattern[str]:
    """The name rule of ``common.schema.json``, so file stems and keys obey one definition."""
    common = _registry().contents(f"{SCHEMA_BASE_URI}common.schema.json")
    return re.compile(common["$defs"]["name"]["pattern"])


def _is_name(text: str) -> bool:
    return "\n" not in text and _name_pattern().search(text) is not None


def _schema_name(schema: str) -> str:
    name = schema.removesuffix(".schema.json")
    if name not in SCHEMA_NAMES:
        raise ValueError(f"unknown schema {schema!r}; expected one of {', '.join(SCHEMA_NAMES)}")
    return name


@functools.cache
def _end_anchored(pattern: str) -> re.Pattern[str]:
    """``pattern`` with JSON Schema's (ECMA-262) meaning of ``$``: the end of the text.

    Python's ``$`` also matches before a final newline, so ``^\\S+$`` took ``"main\\n"`` and
    ``branch: "main\\n"`` reached the state repository. Our schemas never put ``$`` in a
    character class, so every unescaped ``$`` is an anchor.
    """
    return re.compile(re.sub(r"(?<!\\)\$", r"\\Z", pattern))


def _pattern(validator: Any, pattern: str, instance: Any, schema: Any) -> Iterator[ValidationError]:
    if validator.is_type(instance, "string") and not _end_anchored(pattern).search(instance):
        yield ValidationError(f"{instance!r} does not match {pattern!r}")


_StateValidator = validators.extend(Draft202012Validator, {"pattern": _pattern})


@functools.cache
def _validator(name: str) -> Any:
    registry = _registry()
    schema = registry.contents(f"{SCHEMA_BASE_URI}{name}.schema.json")
    return _StateValidator(schema, registry=registry, format_checker=_format_checker())


# Control (Cc), format (Cf: bidirectional overrides, zero-width characters), surrogate,
# private-use and unassigned characters, and separators (spaces of every width, line and
# paragraph separators): each makes a name print as another, or not print at all.
_HOSTILE_CATEGORIES = frozenset({"Cc", "Cf", "Cs", "Co", "Cn", "Zs", "Zl", "Zp"})


def _hostile_character(text: str) -> str | None:
    """The first character of ``text`` that no name should hold, as ``U+XXXX``."""
    for char in text:
        if unicodedata.category(char) in _HOSTILE_CATEGORIES:
            return f"U+{ord(char):04X}"
    return None


def is_branch_name(text: str) -> bool:
    """Whether the state accepts ``text`` as an environment's branch.

    The rule of ``environment.schema.json`` (what ``git check-ref-format --branch`` accepts,
    less names that start with ``refs/`` and the invisible characters a pattern can list)
    and, beyond what a pattern can say, no control, format or separator character at all.
    The API checks a write with it before anything is committed.
    """
    return _validator("environment").is_valid({"branch": text}) and not _hostile_character(text)


_TYPE_WORDS = {
    "integer": "an integer",
    "number": "a number",
    "string": "a string",
    "boolean": "true or false",
    "object": "a mapping",
    "array": "a list",
    "null": "null",
}


def _literal(value: Any) -> str:
    """JSON text, with every character that would not print escaped: a message quoting a
    hostile value must not carry its control or bidirectional characters to a terminal."""
    text = json.dumps(value, ensure_ascii=False)
    return "".join(c if c.isprintable() else f"\\u{ord(c):04x}" for c in text)


def _words(items: Sequence[str], last: str = "or") -> str:
    if len(items) <= 1:
        return "".join(items)
    return f"{', '.join(items[:-1])} {last} {items[-1]}"


def _expected(schema: Mapping[str, Any]) -> str:
    """What a (sub)schema accepts, in words: its ``title``, else derived from its keywords."""
    title = schema.get("title")
    if isinstance(title, str):
        return title
    if "const" in schema:
        return _literal(schema["const"])
    if "enum" in schema:
        values = list(schema["enum"])
        if len(values) == 1:
            return _literal(values[0])
        return "one of " + _words([v if isinstance(v, str) else _literal(v) for v in values])
    types = schema.get("type", [])
    types = [types] if isinstance(types, str) else list(types)
    phrase = " or ".join(_TYPE_WORDS.get(t, t) for t in types) or "a valid value"
    low, high = schema.get("minimum"), schema.get("maximum")
    if low is not None and high is not None:
        phrase += f" from {low} to {high}"
    elif low is not None:
        phrase += f" of at least {low}"
    elif high is not None:
        phrase += f" of at most {high}"
    if schema.get("exclusiveMinimum") is not None:
        phrase += f" greater than {schema['exclusiveMinimum']}"
    return phrase


def _kind(value: Any) -> str:
    if isinstance(value, bool):
        return "true or false"
    if value is None:
        return "null"
    if isinstance(value, str):
        return "a string"
    if isinstance(value, int | float):
        return "a number"
    if isinstance(value, Mapping):
        return "a mapping"
    return "a list"


def _shown(value: Any, secret: bool, written: str | None = None) -> str:
    """A value as it may appear in a message: secrets show only their kind, a scalar YAML did
    not read as a string shows as ``written``."""
    if secret or isinstance(value, Mapping | list):
        return _kind(value)
    if written is not None and not isinstance(value, str):
        return written
    if isinstance(value, bool):
        return "true" if value else "false"
    if value is None:
        return "null"
    if isinstance(value, str):
        text = value if len(value) <= 60 else value[:57] + "..."
        return _literal(text)
    return repr(value)


def _as_text(
    keyword: str, schema: Mapping[str, Any], value: Any, written: str | None
) -> str | None:
    """The text to quote when YAML read a scalar as a number, boolean or null we wanted as text.

    ``version: 19.0`` is a float to YAML and must be ``"19.0"``; ``None`` when quoting would not
    help (the value is wrong either way).
    """
    if value is None or isinstance(value, str):
        return None
    text = written if written is not None else _shown(value, False)
    if keyword in ("enum", "const"):
        candidates = schema["enum"] if keyword == "enum" else [schema["const"]]
        return text if text in candidates else None
    types = schema.get("type", [])
    accepts_string = "string" in ([types] if isinstance(types, str) else types)
    return text if keyword == "type" and accepts_string else None


def _leaf(path: JsonPath) -> str:
    for part in reversed(path):
        if isinstance(part, str):
            return part
    return ""


def _from_error(doc: Document, error: ValidationError, recheck: _Recheck) -> list[Problem]:
    """Turn one ``jsonschema`` error into problems (one per offending key or value)."""
    if error.validator in ("anyOf", "oneOf") and error.context:
        return _from_error(doc, max(error.context, key=relevance), recheck)
    path: JsonPath = tuple(error.absolute_path)
    schema: Mapping[str, Any] = error.schema if isinstance(error.schema, Mapping) else {}
    if "propertyNames" in error.absolute_schema_path:
        return [_key_name_problem(doc, path, str(error.instance), schema, recheck)]
    if error.validator == "additionalProperties" and isinstance(error.instance, Mapping):
        return _unknown_key_problems(doc, path, error.instance, schema, recheck)
    if error.validator == "required" and isinstance(error.instance, Mapping):
        missing = [key for key in error.validator_value if key not in error.instance]
        return _missing_key_problems(doc, path, missing, schema, recheck)
    if error.validator == "type" or error.validator in _VALUE_KEYWORDS:
        return [_value_problem(doc, path, error, schema, recheck)]
    location = doc.location(path)
    subject = _dotted(path) or "the file"
    return [
        _problem(
            "schema",
            f"{subject}: {error.message}",
            location,
            recheck.fix(f"correct {subject} at {_at(location)}"),
        )
    ]


def _key_name_problem(
    doc: Document, path: JsonPath, key: str, schema: Mapping[str, Any], recheck: _Recheck
) -> Problem:
    location = doc.location(path, key=key)
    return _problem(
        "invalid_name",
        f"{_dotted(path)} key {_literal(key)} must be {_expected(schema)}",
        location,
        recheck.fix(f"rename `{key}` at {_at(location)}"),
    )


def _unknown_key_problems(
    doc: Document,
    path: JsonPath,
    instance: Mapping[str, Any],
    schema: Mapping[str, Any],
    recheck: _Recheck,
) -> list[Problem]:
    allowed = sorted(schema.get("properties", {}))
    where = f" in {_dotted(path)}" if path else ""
    problems = []
    for key in instance:
        if key in allowed:
            continue
        location = doc.location(path, key=key)
        close = difflib.get_close_matches(key, allowed, n=1)
        action = (
            f"rename `{key}` to `{close[0]}` in {_at(location)}"
            if close
            else f"remove `{key}` from {_at(location)}"
        )
        problems.append(
            _problem(
                "unknown_key",
                f"unknown key `{key}`{where}",
                location,
                recheck.fix(f"{action} (allowed keys: {', '.join(allowed)})"),
            )
        )
    return problems


def _missing_key_problems(
    doc: Document,
    path: JsonPath,
    missing: Iterable[str],
    schema: Mapping[str, Any],
    recheck: _Recheck,
) -> list[Problem]:
    properties = schema.get("properties", {})
    where = f" in {_dotted(path)}" if path else ""
    parent = f"under `{_dotted(path)}` in" if path else "at the top level of"
    problems = []
    for key in missing:
        description = properties.get(key, {}).get("description")
        problems.append(
            _problem(
                "missing_key",
                f"missing required key `{key}`{where}"
                + (f": {description}" if description else ""),
                doc.location(path, key=key),
                recheck.fix(f"add `{key}:` {parent} {doc.path}"),
            )
        )
    return problems


def _value_problem(
    doc: Document,
    path: JsonPath,
    error: ValidationError,
    schema: Mapping[str, Any],
    recheck: _Recheck,
) -> Problem:
    """A ``wrong_type`` or ``invalid_value``: what was expected, what was written, how to fix."""
    keyword, instance = str(error.validator), error.instance
    subject = _dotted(path) or "the file"
    secret = bool(schema.get("writeOnly")) or any(
        isinstance(part, str) and _SECRET_KEY.search(part) for part in path
    )
    location = doc.location(path)
    expected = _expected(schema)
    written = doc.scalar_texts.get(path)
    message = f"{subject} must be {expected}, got {_shown(instance, secret, written)}"
    action = f"set {subject} at {_at(location)} to {expected}"
    if not path:
        action = f"write {doc.path} as a mapping of keys to values"
    if keyword == "uniqueItems" and isinstance(instance, list):
        index = next(i for i, item in enumerate(instance) if item in instance[:i])
        location = doc.location((*path, index))
        message = f"{subject} lists {_shown(instance[index], secret)} more than once"
        action = f"remove the repeated item at {_at(location)}"
    elif keyword == "minItems":
        message = f"{subject} must list at least {error.validator_value} item(s)"
        action = f"add items to {subject} at {_at(location)}"
    elif keyword in ("minProperties", "maxProperties") and isinstance(instance, Mapping):
        message = f"{subject} must be {expected}, got a mapping with {len(instance)} key(s)"
    elif keyword == "minLength" and instance == "":
        message = f"{subject} must not be empty"
        action = f"set {subject} at {_at(location)} to a non-empty value"
    if schema.get("writeOnly") and not isinstance(instance, Mapping | list):
        leaf = _leaf(path)
        action = (
            f"move the secret out of git: store it with `odooops secret set NAME` and write "
            f"`{leaf}: {{secret: NAME}}` at {_at(location)}, and rotate the secret if it was pushed"
        )
    elif (text := _as_text(keyword, schema, instance, written)) is not None:
        action = (
            f'quote the value at {_at(location)} so YAML reads it as text: {_leaf(path)}: "{text}"'
        )
    elif keyword == "enum" and isinstance(instance, str):
        close = difflib.get_close_matches(
            instance, [v for v in schema["enum"] if isinstance(v, str)], n=1
        )
        if close:
            action = f"set {subject} at {_at(location)} to {close[0]}"
    code = "wrong_type" if keyword == "type" else "invalid_value"
    return _problem(code, message, location, recheck.fix(action))


_VALUE_KEYWORDS = frozenset(
    {
        "const",
        "enum",
        "pattern",
        "format",
        "minimum",
        "maximum",
        "exclusiveMinimum",
        "exclusiveMaximum",
        "minLength",
        "maxLength",
        "minItems",
        "maxItems",
        "uniqueItems",
        "minProperties",
        "maxProperties",
    }
)


def _sorted(problems: Iterable[Problem]) -> list[Problem]:
    """Deduplicated, by file then line then column (unknown positions first)."""
    unique = dict.fromkeys(problems)
    return sorted(
        unique,
        key=lambda p: (
            p.location.file,
            p.location.line or 0,
            p.location.column or 0,
            p.code,
            p.message,
        ),
    )


def validate_document(doc: Document, schema: str, *, repo_label: str = ".") -> list[Problem]:
    """Every problem of one document: its schema, its values, its single-file rules.

    ``schema`` is one of ``SCHEMA_NAMES`` (``"environment"``) or a schema file name
    (``"environment.schema.json"``). ``repo_label`` is the state repository path named in the
    remediation command (``odooops validate <repo_label>``); app configs ignore it.
    """
    name = _schema_name(schema)
    recheck = _APP_RECHECK if name == "app" else _state_recheck(repo_label)
    return _sorted(_validate(doc, name, recheck))


def _validate(doc: Document, name: str, recheck: _Recheck) -> list[Problem]:
    errors = sorted(_validator(name).iter_errors(doc.data), key=relevance, reverse=True)
    problems = [problem for error in errors for problem in _from_error(doc, error, recheck)]
    flagged = {tuple(error.absolute_path) for error in errors}
    for check in _DOCUMENT_CHECKS.get(name, ()):
        problems.extend(check(doc, flagged, recheck))
    return problems


# ------------------------------------------------------------------------ single-file rules

_Check = Callable[[Document, set[JsonPath], _Recheck], list[Problem]]


def _get(data: Any, path: JsonPath) -> Any:
    """The value at ``path``, or ``None`` when any step is missing or of the wrong kind."""
    for part in path:
        if isinstance(part, str) and isinstance(data, Mapping):
            data = data.get(part)
        elif isinstance(part, int) and isinstance(data, list) and part < len(data):
            data = data[part]
        else:
            return None
    return data


def _parse_problem(
    doc: Document, path: JsonPath, detail: str, recheck: _Recheck, expected: str
) -> Problem:
    location = doc.location(path)
    return _problem(
        "invalid_value",
        f"{_dotted(path)}: {detail}",
        location,
        recheck.fix(f"set {_dotted(path)} at {_at(location)} to {expected}"),
    )


def _settings_problems(
    doc: Document, block_path: JsonPath, flagged: set[JsonPath], recheck: _Recheck
) -> list[Problem]:
    """Run the ``durations`` parsers on the values of one settings block the schema accepted."""
    block = _get(doc.data, block_path)
    if not isinstance(block, Mapping):
        return []
    checks: list[tuple[JsonPath, Callable[[Any], object], str]] = [
        ((*block_path, "resource_limits", "cpu"), parse_cpu, 'cores (0.5, 4) or "4000m"'),
        ((*block_path, "resource_limits", "memory"), parse_size, 'a size such as "2Gi"'),
        (
            (*block_path, "backup_schedule"),
            parse_schedule,
            '"never", an interval such as "6h" or a 5-field cron',
        ),
        ((*block_path, "ttl"), parse_duration, 'null or a duration such as "7d"'),
        ((*block_path, "keep_previous"), parse_duration, 'null or a duration such as "24h"'),
        ((*block_path, "sleep_after"), parse_duration, 'null or a duration such as "2h"'),
    ]
    problems: list[Problem] = []
    for path, parse, expected in checks:
        value = _get(doc.data, path)
        if value is None or path in flagged:
            continue
        try:
            parsed = parse(value)
        except ValueError as exc:
            problems.append(_parse_problem(doc, path, str(exc), recheck, expected))
            continue
        if parse is parse_size and isinstance(parsed, int) and parsed < _MIN_MEMORY:
            hint = (
                f' (a bare number is bytes: did you mean "{value}Mi"?)'
                if isinstance(value, int)
                else ""
            )
            problems.append(
                _parse_problem(
                    doc,
                    path,
                    f"{_shown(value, False)} is below the 64Mi an Odoo container needs at "
                    f"the very least{hint}",
                    recheck,
                    'a size of at least "64Mi"',
                )
            )
    return problems


def _tier_settings(doc: Document, flagged: set[JsonPath], recheck: _Recheck) -> list[Problem]:
    problems: list[Problem] = []
    for tier in TIERS:
        found = _settings_problems(doc, ("tiers", tier), flagged, recheck)
        problems.extend(found)
        block = _get(doc.data, ("tiers", tier))
        if (
            found
            or not isinstance(block, Mapping)
            or any(p[:2] == ("tiers", tier) for p in flagged)
        ):
            continue
        # The tier's block over the built-in default: its memory must hold its processes (an
        # environment's own overrides are checked again when it is resolved).
        try:
            resolve_settings(Tier(tier), {tier: block}, {}, {})
        except MemoryTooSmall as exc:
            path: JsonPath = ("tiers", tier, "resource_limits", "memory")
            location = doc.location(path if _get(doc.data, path) is not None else ("tiers", tier))
            problems.append(
                _problem("memory_too_small", exc.message, location, recheck.fix(exc.action))
            )
        except (ValueError, KeyError, TypeError):
            continue  # a value the schema or the parsers above report
    return problems


def _override_settings(doc: Document, flagged: set[JsonPath], recheck: _Recheck) -> list[Problem]:
    return _settings_problems(doc, ("overrides",), flagged, recheck)


def _port_range(doc: Document, flagged: set[JsonPath], recheck: _Recheck) -> list[Problem]:
    start = _get(doc.data, ("runtime", "port_range", "start"))
    end = _get(doc.data, ("runtime", "port_range", "end"))
    if not all(isinstance(v, int) and not isinstance(v, bool) for v in (start, end)):
        return []
    if start <= end:
        return []
    location = doc.location(("runtime", "port_range", "start"))
    return [
        _problem(
            "invalid_value",
            f"runtime.port_range.start ({start}) is greater than runtime.port_range.end ({end})",
            location,
            recheck.fix(f"swap start and end at {_at(location)}"),
        )
    ]


def _branch_rules(doc: Document, flagged: set[JsonPath], recheck: _Recheck) -> list[Problem]:
    """Two rules with one ``match``, or a rule an earlier rule hides: either is ambiguous."""
    rules = _get(doc.data, ("branches",))
    if not isinstance(rules, list):
        return []
    globs = [
        (i, rule["match"])
        for i, rule in enumerate(rules)
        if isinstance(rule, Mapping) and isinstance(rule.get("match"), str)
    ]
    problems: list[Problem] = []
    for later_index, later in globs:
        for earlier_index, earlier in globs:
            if earlier_index >= later_index:
                break
            location = doc.location(("branches", later_index, "match"))
            earlier_line = doc.location(("branches", earlier_index, "match")).line
            if earlier == later:
                message = (
                    f"rule {later_index + 1} repeats match `{later}` of rule {earlier_index + 1}: "
                    "a branch must map to one tier"
                )
                action = f"remove one of the two rules (lines {earlier_line} and {location.line})"
            elif shadows(earlier, later):
                message = (
                    f"rule {later_index + 1} (match `{later}`) can never match: rule "
                    f"{earlier_index + 1} (match `{earlier}`, line {earlier_line}) comes first "
                    "and matches every branch it would"
                )
                action = (
                    f"remove rule {later_index + 1} or move it above rule {earlier_index + 1} "
                    f"in {doc.path}"
                )
            else:
                continue
            problems.append(_problem("ambiguous_rule", message, location, recheck.fix(action)))
            break
    return problems


def _branch_characters(doc: Document, flagged: set[JsonPath], recheck: _Recheck) -> list[Problem]:
    """What the schema's pattern cannot list: any control, format or separator character."""
    path: JsonPath = ("branch",)
    branch = _get(doc.data, path)
    if not isinstance(branch, str) or path in flagged:
        return []
    char = _hostile_character(branch)
    if char is None:
        return []
    location = doc.location(path)
    return [
        _problem(
            "invalid_value",
            f"branch {_literal(branch)} holds the invisible or control character {char}, "
            "so it would read as another branch",
            location,
            recheck.fix(f"retype the branch at {_at(location)} with visible characters only"),
        )
    ]


def _promote_rules(doc: Document, flagged: set[JsonPath], recheck: _Recheck) -> list[Problem]:
    """Each ``promote`` rule's schedule parses, and it promotes from one environment to
    another. Names no project has yet are no problem: a rule applies where both exist."""
    rules = _get(doc.data, ("promote",))
    if not isinstance(rules, list):
        return []
    problems: list[Problem] = []
    for i, rule in enumerate(rules):
        if not isinstance(rule, Mapping):
            continue
        path: JsonPath = ("promote", i, "schedule")
        value = rule.get("schedule")
        if value is not None and path not in flagged:
            try:
                parse_schedule(value)
            except ValueError as exc:
                expected = 'an interval such as "1h" or a 5-field cron such as "0 2 * * *"'
                problems.append(_parse_problem(doc, path, str(exc), recheck, expected))
        if rule.get("from") is not None and rule.get("from") == rule.get("to"):
            location = doc.location(("promote", i, "to"))
            problems.append(
                _problem(
                    "invalid_value",
                    f"promote rule {i + 1} promotes {rule['to']} onto itself",
                    location,
                    recheck.fix(f"name another environment in to at {_at(location)}"),
                )
            )
    return problems


def _restore_test(doc: Document, flagged: set[JsonPath], recheck: _Recheck) -> list[Problem]:
    return _schedule_at(("backups", "restore_test"))(doc, flagged, recheck)


def _schedule_at(path: JsonPath) -> _Check:
    """A check that the schedule at ``path`` (when there) parses: the schema only sees a
    string."""

    def check(doc: Document, flagged: set[JsonPath], recheck: _Recheck) -> list[Problem]:
        value = _get(doc.data, path)
        if value is None or path in flagged:
            return []
        try:
            parse_schedule(value)
        except ValueError as exc:
            return [_parse_problem(doc, path, str(exc), recheck, '"never", "7d" or a 5-field cron')]
        return []

    return check


def _duration_at(path: JsonPath) -> _Check:
    """A check that the duration at ``path`` (when there) parses: the schema only sees its
    shape, and ``0m`` has the shape."""

    def check(doc: Document, flagged: set[JsonPath], recheck: _Recheck) -> list[Problem]:
        value = _get(doc.data, path)
        if value is None or path in flagged:
            return []
        try:
            parse_duration(value)
        except ValueError as exc:
            return [_parse_problem(doc, path, str(exc), recheck, 'a duration such as "30m"')]
        return []

    return check


def repository_name(item: Mapping[str, Any]) -> str:
    """A declared repository's name: its own, else the last part of its URL without .git."""
    name = item.get("name")
    if isinstance(name, str):
        return name
    url = str(item.get("url", "")).rstrip("/")
    return url.rsplit("/", 1)[-1].rsplit(":", 1)[-1].removesuffix(".git")


def _repository_names(doc: Document, flagged: set[JsonPath], recheck: _Recheck) -> list[Problem]:
    """Each declared repository has its own folder in the image, so its own name."""
    items = _get(doc.data, ("repositories",))
    if not isinstance(items, list):
        return []
    seen: dict[str, int] = {}
    problems: list[Problem] = []
    for i, item in enumerate(items):
        if not isinstance(item, Mapping) or ("repositories", i) in flagged:
            continue
        name = repository_name(item)
        if not re.fullmatch(r"[A-Za-z0-9][A-Za-z0-9._-]{0,63}", name):
            location = doc.location(("repositories", i, "url"))
            problems.append(
                _problem(
                    "invalid_name",
                    f"repositories[{i}]: its URL gives no usable name ({name!r})",
                    location,
                    recheck.fix(f"give it a name: at {_at(location)}"),
                )
            )
        elif name in seen:
            location = doc.location(("repositories", i))
            problems.append(
                _problem(
                    "duplicate_repository",
                    f"repositories[{i}] and repositories[{seen[name]}] are both named {name}",
                    location,
                    recheck.fix(f"give one another name: at {_at(location)}"),
                )
            )
        else:
            seen[name] = i
    return problems


def _environment_settings(
    doc: Document, flagged: set[JsonPath], recheck: _Recheck
) -> list[Problem]:
    """An application's per-environment blocks (``environments.<name>``): their values parse.
    Whether they fit an environment's memory is judged when it is resolved, as its tier (and
    so the budget below them) is the state repository's to say."""
    blocks = _get(doc.data, ("environments",))
    if not isinstance(blocks, Mapping):
        return []
    problems: list[Problem] = []
    for name in blocks:
        problems.extend(_settings_problems(doc, ("environments", name), flagged, recheck))
    return problems


_DOCUMENT_CHECKS: Mapping[str, Sequence[_Check]] = {
    "odooops": (
        _tier_settings,
        _port_range,
        _restore_test,
        _duration_at(("quotas", "build_timeout")),
    ),
    "policies": (
        _branch_rules,
        _duration_at(("tests", "timeout")),
        _duration_at(("previews", "ttl")),
        _promote_rules,
        _schedule_at(("golden", "refresh")),
    ),
    "environment": (_override_settings, _branch_characters),
    "app": (_tier_settings, _environment_settings),
    "project": (_repository_names,),
}


# ------------------------------------------------------------------- secret references

SECRET_REF_PATHS: Mapping[str, tuple[JsonPath, ...]] = {
    "odooops": (
        ("database_servers", "*", "admin_password"),
        ("backups", "s3", "access_key"),
        ("backups", "s3", "secret_key"),
        ("backups", "encryption_key"),
        ("ingress", "acme", "trusted_roots"),
    ),
    "project": (
        ("repository", "token"),
        ("repository", "ssh_key"),
        ("repository", "forge", "token"),
    ),
    "masking": (("salt",),),
}
"""Where each schema has a secret reference (``*``: every key of a mapping); a unit test holds
this list to the ``secret_ref`` uses in ``schemas/``."""

_CREDENTIAL_PATHS = frozenset({("repository", "token"), ("repository", "ssh_key")})
_REF_KINDS = ("secret", "env", "file")


def _expand(data: Any, pattern: JsonPath) -> list[JsonPath]:
    """The concrete paths ``pattern`` matches in ``data``."""
    paths: list[JsonPath] = [()]
    for part in pattern:
        if part != "*":
            paths = [(*path, part) for path in paths]
            continue
        paths = [
            (*path, key)
            for path in paths
            if isinstance(value := _get(data, path), Mapping)
            for key in value
        ]
    return paths


def _secret_ref_problems(
    doc: Document, name: str, policy: SecretPolicy, recheck: _Recheck
) -> list[Problem]:
    """Every well-formed secret reference of ``doc`` the daemon's allowlist refuses.

    A malformed reference is the schema's to report; only a mapping with one known key and a
    text value is judged here, so a problem is never reported twice.
    """
    problems: list[Problem] = []
    for pattern in SECRET_REF_PATHS.get(name, ()):
        for path in _expand(doc.data, pattern):
            raw = _get(doc.data, path)
            if not (
                isinstance(raw, Mapping)
                and len(raw) == 1
                and next(iter(raw)) in _REF_KINDS
                and isinstance(next(iter(raw.values())), str)
            ):
                continue
            ref = SecretRef.parse(raw)
            assert ref is not None
            url = _get(doc.data, ("repository", "url")) if path in _CREDENTIAL_PATHS else None
            if path == ("repository", "forge", "token"):
                url = _get(doc.data, ("repository", "forge", "api"))  # sent to the API's host
            found = refusal(
                ref,
                policy,
                credential_for=url if isinstance(url, str) else None,
            )
            if found is None:
                continue
            location = doc.location(path)
            problems.append(
                _problem(
                    found.code,
                    f"{_dotted(path)}: {found.message}",
                    location,
                    recheck.fix(f"{found.remediation} (at {_at(location)})"),
                )
            )
    return problems


# ------------------------------------------------------------------------ state repository


def _count(n: int, noun: str) -> str:
    return f"{n} {noun}{'' if n == 1 else 's'}"


def _ignored(parts: Sequence[str]) -> bool:
    """Notes and placeholders that may sit next to the YAML files: READMEs and dotfiles."""
    return parts[-1].upper().startswith("README") or any(p.startswith(".") for p in parts)


def _suggest_name(stem: str) -> str:
    suggestion = re.sub(r"[^a-z0-9-]+", "-", stem.lower()).strip("-")
    suggestion = re.sub(r"^[^a-z]+", "", suggestion)[:32].rstrip("-")
    return suggestion or "a-valid-name"


@dataclass(frozen=True)
class PathSlot:
    """What a path of ``projects/`` or ``environments/`` is, read from the path alone: a
    project's file, an environment's, or a file the format does not read (``problems``)."""

    kind: str  # "project", "environment", "lock", or "" (not read: its problem says why)
    project: str = ""
    env: str = ""
    problems: tuple[Problem, ...] = ()


def _unexpected(path: str, why: str, recheck: _Recheck) -> Problem:
    suffix = PurePosixPath(path).suffix
    action = f"move or remove {path}"
    if suffix == ".yml":
        renamed = path.removesuffix(".yml") + ".yaml"
        action = f"rename it: git mv {path} {renamed}"
        why = "state files end in .yaml, and a .yml file is not read"
    return _problem(
        "unexpected_file",
        f"{path} is not part of the state format: {why}",
        Location(path),
        recheck.fix(action),
    )


def _bad_name(name: str, kind: str, path: str, recheck: _Recheck) -> tuple[Problem, ...]:
    if _is_name(name):
        return ()
    return (
        _problem(
            "invalid_name",
            f"`{name}` is not a valid {kind} name: use {_NAME_RULE}",
            Location(path),
            recheck.fix(f"rename {path} using a valid name, e.g. `{_suggest_name(name)}`"),
        ),
    )


@functools.lru_cache(maxsize=16384)
def path_slot(path: str, repo_label: str = ".") -> PathSlot | None:
    """The slot of a path of ``projects/`` or ``environments/``; None for every other path
    (READMEs and dotfiles inside them included), which the state format ignores."""
    recheck = _state_recheck(repo_label)
    parts = PurePosixPath(path).parts
    if len(parts) < 2 or parts[0] not in (PROJECTS_DIR, ENVIRONMENTS_DIR) or _ignored(parts[1:]):
        return None
    file = PurePosixPath(path)
    if parts[0] == PROJECTS_DIR:
        if len(parts) == 2 and file.name.endswith(LOCK_SUFFIX):
            project = file.name.removesuffix(LOCK_SUFFIX)
            return PathSlot("lock", project, "", _bad_name(project, "project", path, recheck))
        if len(parts) != 2:
            why = "projects/ holds one <project>.yaml per project"
        elif file.suffix != ".yaml":
            why = "projects/ holds only <project>.yaml files"
        else:
            return PathSlot(
                "project", file.stem, "", _bad_name(file.stem, "project", path, recheck)
            )
        return PathSlot("", problems=(_unexpected(path, why, recheck),))
    if len(parts) != 3:
        why = "environment files live in environments/<project>/<env>.yaml"
    elif file.suffix != ".yaml":
        why = "environments/<project>/ holds only <env>.yaml files"
    else:
        problems = _bad_name(file.stem, "environment", path, recheck)
        return PathSlot("environment", parts[1], file.stem, problems)
    return PathSlot("", problems=(_unexpected(path, why, recheck),))


@functools.lru_cache(maxsize=16384)
def _parsed(
    path: str, content: bytes, schema: str, repo_label: str
) -> tuple[Document | None, tuple[Problem, ...]]:
    """One file decoded, parsed and checked against its schema and single-file rules.

    Cached by content: a write changes one file, and every other file of the state is judged
    again on every write and every poll. The document is shared between callers, so nothing
    may change it (nothing does: every consumer builds its own values from it).
    """
    recheck = _state_recheck(repo_label)
    text, problems = _decode(content, path, recheck)
    if text is None:
        return None, tuple(problems)
    doc, found = _load(text, path, recheck)
    problems.extend(found)
    if doc is not None:
        problems.extend(_validate(doc, schema, recheck))
    return doc, tuple(problems)


_Unit = tuple[str, ...]
"""What one group of problems is about: ``("env", project, env)``, ``("host", name)``, ..."""


class StateIndex:
    """The validation of one state-repository commit, kept to judge the next commit from the
    files that changed rather than from every file again.

    ``build`` (what ``validate_state`` runs) and ``update`` run the same checks. Every
    cross-file problem belongs to one *unit*, computed by one method from inputs it names:

    - ``("dir", P)``: ``environments/P/`` (its name; whether ``projects/P.yaml`` exists);
    - ``("project", P)``: the project's ``database_server`` against ``odooops.yaml``;
    - ``("env", P, E)``: the environment's file, ``policies.yaml`` (its tier, the branch
      rules) and, when it copies another's database, the names of P's environments;
    - ``("branch", P, B)``: every environment of P deploying branch B (one may);
    - ``("route", P, E)``: the environment's domains and allowlist (with an ingress block);
    - ``("host", H)``: every environment claiming host H (one may).

    ``update`` marks the units each changed file feeds and recomputes those alone; a file is
    parsed only when its content is new (``_parsed``). The root files (``odooops.yaml``,
    ``policies.yaml``, ``masking.yaml``) feed nearly every unit, so a change to one rebuilds
    the index (from cached parses). A property test holds ``update`` to ``build``.

    An index is never changed once made: ``update`` returns a new one (dictionaries copied,
    documents shared), so the index of a commit stays valid for its readers.
    """

    def __init__(self, files: Mapping[str, bytes], repo_label: str, policy: SecretPolicy) -> None:
        self.files = dict(files)
        self.repo_label = repo_label
        self.policy = policy
        self.recheck = _state_recheck(repo_label)
        self.platform: Document | None = None
        self.policies: Document | None = None
        self.masking: Document | None = None
        self.root_problems: list[Problem] = []
        self.file_problems: dict[str, tuple[Problem, ...]] = {}  # non-empty only
        self.project_paths: dict[str, str] = {}
        self.projects: dict[str, Document] = {}
        self.lock_paths: dict[str, str] = {}
        self.locks: dict[str, Document] = {}
        self.environment_paths: dict[tuple[str, str], str] = {}
        self.environments: dict[tuple[str, str], Document] = {}
        self.dir_counts: dict[str, int] = {}  # environment files per environments/<P>/
        self.siblings: dict[str, frozenset[str]] = {}  # parsed environments per project
        self.sourced: dict[str, frozenset[str]] = {}  # those whose db.source names another
        self.branch_groups: dict[tuple[str, str], tuple[str, ...]] = {}  # sorted env names
        self.env_hosts: dict[tuple[str, str], tuple[tuple[str, str], ...]] = {}
        self.host_claims: dict[str, tuple[tuple[EnvKey, str], ...]] = {}  # in key order
        self.units: dict[_Unit, tuple[Problem, ...]] = {}  # non-empty only
        self.ingress = False  # an ingress block: routes are checked, else ingress_disabled
        self.domain: str | None = None  # the platform domain, when valid
        self.public = True

    # -- building ---------------------------------------------------------------------------

    @classmethod
    def build(
        cls, files: Mapping[str, bytes], repo_label: str = ".", policy: SecretPolicy | None = None
    ) -> StateIndex:
        """Validate every file of one commit (repo-relative posix path -> content)."""
        index = cls(files, repo_label, policy or SecretPolicy())
        index._root()
        for path in sorted(index.files):
            index._add(path, set())
        # Every unit, not the ones ``_add`` marked: the property test then holds the marking
        # that ``update`` relies on to a build that does not rely on it.
        units: set[_Unit] = {("dir", p) for p in index.dir_counts}
        units.update(("project", p) for p in index.project_paths)
        units.update(("lock", p) for p in index.lock_paths)
        units.update(("branch", *group) for group in index.branch_groups)
        for p, e in index.environment_paths:
            units.update({("env", p, e), ("route", p, e)})
        index._recompute(units, every_host=True)
        return index

    def update(self, changes: Mapping[str, bytes | None]) -> StateIndex:
        """The index of the files after ``changes`` (path -> content, None deletes)."""
        files = applied(self.files, changes)
        if any("/" not in path for path in changes):
            return StateIndex.build(files, self.repo_label, self.policy)
        index = self._copy(files)
        dirty: set[_Unit] = set()
        for path, content in changes.items():
            if path in self.files:
                if self.files[path] == content:
                    continue
                index._remove(path, dirty)
            if content is not None:
                index._add(path, dirty)
        index._recompute(dirty)
        return index

    def _copy(self, files: dict[str, bytes]) -> StateIndex:
        index = StateIndex.__new__(StateIndex)
        index.__dict__.update(self.__dict__)
        for name, value in self.__dict__.items():
            if isinstance(value, dict | list):
                setattr(index, name, type(value)(value))
        index.files = files
        return index

    def _root(self) -> None:
        """The root files: ``odooops.yaml``, ``policies.yaml``, ``masking.yaml``."""
        found: dict[str, Document | None] = {}
        for path, schema, what in (
            (PLATFORM_FILE, "odooops", "the platform settings"),
            (POLICIES_FILE, "policies", "the branch rules"),
            (MASKING_FILE, "masking", ""),
        ):
            if path not in self.files:
                found[path] = None
                if what:
                    self.root_problems.append(self._required(path, what))
                continue
            doc, problems = self._parse(path, schema)
            found[path] = doc
            self.root_problems.extend(problems)
        self.platform, self.policies = found[PLATFORM_FILE], found[POLICIES_FILE]
        self.masking = found[MASKING_FILE]
        ingress = _get(self.platform.data, ("ingress",)) if self.platform else None
        self.ingress = isinstance(ingress, Mapping)
        if isinstance(ingress, Mapping):
            domain, ca = ingress.get("domain"), _get(ingress, ("acme", "ca"))
            self.public = ca != INTERNAL_CA
            if isinstance(domain, str):
                problem = platform_domain_problem(domain, self.public)
                if problem is None:
                    self.domain = domain
                else:
                    self.root_problems.append(self._rechecked(problem))

    def _required(self, path: str, what: str) -> Problem:
        yml = path.removesuffix(".yaml") + ".yml"
        action = f"create {path} at the root of the state repository ({what})"
        if yml in self.files:
            action = f"rename {yml} to {path}: git mv {yml} {path}"
        return _problem(
            "missing_file",
            f"{path} is missing: it holds {what}",
            Location(path),
            self.recheck.fix(action),
        )

    def _parse(self, path: str, schema: str) -> tuple[Document | None, list[Problem]]:
        doc, found = _parsed(path, self.files[path], schema, self.repo_label)
        problems = list(found)
        if doc is not None and schema in SECRET_REF_PATHS:
            problems.extend(_secret_ref_problems(doc, schema, self.policy, self.recheck))
        return doc, problems

    def _rechecked(self, problem: Problem) -> Problem:
        """A problem of ``core.ingress`` with this repository's re-check command."""
        return replace(
            problem, remediation=self.recheck.fix(problem.remediation.split(", then")[0])
        )

    # -- files in and out -------------------------------------------------------------------

    def _add(self, path: str, dirty: set[_Unit]) -> None:
        slot = path_slot(path, self.repo_label)
        if slot is None:
            return
        problems = list(slot.problems)
        p, e = slot.project, slot.env
        if slot.kind == "project":
            self.project_paths[p] = path
            doc, found = self._parse(path, "project")
            problems.extend(found)
            if doc is not None:
                self.projects[p] = doc
            dirty.update({("dir", p), ("project", p), ("lock", p)})
        elif slot.kind == "lock":
            self.lock_paths[p] = path
            doc, found = self._parse(path, "lock")
            problems.extend(found)
            if doc is not None:
                self.locks[p] = doc
            dirty.add(("lock", p))
        elif slot.kind == "environment":
            self.environment_paths[(p, e)] = path
            self.dir_counts[p] = self.dir_counts.get(p, 0) + 1
            dirty.update({("dir", p), ("env", p, e), ("route", p, e)})
            doc, found = self._parse(path, "environment")
            problems.extend(found)
            if doc is not None:
                self.environments[(p, e)] = doc
                self._member(p, e, doc, dirty, joins=True)
        if problems:
            self.file_problems[path] = tuple(problems)

    def _remove(self, path: str, dirty: set[_Unit]) -> None:
        slot = path_slot(path, self.repo_label)
        if slot is None:
            return
        self.file_problems.pop(path, None)
        p, e = slot.project, slot.env
        if slot.kind == "project":
            del self.project_paths[p]
            self.projects.pop(p, None)
            dirty.update({("dir", p), ("project", p), ("lock", p)})
        elif slot.kind == "lock":
            del self.lock_paths[p]
            self.locks.pop(p, None)
            dirty.add(("lock", p))
        elif slot.kind == "environment":
            del self.environment_paths[(p, e)]
            self.dir_counts[p] -= 1
            if not self.dir_counts[p]:
                del self.dir_counts[p]
            dirty.update({("dir", p), ("env", p, e), ("route", p, e)})
            doc = self.environments.pop((p, e), None)
            if doc is not None:
                self._member(p, e, doc, dirty, joins=False)

    def _member(self, p: str, e: str, doc: Document, dirty: set[_Unit], *, joins: bool) -> None:
        """A parsed environment joins or leaves the indexes other units read."""

        def moved(index: dict[Any, Any], key: Any) -> None:
            names = set(index.get(key, ()))
            (names.add if joins else names.discard)(e)
            if names:
                index[key] = (
                    tuple(sorted(names)) if index is self.branch_groups else frozenset(names)
                )
            else:
                index.pop(key, None)

        moved(self.siblings, p)
        # A sibling that copies another environment names them all in its problem.
        dirty.update(("env", p, s) for s in self.sourced.get(p, ()))
        source = _get(doc.data, ("db", "source"))
        if isinstance(source, str) and source != "fresh":
            moved(self.sourced, p)
        branch = _get(doc.data, ("branch",))
        if isinstance(branch, str):
            moved(self.branch_groups, (p, branch))
            dirty.add(("branch", p, branch))

    # -- units ------------------------------------------------------------------------------

    def _recompute(self, dirty: set[_Unit], every_host: bool = False) -> None:
        # Routes first: they move host claims, which dirty the hosts.
        for unit in [u for u in dirty if u[0] == "route"]:
            self._set(unit, self._route(unit[1], unit[2], dirty))
        if every_host:
            dirty.update(("host", host) for host in self.host_claims)
        for unit in dirty:
            kind = unit[0]
            if kind == "dir":
                self._set(unit, self._dir(unit[1]))
            elif kind == "project":
                self._set(unit, self._project(unit[1]))
            elif kind == "lock":
                self._set(unit, self._lock(unit[1]))
            elif kind == "env":
                self._set(unit, self._environment(unit[1], unit[2]))
            elif kind == "branch":
                self._set(unit, self._branch(unit[1], unit[2]))
            elif kind == "host":
                owners = self.host_claims.get(unit[1], ())
                conflict = host_conflict(unit[1], owners)
                self._set(unit, (self._rechecked(conflict),) if conflict else ())

    def _set(self, unit: _Unit, problems: Sequence[Problem]) -> None:
        if problems:
            self.units[unit] = tuple(problems)
        else:
            self.units.pop(unit, None)

    def _problem(self, code: str, message: str, location: Location, action: str) -> Problem:
        return _problem(code, message, location, self.recheck.fix(action))

    def _lock(self, p: str) -> list[Problem]:
        """A lock is the platform's record of a project's pins: one without its project is
        left over (a renamed or removed project)."""
        path = self.lock_paths.get(p)
        if path is None or p in self.project_paths:
            return []
        return [
            self._problem(
                "lock_without_project",
                f"{path} pins the repositories of project {p}, which has no "
                f"{PROJECTS_DIR}/{p}.yaml",
                Location(path),
                f"remove it: git rm {path}",
            )
        ]

    def _dir(self, p: str) -> list[Problem]:
        if not self.dir_counts.get(p):
            return []
        directory = f"{ENVIRONMENTS_DIR}/{p}/"
        out = list(_bad_name(p, "project", directory, self.recheck))
        if p not in self.project_paths:
            out.append(
                self._problem(
                    "unknown_project",
                    f"{directory} has no project: {PROJECTS_DIR}/{p}.yaml does not exist",
                    Location(directory),
                    f"add {PROJECTS_DIR}/{p}.yaml or rename {directory} to an existing project",
                )
            )
        return out

    def _project(self, p: str) -> list[Problem]:
        doc = self.projects.get(p)
        servers = _get(self.platform.data, ("database_servers",)) if self.platform else None
        server = _get(doc.data, ("database_server",)) if doc else None
        if doc is None or not isinstance(servers, Mapping) or not isinstance(server, str):
            return []
        if server in servers:
            return []
        defined = ", ".join(sorted(servers)) or "none"
        location = doc.location(("database_server",))
        out: list[Problem] = []
        out.append(
            self._problem(
                "unknown_reference",
                f"database_server `{server}` is not defined in {PLATFORM_FILE} "
                f"(defined: {defined})",
                location,
                f"set database_server at {_at(location)} to one of: {defined}, or add "
                f"`{server}` under database_servers in {PLATFORM_FILE}",
            )
        )
        return out

    def _tier(self, doc: Document) -> str:
        tier = _get(doc.data, ("tier",))
        return (
            tier
            if isinstance(tier, str)
            else tier_by_rule(self.policies, _get(doc.data, ("branch",)))
        )

    def _environment(self, p: str, e: str) -> list[Problem]:
        doc = self.environments.get((p, e))
        if doc is None:
            return []
        out = self._copy_target(doc) + self._expiry_target(doc)
        source = _get(doc.data, ("db", "source"))
        if isinstance(source, str) and source != "fresh":
            location = doc.location(("db", "source"))
            siblings = sorted(self.siblings.get(p, ()))
            if source == e:
                out.append(
                    self._problem(
                        "unknown_reference",
                        f"db.source names this environment itself: `{e}` cannot copy its "
                        "own database",
                        location,
                        f"set db.source at {_at(location)} to fresh or another environment of {p}",
                    )
                )
            elif source not in siblings:
                out.append(
                    self._problem(
                        "unknown_reference",
                        f"db.source `{source}` is not an environment of project `{p}` "
                        f"(environments: {', '.join(siblings)})",
                        location,
                        f"set db.source at {_at(location)} to fresh or one of: "
                        f"{', '.join(s for s in siblings if s != e)}",
                    )
                )
        branch = _get(doc.data, ("branch",))
        rules = _get(self.policies.data, ("branches",)) if self.policies else None
        if (
            isinstance(branch, str)
            and isinstance(rules, list)
            and _get(doc.data, ("tier",)) is None
        ):
            globs = [r.get("match") for r in rules if isinstance(r, Mapping)]
            if not any(matches(g, branch) for g in globs if isinstance(g, str)):
                location = doc.location(("branch",))
                out.append(
                    self._problem(
                        "unmatched_branch",
                        f"branch `{branch}` matches no rule of {POLICIES_FILE} and the file sets "
                        "no tier",
                        location,
                        f"add `tier: <{'|'.join(TIERS)}>` to {doc.path} or a rule matching "
                        f"`{branch}` to branches in {POLICIES_FILE}",
                    )
                )
        if (
            self.platform is not None
            and isinstance(self.platform.data, Mapping)
            and not self.ingress
        ):
            for key in ("domains", "allowlist", "maintenance_text"):
                if _get(doc.data, (key,)):
                    location = doc.location((key,))
                    out.append(
                        self._problem(
                            "ingress_disabled",
                            f"{key} has no effect: {PLATFORM_FILE} has no ingress block, so no "
                            "proxy routes traffic to environments",
                            location,
                            f"add an ingress block to {PLATFORM_FILE} (README: Ingress), or "
                            f"remove {key} at {_at(location)}",
                        )
                    )
        return out

    def _copy_target(self, doc: Document) -> list[Problem]:
        """A copy never lands on a protected environment, and never un-neutralised.

        A production database is only ever replaced by an explicit, confirmed restore; a
        non-production copy of real data always gets its mail, crons and payments disabled.
        """
        out: list[Problem] = []
        tier = self._tier(doc)
        protected = self._protected(doc, tier)
        source = _get(doc.data, ("db", "source"))
        if isinstance(source, str) and source != "fresh" and protected:
            location = doc.location(("db", "source"))
            out.append(
                self._problem(
                    "copy_onto_protected",
                    f"db.source `{source}` would overwrite a protected environment's database "
                    "with a copy",
                    location,
                    f"remove db.source at {_at(location)} (replace a protected database only "
                    "with a confirmed restore: odooops db restore SOURCE --backup=ID --to=ENV "
                    "--confirm)",
                )
            )
        if _get(doc.data, ("db", "neutralize")) is False and tier != "production":
            location = doc.location(("db", "neutralize"))
            out.append(
                self._problem(
                    "neutralize_required",
                    f"db.neutralize: false is not allowed for a {tier} environment: a copy of real "
                    "data outside production would send mail and run payments",
                    location,
                    f"remove db.neutralize at {_at(location)}",
                )
            )
        return out

    def _protected(self, doc: Document, tier: str) -> bool:
        """Whether the environment of ``doc`` is protected: its own word, else its tier's."""
        protected_tiers = _get(self.policies.data, ("protected_tiers",)) if self.policies else None
        if not isinstance(protected_tiers, list):
            protected_tiers = ["production"]
        protected = _get(doc.data, ("protected",))
        return protected if isinstance(protected, bool) else tier in protected_tiers

    def _expiry_target(self, doc: Document) -> list[Problem]:
        """A protected environment never expires: the sweeper would remove it by a commit."""
        if _get(doc.data, ("expires",)) is None or not self._protected(doc, self._tier(doc)):
            return []
        location = doc.location(("expires",))
        return [
            self._problem(
                "expires_on_protected",
                "expires is not allowed on a protected environment: it would be removed "
                "when the time passes",
                location,
                f"remove expires at {_at(location)} (a protected environment is permanent; "
                "to remove one, commit the removal of its file)",
            )
        ]

    def _branch(self, p: str, branch: str) -> list[Problem]:
        members = self.branch_groups.get((p, branch), ())
        if len(members) < 2:
            return []
        first = self.environments[(p, members[0])].path
        out: list[Problem] = []
        for e in members[1:]:
            location = self.environments[(p, e)].location(("branch",))
            out.append(
                self._problem(
                    "duplicate_branch",
                    f"branch `{branch}` is already deployed by {first}: one branch has one "
                    "environment per project",
                    location,
                    f"change the branch at {_at(location)} or remove one of the two files",
                )
            )
        return out

    def _route(self, p: str, e: str, dirty: set[_Unit]) -> list[Problem]:
        """Every host reaches one environment: the checks of the route table the proxy would
        be given (``core.ingress``), so a malformed or doubly claimed domain fails validation
        (and the commit or API write that brings it) instead of reaching the proxy."""
        key = EnvKey(p, e)
        for host, kind in self.env_hosts.pop((p, e), ()):
            owners = tuple(o for o in self.host_claims.get(host, ()) if o != (key, kind))
            self._claims(host, owners, dirty)
        doc = self.environments.get((p, e))
        if not self.ingress or doc is None or not isinstance(doc.data, Mapping):
            return []
        domains, allowlist = doc.data.get("domains", []), doc.data.get("allowlist", [])
        if not isinstance(domains, list) or not isinstance(allowlist, list):
            return []  # the schema said so already
        tier = self._tier(doc)
        route = EnvironmentRoute(
            key,
            Tier(tier) if tier in TIERS else Tier.DEV,
            ("-",),
            "-",
            domains=tuple(d for d in domains if isinstance(d, str)),
            allowlist=tuple(a for a in allowlist if isinstance(a, str)),
        )
        problems, hosts = route_hosts(route, self.domain, self.public)
        self.env_hosts[(p, e)] = tuple(hosts.items())
        for host, kind in hosts.items():
            owners = tuple(sorted((*self.host_claims.get(host, ()), (key, kind))))
            self._claims(host, owners, dirty)
        return [self._rechecked(problem) for problem in problems]

    def _claims(self, host: str, owners: tuple[tuple[EnvKey, str], ...], dirty: set[_Unit]) -> None:
        if owners:
            self.host_claims[host] = owners
        else:
            self.host_claims.pop(host, None)
        dirty.add(("host", host))

    # -- results ----------------------------------------------------------------------------

    @property
    def problems(self) -> list[Problem]:
        """Every problem, deduplicated and sorted by file, line and column."""
        found = [*self.root_problems]
        for problems in self.file_problems.values():
            found.extend(problems)
        for problems in self.units.values():
            found.extend(problems)
        return _sorted(found)

    def check(self) -> None:
        """Raise one ``InvalidState`` with every problem, if there is any."""
        problems = self.problems
        if problems or self.platform is None or self.policies is None:
            files_count = len({p.location.file for p in problems})
            raise InvalidState(
                f"state repository is invalid: {_count(len(problems), 'problem')} in "
                f"{_count(files_count, 'file')}",
                remediation=f"fix the files listed, then run: odooops validate {self.repo_label}",
                problems=tuple(problems),
            )

    def validated(self) -> ValidatedState:
        """The documents, or one ``InvalidState`` with every problem."""
        self.check()
        assert self.platform is not None and self.policies is not None
        return ValidatedState(
            self.platform,
            self.policies,
            dict(sorted(self.projects.items())),
            dict(sorted(self.environments.items())),
            self.masking,
            dict(sorted(self.locks.items())),
        )


def applied(files: Mapping[str, bytes], changes: Mapping[str, bytes | None]) -> dict[str, bytes]:
    """The files after ``changes`` (path -> new content, None deletes)."""
    out = {p: c for p, c in files.items() if p not in changes}
    out.update({p: c for p, c in changes.items() if c is not None})
    return out


def tier_by_rule(policies: Document | None, branch: object) -> str:
    """The tier the first matching branch rule gives ``branch`` (dev when none matches)."""
    rules = _get(policies.data, ("branches",)) if policies else None
    if isinstance(rules, list) and isinstance(branch, str):
        for rule in rules:
            if (
                isinstance(rule, Mapping)
                and isinstance(rule.get("match"), str)
                and matches(rule["match"], branch)
            ):
                return str(rule.get("tier", "dev"))
    return "dev"


def validate_state(
    files: Mapping[str, bytes], repo_label: str = ".", policy: SecretPolicy | None = None
) -> ValidatedState:
    """Validate every file of a state repository at one commit (repo-relative posix path ->
    content) and return its documents, or raise one ``InvalidState`` with every problem.

    ``policy`` is the daemon's allowlist of secret references (the defaults when ``None``).
    Files outside ``projects/`` and ``environments/`` other than ``odooops.yaml`` and
    ``policies.yaml`` are ignored, as are READMEs and dotfiles inside them.
    """
    return StateIndex.build(files, repo_label, policy).validated()


def validate_app_config(content: bytes, path: str = ".odooops.yaml") -> Document:
    """Validate an application repository's ``.odooops.yaml`` (empty means no overrides)."""
    text, problems = _decode(content, path, _APP_RECHECK)
    doc = None
    if text is not None:
        doc, problems = _load(text, path, _APP_RECHECK)
        if doc is not None:
            problems.extend(_validate(doc, "app", _APP_RECHECK))
    if problems or doc is None:
        problems = _sorted(problems)
        raise InvalidState(
            f"{path} is invalid: {_count(len(problems), 'problem')}",
            remediation=f"fix {path} as listed, then push it to the application repository",
            problems=tuple(problems),
        )
    return doc
