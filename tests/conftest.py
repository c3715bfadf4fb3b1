"""Suite-wide collection order: the slow tests first.

The parallel phase hands tests to its workers in collection order; a fault matrix of two
minutes collected last would keep one worker busy long after the others ran out of work.
"""

from __future__ import annotations

import pytest


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    items.sort(key=lambda item: item.get_closest_marker("slow") is None)  # stable: order kept
