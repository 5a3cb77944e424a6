"""The commented example, `hbsm/config/example.toml`, loads and shows every key there is."""

from __future__ import annotations

import tomllib
import types
import typing
from pathlib import Path
from typing import Any

import msgspec

import hbsm.config
from hbsm.config import ENV_VARS, load_config
from hbsm.config import model as model_module

EXAMPLE = Path(hbsm.config.__file__).parent / "example.toml"


def _structs() -> list[type[msgspec.Struct]]:
    found = []
    for name in model_module.__all__:
        obj = getattr(model_module, name)
        if isinstance(obj, type) and issubclass(obj, msgspec.Struct):
            found.append(obj)
    return found


def _keys_seen(tp: Any, data: Any, seen: dict[type, set[str]]) -> None:
    """Record, per Struct class, which of its keys the example writes, walking nested tables."""
    args = [a for a in typing.get_args(tp) if a is not type(None)]
    if typing.get_origin(tp) in (typing.Union, types.UnionType) and args:
        tp = args[0]
    if isinstance(tp, type) and issubclass(tp, msgspec.Struct) and isinstance(data, dict):
        seen.setdefault(tp, set()).update(data)
        hints = typing.get_type_hints(tp)
        for key, value in data.items():
            _keys_seen(hints[key], value, seen)
    elif typing.get_origin(tp) is list and isinstance(data, list):
        for item in data:
            _keys_seen(typing.get_args(tp)[0], item, seen)
    elif typing.get_origin(tp) is dict and isinstance(data, dict):
        for item in data.values():
            _keys_seen(typing.get_args(tp)[1], item, seen)


def test_example_loads_without_error():
    loaded = load_config(EXAMPLE, env={})
    assert [s.name for s in loaded.config.services] == ["api", "db", "worker"]
    assert {s.probe.kind for s in loaded.config.services} == {"http", "tcp", "command"}


# Keys the example shows commented out, since setting them would contradict the rest of it
# (a node of several cannot supervise a process of its own host, which "api" does), or would
# make it load only with an extra installed (Apprise URLs need hbsm[apprise]), or names a file
# the example cannot ship (a CA bundle).
COMMENTED_OUT = {
    model_module.ClusterConfig: {"node"},
    model_module.NotifyConfig: {"apprise"},
    model_module.ProbeConfig: {"ca_file"},
}


def test_example_sets_every_field_of_every_struct():
    seen: dict[type, set[str]] = {}
    text = EXAMPLE.read_text()
    _keys_seen(model_module.Config, tomllib.loads(text), seen)
    for cls, keys in COMMENTED_OUT.items():
        for key in keys:
            assert f"# {key} = " in text, key
            seen.setdefault(cls, set()).add(key)
    structs = _structs()
    assert {"Config", "ServiceConfig", "StepConfig", "SmtpConfig"} <= {s.__name__ for s in structs}
    missing = {
        cls.__name__: sorted(
            f.encode_name
            for f in msgspec.structs.fields(cls)
            if f.encode_name not in seen.get(cls, ())
        )
        for cls in structs
    }
    assert {name: keys for name, keys in missing.items() if keys} == {}


def test_example_names_every_environment_variable():
    text = EXAMPLE.read_text()
    assert [v.name for v in ENV_VARS if v.name not in text] == []
