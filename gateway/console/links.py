"""Signed, expiring acknowledgement links for notifications.

``/link/ack/<alarm id>/<person>/<expires>/<signature>``: the signature is HMAC-SHA256, keyed
with the console's secret, over a purpose label and the three fields joined by NUL (none of
them may hold one), so a signature for one alarm, person or expiry fits no other. Whoever has
the link may acknowledge that one alarm as that person until it expires: send it only to
that person's own channel, and keep lifetimes short.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import re
from dataclasses import dataclass
from typing import Literal

PREFIX = "/link/ack"
_PURPOSE = b"guanjia-console-ack-link-v1"
_PART = re.compile(r"^[A-Za-z0-9._-]{1,128}$")  # alarm ids and person ids are URL-safe
_EXPIRES = re.compile(r"^[0-9]{1,12}$")
MIN_SECRET_BYTES = 16

Verdict = Literal["ok", "forged", "expired"]


@dataclass(frozen=True, slots=True)
class LinkClaim:
    alarm_id: str
    person: str
    expires: int  # epoch seconds


class LinkSigner:
    def __init__(self, secret: bytes) -> None:
        if len(secret) < MIN_SECRET_BYTES:
            raise ValueError(
                f"the link secret has {len(secret)} bytes; use at least {MIN_SECRET_BYTES} "
                "random bytes (e.g. `openssl rand -base64 32`)"
            )
        self._secret = secret

    def _signature(self, claim: LinkClaim) -> str:
        message = b"\x00".join(
            (_PURPOSE, claim.alarm_id.encode(), claim.person.encode(), str(claim.expires).encode())
        )
        digest = hmac.new(self._secret, message, hashlib.sha256).digest()
        return base64.urlsafe_b64encode(digest).rstrip(b"=").decode("ascii")

    def sign(self, alarm_id: str, person: str, expires: float) -> str:
        """The link's path (put the console's public URL in front)."""
        for name, part in (("alarm id", alarm_id), ("person", person)):
            if not _PART.match(part):
                raise ValueError(f"{name} {part!r} cannot go into a link: letters, digits, . _ -")
        claim = LinkClaim(alarm_id, person, int(expires))
        return f"{PREFIX}/{alarm_id}/{person}/{claim.expires}/{self._signature(claim)}"

    def verify(
        self, alarm_id: str, person: str, expires: str, signature: str, now: float
    ) -> tuple[Verdict, LinkClaim | None]:
        """Forged (or mangled) before expired: an altered expiry must not read as 'expired'."""
        if not (_PART.match(alarm_id) and _PART.match(person) and _EXPIRES.match(expires)):
            return "forged", None
        claim = LinkClaim(alarm_id, person, int(expires))
        if not hmac.compare_digest(self._signature(claim).encode(), signature.encode()):
            return "forged", None
        if now >= claim.expires:
            return "expired", claim
        return "ok", claim
