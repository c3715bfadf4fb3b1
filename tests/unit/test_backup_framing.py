"""Specification of the part container: named streams of unknown length in one byte stream."""

from __future__ import annotations

import io
import os
import struct

import pytest

from reconciler.data.backup.crypto import BackupKey, open_sealed, seal
from reconciler.data.backup.errors import BackupCorrupt
from reconciler.data.backup.framing import MAX_FRAME, PartWriter, read_parts

MAGIC_LEN = 12


def build(parts: dict[str, list[bytes]]) -> bytes:
    out = bytearray()
    writer = PartWriter(out.extend)
    for name, chunks in parts.items():
        with writer.part(name) as stream:
            for chunk in chunks:
                stream.write(chunk)
    writer.close()
    return bytes(out)


def read_all(blob: bytes) -> dict[str, bytes]:
    return {name: part.read() for name, part in read_parts(io.BytesIO(blob).read)}


def test_parts_come_back_in_order_with_their_names_and_data() -> None:
    big = os.urandom(2 * MAX_FRAME + 12345)
    parts = {
        "manifest.json": [b'{"id": 1}'],
        "database.dump": [big[:1000], big[1000:]],
        "empty": [],
        "filestore/été.tar": [b"a", b"", b"b"],
    }
    assert read_all(build(parts)) == {
        "manifest.json": b'{"id": 1}',
        "database.dump": big,
        "empty": b"",
        "filestore/été.tar": b"ab",
    }
    assert list(read_all(build(parts))) == list(parts)


def test_a_stream_with_no_part_is_valid() -> None:
    assert read_all(build({})) == {}


def test_large_writes_are_split_into_frames_of_at_most_one_mebibyte() -> None:
    blob = build({"p": [b"x" * (MAX_FRAME + 1)]})
    header = MAGIC_LEN + 1 + 2 + 1
    (first,) = struct.unpack(">I", blob[header : header + 4])
    second_at = header + 4 + first
    (second,) = struct.unpack(">I", blob[second_at : second_at + 4])
    assert (first, second) == (MAX_FRAME, 1)


def test_reads_of_any_size_see_the_part_as_one_stream() -> None:
    data = os.urandom(3 * 1000)
    blob = build({"p": [data[i : i + 1000] for i in range(0, len(data), 1000)]})
    _, part = next(read_parts(io.BytesIO(blob).read))
    got = bytearray()
    while chunk := part.read(777):
        got += chunk
    assert bytes(got) == data
    assert part.read() == b""


def test_moving_to_the_next_part_skips_what_was_left_unread() -> None:
    blob = build({"dump": [os.urandom(3 * MAX_FRAME)], "tar": [b"filestore"]})
    seen = {}
    for name, part in read_parts(io.BytesIO(blob).read):
        seen[name] = part.read(10) if name == "dump" else part.read()
    assert seen["tar"] == b"filestore"


def test_a_part_left_behind_cannot_be_read_any_more() -> None:
    blob = build({"a": [b"aaa"], "b": [b"bbb"]})
    parts = read_parts(io.BytesIO(blob).read)
    _, first = next(parts)
    next(parts)
    with pytest.raises(ValueError, match="left behind"):
        first.read()


def test_a_stream_cut_anywhere_is_corrupt() -> None:
    blob = build({"a": [b"x" * 100], "b": [b"y" * 10]})
    survivors = []
    for cut in range(len(blob)):
        try:
            read_all(blob[:cut])
        except BackupCorrupt:
            continue
        survivors.append(cut)
    assert survivors == []


def test_bytes_after_the_end_marker_are_corrupt() -> None:
    with pytest.raises(BackupCorrupt, match="end marker"):
        read_all(build({"a": [b"x"]}) + b"P")


def test_a_foreign_stream_is_corrupt() -> None:
    with pytest.raises(BackupCorrupt, match="bad magic"):
        read_all(b"not a part stream at all")


def test_an_oversized_frame_is_corrupt() -> None:
    blob = bytearray(build({"p": [b"x"]}))
    at = MAGIC_LEN + 1 + 2 + 1
    blob[at : at + 4] = struct.pack(">I", MAX_FRAME + 1)
    with pytest.raises(BackupCorrupt, match="too long"):
        read_all(bytes(blob))


def test_a_part_whose_producer_failed_is_left_open_and_the_stream_unfinishable() -> None:
    out = bytearray()
    writer = PartWriter(out.extend)
    with pytest.raises(RuntimeError), writer.part("dump") as stream:
        stream.write(b"partial")
        raise RuntimeError("pg_dump died")
    with pytest.raises(ValueError, match="cannot be completed"):
        writer.close()
    with pytest.raises(BackupCorrupt):
        read_all(bytes(out))


@pytest.mark.parametrize(
    ("case", "names"),
    [("a duplicate name", ["a", "a"]), ("an empty name", [""])],
)
def test_bad_part_names_are_refused(case: str, names: list[str]) -> None:
    writer = PartWriter(bytearray().extend)
    *accepted, refused = names
    for name in accepted:
        with writer.part(name):
            pass
    with pytest.raises(ValueError), writer.part(refused):
        pass


def test_parts_do_not_nest() -> None:
    writer = PartWriter(bytearray().extend)
    with writer.part("outer"), pytest.raises(ValueError, match="nest"), writer.part("inner"):
        pass


def test_writing_to_a_finished_part_is_refused() -> None:
    writer = PartWriter(bytearray().extend)
    with writer.part("a") as stream:
        pass
    with pytest.raises(ValueError, match="ended"):
        stream.write(b"late")


def test_parts_travel_inside_a_sealed_stream() -> None:
    key = BackupKey.of(os.urandom(32))
    sealed = bytearray()
    sealer = seal(sealed.extend, key)
    writer = PartWriter(sealer.write)
    with writer.part("database.dump") as stream:
        stream.write(b"PGDMP" + b"\0" * 100_000)
    with writer.part("filestore.tar") as stream:
        stream.write(b"tar" * 1000)
    writer.close()
    sealer.close()
    opened = open_sealed(io.BytesIO(bytes(sealed)).read, key)
    got = {name: part.read() for name, part in read_parts(opened.read)}
    assert got == {"database.dump": b"PGDMP" + b"\0" * 100_000, "filestore.tar": b"tar" * 1000}
    assert opened.cipher.sha256_hex == sealer.sha256_hex
