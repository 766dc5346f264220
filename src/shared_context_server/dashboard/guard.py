"""Who may read the dashboard: the browser holding the printed URL's token, on a Host the
server was bound to, by GET only; and every response locked down (CSP, no framing, no
caching, no CORS).

Why each: another local user or any web page can reach 127.0.0.1, so a secret in the URL
is required (then an HttpOnly SameSite=Strict cookie, so the token leaves the address bar
and no other site's request carries it); a DNS-rebinding page reaches us under its own
host name, which the Host check refuses; message content is untrusted, so the CSP allows
only our own script and the page never turns data into markup.
"""

from __future__ import annotations

import hmac
import ipaddress
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
LOOPBACK_NAMES = ("127.0.0.1", "localhost", "[::1]")


def allowed_hosts(host: str, port: int) -> frozenset[str]:
    """The Host headers a browser sends for this server: the loopback names, and the
    address it was bound to."""
    names = {*LOOPBACK_NAMES, f"[{host}]" if ":" in host else host}
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
        self.cookie = f"scs_dashboard_{port}"

    def _host_ok(self, host: str) -> bool:
        return host in self.hosts or (self.any_ip and _ip_literal(host, self.port))

    def _token_ok(self, given: str | None) -> bool:
        return given is not None and hmac.compare_digest(given.encode(), self.token.encode())

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
            # Swap the token in the URL for a cookie, so it leaves the address bar.
            cookie = f"{self.cookie}={self.token}; HttpOnly; SameSite=Strict; Path=/"
            await _respond(send, 303, b"", [(b"location", b"/"), (b"set-cookie", cookie.encode())])
        elif self._token_ok(in_query) or self._token_ok(in_cookie):
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
