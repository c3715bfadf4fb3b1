"""The order ``Engine.reconcile`` applies environments in, one pass: a copy after its source
when both are created, a removed production after everything else."""

from __future__ import annotations

from reconciler.core.model import Desired, EnvKey
from reconciler.engine.engine import _waves
from tests.factories import desired


def test_a_removed_production_goes_after_the_copies_removed_with_it() -> None:
    prod, staging, dev = EnvKey("acme", "prod"), EnvKey("acme", "staging"), EnvKey("acme", "dev")
    qa = desired("qa", db_source="fresh")
    world = Desired("c", {qa.key: qa})
    tiers = {prod: "production", staging: "staging", dev: "dev"}
    assert _waves([prod, staging, qa.key, dev], world, tiers) == [[staging, qa.key, dev], [prod]]


def test_a_copy_created_with_its_source_goes_second() -> None:
    prod = desired("prod")
    copy = desired("staging", db_source="prod")
    world = Desired("c", {prod.key: prod, copy.key: copy})
    assert _waves([copy.key, prod.key], world) == [[prod.key], [copy.key]]
