# hbsm tasks. Uses the project's .venv when there is one, else the python on PATH.

set shell := ["bash", "-euo", "pipefail", "-c"]

py := if path_exists(".venv/bin/python") == "true" { ".venv/bin/python" } else { "python3" }

# List the tasks.
default:
    @just --list

# Install hbsm and its development tools into .venv, at the versions requirements.lock pins.
install:
    test -x .venv/bin/python || python3 -m venv .venv
    .venv/bin/python -m pip install -q --require-hashes -r requirements.lock
    .venv/bin/python -m pip install -q --no-deps -e .

# Needs uv (dev extra) and PyPI; pip alone installs the lock. Pins that still satisfy
# pyproject.toml are kept; `just lock --upgrade` (or `--upgrade-package NAME`) moves them to the
# newest allowed. Then `just install`, and commit requirements.lock with pyproject.toml.
# Rewrite requirements.lock (every dependency, exact versions, hashes) from pyproject.toml.
lock *ARGS:
    {{py}} -m uv pip compile pyproject.toml --all-extras --universal --python-version 3.11 \
        --generate-hashes --custom-compile-command 'just lock' -o requirements.lock {{ARGS}}

# Not in CI. A failure here is drift to fix (or to bound in pyproject.toml) before the next
# `just lock --upgrade`; what differs from the lock is printed first.
# The suite in .venv-latest, at the newest versions pyproject.toml allows (ignores the lock).
test-latest *ARGS:
    test -x .venv-latest/bin/python || python3 -m venv .venv-latest
    .venv-latest/bin/python -m pip install -q --upgrade --upgrade-strategy eager -e '.[dev]'
    .venv-latest/bin/python -m tests.lock_drift
    .venv-latest/bin/python -m pytest -q {{ARGS}}

# The test suite but the tests marked slow (no timing assertions; benchmarks are `just bench`).
test *ARGS:
    {{py}} -m pytest -q -m "not slow" {{ARGS}}

# The tests marked slow (whole demos, twenty kills, a NATS cluster's elections); CI runs them
# after `just test`.
test-slow *ARGS:
    {{py}} -m pytest -q -m slow {{ARGS}}

# Lint, format check and type check.
lint:
    {{py}} -m ruff check hbsm tests events examples deploy
    {{py}} -m ruff format --check hbsm tests events examples deploy
    {{py}} -m mypy

# Benchmarks against baselines measured in the same run; writes bench-results.json.
bench *ARGS:
    {{py}} -m tests.bench.run {{ARGS}}

# The README's performance table (Markdown) from the last `just bench` run's bench-results.json.
bench-table *ARGS:
    {{py}} -m tests.bench.summary {{ARGS}}

# Not in CI; run it on a quiet machine. `hbsm run` probing 1,000 services each second for 10
# minutes, 5% failing at random, its API under constant load and the dashboard following; fails
# on drift, memory growth after warm-up, an error line, an API error or a failed `hbsm replay
# --verify`; writes soak-results.json. Then the fuzz tests in their soak profile.
# The load soak (--minutes, --services, --fail-rate, --help ...), then the fuzz tests' soak.
soak *ARGS:
    {{py}} -m tests.soak.run {{ARGS}}
    HBSM_FUZZ=soak {{py}} -m pytest -q tests/reliability/test_fuzz.py

# The demo: flaky local services, monitored and repaired, faults injected, dashboard on.
demo *ARGS:
    {{py}} -m hbsm demo --chaos {{ARGS}}

# Regenerate the sample logs in events/samples/ (reproducible).
samples:
    {{py}} events/samples/make_samples.py

# Not in CI (about 8 minutes on 2 cores). Mutation testing with mutmut of the pure core
# (fsm, graph, evolve, projection, state), the log's durability path (durability, recovery) and
# the redaction of internals (hbsm/api/redaction.py), each mutant against only the tests that
# call its function ([tool.mutmut] in pyproject.toml); the report and the survivors left on
# purpose are docs/testing.md. Then `mutmut show NAME` shows one; `mutmut results`, all.
# Mutation testing of the core: kills, survivors and the kill rate per module.
mutate *ARGS:
    rm -rf mutants && mkdir mutants
    HBSM_MUTATE=1 HBSM_FSM_EXAMPLES=12 {{py}} -m mutmut run --max-children 2 \
        'hbsm.fsm.*' 'hbsm.graph.*' 'hbsm.evolve.*' 'hbsm.projection.*' 'hbsm.state.*' \
        'hbsm.log.durability.*' 'hbsm.log.recovery.*' 'hbsm.api.redaction.*' \
        {{ARGS}} > mutants/run.log 2>&1 || (tail -40 mutants/run.log; exit 1)
    {{py}} -m tests.mutation_report
