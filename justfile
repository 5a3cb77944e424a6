# hbsm tasks. Uses the project's .venv when there is one, else the python on PATH.

set shell := ["bash", "-euo", "pipefail", "-c"]

py := if path_exists(".venv/bin/python") == "true" { ".venv/bin/python" } else { "python3" }

# List the tasks.
default:
    @just --list

# Install hbsm and its development tools into .venv.
install:
    test -x .venv/bin/python || python3 -m venv .venv
    .venv/bin/python -m pip install -q --upgrade pip
    .venv/bin/python -m pip install -q -e '.[dev]'

# The test suite (no timing assertions; benchmarks are `just bench`).
test *ARGS:
    {{py}} -m pytest -q {{ARGS}}

# Lint, format check and type check.
lint:
    {{py}} -m ruff check hbsm tests events examples
    {{py}} -m ruff format --check hbsm tests events examples
    {{py}} -m mypy

# Benchmarks against baselines measured in the same run; writes bench-results.json.
bench *ARGS:
    {{py}} -m tests.bench.run {{ARGS}}

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
