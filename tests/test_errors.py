"""One exception tree: every public error of hbsm is an HbsmError, and hbsm.errors draws it."""

import importlib
import importlib.util
import pkgutil
import re

import pytest

import hbsm
from hbsm import errors
from hbsm.errors import HbsmError

_TREE_LINE = re.compile(r"^(?P<indent>[ │├└─]*)(?P<name>[A-Za-z_]\w*)\b")


def _hbsm_modules() -> list[str]:
    names = []
    for info in pkgutil.walk_packages(hbsm.__path__, "hbsm."):
        if info.name.endswith(".__main__"):  # running it is the command line, not a definition
            continue
        if info.name.startswith("hbsm.flask") and importlib.util.find_spec("flask") is None:
            continue
        names.append(info.name)
    return names


def _exceptions_defined_in_hbsm() -> set[type[BaseException]]:
    found: set[type[BaseException]] = set()
    for name in _hbsm_modules():
        module = importlib.import_module(name)
        for value in vars(module).values():
            if (
                isinstance(value, type)
                and issubclass(value, BaseException)
                and value.__module__.split(".")[0] == "hbsm"
            ):
                found.add(value)
    return found


def _drawn_tree() -> dict[str, str | None]:
    """Each class the docstring draws, mapped to the class drawn as its parent."""
    doc = errors.__doc__ or ""
    lines = doc.splitlines()
    start = next(i for i, line in enumerate(lines) if line.strip() == "HbsmError")
    root_column = lines[start].index("HbsmError")
    parents: dict[str, str | None] = {"HbsmError": None}
    stack = ["HbsmError"]  # stack[depth] is the last class drawn at that depth
    for line in lines[start + 1 :]:
        if not line.strip():
            break
        match = _TREE_LINE.match(line[root_column:])
        assert match, f"not a line of the tree: {line!r}"
        depth, rest = divmod(len(match["indent"]), 4)
        assert rest == 0 and 1 <= depth <= len(stack), f"misdrawn: {line!r}"
        del stack[depth:]
        parents[match["name"]] = stack[-1]
        stack.append(match["name"])
    return parents


EXCEPTIONS = _exceptions_defined_in_hbsm()
PUBLIC = sorted(
    (c for c in EXCEPTIONS if not c.__name__.startswith("_") and c is not HbsmError),
    key=lambda c: c.__name__,
)
PRIVATE = sorted((c for c in EXCEPTIONS if c.__name__.startswith("_")), key=lambda c: c.__name__)


def test_the_walk_finds_the_errors_of_every_layer():
    # A walk that imported nothing would pass the tests below vacuously.
    names = {c.__name__ for c in PUBLIC}
    assert {"LogError", "ConfigError", "EventDecodeError", "SupervisorError", "NotRunning"} <= names


@pytest.mark.parametrize("cls", PUBLIC, ids=lambda c: f"{c.__module__}.{c.__name__}")
def test_every_public_error_is_an_hbsm_error(cls):
    assert issubclass(cls, HbsmError)


@pytest.mark.parametrize("cls", PUBLIC, ids=lambda c: f"{c.__module__}.{c.__name__}")
def test_the_docstring_draws_every_public_error_under_its_parent(cls):
    tree = _drawn_tree()
    assert cls.__name__ in tree, f"{cls.__name__} is not drawn in hbsm.errors' docstring"
    # Its drawn parent is the nearest class of its MRO that is itself in the tree.
    nearest = next(base for base in cls.__mro__[1:] if base.__name__ in tree)
    assert tree[cls.__name__] == nearest.__name__


def test_the_tree_draws_no_class_that_does_not_exist():
    assert set(_drawn_tree()) == {c.__name__ for c in PUBLIC} | {"HbsmError"}


@pytest.mark.parametrize("cls", PRIVATE, ids=lambda c: f"{c.__module__}.{c.__name__}")
def test_every_private_exception_outside_the_tree_is_named_with_its_reason(cls):
    doc = errors.__doc__ or ""
    assert f"`{cls.__name__}` ({cls.__module__})" in doc


@pytest.mark.parametrize(
    ("module", "name", "builtin"),
    [
        ("hbsm.events", "EventDecodeError", ValueError),
        ("hbsm.fsm", "UnknownRulesError", ValueError),
        ("hbsm.replay", "OverrideError", ValueError),
        ("hbsm.repair", "SupervisorError", RuntimeError),
    ],
)
def test_errors_still_caught_by_their_builtin_base(module, name, builtin):
    cls = getattr(importlib.import_module(module), name)
    assert issubclass(cls, HbsmError)
    assert issubclass(cls, builtin)


def test_a_bad_line_is_caught_as_hbsm_error_and_as_value_error():
    from hbsm import events as ev

    with pytest.raises(HbsmError) as caught:
        ev.decode(b"this is not json")
    assert isinstance(caught.value, ValueError)
    assert isinstance(caught.value, ev.EventDecodeError)


def test_the_package_exports_the_base():
    assert hbsm.HbsmError is HbsmError
    assert "HbsmError" in hbsm.__all__
