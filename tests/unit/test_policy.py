"""policy: what the engine may start next, as pure arithmetic over EnsembleLoads."""

import pytest

from pegasus_em.core import policy
from pegasus_em.core.model import EnsembleLoad
from pegasus_em.core.policy import PLAN, RUN, Action


def load(i, state="ACTIVE", max_planning=3, max_running=3, ready=5, planning=0, queued=5,
         running=0):
    return EnsembleLoad(i, state, max_planning, max_running, ready, planning, queued, running)


@pytest.mark.parametrize("kw, slots", [
    ({}, (3, 3)),                                      # throttles bound
    ({"ready": 1, "queued": 2}, (1, 2)),               # waiting workflows bound
    ({"planning": 2, "running": 1}, (1, 2)),           # busy ones take their slots
    ({"planning": 3, "running": 3}, (0, 0)),           # full
    ({"planning": 5, "running": 4}, (0, 0)),           # over (throttle lowered): never < 0
    ({"max_planning": 0, "max_running": 0}, (0, 0)),
    ({"ready": 0, "queued": 0}, (0, 0)),
    ({"state": "PAUSED"}, (0, 0)),                     # only ACTIVE ensembles start anything
    ({"state": "HELD"}, (0, 0)),
])
def test_free_slots_are_the_throttle_less_the_busy_within_the_waiting(kw, slots):
    assert policy.free_slots(load(1, **kw)) == slots


def test_select_asks_each_active_ensemble_for_its_free_slots_runs_first():
    loads = [load(1, ready=2, queued=1, running=2),     # plan 2, run 1
             load(2, state="PAUSED"),                   # nothing
             load(3, ready=0, queued=4),                # run 3 (throttle)
             load(4, ready=4, planning=3, queued=0),    # planning full: nothing
             load(5, ready=1, queued=0)]                # plan 1
    assert policy.select(loads) == [Action(RUN, 1, 1), Action(PLAN, 1, 2), Action(RUN, 3, 3),
                                    Action(PLAN, 5, 1)]
    assert policy.select([]) == []


def test_global_budgets_count_every_busy_ensemble():
    loads = [load(1, planning=1, running=2), load(2, planning=1, state="PAUSED")]
    assert policy.global_budgets(loads, (None, None)) == (None, None)
    assert policy.global_budgets(loads, (3, 2)) == (1, 0)
    assert policy.global_budgets(loads, (1, 10)) == (0, 8)
    assert policy.global_budgets([], (2, 2)) == (2, 2)


def test_within_keeps_the_highest_priority_then_the_oldest():
    candidates = [(0, 5), (3, 9), (3, 2), (1, 1), (-2, 0)]
    assert policy.within(candidates, None) == [(3, 2), (3, 9), (1, 1), (0, 5), (-2, 0)]
    assert policy.within(candidates, 2) == [(3, 2), (3, 9)]
    assert policy.within(candidates, 0) == []
    assert policy.within(candidates, 99) == policy.within(candidates, None)


def test_select_then_within_picks_across_ensembles_by_priority_under_a_global_cap():
    """Each ensemble offers its free slots' worth; the cap keeps the best of all offers."""
    loads = [load(1, max_running=2, running=1, queued=3), load(2, max_running=2, queued=3)]
    queues = {1: [(7, 10), (1, 11), (0, 12)], 2: [(5, 20), (5, 21), (9, 22)]}  # (prio, id)
    offered = [c for a in policy.select(loads) if a.kind == RUN
               for c in queues[a.ensemble_id][:a.count]]
    assert offered == [(7, 10), (5, 20), (5, 21)]
    _, runs = policy.global_budgets(loads, (None, 3))
    assert runs == 2 and policy.within(offered, runs) == [(7, 10), (5, 20)]
