"""The shared machine itself: one per version of the rules, services added in batches keeping
their states, facts it does not know ignored, rules it does not know refused in so many words."""

from __future__ import annotations

import pytest

from hbsm.events import Admin
from hbsm.fsm import KNOWN_RULES, ServiceMachine, UnknownRulesError, decide, machine_for
from hbsm.state import Policy, ServiceState


def test_a_version_of_the_rules_it_does_not_know_is_refused_saying_which_it_knows() -> None:
    with pytest.raises(UnknownRulesError) as caught:
        ServiceMachine(len(KNOWN_RULES) + 1)
    assert str(caught.value) == (
        f"decision rules {len(KNOWN_RULES) + 1} are not known to this hbsm (it knows 1, 2): "
        "a newer hbsm wrote this log"
    )
    assert isinstance(caught.value, ValueError)


@pytest.mark.parametrize("rules", KNOWN_RULES)
def test_one_machine_per_version_of_the_rules(rules: int) -> None:
    machine = machine_for(rules)
    assert machine.rules == rules and machine_for(rules) is machine


def test_services_added_in_a_batch_keep_their_states_and_are_models_by_identity() -> None:
    machine = ServiceMachine()
    states = [ServiceState(name=f"svc{i}", state=s) for i, s in enumerate(["healthy", "failed"])]
    twin = ServiceState(name="svc0", state="healthy")  # equal fields, another service object
    machine.add(states)
    assert [s.state for s in states] == ["healthy", "failed"]  # not reset to `unknown`
    assert all(s in machine.machine.models for s in states)
    assert twin not in machine.machine.models
    machine.machine.remove_model(states[0])
    assert states[0] not in machine.machine.models and states[1] in machine.machine.models


@pytest.mark.parametrize(("state", "action"), [("healthy", "resume"), ("failed", "repair_now")])
def test_a_trigger_its_state_has_no_transition_for_is_ignored(state: str, action: str) -> None:
    # An operator's resume of a service that is not paused, a repair_now of a failed one (only a
    # reset leaves `failed`): recorded, decides nothing, raises nothing.
    s = ServiceState(name="web", state=state)
    admin = Admin(ts=1.0, service="web", action=action, who="ops")
    assert decide(s, admin, Policy(), machine_for()) == []
    assert s.state == state
