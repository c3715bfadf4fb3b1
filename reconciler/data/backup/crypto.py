"""Streaming authenticated encryption of backups: chunked AES-256-GCM (the STREAM construction).

A backup is far larger than memory, so it is encrypted in records of at most ``chunk_size``
plaintext bytes, each sealed on its own with AES-256-GCM. Sealing records one by one is not
enough: an attacker (or a broken upload) could drop, reorder or cut records. STREAM binds
every record to its position and to whether it is the last one:

* the nonce is a random 8-byte prefix (fresh per backup) followed by the record counter;
* the associated data is the whole header, the counter and a final flag, so a record cannot
  move to another position, another backup or another key, and a stream cut exactly at a
  record boundary lacks the record whose flag says "final" and is recognised as truncated.

Wire format (all integers big-endian)::

    header  = b"ODOOOPS-BKP\\x01" | key id (18 ascii bytes, "k-" + 16 hex) | nonce prefix (8)
              | plaintext chunk size (4)
    record  = ciphertext length (4) | ciphertext including the 16-byte GCM tag
    nonce   = nonce prefix (8) | counter (4)
    aad     = header | counter (8) | final flag (1 byte: 1 on the last record, else 0)

The reader authenticates a record before it returns a single byte of it, so a restore never
acts on forged or damaged data; the worst a damaged backup can do is stop a restore midway,
which the caller turns into "pick another backup". The key id is a hash of the key, so a
backup names the key it needs without revealing anything about it.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import os
import re
import struct
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import IO, cast

import zstandard
from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import AESGCM

from reconciler.core.model import SecretRef
from reconciler.data.backup.errors import BackupCorrupt, BackupError, BackupKeyMismatch

__all__ = [
    "DEFAULT_CHUNK_SIZE",
    "MAGIC",
    "BackupKey",
    "DecryptReader",
    "EncryptWriter",
    "OpenReader",
    "SealWriter",
    "generate_key_text",
    "open_sealed",
    "seal",
]

MAGIC = b"ODOOOPS-BKP\x01"
DEFAULT_CHUNK_SIZE = 1 << 20
# A reader refuses headers announcing bigger records: the length is read before anything is
# authenticated, and a forged header must not make the daemon allocate gigabytes.
MAX_CHUNK_SIZE = 16 << 20
KEY_SIZE = 32
TAG_SIZE = 16
_KEY_ID_LEN = 18
_NONCE_PREFIX_LEN = 8
_HEADER_LEN = len(MAGIC) + _KEY_ID_LEN + _NONCE_PREFIX_LEN + 4
_MAX_RECORDS = 1 << 32  # the counter has 4 bytes in the nonce
_KEY_ID_DOMAIN = b"odooops-backup-key-id\0"
_KEY_ID_FORMAT = re.compile(rb"k-[0-9a-f]{16}")
_HEX_KEY = re.compile(r"[0-9a-fA-F]{64}")
_URLSAFE_TO_STANDARD = str.maketrans("-_", "+/")
_GENERATE_KEY = 'python3 -c "import os,base64;print(base64.b64encode(os.urandom(32)).decode())"'


def _key_id(key: bytes) -> str:
    return "k-" + hashlib.sha256(_KEY_ID_DOMAIN + key).hexdigest()[:16]


@dataclass(frozen=True)
class BackupKey:
    """A 256-bit backup key and its public id; the key itself never appears in a repr."""

    key_id: str
    key: bytes = field(repr=False)

    def __post_init__(self) -> None:
        if len(self.key) != KEY_SIZE:
            raise ValueError(f"a backup key has {KEY_SIZE} bytes, not {len(self.key)}")
        if self.key_id != _key_id(self.key):
            raise ValueError("key_id does not match the key; build keys with BackupKey.of")

    @classmethod
    def of(cls, key: bytes) -> BackupKey:
        """The key with its derived id (the only way the id and the key can agree)."""
        return cls(_key_id(key), key)

    @classmethod
    def from_text(cls, raw: str, source: str) -> BackupKey:
        """Parse 32 bytes written as base64 or as 64 hex characters.

        ``source`` says where the text came from (``env BACKUP_KEY``) and is the only thing
        an error names: the text itself may be a real key with a typo.
        """
        text = raw.strip()
        key: bytes | None = None
        if _HEX_KEY.fullmatch(text):
            key = bytes.fromhex(text)
        else:
            # Standard or URL-safe alphabet; validate=True refuses stray characters instead
            # of silently dropping them.
            try:
                key = base64.b64decode(text.translate(_URLSAFE_TO_STANDARD), validate=True)
            except (binascii.Error, ValueError):
                key = None
        if key is None or len(key) != KEY_SIZE:
            raise BackupError(
                f"the backup encryption key from {source} is not 32 bytes written as base64 "
                "or as 64 hexadecimal characters",
                code="backup_key_invalid",
                remediation=f"generate a key with `{_GENERATE_KEY}` and store it in {source}",
            )
        return cls.of(key)

    @classmethod
    def from_ref(cls, ref: SecretRef, resolve: Callable[[SecretRef], str]) -> BackupKey:
        """Resolve a secret reference (with the secret store's ``resolve``) and parse the key
        in it."""
        return cls.from_text(resolve(ref), str(ref))


def generate_key_text() -> str:
    """A fresh random key, base64-encoded, as ``BackupKey.from_text`` reads it."""
    return base64.b64encode(os.urandom(KEY_SIZE)).decode("ascii")


def _aad(header: bytes, counter: int, final: bool) -> bytes:
    return header + struct.pack(">QB", counter, 1 if final else 0)


def _nonce(prefix: bytes, counter: int) -> bytes:
    return prefix + struct.pack(">I", counter)


class EncryptWriter:
    """Encrypt a stream of unknown length into ``sink``, one record per ``chunk_size`` bytes.

    ``close()`` is the commit point: it emits the record flagged final. A writer abandoned
    because its producer failed must not be closed, so that what reached the sink reads as
    truncated instead of as a complete (but short) backup.
    """

    def __init__(
        self,
        sink: Callable[[bytes], None],
        key: BackupKey,
        chunk_size: int = DEFAULT_CHUNK_SIZE,
    ) -> None:
        if not 1 <= chunk_size <= MAX_CHUNK_SIZE:
            raise ValueError(f"chunk_size must be between 1 and {MAX_CHUNK_SIZE}")
        self._sink = sink
        self._aead = AESGCM(key.key)
        self._chunk_size = chunk_size
        self._prefix = os.urandom(_NONCE_PREFIX_LEN)
        self._header = (
            MAGIC + key.key_id.encode("ascii") + self._prefix + struct.pack(">I", chunk_size)
        )
        self._buffer = bytearray()
        self._counter = 0
        self._closed = False
        self._hash = hashlib.sha256()
        self.bytes_out = 0
        self._emit(self._header)

    @property
    def sha256_hex(self) -> str:
        """SHA-256 of every byte given to the sink so far (header included)."""
        return self._hash.hexdigest()

    @property
    def closed(self) -> bool:
        return self._closed

    def write(self, data: bytes) -> int:
        if self._closed:
            raise ValueError("write to a closed EncryptWriter")
        self._buffer += data
        # Keep at least one byte back so that close() always has something to flag final,
        # except for an empty stream.
        if len(self._buffer) > self._chunk_size:
            view = memoryview(self._buffer)
            offset = 0
            try:
                while len(self._buffer) - offset > self._chunk_size:
                    self._record(view[offset : offset + self._chunk_size], final=False)
                    offset += self._chunk_size
            finally:
                view.release()
            del self._buffer[:offset]
        return len(data)

    def close(self) -> None:
        """Emit the final record; calling it again does nothing."""
        if self._closed:
            return
        self._record(memoryview(self._buffer), final=True)
        self._buffer = bytearray()
        self._closed = True

    def _record(self, plaintext: memoryview, *, final: bool) -> None:
        if self._counter >= _MAX_RECORDS:
            raise BackupError("backup too large for its chunk size (2**32 records)")
        sealed = self._aead.encrypt(
            _nonce(self._prefix, self._counter),
            bytes(plaintext),
            _aad(self._header, self._counter, final),
        )
        self._counter += 1
        self._emit(struct.pack(">I", len(sealed)) + sealed)

    def _emit(self, data: bytes) -> None:
        self._sink(data)
        self._hash.update(data)
        self.bytes_out += len(data)


class DecryptReader:
    """Read back what ``EncryptWriter`` produced, releasing only authenticated plaintext.

    The header is read on construction so that a wrong key is reported before the caller
    has started to restore anything. ``read`` returns ``b""`` only once the record flagged
    final has been authenticated and nothing follows it.
    """

    def __init__(self, read: Callable[[int], bytes], key: BackupKey) -> None:
        self._source = read
        self._aead = AESGCM(key.key)
        self._hash = hashlib.sha256()
        self.bytes_in = 0
        self._counter = 0
        self._done = False
        self._plain = b""
        self._offset = 0
        header = self._read_exact(_HEADER_LEN)
        if not header:
            raise BackupCorrupt("the backup is empty")
        if len(header) < len(MAGIC) or header[: len(MAGIC)] != MAGIC:
            raise BackupCorrupt("the data is not an OdooOps backup (bad magic bytes)")
        if len(header) < _HEADER_LEN:
            raise BackupCorrupt("the backup is truncated inside its header")
        raw_id = header[len(MAGIC) : len(MAGIC) + _KEY_ID_LEN]
        if not _KEY_ID_FORMAT.fullmatch(raw_id):
            raise BackupCorrupt("the backup header is damaged (invalid key id)")
        if raw_id.decode("ascii") != key.key_id:
            raise BackupKeyMismatch(needed=raw_id.decode("ascii"), configured=key.key_id)
        self._prefix = header[len(MAGIC) + _KEY_ID_LEN : len(MAGIC) + _KEY_ID_LEN + 8]
        (self._chunk_size,) = struct.unpack(">I", header[-4:])
        if not 1 <= self._chunk_size <= MAX_CHUNK_SIZE:
            raise BackupCorrupt("the backup header is damaged (invalid chunk size)")
        self._header = header

    @property
    def sha256_hex(self) -> str:
        """SHA-256 of the ciphertext consumed so far (header included), for the manifest."""
        return self._hash.hexdigest()

    def read(self, n: int = -1) -> bytes:
        if n < 0:
            parts = [self._take(len(self._plain))]
            while self._next_record():
                parts.append(self._take(len(self._plain)))
            return b"".join(parts)
        out = bytearray()
        while len(out) < n:
            if self._offset == len(self._plain) and not self._next_record():
                break
            out += self._take(n - len(out))
        return bytes(out)

    def _take(self, n: int) -> bytes:
        chunk = self._plain[self._offset : self._offset + n]
        self._offset += len(chunk)
        return chunk

    def _next_record(self) -> bool:
        """Authenticate the next record into the buffer; False at the verified end."""
        if self._done:
            return False
        if self._counter >= _MAX_RECORDS:
            raise BackupCorrupt("the backup is damaged: it has more records than a nonce allows")
        length_bytes = self._read_exact(4)
        if not length_bytes:
            raise BackupCorrupt("the backup is truncated: it ends before its final record")
        if len(length_bytes) < 4:
            raise BackupCorrupt("the backup is truncated inside a record length")
        (length,) = struct.unpack(">I", length_bytes)
        if not TAG_SIZE <= length <= self._chunk_size + TAG_SIZE:
            raise BackupCorrupt(f"the backup is damaged: record {self._counter} has a bad length")
        sealed = self._read_exact(length)
        if len(sealed) < length:
            raise BackupCorrupt(f"the backup is truncated inside record {self._counter}")
        nonce = _nonce(self._prefix, self._counter)
        # The reader cannot know which record is the last until one authenticates with the
        # final flag; trying "not final" first costs a second attempt once per backup.
        final = False
        try:
            plain = self._aead.decrypt(nonce, sealed, _aad(self._header, self._counter, False))
        except InvalidTag:
            try:
                plain = self._aead.decrypt(nonce, sealed, _aad(self._header, self._counter, True))
            except InvalidTag:
                raise BackupCorrupt(
                    f"the backup is damaged or tampered with: record {self._counter} "
                    "does not authenticate"
                ) from None
            final = True
        self._counter += 1
        if final:
            if self._read_exact(1):
                raise BackupCorrupt("the backup is damaged: data follows its final record")
            self._done = True
        self._plain = plain
        self._offset = 0
        return bool(plain) or not final

    def _read_exact(self, n: int) -> bytes:
        """Up to ``n`` bytes, fewer only at end of input (sources may return short reads)."""
        chunks = []
        missing = n
        while missing > 0:
            chunk = self._source(missing)
            if not chunk:
                break
            chunks.append(chunk)
            missing -= len(chunk)
        data = b"".join(chunks)
        self._hash.update(data)
        self.bytes_in += len(data)
        return data


class SealWriter:
    """Compress with zstd, then encrypt: what a backup is before it goes to storage."""

    def __init__(
        self,
        sink: Callable[[bytes], None],
        key: BackupKey,
        level: int = 3,
        chunk_size: int = DEFAULT_CHUNK_SIZE,
    ) -> None:
        # threads=0: compression stays on the calling thread, so several backups running in
        # parallel (one per environment) share the CPUs instead of each taking all of them.
        self._compressor = zstandard.ZstdCompressor(level=level, threads=0).compressobj()
        self.cipher = EncryptWriter(sink, key, chunk_size)
        self.raw_bytes = 0

    @property
    def bytes_out(self) -> int:
        return self.cipher.bytes_out

    @property
    def sha256_hex(self) -> str:
        return self.cipher.sha256_hex

    def write(self, data: bytes) -> int:
        if self.cipher.closed:
            raise ValueError("write to a closed SealWriter")
        self.raw_bytes += len(data)
        compressed = self._compressor.compress(data)
        if compressed:
            self.cipher.write(compressed)
        return len(data)

    def close(self) -> None:
        """Finish the zstd frame and emit the final record (the commit point; idempotent)."""
        if self.cipher.closed:
            return
        self.cipher.write(self._compressor.flush())
        self.cipher.close()


def seal(sink: Callable[[bytes], None], key: BackupKey, level: int = 3) -> SealWriter:
    """A writer whose output (to ``sink``) is the compressed, encrypted form of its input."""
    return SealWriter(sink, key, level)


class OpenReader:
    """Decrypt, then decompress: the plaintext of a sealed backup, read as a stream.

    The decompressor is pulled with bounded reads, so a highly compressible filestore never
    expands into memory all at once.
    """

    def __init__(self, read: Callable[[int], bytes], key: BackupKey) -> None:
        self.cipher = DecryptReader(read, key)
        # zstandard only calls .read(n) on its source; its stubs ask for a full IO[bytes].
        source = cast("IO[bytes]", self.cipher)
        self._reader = zstandard.ZstdDecompressor().stream_reader(source, read_size=1 << 17)
        self._done = False
        self.raw_bytes = 0

    def read(self, n: int = -1) -> bytes:
        if n < 0:
            parts = []
            while chunk := self.read(1 << 20):
                parts.append(chunk)
            return b"".join(parts)
        if self._done or n == 0:
            return b""
        try:
            chunk = self._reader.read(n)
        except zstandard.ZstdError as exc:
            raise BackupCorrupt(f"the backup does not decompress: {exc}") from None
        if not chunk:
            # The zstd frame is over: insist on the authenticated end of the stream, which
            # also verifies the final record when the frame ended inside the previous one.
            if self.cipher.read(1):
                raise BackupCorrupt("the backup is damaged: data follows its compressed stream")
            self._done = True
        self.raw_bytes += len(chunk)
        return chunk


def open_sealed(read: Callable[[int], bytes], key: BackupKey) -> OpenReader:
    """The plaintext of what ``seal`` wrote; raises as soon as anything does not authenticate."""
    return OpenReader(read, key)
