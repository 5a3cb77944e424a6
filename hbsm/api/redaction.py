"""What a client without admin rights may not see in a body, decided by what a field can hold.

A field of a body Struct (hbsm.api.bodies) declared `AdminOnly` can carry text from the
monitored system: a probe's target (URLs with hosts, a command line), a probe's detail, a
repair's or restart's output and the reasons quoting it (`restart failed: <its output>`, which
once showed `postgres://app:DBPASS-777@10.1.2.3/db` to anyone who asked `/health/detailed`).
`hide_internals(body)` gives any body with every such field, at any depth, back at its default
("" or None), for both front ends (the standalone app and the Flask blueprint): one rule, read
from the declarations, so a new free-text field is hidden by being declared `AdminOnly`, not
by remembering a list. The OpenAPI document marks those fields `x-admin-only`.

Fields that are not AdminOnly hold only hbsm's own vocabulary (states, error classes, next
actions, step names), numbers, times, and what the operator chose to publish (names,
descriptions).
"""

from __future__ import annotations

import functools
import typing
from typing import Annotated, Any, TypeVar

import msgspec

__all__ = ["ADMIN_ONLY", "AdminOnly", "admin_only_fields", "hide_internals"]

ADMIN_ONLY = msgspec.Meta(
    description="Shown to admin-authorized clients only (may quote targets, command lines "
    "or output); empty otherwise.",
    extra_json_schema={"x-admin-only": True},
)
AdminOnly = Annotated[str, ADMIN_ONLY]

S = TypeVar("S", bound=msgspec.Struct)


@functools.cache
def admin_only_fields(cls: type[msgspec.Struct]) -> tuple[tuple[str, Any], ...]:
    """(name, default) of each field of `cls` declared with ADMIN_ONLY."""
    hints = typing.get_type_hints(cls, include_extras=True)
    out = []
    for field in msgspec.structs.fields(cls):
        if _marked(hints[field.name]):
            default = None if field.default is msgspec.NODEFAULT else field.default
            out.append((field.name, default))
    return tuple(out)


@functools.cache
def _other_fields(cls: type[msgspec.Struct]) -> tuple[str, ...]:
    hidden = {name for name, _ in admin_only_fields(cls)}
    return tuple(f.name for f in msgspec.structs.fields(cls) if f.name not in hidden)


def _marked(tp: Any) -> bool:
    if typing.get_origin(tp) is Annotated and any(m is ADMIN_ONLY for m in tp.__metadata__):
        return True
    return any(_marked(arg) for arg in typing.get_args(tp))  # `AdminOnly | None`, say


def hide_internals(body: S) -> S:
    """`body` as a client without admin rights sees it (a copy; `body` is not changed)."""
    return typing.cast(S, _hide(body))


def _hide(value: Any) -> Any:
    if isinstance(value, msgspec.Struct):
        cls = type(value)
        changes = dict(admin_only_fields(cls))
        for name in _other_fields(cls):
            inner = getattr(value, name)
            if isinstance(inner, msgspec.Struct | dict | list):
                changes[name] = _hide(inner)
        return msgspec.structs.replace(value, **changes) if changes else value
    if isinstance(value, dict):
        return {k: _hide(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_hide(v) for v in value]
    return value
