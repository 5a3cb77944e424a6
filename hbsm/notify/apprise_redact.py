"""Secrets of Apprise URLs out of texts: the errors hbsm records, and Apprise's own log lines
(its debug lines name the URL it posts to, `Loaded JSON URL: json://host/TOKEN`), whichever
handler they reach (hbsm's diagnostics, an embedding app's).

A URL's pieces that could be a token (its path, query values, password; for a chat service's
URL everything past the scheme) are replaced by ***; an HTTP receiver's host and port stay.
"""

from __future__ import annotations

import logging
import re
import threading
from typing import Final
from urllib.parse import parse_qsl, urlsplit

from hbsm.config.secrets import APPRISE_HTTP_SCHEMES, MASK, apprise_url_shown

__all__ = ["redact_url_secrets", "watch_apprise_logs"]

# Pieces of a URL shorter than this are not cut from texts: "POST", "no" or a port would
# mangle every message, and no token is that short.
_MIN_SECRET: Final = 5


def redact_url_secrets(text: str, urls: list[str] | tuple[str, ...]) -> str:
    """`text` with every piece of `urls` that could be a secret replaced by ***."""
    for url in urls:
        text = text.replace(url, apprise_url_shown(url))
        for piece in sorted(_secret_pieces(url), key=len, reverse=True):
            text = text.replace(piece, MASK)
    return text


def _secret_pieces(url: str) -> set[str]:
    scheme, _, rest = url.partition("://")
    head, _, query = rest.partition("?")
    pieces = {value for _, value in parse_qsl(query, keep_blank_values=True)}
    password = None
    try:
        parts = urlsplit(url)
        password = parts.password  # however short: mailto://user:pw@host
        if scheme.lower() in APPRISE_HTTP_SCHEMES:
            head = parts.path  # the origin names the receiver
    except ValueError:
        pass
    pieces.update(re.split(r"[/:@,;#]+", head))
    pieces.update(head.split("/"))  # whole, as in "BOT_ID:TOKEN"
    found = {piece for piece in pieces if len(piece) >= _MIN_SECRET}
    return found | {password} if password else found


class _Redactor(logging.Filter):
    """On Apprise's logger while hbsm uses it: its records carry no piece of a configured URL,
    whichever handler (hbsm's diagnostics, an embedding app's) they reach."""

    def __init__(self) -> None:
        super().__init__()
        self.urls: list[str] = []

    def filter(self, record: logging.LogRecord) -> bool:
        if self.urls:
            try:
                message = record.getMessage()
            except Exception:  # a malformed record: its handler reports it, not Apprise's caller
                return True
            redacted = redact_url_secrets(message, self.urls)
            if redacted != message:
                record.msg, record.args = redacted, None
        return True


_redactor = _Redactor()
_redactor_lock = threading.Lock()


def watch_apprise_logs(urls: list[str]) -> None:
    """From now on, Apprise's log records carry no piece of `urls` (added to those before)."""
    with _redactor_lock:
        _redactor.urls = list(dict.fromkeys([*_redactor.urls, *urls]))
        logger = logging.getLogger("apprise")
        if _redactor not in logger.filters:
            logger.addFilter(_redactor)
