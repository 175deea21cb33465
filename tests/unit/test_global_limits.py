"""Global throttles (MAX_PLANNING_TOTAL, MAX_RUNNING_TOTAL) across ensembles."""

from beyond_fixtures import move, why
from pegasus_em import policy
from pegasus_em.model import EnsembleLoad
from pegasus_em.states import WorkflowState as W
from stack import Stack


def load(i, planning=0, running=0, ready=5, queued=5, state="ACTIVE"):
    return EnsembleLoad(i, state, 3, 3, ready, planning, queued, running)


def test_global_budgets_count_every_busy_ensemble():
    loads = [load(1, planning=1, running=2), load(2, planning=1, state="PAUSED")]
    assert policy.global_budgets(loads, (None, None)) == (None, None)
    assert policy.global_budgets(loads, (3, 2)) == (1, 0)
    assert policy.global_budgets(loads, (1, 10)) == (0, 8)


def test_within_keeps_the_highest_priority_then_the_oldest():
    candidates = [(0, 5), (3, 9), (3, 2), (1, 1)]
    assert policy.within(candidates, None) == [(3, 2), (3, 9), (1, 1), (0, 5)]
    assert policy.within(candidates, 2) == [(3, 2), (3, 9)]
    assert policy.within(candidates, 0) == []


def test_why_names_a_full_global_throttle(tmp_path):
    s = Stack(tmp_path, limits=(1, None))
    try:
        s.ensemble("x", max_planning=5)
        s.ensemble("y", max_planning=5)
        s.submit("x", "busy")
        s.submit("y", "me")
        move(s, "x", "busy", W.PLANNING)
        r = why(s, "y", "me")
        assert "The global MAX_PLANNING_TOTAL of 1 is full: x.busy is PLANNING." \
            in r["explanation"]
        assert r["throttle"]["kind"] == "planning_total"
    finally:
        s.close()
