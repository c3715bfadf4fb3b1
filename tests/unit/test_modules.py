"""Judging an ``odoo -i``/``-u`` by the module table, not the exit code."""

from __future__ import annotations

import pytest

from reconciler.core.modules import (
    ModuleSnapshot,
    applied,
    explaining_lines,
    problems,
    update_plan,
)

T = "2026-12-03 10:00:00,001 1"
LOG = f"""\
{T} INFO db odoo.modules.loading: updating modules list
{T} WARNING db odoo.modules.module: module old_mod: incompatible version, setting installable=False
{T} WARNING db odoo.modules.loading: invalid module names, ignored: typo_mod
{T} INFO db odoo.modules.loading: Loading module fine_mod (3/5)
{T} INFO db odoo.modules.loading: loading old_mod mentioned at INFO only
{T} CRITICAL db odoo.service.server: Failed to initialize database `db`.
Traceback (most recent call last):
odoo.exceptions.UserError: You try to install module 'x_dep' that depends on module 'nope'.
But the latter module is not available in your system.
  more traceback
  and more
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
    lines = explaining_lines(LOG, ["old_mod", "typo_mod", "x_dep"])
    assert len(lines) == 5
    assert "incompatible version" in lines[0] and "invalid module names" in lines[1]
    # A record on several lines: its first line and the message its traceback ends with.
    assert "Failed to initialize" in lines[2]
    assert "depends on module 'nope'" in lines[3] and "not available" in lines[4]
    assert "traceback" not in "".join(lines).lower()
    assert explaining_lines("", []) == []


RECORDED = {"addons": {"a": "t1", "b": "t2"}, "base": "img1", "wanted": ["a", "base"]}


def test_only_installed_addons_whose_tree_changed_are_updated() -> None:
    plan = update_plan(RECORDED, {"a": "t1", "b": "t9"}, "img1", ["base", "a"], ["base", "a", "b"])
    assert (plan.install, plan.update) == ((), ("b",))
    assert plan.args() == ["-u", "b"]


def test_a_newly_wanted_module_is_installed_not_updated() -> None:
    plan = update_plan(
        RECORDED, {"a": "t1", "b": "t2", "c": "t3"}, "img1", ["base", "a", "c"], ["base", "a", "b"]
    )
    assert (plan.install, plan.update) == (("c",), ())


def test_nothing_changed_is_an_empty_plan_a_code_only_deploy() -> None:
    plan = update_plan(RECORDED, {"a": "t1", "b": "t2"}, "img1", ["base", "a"], ["base", "a", "b"])
    assert plan.empty and str(plan) == "no module to update (no addon changed)"


@pytest.mark.parametrize(
    ("recorded", "why"),
    [
        (None, "no module hashes recorded yet"),
        ({**RECORDED, "base": "img0"}, "the Odoo base image changed"),
    ],
)
def test_a_new_base_image_or_no_record_updates_every_wanted_module(
    recorded: dict[str, object] | None, why: str
) -> None:
    plan = update_plan(recorded, {"a": "t1"}, "img1", ["base", "a", "sale"], ["base", "a"])
    assert (plan.install, plan.update, plan.why) == (("a", "sale"), ("a", "sale"), why)


def test_without_the_database_the_modules_wanted_last_time_count_as_installed() -> None:
    plan = update_plan(RECORDED, {"a": "t5", "b": "t2"}, "img1", ["base", "a"])
    assert (plan.install, plan.update) == ((), ("a",))
    assert applied({"a": "t5"}, "img1", ["a", "base", "a"]) == {
        "addons": {"a": "t5"},
        "base": "img1",
        "wanted": ["a", "base"],
    }


def test_the_modules_a_failed_run_committed_are_the_ones_whose_version_moved() -> None:
    before = ModuleSnapshot({}, False, {"m1": "19.0.1.0", "m2": "19.0.1.0", "m3": "19.0.1.0"})
    after = ModuleSnapshot({}, False, {"m1": "19.0.1.1", "m2": "19.0.1.1", "m3": "19.0.1.0"})
    assert after.advanced(before) == ["m1", "m2"]
    assert before.advanced(before) == []
