"""`why`: a workflow's place in the queue and what holds it, or the log lines that
show why it failed."""

import json
import os

from beyond_fixtures import move, run_cli, stack, why  # noqa: F401
from pegasus_em.core.states import WorkflowState as W


def test_why_a_ready_workflow_waits_its_turn_behind_a_full_throttle(stack):
    stack.ensemble("q", max_planning=2)
    for name, priority in (("p1", 0), ("p2", 0), ("hi", 5), ("old", 1), ("me", 1), ("lo", 0)):
        stack.submit("q", name, priority=priority)
    move(stack, "q", "p1", W.PLANNING)
    move(stack, "q", "p2", W.PLANNING)
    r = why(stack, "q", "me")
    assert r["position"] == 3  # hi (priority 5), old (same priority, older), then me
    text = r["explanation"]
    assert text.startswith("q.me is READY since ")
    assert "number 3 in the planning queue of q: 2 workflows come first" in text
    assert "The planning throttle of q is full: max_planning is 2 and q.p1, q.p2 are " \
           "PLANNING." in text
    assert r["throttle"] == {"kind": "planning", "limit": 2, "used": 2, "by": ["q.p1", "q.p2"]}
    move(stack, "q", "p1", W.PLAN_FAILED)
    assert "A planning slot is free (1 of 2 in use)" in why(stack, "q", "hi")["explanation"]
    text = why(stack, "q", "me")["explanation"]
    assert "1 of the 2 planning slots is free; the workflows ahead of it take them first" \
        in text


def test_why_names_a_paused_or_held_ensemble_and_a_run_after_time(stack):
    stack.ensemble("p")
    stack.post("/ensembles/p", state="PAUSED")
    stack.submit("p", "w", run_after="2h")
    text = why(stack, "p", "w")["explanation"]
    assert "It is not planned before " in text and "(in 2h" in text
    assert "Ensemble p is PAUSED (requested by user): nothing new is planned until " \
           "`pegasus-em activate p`." in text


def test_why_a_blocked_dependency_and_the_workflows_waiting(stack):
    stack.ensemble("d")
    stack.ensemble("other")
    stack.submit("d", "a")
    stack.submit("other", "x")
    assert stack.submit("d", "b", after="a,other.x")[0] == 201
    move(stack, "d", "a", W.PLANNING, W.PLAN_FAILED, reason="planner exited with code 1")
    r = why(stack, "d", "b")
    assert r["dependencies"] == [{"name": "d.a", "state": "PLAN_FAILED"},
                                 {"name": "other.x", "state": "READY"}]
    assert "It waits for 2 workflows to succeed: d.a (PLAN_FAILED), other.x (READY)." \
        in r["explanation"]
    assert "It is blocked: dependency d.a is PLAN_FAILED; `pegasus-em replan d.a` plans it " \
           "again, and this one follows." in r["explanation"]
    assert "position" not in r
    assert "Workflows that wait for it: d.b." in why(stack, "d", "a")["explanation"]


def test_why_a_failure_quotes_the_log_lines_that_show_it(stack):
    stack.ensemble("f")
    stack.submit("f", "w")
    os.makedirs(os.path.join(stack.ensembles, "f"), exist_ok=True)
    with open(os.path.join(stack.ensembles, "f", "w.log"), "w") as log:
        log.write("2024.01.01 10:00:00 INFO: parsing workflow.yml\n"
                  "2024.01.01 10:00:01 [FATAL ERROR] site catalog: no site 'condorpool'\n"
                  "planning done\n")
    move(stack, "f", "w", W.PLANNING, W.PLAN_FAILED, reason="planner exited with code 1")
    r = why(stack, "f", "w")
    assert r["log"] == ["2024.01.01 10:00:01 [FATAL ERROR] site catalog: no site 'condorpool'"]
    assert ": planner exited with code 1. The log shows: 2024.01.01 10:00:01 [FATAL ERROR]" \
        in r["explanation"]
    assert "`pegasus-em replan f.w` plans it again" in r["explanation"]


_BANNER = ("12/04/26 10:00:00 ******************************************************\n"
           "12/04/26 10:00:00 ** condor_scheduniv_exec.%d.0 (CONDOR_DAGMAN) STARTING UP\n"
           "12/04/26 10:00:00 ** Log last touched time unavailable (No such file or "
           "directory)\n")


_PROGRESS = ("12/04/26 10:00:01 DAG status: 0 (DAG_STATUS_OK)\n"
             "12/04/26 10:00:01 Of 4 nodes total:\n"
             "12/04/26 10:00:01  Done     Pre   Queued    Post   Ready   Un-Ready   Failed\n"
             "12/04/26 10:00:01   ===     ===      ===     ===     ===        ===      ===\n"
             "12/04/26 10:00:01     1       0        1       0       0          2        0\n"
             "12/04/26 10:00:01 0 job proc(s) currently held\n")


def _failed_with_dagman_out(s, text):
    s.ensemble("d")
    s.submit("d", "w")
    submitdir = os.path.join(s.ensembles, "run0001")
    os.makedirs(submitdir)
    with open(os.path.join(submitdir, "w-0.dag.dagman.out"), "w") as f:
        f.write(text)
    move(s, "d", "w", W.PLANNING, W.QUEUED, W.RUNNING, submitdir=submitdir)
    move(s, "d", "w", W.FAILED, reason="DAGMan died (pid 7) without finishing")
    return why(s, "d", "w")


def test_why_quotes_the_last_words_of_a_dagman_that_died(stack):
    """The rescue run died: its last lines, not its progress tables nor the first
    run's failure (which its EXITING line closed)."""
    r = _failed_with_dagman_out(stack, (
        _BANNER % 1 + "12/04/26 10:00:01 ERROR: the following job(s) failed:\n" + _PROGRESS
        + "12/04/26 10:00:02 **** condor_scheduniv_exec.1.0 (condor_DAGMAN) pid 5 EXITING "
          "WITH STATUS 1\n"
        + _BANNER % 2 + "12/04/26 10:05:00 Submitting HTCondor Node sim_ID1 job(s)...\n"
        + "12/04/26 10:05:00 \tassigned HTCondor ID (9.0.0)\n" + _PROGRESS))
    assert r["log"] == ["12/04/26 10:00:00 ** condor_scheduniv_exec.2.0 (CONDOR_DAGMAN) "
                        "STARTING UP",
                        "12/04/26 10:05:00 Submitting HTCondor Node sim_ID1 job(s)...",
                        "12/04/26 10:05:00 assigned HTCondor ID (9.0.0)"]
    assert "The last lines its DAGMan wrote, with no EXITING line after them: " \
        in r["explanation"]


def test_why_quotes_a_dagman_failure_without_its_progress_tables(stack):
    r = _failed_with_dagman_out(stack, (
        _BANNER % 1 + _PROGRESS + "12/04/26 10:00:01 ERROR: the following job(s) failed:\n"
        + _PROGRESS + "12/04/26 10:00:02 **** condor_scheduniv_exec.1.0 (condor_DAGMAN) pid 5 "
                      "EXITING WITH STATUS 1\n"))
    assert r["log"] == ["12/04/26 10:00:01 ERROR: the following job(s) failed:",
                        "12/04/26 10:00:02 **** condor_scheduniv_exec.1.0 (condor_DAGMAN) pid 5 "
                        "EXITING WITH STATUS 1"]
    assert "The log shows: 12/04/26 10:00:01 ERROR" in r["explanation"]


def test_why_on_the_command_line_is_a_wrapped_paragraph(stack, run_cli):
    stack.ensemble("c")
    stack.submit("c", "w")
    code, out, _ = run_cli("why", "c.w")
    assert code == 0 and out.startswith("c.w is READY since ")
    assert all(len(line) <= 78 for line in out.splitlines())
    assert "first in the planning queue" in " ".join(out.split())
    assert json.loads(run_cli("why", "--json", "c.w")[1])["position"] == 1
