"""Structured errors: every failure a user can see says what, where, and what to run next.

One shape everywhere (CLI, API, logs, status conditions): a stable ``code``, a ``message``,
a ``remediation`` naming the exact command to run, and whether the daemon will retry by itself.
Messages are sanitised on construction so credentials embedded in URLs never reach a log,
an error document or git.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import Any

_URL_CREDENTIALS = re.compile(r"(?P<scheme>[a-zA-Z][a-zA-Z0-9+.-]*://)[^/@\s]+@")
_PASSWORD_WORDS = re.compile(r"(?i)(password|passwd|pwd|secret|token)=([^\s&;]+)")

# One section per error code, headed by the code itself (its anchor).
DOCS_BASE = "https://github.com/odooops/odooops/blob/main/docs/errors.md"


def sanitize(text: str) -> str:
    """Strip credentials from URLs and ``password=...`` pairs so the text is safe to show."""
    text = _URL_CREDENTIALS.sub(r"\g<scheme>***@", text)
    return _PASSWORD_WORDS.sub(r"\1=***", text)


@dataclass(frozen=True)
class Location:
    """Where in the state or app repository a problem sits (1-based line and column)."""

    file: str
    line: int | None = None
    column: int | None = None
    key: str | None = None

    def __str__(self) -> str:
        where = self.file
        if self.line is not None:
            where += f":{self.line}"
            if self.column is not None:
                where += f":{self.column}"
        if self.key:
            where += f" ({self.key})"
        return where


@dataclass(frozen=True)
class Problem:
    """One finding of validation; several make up an ``InvalidState`` error."""

    code: str
    message: str
    location: Location
    remediation: str

    def to_dict(self) -> dict[str, Any]:
        return {
            "code": self.code,
            "message": self.message,
            "file": self.location.file,
            "line": self.location.line,
            "column": self.location.column,
            "key": self.location.key,
            "remediation": self.remediation,
        }

    def __str__(self) -> str:
        return f"{self.location}: {self.message} [{self.code}]\n    fix: {self.remediation}"


class OdooOpsError(Exception):
    """Base of every error the product raises on purpose.

    ``retryable`` tells the engine whether the next pass may succeed without a change in git
    (an unreachable engine) or not (an invalid commit: waiting will not fix it).
    """

    code: str = "internal"
    retryable: bool = False

    def __init__(
        self,
        message: str,
        *,
        remediation: str = "",
        code: str | None = None,
        retryable: bool | None = None,
        problems: tuple[Problem, ...] = (),
    ) -> None:
        self.message = sanitize(message)
        self.remediation = sanitize(remediation)
        if code is not None:
            self.code = code
        if retryable is not None:
            self.retryable = retryable
        self.problems = problems
        super().__init__(self.message)

    def to_dict(self) -> dict[str, Any]:
        doc: dict[str, Any] = {
            "error": self.code,
            "message": self.message,
            "remediation": self.remediation,
            "docs": f"{DOCS_BASE}#{self.code}",
        }
        if self.problems:
            doc["problems"] = [p.to_dict() for p in self.problems]
        return doc

    def render(self) -> str:
        lines = [f"error[{self.code}]: {self.message}"]
        lines.extend(f"  {p}" for p in self.problems)
        if self.remediation:
            lines.append(f"remediation: {self.remediation}")
        return "\n".join(lines)


class InvalidState(OdooOpsError):
    """The state repository (or an app repo's .odooops.yaml) does not validate."""

    code = "invalid_state"


class SourceError(OdooOpsError):
    """A git repository cannot be read, fetched or pushed."""

    code = "source_unavailable"
    retryable = True


class DriverError(OdooOpsError):
    """Docker or PostgreSQL refused or is unreachable."""

    code = "driver_failed"
    retryable = True


class SecretsError(OdooOpsError):
    """The secret store cannot be opened (missing or wrong master key)."""

    code = "secrets_unavailable"


@dataclass(frozen=True)
class ErrorInfo:
    """A frozen, loggable summary of an error for status conditions."""

    code: str
    message: str
    remediation: str = ""
    retryable: bool = False
    extra: dict[str, str] = field(default_factory=dict)

    @classmethod
    def of(cls, exc: BaseException) -> ErrorInfo:
        if isinstance(exc, OdooOpsError):
            return cls(exc.code, exc.message, exc.remediation, exc.retryable)
        return cls("internal", sanitize(f"{type(exc).__name__}: {exc}"), "", True)
