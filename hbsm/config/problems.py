"""What is wrong with one value of the configuration, if anything: an http(s) URL, a TCP target,
a signal's name, a CA file. Each returns the reason (None: nothing), for hbsm.config.validate
to put after the key it blames."""

from __future__ import annotations

import signal
from urllib.parse import urlsplit

__all__ = ["ca_file_problem", "http_url_problem", "signal_number", "tcp_target_problem"]


def ca_file_problem(path: str) -> str | None:
    """Why `path` is no PEM file of CA certificates a probe can trust (None: it is)."""
    import ssl  # here: only a config that names a CA file pays for it

    try:
        ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT).load_verify_locations(cafile=path)
    except FileNotFoundError:
        return f"{path!r} does not exist"
    except ssl.SSLError as exc:  # an OSError too: first
        return f"{path!r} holds no PEM certificate hbsm can load ({exc.reason or exc})"
    except OSError as exc:
        return f"{path!r} cannot be read: {exc.strerror or exc}"
    return None


def http_url_problem(url: str) -> str | None:
    if not url:
        return "no URL given"
    try:
        parts = urlsplit(url)
        parts.port  # noqa: B018 - raises ValueError for a bad port
    except ValueError as exc:
        return f"{url!r} is not a valid URL ({exc})"
    if parts.scheme not in ("http", "https") or not parts.hostname:
        return f"expected http://host/... or https://host/..., got {url!r}"
    return None


def tcp_target_problem(target: str) -> str | None:
    """The TCP probe's grammar: "host:port", "[::1]:port" or "tcp://host:port"."""
    if not target:
        return 'no url = "host:port" given'
    try:
        parts = urlsplit(target if "://" in target else "tcp://" + target)
        port = parts.port
    except ValueError:
        port = 0  # not a number, or out of range
    if parts.scheme != "tcp" or not parts.hostname or parts.path not in ("", "/"):
        return f"expected host:port, got {target!r}"
    if not port:
        return f"expected host:port with a port from 1 to 65535, got {target!r}"
    return None


def signal_number(name: str) -> int | None:
    """As the signal step reads it: "HUP", "SIGHUP", "usr1" or a number."""
    text = name.strip().upper()
    try:
        if text.isdigit():
            return int(signal.Signals(int(text)))
        return int(signal.Signals[text if text.startswith("SIG") else f"SIG{text}"])
    except (ValueError, KeyError):
        return None
