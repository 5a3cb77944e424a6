"""Read `hbsm.toml` and decode it into `Config`, turning every failure into a one-line error.

msgspec reports a bad value as `Expected `int`, got `str` - at `$.services[0].max_retries``;
operators read `hbsm.toml: services[api].max_retries: expected an integer, got 'three'`. The
translation walks the raw TOML data and the model's type hints along msgspec's path.
"""

from __future__ import annotations

import os
import re
import stat
import tomllib
import types
import typing
from collections.abc import Mapping
from pathlib import Path
from typing import Any, Literal, Union

import msgspec

from hbsm.config.errors import ConfigError, closest, key_part
from hbsm.config.model import Config, fields_of
from hbsm.vocabulary import SERVICE_NAME

__all__ = ["MAX_FILE_BYTES", "decode_config", "read_toml"]

_DICT_KEY = object()  # msgspec writes `[...]` for "some key of this table"
_PATH_PART = re.compile(r"\.([A-Za-z_][A-Za-z0-9_]*)|\[(\d+)\]|\[\.\.\.\]")
_TOML_POSITION = re.compile(r"^(?P<msg>.*?)\s*\(at line (?P<line>\d+), column (?P<col>\d+)\)$")
_TYPE_WORDS = {
    "int": "an integer",
    "float": "a number",
    "str": "a string",
    "bool": "true or false",
    "array": "an array",
    "object": "a table",
}


def read_toml(path: Path) -> dict[str, Any]:
    """The parsed TOML document at `path`; a missing, unreadable or malformed file is an error."""
    where = str(path)
    data = _read_bytes(path, where)
    try:
        # utf-8-sig: a byte-order mark written by some editors is not a syntax error.
        text = data.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        # Fix (tests/reliability): the bad byte's line and column, as for a syntax error, so
        # an editor can jump to it (an offset into the file was all it said).
        line, col = _line_col(data, exc.start)
        reason = f"not UTF-8 text (byte 0x{data[exc.start]:02x}; save the file as UTF-8)"
        raise ConfigError(f"{where}:{line}:{col}: {reason}", source=where, reason=reason) from None
    if not text.strip():
        # Fix (tests/reliability): an empty file named on purpose is a mistake (a truncated
        # copy, a failed deploy); taken for "all defaults" it monitored none of the services
        # meant to be. A file of comments only still means "all defaults", deliberately.
        reason = "the file is empty: name no file to run on the built-in defaults"
        raise ConfigError.in_file(where, None, reason)
    try:
        doc = tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        msg = str(exc)
        m = _TOML_POSITION.match(msg)
        if m is None:  # "(at end of document)" or a message without a position
            reason = f"invalid TOML: {_lower_first(msg)}"
            raise ConfigError.in_file(where, None, reason) from None
        reason = f"invalid TOML: {_lower_first(m['msg'])}"
        message = f"{where}:{m['line']}:{m['col']}: {reason}"
        raise ConfigError(message, source=where, key=None, reason=reason) from None
    except RecursionError:
        # Fix (tests/reliability): tomllib recurses into nested arrays and inline tables, so
        # `x = [[[[...` a few hundred deep was a RecursionError traceback, not an error.
        raise ConfigError.in_file(where, None, _TOO_DEEP) from None
    if _depth(doc) > _MAX_DEPTH:
        # What follows (decoding, checks, printing) walks values recursively too.
        raise ConfigError.in_file(where, None, _TOO_DEEP)
    return doc


# Far more than any real setting needs (a `json_equals` or a step's `options`, at most).
_MAX_DEPTH = 32
_TOO_DEEP = f"invalid TOML: arrays or tables nested more than {_MAX_DEPTH} levels deep"
# Far beyond any real configuration (10,000 services take about 1.5 MB): a file this big is
# the wrong file, and reading it whole would only use up memory.
MAX_FILE_BYTES = 32 * 2**20


def _read_bytes(path: Path, where: str) -> bytes:
    try:
        with open(path, "rb") as f:
            info = os.fstat(f.fileno())
            # Fix (tests/reliability): `--config /dev/zero` (or /dev/urandom, a tty) read
            # until memory ran out. A regular file or a pipe (`--check /dev/stdin`) only.
            if not (stat.S_ISREG(info.st_mode) or stat.S_ISFIFO(info.st_mode)):
                raise ConfigError.in_file(where, None, "is not a regular file")
            if info.st_size > MAX_FILE_BYTES:
                raise ConfigError.in_file(where, None, _too_big(info.st_size))
            data = f.read(MAX_FILE_BYTES + 1)
    except FileNotFoundError:
        raise ConfigError.in_file(where, None, "no such file") from None
    except IsADirectoryError:
        raise ConfigError.in_file(where, None, "is a directory, not a TOML file") from None
    except OSError as exc:
        raise ConfigError.in_file(where, None, f"cannot read: {exc.strerror or exc}") from None
    if len(data) > MAX_FILE_BYTES:
        raise ConfigError.in_file(where, None, _too_big(None))
    return data


def _too_big(size: int | None) -> str:
    limit = MAX_FILE_BYTES // 2**20
    told = f"{size} bytes, " if size is not None else ""
    return f"too large for a configuration ({told}at most {limit} MiB): is it the right file?"


def _line_col(data: bytes, offset: int) -> tuple[int, int]:
    line_start = data.rfind(b"\n", 0, offset) + 1
    return data.count(b"\n", 0, offset) + 1, offset - line_start + 1


def _depth(value: Any) -> int:
    """How deeply arrays and tables nest in a parsed document (iterative: no recursion)."""
    deepest = 0
    stack: list[tuple[Any, int]] = [(value, 1)]
    while stack:
        item, level = stack.pop()
        if isinstance(item, dict):
            children: Any = item.values()
        elif isinstance(item, list):
            children = item
        else:
            continue
        deepest = max(deepest, level)
        if deepest > _MAX_DEPTH:
            return deepest
        stack.extend((child, level + 1) for child in children)
    return deepest


def decode_config(raw: Mapping[str, Any], source: str | None) -> Config:
    """`raw` (parsed TOML) as a `Config`: strict types, unknown keys refused."""
    try:
        return msgspec.convert(raw, Config, strict=True)
    except msgspec.ValidationError as exc:
        key, reason = explain(str(exc), raw)
        raise ConfigError.in_file(source, key, reason) from None


def explain(message: str, raw: Any) -> tuple[str | None, str]:
    """msgspec's validation message as (friendly dotted key, reason)."""
    text, _, where = message.partition(" - at `")
    where = where.rstrip("`")
    key, value, tp = _follow(where[1:] if where.startswith("$") else "", raw)

    m = re.fullmatch(r"Object contains unknown field `(.+)`", text)
    if m:
        field = m[1]
        reason = "unknown key"
        known = _field_names(tp)
        close = closest(field, known)
        if close:
            reason += f" (did you mean {close!r}?)"
        elif known:
            reason += f" (known keys: {', '.join(known)})"
        return _join(key, key_part(field)), reason
    m = re.fullmatch(r"Object missing required field `(.+)`", text)
    if m:
        return _join(key, key_part(m[1])), "is required"
    if text.startswith("Invalid enum value"):
        choices = _literal_values(tp)
        if choices:
            allowed = ", ".join(repr(c) for c in choices)
            return key, f"expected one of {allowed}, got {_show(value)}"
    m = re.fullmatch(r"Expected `(.+?)`, got `(.+?)`", text)
    if m:
        expected = " or ".join(
            _TYPE_WORDS.get(word, word) for word in m[1].split(" | ") if word != "null"
        )
        if key == "services" and isinstance(value, dict):
            expected = "an array of tables ([[services]])"
        return key, f"expected {expected}, got {_show(value)}"
    return key, _lower_first(text)


def _follow(path: str, raw: Any) -> tuple[str | None, Any, Any]:
    """Walk msgspec's `$`-less path through the raw data and the model's types.

    Returns the friendly key (`services[api].probe.kind`), the raw value found there (or None)
    and the annotated type of that spot (or None when unknown).
    """
    key: str | None = None
    value: Any = raw
    tp: Any = Config
    for m in _PATH_PART.finditer(path):
        field, index = m[1], m[2]
        if field is not None:
            key = _join(key, field)
            value = value.get(field) if isinstance(value, Mapping) else None
            tp = _field_type(tp, field)
        elif index is not None:
            i = int(index)
            item = value[i] if isinstance(value, list) and i < len(value) else None
            name = item.get("name") if isinstance(item, Mapping) else None
            # A service by its name, when it is one a key can carry as is (else its index).
            named = key == "services" and isinstance(name, str) and SERVICE_NAME.fullmatch(name)
            label = name if named else str(i)
            key = f"{key or ''}[{label}]"
            value = item
            tp = _item_type(tp)
        else:  # some key of a table: find the entry that does not convert
            tp = _value_type(tp)
            bad = _first_bad_entry(value, tp)
            if bad is None:
                key, value = _join(key, "*"), None
            else:
                key, value = _join(key, key_part(bad)), value[bad]
    return key, value, tp


def _first_bad_entry(table: Any, value_type: Any) -> str | None:
    if not isinstance(table, Mapping) or value_type is None:
        return None
    for k, v in table.items():
        try:
            msgspec.convert(v, value_type, strict=True)
        except msgspec.ValidationError:
            return str(k)
    return None


def _unwrap(tp: Any) -> Any:
    """`X | None` → X (TOML has no null, so the None branch never explains anything)."""
    if typing.get_origin(tp) in (Union, types.UnionType):
        args = [a for a in typing.get_args(tp) if a is not type(None)]
        return args[0] if len(args) == 1 else tp
    return tp


def _field_type(tp: Any, field: str) -> Any:
    tp = _unwrap(tp)
    if isinstance(tp, type) and issubclass(tp, msgspec.Struct):
        return typing.get_type_hints(tp).get(field)
    return None


def _field_names(tp: Any) -> list[str]:
    tp = _unwrap(tp)
    if isinstance(tp, type) and issubclass(tp, msgspec.Struct):
        return [f.encode_name for f in fields_of(tp)]
    return []


def _item_type(tp: Any) -> Any:
    tp = _unwrap(tp)
    if typing.get_origin(tp) in (list, tuple) and typing.get_args(tp):
        return typing.get_args(tp)[0]
    return None


def _value_type(tp: Any) -> Any:
    tp = _unwrap(tp)
    if typing.get_origin(tp) is dict:
        return typing.get_args(tp)[1]
    return None


def _literal_values(tp: Any) -> tuple[Any, ...]:
    tp = _unwrap(tp)
    if typing.get_origin(tp) is Literal:
        return typing.get_args(tp)
    return ()


def _join(prefix: str | None, part: str) -> str:
    return f"{prefix}.{part}" if prefix else part


def _show(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, Mapping):
        return "a table"
    if isinstance(value, list):
        return "an array"
    text = (
        repr(value) if isinstance(value, (str, int, float)) else f"{type(value).__name__} {value}"
    )
    return text if len(text) <= 60 else text[:57] + "..."


def _lower_first(text: str) -> str:
    return text[:1].lower() + text[1:]
