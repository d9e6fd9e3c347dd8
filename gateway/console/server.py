"""The duty console: an aiohttp server on the gateway's event loop, off unless configured."""

from __future__ import annotations

import logging
import ssl
import time
from collections.abc import Awaitable, Callable
from pathlib import Path
from zoneinfo import ZoneInfo

from aiohttp import web

from gateway.console import assets, pages
from gateway.console.config import ConsoleConfig
from gateway.console.desk import AlarmDesk
from gateway.console.links import LinkSigner
from gateway.console.rounds import RoundsBoard
from gateway.console.sessions import SessionStore
from gateway.console.state import LANG_COOKIE, ConsoleState, token_digest
from gateway.console.throttle import LoginThrottle, ThrottlePolicy
from gateway.console.web_api import ApiHandlers, answer
from gateway.console.web_links import LinkHandlers
from gateway.console.web_pages import Abort, PageHandlers, html, stats_of
from gateway.messages import ConsoleEvent

log = logging.getLogger("guanjia.console")

Resolve = Callable[[str], str]  # a `${ENV}` / `file:` reference -> the secret

_SECURITY_HEADERS = {
    "Content-Security-Policy": (
        "default-src 'none'; style-src 'self'; script-src 'self'; img-src 'self'; "
        "form-action 'self'; frame-ancestors 'none'; base-uri 'none'"
    ),
    "X-Content-Type-Options": "nosniff",
    "X-Frame-Options": "DENY",
    # Signed links carry their authority in the path: never hand it on to another site.
    "Referrer-Policy": "no-referrer",
}
MAX_REQUEST_BYTES = 64 * 1024


class ConsoleError(ValueError):
    """A console setting that cannot work; the message names the key and the fix."""


class Console:
    """Pages for the duty staff, a JSON API for programs, signed acknowledgement links.

    Built (and its secrets resolved, its certificate loaded) before anything starts, so a
    mistake is reported at start-up; `start()` listens, `stop()` closes.
    """

    def __init__(
        self,
        config: ConsoleConfig,
        desk: AlarmDesk,
        resolve: Resolve,
        *,
        base_dir: Path | None = None,
        timezone: str = "Asia/Shanghai",
        clock: Callable[[], float] = time.time,
        rounds: RoundsBoard | None = None,
        publish: Callable[[ConsoleEvent], None] | None = None,
    ) -> None:
        """`rounds`: the patrol rounds board (None: the site has no patrol routes);
        `publish`: where logins, logouts, acknowledgements and shelvings go (the bus)."""
        self.config = config
        base = base_dir or Path.cwd()
        self.state = ConsoleState(
            config=config,
            desk=desk,
            tz=ZoneInfo(timezone),
            clock=clock,
            users={u.id: u for u in config.users},
            sessions=SessionStore(
                config.session_lifetime, config.session_idle, config.max_sessions
            ),
            throttle=LoginThrottle(
                ThrottlePolicy(
                    free_user=config.login.free_user,
                    free_address=config.login.free_address,
                    base_delay=config.login.base_delay,
                    max_delay=config.login.max_delay,
                    forget_after=config.login.forget_after,
                )
            ),
            tls=config.tls is not None,
            rounds=rounds,
        )
        if publish is not None:
            self.state.publish = publish
        for i, client in enumerate(config.api_clients):
            token = _resolve(resolve, client.token, f"console.api_clients[{i}].token")
            if len(token) < 24:
                raise ConsoleError(
                    f"console.api_clients[{i}].token: {len(token)} characters; use at least "
                    "24 random ones (e.g. `openssl rand -base64 32`)"
                )
            digest = token_digest(token)
            if digest in self.state.clients:
                raise ConsoleError(f"console.api_clients[{i}].token: shared with another client")
            self.state.clients[digest] = client
        if config.link_secret is not None:
            secret = _resolve(resolve, config.link_secret, "console.link_secret")
            try:
                self.state.signer = LinkSigner(secret.encode())
            except ValueError as exc:
                raise ConsoleError(f"console.link_secret: {exc}") from None
        self.ssl_context = self._tls(base) if config.tls is not None else None
        self.pages = PageHandlers(self.state)
        self.app = self._app()
        self._runner: web.AppRunner | None = None
        self.port: int | None = None

    def _tls(self, base: Path) -> ssl.SSLContext:
        assert self.config.tls is not None
        cert = _site_path(base, self.config.tls.cert_file)
        key = _site_path(base, self.config.tls.key_file)
        context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
        context.minimum_version = ssl.TLSVersion.TLSv1_2
        try:
            context.load_cert_chain(cert, key)
        except FileNotFoundError as exc:
            raise ConsoleError(
                f"console.tls: {exc.filename or cert} does not exist; check cert_file and key_file"
            ) from None
        except (ssl.SSLError, OSError) as exc:
            raise ConsoleError(
                f"console.tls: cannot load {cert} with {key} ({exc}); both PEM, the key "
                "unencrypted and matching the certificate"
            ) from None
        return context

    def _app(self) -> web.Application:
        app = web.Application(middlewares=[self._middleware], client_max_size=MAX_REQUEST_BYTES)
        app.add_routes(self.pages.routes())
        app.add_routes(ApiHandlers(self.state).routes())
        app.add_routes(LinkHandlers(self.state).routes())
        app.add_routes(
            [
                web.get(assets.CSS_PATH, _asset(assets.CSS, "text/css")),
                web.get(assets.JS_PATH, _asset(assets.JS, "text/javascript")),
            ]
        )
        return app

    @web.middleware
    async def _middleware(
        self,
        request: web.Request,
        handler: Callable[[web.Request], Awaitable[web.StreamResponse]],
    ) -> web.StreamResponse:
        try:
            response = await handler(request)
        except Abort as abort:
            response = abort.response
        except web.HTTPException as exc:
            if exc.status < 400:
                raise
            response = self._error(request, exc.status)
        if not request.path.startswith("/static/"):
            response.headers.setdefault("Cache-Control", "no-store")
        response.headers.update(_SECURITY_HEADERS)
        asked = request.query.get("lang")
        if asked in ("zh", "en") and request.cookies.get(LANG_COOKIE) != asked:
            response.set_cookie(
                LANG_COOKIE, asked, samesite="Strict", secure=self.state.tls, max_age=31536000
            )
        return response

    def _error(self, request: web.Request, status: int) -> web.Response:
        if request.path.startswith("/api/"):
            return answer({"error": "not found" if status == 404 else f"HTTP {status}"}, status)
        lines = (
            [("页面不存在。", "No such page.")]
            if status == 404
            else [
                (
                    f"请求无法处理（HTTP {status}）。",
                    f"The request cannot be handled (HTTP {status}).",
                )
            ]
        )
        page = pages.notice_page(
            ("出错了", "Error"), lines, '<p><a href="/alarms">值班台 / Console</a></p>'
        )
        return html(page, status)

    # -- the life of the server ---------------------------------------------------------------

    async def start(self) -> None:
        runner = web.AppRunner(self.app, access_log=None, handle_signals=False)
        await runner.setup()
        site = web.TCPSite(runner, self.config.host, self.config.port, ssl_context=self.ssl_context)
        await site.start()
        self._runner = runner
        address = runner.addresses[0]
        self.port = int(address[1])
        log.info(
            "console on %s://%s:%d (%d users, %d API clients, links %s)",
            "https" if self.ssl_context else "http",
            self.config.host,
            self.port,
            len(self.state.users),
            len(self.state.clients),
            "on" if self.state.signer else "off",
        )

    async def stop(self) -> None:
        if self._runner is not None:
            await self._runner.cleanup()
            self._runner = None

    @property
    def url(self) -> str:
        """Where this console listens (for tests and logs); notifications use `link_url`."""
        scheme = "https" if self.ssl_context else "http"
        return f"{scheme}://{self.config.host}:{self.port}"

    # -- links ----------------------------------------------------------------------------------

    def sign_link(self, alarm_id: str, person_id: str, expires: float | None = None) -> str:
        """The path of a link that acknowledges `alarm_id` as `person_id` until `expires`
        (epoch seconds; default: now + link_ttl)."""
        if self.state.signer is None:
            raise ConsoleError("console.link_secret is not set: no signed links")
        until = self.state.clock() + self.config.link_ttl if expires is None else expires
        return self.state.signer.sign(alarm_id, person_id, until)

    def link_url(self, alarm_id: str, person_id: str, expires: float | None = None) -> str:
        """`public_url` + `sign_link(...)`: what a notification carries."""
        base = self.config.public_url or self.url
        return base + self.sign_link(alarm_id, person_id, expires)

    # -- figures ----------------------------------------------------------------------------------

    def stats(self) -> dict[str, int]:
        stats = stats_of(self.state)
        if self.state.rounds is not None:
            stats.update(self.state.rounds.stats())
        return stats

    def health(self) -> dict[str, int]:
        out = {f"console_{k}": v for k, v in self.stats().items()}
        out["console_running"] = int(self._runner is not None)
        return out


def _resolve(resolve: Resolve, ref: str, where: str) -> str:
    try:
        return resolve(ref)
    except ValueError as exc:
        raise ConsoleError(f"{where}: {exc}") from None


def _site_path(base: Path, name: str) -> Path:
    path = Path(name)
    return path if path.is_absolute() else base / path


def _asset(body: str, content_type: str) -> Callable[[web.Request], Awaitable[web.Response]]:
    data = body.encode()

    async def serve(_request: web.Request) -> web.Response:
        response = web.Response(body=data, content_type=content_type, charset="utf-8")
        # The path carries the content's hash: a changed asset is a new URL.
        response.headers["Cache-Control"] = "public, max-age=31536000, immutable"
        return response

    return serve
