"""Password hashes for the console's people: scrypt with a salt of its own per user.

The hash string carries its parameters, so they can be raised later without invalidating the
hashes already in site files: ``scrypt$n=32768,r=8,p=1$<salt>$<key>`` (salt and key in
unpadded base64url). Verifying costs tens of milliseconds and 32 MiB on purpose: a stolen
site file must not give its passwords away to a quick search. Callers on the event loop run
`verify_password` in a thread.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import re
import secrets

SCHEME = "scrypt"
N, R, P = 2**15, 8, 1  # OWASP's scrypt minimum (2**17 at r=8 for 128 MiB) scaled to an edge box
SALT_BYTES = 16
KEY_BYTES = 32
# Bounds of what a hash string may ask for: a hand-edited n=2**30 must not take the box down.
MAX_N = 2**20
MAX_RP = 64
MIN_PASSWORD = 8

_FORMAT = re.compile(
    r"^scrypt\$n=(?P<n>\d+),r=(?P<r>\d+),p=(?P<p>\d+)\$(?P<salt>[A-Za-z0-9_-]+)\$(?P<key>[A-Za-z0-9_-]+)$"
)


class PasswordHashError(ValueError):
    """A hash string that is not one of ours."""


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode("ascii")


def _unb64(text: str) -> bytes:
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


def _derive(plain: str, salt: bytes, n: int, r: int, p: int, length: int) -> bytes:
    # maxmem: OpenSSL's default (32 MiB) is exactly what n=2**15, r=8 needs and then some
    # bookkeeping: allow what the parameters need, plus headroom.
    maxmem = 128 * r * (n + p + 2) + 1024 * 1024
    return hashlib.scrypt(
        plain.encode("utf-8"), salt=salt, n=n, r=r, p=p, maxmem=maxmem, dklen=length
    )


def hash_password(plain: str) -> str:
    """A new hash string for a site file's `password_hash:`, with a fresh random salt."""
    if len(plain) < MIN_PASSWORD:
        raise ValueError(f"a console password has at least {MIN_PASSWORD} characters")
    salt = secrets.token_bytes(SALT_BYTES)
    key = _derive(plain, salt, N, R, P, KEY_BYTES)
    return f"{SCHEME}$n={N},r={R},p={P}${_b64(salt)}${_b64(key)}"


def parse_hash(text: str) -> tuple[int, int, int, bytes, bytes]:
    """(n, r, p, salt, key); PasswordHashError naming what is wrong."""
    match = _FORMAT.match(text)
    if match is None:
        raise PasswordHashError(
            "not a password hash; make one with `guanjia console-password` (scrypt$n=...)"
        )
    n, r, p = int(match["n"]), int(match["r"]), int(match["p"])
    if n < 2 or n & (n - 1) or n > MAX_N:
        raise PasswordHashError(f"scrypt n={n} must be a power of two up to {MAX_N}")
    if not (1 <= r <= MAX_RP and 1 <= p <= MAX_RP):
        raise PasswordHashError(f"scrypt r={r}, p={p} must be 1 to {MAX_RP}")
    salt, key = _unb64(match["salt"]), _unb64(match["key"])
    if len(salt) < 8 or len(key) < 16:
        raise PasswordHashError("salt or key too short; make a new hash")
    return n, r, p, salt, key


def verify_password(plain: str, stored: str) -> bool:
    """Whether `plain` matches; constant time in the comparison. Blocks for tens of ms."""
    try:
        n, r, p, salt, key = parse_hash(stored)
    except PasswordHashError:
        return False
    return hmac.compare_digest(_derive(plain, salt, n, r, p, len(key)), key)


# Verified against when the user name is unknown, so a wrong name costs as long as a wrong
# password and the response time does not tell which names exist.
DUMMY_HASH = f"{SCHEME}$n={N},r={R},p={P}${_b64(b'guanjia-no-user!')}${_b64(bytes(KEY_BYTES))}"


def main() -> int:
    """`python -m gateway.console.passwords`: asks twice, prints the hash for the site file."""
    import getpass
    import sys

    first = getpass.getpass("password: ")
    if getpass.getpass("again: ") != first:
        print("the two entries differ; nothing written", file=sys.stderr)
        return 1
    try:
        print(hash_password(first))
    except ValueError as exc:
        print(exc, file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
