"""Auto-hold: failures in a row hold the ensemble (max_failures)."""

from beyond_fixtures import TO_SUCCESS, move, run_cli, stack, why  # noqa: F401
from pegasus_em.core.states import WorkflowState as W


def test_failures_in_a_row_hold_the_ensemble_and_a_success_resets_the_count(stack):
    stack.ensemble("a", max_failures=2)
    assert stack.get("/ensembles/a")["max_failures"] == 2
    for name in ("f1", "ok", "f2", "f3", "next"):
        stack.submit("a", name)
    move(stack, "a", "f1", W.PLANNING, W.PLAN_FAILED, reason="planner exited with code 1")
    assert stack.get("/ensembles/a")["failure_streak"] == 1
    move(stack, "a", "ok", *TO_SUCCESS)
    assert stack.get("/ensembles/a")["failure_streak"] == 0
    move(stack, "a", "f2", W.PLANNING, W.QUEUED, W.RUN_FAILED, reason="pegasus-run exited")
    assert stack.get("/ensembles/a")["state"] == "ACTIVE"
    move(stack, "a", "f3", W.PLANNING, W.QUEUED, W.RUNNING, W.FAILED, reason="DAG status: 1")
    e = stack.get("/ensembles/a")
    assert (e["state"], e["failure_streak"]) == ("HELD", 0)
    held = stack.events("a")[-1]
    assert held["workflow"] is None and held["new_state"] == "HELD"
    assert held["reason"] == ("auto-hold after 2 failed workflows in a row (max_failures); "
                              "the last: a.f3 FAILED, DAG status: 1")
    assert "Ensemble a is HELD (auto-hold after 2" in why(stack, "a", "next")["explanation"]


def test_max_failures_is_set_by_config_and_validated(stack, run_cli):
    stack.ensemble("m")
    code, out, _ = run_cli("config", "m", "--max-failures", "3")
    assert (code, out) == (0, "Max Planning: 1\nMax Running: 1\nMax Failures: 3\n")
    assert run_cli("config", "-P", "2", "m")[1] == "Max Planning: 2\nMax Running: 1\n"
    status, _, body = stack.request("POST", "/ensembles/m", {"max_failures": "-1"})
    assert status == 400 and "max_failures" in body["message"]
    assert stack.get("/ensembles/m")["max_failures"] == 3
    assert run_cli("create", "--max-failures", "4", "m2")[0] == 0
    assert stack.get("/ensembles/m2")["max_failures"] == 4
