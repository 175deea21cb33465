"""The ensemble manager as the dashboard shows it, read from the user's
`~/.pegasus/em.db` through a read-only connection (the daemon stays the only
writer; actions go through it, see dashboard.py).

Adds what the API does not say: how full each ensemble's throttles are, the
queue order the engine follows (higher priority first, then oldest), each
workflow's last event, and why a waiting workflow waits.
"""

import os
import threading
import time

from . import db as emdb
from . import store
from .model import Workflow
from .errors import EMError
from .masterdb import Connections, Unavailable
from .owned import reader_uid
from .states import EnsembleState, WorkflowState

DB_NAME = "em.db"
W = WorkflowState
BUSY = (W.PLANNING, W.RUNNING)
WAITING = (W.READY, W.QUEUED)
MAX_EVENTS = 1000


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
            counts = {}
            for eid, state, n in conn.execute("SELECT ensemble_id, state, count(*) FROM workflows "
                                              "GROUP BY ensemble_id, state"):
                counts.setdefault(eid, {})[state] = n
            triggers = {}
            for eid, state, n in conn.execute("SELECT ensemble_id, state, count(*) FROM triggers "
                                              "GROUP BY ensemble_id, state"):
                triggers.setdefault(eid, {})[state] = n
        return [self._summary(e, counts.get(e.id, {}), triggers.get(e.id, {})) for e in ensembles]

    @staticmethod
    def _summary(e, counts, triggers):
        return {"id": e.id, "name": e.name, "state": e.state, "max_planning": e.max_planning,
                "max_running": e.max_running, "created": e.created, "updated": e.updated,
                "planning": counts.get(W.PLANNING, 0), "running": counts.get(W.RUNNING, 0),
                "counts": {s: counts.get(s, 0) for s in W.ALL}, "workflows": sum(counts.values()),
                "triggers": triggers, "live_triggers": sum(n for s, n in triggers.items()
                                                           if s in ("READY", "RUNNING"))}

    def ensemble(self, home, name, limit=200, offset=0):
        """An ensemble, its workflows in queue order (a page of them) and its triggers."""
        handle = self.open(home)
        with Snapshot(handle) as conn:
            e = store.get_ensemble(conn, name)
            counts = store.count_workflows(conn, e)
            rows = store.list_workflow_rows(conn, e)
            extra = dict((r[0], r[1:]) for r in conn.execute(
                "SELECT id, abort_requested, trigger_id FROM workflows WHERE ensemble_id = ?",
                (e.id,)))
            triggers = store.list_triggers(conn, e)
            trig_names = {t.id: t.name for t in triggers}
            submitted = dict(conn.execute(
                "SELECT trigger_id, count(*) FROM workflows WHERE ensemble_id = ? AND "
                "trigger_id IS NOT NULL GROUP BY trigger_id", (e.id,)).fetchall())
            ordered = queue_order(rows)
            page = ordered[offset:offset + limit]
            last = last_events(conn, [r[0] for r in page])
        summary = self._summary(e, counts, {})
        queue = {W.READY: 0, W.QUEUED: 0}
        positions = {}
        for r in ordered:
            if r[4] in queue:
                queue[r[4]] += 1
                positions[r[0]] = queue[r[4]]
        workflows = []
        for r in page:
            abort, trigger_id = extra.get(r[0], (0, None))
            wf = workflow_dict(r)
            wf.update(abort_requested=bool(abort), trigger=trig_names.get(trigger_id),
                      last_event=last.get(r[0]), position=positions.get(r[0]))
            wf["waiting"] = why_waiting(wf, summary)
            workflows.append(wf)
        return {"ensemble": summary, "workflows": workflows, "total": len(ordered),
                "triggers": [dict(trigger_dict(t), workflow_count=submitted.get(t.id, 0))
                             for t in triggers]}

    def workflow(self, home, ensemble, name):
        handle = self.open(home)
        with Snapshot(handle) as conn:
            e = store.get_ensemble(conn, ensemble)
            w = store.get_workflow(conn, e, name)
            counts = store.count_workflows(conn, e)
            extra = conn.execute("SELECT abort_requested, trigger_id, (SELECT name FROM triggers "
                                 "WHERE id = workflows.trigger_id) FROM workflows WHERE id = ?",
                                 (w.id,)).fetchone()
            events = store.list_events(conn, e.id, w.id, 0, MAX_EVENTS)
            position = None
            if w.state in WAITING:
                position = conn.execute(
                    "SELECT count(*) FROM workflows WHERE ensemble_id = ? AND state = ? AND "
                    "(priority > ? OR (priority = ? AND id <= ?))",
                    (e.id, w.state, w.priority, w.priority, w.id)).fetchone()[0]
        summary = self._summary(e, counts, {})
        wf = workflow_dict(w)
        wf.update(abort_requested=bool(extra[0]), trigger=extra[2], position=position,
                  last_event=event_dict(events[-1]) if events else None,
                  log=os.path.join(home, ".pegasus", "ensembles", w.ensemble, w.name + ".log"))
        wf["waiting"] = why_waiting(wf, summary)
        return {"ensemble": summary, "workflow": wf, "events": [event_dict(r) for r in events]}

    def trigger(self, home, ensemble, name):
        handle = self.open(home)
        with Snapshot(handle) as conn:
            e = store.get_ensemble(conn, ensemble)
            t = store.get_trigger(conn, e, name)
            names = store.trigger_workflow_names(conn, e.id, t.id).get(t.id, [])
            states = dict(conn.execute("SELECT name, state FROM workflows WHERE trigger_id = ?",
                                       (t.id,)).fetchall())
            events = conn.execute("SELECT id, time, workflow_id, trigger_id, old_state, "
                                  "new_state, reason FROM events WHERE trigger_id = ? "
                                  "ORDER BY id DESC LIMIT ?", (t.id, MAX_EVENTS)).fetchall()
        out = trigger_dict(t)
        out["workflows"] = [{"name": n, "state": states.get(n)} for n in names[-MAX_EVENTS:]]
        out["workflow_count"] = len(names)
        return {"ensemble": {"name": e.name, "state": e.state}, "trigger": out,
                "events": [event_dict(r) for r in reversed(events)]}

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
        rows = handle.execute(
            "SELECT e.name, w.name, w.state, w.wf_uuid, w.submitdir, w.created, w.updated,"
            " w.reason FROM workflows w JOIN ensembles e ON e.id = w.ensemble_id"
            " WHERE w.submitdir IS NOT NULL AND w.wf_uuid IS NOT NULL").fetchall()
        planned = {r[3]: {"ensemble": r[0], "name": r[1], "em_state": r[2], "wf_uuid": r[3],
                          "submit_dir": r[4], "created": r[5], "updated": r[6], "reason": r[7]}
                   for r in rows}
        self._local.planned = (handle, version, planned)
        return planned


def queue_order(rows):
    """Busy workflows first, then the waiting ones as the engine takes them (priority
    desc, then oldest), then the rest, most recently changed first."""
    busy = [r for r in rows if r[4] in BUSY]
    waiting = sorted((r for r in rows if r[4] in WAITING),
                     key=lambda r: (r[4] != W.QUEUED, -r[5], r[0]))
    rest = sorted((r for r in rows if r[4] not in BUSY and r[4] not in WAITING),
                  key=lambda r: (-r[11], -r[0]))
    return busy + waiting + rest


def workflow_dict(r):
    """A store row (or model.Workflow) as a dict of the model's fields."""
    out = (r if isinstance(r, Workflow) else Workflow._make(r))._asdict()
    out.pop("ensemble_id", None)
    return out


def event_dict(r):
    return {"id": r[0], "time": r[1], "workflow_id": r[2], "trigger_id": r[3], "old_state": r[4],
            "new_state": r[5], "reason": r[6]}


def trigger_dict(t):
    live = t.state in ("READY", "RUNNING")
    return {"name": t.name, "type": t.type, "state": t.state, "script": t.script,
            "args": list(t.args), "interval": t.interval, "timeout": t.timeout,
            "file_patterns": list(t.file_patterns),
            "basedir": t.basedir, "created": t.created, "updated": t.updated,
            "next_fire": t.next_fire if live else None, "deadline": t.deadline,
            "fire_count": t.fire_count, "failures": t.failures, "last_error": t.last_error,
            "failing": bool(t.failures) and live, "first_error": t.first_error,
            "first_failure": t.first_failure, "last_failure": t.last_failure}


def last_events(conn, ids):
    """workflow id -> its newest event (through the per-workflow index)."""
    out = {}
    for start in range(0, len(ids), 500):
        chunk = ids[start:start + 500]
        rows = conn.execute(
            "SELECT id, time, workflow_id, trigger_id, old_state, new_state, reason FROM events"
            " WHERE id IN (SELECT max(id) FROM events WHERE workflow_id IN (%s)"
            " GROUP BY workflow_id)"
            % ",".join("?" * len(chunk)), chunk)
        for r in rows:
            out[r[2]] = event_dict(r)
    return out


def why_waiting(wf, ensemble):
    """A sentence saying what a READY or QUEUED workflow waits for (None otherwise)."""
    state = wf["state"]
    if wf.get("abort_requested"):
        return "abort requested: the engine is stopping it"
    if state not in WAITING:
        return None
    if ensemble["state"] == EnsembleState.PAUSED:
        return "ensemble %s is PAUSED: nothing new starts (activate it)" % ensemble["name"]
    if ensemble["state"] == EnsembleState.HELD:
        return "ensemble %s is HELD: nothing new starts (activate it)" % ensemble["name"]
    if state == W.READY and wf.get("deps_pending"):
        return "waiting for %d workflow(s) it depends on to succeed" % wf["deps_pending"]
    if state == W.READY and wf.get("deferred") and wf.get("run_after"):
        return "not to be planned before %s" % time.strftime("%Y-%m-%d %H:%M:%S %Z",
                                                             time.localtime(wf["run_after"]))
    busy, limit, verb = ((ensemble["planning"], ensemble["max_planning"], "planning")
                         if state == W.READY else
                         (ensemble["running"], ensemble["max_running"], "running"))
    free = max(0, limit - busy)
    ahead = (wf.get("position") or 1) - 1
    if free > ahead:
        return "next in line for a %s slot (%d of %d in use)" % (verb, busy, limit)
    if free == 0:
        return ("all %d %s slots in use; %d workflow(s) ahead of it"
                % (limit, verb, ahead)) if ahead else "all %d %s slots in use" % (limit, verb)
    return "%d workflow(s) ahead of it for %d free %s slot(s)" % (ahead, free, verb)
