"""Which settings are secrets, decided once: for the config recorded in the event log
(`monitor.started`, and the snapshots that carry it), the config shown by
`GET /admin/heartbeat/status` (standalone and blueprint) and by `hbsm config`.

Masked (replaced by MASK; an unset value stays unset, so "none set" still shows):

* a value whose key names a credential: admin_token, smtp password, a custom step's api_key,
  anything with password, passwd, secret, token, authorization, cookie, credential, api key or
  private key in its name;
* every value of a `headers` table (probe and webhook headers) and of a `restart.env` table,
  whatever the name: `X-Auth`, `DSN`, `DATABASE_URL` carry credentials as often as not, and
  their names stay shown;
* the password of a URL's user info (`https://user:secret@host/` → `https://user:***@host/`),
  in any string;
* the path and query of a webhook URL (chat webhooks carry their key there);
* everything past the scheme of an Apprise URL (`tgram://***`: its services keep their tokens
  in the host and path), except the origin of the plain HTTP ones, json/form/xml
  (`json://127.0.0.1:8080/***`), which are masked as webhooks are.

What is not masked: command lines (`argv`) and targets, which say what hbsm runs and probes;
put a secret a command needs in `restart.env` (masked), not in its argv.

The masked config is what reaches the log, so `hbsm replay`, `--verify` and the dashboard work
from it; none of them needs a secret (they read policies and rules, recorded apart).
"""

from __future__ import annotations

import re
from typing import Any
from urllib.parse import urlsplit, urlunsplit

import msgspec

from hbsm.config.model import Config, ServiceConfig

__all__ = [
    "APPRISE_HTTP_SCHEMES",
    "MASK",
    "apprise_url_shown",
    "mask_secrets",
    "recorded_config",
]

MASK = "***"
_SECRET_KEY = re.compile(
    r"(?i)password|passwd|secret|token|authorization|cookie|credential|api[-_]?key|"
    r"private[-_]?key"
)
# Tables whose every value is masked, whatever its name.
_SECRET_TABLES = frozenset({"headers", "env"})
# Apprise's plain HTTP services: a URL's origin names the receiver and is no secret.
APPRISE_HTTP_SCHEMES = frozenset({"json", "jsons", "form", "forms", "xml", "xmls"})


def recorded_config(config: Config) -> dict[str, Any]:
    """The config as `monitor.started` records it: secrets masked, and each service's table
    without the settings it leaves at their defaults. Recorded whole, every default of every
    service cost ~2 KB a service, held in memory as long as the monitor ran (the projection
    keeps it for the status route) and written in the log's first lines; what a service sets
    itself is what the record is for (its thresholds are in its `service.registered`)."""
    body = msgspec.to_builtins(config)
    default = msgspec.to_builtins(ServiceConfig(name=""))
    body["services"] = [_changed(service, default) for service in body.get("services", [])]
    return dict(mask_secrets(body))


def _changed(value: Any, default: Any) -> Any:
    if isinstance(value, dict) and isinstance(default, dict):
        return {
            k: _changed(v, default[k]) if k in default else v
            for k, v in value.items()
            if k not in default or v != default[k]
        }
    return value


def mask_secrets(value: Any, key: str = "") -> Any:
    """`value` (builtins: what msgspec.to_builtins gives) with every secret masked; `key`: the
    name `value` has in its parent (a setting's last key part). The input is not changed."""
    if key == "webhooks" and isinstance(value, list):
        return [_webhook(hook) for hook in value]
    if key == "apprise" and isinstance(value, list):
        return [apprise_url_shown(url) if isinstance(url, str) else MASK for url in value]
    if isinstance(value, dict):
        if key in _SECRET_TABLES:
            return {k: _masked(v) for k, v in value.items()}
        return {str(k): mask_secrets(v, str(k)) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [mask_secrets(v, key) for v in value]
    if key and _SECRET_KEY.search(key):
        return _masked(value)
    if isinstance(value, str):
        return _url_password(value)
    return value


def _masked(value: Any) -> Any:
    return value if value in (None, "") else MASK


def _webhook(hook: Any) -> Any:
    hook = mask_secrets(hook, "webhook")
    if isinstance(hook, dict) and isinstance(hook.get("url"), str):
        try:
            parts = urlsplit(hook["url"])
        except ValueError:
            return {**hook, "url": MASK}
        if parts.path not in ("", "/") or parts.query:
            hook["url"] = urlunsplit((parts.scheme, parts.netloc, "/" + MASK, "", ""))
    return hook


def apprise_url_shown(url: str) -> str:
    """An Apprise URL as it may be shown: `tgram://***`, `json://127.0.0.1:8080/***`."""
    scheme, sep, rest = url.partition("://")
    if not sep or not re.fullmatch(r"[A-Za-z][A-Za-z0-9+.-]*", scheme):
        return MASK
    scheme = scheme.lower()
    if scheme not in APPRISE_HTTP_SCHEMES:
        return f"{scheme}://{MASK}" if rest else f"{scheme}://"
    try:
        parts = urlsplit(url)
        host = parts.hostname or ""
        port = f":{parts.port}" if parts.port else ""
    except ValueError:
        return f"{scheme}://{MASK}"
    if ":" in host:
        host = f"[{host}]"
    user = f"{parts.username}:{MASK}@" if parts.password is not None else ""
    user = user or (f"{parts.username}@" if parts.username else "")
    tail = f"/{MASK}" if parts.path not in ("", "/") or parts.query else ""
    return f"{scheme}://{user}{host}{port}{tail}"


def _url_password(text: str) -> str:
    """A password in a URL's user info (https://user:secret@host/) is a secret too."""
    if "@" not in text or "://" not in text:
        return text
    try:
        parts = urlsplit(text)
        password = parts.password
    except ValueError:
        return text
    if password is None:
        return text
    netloc = f"{parts.username or ''}:{MASK}@{parts.netloc.rpartition('@')[2]}"
    return urlunsplit(parts._replace(netloc=netloc))
