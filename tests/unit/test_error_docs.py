"""Every error a user can meet is explained, and every command a remediation suggests runs.

The codes are collected from the source, not from a list kept by hand: class attributes
``code = "..."``, ``code="..."`` arguments, the first argument of validation problems
(``self.add("...")``, ``_problem("...")``, ``Problem("...")``) and the API's status table. Each
must have a ``## `code` `` heading in docs/errors.md, where ``OdooOpsError.to_dict()["docs"]``
points. Remediations are collected the same way (string literals, f-strings with their
fields as placeholders); every ``odooops ...`` command in them must parse with the CLI's own
argparse parser.
"""

from __future__ import annotations

import argparse
import ast
import contextlib
import io
import re
import shlex
from collections.abc import Iterator
from pathlib import Path

import pytest

from reconciler.api.errors import HTTP_STATUS
from reconciler.cli.main import _parser
from reconciler.core.errors import DOCS_BASE, OdooOpsError

ROOT = Path(__file__).resolve().parents[2]
SOURCES = sorted(
    p
    for d in ("reconciler", "webhooks")
    for p in (ROOT / d).rglob("*.py")
    if "__pycache__" not in p.parts
)
DOCS = ROOT / "docs" / "errors.md"
HEADING = re.compile(r"^## `([a-z_]+)`$", re.MULTILINE)
PROBLEM_MAKERS = {"add", "_problem", "Problem", "Refusal"}
# A command starts a remediation, or follows "... : ", "; ", "(", ", or ", "(and " or a
# backtick; it ends at the first of these (what follows is prose or another command).
COMMAND = re.compile(r"(?:^|: |; |\(|, or |\(and |`)(odooops [^;()`,]*)")
COMMAND_END = re.compile(r"\s{2,}| then | or | and |\.$")
# Placeholders a remediation may use for what the user fills in.
FIELD = "X"


def _trees() -> Iterator[tuple[Path, ast.Module]]:
    for path in SOURCES:
        yield path, ast.parse(path.read_text(encoding="utf-8"))


def _text(node: ast.expr, constants: dict[str, str]) -> str | None:
    """A string expression with every computed part replaced by a placeholder; a name of a
    module-level string constant is that string."""
    if isinstance(node, ast.Constant) and isinstance(node.value, str):
        return node.value
    if isinstance(node, ast.Name) and node.id in constants:
        return constants[node.id]
    if isinstance(node, ast.JoinedStr):
        return "".join(
            v.value
            if isinstance(v, ast.Constant) and isinstance(v.value, str)
            else constants.get(getattr(v.value, "id", ""), FIELD)
            if isinstance(v, ast.FormattedValue)
            else FIELD
            for v in node.values
        )
    if isinstance(node, ast.BinOp) and isinstance(node.op, ast.Add):
        left, right = _text(node.left, constants), _text(node.right, constants)
        if left is not None or right is not None:
            return (left if left is not None else FIELD) + (right if right is not None else FIELD)
    return None


def _assigned(stmt: ast.stmt) -> ast.expr | None:
    """The target of ``NAME = ...`` or ``NAME: T = ...``; None for anything else."""
    if isinstance(stmt, ast.Assign) and len(stmt.targets) == 1:
        return stmt.targets[0]
    return stmt.target if isinstance(stmt, ast.AnnAssign) else None


def _constants(tree: ast.Module) -> dict[str, str]:
    """Module-level ``NAME = "..."`` or ``NAME: Final = "..."`` (or an f-string of earlier
    ones), in order."""
    found: dict[str, str] = {}
    for stmt in tree.body:
        target = _assigned(stmt)
        value = getattr(stmt, "value", None)
        if isinstance(target, ast.Name) and value is not None:
            text = _text(value, found)
            if text is not None:
                found[target.id] = text
    return found


def _codes(node: ast.expr | None, constants: dict[str, str]) -> list[str]:
    """The codes an expression can be: a literal, a module constant, either side of ``if``."""
    if isinstance(node, ast.Constant) and isinstance(node.value, str):
        return [node.value]
    if isinstance(node, ast.Name) and node.id in constants:
        return [constants[node.id]]
    if isinstance(node, ast.IfExp):
        return _codes(node.body, constants) + _codes(node.orelse, constants)
    return []


def raised_codes() -> dict[str, str]:
    """Every error and problem code in the source, with where it first appears."""
    found: dict[str, str] = {}

    def note(code: object, path: Path, node: ast.AST) -> None:
        if isinstance(code, str) and re.fullmatch(r"[a-z][a-z_]*", code):
            found.setdefault(code, f"{path.relative_to(ROOT)}:{getattr(node, 'lineno', 0)}")

    for path, tree in _trees():
        constants = _constants(tree)
        for node in ast.walk(tree):
            if isinstance(node, ast.ClassDef):
                for stmt in node.body:
                    target = _assigned(stmt)
                    if isinstance(target, ast.Name) and target.id == "code":
                        for code in _codes(getattr(stmt, "value", None), constants):
                            note(code, path, stmt)
            elif isinstance(node, ast.Call):
                for kw in node.keywords:
                    if kw.arg == "code":
                        for code in _codes(kw.value, constants):
                            note(code, path, node)
                func = node.func
                name = func.attr if isinstance(func, ast.Attribute) else getattr(func, "id", "")
                if name in PROBLEM_MAKERS and node.args:
                    for code in _codes(node.args[0], constants):
                        note(code, path, node)
    for code in HTTP_STATUS:
        found.setdefault(code, "reconciler/api/errors.py")
    return found


def remediations() -> dict[str, str]:
    """Every remediation text in the source (keyword ``remediation=`` or the fourth argument
    of a validation problem), with where it is."""
    found: dict[str, str] = {}
    for path, tree in _trees():
        assert isinstance(tree, ast.Module)
        constants = _constants(tree)
        for node in ast.walk(tree):
            if not isinstance(node, ast.Call):
                continue
            texts = [_text(kw.value, constants) for kw in node.keywords if kw.arg == "remediation"]
            func = node.func
            name = func.attr if isinstance(func, ast.Attribute) else getattr(func, "id", "")
            if name in PROBLEM_MAKERS and len(node.args) >= 4:
                texts.append(_text(node.args[3], constants))
            elif name == "Refusal" and len(node.args) >= 3:  # (code, message, remediation)
                texts.append(_text(node.args[2], constants))
            for text in texts:
                if text:
                    found.setdefault(text, f"{path.relative_to(ROOT)}:{node.lineno}")
    return found


def commands(text: str) -> list[str]:
    out = []
    for match in COMMAND.finditer(text):
        command = COMMAND_END.split(match.group(1), maxsplit=1)[0].strip()
        out.append(command)
    return out


def parses(command: str) -> str | None:
    """None if the CLI's parser accepts the command, else what it said."""
    words = shlex.split(command)[1:]
    # `a|b|c` offers a choice: the first one stands for all.
    words = [w.split("|", 1)[0] if "|" in w and not w.startswith("-") else w for w in words]
    said = io.StringIO()
    try:
        with contextlib.redirect_stderr(said), contextlib.redirect_stdout(io.StringIO()):
            _parser().parse_args(words)
    except SystemExit as exc:
        return None if exc.code == 0 else said.getvalue().strip().splitlines()[-1]
    except argparse.ArgumentError as exc:
        return str(exc)
    return None


CODES = raised_codes()
DOCUMENTED = HEADING.findall(DOCS.read_text(encoding="utf-8"))


def test_the_collector_sees_the_codes_it_must() -> None:
    """A guard on the collector itself: each kind of place a code is written is found."""
    assert {"invalid_state", "unknown_environment", "duplicate_branch", "wait_timeout"} <= set(
        CODES
    )
    assert {"neutralize_failed", "invalid_webhook", "api_unreachable"} <= set(CODES)
    # Found in the code itself, not only in the API's status table:
    assert CODES["odoo_dump_invalid"].startswith("reconciler/data/database/odoozip.py")
    assert CODES["environment_held"].startswith("reconciler/data/operations.py")


@pytest.mark.parametrize("code", sorted(CODES))
def test_every_code_has_a_section_in_the_error_docs(code: str) -> None:
    assert code in DOCUMENTED, f"{code} ({CODES[code]}) has no `## \\`{code}\\`` in docs/errors.md"


def test_every_section_is_a_code_that_exists_and_appears_once() -> None:
    assert len(DOCUMENTED) == len(set(DOCUMENTED))
    assert sorted(set(DOCUMENTED) - set(CODES)) == []


def test_the_docs_link_of_an_error_is_its_section() -> None:
    doc = OdooOpsError("m", code="unknown_environment").to_dict()
    assert doc["docs"] == f"{DOCS_BASE}#unknown_environment"
    assert DOCS_BASE.endswith("/docs/errors.md")


SUGGESTED = sorted(
    {(command, where) for text, where in remediations().items() for command in commands(text)}
)


def test_the_remediation_collector_finds_commands() -> None:
    assert len(SUGGESTED) > 40
    assert commands("odooops init-key PATH, then pass --master-key-file") == [
        "odooops init-key PATH"
    ]
    assert commands("odooops env list  (and odooops status X)") == [
        "odooops env list",
        "odooops status X",
    ]


@pytest.mark.parametrize(("command", "where"), SUGGESTED, ids=[c for c, _ in SUGGESTED])
def test_every_suggested_command_parses(command: str, where: str) -> None:
    """A remediation that names a command the CLI refuses is worse than none."""
    assert parses(command) is None, f"{where}: `{command}`: {parses(command)}"


def test_the_token_command_an_authorisation_error_suggests_parses() -> None:
    """Built by code, not written as a string: checked on what it builds."""
    from reconciler.api.auth import _create_command

    command = _create_command("ann o'neil", ["env:read", "shell"], ["acme/*", "shop/qa"])
    assert parses(command) is None, command
