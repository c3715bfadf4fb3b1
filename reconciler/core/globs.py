"""Branch globs of ``policies.yaml``: matching a branch, and proving one rule hides another.

Syntax is fnmatch's with path-aware wildcards, as in ``.gitignore``: ``*`` is any run of
characters within one path segment, ``**`` any run across segments, ``?`` one character and
``[abc]``, ``[a-z]``, ``[!abc]`` one character of (or not of) a class. No wildcard but ``**``
ever matches ``/``, so ``release/*`` is ``release/1.0`` but not ``release/1.0/hotfix``. Anything
else is literal (there is no escape character: git branch names cannot hold ``\\``).

``shadows`` is exact, not a heuristic: both patterns are tiny automata over an alphabet reduced to
the characters they mention, and inclusion is decided by walking their product. "Rule 3 can never
match" is therefore reported exactly when it is true (over arbitrary strings; a counter-example
may be a string git would refuse as a branch name, which only makes the check more lenient).
"""

from __future__ import annotations

import functools
import re
from collections import deque
from collections.abc import Iterable
from dataclasses import dataclass

__all__ = ["matches", "shadows"]


@dataclass(frozen=True)
class _Literal:
    char: str


@dataclass(frozen=True)
class _AnyChar:
    """``?``: one character other than ``/``."""


@dataclass(frozen=True)
class _Class:
    """``[...]``: one character other than ``/`` that is (or, negated, is not) listed."""

    negated: bool
    chars: frozenset[str]
    ranges: tuple[tuple[str, str], ...]

    def contains(self, char: str) -> bool:
        if char == "/":
            return False
        listed = char in self.chars or any(low <= char <= high for low, high in self.ranges)
        return listed != self.negated


@dataclass(frozen=True)
class _Star:
    """``*``: any run of characters other than ``/``, possibly empty."""


@dataclass(frozen=True)
class _DoubleStar:
    """``**``: any run of characters, possibly empty."""


_Token = _Literal | _AnyChar | _Class | _Star | _DoubleStar


@functools.lru_cache(maxsize=1024)
def _tokens(pattern: str) -> tuple[_Token, ...]:
    tokens: list[_Token] = []
    i = 0
    while i < len(pattern):
        char = pattern[i]
        if char == "*":
            if pattern.startswith("**", i):
                while i < len(pattern) and pattern[i] == "*":
                    i += 1
                tokens.append(_DoubleStar())
                continue
            tokens.append(_Star())
        elif char == "?":
            tokens.append(_AnyChar())
        elif char == "[":
            parsed = _parse_class(pattern, i)
            if parsed is None:
                tokens.append(_Literal("["))
            else:
                klass, i = parsed
                tokens.append(klass)
                continue
        else:
            tokens.append(_Literal(char))
        i += 1
    return tuple(tokens)


def _parse_class(pattern: str, start: int) -> tuple[_Class, int] | None:
    """Parse ``[...]`` at ``start`` as fnmatch does; ``None`` when unclosed (then ``[`` is literal).

    A ``]`` right after ``[`` or ``[!`` is a member; ``-`` first or last is a member; a reversed
    range (``z-a``) matches nothing.
    """
    i = start + 1
    negated = i < len(pattern) and pattern[i] == "!"
    if negated:
        i += 1
    body_start = i
    if i < len(pattern) and pattern[i] == "]":
        i += 1
    end = pattern.find("]", i)
    if end == -1:
        return None
    body = pattern[body_start:end]
    chars: set[str] = set()
    ranges: list[tuple[str, str]] = []
    j = 0
    while j < len(body):
        if j + 2 < len(body) and body[j + 1] == "-":
            if body[j] <= body[j + 2]:
                ranges.append((body[j], body[j + 2]))
            j += 3
        else:
            chars.add(body[j])
            j += 1
    return _Class(negated, frozenset(chars), tuple(ranges)), end + 1


def _class_regex(klass: _Class) -> str:
    members = "".join(re.escape(c) for c in sorted(klass.chars))
    members += "".join(f"{re.escape(low)}-{re.escape(high)}" for low, high in klass.ranges)
    if klass.negated:
        return f"[^/{members}]"
    if not members:
        return "(?!)"
    return f"(?!/)[{members}]"


@functools.lru_cache(maxsize=1024)
def _compile(pattern: str) -> re.Pattern[str]:
    parts: list[str] = []
    for token in _tokens(pattern):
        if isinstance(token, _Literal):
            parts.append(re.escape(token.char))
        elif isinstance(token, _AnyChar):
            parts.append("[^/]")
        elif isinstance(token, _Class):
            parts.append(_class_regex(token))
        elif isinstance(token, _Star):
            parts.append("[^/]*")
        else:
            parts.append(".*")
    return re.compile("".join(parts), re.DOTALL)


def matches(pattern: str, branch: str) -> bool:
    """Whether ``branch`` is matched by the glob ``pattern`` (the whole branch name)."""
    return _compile(pattern).fullmatch(branch) is not None


def shadows(earlier: str, later: str) -> bool:
    """Whether every branch ``later`` can match is already matched by ``earlier``.

    With first-match-wins rules this means the later rule can never apply. ``**`` shadows
    everything; ``feature/*`` shadows ``feature/x`` and ``feature/a*``; ``release/*`` does not
    shadow ``release/**`` and ``*`` does not shadow ``a/b``.
    """
    later_tokens = _tokens(later)
    if all(isinstance(token, _Literal) for token in later_tokens):
        return matches(earlier, later)
    earlier_tokens = _tokens(earlier)
    alphabet = _alphabet((*earlier_tokens, *later_tokens))
    start = (_closure(later_tokens, {0}), _closure(earlier_tokens, {0}))
    seen = {start}
    queue = deque([start])
    while queue:
        later_states, earlier_states = queue.popleft()
        if len(later_tokens) in later_states and len(earlier_tokens) not in earlier_states:
            return False
        for char in alphabet:
            next_later = _step(later_tokens, later_states, char)
            if not next_later:
                continue
            pair = (next_later, _step(earlier_tokens, earlier_states, char))
            if pair not in seen:
                seen.add(pair)
                queue.append(pair)
    return True


def _alphabet(tokens: Iterable[_Token]) -> list[str]:
    """One representative character per class of characters no token can tell apart.

    Each token's membership test only changes value at the characters it names (a literal, a
    class member, a range bound) and at ``/``, so the code points where some test may change
    split all characters into intervals that behave identically.
    """
    cuts = {0, ord("/"), ord("/") + 1}
    for token in tokens:
        if isinstance(token, _Literal):
            cuts.update((ord(token.char), ord(token.char) + 1))
        elif isinstance(token, _Class):
            for char in token.chars:
                cuts.update((ord(char), ord(char) + 1))
            for low, high in token.ranges:
                cuts.update((ord(low), ord(high) + 1))
    return [chr(cut) for cut in sorted(cuts) if cut <= 0x10FFFF]


def _closure(tokens: tuple[_Token, ...], states: Iterable[int]) -> frozenset[int]:
    """Add the states reachable without reading: ``*`` and ``**`` may match nothing."""
    result = set(states)
    pending = list(result)
    while pending:
        state = pending.pop()
        if state < len(tokens) and isinstance(tokens[state], _Star | _DoubleStar):
            following = state + 1
            if following not in result:
                result.add(following)
                pending.append(following)
    return frozenset(result)


def _step(tokens: tuple[_Token, ...], states: frozenset[int], char: str) -> frozenset[int]:
    """States after reading ``char``; state ``i`` means "tokens before ``i`` are matched"."""
    reached: set[int] = set()
    for state in states:
        if state == len(tokens):
            continue
        token = tokens[state]
        if isinstance(token, _Literal):
            if token.char == char:
                reached.add(state + 1)
        elif isinstance(token, _AnyChar):
            if char != "/":
                reached.add(state + 1)
        elif isinstance(token, _Class):
            if token.contains(char):
                reached.add(state + 1)
        elif isinstance(token, _Star):
            if char != "/":
                reached.add(state)
        else:
            reached.add(state)
    return _closure(tokens, reached)
