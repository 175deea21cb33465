"""What the engine may start next: pure arithmetic over throttles, no I/O.

Only ACTIVE ensembles start anything; a PAUSED or HELD ensemble lets what
is already planning or running go on.  Which workflows fill an ensemble's
free slots (higher priority first, then oldest) is the store's ordered query;
the global caps (MAX_PLANNING_TOTAL, MAX_RUNNING_TOTAL) then keep, of all the
ensembles' candidates, the highest priority and oldest first.
"""

from typing import NamedTuple

from .states import EnsembleState

PLAN = "plan"
RUN = "run"


class Action(NamedTuple):
    kind: str          # PLAN a READY workflow, or RUN a QUEUED one
    ensemble_id: int
    count: int


def free_slots(load):
    """(workflows to plan, workflows to start) for one ensemble's EnsembleLoad."""
    if load.state != EnsembleState.ACTIVE:
        return 0, 0
    plan = max(0, min(load.ready, load.max_planning - load.planning))
    run = max(0, min(load.queued, load.max_running - load.running))
    return plan, run


def select(loads):
    """Actions for every ensemble with free slots and waiting workflows."""
    actions = []
    for load in loads:
        plan, run = free_slots(load)
        if run:
            actions.append(Action(RUN, load.id, run))
        if plan:
            actions.append(Action(PLAN, load.id, plan))
    return actions


def global_budgets(loads, limits):
    """(plans, runs) that may still start across all ensembles; None where no cap.
    `limits` is (MAX_PLANNING_TOTAL, MAX_RUNNING_TOTAL); busy paused ensembles count too."""
    max_planning, max_running = limits
    planning = sum(load.planning for load in loads)
    running = sum(load.running for load in loads)
    return (None if max_planning is None else max(0, max_planning - planning),
            None if max_running is None else max(0, max_running - running))


def within(candidates, budget):
    """(priority, id) candidates in the order to start them: higher priority first, then
    oldest (lower id); only the first `budget` of them unless budget is None."""
    ordered = sorted(candidates, key=lambda c: (-c[0], c[1]))
    return ordered if budget is None else ordered[:budget]
