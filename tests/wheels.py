"""Pure-Python wheels made on the spot, and the pip lock lines that pin them.

Tests of Python requirements in built images cannot download anything (no index is reachable),
so they install wheels made here with ``pip --no-index --find-links DIR --require-hashes``. A
lock pins a wheel by the sha256 of its bytes, and an image layer, a build cache key or a test's
expected digest depends on them too: the same arguments must give the same bytes on every run
and machine. So the archive holds no clock, owner or platform detail: fixed timestamps, sorted
entries, fixed permissions, and stored (not deflated) members, since deflate output may change
with the zlib build.

The layout is the binary distribution format (PEP 427, packaging.python.org "Binary
distribution format"): ``{name}-{version}-py3-none-any.whl``, a zip of the package files and
``{name}-{version}.dist-info/`` with METADATA, WHEEL and RECORD, RECORD listing every other
member with its urlsafe-base64 sha256 (unpadded) and size. pip checks those hashes on install.
"""

from __future__ import annotations

import base64
import csv
import hashlib
import io
import re
import stat
import zipfile
from collections.abc import Mapping
from pathlib import Path

# The earliest date a zip entry can hold: a fixed one keeps the bytes free of the clock.
ZIP_EPOCH = (1980, 1, 1, 0, 0, 0)
# A regular file, rw-r--r--, in the Unix mode field of the central directory (pip applies it).
FILE_ATTR = (stat.S_IFREG | 0o644) << 16
UNIX = 3  # ZipInfo.create_system: the mode above is read as Unix permissions
WHEEL_TAG = "py3-none-any"


def _escape(name: str) -> str:
    """The name as the spec writes it in file and directory names: runs of -_. become one _
    and it is lowercased, so that the filename splits on '-' unambiguously ('My-Lib' ->
    'my_lib'); METADATA keeps the name as given."""
    return re.sub(r"[-_.]+", "_", name).lower()


def _check(name: str, version: str, files: Mapping[str, str], dist_info: str) -> None:
    """Refuse what would make an invalid or surprising wheel, before writing anything."""
    if not re.fullmatch(r"[A-Za-z0-9]([A-Za-z0-9._-]*[A-Za-z0-9])?", name):
        raise ValueError(f"{name!r} is not a valid distribution name")
    if not re.fullmatch(r"[A-Za-z0-9.+!]+", version):
        raise ValueError(f"{version!r} is not a version a wheel filename can carry")
    for path in files:
        parts = path.split("/")
        if path.startswith("/") or "\\" in path or any(p in ("", ".", "..") for p in parts):
            raise ValueError(f"{path!r} is not a relative path inside the wheel")
        if parts[0] == dist_info:
            raise ValueError(f"{path!r}: the .dist-info directory is written by make_wheel")


def _record_hash(content: bytes) -> str:
    """RECORD's form of a digest: sha256=<urlsafe base64 without '=' padding>."""
    digest = hashlib.sha256(content).digest()
    return "sha256=" + base64.urlsafe_b64encode(digest).rstrip(b"=").decode("ascii")


def _record(members: list[tuple[str, bytes]], record_path: str) -> bytes:
    """RECORD: a CSV row per member (path, hash, size), and one without either for itself."""
    out = io.StringIO()
    writer = csv.writer(out, lineterminator="\n")
    for path, content in members:
        writer.writerow([path, _record_hash(content), len(content)])
    writer.writerow([record_path, "", ""])
    return out.getvalue().encode("utf-8")


def make_wheel(dest: Path, name: str, version: str, files: Mapping[str, str]) -> Path:
    """Write a pure-Python wheel of ``files`` (path inside the wheel -> UTF-8 text) into the
    directory ``dest`` and return its path. The same arguments always give the same bytes.

    The package files come first, sorted, then the .dist-info files (RECORD last, as it lists
    the others), so that pip and the spec's readers find a conventional archive.
    """
    stem = f"{_escape(name)}-{version}"
    dist_info = f"{stem}.dist-info"
    _check(name, version, files, dist_info)
    metadata = f"Metadata-Version: 2.1\nName: {name}\nVersion: {version}\n"
    wheel = (
        f"Wheel-Version: 1.0\nGenerator: odooops-tests\nRoot-Is-Purelib: true\nTag: {WHEEL_TAG}\n"
    )
    members = [(path, files[path].encode("utf-8")) for path in sorted(files)]
    members.append((f"{dist_info}/METADATA", metadata.encode("utf-8")))
    members.append((f"{dist_info}/WHEEL", wheel.encode("utf-8")))
    record_path = f"{dist_info}/RECORD"
    members.append((record_path, _record(members, record_path)))

    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w", compression=zipfile.ZIP_STORED) as archive:
        for path, content in members:
            info = zipfile.ZipInfo(path, date_time=ZIP_EPOCH)
            info.create_system = UNIX
            info.external_attr = FILE_ATTR
            info.compress_type = zipfile.ZIP_STORED
            archive.writestr(info, content)
    dest.mkdir(parents=True, exist_ok=True)
    target = dest / f"{stem}-{WHEEL_TAG}.whl"
    target.write_bytes(buffer.getvalue())
    return target


def lock_line(wheel: Path, name: str, version: str) -> str:
    """The requirement line pinning ``wheel`` as pip's --require-hashes mode wants it:
    ``name==version --hash=sha256:<hex digest of the wheel file>``. pip refuses to install
    a file whose digest differs, so a lock of these lines admits exactly these wheels."""
    digest = hashlib.sha256(wheel.read_bytes()).hexdigest()
    return f"{name}=={version} --hash=sha256:{digest}"
