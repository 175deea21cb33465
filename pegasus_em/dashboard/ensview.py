"""The ensemble manager as the dashboard shows it, read from the user's
`~/.pegasus/em.db` through a read-only connection (the daemon stays the only
writer; actions go through it, see dashboard.py).

Adds what the API does not say: how full each ensemble's throttles are, the
queue order the engine follows, each workflow's last event, and why a waiting
workflow waits.  The SQL is `store`'s and the place in the queue and the
reasons are `explain`'s, so the dashboard and `pegasus-em why` agree.
"""

import os
import threading
import time

from ..core import db as emdb
from ..core import explain, store
from ..errors import EMError
from .masterdb import Connections, Unavailable
from ..owned import reader_uid
from ..core.states import TriggerState, WorkflowState

DB_NAME = "em.db"
W = WorkflowState
MAX_EVENTS = 1000
NEWEST = 2 ** 63 - 1  # an event id above any: the newest events come before it
# MAX_PLANNING_TOTAL and MAX_RUNNING_TOTAL are the daemon's settings, not in em.db:
# the dashboard cannot know them, and says what the ensembles' own throttles do.
NO_GLOBAL_LIMITS = (None, None)


class EMSchemaProblem(EMError):
    status = 200


def em_path(home):
    return os.path.join(home, ".pegasus", DB_NAME)


class Snapshot:
    """One read transaction on em.db, begun through the handle (as its owner: the
    statements inside open no file)."""

    def __init__(self, handle):
        self.handle = handle
        self.conn = handle.conn

    def __enter__(self):
        self.conn.execute("BEGIN")
        self.handle.execute("SELECT count(*) FROM sqlite_master").fetchone()
        return self.conn

    def __exit__(self, *exc):
        self.conn.execute("COMMIT")


class Ensembles:
    def __init__(self, conns=None):
        self.conns = conns or Connections()
        self._local = threading.local()

    def open(self, home):
        """A read-only handle on em.db; Unavailable when there is none, EMSchemaProblem when
        its schema is not the one this code knows."""
        handle = self.conns.get(em_path(home), "Ensemble manager database", reader_uid(home))
        version = handle.execute("PRAGMA user_version").fetchone()[0]
        if version < len(emdb.SCHEMA):
            raise EMSchemaProblem("%s has schema version %d, older than this dashboard reads "
                                  "(%d): start `pegasus-em server` once to upgrade it"
                                  % (em_path(home), version, len(emdb.SCHEMA)))
        if version > len(emdb.SCHEMA):
            raise EMSchemaProblem("%s has schema version %d, newer than this dashboard knows "
                                  "(%d): upgrade pegasus-service"
                                  % (em_path(home), version, len(emdb.SCHEMA)))
        return handle

    # ---- ensembles -------------------------------------------------------------------

    def ensembles(self, home):
        """Every ensemble with its counts per state, throttle use and triggers."""
        handle = self.open(home)
        with Snapshot(handle) as conn:
            ensembles = store.list_ensembles(conn)
            counts = store.workflow_counts(conn)
            triggers = store.trigger_states(conn)
        return [self._summary(e, counts.get(e.id, {}), triggers.get(e.id, {})) for e in ensembles]

    @staticmethod
    def _summary(e, counts, triggers):
        return {"id": e.id, "name": e.name, "state": e.state, "max_planning": e.max_planning,
                "max_running": e.max_running, "created": e.created, "updated": e.updated,
                "planning": counts.get(W.PLANNING, 0), "running": counts.get(W.RUNNING, 0),
                "counts": {s: counts.get(s, 0) for s in W.ALL}, "workflows": sum(counts.values()),
                "triggers": triggers, "live_triggers": sum(n for s, n in triggers.items()
                                                           if s in TriggerState.LIVE)}

    def ensemble(self, home, name, limit=200, offset=0):
        """An ensemble, its workflows in queue order (a page of them) and its triggers."""
        handle = self.open(home)
        now = time.time()
        with Snapshot(handle) as conn:
            e = store.get_ensemble(conn, name)
            counts = store.count_workflows(conn, e)
            page = store.queue_page(conn, e.id, limit, offset)
            ids = [w.id for w in page]
            marks, last = store.workflow_marks(conn, ids), store.last_events(conn, ids)
            workflows = [queue_row(conn, e, w, marks[w.id], last.get(w.id), now) for w in page]
            triggers = store.list_triggers(conn, e)
            submitted = store.trigger_workflow_counts(conn, e.id)
        return {"ensemble": self._summary(e, counts, {}), "workflows": workflows,
                "total": sum(counts.values()),
                "triggers": [dict(trigger_dict(t), workflow_count=submitted.get(t.id, 0))
                             for t in triggers]}

    def workflow(self, home, ensemble, name):
        handle = self.open(home)
        with Snapshot(handle) as conn:
            e = store.get_ensemble(conn, ensemble)
            w = store.get_workflow(conn, e, name)
            counts = store.count_workflows(conn, e)
            marks = store.workflow_marks(conn, [w.id])[w.id]
            events = store.list_events(conn, e.id, w.id, 0, MAX_EVENTS)
            wf = queue_row(conn, e, w, marks, events[-1] if events else None, time.time())
        wf["log"] = os.path.join(home, ".pegasus", "ensembles", w.ensemble, w.name + ".log")
        return {"ensemble": self._summary(e, counts, {}), "workflow": wf,
                "events": [event_dict(r) for r in events]}

    def trigger(self, home, ensemble, name):
        handle = self.open(home)
        with Snapshot(handle) as conn:
            e = store.get_ensemble(conn, ensemble)
            t = store.get_trigger(conn, e, name)
            submitted = store.trigger_workflows(conn, t.id)
            events = store.list_events(conn, trigger_id=t.id, before=NEWEST, limit=MAX_EVENTS)
        out = trigger_dict(t)
        out["workflows"] = [{"name": n, "state": s} for n, s in submitted[-MAX_EVENTS:]]
        out["workflow_count"] = len(submitted)
        return {"ensemble": {"name": e.name, "state": e.state}, "trigger": out,
                "events": [event_dict(r) for r in events]}

    def by_uuid(self, home):
        """wf_uuid -> the ensemble workflow that planned it, for every workflow the
        ensemble manager planned ({} without an em.db): the workflow list names runs by
        it, and shows the planned ones that no DAGMan started.  Kept by this thread until
        the daemon commits again (the list is polled); callers must not change it."""
        try:
            handle = self.open(home)
        except (Unavailable, EMSchemaProblem):
            return {}
        version = handle.data_version()
        cached = getattr(self._local, "planned", None)
        if cached and cached[0] is handle and cached[1] == version:
            return cached[2]
        rows = store.planned_workflows(handle)
        planned = {r[3]: {"ensemble": r[0], "name": r[1], "em_state": r[2], "wf_uuid": r[3],
                          "submit_dir": r[4], "created": r[5], "updated": r[6], "reason": r[7]}
                   for r in rows}
        self._local.planned = (handle, version, planned)
        return planned


def queue_row(conn, e, w, marks, event, now):
    """A workflow as the queue shows it: its fields, its last event, and (from
    `explain`) its place in the queue and what it waits for."""
    abort_requested, trigger = marks
    position, waiting = explain.waiting(conn, e, w, NO_GLOBAL_LIMITS, now, abort_requested)
    wf = workflow_dict(w)
    wf.update(abort_requested=abort_requested, trigger=trigger, position=position,
              waiting=waiting, last_event=event_dict(event) if event else None)
    return wf


def workflow_dict(w):
    """A model.Workflow as a dict of its fields."""
    out = w._asdict()
    out.pop("ensemble_id", None)
    return out


def event_dict(r):
    return {"id": r[0], "time": r[1], "workflow_id": r[2], "trigger_id": r[3], "old_state": r[4],
            "new_state": r[5], "reason": r[6]}


def trigger_dict(t):
    live = t.state in TriggerState.LIVE
    return {"name": t.name, "type": t.type, "state": t.state, "script": t.script,
            "args": list(t.args), "interval": t.interval, "timeout": t.timeout,
            "file_patterns": list(t.file_patterns),
            "basedir": t.basedir, "created": t.created, "updated": t.updated,
            "next_fire": t.next_fire if live else None, "deadline": t.deadline,
            "fire_count": t.fire_count, "failures": t.failures, "last_error": t.last_error,
            "failing": bool(t.failures) and live, "first_error": t.first_error,
            "first_failure": t.first_failure, "last_failure": t.last_failure}
