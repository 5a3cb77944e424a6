"""The shared machine itself: one per version of the rules, serving any number of services
without registering them, `decided` on a copy, facts it does not know ignored, rules it does
not know refused in so many words."""

from __future__ import annotations

import msgspec
import pytest

from hbsm.events import Admin, Probe
from hbsm.fsm import (
    KNOWN_RULES,
    ServiceMachine,
    UnknownRulesError,
    decide,
    decided,
    machine_for,
)
from hbsm.state import Policy, ServiceState


def test_a_version_of_the_rules_it_does_not_know_is_refused_saying_which_it_knows() -> None:
    with pytest.raises(UnknownRulesError) as caught:
        ServiceMachine(len(KNOWN_RULES) + 1)
    assert str(caught.value) == (
        f"decision rules {len(KNOWN_RULES) + 1} are not known to this hbsm "
        "(it knows 1, 2, 3, 4, 5): a newer hbsm wrote this log"
    )
    assert isinstance(caught.value, ValueError)


@pytest.mark.parametrize("rules", KNOWN_RULES)
def test_one_machine_per_version_of_the_rules(rules: int) -> None:
    machine = machine_for(rules)
    assert machine.rules == rules and machine_for(rules) is machine


def test_decided_works_on_a_copy_and_leaves_the_state_alone() -> None:
    policy = Policy(check_interval=5, max_retries=1)
    state = ServiceState(name="web", state="healthy", restarts=[1.0])
    before = msgspec.to_builtins(state)
    fact = Probe(ts=10.0, service="web", ok=False, error="refused")
    after, decisions = decided(state, fact, policy)
    assert msgspec.to_builtins(state) == before  # untouched, its list too
    assert after is not state and after.state == "repairing"
    # The same decisions and the same state as decide gives on the state itself.
    assert decide(state, fact, policy) == decisions
    assert msgspec.to_builtins(state) == msgspec.to_builtins(after)


def test_one_machine_serves_any_number_of_services_unregistered() -> None:
    machine = ServiceMachine()
    policy = Policy(check_interval=5, max_retries=1)
    states = [ServiceState(name=f"svc{i}", state="healthy") for i in range(3)]
    for s in states[:2]:
        decide(s, Probe(ts=1.0, service=s.name, ok=False), policy, machine)
    assert [s.state for s in states] == ["repairing", "repairing", "healthy"]
    assert machine.machine.models == []


@pytest.mark.parametrize(("state", "action"), [("healthy", "resume"), ("failed", "repair_now")])
def test_a_trigger_its_state_has_no_transition_for_is_ignored(state: str, action: str) -> None:
    # An operator's resume of a service that is not paused, a repair_now of a failed one (only a
    # reset leaves `failed`): recorded, decides nothing, raises nothing.
    s = ServiceState(name="web", state=state)
    admin = Admin(ts=1.0, service="web", action=action, who="ops")
    assert decide(s, admin, Policy(), machine_for()) == []
    assert s.state == state
