"""Time budgets with thousands of workflows: /metrics, `why`, the engine's pick of
eligible workflows through an index, and the WAL kept small by the commits
themselves.  Seconds of set-up each, so not among the unit tests."""

import statistics
import time

from beyond_fixtures import bulk_submit, move, stack, why  # noqa: F401
from pegasus_em.core import db as dbmod
from pegasus_em.core import store
from pegasus_em.core.ops import Ops
from pegasus_em.core.states import WorkflowState as W


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


def test_the_wal_is_copied_back_while_sqlite_does_not_do_it_itself(tmp_path):
    """SQLite's automatic checkpoint is off on the writer (its fsyncs stalled every
    writer behind the lock); the commits themselves must keep the WAL from growing."""
    path = str(tmp_path / "em.db")
    database = dbmod.open_database(path)
    try:
        assert database._writer.execute("PRAGMA wal_autocheckpoint").fetchone()[0] == 0
        ops = Ops(database, str(tmp_path / "ensembles"))
        ops.create_ensemble("e")
        for i in range(30 * dbmod.CHECKPOINT_EVERY):
            ops.submit("e", "w%d" % i, "/tmp", "true")
        wal = (tmp_path / "em.db-wal").stat().st_size
        assert wal < 8 * dbmod.CHECKPOINT_EVERY * 4096 * 4, wal  # not 3,000 commits' worth
    finally:
        database.close()
