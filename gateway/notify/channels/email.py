"""Email over SMTP, through apprise's `mailto://` / `mailtos://`, in a worker thread.

Why apprise here, when the robots have clients of their own: unlike its DingTalk and WeCom
plugins, its email plugin can be aimed at any server (`smtp=` host, any port, `mode=` starttls,
ssl or insecure), and it reports failures. Tried against a local aiosmtpd server (apprise
2.3.0): a delivered message is SUCCESS with UTF-8 subject and body intact; a refused login
(535), a refused recipient (550) and a closed port are all FAILURE.

Its limits, accepted here: the verdict is success or failure only, with a generic reason
("Connection error while submitting email"); the SMTP reply code goes to apprise's debug log,
not to the result. So every failure is retried (with backoff) until the worker gives up on the
delivery, even a wrong password: health shows the channel failing meanwhile. apprise's send is
blocking (smtplib), so it runs in a thread, never on the event loop; each send builds its own
plugin instance, so apprise's own 5.5 s pause between two sends of one instance never applies
(the channel's rate limit is ours). The delivery key goes out as an `X-Guanjia-Key` header.
User names and passwords must be ASCII: smtplib's AUTH encodes them so.
"""

from __future__ import annotations

import asyncio
from typing import Any
from urllib.parse import quote, urlencode

from gateway.notify.channels.base import SecretResolver
from gateway.notify.channels.config import EmailConfig
from gateway.notify.delivery import Delivery, SendResult
from gateway.notify.ratelimit import RateLimit

_MODES = {
    "starttls": ("mailtos", "starttls"),
    "ssl": ("mailtos", "ssl"),
    "none": ("mailto", "insecure"),
}


class EmailChannel:
    kind = "email"

    def __init__(self, config: EmailConfig, resolve: SecretResolver) -> None:
        self.name = config.name
        self.config = config
        self.rate: RateLimit = config.rate.limit()
        self._password = resolve(config.password) if config.password is not None else None

    def url(self, to: list[str], key: str) -> str:
        """The apprise URL for one message; user and password quoted, never logged."""
        c = self.config
        schema, mode = _MODES[c.security]
        login = ""
        if c.username is not None:
            login = quote(c.username, safe="")
            if self._password is not None:
                login += ":" + quote(self._password, safe="")
            login += "@"
        host = f"[{c.host}]" if ":" in c.host else c.host
        query = {
            "smtp": c.host,
            "mode": mode,
            "from": c.from_address,
            "to": ",".join(to),
            "verify": "yes" if c.verify_tls else "no",
            "cto": str(c.timeout),
            "rto": str(c.timeout),
            "format": "text",
            "+X-Guanjia-Key": key,
        }
        if c.from_name:
            query["name"] = c.from_name
        return f"{schema}://{login}{host}:{c.port}/?{urlencode(query, quote_via=quote)}"

    def _send_blocking(self, delivery: Delivery, to: list[str]) -> SendResult:
        import apprise  # loads its ~190 plugins: only once a mail goes out, not at start-up

        notifier = apprise.Apprise()
        if not notifier.add(self.url(to, delivery.key)):
            return SendResult(ok=False, reason="apprise refused the SMTP settings", retry=False)
        message = delivery.message
        result: Any = notifier.notify(body=message.text, title=message.title)
        if result:
            return SendResult(ok=True)
        logs = getattr(result, "logs", None)  # apprise >= 2 says why; 1.x answers a bool
        said = [e.message for e in logs() if e.level in ("WARNING", "ERROR")] if logs else []
        return SendResult(ok=False, reason="; ".join(said[-2:]) or "SMTP send failed")

    async def send(self, delivery: Delivery) -> SendResult:
        to = [delivery.recipient.email] if delivery.recipient.email else list(self.config.to)
        if not to:
            return SendResult(
                ok=False,
                reason=f"{delivery.recipient.name} has no email and the channel no `to`",
                retry=False,
            )
        return await asyncio.to_thread(self._send_blocking, delivery, to)

    async def close(self) -> None:
        return None
