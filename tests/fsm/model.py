"""A reference reading of the state machine's contract (docs/architecture.md) that checks every
step of a fact stream against `decide`, under either version of the rules.

`Checker.observe(fact, decisions, state)` is called after each `decide`. It keeps its own
account of the service, built from the facts and the recorded transitions only (never from the
FSM's internal fields), predicts from the design what the fact must lead to, and asserts:

* the decisions are the predicted ones (which transition, which repair step, which restart);
* the invariants: restarts spaced by the cooldown (1), repairs only after max_retries
  consecutive failed probes (2), at most restart_budget restarts per window and `failed` past
  that (3), backoff doubling up to its cap and reset by a stable period, counters reset when
  healthy again (4), and `evolve` alone rebuilding exactly the state `decide` left (5);
* every decision carries the fact's ts and no seq (the log stamps it), every transition starts
  from the state the service was in, states are always known ones, and `failed` is left only
  through an admin reset (or a pause whose resume goes back to `failed`);
* the state is consistent where the runtime relies on it: a repair step in flight is the
  current step of the run in progress (crash recovery indexes `ladder[step_index]` with it).

Where the design leaves a detail open the reference follows hbsm's documented choice (say so
where it does): a human reset starts the restart budget over; `success_threshold` applies to
every passing probe that would make the service healthy.

Rules 2 add: probes count during a cooldown; a restart step reached before the
cooldown's deadline waits for it and restarts at the first failed probe from then on; repair
runs that end without a restart back off (`repair_backoff`, doubling, capped) and past
`repair_budget` in a row make the service failed; failed probes inside the start grace after a
process hbsm started do not count; a lost process is restarted under the cooldown and budget.
Rules 3 add: a run whose last check_config found the configuration broken does not restart; it
ends as a run without a restart step does.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from hbsm.events import (
    Admin,
    Event,
    Probe,
    ProcessLost,
    ProcessStarted,
    RepairFinished,
    RepairStarted,
    RestartFinished,
    RestartStarted,
    Transition,
    decode_lines,
    encode_lines,
)
from hbsm.fsm import DECISIONS, decide, evolve, machine_for
from hbsm.state import RESTART_STEP, RULES, STATES, Policy, ServiceState

from .driver import SERVICE, replay, snapshot

COUNTING = ("unknown", "healthy", "degraded")
WATCHED = ("unknown", "healthy", "degraded", "cooldown")
RESUMABLE = ("healthy", "degraded", "cooldown", "failed")
REPAIR_NOW_FROM = ("unknown", "healthy", "degraded", "cooldown")


@dataclass
class Checker:
    policy: Policy
    name: str = SERVICE
    rules: int = RULES
    # The service as the reference sees it.
    state: str = "unknown"
    paused_from: str | None = None
    cooldown_until: float = 0.0
    fails: int = 0  # consecutive failed probes that counted
    oks: int = 0  # consecutive passing probes that counted
    last_class: str | None = None
    run: int = 0
    step: RepairStarted | None = None  # the repair step of the run in progress
    step_finished: bool = False
    # Restarts: the last one ever, and those the budget counts (since the last reset).
    last_restart: RestartStarted | None = None
    budget_restarts: list[float] = field(default_factory=list)
    backoff: int = 0
    healthy_since: float | None = None
    longest_healthy: float = 0.0  # since the last restart (or reset)
    # The current rules: the start grace, a restart waiting for the cooldown's end, and the
    # repair runs in a row that ended without fixing it (and when the next may start).
    grace_until: float = 0.0
    restart_in_flight: bool = False
    restart_pending: bool = False
    failed_runs: int = 0
    repair_after: float = 0.0
    # Rules 3: the run's last check_config found the configuration broken (no restart then).
    config_broken: bool = False
    # The log, and `evolve` alone applied to it (invariant 5, checked at every step).
    facts: list[Event] = field(default_factory=list)
    log: list[Event] = field(default_factory=list)
    replica: ServiceState = field(init=False)

    def __post_init__(self) -> None:
        self.replica = ServiceState(name=self.name)

    # --- one step ---------------------------------------------------------------------------

    def observe(self, fact: Event, decisions: list[Event], state: ServiceState) -> None:
        for d in decisions:
            assert isinstance(d, DECISIONS), d
            assert d.ts == fact.ts, (d, fact)
            assert d.seq == 0, d  # stamped by the log on append, not by the FSM
            assert d.service == self.name, d
        self._count(fact)
        expected = self._expect(fact)
        self._match(expected, decisions)
        for d in decisions:
            self._apply(d, fact)
        assert state.state == self.state, (state.state, self.state)
        assert state.state in STATES
        self._consistent(state)
        if isinstance(fact, Probe) and any(
            isinstance(d, Transition) and d.dst == "healthy" for d in decisions
        ):
            assert (state.failures, state.successes) == (0, 0)  # invariant 4: counters reset
        # Invariant 5: the fact and its decisions through `evolve` alone give the same state.
        for event in (fact, *decisions):
            evolve(self.replica, event, self.policy)
        assert snapshot(self.replica) == snapshot(state)
        self.facts.append(fact)
        self.log += [fact, *decisions]

    def _consistent(self, s: ServiceState) -> None:
        """What the runtime and the projection rely on when they read a state."""
        if s.state == "repairing":
            assert 0 <= s.step_index < len(s.ladder) and s.run >= 1, s
            assert self.step is not None and s.step_done == self.step_finished, s
        if s.in_flight is not None and s.in_flight.startswith("repair:"):
            # A repair step in flight is the current step of the run in progress.
            assert s.state == "repairing" and not s.step_done, s
            assert s.in_flight == f"repair:{s.ladder[s.step_index]}", s
        elif s.state == "repairing":
            assert s.step_done, s
        if s.step_done:
            assert s.state in ("repairing", "restarting"), s
        if s.state == "cooldown":
            assert s.cooldown_until == self.cooldown_until, s
            assert s.cooldown_holds == (self.rules == 1), s
            if self.rules >= 2:
                assert s.restart_pending == self.restart_pending, s
        if self.rules >= 2:
            assert (s.failed_runs, s.repair_after) == (self.failed_runs, self.repair_after), s

    def finish(self) -> None:
        """After the stream: replay the log as it would be written, and re-decide its facts."""
        written = [e for e in decode_lines(encode_lines(self.log)) if isinstance(e, Event)]
        assert written == self.log
        assert snapshot(replay(written, self.name, self.policy)) == snapshot(self.replica)
        fresh = ServiceState(name=self.name)
        redecided: list[Event] = []
        for fact in self.facts:
            redecided += decide(fresh, fact, self.policy, machine_for(self.rules))
        assert redecided == [e for e in self.log if isinstance(e, DECISIONS)]
        assert snapshot(fresh) == snapshot(self.replica)

    # --- what a fact counts for ---------------------------------------------------------------

    def _counts(self, probe: Probe) -> bool:
        if self.state == "cooldown":
            # The first rules held every probe until the deadline; the current ones hold none.
            return self.rules >= 2 or probe.ts >= self.cooldown_until
        return self.state in COUNTING

    def _in_grace(self, probe: Probe) -> bool:
        return not probe.ok and probe.ts < self.grace_until

    def _open_grace(self, ts: float) -> None:
        grace = self.policy.start_grace
        self.grace_until = ts + grace if grace > 0 else 0.0

    def _count(self, fact: Event) -> None:
        if isinstance(fact, Probe) and self._counts(fact):
            if fact.ok:
                self.oks += 1
                self.fails = 0
                self.grace_until = 0.0  # it answers: the start is over
            elif not self._in_grace(fact):
                self.fails += 1
                self.oks = 0
                self.last_class = fact.error
        elif isinstance(fact, RestartFinished):
            if self.restart_in_flight and fact.ok:  # the restart of ours that just finished
                self._open_grace(fact.ts)
            self.restart_in_flight = False
        elif isinstance(fact, ProcessStarted) and not fact.adopted:
            self._open_grace(fact.ts)
        elif (
            isinstance(fact, RepairFinished)
            and self.state == "repairing"
            and self.step is not None
            and (fact.run, fact.index) == (self.step.run, self.step.index)
        ):
            self.step_finished = True
            if fact.error_class is not None:
                self.last_class = fact.error_class
            if fact.step == "check_config":
                self.config_broken = not fact.ok and not fact.interrupted

    # --- what the design says the fact leads to -------------------------------------------------

    def _effective_ladder(self) -> tuple[str, ...]:
        """The run's ladder; after `diagnose`, the rest follows the ladder of what it found."""
        assert self.step is not None
        ladder, index = self.step.ladder, self.step.index
        if ladder[index] != "diagnose":
            return ladder
        chosen = self.policy.ladder_for(self.last_class)
        return ladder[: index + 1] + tuple(x for x in chosen if x != "diagnose")

    def _in_window(self, ts: float) -> list[float]:
        return [t for t in self.budget_restarts if t > ts - self.policy.restart_window]

    def _cooled_down(self, ts: float) -> bool:
        last = self.last_restart
        return last is None or ts >= last.ts + last.cooldown_s

    def _after_failed_step(self, ts: float) -> tuple[str, str]:
        assert self.step is not None
        ladder = self._effective_ladder()
        nxt = self.step.index + 1
        if nxt >= len(ladder) or self._held():
            budget = self.policy.repair_budget
            if self.rules >= 2 and budget > 0 and self.failed_runs + 1 >= budget:
                return "failed", "step_failed"
            return "degraded", "step_failed"
        if ladder[nxt] != RESTART_STEP:
            return "step", ladder[nxt]
        return self._restart_due(ts, "step_failed")

    def _held(self) -> bool:
        """Rules 3: the run reaches its restart step with its configuration found broken."""
        assert self.step is not None
        ladder, nxt = self._effective_ladder(), self.step.index + 1
        at_restart = nxt < len(ladder) and ladder[nxt] == RESTART_STEP
        return self.rules >= 3 and at_restart and self.config_broken

    def _restart_due(self, ts: float, trigger: str) -> tuple[str, str]:
        """A restart is called for: done, given up on (budget), or waiting (cooldown). The
        first rules gave up before waiting; the current ones judge the budget at the deadline."""
        spent = len(self._in_window(ts)) >= self.policy.restart_budget
        if self.rules == 1 and spent:
            return "failed", trigger
        if not self._cooled_down(ts):
            return "cooldown", trigger
        return ("failed" if spent else "restarting"), trigger

    def _expect(self, fact: Event) -> tuple[str, str] | None:
        p, st = self.policy, self.state
        if isinstance(fact, Probe):
            if st == "repairing":
                if not self.step_finished:
                    return None
                return ("healthy", "verified") if fact.ok else self._after_failed_step(fact.ts)
            if not self._counts(fact):
                return None
            if fact.ok:
                if st != "healthy" and self.oks >= p.success_threshold:
                    return "healthy", "probe_ok"
                return None
            if self._in_grace(fact) and not self.restart_pending:
                return None
            if self.rules == 1:
                if self.fails >= p.max_retries:
                    return "repairing", "probe_failed"
                return None if st == "degraded" else ("degraded", "probe_failed")
            if st == "cooldown" and self.restart_pending:
                if not self._cooled_down(fact.ts):
                    return None  # waits for the deadline
                if len(self._in_window(fact.ts)) >= p.restart_budget:
                    return "failed", "probe_failed"
                return "restarting", "probe_failed"
            if self.fails >= p.max_retries and fact.ts >= self.repair_after:
                return "repairing", "probe_failed"
            return ("degraded", "probe_failed") if st in ("unknown", "healthy") else None
        if isinstance(fact, RepairFinished):
            # Rules 4: a step that changed nothing and saw the failure stands for its own
            # verification: the run goes on as after a failed verification probe.
            current = self.step is not None and (fact.run, fact.index) == (
                self.step.run,
                self.step.index,
            )
            stands = not fact.verify and not fact.interrupted and current
            if self.rules >= 4 and st == "repairing" and stands:
                return self._after_failed_step(fact.ts)
            return None
        if isinstance(fact, ProcessLost):
            if self.rules >= 2 and st in WATCHED:
                return self._restart_due(fact.ts, "process_lost")
            return None
        if isinstance(fact, RestartFinished):
            if st != "restarting":
                return None
            if fact.ok:
                return "cooldown", "restart_done"
            return p.on_restart_failure, "restart_failed"
        if isinstance(fact, Admin) and fact.allowed:
            if fact.action == "pause" and st != "paused":
                return "paused", "pause"
            if fact.action == "resume" and st == "paused":
                back = self.paused_from or "unknown"
                return (back if back in RESUMABLE else "unknown"), "resume"
            if fact.action == "reset":
                return "unknown", "reset"
            if fact.action == "repair_now" and st in REPAIR_NOW_FROM:
                return "repairing", "repair_now"
        return None

    def _match(self, expected: tuple[str, str] | None, decisions: list[Event]) -> None:
        kinds = [type(d) for d in decisions]
        if expected is None:
            assert decisions == [], decisions
            return
        what, detail = expected
        if what == "step":
            (started,) = decisions
            assert isinstance(started, RepairStarted) and started.step == detail, decisions
            return
        first = decisions[0] if decisions else None
        assert isinstance(first, Transition), (expected, decisions)
        assert (first.dst, first.trigger) == expected, (expected, decisions)
        tail = {"repairing": [RepairStarted], "restarting": [RestartStarted]}.get(what, [])
        assert kinds[1:] == tail, decisions

    # --- the decisions, applied and checked --------------------------------------------------

    def _apply(self, d: Event, fact: Event) -> None:
        if isinstance(d, Transition):
            self._transition(d, fact)
        elif isinstance(d, RepairStarted):
            self._repair_started(d)
        elif isinstance(d, RestartStarted):
            self._restart_started(d)

    def _transition(self, t: Transition, fact: Event) -> None:
        p = self.policy
        assert t.src == self.state, (t, self.state)
        assert t.dst in STATES, t
        assert t.reason, t
        # `failed` is left only by a human: reset, or a pause (whose resume goes back there).
        if t.src == "failed":
            assert t.trigger in ("reset", "pause"), t
        if t.src == "paused" and self.paused_from == "failed":
            assert t.dst == "failed" or t.trigger == "reset", t
        if t.dst == "repairing" and t.trigger != "repair_now":
            # Invariant 2, and the backoff after runs that did not fix it.
            assert t.trigger == "probe_failed" and self.fails >= p.max_retries, (t, self.fails)
            assert t.ts >= self.repair_after, (t, self.repair_after)
        if t.dst == "degraded" and t.trigger == "probe_failed":
            assert t.failures == self.fails, (t, self.fails)
        exhausted = (
            t.trigger == "step_failed"
            and self.step is not None
            and (self.step.index + 1 >= len(self._effective_ladder()) or self._held())
        )
        if t.dst == "failed" and exhausted:
            # Past the repair budget: that many runs in a row did not fix it.
            assert self.rules >= 2 and 0 < p.repair_budget <= self.failed_runs + 1, t
        elif t.dst == "failed" and t.trigger in ("step_failed", "probe_failed", "process_lost"):
            # Invariant 3: failed because the budget is spent, not before.
            assert len(self._in_window(t.ts)) >= p.restart_budget, t
        if t.dst == "degraded" and exhausted:
            self.failed_runs += 1
            if self.rules >= 2:
                delay = min(p.repair_backoff * 2 ** (self.failed_runs - 1), p.repair_backoff_max)
                assert t.until == t.ts + delay, (t, delay)
                self.repair_after = t.until
            else:
                assert t.until is None, t
        elif t.dst == "healthy" or t.trigger == "reset":
            self.failed_runs, self.repair_after = 0, 0.0
        if t.dst == "cooldown":
            last = self.last_restart
            assert last is not None, t
            assert t.hold == (self.rules == 1), t
            if t.trigger == "restart_done":
                # The first rules counted the cooldown from the restart's end; the current ones
                # from its decision, the very time the restart guard measures from.
                start = t.ts if self.rules == 1 else last.ts
                assert t.until == start + last.cooldown_s, t
                self.restart_pending = False
            elif t.trigger in ("step_failed", "process_lost"):
                assert t.until == last.ts + last.cooldown_s > t.ts, t
                self.restart_pending = True
            else:  # resume: the cooldown goes on until its deadline, not a new one
                assert t.trigger == "resume" and t.until == self.cooldown_until, t
            self.cooldown_until = t.until
        elif t.dst != "paused":
            self.restart_pending = False
        # Healthy stretches since the last restart (invariant 4's stable period).
        if t.src == "healthy" and self.healthy_since is not None:
            self.longest_healthy = max(self.longest_healthy, t.ts - self.healthy_since)
        self.healthy_since = t.ts if t.dst == "healthy" else None

        self.state = t.dst
        self.oks = 0
        if t.trigger != "probe_failed":
            self.fails = 0
        if t.dst == "paused":
            self.paused_from = t.src
        # A transition ends the step in flight (the next step of a run is not a transition).
        self.step, self.step_finished = None, False
        if t.dst == "unknown":
            self.last_class = None
            if t.trigger == "reset":
                # hbsm's choice: a human reset starts the budget and the backoff over.
                self.budget_restarts = []
                self.backoff = 0
                self.longest_healthy = 0.0

    def _repair_started(self, r: RepairStarted) -> None:
        assert self.state == "repairing", r
        assert r.step != RESTART_STEP, r  # reaching restart is a restart decision
        if self.step is None:  # a new run
            self.config_broken = False
            assert (r.run, r.index) == (self.run + 1, 0), (r, self.run)
            assert r.ladder == self.policy.ladder_for(self.last_class), (r, self.last_class)
        else:  # the next step, after a failed verification of a finished one
            assert self.step_finished, r
            assert (r.run, r.index) == (self.step.run, self.step.index + 1), (r, self.step)
            assert r.ladder == self._effective_ladder(), r
            assert r.ladder[: r.index] == self.step.ladder[: r.index], r
        assert r.step == r.ladder[r.index], r
        self.run, self.step, self.step_finished = r.run, r, False
        # The step is now the effect in flight: the outcome of a restart still out (abandoned
        # by a pause mid-restart) is no longer awaited, and opens no start grace.
        self.restart_in_flight = False

    def _restart_started(self, r: RestartStarted) -> None:
        p, last = self.policy, self.last_restart
        assert self.state == "restarting", r
        # Invariant 1: never closer than restart_cooldown (nor the backed-off cooldown).
        if last is not None:
            assert r.ts - last.ts >= p.restart_cooldown, (last, r)
            assert r.ts - last.ts >= last.cooldown_s, (last, r)
        # Invariant 3: at most restart_budget within any window.
        recent = [*self._in_window(r.ts), r.ts]
        assert len(recent) <= p.restart_budget, (recent, r)
        assert (r.recent, r.attempt) == (recent, len(recent)), r
        # Invariant 4: back off unless a stable healthy period came since the last restart.
        stable = last is None or self.longest_healthy >= p.stable_period
        backoff = 0 if stable else self.backoff + 1
        assert r.backoff == backoff, (r, self.longest_healthy)
        assert r.cooldown_s == min(p.restart_cooldown * 2**backoff, p.cooldown_max), r
        self.last_restart = r
        self.restart_in_flight = True
        self.backoff = r.backoff
        self.budget_restarts.append(r.ts)
        self.longest_healthy = 0.0
