"""A tiny self-delimiting container: several named streams of unknown length in one stream.

A backup holds the database dump and the filestore, both produced on the fly by other
programs. tar cannot hold them without spooling: it writes each member's size before its
data. Here each part is a sequence of length-prefixed frames ended by an empty frame, so a
writer never needs to know a size in advance and a reader never needs to seek.

Format (integers big-endian)::

    stream = b"ODOOOPS-PRT\\x01" | part* | b"E"
    part   = b"P" | name length (2) | name (UTF-8) | frame* | empty frame
    frame  = data length (4, at most 1 MiB) | data

The container carries no checksum: it is written inside the authenticated stream of
``crypto``, which already rejects any change. A stream without its end marker is reported as
corrupt all the same, so a truncation is never mistaken for a backup with fewer parts.
"""

from __future__ import annotations

import struct
from collections.abc import Callable, Iterator
from contextlib import contextmanager

from reconciler.data.backup.errors import BackupCorrupt

__all__ = ["MAX_FRAME", "Part", "PartStream", "PartWriter", "read_parts"]

MAGIC = b"ODOOOPS-PRT\x01"
MAX_FRAME = 1 << 20
MAX_NAME = 1024
_PART = b"P"
_END = b"E"


class PartStream:
    """The writable side of one part; obtained from ``PartWriter.part``."""

    def __init__(self, write: Callable[[bytes], object]) -> None:
        self._write = write
        self.bytes_written = 0
        self.closed = False

    def write(self, data: bytes) -> int:
        if self.closed:
            raise ValueError("write to a part that has ended")
        view = memoryview(data)
        # An empty frame would end the part, so empty writes emit nothing.
        for start in range(0, len(view), MAX_FRAME):
            frame = view[start : start + MAX_FRAME]
            self._write(struct.pack(">I", len(frame)) + frame.tobytes())
        self.bytes_written += len(view)
        return len(view)


class PartWriter:
    """Write named parts one after the other, then ``close()`` to mark the end of the stream."""

    def __init__(self, write: Callable[[bytes], object]) -> None:
        self._write = write
        self._names: set[str] = set()
        self._open = False
        self._broken = False
        self._closed = False
        self._write(MAGIC)

    @contextmanager
    def part(self, name: str) -> Iterator[PartStream]:
        """A part that ends when the block exits normally.

        A block that raises leaves the part unterminated on purpose: the producer failed, and
        the stream must not read as if the part were complete.
        """
        if self._closed:
            raise ValueError("the part writer is closed")
        if self._broken:
            raise ValueError("a part failed: this stream cannot be completed")
        if self._open:
            raise ValueError("parts cannot nest: finish the open part first")
        raw = name.encode("utf-8")
        if not raw or len(raw) > MAX_NAME:
            raise ValueError(f"a part name has 1 to {MAX_NAME} bytes")
        if name in self._names:
            raise ValueError(f"part {name!r} was already written")
        self._names.add(name)
        self._write(_PART + struct.pack(">H", len(raw)) + raw)
        self._open = True
        stream = PartStream(self._write)
        try:
            yield stream
        except BaseException:
            self._broken = True
            raise
        finally:
            stream.closed = True
        self._write(struct.pack(">I", 0))
        self._open = False

    def close(self) -> None:
        """Write the end marker; calling it again does nothing."""
        if self._closed:
            return
        if self._broken:
            raise ValueError("a part failed: this stream cannot be completed")
        if self._open:
            raise ValueError("close() inside an open part")
        self._write(_END)
        self._closed = True


class _Source:
    def __init__(self, read: Callable[[int], bytes]) -> None:
        self._read = read

    def exact(self, n: int, what: str) -> bytes:
        chunks = []
        missing = n
        while missing > 0:
            chunk = self._read(missing)
            if not chunk:
                raise BackupCorrupt(f"the backup is truncated inside {what}")
            chunks.append(chunk)
            missing -= len(chunk)
        return b"".join(chunks)

    def at_end(self) -> bool:
        return not self._read(1)


class Part:
    """The readable data of one part; valid until the iteration moves to the next part."""

    def __init__(self, name: str, source: _Source) -> None:
        self.name = name
        self._source = source
        self._frame = b""
        self._offset = 0
        self._ended = False
        self._detached = False

    def read(self, n: int = -1) -> bytes:
        if self._detached:
            raise ValueError(f"part {self.name!r} was left behind by the iteration")
        out = bytearray()
        while n < 0 or len(out) < n:
            if self._offset == len(self._frame) and not self._next_frame():
                break
            want = len(self._frame) - self._offset if n < 0 else n - len(out)
            chunk = self._frame[self._offset : self._offset + want]
            self._offset += len(chunk)
            out += chunk
        return bytes(out)

    def _next_frame(self) -> bool:
        if self._ended:
            return False
        (length,) = struct.unpack(">I", self._source.exact(4, f"part {self.name!r}"))
        if length > MAX_FRAME:
            raise BackupCorrupt(f"the backup is damaged: a frame of part {self.name!r} is too long")
        if length == 0:
            self._ended = True
            return False
        self._frame = self._source.exact(length, f"part {self.name!r}")
        self._offset = 0
        return True

    def _skip(self) -> None:
        while self._next_frame():
            pass
        self._frame = b""
        self._detached = True


def read_parts(read: Callable[[int], bytes]) -> Iterator[tuple[str, Part]]:
    """Yield each part in order; moving on skips whatever the caller left unread."""
    source = _Source(read)
    if source.exact(len(MAGIC), "its container header") != MAGIC:
        raise BackupCorrupt("the backup content is not an OdooOps part stream (bad magic bytes)")
    while True:
        tag = source.exact(1, "its part list (no end marker)")
        if tag == _END:
            if not source.at_end():
                raise BackupCorrupt("the backup is damaged: data follows its end marker")
            return
        if tag != _PART:
            raise BackupCorrupt("the backup is damaged: unknown record in its part list")
        (size,) = struct.unpack(">H", source.exact(2, "a part name"))
        try:
            name = source.exact(size, "a part name").decode("utf-8")
        except UnicodeDecodeError:
            raise BackupCorrupt("the backup is damaged: a part name is not UTF-8") from None
        part = Part(name, source)
        yield name, part
        part._skip()
