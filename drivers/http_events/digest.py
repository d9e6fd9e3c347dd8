"""HTTP Digest access authentication (RFC 7616) for the event streams, client side.

Hikvision and Dahua devices ask for Digest (MD5, qop=auth); RFC 7616 adds SHA-256 and the
`-sess` variants, and RFC 2069 devices send no qop at all: all of them are answered here. The
last challenge is kept, so a reconnect sends its answer at once (the next nonce count) instead
of paying a 401 round trip every time; a device that has forgotten the nonce says `stale=true`
and the request is answered again, which is not a wrong password.

aiohttp has a client digest middleware only from 3.12, and this project runs on older ones
too; this module is small, and it knows when a 401 means the password was refused.
"""

from __future__ import annotations

import base64
import hashlib
import os
import re
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field

# One auth-param: a token, `=`, then a token or a quoted string with backslash escapes.
_PARAM = re.compile(r'\s*([A-Za-z0-9!#$%&\'*+.^_`|~-]+)\s*=\s*("(?:[^"\\]|\\.)*"|[^\s,]+)\s*,?')
_SCHEME = re.compile(r"\s*([A-Za-z0-9!#$%&'*+.^_`|~-]+)(?:\s+|$)")

_HASHES: dict[str, Callable[[bytes], str]] = {
    "MD5": lambda b: hashlib.md5(b, usedforsecurity=False).hexdigest(),
    "SHA-256": lambda b: hashlib.sha256(b).hexdigest(),
}
# Preference when a device offers several Digest challenges: the stronger hash first.
_STRENGTH = {"SHA-256": 2, "SHA-256-SESS": 2, "MD5": 1, "MD5-SESS": 1}


class ChallengeError(ValueError):
    """A 401 whose challenge cannot be answered (no Digest or Basic, an unknown algorithm)."""


@dataclass(frozen=True, slots=True)
class Challenge:
    """One `WWW-Authenticate` challenge: its scheme (lower case) and parameters."""

    scheme: str
    params: dict[str, str]


def parse_challenges(headers: Iterable[str]) -> list[Challenge]:
    """Every challenge in the `WWW-Authenticate` header lines (one line may hold several)."""
    out: list[Challenge] = []
    for header in headers:
        text = header
        while text.strip():
            scheme = _SCHEME.match(text)
            if scheme is None:
                break
            params: dict[str, str] = {}
            rest = text[scheme.end() :]
            while True:
                match = _PARAM.match(rest)
                if match is None:
                    break
                key, value = match.group(1).lower(), match.group(2)
                if value.startswith('"'):
                    value = re.sub(r"\\(.)", r"\1", value[1:-1])
                params[key] = value
                rest = rest[match.end() :]
            out.append(Challenge(scheme.group(1).lower(), params))
            if rest == text[scheme.end() :]:  # a scheme without parameters (e.g. `Negotiate`)
                rest = rest.lstrip(", ")
            text = rest
    return out


def _quote(value: str) -> str:
    return '"' + value.replace("\\", "\\\\").replace('"', '\\"') + '"'


@dataclass
class DigestAuth:
    """Answers a device's challenges with one user's credentials; keeps the last nonce."""

    username: str
    password: str
    cnonce: Callable[[], str] = field(default=lambda: os.urandom(8).hex())
    _challenge: Challenge | None = None
    _count: int = 0  # requests answered with the current nonce (`nc`)

    @property
    def ready(self) -> bool:
        """Whether a request can carry credentials before the device asks for them."""
        return self._challenge is not None

    def forget(self) -> None:
        self._challenge = None
        self._count = 0

    def challenged(self, headers: Iterable[str]) -> bool:
        """Take a 401's challenges (ChallengeError when none can be answered); True when the
        device says the nonce was stale, not the credentials wrong."""
        chosen = self._choose(parse_challenges(headers))
        self._challenge = chosen
        self._count = 0
        return chosen.scheme == "digest" and chosen.params.get("stale", "").lower() == "true"

    def _choose(self, challenges: list[Challenge]) -> Challenge:
        digests = [
            c
            for c in challenges
            if c.scheme == "digest" and c.params.get("algorithm", "MD5").upper() in _STRENGTH
        ]
        if digests:
            return max(digests, key=lambda c: _STRENGTH[c.params.get("algorithm", "MD5").upper()])
        for c in challenges:
            if c.scheme == "basic":
                return c
        offered = ", ".join(
            f"{c.scheme} {c.params.get('algorithm', '')}".strip() for c in challenges
        )
        raise ChallengeError(f"the device asks for {offered or 'nothing'}; Digest is needed")

    def header(self, method: str, uri: str) -> str | None:
        """The `Authorization` value for a request, None before any challenge."""
        challenge = self._challenge
        if challenge is None:
            return None
        if challenge.scheme == "basic":
            token = f"{self.username}:{self.password}".encode()
            return "Basic " + base64.b64encode(token).decode("ascii")
        params = challenge.params
        algorithm = params.get("algorithm", "MD5")
        name = algorithm.upper()
        digest = _HASHES[name.removesuffix("-SESS")]
        realm, nonce = params.get("realm", ""), params.get("nonce", "")
        qops = [q.strip().lower() for q in params.get("qop", "").split(",") if q.strip()]
        if qops and "auth" not in qops:
            raise ChallengeError(f"the device asks for qop {params['qop']}; only auth is spoken")
        self._count += 1
        nc = f"{self._count:08x}"
        cnonce = self.cnonce()
        ha1 = digest(f"{self.username}:{realm}:{self.password}".encode())
        if name.endswith("-SESS"):
            ha1 = digest(f"{ha1}:{nonce}:{cnonce}".encode())
        ha2 = digest(f"{method}:{uri}".encode())
        if qops:
            response = digest(f"{ha1}:{nonce}:{nc}:{cnonce}:auth:{ha2}".encode())
        else:  # RFC 2069
            response = digest(f"{ha1}:{nonce}:{ha2}".encode())
        fields = [
            f"username={_quote(self.username)}",
            f"realm={_quote(realm)}",
            f"nonce={_quote(nonce)}",
            f"uri={_quote(uri)}",
            f"algorithm={algorithm}",
            f"response={_quote(response)}",
        ]
        if qops:
            fields += ["qop=auth", f"nc={nc}", f"cnonce={_quote(cnonce)}"]
        if "opaque" in params:
            fields.append(f"opaque={_quote(params['opaque'])}")
        return "Digest " + ", ".join(fields)
