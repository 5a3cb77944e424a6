"""requirements.lock matches pyproject.toml: a dependency added, bounded or dropped there without
`just lock` fails here, offline, before any install could drift."""

from __future__ import annotations

import tomllib
from dataclasses import dataclass
from pathlib import Path

import pytest
from packaging.requirements import Requirement
from packaging.utils import canonicalize_name
from packaging.version import Version

ROOT = Path(__file__).resolve().parent.parent
PYPROJECT = ROOT / "pyproject.toml"
LOCK = ROOT / "requirements.lock"


@dataclass(frozen=True)
class Pin:
    name: str  # canonical
    version: Version
    marker: str
    hashes: tuple[str, ...]
    via: tuple[str, ...]
    line: int  # where the entry starts in the lock, 1-based


def parse_lock(text: str) -> list[Pin]:
    """The entries of a `uv pip compile --generate-hashes` file: requirement, hashes, `# via`."""
    pins: list[Pin] = []
    entries: list[tuple[int, str, list[str]]] = []  # start line, joined requirement, comments
    logical = ""
    start = 0
    for number, raw in enumerate(text.splitlines(), start=1):
        line = raw.strip()
        if not logical and (not line or line.startswith("#")):
            if entries and line.startswith("#"):
                entries[-1][2].append(line.lstrip("#").strip())
            continue
        if not logical:
            start = number
        logical += " " + line.removesuffix("\\")
        if not line.endswith("\\"):
            entries.append((start, logical.strip(), []))
            logical = ""
    assert not logical, f"{LOCK.name}: the last entry ends in a line continuation"
    for start, joined, comments in entries:
        words = joined.split(" --hash=")
        requirement = Requirement(words[0])
        specs = list(requirement.specifier)
        pinned = len(specs) == 1 and specs[0].operator == "=="
        assert pinned, f"{LOCK.name}, line {start}: {words[0]!r} is not pinned"
        via = [c.removeprefix("via").strip() for c in comments]
        pins.append(
            Pin(
                name=canonicalize_name(requirement.name),
                version=Version(specs[0].version),
                marker=str(requirement.marker or ""),
                hashes=tuple(h.strip() for h in words[1:]),
                via=tuple(v for v in via if v),
                line=start,
            )
        )
    return pins


def declared() -> list[Requirement]:
    """What pyproject.toml asks for: the runtime dependencies and every extra (dev included)."""
    project = tomllib.loads(PYPROJECT.read_text(encoding="utf-8"))["project"]
    lines = list(project["dependencies"])
    for extra in project["optional-dependencies"].values():
        lines.extend(extra)
    return [Requirement(line) for line in dict.fromkeys(lines)]  # flask is in two extras


PINS = parse_lock(LOCK.read_text(encoding="utf-8"))
DECLARED = declared()


@pytest.mark.parametrize("requirement", DECLARED, ids=str)
def test_every_declared_dependency_is_pinned_to_a_version_it_allows(
    requirement: Requirement,
) -> None:
    pins = [pin for pin in PINS if pin.name == canonicalize_name(requirement.name)]
    assert pins, f"{LOCK.name}: {requirement.name} is declared in pyproject.toml but not locked"
    for pin in pins:
        assert requirement.specifier.contains(pin.version, prereleases=True), (
            f"{LOCK.name}, line {pin.line}: {pin.name}=={pin.version} is outside "
            f"pyproject.toml's {requirement}; run `just lock`"
        )


def test_every_pin_has_hashes() -> None:
    assert len(PINS) > len(DECLARED)  # the transitive dependencies are there too
    for pin in PINS:
        assert pin.hashes, f"{LOCK.name}, line {pin.line}: {pin.name} has no --hash"
        for digest in pin.hashes:
            algorithm, _, value = digest.partition(":")
            assert algorithm == "sha256" and len(value) == 64, (
                f"{LOCK.name}, line {pin.line}: {pin.name} has a malformed hash {digest!r}"
            )


def test_nothing_is_locked_as_a_direct_dependency_that_pyproject_no_longer_declares() -> None:
    names = {canonicalize_name(r.name) for r in DECLARED}
    direct = {pin.name for pin in PINS if "hbsm (pyproject.toml)" in pin.via}
    assert direct, f"{LOCK.name} has no `# via hbsm (pyproject.toml)`: not uv's output?"
    assert direct == names, f"run `just lock`: locked {direct - names}, not locked {names - direct}"


def test_each_package_is_pinned_once_per_environment() -> None:
    seen: dict[tuple[str, str], int] = {}
    for pin in PINS:
        key = (pin.name, pin.marker)
        assert key not in seen, f"{LOCK.name}: {pin.name} at lines {seen[key]} and {pin.line}"
        seen[key] = pin.line


def test_the_build_backend_is_pinned_to_one_version() -> None:
    build = tomllib.loads(PYPROJECT.read_text(encoding="utf-8"))["build-system"]["requires"]
    for line in build:
        specs = list(Requirement(line).specifier)
        assert len(specs) == 1 and specs[0].operator == "==", f"{line!r} is not one exact version"


SAMPLE = """\
# This file was autogenerated by uv via the following command:
#    just lock
colorama==0.4.6 ; sys_platform == 'win32' \\
    --hash=sha256:{a} \\
    --hash=sha256:{b}
    # via
    #   click
    #   hbsm (pyproject.toml)
msgspec==0.23.0 \\
    --hash=sha256:{a}
    # via hbsm (pyproject.toml)
""".format(a="a" * 64, b="b" * 64)


def test_the_lock_reader_reads_markers_hashes_and_via() -> None:
    colorama, msgspec = parse_lock(SAMPLE)
    assert (colorama.name, colorama.version, colorama.marker) == (
        "colorama",
        Version("0.4.6"),
        'sys_platform == "win32"',
    )
    assert colorama.hashes == ("sha256:" + "a" * 64, "sha256:" + "b" * 64)
    assert colorama.via == ("click", "hbsm (pyproject.toml)") and colorama.line == 3
    assert msgspec.via == ("hbsm (pyproject.toml)",) and msgspec.hashes == ("sha256:" + "a" * 64,)


@pytest.mark.parametrize(
    ("entry", "why"),
    [
        ("msgspec>=0.19", "not pinned"),
        ("msgspec", "not pinned"),
        ("msgspec==0.23.0 \\", "line continuation"),
    ],
)
def test_the_lock_reader_refuses_an_unpinned_or_unfinished_entry(entry: str, why: str) -> None:
    with pytest.raises(AssertionError, match=why):
        parse_lock(entry + "\n")
