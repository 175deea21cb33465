"""Beyond Pegasus 5.x: history, why, auto-hold, dependencies, run-after, global
throttles, metrics, watch, notifications and import, in process.

Most tests run the real store, Ops, WSGI app and HTTP server in this process
(tests/stack.py), some with the real engine thread planning real (simulated)
workflows; no daemon process is needed for them.  One test at the end runs a
real `pegasus-em server` to check the wiring of the settings.
"""

import json
import os
import re
import statistics
import time

import pytest

from conftest import wait_until
from pegasus_em import cli, fmt, model, store, transitions
from pegasus_em.errors import BadRequest
from pegasus_em.states import WorkflowState as W
from stack import Stack

TERMINAL = ("SUCCESSFUL", "FAILED", "PLAN_FAILED", "RUN_FAILED", "ABORTED")


@pytest.fixture
def stack(tmp_path):
    s = Stack(tmp_path)
    yield s
    s.close()


@pytest.fixture
def engine(tmp_path):
    s = Stack(tmp_path, engine=True, interval=0.5).start_engine()
    yield s
    s.close()


@pytest.fixture
def run_cli(stack, monkeypatch, capsys):
    """cli.main against the stack: -> (exit code, stdout, stderr)."""
    monkeypatch.setenv("PEGASUS_ENV", stack.config_file())
    monkeypatch.setenv("TZ", "UTC")
    time.tzset()

    def run(*argv):
        code = cli.main(["--url", stack.url] + list(argv))
        out = capsys.readouterr()
        return code, out.out, out.err
    yield run
    monkeypatch.delenv("TZ")
    time.tzset()


def move(s, ensemble, name, *path, reason=None, **fields):
    """Walk a workflow through states directly in the store (no engine)."""
    for new in path:
        with s.db.write() as conn:
            w = store.get_workflow(conn, store.get_ensemble(conn, ensemble), name)
            assert transitions.change_workflow_state(conn, w, new, s.ops.now(), reason, **fields), \
                (w.state, new)


TO_SUCCESS = (W.PLANNING, W.QUEUED, W.RUNNING, W.SUCCESSFUL)


# ---- 1. history ------------------------------------------------------------------

def test_events_carry_names_and_page_both_ways(stack):
    stack.ensemble("h")
    for name in ("a", "b", "c"):
        assert stack.submit("h", name)[0] == 201
    move(stack, "h", "a", W.PLANNING, W.PLAN_FAILED, reason="planner exited with code 1")
    events = stack.events("h")
    assert [(e["workflow"], e["old_state"], e["new_state"]) for e in events] == [
        (None, None, "ACTIVE"), ("a", None, "READY"), ("b", None, "READY"),
        ("c", None, "READY"), ("a", "READY", "PLANNING"), ("a", "PLANNING", "PLAN_FAILED")]
    assert all(e["ensemble"] == "h" for e in events)
    ids = [e["id"] for e in events]
    newest = stack.get("/ensembles/h/events?before=%d&limit=2" % (2 ** 31 - 1))
    assert [e["id"] for e in newest] == ids[-2:]  # the newest two, oldest first
    older = stack.get("/ensembles/h/events?before=%d&limit=2" % ids[-2])
    assert [e["id"] for e in older] == ids[-4:-2]
    assert [e["id"] for e in stack.get("/ensembles/h/events?after=%d&limit=2" % ids[1])] == \
        ids[2:4]
    one = stack.get("/ensembles/h/workflows/a/events")
    assert [e["new_state"] for e in one] == ["READY", "PLANNING", "PLAN_FAILED"]
    assert one[-1]["reason"] == "planner exited with code 1"
    stack.ensemble("h2")
    everything = stack.get("/events?after=%d" % ids[-1])
    assert [(e["ensemble"], e["new_state"]) for e in everything] == [("h2", "ACTIVE")]
    assert stack.request("GET", "/ensembles/h/events?before=x")[0] == 400


def test_history_command_prints_a_table_and_pages(stack, run_cli):
    stack.ensemble("h")
    stack.submit("h", "run1")
    move(stack, "h", "run1", W.PLANNING, W.PLAN_FAILED, reason="planner exited with code 2")
    code, out, err = run_cli("history", "h")
    lines = out.splitlines()
    assert code == 0 and lines[0].split() == ["ID", "TIME", "WORKFLOW", "CHANGE", "REASON"]
    assert re.match(r"\d+ +\d{4}-\d\d-\d\d \d\d:\d\d:\d\d UTC +-> ACTIVE +created$", lines[1])
    assert re.search(r"UTC  run1 +PLANNING -> PLAN_FAILED +planner exited with code 2$",
                     lines[-1])
    code, out, _ = run_cli("history", "h.run1")
    assert out.splitlines()[0].split() == ["ID", "TIME", "CHANGE", "REASON"]
    assert len(out.splitlines()) == 4 and "READY -> PLANNING" in out
    code, out, err = run_cli("history", "--limit", "2", "h")
    assert len(out.splitlines()) == 3 and "(more: pegasus-em history h --before" in err
    first = int(out.splitlines()[1].split()[0])
    code, out, err = run_cli("history", "--after", str(first - 1), "--limit", "1", "h")
    assert out.splitlines()[1].split()[0] == str(first) and "--after %d" % first in err
    code, out, _ = run_cli("history", "--json", "h.run1")
    assert [e["new_state"] for e in json.loads(out)] == ["READY", "PLANNING", "PLAN_FAILED"]
    assert run_cli("history", "h.a.b")[0] == 2
    assert run_cli("history", "nope")[0:2] == (1, "ERROR: No such ensemble: nope\n")


def test_history_all_follows_every_page(stack, run_cli, monkeypatch):
    monkeypatch.setattr(cli, "MAX_PAGE", 3)
    stack.ensemble("h")
    for i in range(7):
        stack.submit("h", "w%d" % i)
    code, out, _ = run_cli("history", "--all", "--json", "h")
    assert [e["workflow"] for e in json.loads(out)] == [None] + ["w%d" % i for i in range(7)]


# ---- 2. why ----------------------------------------------------------------------

def why(s, ensemble, name):
    return s.get("/ensembles/%s/workflows/%s/why" % (ensemble, name))


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


def test_why_with_ten_thousand_queued_answers_within_50_ms(stack):
    stack.ensemble("big", max_planning=2)
    bulk_submit(stack, "big", 10000)
    stack.submit("big", "me", priority=-1)
    for name in ("w00000", "w00001"):
        move(stack, "big", name, W.PLANNING)
    times = []
    for _ in range(7):
        started = time.perf_counter()
        r = stack.ops.why("big", "me")
        times.append(time.perf_counter() - started)
    assert r["position"] == 9999 and "is full" in r["explanation"]
    assert statistics.median(times) <= 0.050, times


def bulk_submit(s, ensemble, n, prefix="w"):
    """n READY workflows in one transaction (a benchmark's setup, not the API's)."""
    with s.db.write() as conn:
        e = store.get_ensemble(conn, ensemble)
        now = s.ops.now()
        for i in range(n):
            store.insert_workflow(conn, e, "%s%05d" % (prefix, i), i % 7, "/tmp", '"/bin/true"',
                                  W.READY, now)


def test_why_on_the_command_line_is_a_wrapped_paragraph(stack, run_cli):
    stack.ensemble("c")
    stack.submit("c", "w")
    code, out, _ = run_cli("why", "c.w")
    assert code == 0 and out.startswith("c.w is READY since ")
    assert all(len(line) <= 78 for line in out.splitlines())
    assert "first in the planning queue" in " ".join(out.split())
    assert json.loads(run_cli("why", "--json", "c.w")[1])["position"] == 1


# ---- 3. auto-hold ----------------------------------------------------------------

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


def test_the_engine_holds_after_real_failures_and_plans_nothing_more(engine):
    engine.ensemble("e", max_failures=2)
    for name in ("a", "b", "c"):
        engine.submit("e", name, '"/bin/false"')
    wait_until(lambda: engine.get("/ensembles/e")["state"] == "HELD", 15, message="auto-hold")
    states = {n: engine.state("e", n) for n in "abc"}
    assert states == {"a": "PLAN_FAILED", "b": "PLAN_FAILED", "c": "READY"}
    assert "auto-hold" in engine.events("e")[-1]["reason"]


# ---- 4. dependencies -------------------------------------------------------------

def test_dependencies_are_checked_at_submit(stack):
    stack.ensemble("d")
    stack.ensemble("o")
    stack.submit("d", "a")
    stack.submit("o", "x")
    for after, message in (("nope", "Unknown dependency: d.nope"),
                           ("o.nope", "Unknown dependency: o.nope"),
                           ("zz.a", "Unknown dependency: zz.a"),
                           ("w", "d.w cannot run after itself (a cycle)"),
                           ("a,d.w", "d.w cannot run after itself (a cycle)"),
                           ("bad name", "Invalid ensemble name: bad name")):
        status, _, body = stack.submit("d", "w", after=after)
        assert status == 400 and message in body["message"], (after, body)
    assert stack.request("GET", "/ensembles/d/workflows/w")[0] == 404  # nothing was added
    assert stack.submit("d", "w", after="a, o.x,a")[0] == 201
    w = stack.workflow("d", "w")
    assert w["after"] == [{"name": "d.a", "state": "READY"}, {"name": "o.x", "state": "READY"}]
    assert w["state"] == "READY"


def test_a_failed_dependency_blocks_and_replan_unblocks(stack):
    stack.ensemble("d")
    stack.submit("d", "a")
    stack.submit("d", "b", after="a")
    move(stack, "d", "a", W.PLANNING, W.PLAN_FAILED, reason="planner exited with code 1")
    b = stack.workflow("d", "b")
    assert (b["state"], b["reason"]) == ("READY", "blocked: dependency d.a is PLAN_FAILED")
    assert stack.events("d", "b")[-1]["reason"] == "blocked: dependency d.a is PLAN_FAILED"
    stack.post("/ensembles/d/workflows/a", state="READY")  # replan
    assert stack.workflow("d", "b")["reason"] == "waiting for dependency d.a (READY again)"
    assert eligible(stack, "d") == ["a"]
    move(stack, "d", "a", *TO_SUCCESS)
    assert eligible(stack, "d") == ["b"]
    assert stack.events("d", "b")[-1]["reason"] == "dependencies met (the last: d.a)"
    assert stack.workflow("d", "b")["reason"] is None
    status, _, body = stack.submit("d", "c", after="a")
    assert status == 201 and eligible(stack, "d") == ["b", "c"]  # a already succeeded
    stack.submit("d", "x")
    stack.post("/ensembles/d/workflows/x", state="ABORTED")
    stack.submit("d", "y", after="x")
    y = stack.workflow("d", "y")
    assert y["reason"] == "blocked: dependency d.x is ABORTED"
    assert stack.events("d", "y")[-1]["reason"] == "submitted; blocked: dependency d.x is ABORTED"


def test_a_dependent_stays_blocked_while_another_dependency_is_failed(stack):
    stack.ensemble("d")
    for name in ("a", "b"):
        stack.submit("d", name)
        move(stack, "d", name, W.PLANNING, W.PLAN_FAILED)
    stack.submit("d", "c", after="a,b")
    stack.post("/ensembles/d/workflows/a", state="READY")
    assert stack.workflow("d", "c")["reason"] == "blocked: dependency d.b is PLAN_FAILED"
    stack.post("/ensembles/d/workflows/b", state="READY")
    assert stack.workflow("d", "c")["reason"] == "waiting for dependency d.b (READY again)"
    move(stack, "d", "a", *TO_SUCCESS)
    assert eligible(stack, "d") == ["b"]  # c still waits for b
    move(stack, "d", "b", *TO_SUCCESS)
    assert eligible(stack, "d") == ["c"]


def eligible(s, ensemble):
    with s.db.read() as conn:
        e = store.get_ensemble(conn, ensemble)
        ids = [i for i, _ in store.next_in_queue(conn, e.id, W.READY, 100)]
        return [store.get_workflow_by_id(conn, i).name for i in ids]


def test_the_engine_skips_blocked_workflows_through_an_index(stack):
    stack.ensemble("big")
    stack.submit("big", "gate")
    with stack.db.write() as conn:
        e = store.get_ensemble(conn, "big")
        gate = store.find_workflow(conn, "big", "gate")[0]
        now = stack.ops.now()
        for i in range(10000):
            store.insert_workflow(conn, e, "w%05d" % i, 10, "/tmp", "x", W.READY, now,
                                  after=[gate])
    stack.submit("big", "free", priority=-5)
    with stack.db.read() as conn:
        started = time.perf_counter()
        picked = store.next_in_queue(conn, e.id, W.READY, 5)
        loads = store.ensemble_loads(conn)
        took = time.perf_counter() - started
        plan = " ".join(r[-1] for r in conn.execute(
            "EXPLAIN QUERY PLAN SELECT id, priority FROM workflows WHERE ensemble_id = ? AND "
            "%s AND abort_requested = 0 ORDER BY priority DESC, id LIMIT 5" % store._ELIGIBLE,
            (e.id,)))
    assert [p for _, p in picked] == [0, -5]  # gate and free; none of the 10,000 blocked
    assert [load.ready for load in loads] == [2]
    assert "workflows_eligible" in plan and took < 0.05, (plan, took)


def test_dependencies_across_ensembles_run_in_order_with_the_engine(engine):
    engine.ensemble("first")
    engine.ensemble("then", max_planning=2)
    engine.submit("first", "a", engine.plan_command("pegasus.sim.run.seconds=0.2"))
    engine.submit("then", "b", '"/bin/false"', after="first.a")
    engine.submit("then", "c", '"/bin/false"')
    wait_until(lambda: engine.state("then", "b") in TERMINAL, 30, message="b to finish")
    assert engine.state("first", "a") == "SUCCESSFUL"
    done = [e["time"] for e in engine.events("first", "a") if e["new_state"] == "SUCCESSFUL"]
    planned = [e["time"] for e in engine.events("then", "b") if e["new_state"] == "PLANNING"]
    assert planned[0] >= done[0]
    assert engine.state("then", "c") == "PLAN_FAILED"  # not held back by b


# ---- 5. run-after ----------------------------------------------------------------

@pytest.mark.parametrize("value, expected", [
    ("2h", 1000 + 7200), ("30m", 1000 + 1800), ("1h30m", 1000 + 5400), ("+90s", 1090),
    ("1d", 1000 + 86400), ("2030-01-31T18:00:00+00:00", 1896112800),
    ("2030-01-31T18:00Z", 1896112800), ("1700000000", 1700000000),
])
def test_run_after_values(value, expected):
    assert model.run_after(value, 1000) == expected


@pytest.mark.parametrize("value", ["tomorrow", "2h30", "", "nan", "1e20"])
def test_bad_run_after_is_400(value):
    with pytest.raises(BadRequest):
        model.run_after(value, 1000)


def test_cli_sends_iso_times_as_epoch_and_durations_as_typed(monkeypatch):
    monkeypatch.setenv("TZ", "UTC")
    time.tzset()
    try:
        assert cli.run_after("2030-01-31T18:00") == "1896112800.000"
        assert cli.run_after("2030-01-31T19:00+01:00") == "1896112800.000"
        assert cli.run_after("2h") == "2h"
        with pytest.raises(cli.UsageError):
            cli.run_after("soon")
    finally:
        monkeypatch.delenv("TZ")
        time.tzset()


def test_the_engine_wakes_at_the_run_after_time(tmp_path):
    s = Stack(tmp_path, engine=True, interval=30).start_engine()  # no polling to hide behind
    try:
        s.ensemble("r")
        when = time.time() + 1.0
        assert s.submit("r", "w", '"/bin/false"', run_after="%.3f" % when)[0] == 201
        assert s.workflow("r", "w")["run_after"] == pytest.approx(when, abs=0.01)
        wait_until(lambda: s.state("r", "w") == "PLAN_FAILED", 10, message="planned")
        events = s.events("r", "w")
        released = [e for e in events if e["reason"] == "run-after time reached"]
        planned = [e["time"] for e in events if e["new_state"] == "PLANNING"][0]
        assert released and when <= planned < when + 1.0, (when, events)
    finally:
        s.close()


# ---- 6. global throttles ---------------------------------------------------------

def test_global_planning_cap_across_ensembles(tmp_path):
    s = Stack(tmp_path, engine=True, limits=(2, None))
    try:
        for e in ("g1", "g2"):
            s.ensemble(e, max_planning=3)
            s.post("/ensembles/%s" % e, state="PAUSED")
            for i in range(3):
                s.submit(e, "w%d" % i, '"/bin/sleep" "0.3"', priority=i if e == "g2" else 0)
        s.start_engine()
        for e in ("g1", "g2"):
            s.post("/ensembles/%s" % e, state="ACTIVE")
        wait_until(lambda: all(s.state(e, "w%d" % i) in TERMINAL for e in ("g1", "g2")
                               for i in range(3)), 20, message="all planned")
        marks = sorted((ev["time"], 1 if ev["new_state"] == "PLANNING" else -1)
                       for e in ("g1", "g2") for ev in s.events(e)
                       if "PLANNING" in (ev["new_state"], ev["old_state"])
                       and ev["new_state"] != ev["old_state"])
        level = peak = 0
        for _, step in marks:
            level += step
            peak = max(peak, level)
        assert peak == 2
        text = s.get("/metrics")
        assert 'pegasus_em_global_throttle_limit{kind="planning"} 2' in text
    finally:
        s.close()


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


# ---- 7. metrics ------------------------------------------------------------------

SAMPLE = re.compile(r'^[a-z_]+(\{([a-z_]+="([^"\\]|\\.)*",?)*\})? -?[0-9.e+Inf-]+$')


def test_metrics_are_prometheus_text_and_need_credentials(stack):
    stack.ensemble("m", max_planning=2)
    stack.submit("m", "a")
    stack.submit("m", "b", after="a")
    stack.submit("m", "c", run_after="1h")
    move(stack, "m", "a", *TO_SUCCESS)
    assert stack.request("GET", "/metrics", auth=False)[0] == 401
    status, headers, text = stack.request("GET", "/metrics")
    assert status == 200 and headers["Content-Type"].startswith("text/plain; version=0.0.4")
    for line in text.splitlines():
        assert line.startswith("# HELP ") or line.startswith("# TYPE ") or SAMPLE.match(line), line
    assert 'pegasus_em_workflows{ensemble="m",state="SUCCESSFUL"} 1' in text
    assert 'pegasus_em_workflows{ensemble="m",state="READY"} 2' in text
    assert 'pegasus_em_throttle_limit{ensemble="m",kind="planning"} 2' in text
    assert 'pegasus_em_throttle_used{ensemble="m",kind="running"} 0' in text
    assert 'pegasus_em_workflows_waiting{ensemble="m",cause="run_after"} 1' in text
    assert 'pegasus_em_ensemble_state{ensemble="m",state="ACTIVE"} 1' in text
    for state in ("READY", "PLANNING", "QUEUED", "RUNNING"):
        buckets = [int(v) for v in re.findall(
            r'pegasus_em_state_seconds_bucket\{state="%s",le="[^"]+"\} (\d+)' % state, text)]
        assert buckets and buckets == sorted(buckets) and buckets[-1] == 1, state
        assert 'pegasus_em_state_seconds_count{state="%s"} 1' % state in text
    assert "# TYPE pegasus_em_trigger_lag_seconds histogram" in text


def test_metrics_with_ten_thousand_workflows_within_20_ms(stack):
    for e in ("m1", "m2"):
        stack.ensemble(e)
        bulk_submit(stack, e, 5000)
    times = []
    for _ in range(7):
        started = time.perf_counter()
        text = stack.ops.metrics()
        times.append(time.perf_counter() - started)
    assert 'pegasus_em_workflows{ensemble="m2",state="READY"} 5000' in text
    assert statistics.median(times) <= 0.020, times


# ---- 8. fmt ----------------------------------------------------------------------

def test_status_shows_dependencies_and_run_after_only_when_set():
    base = {"name": "w", "state": "READY"}
    assert "After" not in fmt.status(base) and "Run After" not in fmt.status(base)
    text = fmt.status(dict(base, after=[{"name": "e.a", "state": "FAILED"}], run_after=0))
    assert "After:        e.a (FAILED)" in text and "Run After" not in text
    assert "Run After:    " in fmt.status(dict(base, run_after=1700000000.0))


def test_history_and_import_layouts():
    rows = [{"id": 7, "time": 0, "workflow": None, "trigger": "t", "old_state": "READY",
             "new_state": "RUNNING", "reason": "first firing"}]
    assert fmt.history(rows).splitlines()[1].split()[-6:] == [
        "trigger:t", "READY", "->", "RUNNING", "first", "firing"]
    assert fmt.history([]) == ""
    assert fmt.import_report({"ensembles": ["a"], "workflows": 2, "triggers": 1,
                              "following": ["a.r"], "requeued": [], "skipped": ["x: y"]}) == (
        "Imported 1 ensembles, 2 workflows and 1 triggers.\n"
        "Following (not run again): a.r\nSkipped x: y")


# ---- 8. watch --------------------------------------------------------------------

def api_for(s):
    from stack import PASSWORD, USER
    from pegasus_em import client
    return client.Client(s.url, USER, PASSWORD)


def test_watch_once_prints_plain_tables(stack, run_cli):
    stack.ensemble("w", max_planning=2)
    stack.submit("w", "a")
    stack.submit("w", "b", after="a")
    move(stack, "w", "a", W.PLANNING)
    code, out, _ = run_cli("watch", "--once", "w")
    lines = out.splitlines()
    assert code == 0 and "\x1b" not in out
    assert lines[0].split() == ["ENSEMBLE", "STATE", "READY", "PLAN", "QUEUED", "RUN", "DONE",
                                "FAILED", "ABORTED"]
    assert lines[1].split() == ["w", "ACTIVE", "1", "1/2", "0", "0/1", "0", "0", "0"]
    assert lines[3].split() == ["WORKFLOW", "STATE", "PRIORITY", "FOR", "REASON"]
    assert lines[4].split()[:2] == ["a", "PLANNING"]  # busy first
    assert lines[5].split()[:2] == ["b", "READY"]
    assert run_cli("watch", "--once")[1].count("\n") == 2  # all ensembles, no workflows


def test_watch_without_a_terminal_prints_one_line_per_change(stack):
    import io
    from pegasus_em import watch
    stack.ensemble("w")
    stack.submit("w", "a")
    out = io.StringIO()
    steps = [lambda: move(stack, "w", "a", W.PLANNING, W.PLAN_FAILED, reason="rc 1"),
             lambda: stack.submit("w", "b")]
    watch.run(api_for(stack), "w", 0.01, out=out, tty=False, iterations=2,
              sleep=lambda _: steps.pop(0)())
    lines = out.getvalue().splitlines()
    changes = [line for line in lines if "  w." in line]
    assert [c.split("  ")[1:] for c in changes] == [
        ["w.a", "READY -> PLANNING", "rc 1"], ["w.a", "PLANNING -> PLAN_FAILED", "rc 1"],
        ["w.b", "-> READY", "submitted"]]
    assert re.match(r"\d{4}-\d\d-\d\d \d\d:\d\d:\d\d ", changes[0])


def test_watch_on_a_terminal_redraws_and_highlights_changes(stack):
    import io
    from pegasus_em import watch
    stack.ensemble("w")
    stack.submit("w", "a")
    stack.submit("w", "b")
    out = io.StringIO()
    watch.run(api_for(stack), "w", 0.01, out=out, tty=True, iterations=2,
              sleep=lambda _: move(stack, "w", "a", W.PLANNING))
    screens = out.getvalue().split(watch.CLEAR)[1:]
    assert len(screens) == 2 and watch.REVERSE not in screens[0]
    changed = [line for line in screens[1].splitlines() if line.startswith(watch.REVERSE)]
    assert len(changed) == 1 and "a " in changed[0] and "PLANNING" in changed[0]
    assert out.getvalue().startswith(watch.HIDE_CURSOR)
    assert out.getvalue().endswith(watch.SHOW_CURSOR)


def test_watch_detects_a_terminal_through_a_pty(stack):
    import pty
    import select
    import signal
    import subprocess
    import sys
    stack.ensemble("t")
    stack.submit("t", "a")
    master, slave = pty.openpty()
    env = dict(os.environ, PEGASUS_ENV=stack.config_file(),
               PYTHONPATH=os.path.dirname(os.path.dirname(cli.__file__)))
    proc = subprocess.Popen([sys.executable, "-m", "pegasus_em", "--url", stack.url, "watch",
                             "t", "-n", "0.1"], stdin=slave, stdout=slave, stderr=slave,
                            env=env, close_fds=True)
    os.close(slave)
    seen = b""
    try:
        deadline = time.monotonic() + 15
        while seen.count(b"\x1b[H\x1b[2J") < 2 and time.monotonic() < deadline:
            if select.select([master], [], [], 0.5)[0]:
                seen += os.read(master, 65536)
        proc.send_signal(signal.SIGINT)
        assert proc.wait(10) == 0
    finally:
        if proc.poll() is None:
            proc.kill()
        try:
            while select.select([master], [], [], 0.2)[0]:
                seen += os.read(master, 65536)
        except OSError:
            pass
        os.close(master)
    text = seen.decode("utf-8", "replace")
    assert "pegasus-em watch t" in text and "READY" in text
    assert text.count("\x1b[H\x1b[2J") >= 2 and "\x1b[?25h" in text


# ---- 9. notifications ------------------------------------------------------------

class Webhook:
    """A local HTTP server recording JSON POSTs; the first `fail` answer 500,
    and each answer can be held back `delay` seconds."""

    def __init__(self, fail=0, delay=0.0):
        import http.server
        import threading
        hook = self
        self.fail, self.delay, self.events, self.attempts = fail, delay, [], 0
        self.release = threading.Event()

        class Handler(http.server.BaseHTTPRequestHandler):
            def do_POST(self):
                data = self.rfile.read(int(self.headers["Content-Length"]))
                hook.attempts += 1
                if hook.delay:
                    hook.release.wait(hook.delay)
                ok = hook.attempts > hook.fail
                if ok:
                    hook.events.append(json.loads(data))
                self.send_response(200 if ok else 500)
                self.send_header("Content-Length", "0")
                self.end_headers()

            def log_message(self, *args):
                pass

        self.httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.httpd.daemon_threads = True
        self.url = "http://127.0.0.1:%d/hook" % self.httpd.server_address[1]
        self.thread = threading.Thread(target=self.httpd.serve_forever, args=(0.02,),
                                       daemon=True)
        self.thread.start()

    def close(self):
        self.release.set()
        self.httpd.shutdown()
        self.httpd.server_close()


class SMTPServer:
    """Just enough SMTP (smtpd is gone in 3.12): one thread, messages recorded."""

    def __init__(self):
        import socket
        import threading
        self.sock = socket.socket()
        self.sock.bind(("127.0.0.1", 0))
        self.sock.listen(5)
        self.port = self.sock.getsockname()[1]
        self.messages = []
        self.thread = threading.Thread(target=self._serve, daemon=True)
        self.thread.start()

    def _serve(self):
        while True:
            try:
                conn, _ = self.sock.accept()
            except OSError:
                return
            with conn, conn.makefile("rb") as f:
                self._session(conn, f)

    def _session(self, conn, f):
        conn.sendall(b"220 localhost test SMTP\r\n")
        envelope = {"rcpt": []}
        while True:
            line = f.readline()
            if not line:
                return
            verb = line[:4].upper()
            if verb in (b"EHLO", b"HELO"):
                conn.sendall(b"250 localhost\r\n")
            elif verb == b"MAIL":
                envelope["from"] = line.decode().strip()
                conn.sendall(b"250 OK\r\n")
            elif verb == b"RCPT":
                envelope["rcpt"].append(line.decode().strip())
                conn.sendall(b"250 OK\r\n")
            elif verb == b"DATA":
                conn.sendall(b"354 go ahead\r\n")
                data = b""
                while not data.endswith(b"\r\n.\r\n"):
                    chunk = f.readline()
                    if not chunk:
                        return
                    data += chunk
                envelope["data"] = data.decode("utf-8", "replace")
                self.messages.append(dict(envelope))
                conn.sendall(b"250 queued\r\n")
            elif verb == b"QUIT":
                conn.sendall(b"221 bye\r\n")
                return
            else:
                conn.sendall(b"250 OK\r\n")

    def close(self):
        self.sock.close()


@pytest.fixture
def webhook():
    hook = Webhook()
    yield hook
    hook.close()


def outbox(s):
    with s.db.read() as conn:
        return conn.execute("SELECT kind, channel, target, state, attempts, last_error"
                            " FROM outbox ORDER BY id").fetchall()


def test_ended_workflows_are_posted_and_mailed_with_retries(tmp_path):
    hook, smtp = Webhook(fail=2), SMTPServer()
    s = Stack(tmp_path, targets=[("webhook", hook.url), ("email", "me@example.org")],
              smtp=("127.0.0.1", smtp.port)).start_notifier()
    try:
        s.ensemble("n")
        s.submit("n", "w")
        move(s, "n", "w", W.PLANNING, W.PLAN_FAILED, reason="planner exited with code 1")
        s.ops.wake()
        wait_until(lambda: hook.events and smtp.messages, 10, message="both delivered")
        (event,) = hook.events
        assert {k: event[k] for k in ("event", "ensemble", "workflow", "state", "old_state",
                                      "reason")} == {
            "event": "workflow.ended", "ensemble": "n", "workflow": "w", "state": "PLAN_FAILED",
            "old_state": "PLANNING", "reason": "planner exited with code 1"}
        assert isinstance(event["id"], int) and isinstance(event["time"], float)
        (mail,) = smtp.messages
        assert [r.upper() for r in mail["rcpt"]] == ["RCPT TO:<ME@EXAMPLE.ORG>"]
        assert "<em@test>" in mail["from"]
        assert "Subject: [pegasus-em] n.w PLAN_FAILED" in mail["data"]
        assert "reason: planner exited with code 1" in mail["data"]
        wait_until(lambda: {r[3] for r in outbox(s)} == {"sent"}, 10, message="recorded")
        rows = {r[1]: r for r in outbox(s)}
        assert rows["webhook"][3:5] == ("sent", 3) and rows["email"][3:5] == ("sent", 1)
        assert hook.attempts == 3
        assert 'pegasus_em_notifications{state="sent"} 2' in s.get("/metrics")
    finally:
        s.close()
        hook.close()
        smtp.close()


def test_nothing_is_queued_without_targets(stack):
    stack.ensemble("n")
    stack.submit("n", "w")
    move(stack, "n", "w", W.PLANNING, W.PLAN_FAILED)
    assert outbox(stack) == []


def test_undelivered_notifications_survive_a_restart(tmp_path):
    hook = Webhook(fail=10 ** 6)  # refuses everything until the restart
    s = Stack(tmp_path, targets=[("webhook", hook.url)]).start_notifier()
    try:
        s.ensemble("r", max_failures=1)
        s.submit("r", "w")
        move(s, "r", "w", W.PLANNING, W.PLAN_FAILED)
        s.ops.wake()
        wait_until(lambda: hook.attempts >= 2, 10, message="failed attempts")
    finally:
        s.close()
    pending = [r for r in _rows(tmp_path) if r[3] == "pending"]
    assert sorted(r[0] for r in pending) == ["ensemble.held", "workflow.ended"]
    hook.fail = 0
    s2 = Stack(tmp_path, targets=[("webhook", hook.url)]).start_notifier()
    try:
        wait_until(lambda: len(hook.events) == 2, 10, message="delivered after the restart")
        assert sorted(e["event"] for e in hook.events) == ["ensemble.held", "workflow.ended"]
        held = [e for e in hook.events if e["event"] == "ensemble.held"][0]
        assert held["ensemble"] == "r" and held["state"] == "HELD" and "auto-hold" in held["reason"]
        wait_until(lambda: {r[3] for r in outbox(s2)} == {"sent"}, 10, message="recorded")
    finally:
        s2.close()
        hook.close()


def _rows(base):
    import sqlite3
    conn = sqlite3.connect(os.path.join(str(base), "em.db"))
    try:
        return conn.execute("SELECT kind, channel, target, state FROM outbox").fetchall()
    finally:
        conn.close()


def test_a_notification_that_keeps_failing_is_given_up(tmp_path):
    s = Stack(tmp_path, targets=[("webhook", "http://127.0.0.1:9/nothing-listens")])
    try:
        s.notifier.max_attempts = 3
        s.ensemble("g")
        s.submit("g", "w")
        s.post("/ensembles/g/workflows/w", state="ABORTED")
        for _ in range(3):
            s.notifier.tick(time.time() + 3600)
        ((kind, _, _, state, attempts, error),) = outbox(s)
        assert (kind, state, attempts) == ("workflow.ended", "failed", 3)
        assert "refused" in error.lower() or "URLError" in error
    finally:
        s.close()


def test_a_slow_webhook_never_holds_up_the_engine(tmp_path):
    hook = Webhook(delay=30)
    s = Stack(tmp_path, engine=True, targets=[("webhook", hook.url)])
    s.start_engine().start_notifier()
    try:
        s.ensemble("slow", max_planning=4)
        started = time.monotonic()
        for i in range(4):
            s.submit("slow", "w%d" % i, '"/bin/false"')
        wait_until(lambda: all(s.state("slow", "w%d" % i) == "PLAN_FAILED" for i in range(4)),
                   10, message="all failed")
        assert time.monotonic() - started < 5
        assert hook.attempts >= 1 and not hook.events  # the sender is stuck in the first
    finally:
        hook.close()
        s.close()


def test_a_failing_trigger_is_notified_once_then_when_it_fails(tmp_path, webhook):
    from pegasus_em.triggers import Triggers
    s = Stack(tmp_path, targets=[("webhook", webhook.url)])
    try:
        s.ensemble("t")
        s.post("/ensembles/t/triggers/cron", trigger="nightly", interval="10s",
               workflow_script="/no/such/script.sh", workflow_args="[]")
        trig = Triggers(s.ops, max_failures=3)
        t0 = time.time()
        for k in range(3):
            trig.tick(t0 + 10 * k + 11)
        kinds = [(json.loads(p)["failures"], json.loads(p)["state"]) for p, in
                 _payloads(s, "trigger.failed")]
        assert kinds == [(1, "RUNNING"), (3, "FAILED")]
        s.notifier.tick(t0 + 100)  # queued at the (explicit) firing times
        assert [e["trigger"] for e in webhook.events] == ["nightly", "nightly"]
        assert "does not exist" in webhook.events[0]["error"]
        lag = re.search(r"pegasus_em_trigger_lag_seconds_count (\d+)", s.get("/metrics"))
        assert lag and int(lag.group(1)) == 3
    finally:
        s.close()


def _payloads(s, kind):
    with s.db.read() as conn:
        return conn.execute("SELECT payload FROM outbox WHERE kind = ? ORDER BY id",
                            (kind,)).fetchall()


# ---- 10. import from Pegasus 5.x -------------------------------------------------

PEGASUS_DDL = """
CREATE TABLE dbversion (id INTEGER NOT NULL PRIMARY KEY AUTOINCREMENT, version_number INTEGER,
  version VARCHAR(50) NOT NULL, version_timestamp INTEGER NOT NULL);
CREATE TABLE ensemble (id INTEGER NOT NULL, name VARCHAR(100) NOT NULL,
  created DATETIME NOT NULL, updated DATETIME NOT NULL, state VARCHAR(6) NOT NULL,
  max_running INTEGER NOT NULL, max_planning INTEGER NOT NULL, username VARCHAR(100) NOT NULL,
  PRIMARY KEY (id), CONSTRAINT "UNIQUE_ENSEMBLE" UNIQUE (name, username));
CREATE TABLE ensemble_workflow (id INTEGER NOT NULL, ensemble_id INTEGER NOT NULL,
  name VARCHAR(100) NOT NULL, basedir VARCHAR(512) NOT NULL, created DATETIME NOT NULL,
  updated DATETIME NOT NULL, state VARCHAR(11) NOT NULL, priority INTEGER NOT NULL,
  wf_uuid VARCHAR(36), submitdir VARCHAR(512), plan_command VARCHAR(1024) NOT NULL,
  PRIMARY KEY (id), FOREIGN KEY(ensemble_id) REFERENCES ensemble (id),
  CONSTRAINT "UNIQUE_ENSEMBLE_WORKFLOW" UNIQUE (ensemble_id, name));
CREATE TABLE "trigger" (id INTEGER NOT NULL, ensemble_id INTEGER NOT NULL,
  name VARCHAR(100) NOT NULL, state VARCHAR(7) NOT NULL, workflow TEXT NOT NULL, args TEXT,
  type VARCHAR(12) NOT NULL, PRIMARY KEY (id), FOREIGN KEY(ensemble_id) REFERENCES ensemble (id),
  CONSTRAINT "UNIQUE_TRIGGER" UNIQUE (ensemble_id, name));
INSERT INTO dbversion VALUES (1, 14, '14', 1677911024);
"""


def sim_plan(s, basedir, *knobs):
    """Plan the example with the simulator -> (planner output, submit dir)."""
    import subprocess
    os.makedirs(basedir, exist_ok=True)
    out = subprocess.run(["/bin/sh", "-c", s.plan_command(*knobs)], cwd=basedir, env=s.env,
                         stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                         timeout=60).stdout
    return out, re.search(r"pegasus-run +(\S+)", out).group(1)


def pegasus_db(path, ensembles, workflows, triggers=()):
    import sqlite3
    conn = sqlite3.connect(path)
    conn.executescript(PEGASUS_DDL)
    conn.executemany("INSERT INTO ensemble VALUES (?, ?, ?, ?, ?, ?, ?, ?)", ensembles)
    conn.executemany("INSERT INTO ensemble_workflow VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
                     workflows)
    conn.executemany('INSERT INTO "trigger" VALUES (?, ?, ?, ?, ?, ?, ?)', triggers)
    conn.commit()
    conn.close()


def test_import_takes_over_without_replanning_what_runs(tmp_path, monkeypatch, capsys):
    import subprocess
    s = Stack(tmp_path / "em", engine=True).start_engine()
    try:
        s.ensemble("taken")
        work = str(tmp_path / "work")
        _, running = sim_plan(s, work + "/run1", "pegasus.sim.run.seconds=1")
        subprocess.run(["pegasus-run", running], env=s.env, stdout=subprocess.DEVNULL,
                       stderr=subprocess.DEVNULL, check=True, timeout=60)
        planned_out, planned = sim_plan(s, work + "/p1")
        os.makedirs(os.path.join(s.ensembles, "old"))
        with open(os.path.join(s.ensembles, "old", "p1.log"), "w") as f:
            f.write(planned_out)  # 5.x's planner log, where the manager finds it
        t = "2023-03-04 12:00:00.500000"
        cmd = '"/bin/true"'
        path = str(tmp_path / "workflow.db")
        pegasus_db(path, [
            (1, "old", t, t, "PAUSED", 3, 2, "alice"), (2, "taken", t, t, "ACTIVE", 1, 1, "alice"),
            (3, "bad name", t, t, "ACTIVE", 1, 1, "alice")], [
            (1, 1, "r1", work, t, t, "READY", 5, None, None, cmd),
            (2, 1, "p1", work + "/p1", t, t, "PLANNING", 0, None, None, cmd),
            (3, 1, "p2", work, t, t, "PLANNING", 0, None, None, cmd),
            (4, 1, "q1", work, t, t, "QUEUED", 0, None, None, cmd),
            (5, 1, "run1", work + "/run1", t, t, "RUNNING", 0, None, running, cmd),
            (6, 1, "f1", work, t, t, "FAILED", 0, "u-f1", "/gone/submit", cmd),
            (7, 1, "s1", work, t, t, "SUCCESSFUL", 0, "u-s1", "/gone/s1", cmd),
            (8, 2, "x", work, t, t, "READY", 0, None, None, cmd)], [
            (1, 1, "nightly", "READY", json.dumps({"script": "/bin/true", "args": ["-x"]}),
             json.dumps({"interval": 3600, "timeout": None}), "CRON"),
            (2, 1, "files", "STOPPED", json.dumps({"script": "/bin/true", "args": []}),
             json.dumps({"interval": "30s", "file_patterns": ["/in/*.dat"]}), "FILE_PATTERN"),
            (3, 1, "rel", "READY", json.dumps({"script": "gen.sh", "args": []}),
             json.dumps({"interval": 60}), "CRON")])
        monkeypatch.setenv("PEGASUS_ENV", s.config_file())
        assert cli.main(["--url", s.url, "import", "--db", path]) == 0
        out = capsys.readouterr().out
        assert out.splitlines()[:3] == [
            "Imported 1 ensembles, 7 workflows and 2 triggers.",
            "Following (not run again): old.run1",
            "To be planned again (no submit dir found): old.p2, old.q1"]
        assert "Skipped ensemble taken: an ensemble of that name exists; skipped (with its 1 " \
               "workflows and 0 triggers)" in out
        assert "Skipped ensemble bad name: Invalid ensemble name" in out
        assert "Skipped trigger old.rel: its workflow script is not an absolute path" in out

        e = s.get("/ensembles/old")
        assert (e["state"], e["max_planning"], e["max_running"]) == ("PAUSED", 2, 3)
        assert e["created"] == 1677931200.5
        states = {w["name"]: w["state"] for w in s.get("/ensembles/old/workflows")}
        assert {k: v for k, v in states.items() if k != "run1"} == {
            "r1": "READY", "p1": "QUEUED", "p2": "READY", "q1": "READY", "f1": "FAILED",
            "s1": "SUCCESSFUL"}
        assert s.workflow("old", "p1")["submitdir"] == planned
        assert s.workflow("old", "f1")["submitdir"] == "/gone/submit"  # rerun still works
        w = wait_until(lambda: (lambda w: w if w["state"] in TERMINAL else None)(
            s.workflow("old", "run1")), 30, message="run1 followed to its end")
        assert w["state"] == "SUCCESSFUL" and w["submitdir"] == running
        dagman_out = [n for n in os.listdir(running) if n.endswith(".dagman.out")][0]
        with open(os.path.join(running, dagman_out)) as f:
            assert f.read().count("(CONDOR_DAGMAN) STARTING UP") == 1  # never run again
        assert [ev["new_state"] for ev in s.events("old", "run1")] == ["RUNNING", "SUCCESSFUL"]
        assert "imported from Pegasus 5.x as RUNNING" in s.events("old", "run1")[0]["reason"]
        trig = {t["name"]: t for t in s.get("/ensembles/old/triggers")}
        assert trig["nightly"]["state"] == "READY"
        assert trig["nightly"]["workflow"] == {"script": "/bin/true", "args": ["-x"]}
        assert trig["files"]["state"] == "STOPPED"
        assert trig["files"]["args"] == {"interval": 30, "timeout": None,
                                         "file_patterns": ["/in/*.dat"]}
        assert s.state("old", "p1") == "QUEUED"  # the ensemble is PAUSED: nothing started
        assert cli.main(["--url", s.url, "import", "--db", path]) == 0  # again: all skipped
        assert capsys.readouterr().out.startswith("Imported 0 ensembles")
    finally:
        s.close()


def test_import_errors(stack, run_cli, tmp_path):
    code, _, err = run_cli("import", "--db", str(tmp_path / "none.db"))
    assert code == 1 and "No Pegasus database at" in err
    other = tmp_path / "other.db"
    import sqlite3
    sqlite3.connect(str(other)).execute("CREATE TABLE t (x)").connection.close()
    code, _, err = run_cli("import", "--db", str(other))
    assert code == 1 and "not a Pegasus 5.x workflow.db" in err
    status, _, body = stack.request("POST", "/import", json_body={"ensembles": "x"})
    assert status == 400 and "must be a JSON list" in body["message"]


# ---- the real daemon: settings wired through ----------------------------------------

def test_a_real_daemon_wires_notifications_auto_hold_and_global_limits(user, webhook):
    from conftest import Daemon
    user.configure(extra="EM_INTERVAL = 0.5\nMAX_PLANNING_TOTAL = 1\nNOTIFY_WEBHOOK = %r\n"
                   % webhook.url)
    d = Daemon(user).start()
    try:
        assert d.cli("create", "--max-failures", "1", "e").returncode == 0
        assert d.cli("submit", "e.w", "/bin/false").returncode == 0
        wait_until(lambda: len(webhook.events) == 2, 15, message="two notifications")
        assert [e["event"] for e in webhook.events] == ["workflow.ended", "ensemble.held"]
        history = d.cli("history", "e")
        assert history.returncode == 0 and "ACTIVE -> HELD" in history.stdout
        why_ = d.cli("why", "e.w")
        assert why_.returncode == 0 and "Ensemble e is HELD (auto-hold" in why_.stdout
        text = wait_until(lambda: (lambda t: t if 'pegasus_em_notifications{state="sent"} 2'
                                   in t else None)(d.request("GET", "/metrics")[2]), 10,
                          message="both recorded as sent")
        assert 'pegasus_em_global_throttle_limit{kind="planning"} 1' in text
    finally:
        d.kill()


def test_a_version_3_file_is_migrated_and_its_ready_workflows_stay_eligible(tmp_path):
    import sqlite3
    from pegasus_em import db as dbmod
    path = str(tmp_path / "em.db")
    conn = sqlite3.connect(path, isolation_level=None)
    for number, script in enumerate(dbmod.SCHEMA[:3]):
        for statement in script.split(";"):
            if statement.strip():
                conn.execute(statement)
        conn.execute("PRAGMA user_version=%d" % (number + 1))
    conn.execute("INSERT INTO ensembles VALUES (1, 'e', 'ACTIVE', 1, 1, 1.0, 1.0)")
    conn.execute("INSERT INTO workflows (ensemble_id, name, state, priority, basedir,"
                 " plan_command, created, updated) VALUES (1, 'w', 'READY', 0, '/', 'x', 1, 7)")
    conn.close()
    database = dbmod.open_database(path)
    try:
        with database.read() as c:
            assert c.execute("SELECT state_since, deps_pending, deferred FROM workflows"
                             ).fetchall() == [(7.0, 0, 0)]
            assert [i for i, _ in store.next_in_queue(c, 1, W.READY, 5)] == [1]
            e = store.get_ensemble(c, "e")
            assert (e.max_failures, e.failure_streak) == (0, 0)
    finally:
        database.close()
