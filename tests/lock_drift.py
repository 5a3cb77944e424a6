"""`python -m tests.lock_drift`: what this environment has installed at versions other than
requirements.lock's (for `just test-latest`, which installs the newest ones pyproject.toml allows).
Prints one line per package; exits 0 either way."""

from __future__ import annotations

from importlib.metadata import distributions

from packaging.markers import Marker
from packaging.utils import canonicalize_name

from tests.test_lock import LOCK, parse_lock


def main() -> None:
    locked = {
        pin.name: str(pin.version)
        for pin in parse_lock(LOCK.read_text(encoding="utf-8"))
        if not pin.marker or Marker(pin.marker).evaluate()
    }
    installed = {canonicalize_name(d.metadata["Name"]): d.version for d in distributions()}
    differ = sorted(
        (name, locked[name], version)
        for name, version in installed.items()
        if name in locked and locked[name] != version
    )
    missing = sorted(set(locked) - set(installed))
    print(f"{len(differ)} package(s) at a version other than {LOCK.name}'s:")
    for name, pinned, version in differ:
        print(f"  {name} {pinned} -> {version}")
    for name in missing:
        print(f"  {name} {locked[name]} -> not installed")


if __name__ == "__main__":
    main()
