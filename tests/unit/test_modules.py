"""Judging an ``odoo -i``/``-u`` by the module table, not the exit code."""

from __future__ import annotations

from reconciler.core.modules import ModuleSnapshot, explaining_lines, problems

LOG = """\
2026-12-03 10:00:00,001 1 INFO db odoo.modules.loading: updating modules list
WARNING db odoo.modules.module: module old_mod: incompatible version, setting installable=False
2026-12-03 10:00:00,003 1 WARNING db odoo.modules.loading: invalid module names, ignored: typo_mod
2026-12-03 10:00:00,004 1 INFO db odoo.modules.loading: Loading module fine_mod (3/5)
2026-12-03 10:00:00,005 1 INFO db odoo.modules.loading: loading old_mod mentioned at INFO only
"""


def test_wanted_modules_not_installed_are_named_with_why() -> None:
    snap = ModuleSnapshot({"base": "installed", "old_mod": "uninstallable"}, False)
    found = problems(snap, ["base", "old_mod", "typo_mod"])
    assert [(p.name, p.state) for p in found] == [("old_mod", "uninstallable"), ("typo_mod", None)]
    assert "version is not of series 19.0" in found[0].why
    assert "__manifest__.py does not parse" in found[1].why


def test_a_module_left_in_a_transient_state_is_a_problem_even_when_not_wanted() -> None:
    snap = ModuleSnapshot({"base": "installed", "sale": "to upgrade"}, False)
    assert [str(p) for p in problems(snap, ["base"])] == [
        "sale (to upgrade): left 'to upgrade': the run stopped before it"
    ]


def test_all_installed_is_no_problem() -> None:
    assert (
        problems(ModuleSnapshot({"base": "installed", "web": "installed"}, False), ["base"]) == []
    )


def test_the_lines_kept_are_warnings_naming_a_module_or_saying_why() -> None:
    lines = explaining_lines(LOG, ["old_mod", "typo_mod"])
    assert len(lines) == 2
    assert "incompatible version" in lines[0] and "invalid module names" in lines[1]
    assert explaining_lines("", []) == []
