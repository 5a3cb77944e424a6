"""`ConfigError`: a bad configuration, told in one line that names where, which key and why."""

from __future__ import annotations

import re
from collections.abc import Iterable

from hbsm.errors import HbsmError

__all__ = ["ConfigError", "closest", "key_part"]

# Environment variables whose value must never be echoed back in an error message.
_SECRET_VARS = frozenset({"HEARTBEAT_ADMIN_TOKEN"})
_MAX_VALUE_CHARS = 80


class ConfigError(HbsmError):
    """The configuration cannot be used; start-up stops with `str(error)`, always one line.

    * `source`: the TOML file's path, or the environment variable's name (`HEARTBEAT_PORT`),
      or None when the problem is in a built-in default.
    * `key`: the setting, as a dotted key: `check_interval`, `log.path`,
      `services[api].probe.kind` (None for a whole-file problem such as a syntax error).
    * `reason`: why, without the source or key.

    The message reads `<file>: <key>: <reason>` for a file, `<VAR>=<value>: <reason>` for an
    environment variable, and `<file>:<line>:<column>: invalid TOML: <reason>` for a syntax error.
    """

    source: str | None
    key: str | None
    reason: str

    def __init__(
        self, message: str, *, source: str | None = None, key: str | None = None, reason: str = ""
    ) -> None:
        super().__init__(_one_line(message))
        self.source = source
        self.key = key
        self.reason = _one_line(reason or message)

    def __reduce__(self) -> tuple[object, ...]:  # keep source/key/reason across pickling
        return (_rebuild, (str(self), self.source, self.key, self.reason))

    @classmethod
    def in_file(cls, path: str | None, key: str | None, reason: str) -> ConfigError:
        """A problem with a setting read from the file `path` (None: a built-in default)."""
        where = [part for part in (path, key) if part]
        return cls(": ".join([*where, reason]), source=path, key=key, reason=reason)

    @classmethod
    def in_env(cls, var: str, value: str, key: str | None, reason: str) -> ConfigError:
        """A problem with the value of the environment variable `var` (setting `key`)."""
        return cls(
            f"{var}={_show_env_value(var, value)}: {reason}", source=var, key=key, reason=reason
        )


_BARE_KEY = re.compile(r"[A-Za-z0-9_-]+")


def key_part(name: str) -> str:
    """A table key as TOML writes it in a dotted key: bare, or quoted with its escapes.

    Fix (tests/reliability): a key read from the file with a control character in it (a
    newline, say) was put in the message as is, and the one-line message then named another
    key; quoted with TOML's escapes (`\\u000d` for a CR), it reads as the key the file has.
    """
    if _BARE_KEY.fullmatch(name):
        return name
    out = []
    for c in name:
        if c in '"\\':
            out.append("\\" + c)
        elif c.isprintable():
            out.append(c)
        else:  # control characters, and line breaks such as U+0085 and U+2028
            out.append(f"\\u{ord(c):04x}" if ord(c) <= 0xFFFF else f"\\U{ord(c):08x}")
    return '"' + "".join(out) + '"'


def _rebuild(message: str, source: str | None, key: str | None, reason: str) -> ConfigError:
    return ConfigError(message, source=source, key=key, reason=reason)


def _show_env_value(var: str, value: str) -> str:
    if var in _SECRET_VARS:
        return "********"
    if len(value) > _MAX_VALUE_CHARS:
        value = value[: _MAX_VALUE_CHARS - 3] + "..."
    # Quote only when needed so that the usual case reads like the shell: HEARTBEAT_PORT=abc.
    if not value or any(c.isspace() or not c.isprintable() for c in value):
        return repr(value)
    return value


def _one_line(text: str) -> str:
    return " ".join(text.splitlines())


def closest(word: str, choices: Iterable[str]) -> str | None:
    """The choice closest to a misspelt `word` (for "did you mean ...?"), if one is close."""
    import difflib  # only a config with an error needs it: not imported at start-up

    close = difflib.get_close_matches(word, list(choices), n=1)
    return close[0] if close else None
