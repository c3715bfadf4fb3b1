"""How the engine retries and reports a failed environment run."""

from __future__ import annotations

import logging

import pytest

from reconciler.core.errors import OdooOpsError
from reconciler.core.model import EnvKey
from reconciler.engine.engine import (
    BACKOFF_CAP,
    UNAVAILABLE_CAP,
    report_failure,
    retry_delay,
)
from reconciler.engine.steps import Interrupted

STAGING = EnvKey("acme", "staging")


def error(code: str) -> OdooOpsError:
    return OdooOpsError("it failed", code=code, remediation="odooops status acme/staging")


def test_a_failing_deployment_backs_off_doubling_up_to_its_cap() -> None:
    delays = [retry_delay(error("odoo_init_failed"), n) for n in range(1, 10)]
    assert delays[:3] == [5.0, 10.0, 20.0]
    assert max(delays) == BACKOFF_CAP


@pytest.mark.parametrize("code", ["docker_unreachable", "database_unreachable"])
def test_an_unavailable_service_is_retried_at_least_every_minute(code: str) -> None:
    assert retry_delay(error(code), 20) == UNAVAILABLE_CAP


def test_a_copy_waiting_for_its_source_is_retried_at_least_every_minute() -> None:
    """Production's first -i on real Odoo takes minutes: its staging copy must not then sit
    three more minutes in back-off."""
    assert retry_delay(error("copy_source_not_ready"), 20) == UNAVAILABLE_CAP


def test_an_interrupted_step_is_retried_at_once() -> None:
    assert retry_delay(Interrupted("stopped between steps"), 3) == 0.0


def test_a_copy_waiting_for_its_source_is_logged_as_waiting_not_as_an_error(
    caplog: pytest.LogCaptureFixture,
) -> None:
    """A first `make run` converges staging after production: no ERROR line for that order."""
    caplog.set_level(logging.INFO, logger="odooops.engine")
    report_failure(STAGING, error("copy_source_not_ready"))
    report_failure(STAGING, error("odoo_init_failed"))
    levels = [(r.levelno, r.getMessage()) for r in caplog.records]
    assert levels[0] == (logging.INFO, "acme/staging: waiting: it failed")
    assert levels[1][0] == logging.ERROR
    assert "odoo_init_failed" in levels[1][1] and "odooops status acme/staging" in levels[1][1]
