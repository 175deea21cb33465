"""All SQL of the daemon.  Functions take an open connection (a transaction
from db.Database) and return model records; state changes are compare-and-set
updates that also append to the events table.
"""

import json
import sqlite3

from .errors import Conflict, NotFound
from .model import Ensemble, EngineRow, EnsembleLoad, LedgerFile, Trigger, Workflow
from .states import (ENSEMBLE_TRANSITIONS, TRIGGER_TRANSITIONS, WORKFLOW_TRANSITIONS, FileState,
                     sources)

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

def insert_workflow(conn, ensemble, name, priority, basedir, plan_command, state, now,
                    trigger_id=None, reason="submitted"):
    try:
        cur = conn.execute(
            "INSERT INTO workflows (ensemble_id, name, state, priority, basedir, plan_command,"
            " created, updated, trigger_id) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)",
            (ensemble.id, name, state, priority, basedir, plan_command, now, now, trigger_id))
    except sqlite3.IntegrityError:
        raise Conflict("Ensemble workflow %s already exists in %s" % (name, ensemble.name))
    add_event(conn, now, ensemble.id, None, state, reason, workflow_id=cur.lastrowid)
    return cur.lastrowid


def workflow_exists(conn, ensemble_id, name):
    return conn.execute("SELECT 1 FROM workflows WHERE ensemble_id = ? AND name = ?",
                        (ensemble_id, name)).fetchone() is not None


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


def trigger_workflow_names(conn, ensemble_id, trigger_id=None):
    """trigger id -> names of the workflows it submitted, oldest first."""
    sql = ("SELECT w.trigger_id, w.name FROM workflows w JOIN triggers t ON t.id = w.trigger_id"
           " WHERE t.ensemble_id = ?")
    params = [ensemble_id]
    if trigger_id is not None:
        sql += " AND t.id = ?"
        params.append(trigger_id)
    out = {}
    for tid, name in conn.execute(sql + " ORDER BY w.id", params):
        out.setdefault(tid, []).append(name)
    return out


# ---- trigger scheduling ---------------------------------------------------

_LIVE_SQL = "('READY', 'RUNNING')"


def get_trigger_by_id(conn, trigger_id):
    row = conn.execute("SELECT %s FROM %s WHERE t.id = ?" % (_TRIGGER_COLS, _TRIGGER_FROM),
                       (trigger_id,)).fetchone()
    return _trigger(row) if row else None


def due_triggers(conn, now):
    """Live triggers due to fire or past their deadline at `now`, earliest first
    (two range scans of partial indexes: the cost does not grow with idle triggers)."""
    rows = conn.execute(
        "SELECT %s FROM %s WHERE t.id IN (SELECT id FROM triggers WHERE state IN %s"
        " AND next_fire <= ? UNION SELECT id FROM triggers WHERE state IN %s"
        " AND deadline <= ?) ORDER BY t.next_fire, t.id"
        % (_TRIGGER_COLS, _TRIGGER_FROM, _LIVE_SQL, _LIVE_SQL), (now, now))
    return [_trigger(r) for r in rows]


def next_trigger_time(conn):
    """The earliest next firing or deadline of any live trigger, or None."""
    times = []
    for column in ("next_fire", "deadline"):
        row = conn.execute("SELECT %s FROM triggers WHERE state IN %s AND %s IS NOT NULL"
                           " ORDER BY %s LIMIT 1" % (column, _LIVE_SQL, column, column)
                           ).fetchone()
        if row:
            times.append(row[0])
    return min(times) if times else None


def live_file_triggers(conn):
    """(id, file patterns) of every live file-pattern trigger."""
    rows = conn.execute("SELECT id, file_patterns FROM triggers WHERE type = 'FILE_PATTERN'"
                        " AND state IN %s ORDER BY id" % _LIVE_SQL)
    return [(tid, tuple(json.loads(patterns))) for tid, patterns in rows]


def live_file_triggers_key(conn):
    """Changes when a file-pattern trigger starts or stops being live."""
    return tuple(conn.execute("SELECT count(*), total(id) FROM triggers"
                              " WHERE type = 'FILE_PATTERN' AND state IN %s" % _LIVE_SQL)
                 .fetchone())


def update_trigger_run(conn, trigger_id, **fields):
    """Record schedule and counters (next_fire, fire_count, failures, last_error)."""
    assignments = ", ".join("%s = ?" % k for k in fields)
    conn.execute("UPDATE triggers SET %s WHERE id = ?" % assignments,
                 list(fields.values()) + [trigger_id])


# ---- the file ledger ------------------------------------------------------
# Inode and device numbers are unsigned 64-bit; SQLite integers are signed.

def _i64(n):
    return n - (1 << 64) if n >= (1 << 63) else n


def _u64(n):
    return n + (1 << 64) if n < 0 else n


_FILE_COLS = "id, trigger_id, path, dev, ino, size, mtime_ns, dest, linked, state, workflow"


def _file(row):
    row = list(row)
    row[3], row[4] = _u64(row[3]), _u64(row[4])
    return LedgerFile._make(row)


def claim_files(conn, trigger_id, files, now):
    """Insert (path, dev, ino, size, mtime_ns, dest) rows as claimed -> their ids, in order."""
    ids = []
    for path, dev, ino, size, mtime_ns, dest in files:
        cur = conn.execute(
            "INSERT INTO trigger_files (trigger_id, path, dev, ino, size, mtime_ns, dest, state,"
            " created, updated) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
            (trigger_id, path, _i64(dev), _i64(ino), size, mtime_ns, dest, FileState.CLAIMED,
             now, now))
        ids.append(cur.lastrowid)
    return ids


def unfinished_files(conn, trigger_id=None):
    """Claimed and submitted files (of one trigger, or of all)."""
    sql = "SELECT %s FROM trigger_files WHERE state != 'done'" % _FILE_COLS
    params = []
    if trigger_id is not None:
        sql += " AND trigger_id = ?"
        params.append(trigger_id)
    return [_file(r) for r in conn.execute(sql + " ORDER BY id", params)]


def submit_files(conn, items, now):
    """(workflow, dest, linked, id): claimed -> submitted, in the workflow's transaction."""
    conn.executemany(
        "UPDATE trigger_files SET state = '%s', workflow = ?, dest = ?, linked = ?, updated = ?"
        " WHERE id = ?" % FileState.SUBMITTED,
        [(workflow, dest, linked, now, file_id) for workflow, dest, linked, file_id in items])


def finish_files(conn, ids, now):
    conn.executemany("UPDATE trigger_files SET state = '%s', updated = ? WHERE id = ?"
                     % FileState.DONE, [(now, i) for i in ids])


def release_files(conn, ids):
    """Forget claims whose workflow was never created: the files are found again."""
    conn.executemany("DELETE FROM trigger_files WHERE id = ? AND state = '%s'"
                     % FileState.CLAIMED, [(i,) for i in ids])


def file_holders(conn, path, dev, ino):
    """Ids of the triggers whose workflows got this very file."""
    rows = conn.execute("SELECT trigger_id FROM trigger_files WHERE path = ? AND dev = ?"
                        " AND ino = ? AND state IN ('submitted', 'done')",
                        (path, _i64(dev), _i64(ino)))
    return {r[0] for r in rows}


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
