"""The JSON object of a request: known fields, required ones present, each of its type.

One parser for every route that takes a body, so every route refuses the same way: a field of
the wrong type is refused (``bool("false")`` would silently ask for something else, and
``str([])`` would become a name), an unknown field is named, a missing one too.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from typing import Any

from starlette.requests import Request

from reconciler.core.errors import OdooOpsError

_KIND = {str: "a string", dict: "an object", bool: "true or false", list: "a list"}


class InvalidRequest(OdooOpsError):
    code = "invalid_request"


async def json_object(
    request: Request,
    types: Mapping[str, type],
    required: frozenset[str] | set[str] = frozenset(),
    nullable: frozenset[str] | set[str] = frozenset(),
) -> dict[str, Any]:
    """The body as a dict whose keys are among ``types`` (an empty body is ``{}``)."""
    raw = await request.body()
    if not raw:
        body: Any = {}
    else:
        try:
            body = json.loads(raw)
        except (ValueError, RecursionError):  # RecursionError: nesting deeper than the stack
            raise InvalidRequest(
                "the request body is not JSON", remediation="send a JSON object"
            ) from None
    if not isinstance(body, dict):
        raise InvalidRequest(
            "the request body must be a JSON object", remediation="send a JSON object"
        )
    unknown = sorted(set(body) - set(types))
    if unknown:
        raise InvalidRequest(
            f"unknown fields: {', '.join(unknown)}",
            remediation=f"allowed fields: {', '.join(sorted(types))}",
        )
    missing = sorted(set(required) - set(body))
    if missing:
        raise InvalidRequest(
            f"missing fields: {', '.join(missing)}",
            remediation=f"add {', '.join(missing)} to the request body",
        )
    for field, value in sorted(body.items()):
        expected = types[field]
        if not isinstance(value, expected) and not (value is None and field in nullable):
            kind = _KIND[expected]
            raise InvalidRequest(
                f"{field} must be {kind}{' or null' if field in nullable else ''}",
                remediation=f"send {field} as {kind}; see /v1/openapi.json",
            )
    return body
