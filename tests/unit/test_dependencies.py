"""Dependencies between workflows (`after`): checked at submit, a failed one blocks
its dependents, which the engine then skips."""

from beyond_fixtures import TO_SUCCESS, move, stack  # noqa: F401
from pegasus_em import fmt
from pegasus_em.core import store
from pegasus_em.core.states import WorkflowState as W


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


def test_a_version_3_file_is_migrated_and_its_ready_workflows_stay_eligible(tmp_path):
    import sqlite3
    from pegasus_em.core import db as dbmod
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


def test_status_shows_dependencies_and_run_after_only_when_set():
    base = {"name": "w", "state": "READY"}
    assert "After" not in fmt.status(base) and "Run After" not in fmt.status(base)
    text = fmt.status(dict(base, after=[{"name": "e.a", "state": "FAILED"}], run_after=0))
    assert "After:        e.a (FAILED)" in text and "Run After" not in text
    assert "Run After:    " in fmt.status(dict(base, run_after=1700000000.0))
