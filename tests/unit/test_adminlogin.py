"""The administrator's password hash: passlib's ``pbkdf2_sha512`` form, as Odoo stores it."""

from __future__ import annotations

import base64
import hashlib
import re

import pytest

from reconciler.data.database.adminlogin import (
    ROUNDS,
    ab64_decode,
    ab64_encode,
    hash_password,
    verify,
)

# Made once with passlib 1.7.4: pbkdf2_sha512.using(rounds=1000, salt=...).hash(password).
PASSLIB_VECTORS = [
    (
        "correct horse",
        bytes(range(16)),
        "$pbkdf2-sha512$1000$AAECAwQFBgcICQoLDA0ODw$Xpx07WjVx4vCIvrmBRj8uOoVVtGqJqtUv2J5bhizSQs"
        "7osCteF7W4A61dZDqSIqQjO.dxO6p5FT/Uy7QRBXSXA",
    ),
    (
        "pässwörd",
        b"odooops-16-bytes",
        "$pbkdf2-sha512$1000$b2Rvb29wcy0xNi1ieXRlcw$29kqo0Y5N9/TdW5UmS1rWIkxOMklhGoVub3D/O0GtnZ"
        "ZUp3OXLuTSn/M32XqYrZDYckH9TaoSjRodXaKDhy.SQ",
    ),
]
FORMAT = re.compile(r"\$pbkdf2-sha512\$600000\$[A-Za-z0-9./]{22}\$[A-Za-z0-9./]{86}")


def independent(password: str, salt: bytes, rounds: int) -> str:
    """The algorithm written out again: PBKDF2-HMAC-SHA512, then base64 with '+' as '.'."""

    def ab64(data: bytes) -> str:
        return base64.b64encode(data).decode().replace("+", ".").replace("=", "")

    checksum = hashlib.pbkdf2_hmac("sha512", password.encode(), salt, rounds)
    return f"$pbkdf2-sha512${rounds}${ab64(salt)}${ab64(checksum)}"


@pytest.mark.parametrize(("password", "salt", "expected"), PASSLIB_VECTORS)
def test_the_hash_is_the_one_passlib_makes(password: str, salt: bytes, expected: str) -> None:
    assert hash_password(password, salt=salt, rounds=1000) == expected
    assert independent(password, salt, 1000) == expected


@pytest.mark.parametrize(("password", "salt", "expected"), PASSLIB_VECTORS)
def test_a_passlib_hash_verifies_and_a_wrong_password_does_not(
    password: str, salt: bytes, expected: str
) -> None:
    assert verify(password, expected)
    assert not verify(password + "x", expected)


def test_a_new_hash_has_odoo_19s_rounds_a_random_16_byte_salt_and_verifies() -> None:
    first, second = hash_password("s3cret"), hash_password("s3cret")
    assert FORMAT.fullmatch(first), first
    assert first != second, "each hash has a salt of its own"
    salt = ab64_decode(first.split("$")[3])
    assert len(salt) == 16
    assert first == independent("s3cret", salt, ROUNDS)
    assert verify("s3cret", first)
    assert not verify("admin", first)


@pytest.mark.parametrize(
    "stored",
    [
        None,
        "",
        "admin",  # a plain text password: never the platform's
        "$pbkdf2-sha256$1000$AAECAwQFBgcICQoLDA0ODw$Xpx07WjVx4vCIvrmBRj8uOoVVtGqJqtUv2J5bhiz",
        "$pbkdf2-sha512$lots$AAECAwQFBgcICQoLDA0ODw$Xpx07WjVx4vCIvrmBRj8uOoVVtGqJqtUv2J5bhiz",
        "$pbkdf2-sha512$1000$AAECAwQFBgcICQoLDA0ODw",
        "$pbkdf2-sha512$1000$!!$Xpx07WjVx4vCIvrmBRj8uOoVVtGqJqtUv2J5bhizSQs",
        "$pbkdf2-sha512$1000$AAECAwQFBgcICQoLDA0ODw$c2hvcnQ",  # a checksum of 5 bytes
        "$pbkdf2-sha512$600000$standin$standin",  # the stand-in image's placeholder
    ],
)
def test_anything_but_a_pbkdf2_sha512_hash_never_verifies(stored: str | None) -> None:
    assert not verify("correct horse", stored)


@pytest.mark.parametrize("data", [b"", b"\xfb\xff", bytes(range(256)), b"odooops"])
def test_adapted_base64_round_trips_without_plus_or_padding(data: bytes) -> None:
    text = ab64_encode(data)
    assert "+" not in text and "=" not in text
    assert ab64_decode(text) == data
