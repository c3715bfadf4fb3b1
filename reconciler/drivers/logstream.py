"""Container logs read on the event loop: no thread is held by a stream, idle or not.

``odooops logs --follow`` keeps a stream open for as long as someone watches. Read through the
Docker SDK, each stream held a worker thread blocked on a queue, and some forty idle streams
(the API's thread pool) froze every other route, with threads left behind after the client
went away. Here the Docker engine's HTTP API is read asynchronously (httpx over the engine's
socket): a stream costs a socket and a coroutine, ends when the client leaves (the response
is cancelled, which cancels the readers and closes their connections), and holds nothing.
"""

from __future__ import annotations

import asyncio
import contextlib
import struct
from collections.abc import AsyncIterator, Sequence
from dataclasses import dataclass
from urllib.parse import urlsplit

import httpx

from reconciler.core.errors import DriverError

_HEADER = struct.Struct(">BxxxL")  # stream type, 3 padding bytes, payload size
_MULTIPLEXED = "application/vnd.docker.multiplexed-stream"
QUEUE_LINES = 1000


@dataclass(frozen=True)
class Source:
    """One container's log: its id and the label shown before each line."""

    container: str
    label: str


def transport_for(docker_url: str) -> tuple[httpx.AsyncBaseTransport, str]:
    """An async transport to the engine and the base URL to use with it."""
    if docker_url.startswith("unix://"):
        return httpx.AsyncHTTPTransport(uds=docker_url.removeprefix("unix://")), "http://docker"
    parts = urlsplit(docker_url)
    if parts.scheme == "tcp" and parts.hostname:
        return httpx.AsyncHTTPTransport(), f"http://{parts.hostname}:{parts.port or 2375}"
    raise DriverError(
        f"log streaming needs the engine on a unix socket or plain tcp, not {parts.scheme}://",
        remediation="set DOCKER_HOST=unix:///var/run/docker.sock for the daemon",
    )


async def stream_logs(
    docker_url: str,
    sources: Sequence[Source],
    *,
    follow: bool,
    since: int | None,
    tail: int,
) -> AsyncIterator[str]:
    """Lines of every source as ``label | timestamp line``.

    Without ``follow`` the lines of all sources are merged by timestamp. With it, lines come
    as they are written; the iterator ends when every container's stream ends, or when the
    caller stops iterating (its connections are closed then).
    """
    transport, base = transport_for(docker_url)
    params: dict[str, str] = {
        "stdout": "1",
        "stderr": "1",
        "timestamps": "1",
        "tail": str(tail),
        "follow": "1" if follow else "0",
    }
    if since is not None:
        params["since"] = str(since)
    async with httpx.AsyncClient(transport=transport, base_url=base, timeout=None) as client:
        if not follow:
            lines: list[tuple[str, str]] = []
            for source in sources:
                async for line in _lines(client, source, params):
                    lines.append((line[:30], f"{source.label} | {line}"))
            for _, text in sorted(lines, key=lambda pair: pair[0]):
                yield text
            return
        queue: asyncio.Queue[str | None] = asyncio.Queue(maxsize=QUEUE_LINES)

        async def pump(source: Source) -> None:
            try:
                async for line in _lines(client, source, params):
                    await queue.put(f"{source.label} | {line}")
            except (httpx.HTTPError, DriverError):
                pass  # the container went away: its stream simply ends
            finally:
                await queue.put(None)

        tasks = [asyncio.create_task(pump(s)) for s in sources]
        remaining = len(tasks)
        try:
            while remaining:
                item = await queue.get()
                if item is None:
                    remaining -= 1
                else:
                    yield item
        finally:
            for task in tasks:
                task.cancel()
            for task in tasks:
                with contextlib.suppress(asyncio.CancelledError, Exception):
                    await task


async def _lines(
    client: httpx.AsyncClient, source: Source, params: dict[str, str]
) -> AsyncIterator[str]:
    async with client.stream("GET", f"/containers/{source.container}/logs", params=params) as resp:
        if resp.status_code >= 400:
            await resp.aread()
            raise DriverError(f"logs of {source.label}: the engine answered {resp.status_code}")
        multiplexed = resp.headers.get("content-type", "").startswith(_MULTIPLEXED)
        frames = b""  # an incomplete multiplexing frame, finished by the next chunk
        text = b""  # an unfinished line
        async for chunk in resp.aiter_bytes():
            if multiplexed:
                payload, frames = _demultiplex(frames + chunk)
            else:
                payload = chunk
            *done, text = (text + payload).split(b"\n")
            for line in done:
                yield line.decode(errors="replace")
        if text:
            yield text.decode(errors="replace")


def _demultiplex(buffer: bytes) -> tuple[bytes, bytes]:
    """The payload of every complete frame of Docker's stdout/stderr multiplexing, and the
    bytes of an incomplete frame left for the next chunk."""
    out = bytearray()
    while len(buffer) >= _HEADER.size:
        _stream, size = _HEADER.unpack_from(buffer)
        if len(buffer) < _HEADER.size + size:
            break
        out += buffer[_HEADER.size : _HEADER.size + size]
        buffer = buffer[_HEADER.size + size :]
    return bytes(out), buffer
