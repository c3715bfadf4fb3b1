"""SCRAM-SHA-256 verifiers for scripts/setup.sh, with the standard library only.

    python3 scripts/lib/scram.py verifier < password          prints a PostgreSQL verifier
    STORED=VERIFIER python3 scripts/lib/scram.py matches < password   exit 0 when it is its

The password is read from stdin and the stored verifier from the environment (never argv,
which every local user can read in ps); the server receives only the verifier, so the
password never appears in a statement or a log.
Same computation as reconciler/drivers/postgres.py (RFC 5802/7677), which setup.sh cannot
import: it runs before the virtualenv exists.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import os
import secrets
import sys


def keys(password: str, salt: bytes, iterations: int) -> tuple[bytes, bytes]:
    salted = hashlib.pbkdf2_hmac("sha256", password.encode(), salt, iterations)
    client_key = hmac.new(salted, b"Client Key", "sha256").digest()
    server_key = hmac.new(salted, b"Server Key", "sha256").digest()
    return hashlib.sha256(client_key).digest(), server_key


def verifier(password: str, iterations: int = 4096) -> str:
    salt = secrets.token_bytes(16)
    stored, server = keys(password, salt, iterations)
    salt_text, stored_text, server_text = (
        base64.b64encode(b).decode() for b in (salt, stored, server)
    )
    return f"SCRAM-SHA-256${iterations}:{salt_text}${stored_text}:{server_text}"


def matches(password: str, text: str) -> bool:
    try:
        scheme, rest = text.split("$", 1)
        head, tail = rest.split("$", 1)
        iterations, salt = head.split(":", 1)
        stored, server = tail.split(":", 1)
        mine = keys(password, base64.b64decode(salt), int(iterations))
    except ValueError:
        return False
    theirs = (base64.b64decode(stored), base64.b64decode(server))
    return scheme == "SCRAM-SHA-256" and all(map(hmac.compare_digest, mine, theirs))


def main(argv: list[str]) -> int:
    password = sys.stdin.read().rstrip("\n")
    if not password:
        print("scram.py: no password on stdin", file=sys.stderr)
        return 2
    if argv[1:] == ["verifier"]:
        print(verifier(password))
        return 0
    if argv[1:] == ["matches"]:
        return 0 if matches(password, os.environ.get("STORED", "")) else 1
    print(__doc__, file=sys.stderr)
    return 2


if __name__ == "__main__":
    sys.exit(main(sys.argv))
