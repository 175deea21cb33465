"""Retention: what is kept, for how long, in small transactions, with ids never
given twice and /metrics still right.

`Retention.run(now)` in process on a real sqlite file with real log files and an
explicit clock; a real daemon: tests/integration/test_retention_daemon.py.
"""

import json
import logging
import os
import sqlite3
import stat

import pytest

from conftest import Clock
from pegasus_em.core import db as dbmod
from pegasus_em.core import metrics, store, transitions
from pegasus_em.em.daemon import LogFile
from pegasus_em.core.ops import Ops
from pegasus_em.core.retention import DAY, Retention
from pegasus_em.core.triggers import Triggers

T0 = 1.7e9               # "now" of the tests: 2023-11-14
OLD = T0 - 100 * DAY     # past the default 90 days
RECENT = T0 - 10 * DAY

# The engine's path to each final state.
PATHS = {"SUCCESSFUL": ("PLANNING", "QUEUED", "RUNNING", "SUCCESSFUL"),
         "FAILED": ("PLANNING", "QUEUED", "RUNNING", "FAILED"),
         "PLAN_FAILED": ("PLANNING", "PLAN_FAILED"),
         "ABORTED": ("ABORTED",), "RUNNING": ("PLANNING", "QUEUED", "RUNNING"), "READY": ()}


class Env:
    """A store, its ensembles folder and an Ops whose clock the test sets."""

    def __init__(self, tmp_path):
        self.tmp = tmp_path
        self.db = dbmod.open_database(str(tmp_path / "em.db"))
        self.ensembles = str(tmp_path / "ensembles")
        self.clock = Clock(OLD - DAY)
        self.ops = Ops(self.db, self.ensembles, clock=self.clock)
        self.ops.create_ensemble("e")

    def workflow(self, name, state, at, after=None):
        """A workflow submitted a minute before `at` that reached `state` at `at`, with
        its log and a result file."""
        self.clock.t = at - 60
        self.ops.submit("e", name, "/tmp", "./plan.sh", after=after)
        with self.db.write() as conn:
            w = store.get_workflow(conn, store.get_ensemble(conn, "e"), name)
            for new in PATHS[state]:
                assert transitions.change_workflow_state(conn, w, new, at, "test")
        for suffix in (".log", ".plan.result"):
            path = os.path.join(self.ensembles, "e", name + suffix)
            os.makedirs(os.path.dirname(path), exist_ok=True)
            with open(path, "w") as f:
                f.write("output of %s\n" % name)

    def names(self):
        return [r[3] for r in self.ops.list_workflow_rows("e")]

    def files(self):
        return sorted(os.listdir(os.path.join(self.ensembles, "e")))

    def events(self, **kw):
        return self.ops.history(limit=1000, **kw)

    def retention(self, **kw):
        return Retention(self.db, self.ensembles, clock=Clock(T0), pause=0, **kw)


@pytest.fixture
def env(tmp_path):
    e = Env(tmp_path)
    yield e
    e.db.close()


def test_finished_workflows_go_with_their_events_and_files_unfinished_ones_never(env):
    for name, state, at in (("ok", "SUCCESSFUL", OLD), ("bad", "FAILED", OLD),
                            ("plan", "PLAN_FAILED", OLD), ("stop", "ABORTED", OLD),
                            ("waits", "READY", OLD), ("runs", "RUNNING", OLD),
                            ("fresh", "SUCCESSFUL", RECENT), ("newest", "SUCCESSFUL", OLD)):
        env.workflow(name, state, at)
    kept = ("waits", "runs", "fresh", "newest")
    before = {n: env.ops.history("e", n) for n in kept}
    report = env.retention().run(T0)
    assert report["workflows"] == 4
    # The newest workflow stays however old: SQLite would give its id again.
    assert env.names() == list(kept)
    assert {n: env.ops.history("e", n) for n in kept} == before
    assert env.files() == sorted(n + s for n in kept for s in (".log", ".plan.result"))
    gone = {e[2] for e in env.events() if e[2] is not None} - {
        env.ops.get_workflow("e", n).id for n in kept}
    assert gone == set()
    newest_id = env.ops.get_workflow("e", "newest").id
    env.clock.t = T0
    env.ops.submit("e", "next", "/tmp", "./plan.sh")
    assert env.ops.get_workflow("e", "next").id == newest_id + 1


def test_a_failed_workflow_stays_while_a_kept_one_waits_for_it(env):
    env.workflow("dep", "FAILED", OLD)
    env.workflow("child", "READY", OLD, after="dep")   # blocked: dep is FAILED
    env.workflow("last", "SUCCESSFUL", RECENT)
    env.retention().run(T0)
    assert env.names() == ["dep", "child", "last"]
    with env.db.write() as conn:     # the user aborts the blocked one, long ago
        w = store.get_workflow(conn, store.get_ensemble(conn, "e"), "child")
        transitions.change_workflow_state(conn, w, "ABORTED", OLD, "test")
    env.clock.t = T0
    env.ops.update_ensemble("e", state="PAUSED")   # the newest event is no longer child's
    env.retention().run(T0)          # child goes, then nothing waits for dep: it goes too
    env.retention().run(T0)
    assert env.names() == ["last"]


def test_events_of_ensembles_and_triggers_go_but_the_newest_of_each_stays(env, tmp_path):
    for k, state in enumerate(("PAUSED", "ACTIVE", "HELD", "ACTIVE")):
        env.clock.t = OLD + k
        env.ops.update_ensemble("e", state=state)
    script = str(tmp_path / "wf.sh")
    for name in ("t", "purged"):
        env.ops.create_trigger("e", name, "CRON", script, [], "1h")
        env.ops.stop_trigger("e", name)
    env.ops.stop_trigger("e", "purged", purge=True)
    env.workflow("w", "READY", OLD)   # its events are never removed
    env.clock.t = RECENT
    env.ops.update_ensemble("e", state="PAUSED")
    before = env.ops.history("e", "w")
    env.retention().run(T0)
    t = env.ops.get_trigger("e", "t")
    left = [(e[3], e[4], e[5]) for e in env.events() if e[2] is None]
    assert left == [(t.id, "READY", "STOPPED"), (None, "ACTIVE", "PAUSED")]
    assert env.ops.history("e", "w") == before
    kept = env.events()
    env.retention(keep_days=None).run(T0 + 1000 * DAY)
    assert env.events() == kept


def test_the_newest_event_is_never_removed_so_event_ids_are_never_given_twice(env):
    env.workflow("a", "SUCCESSFUL", OLD)
    env.workflow("b", "SUCCESSFUL", OLD)
    env.workflow("c", "SUCCESSFUL", OLD)   # the newest workflow
    with env.db.write() as conn:           # make a's the newest event: a quiet store
        conn.execute("UPDATE events SET id = (SELECT max(id) + 1 FROM events) WHERE id ="
                     " (SELECT max(id) FROM events WHERE workflow_id = (SELECT id FROM"
                     " workflows WHERE name = 'a'))")
    top = store.last_event_id(env.db._writer)
    env.retention().run(T0)
    assert env.names() == ["a", "c"] and store.last_event_id(env.db._writer) == top
    env.clock.t = T0
    env.ops.update_ensemble("e", state="PAUSED")
    assert env.events()[-1][0] == top + 1


def test_ledger_rows_go_once_the_workflow_ended_and_the_file_is_gone(env, tmp_path):
    inbox = tmp_path / "in"
    inbox.mkdir()
    script = tmp_path / "wf.sh"
    script.write_text("#!/bin/sh\n")
    script.chmod(0o755)
    for name in ("a.dat", "b.dat", "c.dat"):
        (inbox / name).write_text(name)
        os.utime(str(inbox / name), (T0 - 100, T0 - 100))
    env.clock.t = T0
    env.ops.create_trigger("e", "f", "FILE_PATTERN", str(script), [], "1h",
                           file_patterns=[str(inbox / "*.dat")])
    triggers = Triggers(env.ops, clock=env.clock, max_failures=None)
    triggers.tick(T0 + 10)
    (wf,) = env.names()
    rows = lambda: env.db._writer.execute(
        "SELECT count(*) FROM trigger_files WHERE state = 'done'").fetchone()[0]
    assert rows() == 3
    env.retention().run(T0)
    assert rows() == 3                     # its workflow is READY: kept
    with env.db.write() as conn:
        w = store.get_workflow(conn, store.get_ensemble(conn, "e"), wf)
        transitions.change_workflow_state(conn, w, "ABORTED", T0, "test")
    os.link(str(inbox / "processed" / "c.dat"), str(inbox / "c.dat"))  # put back by hand
    env.retention().run(T0)
    assert env.db._writer.execute("SELECT path FROM trigger_files").fetchall() == [
        (str(inbox / "c.dat"),)]


def test_delivered_notifications_go_after_a_week_given_up_later_pending_never(env):
    with env.db.write() as conn:
        store.set_notify_targets(conn, [("webhook", "http://127.0.0.1:9/")])
        for k, (state, days) in enumerate((("sent", 8), ("sent", 6), ("failed", 8),
                                           ("failed", 91), ("pending", 400))):
            at = T0 - days * DAY
            store.enqueue(conn, "workflow.ended", at, workflow=str(k))
            conn.execute("UPDATE outbox SET state = ?, updated = ? WHERE id = "
                         "(SELECT max(id) FROM outbox)", (state, at))
    env.retention().run(T0)
    left = env.db._writer.execute("SELECT state, payload FROM outbox ORDER BY id").fetchall()
    assert [(s, json.loads(p)["workflow"]) for s, p in left] == [
        ("sent", "1"), ("failed", "2"), ("pending", "4")]


def test_a_pass_goes_in_small_transactions(env, monkeypatch):
    """Never a long write lock: 300 workflows go 50 at a time, each batch its own
    transaction, so a submission waits for one batch at most."""
    for k in range(301):
        env.workflow("w%03d" % k, "SUCCESSFUL", OLD)
    batches, writes = [], []
    real_remove, real_write = store.remove_finished_workflows, env.db.write
    monkeypatch.setattr(store, "remove_finished_workflows",
                        lambda *a: batches.append(real_remove(*a)) or batches[-1])
    monkeypatch.setattr(env.db, "write", lambda: writes.append(1) or real_write())
    env.retention(batch=50).run(T0)
    assert [len(b) for b in batches] == [50] * 6 + [0]
    assert len(writes) >= 7 and env.names() == ["w300"]


def test_freed_space_goes_back_to_the_file_system(env):
    for k in range(400):
        env.clock.t = OLD
        env.ops.submit("e", "w%03d" % k, "/tmp", "x" * 20000)
    with env.db.write() as conn:
        conn.execute("UPDATE workflows SET state = 'SUCCESSFUL' WHERE name != 'w399'")
    pages = lambda: env.db._writer.execute("PRAGMA page_count").fetchone()[0]
    full = pages()
    report = env.retention(reserve_pages=16).run(T0)
    assert report["free pages given back"] > full // 2 and pages() < full // 4


def test_a_database_from_before_retention_is_made_able_to_give_space_back(tmp_path):
    path = str(tmp_path / "em.db")
    conn = sqlite3.connect(path, isolation_level=None)
    conn.execute("PRAGMA journal_mode=WAL")
    dbmod.migrate(conn)
    conn.execute("INSERT INTO ensembles (name, state, max_planning, max_running, created,"
                 " updated) VALUES ('old', 'ACTIVE', 1, 1, 0, 0)")
    assert conn.execute("PRAGMA auto_vacuum").fetchone()[0] == 0
    conn.close()
    db = dbmod.open_database(path)
    try:
        with db.read() as c:
            assert c.execute("PRAGMA auto_vacuum").fetchone()[0] == 2
            assert [e.name for e in store.list_ensembles(c)] == ["old"]
    finally:
        db.close()


def test_metrics_keep_their_counts_and_histograms_through_retention(env):
    for k in range(5):
        env.workflow("w%d" % k, "SUCCESSFUL" if k % 2 else "FAILED", OLD)
    scrape = lambda: metrics.render(env.db._writer, (None, None), T0).splitlines()
    before = scrape()
    env.retention().run(T0)
    after = scrape()
    kept = lambda lines: [l for l in lines if l.startswith(("pegasus_em_events_total",
                                                            "pegasus_em_state_seconds"))]
    assert kept(after) == kept(before)
    # w4, the newest, stays
    assert 'pegasus_em_workflows_removed_total{ensemble="e",state="FAILED"} 2' in after
    assert 'pegasus_em_workflows_removed_total{ensemble="e",state="SUCCESSFUL"} 2' in after


def test_the_log_rotates_at_its_size_and_every_file_stays_private(tmp_path):
    path = str(tmp_path / "em-server.log")
    old_umask = os.umask(0o022)
    handler = LogFile(path, 1000, 2)
    logger = logging.getLogger("test_retention.rotation")
    logger.addHandler(handler)
    logger.propagate = False
    try:
        for i in range(100):
            logger.warning("line %03d %s", i, "x" * 40)
    finally:
        logger.removeHandler(handler)
        handler.close()
        os.umask(old_umask)
    assert sorted(os.listdir(str(tmp_path))) == ["em-server.log", "em-server.log.1",
                                                 "em-server.log.2"]
    for name in os.listdir(str(tmp_path)):
        st = os.stat(str(tmp_path / name))
        assert stat.S_IMODE(st.st_mode) == 0o600 and st.st_size <= 1000
    with open(path) as f:
        assert f.read().splitlines()[-1].startswith("line 099")
