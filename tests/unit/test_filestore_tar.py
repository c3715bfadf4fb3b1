"""Re-streaming a filestore archive under another database name, or owned by the filestore's
owner for Docker's ``put_archive``, refusing anything but files and directories."""

from __future__ import annotations

import io
import tarfile

import pytest

from reconciler.core.errors import OdooOpsError
from reconciler.drivers.tarstream import owned, rename_top


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


def test_what_goes_into_a_volume_belongs_to_the_owner_without_set_id_bits() -> None:
    """put_archive keeps a tar's owners and modes: root's set-uid file must not land as such."""
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w", format=tarfile.PAX_FORMAT) as tar:
        top = tarfile.TarInfo("db.staged")
        top.type, top.mode, top.uid, top.gid, top.uname = tarfile.DIRTYPE, 0o1777, 0, 0, "root"
        tar.addfile(top)
        exe = tarfile.TarInfo("db.staged/" + "x" * 120)  # a long name: carried in a pax header
        exe.size, exe.mode, exe.uid, exe.gid = 4, 0o4755, 0, 0
        exe.pax_headers = {"uid": "0", "uname": "root"}
        tar.addfile(exe, io.BytesIO(b"boom"))
        shy = tarfile.TarInfo("db.staged/ab")
        shy.size, shy.mode, shy.uid = 2, 0o000, 1234
        tar.addfile(shy, io.BytesIO(b"ok"))
    out = b"".join(owned(chunks(buf.getvalue()), 101, 102))
    with tarfile.open(fileobj=io.BytesIO(out)) as tar:
        members = {m.name: m for m in tar.getmembers()}
        assert set(members) == {"db.staged", "db.staged/" + "x" * 120, "db.staged/ab"}
        assert {(m.uid, m.gid, m.uname, m.gname) for m in members.values()} == {(101, 102, "", "")}
        assert members["db.staged"].mode == 0o777
        assert members["db.staged/" + "x" * 120].mode == 0o755
        assert members["db.staged/ab"].mode == 0o600  # the owner may always read and write
        data = tar.extractfile("db.staged/ab")
        assert data is not None and data.read() == b"ok"


@pytest.mark.parametrize(
    "bad",
    [
        archive(("db/../../etc/cron.d/x", b"boom")),
        archive(("/etc/passwd", b"boom")),
        archive(("db", None), link="db/evil"),
    ],
    ids=["dot-dot", "absolute", "symlink"],
)
def test_owned_refuses_escaping_or_special_members(bad: bytes) -> None:
    with pytest.raises(OdooOpsError) as refused:
        b"".join(owned(chunks(bad), 101, 101))
    assert refused.value.code == "filestore_invalid"
