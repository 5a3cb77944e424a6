"""Who may use the admin routes, and see internal URLs (docs/architecture.md, HTTP).
Framework-neutral.

With an admin token set, a request must carry `Authorization: Bearer <token>`, whatever its
address (loopback included: on a shared host, "local" is not "trusted"). Without one, only
loopback clients (127.0.0.0/8, ::1, and IPv4-mapped forms of them) are served.

Answers: no credentials → 401 (with `WWW-Authenticate: Bearer`); a wrong token → 403; no token
configured and a client that is not loopback → 403.

Loopback is not enough on its own when the request comes from a browser: any web page the
operator opens can make the browser POST to http://127.0.0.1:5000/admin/... (cross-site request
forgery), and a hostile domain re-pointed at 127.0.0.1 can even read the answers (DNS
rebinding). So a loopback client without a token is refused (403) when the request says it is
cross-site (`Sec-Fetch-Site: cross-site|same-site`, or an `Origin` other than the request's own
host), or when its `Host` is not a loopback address, `localhost` or this machine's name. curl,
scripts and `hbsm check` send none of these and are unaffected; with a token none of this
matters (a page cannot add an Authorization header to a cross-site request without CORS, which
this API never grants).
"""

from __future__ import annotations

import functools
import hmac
import ipaddress
import socket
from dataclasses import dataclass
from urllib.parse import urlsplit

import msgspec

__all__ = [
    "PROXY_HEADERS",
    "WWW_AUTHENTICATE",
    "Decision",
    "admin_body_problem",
    "authorize",
    "bearer_token",
    "binds_loopback_only",
    "browser_risk",
    "client_label",
    "is_loopback",
]

WWW_AUTHENTICATE = 'Bearer realm="hbsm"'
# Headers a proxy adds. A request carrying one came through a proxy (or says it did): it is not
# a loopback client, whatever address it connected from, or a local reverse proxy would make
# every remote user "loopback". (Whom to believe about the client's address is the server's
# business: `hbsm run` believes no one unless `[api] trusted_proxies` names the proxy.)
PROXY_HEADERS = ("forwarded", "x-forwarded-for", "x-real-ip")


@dataclass(frozen=True, slots=True)
class Decision:
    """`who` is what an `admin` event records: "token" or "loopback" when allowed; for a
    refusal, "token" (a wrong one was offered) or "anonymous"."""

    allowed: bool
    who: str
    status: int  # 200 when allowed, else 401 or 403
    message: str = ""


@functools.lru_cache(maxsize=1024)  # parsing an address costs more than the rest of a request
def is_loopback(host: str | None) -> bool:
    """Whether a client address is loopback. Anything that is not an IP address is not."""
    if not host:
        return False
    try:
        addr = ipaddress.ip_address(host.split("%", 1)[0])  # drop an IPv6 zone id
    except ValueError:
        return False
    if isinstance(addr, ipaddress.IPv6Address) and addr.ipv4_mapped is not None:
        return addr.ipv4_mapped.is_loopback
    return addr.is_loopback


def bearer_token(authorization: str | None) -> str | None:
    """The token of an `Authorization: Bearer <token>` header (scheme case-insensitive)."""
    if not authorization:
        return None
    scheme, _, token = authorization.strip().partition(" ")
    token = token.strip()
    if scheme.lower() != "bearer" or not token:
        return None
    return token


def _raw(text: str) -> bytes:
    # Servers decode header bytes as latin-1: encoding back gives the bytes that were sent.
    try:
        return text.encode("latin-1")
    except UnicodeEncodeError:
        return text.encode("utf-8")


def _hostname(host_header: str) -> str:
    """The host part of a Host header or an origin's netloc ("[::1]:80" → "::1")."""
    text = host_header.strip().lower()
    if text.startswith("["):
        return text[1 : text.find("]")] if "]" in text else text[1:]
    if text.count(":") == 1:
        text = text.split(":", 1)[0]
    return text.rstrip(".")


@functools.cache
def _own_name() -> str:
    return socket.gethostname().lower()


def _local_name(name: str) -> bool:
    return (
        is_loopback(name)
        or name == "localhost"
        or name.endswith(".localhost")
        or name == _own_name()
    )


def browser_risk(host: str | None, origin: str | None, fetch_site: str | None) -> str | None:
    """Why a loopback request without a token looks forged by a browser (None: it does not)."""
    advice = "set an admin token (HEARTBEAT_ADMIN_TOKEN) to use admin routes from a browser"
    if fetch_site is not None and fetch_site.strip().lower() in ("cross-site", "same-site"):
        return f"a cross-site browser request is refused; {advice}"
    if origin is not None:
        netloc = urlsplit(origin.strip()).netloc.lower() if origin.strip() != "null" else ""
        if not netloc or host is None or netloc != host.strip().lower():
            return f"a request from another origin ({origin[:100]!r}) is refused; {advice}"
    if host is not None and "," in host:
        # Two Host headers, joined by the WSGI server ("evil.example,x.localhost" ended in a
        # local name and passed). HTTP allows one; which one a proxy used is anyone's guess.
        return f"a request with more than one Host header ({host[:100]!r}) is refused"
    if host is not None and not _local_name(_hostname(host)):
        return f"a loopback request for host {host[:100]!r} is refused (DNS rebinding?); {advice}"
    return None


def authorize(
    token: str | None,
    authorization: str | None,
    client_host: str | None,
    *,
    host: str | None = None,
    origin: str | None = None,
    fetch_site: str | None = None,
    forwarded: bool = False,
) -> Decision:
    """Decide one request. `token`: the configured admin token (None or "": none set).
    `host`, `origin`, `fetch_site`: the request's Host (every Host header, joined by commas),
    Origin and Sec-Fetch-Site headers (see the module's docstring), consulted only for a
    loopback client when no token is set. `forwarded`: the request carries one of
    PROXY_HEADERS, so it is no loopback client."""
    if forwarded:
        client_host = None
    if token:
        offered = bearer_token(authorization)
        if offered is None:
            return Decision(
                False,
                "anonymous",
                401,
                "this route needs an `Authorization: Bearer <HEARTBEAT_ADMIN_TOKEN>` header",
            )
        # Constant-time: how much of a guess matched must not show in the answer's timing.
        if not hmac.compare_digest(_raw(offered), token.encode("utf-8")):
            return Decision(False, "token", 403, "wrong admin token")
        return Decision(True, "token", 200)
    if is_loopback(client_host):
        why = browser_risk(host, origin, fetch_site)
        if why is not None:
            return Decision(False, "loopback", 403, why)
        return Decision(True, "loopback", 200)
    return Decision(
        False,
        "token" if bearer_token(authorization) else "anonymous",
        403,
        "no admin token is set (HEARTBEAT_ADMIN_TOKEN), so this route answers loopback "
        "clients only",
    )


def client_label(client: tuple[str, int | None] | None) -> str:
    """A client address as an `admin` event records it: host:port, [v6]:port, the host alone
    when the server did not say the port, or "unknown"."""
    if client is None or not client[0]:
        return "unknown"
    host, port = client[0], client[1]
    if port is None:
        return host
    if ":" in host:
        return f"[{host}]:{port}"
    return f"{host}:{port}"


def binds_loopback_only(host: str) -> bool:
    """Whether listening on `host` accepts loopback clients only (a name must resolve to
    loopback addresses only; one that does not resolve counts as not loopback)."""
    if is_loopback(host.strip("[]")):
        return True
    try:
        ipaddress.ip_address(host.strip("[]"))
        return False  # an address, and not a loopback one (0.0.0.0, ::, a LAN address)
    except ValueError:
        pass
    try:
        infos = socket.getaddrinfo(host, None, type=socket.SOCK_STREAM)
    except (OSError, UnicodeError):
        return False
    return bool(infos) and all(is_loopback(str(info[4][0])) for info in infos)


def admin_body_problem(body: bytes) -> str | None:
    """Why the body of an admin request is refused (a 400), or None. The admin routes take no
    body: an empty one, or any JSON (ignored), is fine; anything else says the client is
    confused, and it gets a 400 rather than an action it may not have meant."""
    if not body.strip():
        return None
    try:
        msgspec.json.decode(body)
    except (msgspec.DecodeError, UnicodeError) as exc:
        why = " ".join(str(exc).split())[:120]
        return f"request body is not JSON ({why}); admin routes take no body, or a JSON one"
    return None
