"""Choosing how to copy a database: by where it lives and how long the source would pause."""

from __future__ import annotations

from reconciler.data.database.copy import Strategy, choose_strategy
from reconciler.data.database.endpoint import Endpoint

GB = 1024**3
SHARED = Endpoint("127.0.0.1", 5432, "postgres", "acme__prod", server="shared")


def test_same_server_small_database_is_a_template_copy() -> None:
    choice = choose_strategy(SHARED, SHARED.with_db("tmp"), 1 * GB, max_quiesce_seconds=5)
    assert choice.strategy is Strategy.TEMPLATE
    assert "pauses for about 1.3 s" in choice.reason


def test_a_pause_above_the_bound_streams_instead() -> None:
    choice = choose_strategy(SHARED, SHARED.with_db("tmp"), 40 * GB, max_quiesce_seconds=5)
    assert choice.strategy is Strategy.STREAM
    assert "max_quiesce_seconds" in choice.reason


def test_another_server_always_streams() -> None:
    dedicated = Endpoint("172.20.0.5", 5432, "odooops__acme__dev", "acme__dev", server="dedicated")
    choice = choose_strategy(SHARED, dedicated, 1, max_quiesce_seconds=60)
    assert choice.strategy is Strategy.STREAM


def test_zero_quiesce_never_pauses_the_source() -> None:
    choice = choose_strategy(SHARED, SHARED.with_db("tmp"), 10 * 1024**2, max_quiesce_seconds=0)
    assert choice.strategy is Strategy.STREAM


def test_the_password_is_not_in_the_endpoint_repr_and_only_in_the_tools_env() -> None:
    ep = Endpoint("db", 5432, "admin", "acme", password="s3cret")
    assert "s3cret" not in repr(ep) and "s3cret" not in str(ep)
    assert ep.env()["PGPASSWORD"] == "s3cret"
