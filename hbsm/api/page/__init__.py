"""`GET /`: the status page, one self-contained HTML file (status.html beside this module).

The page has its CSS and script inline and loads nothing else: no build step, no CDN, so it
works on a host with no way out. It reads what any client reads (`health/detailed`, `events`,
the admin routes with the operator's token), by URLs relative to itself, so it works under a
Flask blueprint's url_prefix as well as at the root of `hbsm run`'s API.

Its Content-Security-Policy allows exactly its own inline script and style (by their SHA-256,
computed here from the file as it ships) and requests to its own origin, nothing else: even
if some text from the server were ever put on the page as markup, no script of it could run.
The admin actions the page offers come from the vocabulary (hbsm.vocabulary), written into the
`data-actions` attribute when the file is loaded, so a new action needs no edit here.
"""

from __future__ import annotations

import base64
import functools
import hashlib
import re
from importlib import resources

from hbsm.api.answer import Answer
from hbsm.vocabulary import URL_SERVICE_ACTIONS

__all__ = ["HTML", "page", "policy"]

HTML = "text/html; charset=utf-8"
_INLINE = re.compile(r"<(script|style)>(.*?)</\1>", re.DOTALL)


def policy(html: str) -> str:
    """The Content-Security-Policy for `html`: its inline <script> and <style> by hash."""
    hashes: dict[str, list[str]] = {"script": [], "style": []}
    for kind, text in _INLINE.findall(html):
        digest = base64.b64encode(hashlib.sha256(text.encode()).digest()).decode()
        hashes[kind].append(f"'sha256-{digest}'")
    return "; ".join(
        [
            "default-src 'none'",
            f"script-src {' '.join(hashes['script'])}",
            f"style-src {' '.join(hashes['style'])}",
            "connect-src 'self'",
            "img-src 'self'",
            "base-uri 'none'",
            "form-action 'none'",
            "frame-ancestors 'none'",
        ]
    )


@functools.cache
def page() -> Answer:
    """The page's answer, built once (the file is read on the first request, not at start-up)."""
    html = resources.files(__package__).joinpath("status.html").read_text(encoding="utf-8")
    html = html.replace('data-actions=""', f'data-actions="{" ".join(URL_SERVICE_ACTIONS)}"', 1)
    extra = {
        "Content-Security-Policy": policy(html),
        "X-Frame-Options": "DENY",
        "Referrer-Policy": "no-referrer",
    }
    return Answer(200, html.encode(), HTML, extra)
