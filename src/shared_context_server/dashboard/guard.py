"""Who may read the dashboard: the browser holding the printed URL's token, on a Host the
server was bound to, by GET only; and every response locked down (CSP, no framing, no
caching, no CORS).

Why each: another local user or any web page can reach 127.0.0.1, so a secret in the URL
is required. The first visit trades it for a cookie holding a random value of this run's
own, not the token nor anything computed from it: a browser sends a host's cookies to every
port of it, so whatever else listens on the same address may receive the cookie, and it
must open nothing there or anywhere else. (Hence also the per-run address command.py
binds, so that other local services never receive it at all.) The cookie is HttpOnly,
SameSite=Strict (no other site's request carries it), Path=/ and has no Domain (it stays
on this host). It has no __Host- prefix: that requires Secure, which a browser honours on
plain http only for some loopback names, so the cookie would be silently dropped in some.

A DNS-rebinding page reaches us under its own host name, which the Host check refuses;
message content is untrusted, so the CSP allows only our own script and the page never
turns data into markup.
"""

from __future__ import annotations

import hmac
import ipaddress
import secrets
from urllib.parse import parse_qs

from starlette.types import ASGIApp, Message, Receive, Scope, Send

CSP = (
    "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self'; "
    "connect-src 'self'; base-uri 'none'; form-action 'none'; frame-ancestors 'none'"
)
SECURITY_HEADERS = [
    (b"content-security-policy", CSP.encode()),
    (b"x-content-type-options", b"nosniff"),
    (b"x-frame-options", b"DENY"),
    (b"referrer-policy", b"no-referrer"),
    (b"cross-origin-opener-policy", b"same-origin"),
    (b"cross-origin-resource-policy", b"same-origin"),
    (b"cache-control", b"no-store"),
]
# Addresses `localhost` may reach; a per-run 127.x.y.z is reached only by its number.
LOCALHOST_REACHES = ("127.0.0.1", "::1", "0.0.0.0", "::")


def url_host(host: str) -> str:
    """`host` as it appears in a URL or a Host header."""
    return f"[{host}]" if ":" in host else host


def allowed_hosts(host: str, port: int) -> frozenset[str]:
    """The Host headers a browser sends for this server: the address it was bound to, and
    `localhost` where that name can reach it."""
    names = {url_host(host), *(("localhost",) if host in LOCALHOST_REACHES else ())}
    return frozenset(f"{name}:{port}" for name in names)


def _ip_literal(host_header: str, port: int) -> bool:
    """`host_header` names an IP address (no name a rebinding DNS server could answer)."""
    name, _, rest = host_header.rpartition(":")
    if rest != str(port):
        return False
    try:
        ipaddress.ip_address(name.strip("[]"))
    except ValueError:
        return False
    return True


class Guard:
    """ASGI middleware in front of the whole app (streams pass through untouched)."""

    def __init__(self, app: ASGIApp, token: str, host: str, port: int) -> None:
        self.app = app
        self.token = token
        self.port = port
        self.hosts = allowed_hosts(host, port)
        self.any_ip = host in ("0.0.0.0", "::")
        self.origins = frozenset(f"http://{h}" for h in self.hosts)
        # The port in the name: two dashboards sharing 127.0.0.1 keep a cookie each.
        self.cookie = f"scs_dashboard_{port}"
        self.session = secrets.token_urlsafe(32)

    def _host_ok(self, host: str) -> bool:
        return host in self.hosts or (self.any_ip and _ip_literal(host, self.port))

    def _token_ok(self, given: str | None) -> bool:
        return given is not None and hmac.compare_digest(given.encode(), self.token.encode())

    def _session_ok(self, given: str | None) -> bool:
        return given is not None and hmac.compare_digest(given.encode(), self.session.encode())

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        headers = {k.decode("latin-1"): v.decode("latin-1") for k, v in scope["headers"]}
        query = parse_qs(scope.get("query_string", b"").decode("latin-1"))
        in_cookie = _cookie(headers.get("cookie", ""), self.cookie)
        in_query = query.get("token", [None])[0]
        origin = headers.get("origin")
        if not self._host_ok(headers.get("host", "")):
            await _refuse(send, 400, "this Host is not the dashboard's; open the printed URL.")
        elif scope["method"] not in ("GET", "HEAD"):
            await _refuse(send, 405, "the dashboard is read-only.")
        elif origin is not None and origin not in self.origins:
            await _refuse(send, 403, "requests from other origins are refused.")
        elif self._token_ok(in_query) and scope["path"] == "/":
            # Swap the token in the URL for the session cookie and a clean URL, so the token
            # leaves the address bar and the history; it is good on this one path only.
            cookie = f"{self.cookie}={self.session}; HttpOnly; SameSite=Strict; Path=/"
            await _respond(send, 303, b"", [(b"location", b"/"), (b"set-cookie", cookie.encode())])
        elif self._session_ok(in_cookie):
            await self.app(scope, receive, _with_headers(send))
        else:
            await _refuse(send, 403, "the dashboard needs its token: open the URL it printed.")


def _cookie(header: str, name: str) -> str | None:
    """The cookie `name`, read by hand: other local apps' cookies share 127.0.0.1 (cookies
    ignore ports), and one malformed among them makes http.cookies drop them all."""
    for part in header.split(";"):
        key, _, value = part.strip().partition("=")
        if key == name:
            return value
    return None


def _with_headers(send: Send) -> Send:
    async def sending(message: Message) -> None:
        if message["type"] == "http.response.start":
            message = {**message, "headers": [*message.get("headers", []), *SECURITY_HEADERS]}
        await send(message)

    return sending


async def _refuse(send: Send, status: int, text: str) -> None:
    await _respond(send, status, f"{text}\n".encode(), [(b"content-type", b"text/plain")])


async def _respond(
    send: Send, status: int, body: bytes, headers: list[tuple[bytes, bytes]]
) -> None:
    await send(
        {
            "type": "http.response.start",
            "status": status,
            "headers": [*headers, (b"content-length", str(len(body)).encode()), *SECURITY_HEADERS],
        }
    )
    await send({"type": "http.response.body", "body": body})
