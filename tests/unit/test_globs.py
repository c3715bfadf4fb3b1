"""Specification of branch globs: what a pattern matches, and when a rule hides another."""

from __future__ import annotations

import pytest

from reconciler.core.globs import matches, shadows


@pytest.mark.parametrize(
    ("pattern", "branch", "expected"),
    [
        ("main", "main", True),
        ("main", "main2", False),
        ("main", "mai", False),
        ("*", "main", True),
        ("*", "feature/x", False),
        ("*", "", True),
        ("feature/*", "feature/login", True),
        ("feature/*", "feature/", True),
        ("feature/*", "feature/a/b", False),
        ("feature/*", "feature", False),
        ("feature/*", "hotfix/login", False),
        ("**", "a/b/c", True),
        ("**", "", True),
        ("release/**", "release/1.0/hotfix", True),
        ("release/**", "release/1.0", True),
        ("**/fix", "a/b/fix", True),
        ("**/fix", "fix", False),
        ("a**b", "a/x/b", True),
        ("v?", "v1", True),
        ("v?", "v12", False),
        ("v?", "v/", False),
        ("v[0-9]", "v7", True),
        ("v[0-9]", "va", False),
        ("v[!0-9]", "va", True),
        ("v[!0-9]", "v7", False),
        ("v[!0-9]", "v/", False),
        ("v[]x]", "v]", True),
        ("v[-x]", "v-", True),
        ("v[", "v[", True),
        ("v[abc", "v[abc", True),
        ("[^a]", "^", True),
        ("a.b", "a.b", True),
        ("a.b", "axb", False),
        ("a+(b)", "a+(b)", True),
        ("main", "main\n", False),
    ],
)
def test_matches(pattern: str, branch: str, expected: bool) -> None:
    assert matches(pattern, branch) is expected


@pytest.mark.parametrize(
    ("earlier", "later"),
    [
        ("**", "main"),
        ("**", "feature/*"),
        ("**", "**"),
        ("**", "a/**/b"),
        ("*", "main"),
        ("*", "ma?n"),
        ("*", "*"),
        ("feature/*", "feature/x"),
        ("feature/*", "feature/a*"),
        ("feature/*", "feature/[ab]"),
        ("feature/*", "feature/?*"),
        ("release/**", "release/*"),
        ("release/**", "release/*/hotfix"),
        ("*/*", "feature/*"),
        ("?", "[abc]"),
        ("[a-z]", "[b-d]"),
        ("[!0-9]", "[a-z]"),
        ("main", "main"),
        ("a*", "ab*"),
        ("*b", "a*b"),
    ],
)
def test_shadows_when_every_branch_of_later_is_matched_by_earlier(earlier: str, later: str) -> None:
    assert shadows(earlier, later)


@pytest.mark.parametrize(
    ("earlier", "later"),
    [
        ("*", "a/b"),
        ("*", "**"),
        ("*", "feature/*"),
        ("release/*", "release/**"),
        ("release/*", "release/*/hotfix"),
        ("feature/a*", "feature/*"),
        ("feature/x", "feature/*"),
        ("main", "develop"),
        ("main", "mai?"),
        ("[a-c]", "[a-d]"),
        ("[!a]", "?"),
        ("?", "*"),
        ("a*", "*a"),
        ("**/fix", "**fix"),
        ("feature/*", "feature/**"),
    ],
)
def test_does_not_shadow_when_later_can_match_a_branch_earlier_misses(
    earlier: str, later: str
) -> None:
    assert not shadows(earlier, later)
