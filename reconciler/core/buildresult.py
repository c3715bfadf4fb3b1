"""A build's log read as its user reads it: green, yellow (built, with warnings worth a look)
or red (not built), and for red the step that failed with the lines that say why.

Odoo.sh's habit, which its users expect: a build is a colour and a short excerpt, the whole
log one click away. Pure, so the reading of real pip, apt and Docker output is unit-tested.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass
from enum import StrEnum

# Docker's legacy builder announces each instruction as "Step 3/9 : RUN ...".
_STEP = re.compile(r"^Step \d+/\d+ : (.+)$")
_WARNING = re.compile(r"^\s*(WARNING\b|WARN\b|W: |warning:|DEPRECATION:)", re.IGNORECASE)
_ERROR = re.compile(
    r"(\berror\b|\bERROR\b|^E: |Traceback|failed|No matching distribution|"
    r"DO NOT MATCH THE HASHES|returned a non-zero code|timed out)",
    re.IGNORECASE,
)
# Noise every build prints: never a reason to turn a build yellow.
_NOT_A_WARNING = re.compile(r"legacy builder is deprecated|debconf: ", re.IGNORECASE)
EXCERPT_LINES = 20


class BuildResult(StrEnum):
    GREEN = "green"
    YELLOW = "yellow"
    RED = "red"


@dataclass(frozen=True)
class Verdict:
    result: BuildResult
    step: str  # the instruction that failed (red), "" otherwise
    excerpt: tuple[str, ...]  # red: the lines that say why; yellow: the warnings
    warnings: int


def verdict(lines: Sequence[str], error: str | None) -> Verdict:
    """Judge a build by its log and the builder's error (None when the image was made)."""
    step, step_lines = "", list[str]()
    warnings: list[str] = []
    for raw in lines:
        line = raw.rstrip()
        if not line:
            continue
        m = _STEP.match(line.strip())
        if m:
            step, step_lines = m.group(1), []
            continue
        step_lines.append(line)
        if _WARNING.search(line) and not _NOT_A_WARNING.search(line):
            warnings.append(line.strip())
    if error is None:
        if warnings:
            return Verdict(BuildResult.YELLOW, "", tuple(warnings[:EXCERPT_LINES]), len(warnings))
        return Verdict(BuildResult.GREEN, "", (), 0)
    telling = [line for line in step_lines if _ERROR.search(line)]
    tail = step_lines[-8:]
    excerpt = list(dict.fromkeys([*telling[-(EXCERPT_LINES - 8) :], *tail]))
    if error.strip() and error.strip() not in excerpt:
        excerpt.append(error.strip())
    return Verdict(BuildResult.RED, step, tuple(excerpt[-EXCERPT_LINES:]), len(warnings))
