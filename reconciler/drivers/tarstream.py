"""Streaming rewrites of filestore tar archives, never holding more than one file in memory.

Docker hands a filestore out as a tar whose top directory is the database name
(``get_archive('/var/lib/odoo/filestore/<db>')``) and takes one back the same way
(``put_archive``). Moving a filestore to a database of another name only renames that top
directory, so the archive is re-streamed member by member with the new name.

``put_archive`` unpacks as root and keeps the owners, modes and types the tar says, so what
goes into a volume is re-streamed once more by ``owned``: plain files and directories only,
owned by the filestore's owner, without set-id bits. No helper then needs the power to
``chown``.
"""

from __future__ import annotations

import io
import tarfile
from collections.abc import Iterable, Iterator, Mapping

from reconciler.core.errors import OdooOpsError


class IterReader(io.RawIOBase):
    """A readable file over an iterable of byte chunks (what tarfile's stream mode needs)."""

    def __init__(self, chunks: Iterable[bytes]) -> None:
        self._chunks = iter(chunks)
        self._buf = b""

    def readable(self) -> bool:
        return True

    def readinto(self, b: bytearray | memoryview) -> int:  # type: ignore[override]
        while not self._buf:
            try:
                self._buf = next(self._chunks)
            except StopIteration:
                return 0
        n = min(len(b), len(self._buf))
        b[:n] = self._buf[:n]
        self._buf = self._buf[n:]
        return n


class _Collector(io.RawIOBase):
    def __init__(self) -> None:
        self.parts: list[bytes] = []

    def writable(self) -> bool:
        return True

    def write(self, b: bytes | bytearray | memoryview) -> int:  # type: ignore[override]
        self.parts.append(bytes(b))
        return len(b)

    def take(self) -> bytes:
        out, self.parts = b"".join(self.parts), []
        return out


def empty_tar(top: str | None = None) -> list[bytes]:
    """A tar with nothing in it, or only the directory ``top`` (an empty filestore)."""
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w") as tar:
        if top is not None:
            info = tarfile.TarInfo(top)
            info.type, info.mode = tarfile.DIRTYPE, 0o755
            tar.addfile(info)
    return [buf.getvalue()]


def rename_top(chunks: Iterable[bytes], new_top: str) -> Iterator[bytes]:
    """Re-stream a tar with its first path component replaced by ``new_top``.

    Only directories and regular files pass; links, devices and paths escaping the top
    directory are refused (a filestore holds nothing else, so anything else is tampering).
    """
    sink = _Collector()
    with (
        tarfile.open(fileobj=IterReader(chunks), mode="r|*") as src,
        tarfile.open(fileobj=sink, mode="w|", format=tarfile.PAX_FORMAT) as out,
    ):
        for member in src:
            parts = member.name.strip("/").split("/")
            if member.name.startswith("/") or ".." in parts:
                raise OdooOpsError(
                    f"filestore archive member {member.name!r} escapes its directory",
                    code="backup_corrupt",
                    remediation="use another backup: odooops db backups <env>",
                )
            if not (member.isdir() or member.isfile()):
                raise OdooOpsError(
                    f"filestore archive member {member.name!r} is not a file or directory",
                    code="backup_corrupt",
                    remediation="use another backup: odooops db backups <env>",
                )
            member.name = "/".join([new_top, *parts[1:]])
            out.addfile(member, src.extractfile(member) if member.isfile() else None)
            if data := sink.take():
                yield data
    if data := sink.take():
        yield data


def owned(chunks: Iterable[bytes], uid: int, gid: int) -> Iterator[bytes]:
    """Re-stream a tar for ``put_archive`` with every member owned by ``uid:gid``.

    Only relative directories and regular files pass; modes keep their permission bits (the
    owner always may read and write, and enter directories) and lose set-id and sticky bits.
    """
    sink = _Collector()
    with (
        tarfile.open(fileobj=IterReader(chunks), mode="r|*") as src,
        tarfile.open(fileobj=sink, mode="w|", format=tarfile.PAX_FORMAT) as out,
    ):
        for member in src:
            parts = member.name.split("/")
            if member.name.startswith("/") or ".." in parts:
                raise OdooOpsError(
                    f"filestore archive member {member.name!r} escapes its directory",
                    code="filestore_invalid",
                    remediation="check where the archive comes from; nothing was written",
                )
            if not (member.isdir() or member.isfile()):
                raise OdooOpsError(
                    f"filestore archive member {member.name!r} is not a file or directory",
                    code="filestore_invalid",
                    remediation="check where the archive comes from; nothing was written",
                )
            member.uid, member.gid, member.uname, member.gname = uid, gid, "", ""
            member.mode = (member.mode & 0o777) | (0o700 if member.isdir() else 0o600)
            member.pax_headers = {}
            out.addfile(member, src.extractfile(member) if member.isfile() else None)
            if data := sink.take():
                yield data
    if data := sink.take():
        yield data


def merged(parts: Iterable[bytes], files: Mapping[str, bytes]) -> bytes:
    """One tar of ``files`` (with their folders) followed by every member of ``parts``.

    Made for build contexts, so the bytes depend only on the inputs: the added files and
    folders are sorted, dated 0 and owned by root, and the parts keep their own (reproducible)
    headers.
    """
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w", format=tarfile.PAX_FORMAT) as out:
        folders = sorted(
            {"/".join(name.split("/")[:i]) for name in files for i in range(1, name.count("/") + 1)}
        )
        for folder in folders:
            info = tarfile.TarInfo(folder)
            info.type, info.mode, info.mtime = tarfile.DIRTYPE, 0o755, 0
            out.addfile(info)
        for name in sorted(files):
            info = tarfile.TarInfo(name)
            info.size, info.mode, info.mtime = len(files[name]), 0o644, 0
            out.addfile(info, io.BytesIO(files[name]))
        for part in parts:
            with tarfile.open(fileobj=io.BytesIO(part), mode="r") as src:
                for member in src.getmembers():
                    out.addfile(member, src.extractfile(member) if member.isfile() else None)
    return buf.getvalue()
