"""The API's listening socket, bound before any server starts.

Binding here, not in uvicorn, makes "address in use" a `ListenError` the caller turns into one
line and an exit code (uvicorn itself would log and call sys.exit inside the loop), and port 0
a free port whose number is known. A module of its own so that `hbsm run` can name the error
(and `hbsm run` without its API bind nothing) without importing uvicorn.
"""

from __future__ import annotations

import socket

from hbsm.errors import HbsmError

__all__ = ["ListenError", "bind"]


class ListenError(HbsmError):
    """The API cannot listen on the address asked for (in use, not ours, no such host)."""


def bind(host: str, port: int) -> socket.socket:
    """A listening TCP socket on host:port (port 0: any free port). Raises ListenError."""
    where = f"[{host}]:{port}" if ":" in host else f"{host}:{port}"
    try:
        infos = socket.getaddrinfo(
            host.strip("[]"), port, type=socket.SOCK_STREAM, flags=socket.AI_PASSIVE
        )
    except (OSError, UnicodeError) as exc:
        raise ListenError(f"cannot listen on {where}: {exc}") from None
    last: OSError | None = None
    for family, kind, proto, _, address in infos:
        sock = socket.socket(family, kind, proto)
        try:
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            sock.bind(address)
            sock.listen(2048)
        except OSError as exc:
            sock.close()
            last = exc
            continue
        sock.setblocking(False)
        return sock
    reason = last.strerror if last is not None and last.strerror else str(last)
    raise ListenError(f"cannot listen on {where}: {reason}")
