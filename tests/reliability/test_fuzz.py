"""Fuzzing the two parsers of untrusted input with hypothesis: the event decoder (and the log
reader and `hbsm replay` over it) and the configuration loader (and `hbsm config --check`).

* Events: arbitrary bytes, and valid event lines of every kind (events/README.md's examples)
  mutated at the byte level and at the JSON level. `decode`/`decode_lines` return events or raise
  `EventDecodeError`, nothing else; a log of such lines reads with `--skip-bad` (every complete
  line delivered or counted), or stops at a `CorruptLineError` naming the first bad line.
* Configuration: TOML documents built from the real schema's keys (walking hbsm.config.model)
  with values of the right type, of the wrong type, out of range or nonsense, unknown keys, and
  random HEARTBEAT_* variables. `load_config` succeeds (and the config can be printed) or raises
  `ConfigError`, one line naming the file or variable and, when it has one, the key.

Profiles. By default (`just test`) the examples are bounded (about 10 s for this file on the
2-core test machine, 20 s when it is busy) and drawn the same way every run. The soak profile
draws 50 times as many, new ones each run:
    HBSM_FUZZ=soak .venv/bin/python -m pytest -q tests/reliability/test_fuzz.py
(`just soak` runs that; about 10 minutes). HBSM_FUZZ_EXAMPLES=N multiplies the default counts
instead, still drawn the same way.
"""

from __future__ import annotations

import math
import os
import tempfile
import types
import typing
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any, Literal, Union

import msgspec
import pytest
from hypothesis import HealthCheck, assume, event, given, settings
from hypothesis import strategies as st

import hbsm.config.load
import hbsm.config.model
from hbsm.config import BUILTIN_STEPS, ENV_VARS, Config, ConfigError, load_config
from hbsm.config.model import fields_of
from hbsm.config.render import to_json, to_text
from hbsm.events import (
    EVENT_TYPES,
    Event,
    EventDecodeError,
    OpaqueEvent,
    decode,
    decode_lines,
    encode,
)
from hbsm.log import CorruptLineError, ReadStats, read_history
from hbsm.state import ERROR_CLASSES

from .bad_input_support import hbsm_inline

SOAK = os.environ.get("HBSM_FUZZ", "").strip().lower() == "soak"
SCALE = 50.0 if SOAK else float(os.environ.get("HBSM_FUZZ_EXAMPLES", "1"))


def profile(examples: int) -> settings:
    """`examples` by default (times SCALE); no deadline (a loaded machine is slow, not wrong).
    `just test` draws the same examples every run (a failure there is never a fluke of the
    draw); the soak draws new ones each time."""
    return settings(
        max_examples=max(1, int(examples * SCALE)),
        deadline=None,
        database=None,
        derandomize=not SOAK,
        suppress_health_check=[
            HealthCheck.too_slow,
            HealthCheck.data_too_large,
            HealthCheck.filter_too_much,
            HealthCheck.function_scoped_fixture,
        ],
    )


@contextmanager
def scratch() -> Iterator[Path]:
    """A fresh directory per example (pytest's tmp_path is one per test, not per example)."""
    with tempfile.TemporaryDirectory(prefix="hbsm-fuzz-") as name:
        yield Path(name)


# --- events -------------------------------------------------------------------------------------

README = Path(__file__).resolve().parents[2] / "events" / "README.md"
EXAMPLES = [
    line.encode() for line in README.read_text().splitlines() if line.startswith('{"type":')
]
assert {decode(line).__class__ for line in EXAMPLES} >= set(EVENT_TYPES.values())

json_scalars = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(-(2**70), 2**70),
    st.integers(-5, 5),
    st.floats(allow_nan=False, allow_infinity=False),
    st.text(max_size=20),
)


def _containers(inner: st.SearchStrategy[Any]) -> st.SearchStrategy[Any]:
    """Arrays and tables of `inner` (a function, not a lambda: hypothesis inspects it)."""
    return st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=8), inner, max_size=4)


json_values = st.recursive(json_scalars, _containers, max_leaves=12)
FIELD_NAMES = sorted(
    {f.encode_name for cls in EVENT_TYPES.values() for f in msgspec.structs.fields(cls)} | {"type"}
)
TYPES = [*EVENT_TYPES, "future.kind", "", "probe ", "PROBE"]


@st.composite
def json_mutation(draw: st.DrawFn, line: bytes) -> bytes:
    """A field of the event set to another value (often of the wrong type), or dropped."""
    try:
        doc = msgspec.json.decode(line)
    except (msgspec.DecodeError, UnicodeError):
        doc = None
    if not isinstance(doc, dict):  # no longer an object: only bytes can be mutated
        return draw(byte_mutation(line))
    key = draw(st.sampled_from(sorted(doc)) | st.sampled_from(FIELD_NAMES))
    if draw(st.booleans()) and key in doc:
        del doc[key]
    elif key == "type":
        doc[key] = draw(st.sampled_from(TYPES) | json_values)
    else:
        doc[key] = draw(json_values)
    raw: bytes = msgspec.json.encode(doc)
    return raw


@st.composite
def byte_mutation(draw: st.DrawFn, line: bytes) -> bytes:
    """A span deleted, bytes inserted or flipped, the line cut or a span repeated."""
    if not line:
        return draw(st.binary(max_size=8))
    i = draw(st.integers(0, len(line) - 1))
    j = draw(st.integers(i, min(len(line), i + 12)))
    op = draw(st.sampled_from(["delete", "insert", "flip", "cut", "repeat"]))
    if op == "delete":
        return line[:i] + line[j:]
    if op == "insert":
        junk = draw(st.binary(min_size=1, max_size=6) | st.sampled_from([b'"', b"}", b",", b"\\"]))
        return line[:i] + junk + line[i:]
    if op == "flip":
        return line[:i] + bytes([line[i] ^ draw(st.integers(1, 255))]) + line[i + 1 :]
    if op == "cut":
        return line[:i]
    return line[:j] + line[i:j] + line[j:]


@st.composite
def mutated_lines(draw: st.DrawFn) -> bytes:
    line = draw(st.sampled_from(EXAMPLES))
    for _ in range(draw(st.integers(1, 3))):
        mutate = draw(st.sampled_from([json_mutation, byte_mutation]))
        line = draw(mutate(line))
    return line


def decodes_or_says_why(data: bytes) -> Event | OpaqueEvent | None:
    """`decode(data)`: an event, or None after the documented error; anything else fails."""
    try:
        event = decode(data)
    except EventDecodeError as exc:
        assert exc.message and "\n" not in str(exc).strip()
        return None
    assert isinstance(event, Event | OpaqueEvent)
    return event


@profile(1000)
@given(st.binary(max_size=400))
def test_arbitrary_bytes_decode_or_raise_event_decode_error(data: bytes) -> None:
    decodes_or_says_why(data)
    try:
        events = decode_lines(data)
    except EventDecodeError as exc:
        assert exc.line is not None and 1 <= exc.line <= data.count(b"\n") + 1
    else:
        assert all(isinstance(e, Event | OpaqueEvent) for e in events)


@profile(1000)
@given(mutated_lines())
def test_mutated_event_lines_decode_or_raise_event_decode_error(line: bytes) -> None:
    assume(b"\n" not in line)  # one line (decode_lines would see several)
    event = decodes_or_says_why(line)
    if isinstance(event, OpaqueEvent):
        # Kept whole: its `type` is one this version does not know, never a known one that
        # failed to validate.
        assert event.type not in EVENT_TYPES
        assert event.body["type"] == event.type
    elif event is not None:
        # What the decoder accepts, the log can write back and read again unchanged.
        assert decode(encode(event)) == event
    # A block with the line among good ones: the same verdict, the right line number.
    block = EXAMPLES[0] + b"\n" + line + b"\n" + EXAMPLES[1] + b"\n"
    try:
        decode_lines(block)
    except EventDecodeError as exc:
        assert event is None and exc.line == 2
    else:
        assert event is not None or not line.strip()


def stamped(lines: list[bytes]) -> list[bytes]:
    """Example lines renumbered 1, 2, 3...: a valid log before any damage."""
    out = []
    for seq, line in enumerate(lines, start=1):
        doc = msgspec.json.decode(line)
        doc["seq"] = seq
        out.append(msgspec.json.encode(doc))
    return out


@st.composite
def damaged_logs(draw: st.DrawFn) -> bytes:
    lines = stamped(draw(st.lists(st.sampled_from(EXAMPLES), min_size=1, max_size=10)))
    for i in draw(st.sets(st.integers(0, len(lines) - 1), max_size=3)):
        lines[i] = draw(mutated_lines() | byte_mutation(lines[i]))
    data = b"".join(line + b"\n" for line in lines)
    if draw(st.booleans()):
        data += draw(st.binary(max_size=30).filter(lambda tail: b"\n" not in tail))
    return data


@profile(200)
@given(data=damaged_logs())
def test_a_damaged_log_reads_or_names_its_first_bad_line(
    data: bytes, capsys: pytest.CaptureFixture[str]
) -> None:
    with scratch() as tmp:
        path = tmp / "heartbeat.jsonl"
        path.write_bytes(data)
        complete = data[: data.rfind(b"\n") + 1]
        nonblank = sum(1 for line in complete.split(b"\n") if line.strip())

        stats = ReadStats()
        kept = list(read_history(path, skip_bad=True, stats=stats))
        assert len(kept) + stats.skipped == nonblank  # every line delivered or counted
        assert [e.seq for e in kept] == sorted({e.seq for e in kept})  # strictly increasing
        try:
            strict = list(read_history(path))
        except CorruptLineError as exc:
            assert stats.skipped > 0
            assert Path(exc.path) == path and 1 <= exc.line <= complete.count(b"\n")
        else:
            assert stats.skipped == 0 and strict == kept

        for args in (["replay", path, "--stats"], ["replay", path, "--skip-bad", "--json"]):
            done = hbsm_inline(args, capsys)
            assert done.returncode in (0, 2), done.stderr
            assert "Traceback" not in done.stderr
            if done.returncode == 2:
                (line,) = done.stderr.splitlines()
                assert line.startswith(f"hbsm replay: {path}")
        assert path.read_bytes() == data  # readers never write


# --- configuration ------------------------------------------------------------------------------


class Raw(str):
    """A TOML value written as is (a date, say)."""


toml_scalars = st.one_of(
    st.booleans(),
    st.integers(-(2**70), 2**70),
    st.integers(-3, 100),
    st.floats(),
    st.text(st.characters(exclude_categories=("Cs",)), max_size=16),
    st.sampled_from([Raw("1979-05-27T07:32:00Z"), Raw("1979-05-27"), Raw("07:32:00")]),
)
toml_values = st.recursive(toml_scalars, _containers, max_leaves=8)
# Values by field name: SANE ones pass the checks; WILD ones add what the checks must refuse.
SANE: dict[str, st.SearchStrategy[Any]] = {
    "name": st.sampled_from(["api", "web", "db"]),
    "url": st.sampled_from(["http://127.0.0.1:8000/health", "https://example.com/"]),
    "login_url": st.just("http://127.0.0.1:5000/login"),
    "host": st.sampled_from(["127.0.0.1", "::1", "localhost"]),
    "port": st.integers(1, 65535),
    "signal": st.sampled_from(["HUP", "SIGUSR1", "9"]),
    "method": st.sampled_from(["GET", "POST"]),
    "level": st.sampled_from(["INFO", "debug"]),
    "path": st.just("events/heartbeat.jsonl"),
    "file": st.just("hbsm.log"),
    "pidfile": st.just("/run/x.pid"),
    "argv": st.lists(st.sampled_from(["true", "systemctl", "restart"]), min_size=1, max_size=3),
    "to": st.lists(st.just("ops@example.com"), min_size=1, max_size=2),
    "expect_status": st.lists(st.sampled_from([200, 204, 503]), max_size=3),
    "ladder": st.lists(st.sampled_from(["diagnose", "check_config"]), min_size=1, max_size=3),
    "ladders": st.dictionaries(
        st.sampled_from(ERROR_CLASSES), st.lists(st.just("diagnose"), min_size=1), max_size=2
    ),
    "json_field": st.just("status"),
}
STEP_NAMES = [*sorted(BUILTIN_STEPS), "reboot", "htp"]
WILD: dict[str, st.SearchStrategy[Any]] = {
    "name": st.sampled_from(["../etc", "", "a b", "x" * 200, ".", "caf\u00e9"]),
    "url": st.sampled_from(
        [
            "ftp://x/",
            "localhost:5432",
            "tcp://db:5432",
            "",
            "http://",
            "http://[::1]:99999/",
            "javascript:alert(1)",
            "file:///etc/passwd",
        ]
    ),
    "login_url": st.sampled_from(["login", ""]),
    "host": st.sampled_from(["0.0.0.0", "my host", "", "a/b"]),
    "port": st.sampled_from([0, 65536, -1, 2**64]),
    "signal": st.sampled_from(["NOPE", ""]),
    "method": st.sampled_from(["G E T", ""]),
    "level": st.sampled_from(["LOUD", ""]),
    "path": st.sampled_from(["", "   "]),
    "argv": st.lists(st.sampled_from(["", "x"]), max_size=2),
    "to": st.just([]),
    "expect_status": st.lists(st.sampled_from([99, 600, -1]), min_size=1, max_size=2),
    "ladder": st.lists(st.sampled_from(STEP_NAMES), max_size=4),
    "ladders": st.dictionaries(
        st.sampled_from([*ERROR_CLASSES, "timout"]),
        st.lists(st.sampled_from(STEP_NAMES), max_size=3),
        max_size=2,
    ),
}
UNKNOWN_KEYS = st.sampled_from(["chek_interval", "serivces", "timeout_s", "enabled_"])
KEY_TEXT = st.text(st.characters(exclude_categories=("Cs",)), max_size=8)


class Schema:
    """Strategies for the tables of hbsm.config.model. `wild`: any value may be of any type,
    out of range or nonsense, and unknown keys appear; else every value is a sane one."""

    def __init__(self, *, wild: bool) -> None:
        self.wild = wild

    def table(self, cls: type[msgspec.Struct], depth: int = 0) -> st.SearchStrategy[dict[str, Any]]:
        hints = typing.get_type_hints(cls)
        optional = {f.encode_name: self.value(hints[f.name], f.encode_name, depth)
                    for f in fields_of(cls)}  # fmt: skip
        required = {}
        if cls.__name__ == "ServiceConfig":  # named (nearly) always, so its checks are reached
            required["name"] = optional.pop("name")
        if cls.__name__ == "Config":
            optional.pop("services")  # added by `documents`, more often
        tables = st.fixed_dictionaries(required, optional=optional)
        if not self.wild:
            return tables
        extra = st.dictionaries(UNKNOWN_KEYS, toml_scalars, max_size=1)
        return st.builds(lambda t, more: {**t, **more}, tables, st.one_of(st.just({}), extra))

    def value(self, tp: Any, name: str, depth: int) -> st.SearchStrategy[Any]:
        sane = self._sane(tp, name, depth)
        if not self.wild:
            return sane
        wild = [WILD[name]] if name in WILD else []
        return st.one_of(sane, *wild, toml_values)

    def _sane(self, tp: Any, name: str, depth: int) -> st.SearchStrategy[Any]:
        if name == "steps":
            names = st.sampled_from(STEP_NAMES if self.wild else ["http", "command", "signal"])
            step = self.table(msgspec_struct("StepConfig"), depth + 1)
            return st.dictionaries(names, step, max_size=2)
        if name in SANE:
            return SANE[name]
        origin = typing.get_origin(tp)
        args = typing.get_args(tp)
        if origin in (Union, types.UnionType):
            options = [a for a in args if a is not type(None)]
            return st.one_of(*(self._sane(a, name, depth) for a in options))
        if origin is Literal:
            return st.sampled_from(args)
        if origin is list:
            return st.lists(self._sane(args[0], name, depth), max_size=3)
        if origin is dict:
            return st.dictionaries(KEY_TEXT, self._sane(args[1], name, depth), max_size=2)
        if isinstance(tp, type) and issubclass(tp, msgspec.Struct):
            return self.table(tp, depth + 1) if depth < 3 else st.just({})
        if tp is bool:
            return st.booleans()
        if tp is int:
            return st.integers(1, 10)
        if tp is float:
            return st.floats(0.5, 100) | st.integers(1, 100)
        if tp is str:
            return st.text(st.characters(min_codepoint=0x20, max_codepoint=0x7E), max_size=8)
        return toml_scalars  # Any: json_equals, a step's body and options


def msgspec_struct(name: str) -> type[msgspec.Struct]:
    cls = getattr(hbsm.config.model, name)
    assert isinstance(cls, type) and issubclass(cls, msgspec.Struct)
    return cls


def _document(schema: Schema) -> st.SearchStrategy[dict[str, Any]]:
    services = st.lists(schema.table(msgspec_struct("ServiceConfig"), 1), min_size=1, max_size=3)
    return st.builds(
        lambda top, listed: {**top, **({"services": listed} if listed is not None else {})},
        schema.table(Config),
        st.one_of(st.none(), services, services),
    )


@st.composite
def poisoned(draw: st.DrawFn, documents: st.SearchStrategy[dict[str, Any]]) -> dict[str, Any]:
    """A sane document with one thing wrong, anywhere in it: a value of another type or out
    of range, a key dropped, or a key it does not know."""
    doc = draw(documents)
    spots: list[tuple[Any, Any]] = []

    def walk(node: Any) -> None:
        if isinstance(node, dict):
            spots.extend((node, k) for k in node)
            for v in node.values():
                walk(v)
        elif isinstance(node, list):
            spots.extend((node, i) for i in range(len(node)))
            for v in node:
                walk(v)

    walk(doc)
    if not spots:
        doc["chek_interval"] = 5
        return doc
    node, key = draw(st.sampled_from(spots))
    harm = draw(st.sampled_from(["junk", "number", "drop", "unknown"]))
    if harm == "drop" and isinstance(node, dict):
        del node[key]
    elif harm == "unknown" and isinstance(node, dict):
        node[str(key) + "x"] = node[key]
    elif harm == "number":
        node[key] = draw(st.sampled_from([0, -1, -0.5, 2**63, math.nan, math.inf, 10**30]))
    else:
        node[key] = draw(toml_values)
    return doc


SANE_DOCUMENTS = _document(Schema(wild=False))
documents = st.one_of(_document(Schema(wild=True)), SANE_DOCUMENTS, poisoned(SANE_DOCUMENTS))
ENV_NAMES = [var.name for var in ENV_VARS]
environments = st.dictionaries(
    st.sampled_from(ENV_NAMES),
    st.one_of(
        st.sampled_from(
            ["0", "1", "-1", "abc", "1e9", "nan", "true", "off", "99999", "", "\udcff"]
        ),
        # What an environment can hold: no NUL, and bytes that are not UTF-8 only as the
        # surrogate escapes Python reads them as ("\udcff" above).
        st.text(st.characters(exclude_characters="\x00", exclude_categories=("Cs",)), max_size=10),
    ),
    max_size=2,
)


def toml(doc: dict[str, Any]) -> str:
    """A TOML document: every value inline (`services = [{...}, ...]` included)."""
    return "".join(f"{_key(k)} = {_value(v)}\n" for k, v in doc.items())


def _key(key: str) -> str:
    if key and all(c.isascii() and (c.isalnum() or c in "_-") for c in key):
        return key
    return _string(key)


def _string(text: str) -> str:
    out = []
    for c in text:
        if c in '"\\':
            out.append("\\" + c)
        elif ord(c) < 0x20 or ord(c) == 0x7F:
            out.append(f"\\u{ord(c):04x}")
        else:
            out.append(c)
    return '"' + "".join(out) + '"'


def _value(value: Any) -> str:
    if isinstance(value, Raw):
        return str(value)
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int):
        return str(value)
    if isinstance(value, float):
        if math.isnan(value):
            return "nan"
        if math.isinf(value):
            return "inf" if value > 0 else "-inf"
        return repr(value)
    if isinstance(value, str):
        return _string(value)
    if isinstance(value, list):
        return "[" + ", ".join(_value(v) for v in value) + "]"
    if isinstance(value, dict):
        return "{" + ", ".join(f"{_key(k)} = {_value(v)}" for k, v in value.items()) + "}"
    raise TypeError(type(value))


TOP_KEYS = {f.encode_name for f in fields_of(Config)}


@pytest.fixture(autouse=True)
def _no_custom_steps(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(hbsm.config.load, "registered_steps", frozenset)


@profile(400)
@given(doc=documents, env=environments)
def test_random_configs_load_or_raise_config_error_naming_the_key(
    doc: dict[str, Any], env: dict[str, str], capsys: pytest.CaptureFixture[str]
) -> None:
    text = toml(doc)
    with scratch() as tmp:
        path = tmp / "hbsm.toml"
        path.write_text(text, encoding="utf-8")
        try:
            loaded = load_config(path, env=env)
        except ConfigError as exc:
            check_config_error(exc, path, doc, env)
            event(f"refused: {_kind_of(exc)}")
            expected = 2
        else:
            event(f"loaded, {len(doc.get('services') or [])} services")
            assert isinstance(loaded.config, Config)
            assert set(loaded.policies) == {s.name for s in loaded.config.services}
            to_text(loaded)  # what `hbsm config` prints, for any config it accepts
            to_json(loaded)
            expected = 0
        with _environment(env):
            done = hbsm_inline(["config", "--check", path], capsys)
        assert done.returncode == expected, (done.stdout, done.stderr)
        assert "Traceback" not in done.stderr
        if expected == 2:
            (line,) = done.stderr.splitlines()
            assert line == str(_loaded_error(path, env))


def _kind_of(exc: ConfigError) -> str:
    """Where a refusal came from, for hypothesis's statistics: the environment, the TOML
    parser, the types, or the checks (by the key's last part)."""
    if exc.source and exc.source.startswith("HEARTBEAT_"):
        return "environment"
    if exc.key is None:
        return "the file as a whole"
    return exc.key.split(".")[-1].split("[")[0]


def check_config_error(
    exc: ConfigError, path: Path, doc: dict[str, Any], env: dict[str, str]
) -> None:
    message = str(exc)
    assert message and "\n" not in message
    if exc.source in env:  # a variable to blame: named with its value
        assert message.startswith(f"{exc.source}=")
    else:
        assert exc.source == str(path) and message.startswith(str(path))
    if exc.key is not None:
        if exc.source == str(path):
            assert exc.key in message
        top = exc.key.split(".")[0].split("[")[0].strip('"')
        # A key of the schema, or one the file has (an unknown key is named as written).
        assert top in TOP_KEYS or top in doc, (exc.key, message)


def _loaded_error(path: Path, env: dict[str, str]) -> ConfigError:
    try:
        load_config(path, env=env)
    except ConfigError as exc:
        return exc
    raise AssertionError("accepted the second time")


@contextmanager
def _environment(env: dict[str, str]) -> Iterator[None]:
    saved = {k: os.environ.get(k) for k in ENV_NAMES}
    try:
        for name in ENV_NAMES:
            os.environ.pop(name, None)
        os.environ.update(env)
        yield
    finally:
        for name, value in saved.items():
            if value is None:
                os.environ.pop(name, None)
            else:
                os.environ[name] = value


@profile(400)
@given(
    st.binary(max_size=300)
    | st.text(max_size=200).map(lambda t: t.encode("utf-8", "surrogatepass"))
)
def test_arbitrary_bytes_as_a_config_file_raise_config_error(data: bytes) -> None:
    with scratch() as tmp:
        path = tmp / "hbsm.toml"
        path.write_bytes(data)
        try:
            load_config(path, env={})
        except ConfigError as exc:
            assert str(exc).startswith(str(path)) and "\n" not in str(exc)
