"""Global throttles (MAX_PLANNING_TOTAL, MAX_RUNNING_TOTAL) across ensembles, as `why`
names them (the budgets themselves: test_policy.py)."""

from beyond_fixtures import move, why
from pegasus_em.core.states import WorkflowState as W
from stack import Stack


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
