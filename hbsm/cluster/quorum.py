"""No restart on one vantage point's word: a service counts as failing only when `quorum` of the
nodes that probed it recently saw it fail.

Every node probes every service. A node that does not own a service records what it saw as a
`probe.seen` fact (each failure, and the first success after one: an unchanged success says
nothing new). The owner, at each of its own probes, counts its own result and every other
node's latest fact: the probe it records carries them all as `votes`, and its `ok` is the
verdict. A failing fact counts for `VOTE_WINDOW_INTERVALS` check intervals (a node that stopped
reporting is not failing the service forever); a passing one until that node reports again.

Pure: no I/O, no clock. The same `verdict` re-decides a recorded probe in `hbsm replay --verify`.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping

import msgspec

from hbsm.events import Probe, ProbeSeen, Vote
from hbsm.state import Policy

__all__ = ["VOTE_WINDOW_INTERVALS", "judge", "quorum_now", "verdict", "vote_window", "votes_of"]

VOTE_WINDOW_INTERVALS = 2


def vote_window(policy: Policy) -> float:
    """How long a vantage point's failing fact counts, in seconds."""
    return VOTE_WINDOW_INTERVALS * policy.check_interval


def verdict(votes: Iterable[Vote], quorum: int) -> bool:
    """Whether the service passes: fewer than `quorum` of `votes` saw it fail."""
    return sum(1 for v in votes if not v.ok) < quorum


def votes_of(
    seen: Mapping[str, ProbeSeen], *, at: float, window: float, besides: str
) -> list[Vote]:
    """The other vantage points' votes at time `at`, from each node's latest fact (`seen`, as
    the projection keeps them): all but `besides`'s (the owner, which votes with its own
    probe), a failing one only if not older than `window`."""
    out = []
    for node, fact in sorted(seen.items()):
        if node == besides or (not fact.ok and fact.ts < at - window):
            continue
        out.append(Vote(node=node, ok=fact.ok, seq=fact.seq, error=fact.error))
    return out


def quorum_now(policy: Policy, live: int) -> int:
    """The quorum a verdict applies: the policy's, or the number of live nodes when fewer are
    left (the last node standing is the only one left to see: it decides on its own word)."""
    return max(1, min(policy.quorum, live))


def judge(own: Probe, others: list[Vote], quorum: int) -> Probe:
    """The owner's probe as recorded: its `ok` the verdict of its own result and `others`'
    under `quorum` (quorum_now's).

    Alone (no other vantage point has said anything, and one vote is enough) the probe is its
    own verdict, as with one monitor. Otherwise its own result is the first vote (its seq 0: it
    is this event), the quorum is recorded with them, and a result the quorum overrules says so
    in `detail`.
    """
    if not others and quorum <= 1:
        return own
    votes = (Vote(node=own.node, ok=own.ok, seq=0, error=own.error), *others)
    ok = verdict(votes, quorum)
    if ok == own.ok:
        return msgspec.structs.replace(own, votes=votes, quorum=quorum)
    failing = sum(1 for v in votes if not v.ok)
    said = "failing" if not own.ok else "passing"
    note = (
        f"{failing} of {len(votes)} vantage points see it failing (quorum {quorum}): "
        f"{'failing' if not ok else 'passing'}, though {own.node} saw it {said}"
    )
    detail = f"{note}; {own.detail}" if own.detail else note
    # Failing on the others' word: their failure class chooses the repair ladder.
    error = own.error if ok or own.error else next(v.error for v in votes if not v.ok)
    return msgspec.structs.replace(own, ok=ok, votes=votes, quorum=quorum, detail=detail,
                                   error=error)  # fmt: skip
