"""The app config cache of the engine's sources: one parse per blob, errors per label."""

from __future__ import annotations

from typing import Any

import pytest

from reconciler.core import validation
from reconciler.core.errors import InvalidState
from reconciler.engine.sources import AppConfigCache

APP = b"version: 1\nmodules: [acme_sale]\ntiers:\n  production: {workers: 6}\n"
LABELS = ("acme@aaaaaaaaaaaa:.odooops.yaml", "acme@bbbbbbbbbbbb:.odooops.yaml")


@pytest.fixture
def parses(monkeypatch: pytest.MonkeyPatch) -> list[str]:
    """The label of every call to ``validate_app_config``, in order."""
    calls: list[str] = []
    validate = validation.validate_app_config

    def counting(content: bytes, path: str = ".odooops.yaml") -> Any:
        calls.append(path)
        return validate(content, path)

    monkeypatch.setattr(validation, "validate_app_config", counting)
    return calls


def test_the_same_content_at_two_revisions_is_parsed_once(parses: list[str]) -> None:
    cache = AppConfigCache()
    first, second = (cache(bytes(APP), label) for label in LABELS)
    assert first is second
    assert first["modules"] == ["acme_sale"]
    assert parses == [LABELS[0]]


def test_other_content_is_parsed_on_its_own(parses: list[str]) -> None:
    cache = AppConfigCache()
    cache(APP, LABELS[0])
    assert cache(APP.replace(b"6", b"7"), LABELS[1])["tiers"] == {"production": {"workers": 7}}
    assert parses == list(LABELS)


def test_an_invalid_file_names_the_revision_it_was_read_at(parses: list[str]) -> None:
    cache = AppConfigCache()
    for label in LABELS:
        with pytest.raises(InvalidState) as info:
            cache(b"version: 1\ncolour: blue\n", label)
        assert info.value.message == f"{label} is invalid: 1 problem"
        assert [p.location.file for p in info.value.problems] == [label]
    assert parses == list(LABELS)


def test_the_shared_mapping_is_read_only() -> None:
    config = AppConfigCache()(APP, LABELS[0])
    with pytest.raises(TypeError):
        config["modules"] = []  # type: ignore[index]


def test_the_cache_is_bounded(parses: list[str]) -> None:
    """Past ``maxsize`` blobs the least recently used is dropped, and parsed again if read."""
    cache = AppConfigCache(maxsize=1)
    cache(APP, LABELS[0])
    cache(b"version: 1\n", LABELS[0])
    cache(APP, LABELS[1])
    assert parses == [LABELS[0], LABELS[0], LABELS[1]]
