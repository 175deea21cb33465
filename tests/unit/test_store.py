"""The sqlite store and the transition table, on real files."""

import ast
import re
import sqlite3
import threading

import pytest

from pegasus_em.core import db as dbmod
from pegasus_em.core import states, store, transitions
from pegasus_em.errors import BadRequest
from pegasus_em.core.ops import Ops
from pegasus_em.core.states import WorkflowState as W


@pytest.fixture
def ops(tmp_path):
    database = dbmod.open_database(str(tmp_path / "em.db"))
    yield Ops(database, str(tmp_path / "ensembles"))
    database.close()


def test_fresh_file_is_migrated_to_the_newest_schema(tmp_path):
    path = str(tmp_path / "em.db")
    dbmod.open_database(path).close()
    conn = sqlite3.connect(path)
    assert conn.execute("PRAGMA user_version").fetchone()[0] == len(dbmod.SCHEMA)
    assert conn.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
    tables = {r[0] for r in conn.execute("SELECT name FROM sqlite_master WHERE type='table'")}
    assert {"ensembles", "workflows", "triggers", "events", "trigger_files"} <= tables
    conn.close()
    dbmod.open_database(path).close()  # reopening is a no-op


def test_a_version_2_file_is_migrated_keeping_its_rows(tmp_path):
    path = str(tmp_path / "em.db")
    conn = sqlite3.connect(path, isolation_level=None)
    for number, script in enumerate(dbmod.SCHEMA[:2]):
        for statement in script.split(";"):
            if statement.strip():
                conn.execute(statement)
        conn.execute("PRAGMA user_version=%d" % (number + 1))
    conn.execute("INSERT INTO ensembles VALUES (1, 'e', 'ACTIVE', 1, 1, 1.0, 1.0)")
    conn.execute("INSERT INTO workflows (ensemble_id, name, state, priority, basedir,"
                 " plan_command, created, updated) VALUES (1, 'w', 'READY', 0, '/', 'x', 1, 1)")
    conn.close()
    database = dbmod.open_database(path)
    with database.read() as c:
        assert c.execute("PRAGMA user_version").fetchone()[0] == len(dbmod.SCHEMA) >= 3
        assert c.execute("SELECT name, trigger_id FROM workflows").fetchall() == [("w", None)]
        assert c.execute("SELECT count(*) FROM trigger_files").fetchone()[0] == 0
    database.close()


def test_newer_schema_is_refused(tmp_path):
    path = str(tmp_path / "em.db")
    conn = sqlite3.connect(path)
    conn.execute("PRAGMA user_version=%d" % (len(dbmod.SCHEMA) + 1))
    conn.close()
    with pytest.raises(dbmod.SchemaTooNew, match="schema version"):
        dbmod.open_database(path)


def test_failed_transaction_leaves_nothing(ops):
    with pytest.raises(RuntimeError):
        with ops.db.write() as conn:
            store.insert_ensemble(conn, "e", "ACTIVE", 1, 1, 1.0)
            raise RuntimeError("boom")
    assert ops.list_ensembles() == []


def test_compare_and_set_loses_to_an_earlier_writer(ops):
    ops.create_ensemble("e")
    w = ops.submit("e", "w", "/tmp", "x")
    with ops.db.write() as conn:
        assert transitions.change_workflow_state(conn, w, W.PLANNING, 2.0, "claimed")
        # `w` is now stale: a second claim from READY must not succeed.
        assert not transitions.change_workflow_state(conn, w, W.PLANNING, 3.0, "claimed again")
    events = ops.history("e", "w")
    assert [(e[4], e[5]) for e in events] == [(None, W.READY), (W.READY, W.PLANNING)]


def test_concurrent_claims_succeed_exactly_once(ops):
    ops.create_ensemble("e")
    w = ops.submit("e", "w", "/tmp", "x")
    wins = []

    def claim():
        with ops.db.write() as conn:
            wins.append(transitions.change_workflow_state(conn, w, W.PLANNING, 2.0, "claim"))

    threads = [threading.Thread(target=claim) for _ in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert sorted(wins) == [False] * 7 + [True]


@pytest.mark.parametrize("old,new,ok", [
    (W.READY, W.PLANNING, True), (W.PLANNING, W.QUEUED, True), (W.PLANNING, W.PLAN_FAILED, True),
    (W.QUEUED, W.RUNNING, True), (W.RUNNING, W.SUCCESSFUL, True), (W.RUNNING, W.FAILED, True),
    (W.PLAN_FAILED, W.READY, True), (W.FAILED, W.QUEUED, True), (W.RUN_FAILED, W.QUEUED, True),
    (W.SUCCESSFUL, W.READY, False), (W.SUCCESSFUL, W.QUEUED, False), (W.READY, W.RUNNING, False),
    (W.READY, W.SUCCESSFUL, False), (W.PLAN_FAILED, W.QUEUED, False), (W.ABORTED, W.ABORTED, False),
])
def test_transition_table(old, new, ok):
    assert (old in states.sources(states.WORKFLOW_TRANSITIONS, new)) == ok


def test_what_users_may_request_the_transition_table_allows():
    for new, olds in states.USER_REQUEST_SOURCES.items():
        assert set(olds) <= set(states.WORKFLOW_TRANSITIONS[new]), new
    assert set(states.USER_REQUEST_SOURCES) == set(states.USER_WORKFLOW_REQUESTS)


def test_every_state_is_reachable_and_table_names_only_known_states():
    for new, olds in states.WORKFLOW_TRANSITIONS.items():
        assert new in W.ALL and set(olds) <= set(W.ALL)
    reachable = {W.READY} | set(states.WORKFLOW_TRANSITIONS)
    assert reachable == set(W.ALL)


def test_states_are_written_only_by_the_compare_and_set_functions():
    """Every change of an ensemble's, workflow's or trigger's state is checked against the
    transition table: in store only the compare-and-set functions write a state (auto-hold
    once wrote HELD with an UPDATE of its own)."""
    with open(store.__file__) as f:
        tree = ast.parse(f.read())
    writers = set()
    for fn in (n for n in tree.body if isinstance(n, ast.FunctionDef)):
        for node in ast.walk(fn):
            if isinstance(node, ast.Constant) and isinstance(node.value, str) and re.search(
                    r"UPDATE (workflows|ensembles|triggers) SET (.*\W)?state =", node.value):
                writers.add(fn.name)
    assert writers == {"set_workflow_state", "set_ensemble_state", "change_trigger_state"}


def test_parse_state_is_case_insensitive_and_strict():
    assert states.parse("held", states.EnsembleState.ALL, "ensemble") == "HELD"
    with pytest.raises(BadRequest, match="one of ACTIVE, PAUSED, HELD"):
        states.parse("STOPPED", states.EnsembleState.ALL, "ensemble")


def test_abort_of_running_workflow_is_recorded_as_a_request(ops):
    ops.create_ensemble("e")
    w = ops.submit("e", "w", "/tmp", "x")
    with ops.db.write() as conn:
        transitions.change_workflow_state(conn, w, W.PLANNING, 2.0, "claimed")
    w = ops.update_workflow("e", "w", state="ABORTED")
    assert w.state == W.PLANNING
    with ops.db.read() as conn:
        assert conn.execute("SELECT abort_requested FROM workflows").fetchone()[0] == 1


def test_wake_is_called_after_changes(tmp_path):
    calls = []
    database = dbmod.open_database(str(tmp_path / "em.db"))
    o = Ops(database, str(tmp_path), wake=lambda: calls.append(1))
    o.create_ensemble("e")
    o.submit("e", "w", "/tmp", "x")
    o.update_ensemble("e", state="PAUSED")
    assert len(calls) == 2
    database.close()


def test_sql_rendered_listing_equals_python_rendering(ops):
    import json
    from pegasus_em.em import wire
    ops.create_ensemble("e")
    for i in range(20):
        ops.submit("e", "w%d" % i, "/tmp", "x", priority=i % 3)
    base = 'http://h:1/"quoted"'
    text = ops.list_workflows_json("e", wire.WORKFLOW_LIST_FIELDS,
                                   wire.workflow_list_prefix(base, "e"))
    assert json.loads(text) == wire.workflow_rows(ops.list_workflow_rows("e"), base)
