"""The HTTP side of webhooks: verify, de-duplicate, answer at once, trigger a pass.

Forges expect an answer within seconds and never re-send a failed delivery by themselves, so
the receiver does no work beyond checking the signature and queuing a reconcile (the pass is
level-triggered: it needs no more than "something changed"). A redelivery keeps its delivery
id, which is the idempotency key; the last 10,000 ids are remembered. A delivery that concerns
nothing the daemon deploys is still accepted (202, ``triggered: false``), so the forge records
it as delivered and stops retrying, but it triggers no pass.

The route is public, so its body is read under a bound before anything else: the signature
covers the whole body, and an unauthenticated sender must not be able to make the daemon
buffer more than a forge ever sends (GitHub's limit, 25 MiB) to find out it is not signed.
"""

from __future__ import annotations

import threading
from collections import OrderedDict
from collections.abc import Callable

from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from reconciler.core.errors import OdooOpsError
from webhooks.events import Event, parse
from webhooks.signatures import InvalidDelivery, verify

FORGES = ("github", "gitlab", "gitea")
MAX_BODY_BYTES = 25 * 2**20  # GitHub's cap on a delivery's payload; GitLab and Gitea send less


class PayloadTooLarge(OdooOpsError):
    code = "payload_too_large"


async def bounded_body(request: Request, limit: int = MAX_BODY_BYTES) -> bytes:
    """The body, refused (``payload_too_large``) as soon as it is known to exceed ``limit``:
    from its declared length before a byte is read, or once more than ``limit`` has come."""
    refused = PayloadTooLarge(
        f"the delivery is larger than {limit // 2**20} MiB, more than any forge sends",
        remediation="check the webhook's URL and sender; forges never send more",
    )
    declared = request.headers.get("content-length", "")
    if declared.isdigit() and int(declared) > limit:
        raise refused
    chunks: list[bytes] = []
    size = 0
    async for chunk in request.stream():
        size += len(chunk)
        if size > limit:
            raise refused
        chunks.append(chunk)
    return b"".join(chunks)


class DeliveryLog:
    """Bounded memory of delivery ids seen (thread-safe)."""

    def __init__(self, size: int = 10_000) -> None:
        self._seen: OrderedDict[str, None] = OrderedDict()
        self._size = size
        self._lock = threading.Lock()

    def first_time(self, delivery: str) -> bool:
        if not delivery:
            return True
        with self._lock:
            if delivery in self._seen:
                return False
            self._seen[delivery] = None
            if len(self._seen) > self._size:
                self._seen.popitem(last=False)
            return True


def webhook_route(
    secret: Callable[[], str | None],
    on_event: Callable[[Event], bool | str],
    count: Callable[[str, str, str], None] = lambda forge, event, result: None,
    log: DeliveryLog | None = None,
) -> Route:
    """``POST /v1/webhooks/{forge}``: public, authenticated by the delivery's signature.

    ``on_event`` gets every new authentic delivery and answers whether it triggered a pass
    (``True``), or why not (a text the answer carries as ``reason``, for the forge's log of
    deliveries).
    """
    deliveries = log or DeliveryLog()

    async def receive(request: Request) -> Response:
        forge = str(request.path_params["forge"])
        if forge not in FORGES:
            raise OdooOpsError(
                f"unknown forge {forge!r}",
                code="not_found",
                remediation=f"use /v1/webhooks/{{{'|'.join(FORGES)}}}",
            )
        key = secret()
        if not key:
            raise OdooOpsError(
                "webhooks are not configured on this daemon",
                code="not_found",
                remediation="start it with --webhook-secret-file FILE",
            )
        try:
            body = await bounded_body(request)
        except PayloadTooLarge:
            count(forge, "unknown", "too_large")
            raise
        try:
            sender = verify(request.headers, body, key)
            event = parse(request.headers, body)
        except InvalidDelivery:
            count(forge, "unknown", "invalid")
            raise
        if sender != forge:
            count(forge, event.kind, "invalid")
            raise InvalidDelivery(
                f"a {sender} delivery was sent to /v1/webhooks/{forge}",
                remediation=f"point the webhook at /v1/webhooks/{sender}",
            )
        if not deliveries.first_time(event.delivery):
            count(forge, event.kind, "duplicate")
            return JSONResponse({"accepted": False, "duplicate": True}, status_code=200)
        outcome = on_event(event)
        triggered = outcome is True
        count(forge, event.kind, "accepted" if triggered else "ignored")
        doc: dict[str, object] = {"accepted": True, "event": event.kind, "triggered": triggered}
        if isinstance(outcome, str):
            doc["reason"] = outcome
        return JSONResponse(doc, status_code=202)

    return Route("/v1/webhooks/{forge}", receive, methods=["POST"], name="receive_webhook")
