"""What the engine may start next: pure arithmetic over throttles, no I/O.

Only ACTIVE ensembles start anything; a PAUSED or HELD ensemble lets what
is already planning or running go on.  Which workflows fill the free slots
(higher priority first, then oldest) is the store's ordered query.
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
