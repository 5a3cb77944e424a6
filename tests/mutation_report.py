"""`just mutate`'s summary: the kill rate per module and every mutant that was not killed.

Reads what `mutmut run` left in mutants/ (one .meta file per mutated module: each mutant's exit
code) and prints a table, then the names of the survivors for `mutmut show NAME`. A mutant
counts when it was run: those outside the names given to `mutmut run` are left out.

    python -m tests.mutation_report [--markdown]
"""

from __future__ import annotations

import argparse
import json
from collections import Counter
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
MUTANTS = ROOT / "mutants"

# mutmut's exit codes (mutmut.stats.status_by_exit_code); anything else it calls suspicious.
STATUS = {
    0: "survived",
    1: "killed",
    3: "killed",
    5: "no tests",
    33: "no tests",
    34: "skipped",
    36: "timeout",
    24: "timeout",
    -24: "timeout",
    152: "timeout",
    255: "timeout",
}
# A mutant that hangs the tests is caught too: the run would never end.
CAUGHT = ("killed", "timeout")


def _load() -> dict[str, dict[str, str]]:
    """{module file: {mutant name: status}} for every mutant that was run."""
    found: dict[str, dict[str, str]] = {}
    for meta in sorted(MUTANTS.rglob("*.py.meta")):
        codes = json.loads(meta.read_text())["exit_code_by_key"]
        ran = {
            name: STATUS.get(code, "suspicious") for name, code in codes.items() if code is not None
        }
        if ran:
            found[str(meta.relative_to(MUTANTS))[: -len(".meta")]] = ran
    return found


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m tests.mutation_report", description=__doc__)
    parser.add_argument("--markdown", action="store_true", help="a Markdown table (docs/)")
    args = parser.parse_args(argv)
    modules = _load()
    if not modules:
        print("no mutant was run: `just mutate` first")
        return 1
    total: Counter[str] = Counter()
    rows = []
    for module, statuses in modules.items():
        counts = Counter(statuses.values())
        total += counts
        rows.append((module, counts))
    rows.append(("all", total))
    if args.markdown:
        print("| module | mutants | killed | timeout | survived | no tests | kill rate |")
        print("|---|---:|---:|---:|---:|---:|---:|")
    for module, counts in rows:
        run = sum(counts.values())
        caught = sum(counts[s] for s in CAUGHT)
        cells = [module, run, counts["killed"], counts["timeout"], counts["survived"],
                 counts["no tests"], f"{caught / run:.1%}"]  # fmt: skip
        if args.markdown:
            print(
                "| "
                + " | ".join(f"`{c}`" if i == 0 else str(c) for i, c in enumerate(cells))
                + " |"
            )
        else:
            print("{:<24} {:>5} mutants {:>5} killed {:>3} timeout {:>4} survived "
                  "{:>4} no tests  {:>6}".format(*cells))  # fmt: skip
    if not args.markdown:
        print("\nnot killed (mutmut show NAME):")
        for statuses in modules.values():
            for name, status in statuses.items():
                if status not in CAUGHT:
                    print(f"  {status:<10} {name}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
