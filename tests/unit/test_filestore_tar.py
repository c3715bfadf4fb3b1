"""Re-streaming a filestore archive under another database name, refusing anything else."""

from __future__ import annotations

import io
import tarfile

import pytest

from reconciler.core.errors import OdooOpsError
from reconciler.drivers.tarstream import rename_top


def archive(*members: tuple[str, bytes | None], link: str | None = None) -> bytes:
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w") as tar:
        for name, data in members:
            info = tarfile.TarInfo(name)
            if data is None:
                info.type = tarfile.DIRTYPE
                tar.addfile(info)
            else:
                info.size = len(data)
                tar.addfile(info, io.BytesIO(data))
        if link:
            info = tarfile.TarInfo(link)
            info.type, info.linkname = tarfile.SYMTYPE, "/etc/passwd"
            tar.addfile(info)
    return buf.getvalue()


def chunks(data: bytes, size: int = 100) -> list[bytes]:
    return [data[i : i + size] for i in range(0, len(data), size)]


def test_the_top_directory_is_renamed_and_files_are_kept() -> None:
    src = archive(("prod", None), ("prod/ab", None), ("prod/ab/ab12", b"logo"))
    out = b"".join(rename_top(chunks(src), "staging.staged"))
    with tarfile.open(fileobj=io.BytesIO(out)) as tar:
        names = tar.getnames()
        assert names == ["staging.staged", "staging.staged/ab", "staging.staged/ab/ab12"]
        member = tar.extractfile("staging.staged/ab/ab12")
        assert member is not None and member.read() == b"logo"


@pytest.mark.parametrize(
    "bad",
    [
        archive(("prod/../../etc/cron.d/x", b"boom")),
        archive(("/etc/passwd", b"boom")),
        archive(("prod", None), link="prod/evil"),
    ],
    ids=["dot-dot", "absolute", "symlink"],
)
def test_escaping_or_special_members_are_refused(bad: bytes) -> None:
    with pytest.raises(OdooOpsError) as refused:
        b"".join(rename_top(chunks(bad), "staging"))
    assert refused.value.code == "backup_corrupt"
