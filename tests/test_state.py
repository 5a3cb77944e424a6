"""A service's policy: every threshold refused just past its edge with the message that names
it, accepted at the edge; the ladder per failure class; the backoffs' doubling and caps."""

from __future__ import annotations

from typing import Any

import pytest

from hbsm.state import ERROR_CLASSES, Policy

# (field, the edge value that is accepted, the first value past it, what the refusal says)
EDGES: list[tuple[str, Any, Any, str]] = [
    ("check_interval", 0.001, 0.0, "check_interval must be > 0"),
    ("max_retries", 1, 0, "max_retries must be >= 1"),
    ("success_threshold", 1, 0, "success_threshold must be >= 1"),
    ("restart_cooldown", 0.0, -0.001, "restart_cooldown must be >= 0"),
    ("stable_period", 0.0, -0.001, "stable_period must be >= 0"),
    ("restart_budget", 0, -1, "restart_budget must be >= 0"),
    ("restart_window", 0.001, 0.0, "restart_window must be > 0"),
    ("start_grace", 0.0, -0.001, "start_grace must be >= 0"),
    ("repair_backoff", 0.0, -0.001, "repair_backoff must be >= 0"),
    ("repair_budget", 0, -1, "repair_budget must be >= 0 (0: no limit)"),
]


@pytest.mark.parametrize(("field", "edge", "past", "message"), EDGES, ids=[e[0] for e in EDGES])
def test_each_threshold_is_refused_just_past_its_edge(
    field: str, edge: Any, past: Any, message: str
) -> None:
    assert getattr(Policy(**{field: edge}), field) == edge
    with pytest.raises(ValueError) as caught:
        Policy(**{field: past})
    assert str(caught.value) == message


@pytest.mark.parametrize(
    ("fields", "message"),
    [
        (
            {"restart_cooldown": 60, "cooldown_max": 59.9},
            "cooldown_max must be >= restart_cooldown",
        ),
        (
            {"repair_backoff": 60, "repair_backoff_max": 59.9},
            "repair_backoff_max must be >= repair_backoff",
        ),
    ],
)
def test_a_cap_below_its_start_is_refused(fields: dict[str, float], message: str) -> None:
    with pytest.raises(ValueError) as caught:
        Policy(**fields)  # type: ignore[arg-type]
    assert str(caught.value) == message
    equal = {k: 60 for k in fields}
    Policy(**equal)  # type: ignore[arg-type]  # a cap equal to its start is fine


@pytest.mark.parametrize(
    ("fields", "message"),
    [
        ({"ladder": ()}, "ladder must name at least one step"),
        (
            {"ladder": ("restart",)},
            "ladder must not begin with 'restart': start with diagnose (it is cheap)",
        ),
        (
            {"ladder": ("diagnose", "restart", "http")},
            "ladder 'restart' can only be the last step",
        ),
        (
            {"ladders": {"timeout": ("diagnose", "restart", "http")}},
            "ladders.timeout 'restart' can only be the last step",
        ),
        (
            {"ladders": {"sleepy": ("diagnose",)}},
            f"ladders.sleepy is not a failure class (one of {', '.join(ERROR_CLASSES)})",
        ),
        # The first problem is the one named.
        ({"check_interval": 0, "max_retries": 0}, "check_interval must be > 0"),
    ],
)
def test_a_bad_ladder_is_refused_saying_what_is_wrong(fields: dict[str, Any], message: str) -> None:
    with pytest.raises(ValueError) as caught:
        Policy(**fields)
    assert str(caught.value) == message


def test_the_ladder_follows_the_failure_class_else_the_default() -> None:
    policy = Policy(ladder=("diagnose", "restart"), ladders={"timeout": ("diagnose", "http")})
    assert policy.ladder_for("timeout") == ("diagnose", "http")
    assert policy.ladder_for("refused") == ("diagnose", "restart")
    assert policy.ladder_for(None) == ("diagnose", "restart")


def test_the_cooldown_doubles_per_backoff_level_up_to_its_cap() -> None:
    policy = Policy(restart_cooldown=10, cooldown_max=75)
    assert [policy.cooldown_for(n) for n in range(5)] == [10, 20, 40, 75, 75]
    assert policy.cooldown_for(10_000) == 75  # a huge level is capped, not an overflow


def test_the_repair_delay_doubles_per_failed_run_up_to_its_cap() -> None:
    policy = Policy(repair_backoff=10, repair_backoff_max=75)
    assert [policy.repair_delay(n) for n in range(1, 6)] == [10, 20, 40, 75, 75]
    assert policy.repair_delay(10_000) == 75
