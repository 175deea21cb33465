"""All SQL of the daemon.  Functions take an open connection (a transaction
from db.Database) and return model records; state changes are compare-and-set
updates that also append to the events table.
"""

import json
import sqlite3

from .errors import Conflict, NotFound
from .model import Ensemble, EngineRow, EnsembleLoad, Trigger, Workflow
from .states import ENSEMBLE_TRANSITIONS, TRIGGER_TRANSITIONS, WORKFLOW_TRANSITIONS, sources

_ENSEMBLE_COLS = "id, name, state, max_planning, max_running, created, updated"
_WORKFLOW_COLS = ("w.id, w.ensemble_id, e.name, w.name, w.state, w.priority, w.basedir, "
                  "w.plan_command, w.wf_uuid, w.submitdir, w.created, w.updated, w.reason")
_WORKFLOW_FROM = "workflows w JOIN ensembles e ON e.id = w.ensemble_id"
_TRIGGER_COLS = ("t.id, t.ensemble_id, e.name, t.name, t.type, t.state, t.script, t.args, "
                 "t.interval, t.timeout, t.file_patterns, t.basedir, t.created, t.updated, "
                 "t.next_fire, t.deadline, t.fire_count, t.failures, t.last_error")
_TRIGGER_FROM = "triggers t JOIN ensembles e ON e.id = t.ensemble_id"


# ---- events ---------------------------------------------------------------

def add_event(conn, now, ensemble_id, old, new, reason=None, workflow_id=None, trigger_id=None):
    conn.execute(
        "INSERT INTO events (time, ensemble_id, workflow_id, trigger_id, old_state, new_state,"
        " reason) VALUES (?, ?, ?, ?, ?, ?, ?)",
        (now, ensemble_id, workflow_id, trigger_id, old, new, reason))


def list_events(conn, ensemble_id, workflow_id=None, after=0, limit=100):
    sql = ("SELECT id, time, workflow_id, trigger_id, old_state, new_state, reason FROM events"
           " WHERE ensemble_id = ? AND id > ?")
    params = [ensemble_id, after]
    if workflow_id is not None:
        sql += " AND workflow_id = ?"
        params.append(workflow_id)
    sql += " ORDER BY id LIMIT ?"
    params.append(limit)
    return conn.execute(sql, params).fetchall()


def last_reason(conn, workflow_id):
    row = conn.execute("SELECT reason FROM events WHERE workflow_id = ? ORDER BY id DESC LIMIT 1",
                       (workflow_id,)).fetchone()
    return row[0] if row else None


# ---- ensembles ------------------------------------------------------------

def insert_ensemble(conn, name, state, max_planning, max_running, now):
    try:
        cur = conn.execute(
            "INSERT INTO ensembles (name, state, max_planning, max_running, created, updated)"
            " VALUES (?, ?, ?, ?, ?, ?)", (name, state, max_planning, max_running, now, now))
    except sqlite3.IntegrityError:
        raise Conflict("Ensemble %s already exists" % name)
    add_event(conn, now, cur.lastrowid, None, state, "created")
    return get_ensemble(conn, name)


def get_ensemble(conn, name):
    row = conn.execute("SELECT %s FROM ensembles WHERE name = ?" % _ENSEMBLE_COLS,
                       (name,)).fetchone()
    if row is None:
        raise NotFound("No such ensemble: %s" % name)
    return Ensemble._make(row)


def list_ensembles(conn):
    rows = conn.execute("SELECT %s FROM ensembles ORDER BY created, id" % _ENSEMBLE_COLS)
    return [Ensemble._make(r) for r in rows]


def update_throttles(conn, ensemble, max_planning, max_running, now):
    conn.execute("UPDATE ensembles SET max_planning = ?, max_running = ?, updated = ? WHERE id = ?",
                 (max_planning, max_running, now, ensemble.id))


def change_ensemble_state(conn, ensemble, new, now, reason=None):
    """Compare-and-set; False when another writer changed the state first."""
    if ensemble.state not in sources(ENSEMBLE_TRANSITIONS, new):
        return False
    cur = conn.execute(
        "UPDATE ensembles SET state = ?, updated = ? WHERE id = ? AND state = ?",
        (new, now, ensemble.id, ensemble.state))
    if cur.rowcount != 1:
        return False
    add_event(conn, now, ensemble.id, ensemble.state, new, reason)
    return True


# ---- workflows ------------------------------------------------------------

def insert_workflow(conn, ensemble, name, priority, basedir, plan_command, state, now):
    try:
        cur = conn.execute(
            "INSERT INTO workflows (ensemble_id, name, state, priority, basedir, plan_command,"
            " created, updated) VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
            (ensemble.id, name, state, priority, basedir, plan_command, now, now))
    except sqlite3.IntegrityError:
        raise Conflict("Ensemble workflow %s already exists in %s" % (name, ensemble.name))
    add_event(conn, now, ensemble.id, None, state, "submitted", workflow_id=cur.lastrowid)
    return cur.lastrowid


def get_workflow(conn, ensemble, name):
    row = conn.execute("SELECT %s FROM %s WHERE w.ensemble_id = ? AND w.name = ?"
                       % (_WORKFLOW_COLS, _WORKFLOW_FROM), (ensemble.id, name)).fetchone()
    if row is None:
        raise NotFound("No such ensemble workflow: %s.%s" % (ensemble.name, name))
    return Workflow._make(row)


def get_workflow_by_id(conn, workflow_id):
    row = conn.execute("SELECT %s FROM %s WHERE w.id = ?" % (_WORKFLOW_COLS, _WORKFLOW_FROM),
                       (workflow_id,)).fetchone()
    return Workflow._make(row) if row else None


def list_workflow_rows(conn, ensemble):
    """Raw rows in creation order (the caller renders them without copies)."""
    return conn.execute("SELECT %s FROM %s WHERE w.ensemble_id = ? ORDER BY w.id"
                        % (_WORKFLOW_COLS, _WORKFLOW_FROM), (ensemble.id,)).fetchall()


def list_workflows_json(conn, ensemble, fields, href_prefix):
    """The list as JSON text built by SQLite (10,000 workflows in a few ms
    instead of tens); None when this SQLite lacks the JSON functions."""
    obj = "json_object(%s)" % ", ".join("'%s', %s" % f for f in fields)
    sql = ("SELECT '[' || coalesce(group_concat(j, ', '), '') || ']' FROM"
           " (SELECT %s AS j FROM workflows w WHERE w.ensemble_id = ? ORDER BY w.id)" % obj)
    try:
        return conn.execute(sql, (href_prefix, ensemble.id)).fetchone()[0]
    except sqlite3.OperationalError:
        return None


def count_workflows(conn, ensemble):
    return dict(conn.execute("SELECT state, count(*) FROM workflows WHERE ensemble_id = ?"
                             " GROUP BY state", (ensemble.id,)).fetchall())


def set_priority(conn, workflow, priority, now):
    conn.execute("UPDATE workflows SET priority = ?, updated = ? WHERE id = ?",
                 (priority, now, workflow.id))


def change_workflow_state(conn, workflow, new, now, reason=None, **fields):
    """Compare-and-set from any old state the table allows; also sets `fields`.

    Returns False when the row is no longer in an allowed state (another
    writer got there first), so callers never act on a stale decision.
    """
    allowed = sources(WORKFLOW_TRANSITIONS, new)
    if not allowed:
        return False
    assignments = ", ".join("%s = ?" % k for k in fields)
    sql = "UPDATE workflows SET state = ?, updated = ?, reason = ?%s WHERE id = ? AND state IN (%s)" % (
        ", " + assignments if assignments else "", ",".join("?" * len(allowed)))
    params = [new, now, reason] + list(fields.values()) + [workflow.id] + list(allowed)
    if conn.execute(sql, params).rowcount != 1:
        return False
    add_event(conn, now, workflow.ensemble_id, workflow.state, new, reason,
              workflow_id=workflow.id)
    return True


def current_workflow_state(conn, workflow_id):
    row = conn.execute("SELECT state FROM workflows WHERE id = ?", (workflow_id,)).fetchone()
    return row[0] if row else None


# ---- triggers -------------------------------------------------------------

def _trigger(row):
    row = list(row)
    row[7] = tuple(json.loads(row[7]))
    row[10] = tuple(json.loads(row[10]))
    return Trigger._make(row)


def insert_trigger(conn, ensemble, name, type_, state, script, args, interval, timeout,
                   file_patterns, basedir, now):
    deadline = now + timeout if timeout else None
    try:
        cur = conn.execute(
            "INSERT INTO triggers (ensemble_id, name, type, state, script, args, interval,"
            " timeout, file_patterns, basedir, created, updated, next_fire, deadline)"
            " VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
            (ensemble.id, name, type_, state, script, json.dumps(list(args)), interval, timeout,
             json.dumps(list(file_patterns)), basedir, now, now, now, deadline))
    except sqlite3.IntegrityError:
        raise Conflict("Trigger %s already exists in %s" % (name, ensemble.name))
    add_event(conn, now, ensemble.id, None, state, "created", trigger_id=cur.lastrowid)
    return get_trigger(conn, ensemble, name)


def get_trigger(conn, ensemble, name):
    row = conn.execute("SELECT %s FROM %s WHERE t.ensemble_id = ? AND t.name = ?"
                       % (_TRIGGER_COLS, _TRIGGER_FROM), (ensemble.id, name)).fetchone()
    if row is None:
        raise NotFound("No such trigger: %s in ensemble %s" % (name, ensemble.name))
    return _trigger(row)


def list_triggers(conn, ensemble):
    rows = conn.execute("SELECT %s FROM %s WHERE t.ensemble_id = ? ORDER BY t.id"
                        % (_TRIGGER_COLS, _TRIGGER_FROM), (ensemble.id,))
    return [_trigger(r) for r in rows]


def change_trigger_state(conn, trigger, new, now, reason=None):
    allowed = sources(TRIGGER_TRANSITIONS, new)
    cur = conn.execute(
        "UPDATE triggers SET state = ?, updated = ? WHERE id = ? AND state IN (%s)"
        % ",".join("?" * len(allowed)), [new, now, trigger.id] + list(allowed))
    if cur.rowcount != 1:
        return False
    add_event(conn, now, trigger.ensemble_id, trigger.state, new, reason, trigger_id=trigger.id)
    return True


def delete_trigger(conn, trigger):
    conn.execute("DELETE FROM triggers WHERE id = ?", (trigger.id,))


# ---- engine ---------------------------------------------------------------

_ACTIVE_SQL = "('READY', 'PLANNING', 'QUEUED', 'RUNNING')"
_ENGINE_COLS = ("w.id, w.ensemble_id, e.name, w.name, w.state, w.basedir, w.plan_command,"
                " w.submitdir, w.wf_uuid, w.abort_requested, w.plan_pid, w.plan_start,"
                " w.plan_offset, w.plan_began, w.run_phase, w.run_pid, w.run_start, w.run_began,"
                " w.baseline_blocks, w.baseline_id, w.dagman_held, e.state")


def busy_rows(conn):
    """Every PLANNING or RUNNING workflow: at most the sum of the throttles."""
    rows = conn.execute("SELECT %s FROM %s WHERE w.state IN ('PLANNING', 'RUNNING')"
                        " AND w.state IN %s" % (_ENGINE_COLS, _WORKFLOW_FROM, _ACTIVE_SQL))
    return [EngineRow._make(r) for r in rows]


def engine_row(conn, workflow_id):
    row = conn.execute("SELECT %s FROM %s WHERE w.id = ?" % (_ENGINE_COLS, _WORKFLOW_FROM),
                       (workflow_id,)).fetchone()
    return EngineRow._make(row) if row else None


def ensemble_loads(conn):
    """Per ensemble with work: throttles and counts, read through the partial index."""
    counts = {}
    for ensemble_id, state, n in conn.execute(
            "SELECT ensemble_id, state, count(*) FROM workflows WHERE state IN %s"
            " GROUP BY ensemble_id, state" % _ACTIVE_SQL):
        counts.setdefault(ensemble_id, {})[state] = n
    if not counts:
        return []
    rows = conn.execute("SELECT id, state, max_planning, max_running FROM ensembles WHERE id IN"
                        " (%s)" % ",".join("?" * len(counts)), list(counts))
    return [EnsembleLoad(i, s, mp, mr, counts[i].get("READY", 0), counts[i].get("PLANNING", 0),
                         counts[i].get("QUEUED", 0), counts[i].get("RUNNING", 0))
            for i, s, mp, mr in rows]


def next_in_queue(conn, ensemble_id, state, limit):
    """Ids of the first `limit` workflows in `state`: higher priority first, then oldest."""
    rows = conn.execute(
        "SELECT id FROM workflows WHERE ensemble_id = ? AND state = ? AND abort_requested = 0"
        " AND state IN %s ORDER BY priority DESC, id LIMIT ?" % _ACTIVE_SQL,
        (ensemble_id, state, limit))
    return [r[0] for r in rows]


def update_engine(conn, workflow_id, **fields):
    """Record engine bookkeeping (pids, phases) without a state change."""
    assignments = ", ".join("%s = ?" % k for k in fields)
    conn.execute("UPDATE workflows SET %s WHERE id = ?" % assignments,
                 list(fields.values()) + [workflow_id])
