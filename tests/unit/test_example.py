"""The example a reader meets first: make run's state, and the README's QA file added to it."""

from __future__ import annotations

import re
from pathlib import Path

from reconciler.core.config import load_state
from reconciler.core.model import EnvKey, Tier

ROOT = Path(__file__).resolve().parents[2]


def example_state() -> dict[str, bytes]:
    """state-repo-template/ plus examples/state/, placeholders filled as run-example.sh does."""
    files: dict[str, bytes] = {}
    for base in (ROOT / "state-repo-template", ROOT / "examples" / "state"):
        for path in sorted(base.rglob("*")):
            if path.is_file():
                files[path.relative_to(base).as_posix()] = path.read_bytes()
    project = files["projects/acme.yaml"].decode()
    project = project.replace("@APP_REPO_URL@", "file:///srv/app.git")
    files["projects/acme.yaml"] = project.replace("@ODOO_IMAGE@", "odoo:19.0").encode()
    return files


def readme_qa_file() -> tuple[str, str]:
    """The path and content the README's quick start writes with its here-document."""
    text = (ROOT / "README.md").read_text(encoding="utf-8")
    block = re.search(r"<!-- quickstart: git -->\n```sh\n(.*?)```", text, re.DOTALL)
    assert block is not None
    heredoc = re.search(r"cat > (\S+) <<'YAML'\n(.*?)\nYAML\n", block.group(1), re.DOTALL)
    assert heredoc is not None
    return heredoc.group(1), heredoc.group(2) + "\n"


def test_the_readme_qa_environment_validates_on_a_branch_the_example_has() -> None:
    """The first thing a reader adds is valid: on a branch of its own, not staging's."""
    path, content = readme_qa_file()
    files = {**example_state(), path: content.encode()}
    state = load_state(files, "c" * 40)
    qa = next(s for s in state.environments if s.key == EnvKey("acme", "qa"))
    assert qa.tier is Tier.STAGING
    branches = re.findall(
        r"git_as_user -C \"\$tmp\" push -q \"\$WORK/app.git\" (.*)",
        (ROOT / "scripts" / "run-example.sh").read_text(),
    )
    assert qa.branch in branches[0].split(), "make run's app repository has no such branch"
    others = [s.branch for s in state.environments if s.key != qa.key]
    assert qa.branch not in others


def test_the_readme_cli_example_names_the_same_branch() -> None:
    """Through git or through the CLI, the QA is the same environment on the same branch."""
    text = (ROOT / "README.md").read_text(encoding="utf-8")
    _, content = readme_qa_file()
    branch = re.search(r"branch: (\S+)", content)
    assert branch is not None
    assert f"odooops env create acme/qa --branch {branch.group(1)} " in text
