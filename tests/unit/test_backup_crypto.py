"""Specification of backup encryption: chunked AES-256-GCM that detects any change or cut."""

from __future__ import annotations

import base64
import hashlib
import io
import itertools
import os
import struct
from collections.abc import Callable
from pathlib import Path

import pytest

from reconciler.core.model import SecretRef
from reconciler.data.backup.crypto import (
    MAGIC,
    BackupKey,
    DecryptReader,
    EncryptWriter,
    SealWriter,
    generate_key_text,
    open_sealed,
    seal,
)
from reconciler.data.backup.errors import BackupCorrupt, BackupError, BackupKeyMismatch

KEY = BackupKey.of(bytes(range(32)))
OTHER_KEY = BackupKey.of(bytes(range(1, 33)))
HEADER_LEN = len(MAGIC) + 18 + 8 + 4
KEY_ID_AT = range(len(MAGIC), len(MAGIC) + 18)
SMALL_CHUNK = 64
TAG = 16


def encrypt(
    data: bytes,
    *,
    key: BackupKey = KEY,
    chunk_size: int = SMALL_CHUNK,
    sizes: list[int] | None = None,
) -> tuple[bytes, EncryptWriter]:
    out = bytearray()
    writer = EncryptWriter(out.extend, key, chunk_size)
    step = itertools.cycle(sizes or [len(data) or 1])
    offset = 0
    while offset < len(data):
        n = next(step)
        writer.write(data[offset : offset + n])
        offset += n
    writer.close()
    return bytes(out), writer


def short_reads(blob: bytes, at_most: int = 7) -> Callable[[int], bytes]:
    """A source that, like a socket, returns fewer bytes than asked."""
    stream = io.BytesIO(blob)
    return lambda n: stream.read(min(n, at_most))


def decrypt(blob: bytes, key: BackupKey = KEY, read_size: int = -1) -> bytes:
    reader = DecryptReader(io.BytesIO(blob).read, key)
    if read_size < 0:
        return reader.read()
    out = bytearray()
    while chunk := reader.read(read_size):
        out += chunk
    return bytes(out)


def record_bounds(blob: bytes) -> list[tuple[int, int]]:
    """(start, end) of each record after the header."""
    bounds = []
    offset = HEADER_LEN
    while offset < len(blob):
        (length,) = struct.unpack(">I", blob[offset : offset + 4])
        bounds.append((offset, offset + 4 + length))
        offset += 4 + length
    return bounds


SAMPLE = os.urandom(5 * SMALL_CHUNK + 11)
SAMPLE_BLOB, _ = encrypt(SAMPLE)


# ------------------------------------------------------------------------- round trips
def test_several_megabytes_written_in_odd_sizes_come_back_identical() -> None:
    data = os.urandom(3 * (1 << 20) + 12345)
    blob, _ = encrypt(data, chunk_size=1 << 20, sizes=[1, 7, 4096, 65537, (1 << 20) + 3, 3])
    assert decrypt(blob, read_size=99991) == data


def test_the_reader_copes_with_a_source_returning_short_reads() -> None:
    reader = DecryptReader(short_reads(SAMPLE_BLOB), KEY)
    assert reader.read() == SAMPLE


@pytest.mark.parametrize("size", [0, 1, SMALL_CHUNK, 3 * SMALL_CHUNK, 3 * SMALL_CHUNK + 1])
def test_empty_and_chunk_aligned_streams_round_trip(size: int) -> None:
    data = os.urandom(size)
    assert decrypt(encrypt(data)[0]) == data


def test_default_chunk_is_one_mebibyte_announced_in_the_header() -> None:
    out = bytearray()
    writer = EncryptWriter(out.extend, KEY)
    writer.write(b"x" * ((1 << 20) + 1))
    writer.close()
    assert out.startswith(MAGIC + KEY.key_id.encode())
    assert struct.unpack(">I", out[HEADER_LEN - 4 : HEADER_LEN]) == (1 << 20,)
    assert struct.unpack(">I", out[HEADER_LEN : HEADER_LEN + 4]) == ((1 << 20) + TAG,)


def test_every_backup_gets_a_fresh_nonce_prefix() -> None:
    first, _ = encrypt(b"same data")
    second, _ = encrypt(b"same data")
    assert first[: HEADER_LEN - 12] == second[: HEADER_LEN - 12]
    assert first[HEADER_LEN - 12 : HEADER_LEN - 4] != second[HEADER_LEN - 12 : HEADER_LEN - 4]
    assert first[HEADER_LEN:] != second[HEADER_LEN:]


def test_close_is_idempotent_and_writing_after_it_is_refused() -> None:
    out = bytearray()
    writer = EncryptWriter(out.extend, KEY)
    writer.write(b"data")
    writer.close()
    size = len(out)
    writer.close()
    assert len(out) == size
    with pytest.raises(ValueError, match="closed"):
        writer.write(b"more")


# ---------------------------------------------------------------------------- tampering
def flip(blob: bytes, at: int) -> bytes:
    return blob[:at] + bytes([blob[at] ^ 0x01]) + blob[at + 1 :]


def outcome(blob: bytes, key: BackupKey = KEY) -> type[Exception] | None:
    try:
        decrypt(blob, key)
    except (BackupCorrupt, BackupKeyMismatch) as exc:
        return type(exc)
    return None


def test_a_flipped_byte_anywhere_is_reported_as_corrupt() -> None:
    outside_key_id = [i for i in range(len(SAMPLE_BLOB)) if i not in KEY_ID_AT]
    wrong = {at: outcome(flip(SAMPLE_BLOB, at)) for at in outside_key_id}
    assert {at: got for at, got in wrong.items() if got is not BackupCorrupt} == {}


def test_a_flipped_byte_in_the_key_id_is_refused_before_any_data() -> None:
    """The id is checked before the tags: a damaged id reads as corrupt or as another key."""
    wrong = {at: outcome(flip(SAMPLE_BLOB, at)) for at in KEY_ID_AT}
    assert {at: got for at, got in wrong.items() if got is None} == {}


def test_the_reader_releases_only_whole_authenticated_records() -> None:
    """A damaged third record: the first two come out, not one byte of the third."""
    start, _end = record_bounds(SAMPLE_BLOB)[2]
    reader = DecryptReader(io.BytesIO(flip(SAMPLE_BLOB, start + 10)).read, KEY)
    released = bytearray()
    with pytest.raises(BackupCorrupt):
        while chunk := reader.read(16):
            released += chunk
    assert bytes(released) == SAMPLE[: 2 * SMALL_CHUNK]


def test_truncation_at_any_point_is_reported_as_corrupt() -> None:
    wrong = {cut: outcome(SAMPLE_BLOB[:cut]) for cut in range(len(SAMPLE_BLOB))}
    assert {cut: got for cut, got in wrong.items() if got is not BackupCorrupt} == {}


@pytest.mark.parametrize(
    ("case", "cut"),
    [
        ("empty", 0),
        ("inside the magic", 5),
        ("header only", HEADER_LEN),
        ("at the first record boundary", record_bounds(SAMPLE_BLOB)[0][1]),
        ("just before the final record", record_bounds(SAMPLE_BLOB)[-1][0]),
        ("inside the final tag", len(SAMPLE_BLOB) - 1),
    ],
)
def test_named_truncations_are_corrupt(case: str, cut: int) -> None:
    with pytest.raises(BackupCorrupt):
        decrypt(SAMPLE_BLOB[:cut])


def records(blob: bytes) -> list[bytes]:
    return [blob[a:b] for a, b in record_bounds(blob)]


@pytest.mark.parametrize(
    ("case", "rearrange"),
    [
        ("two records swapped", lambda r: [r[1], r[0], *r[2:]]),
        ("a record dropped", lambda r: [r[0], *r[2:]]),
        ("a record repeated", lambda r: [r[0], r[0], *r[1:]]),
        ("the final record moved first", lambda r: [r[-1], *r[:-1]]),
        ("a record after the final one", lambda r: [*r, r[0]]),
    ],
)
def test_reordered_records_are_corrupt(
    case: str, rearrange: Callable[[list[bytes]], list[bytes]]
) -> None:
    blob = SAMPLE_BLOB[:HEADER_LEN] + b"".join(rearrange(records(SAMPLE_BLOB)))
    with pytest.raises(BackupCorrupt):
        decrypt(blob)


def test_a_record_from_another_backup_with_the_same_key_is_corrupt() -> None:
    other, _ = encrypt(os.urandom(len(SAMPLE)))
    spliced = records(SAMPLE_BLOB)
    spliced[1] = records(other)[1]
    with pytest.raises(BackupCorrupt):
        decrypt(SAMPLE_BLOB[:HEADER_LEN] + b"".join(spliced))


def test_trailing_bytes_after_the_final_record_are_corrupt() -> None:
    with pytest.raises(BackupCorrupt, match="follows its final record"):
        decrypt(SAMPLE_BLOB + b"\0")


def test_data_that_is_not_a_backup_is_corrupt() -> None:
    with pytest.raises(BackupCorrupt, match="not an OdooOps backup"):
        decrypt(b"PK\x03\x04" + os.urandom(100))


# ---------------------------------------------------------------------------------- keys
def test_a_wrong_key_is_a_key_mismatch_naming_both_ids() -> None:
    with pytest.raises(BackupKeyMismatch) as info:
        DecryptReader(io.BytesIO(SAMPLE_BLOB).read, OTHER_KEY)
    assert KEY.key_id in info.value.message
    assert OTHER_KEY.key_id in info.value.message
    assert KEY.key_id in info.value.remediation
    assert info.value.code == "backup_key_mismatch"


def test_key_id_is_a_domain_separated_hash_of_the_key() -> None:
    expected = hashlib.sha256(b"odooops-backup-key-id\0" + KEY.key).hexdigest()[:16]
    assert KEY.key_id == f"k-{expected}"


def test_a_key_id_that_does_not_match_the_key_is_refused() -> None:
    with pytest.raises(ValueError, match="key_id"):
        BackupKey(OTHER_KEY.key_id, KEY.key)


def test_the_key_never_appears_in_its_repr() -> None:
    assert KEY.key.hex() not in repr(KEY)
    assert repr(KEY.key) not in repr(KEY)
    assert KEY.key_id in repr(KEY)


RAW = bytes(range(100, 132))


@pytest.mark.parametrize(
    ("case", "text"),
    [
        ("base64", base64.b64encode(RAW).decode()),
        ("base64 with a trailing newline", base64.b64encode(RAW).decode() + "\n"),
        ("url-safe base64", base64.urlsafe_b64encode(RAW).decode()),
        ("lowercase hex", RAW.hex()),
        ("uppercase hex", RAW.hex().upper()),
    ],
)
def test_a_key_is_read_as_base64_or_hex(case: str, text: str) -> None:
    assert BackupKey.from_text(text, "env BACKUP_KEY") == BackupKey.of(RAW)


@pytest.mark.parametrize(
    ("case", "text"),
    [
        ("16 bytes of base64", base64.b64encode(RAW[:16]).decode()),
        ("33 bytes of base64", base64.b64encode(RAW + b"!").decode()),
        ("62 hex characters", RAW.hex()[:62]),
        ("not base64 at all", "correct horse battery staple, obviously!"),
        ("empty", ""),
    ],
)
def test_a_bad_key_is_refused_naming_its_source_but_not_its_value(case: str, text: str) -> None:
    with pytest.raises(BackupError) as info:
        BackupKey.from_text(text, "file /etc/odooops/backup.key")
    error = info.value
    assert error.code == "backup_key_invalid"
    assert "file /etc/odooops/backup.key" in error.message
    if text:
        assert text not in error.render()
        assert text not in str(error.to_dict())
    assert "base64.b64encode(os.urandom(32))" in error.remediation


def test_a_key_is_read_through_the_resolver_of_its_reference() -> None:
    seen: list[SecretRef] = []

    def resolve(ref: SecretRef) -> str:
        seen.append(ref)
        return RAW.hex()

    ref = SecretRef(env="ODOOOPS_SECRET_BACKUP_KEY")
    assert BackupKey.from_ref(ref, resolve) == BackupKey.of(RAW)
    assert seen == [ref]


def test_a_bad_key_in_a_file_names_the_file(tmp_path: Path) -> None:
    path = tmp_path / "backup.key"
    path.write_text("too-short\n")
    with pytest.raises(BackupError, match=str(path)) as info:
        BackupKey.from_ref(SecretRef(file=str(path)), lambda ref: path.read_text())
    assert "too-short" not in info.value.render()


def test_generated_keys_are_random_and_readable() -> None:
    first, second = generate_key_text(), generate_key_text()
    assert first != second
    assert len(BackupKey.from_text(first, "generated").key) == 32


# ------------------------------------------------------------------------------ digests
def test_writer_and_reader_agree_on_the_digest_of_the_stored_bytes() -> None:
    data = os.urandom(1000)
    blob, writer = encrypt(data, sizes=[13])
    reader = DecryptReader(io.BytesIO(blob).read, KEY)
    assert reader.read() == data
    assert writer.sha256_hex == hashlib.sha256(blob).hexdigest() == reader.sha256_hex
    assert writer.bytes_out == len(blob) == reader.bytes_in


# -------------------------------------------------------------------- seal/open_sealed
def test_sealing_compresses_then_encrypts_and_opens_back() -> None:
    data = b"INSERT INTO res_partner VALUES (1, 'Azure Interior');\n" * 80_000
    out = bytearray()
    sealer = seal(out.extend, KEY, level=3)
    for offset in range(0, len(data), 100_003):
        sealer.write(data[offset : offset + 100_003])
    sealer.close()
    assert sealer.raw_bytes == len(data)
    assert sealer.bytes_out == len(out) < len(data) // 20
    assert sealer.sha256_hex == hashlib.sha256(out).hexdigest()
    opened = open_sealed(short_reads(bytes(out), 4096), KEY)
    assert opened.read(1) == data[:1]
    assert opened.read(12345) == data[1:12346]
    assert opened.read() == data[12346:]
    assert opened.read(10) == b""
    assert opened.cipher.sha256_hex == sealer.sha256_hex
    assert opened.cipher.bytes_in == len(out)


def test_a_sealed_empty_stream_opens_to_nothing() -> None:
    out = bytearray()
    sealer = seal(out.extend, KEY)
    sealer.close()
    assert open_sealed(io.BytesIO(bytes(out)).read, KEY).read() == b""


@pytest.mark.parametrize("records_kept", [0, 1, 20])
def test_an_opened_backup_cut_at_a_record_boundary_is_corrupt(records_kept: int) -> None:
    """Every record left authenticates; the missing final one still gives the cut away."""
    out = bytearray()
    sealer = SealWriter(out.extend, KEY, chunk_size=SMALL_CHUNK)
    sealer.write(os.urandom(3000))
    sealer.close()
    cut = record_bounds(bytes(out))[records_kept][0]
    with pytest.raises(BackupCorrupt):
        open_sealed(io.BytesIO(bytes(out[:cut])).read, KEY).read()


def test_an_opened_backup_with_a_flipped_byte_is_corrupt() -> None:
    out = bytearray()
    sealer = seal(out.extend, KEY)
    sealer.write(b"abc" * 10_000)
    sealer.close()
    with pytest.raises(BackupCorrupt):
        open_sealed(io.BytesIO(flip(bytes(out), len(out) // 2)).read, KEY).read()


def test_opening_with_the_wrong_key_fails_before_reading_data() -> None:
    out = bytearray()
    sealer = seal(out.extend, KEY)
    sealer.close()
    with pytest.raises(BackupKeyMismatch):
        open_sealed(io.BytesIO(bytes(out)).read, OTHER_KEY)
