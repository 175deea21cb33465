"""All SQL of the daemon.  Functions take an open connection (a transaction
from db.Database) and return model records; state changes are compare-and-set
updates that also append to the events table.
"""

import bisect
import json
import sqlite3

from ..errors import Conflict, NotFound, shown
from .model import Ensemble, EngineRow, EnsembleLoad, LedgerFile, Trigger, Workflow
from .states import (ENSEMBLE_TRANSITIONS, TRIGGER_TRANSITIONS, WORKFLOW_TRANSITIONS,
                     EnsembleState, FileState, WorkflowState, sources)

_ENSEMBLE_COLS = ("id, name, state, max_planning, max_running, created, updated, max_failures,"
                  " failure_streak")
_WORKFLOW_COLS = ("w.id, w.ensemble_id, e.name, w.name, w.state, w.priority, w.basedir, "
                  "w.plan_command, w.wf_uuid, w.submitdir, w.created, w.updated, w.reason, "
                  "w.run_after, w.deferred, w.deps_pending, w.state_since")
_WORKFLOW_FROM = "workflows w JOIN ensembles e ON e.id = w.ensemble_id"
_TRIGGER_COLS = ("t.id, t.ensemble_id, e.name, t.name, t.type, t.state, t.script, t.args, "
                 "t.interval, t.timeout, t.file_patterns, t.basedir, t.created, t.updated, "
                 "t.next_fire, t.deadline, t.fire_count, t.failures, t.last_error,"
                 " t.first_error, t.first_failure, t.last_failure")
_TRIGGER_FROM = "triggers t JOIN ensembles e ON e.id = t.ensemble_id"


# ---- events ---------------------------------------------------------------

def add_event(conn, now, ensemble_id, old, new, reason=None, workflow_id=None, trigger_id=None):
    conn.execute(
        "INSERT INTO events (time, ensemble_id, workflow_id, trigger_id, old_state, new_state,"
        " reason) VALUES (?, ?, ?, ?, ?, ?, ?)",
        (now, ensemble_id, workflow_id, trigger_id, old, new, reason))


_EVENT_COLS = ("v.id, v.time, v.workflow_id, v.trigger_id, v.old_state, v.new_state, v.reason,"
               " e.name, w.name, t.name")
_EVENT_FROM = ("events v JOIN ensembles e ON e.id = v.ensemble_id"
               " LEFT JOIN workflows w ON w.id = v.workflow_id"
               " LEFT JOIN triggers t ON t.id = v.trigger_id")


def list_events(conn, ensemble_id=None, workflow_id=None, after=0, limit=100, before=None,
                trigger_id=None):
    """Events oldest first: those after id `after`, or with `before`, the newest
    `limit` before that id; of one workflow, one trigger, one ensemble, or all
    (ensemble_id None)."""
    where, params = ["v.id > ?"], [after]
    for column, value in (("workflow_id", workflow_id), ("trigger_id", trigger_id),
                          ("ensemble_id", ensemble_id)):
        if value is not None:  # the narrowest one given
            where.append("v.%s = ?" % column)
            params.append(value)
            break
    if before is not None:
        where.append("v.id < ?")
        params.append(before)
    order = "DESC" if before is not None else ""
    rows = conn.execute("SELECT %s FROM %s WHERE %s ORDER BY v.id %s LIMIT ?" % (
        _EVENT_COLS, _EVENT_FROM, " AND ".join(where), order), params + [limit]).fetchall()
    return rows[::-1] if before is not None else rows


def last_reason(conn, workflow_id):
    row = conn.execute("SELECT reason FROM events WHERE workflow_id = ? ORDER BY id DESC LIMIT 1",
                       (workflow_id,)).fetchone()
    return row[0] if row else None


# ---- ensembles ------------------------------------------------------------

def insert_ensemble(conn, name, state, max_planning, max_running, now, max_failures=0,
                    created=None, reason="created"):
    try:
        cur = conn.execute(
            "INSERT INTO ensembles (name, state, max_planning, max_running, created, updated,"
            " max_failures) VALUES (?, ?, ?, ?, ?, ?, ?)",
            (name, state, max_planning, max_running, created or now, now, max_failures))
    except sqlite3.IntegrityError:
        raise Conflict("Ensemble %s already exists" % shown(name))
    add_event(conn, now, cur.lastrowid, None, state, reason)
    return get_ensemble(conn, name)


def ensemble_exists(conn, name):
    return conn.execute("SELECT 1 FROM ensembles WHERE name = ?", (name,)).fetchone() is not None


def get_ensemble(conn, name):
    row = conn.execute("SELECT %s FROM ensembles WHERE name = ?" % _ENSEMBLE_COLS,
                       (name,)).fetchone()
    if row is None:
        raise NotFound("No such ensemble: %s" % shown(name))
    return Ensemble._make(row)


def list_ensembles(conn):
    rows = conn.execute("SELECT %s FROM ensembles ORDER BY created, id" % _ENSEMBLE_COLS)
    return [Ensemble._make(r) for r in rows]


def update_throttles(conn, ensemble, max_planning, max_running, now):
    conn.execute("UPDATE ensembles SET max_planning = ?, max_running = ?, updated = ? WHERE id = ?",
                 (max_planning, max_running, now, ensemble.id))


def set_max_failures(conn, ensemble, max_failures, now):
    conn.execute("UPDATE ensembles SET max_failures = ?, updated = ? WHERE id = ?",
                 (max_failures, now, ensemble.id))


def set_ensemble_state(conn, ensemble, new, now, reason=None):
    """Compare-and-set from the state the record holds, if the table allows the change;
    False when it does not or another writer changed the state first.  What follows
    from the change is decided by `transitions`, which calls this."""
    if ensemble.state not in sources(ENSEMBLE_TRANSITIONS, new):
        return False
    cur = conn.execute(
        "UPDATE ensembles SET state = ?, updated = ? WHERE id = ? AND state = ?",
        (new, now, ensemble.id, ensemble.state))
    if cur.rowcount != 1:
        return False
    add_event(conn, now, ensemble.id, ensemble.state, new, reason)
    return True


def get_ensemble_by_id(conn, ensemble_id):
    row = conn.execute("SELECT %s FROM ensembles WHERE id = ?" % _ENSEMBLE_COLS,
                       (ensemble_id,)).fetchone()
    return Ensemble._make(row) if row else None


def add_failure(conn, ensemble_id):
    """One more failed workflow in a row; -> the ensemble as it is now."""
    conn.execute("UPDATE ensembles SET failure_streak = failure_streak + 1 WHERE id = ?",
                 (ensemble_id,))
    return get_ensemble_by_id(conn, ensemble_id)


def reset_failure_streak(conn, ensemble_id):
    conn.execute("UPDATE ensembles SET failure_streak = 0 WHERE id = ? AND failure_streak",
                 (ensemble_id,))


# ---- workflows ------------------------------------------------------------

def insert_workflow(conn, ensemble, name, priority, basedir, plan_command, state, now,
                    trigger_id=None, reason="submitted", run_after=None, after=(), **fields):
    """`after`: ids of the workflows it waits for (they exist); `run_after`: epoch or None;
    `fields`: other columns (wf_uuid, submitdir, created, ... when importing)."""
    deferred = 1 if run_after is not None and run_after > now else 0
    columns = dict(ensemble_id=ensemble.id, name=name, state=state, priority=priority,
                   basedir=basedir, plan_command=plan_command, created=now, updated=now,
                   trigger_id=trigger_id, run_after=run_after, deferred=deferred,
                   state_since=now)
    columns.update(fields)
    try:
        cur = conn.execute("INSERT INTO workflows (%s) VALUES (%s)" % (
            ", ".join(columns), ", ".join("?" * len(columns))), list(columns.values()))
    except sqlite3.IntegrityError:
        raise Conflict("Ensemble workflow %s already exists (in ensemble %s)"
                       % (shown(name), ensemble.name))
    wf_id = cur.lastrowid
    if after:
        conn.executemany("INSERT OR IGNORE INTO dependencies (workflow_id, after_id) VALUES (?, ?)",
                         [(wf_id, a) for a in after])
        conn.execute("UPDATE workflows SET deps_pending = (SELECT count(*) FROM dependencies d"
                     " JOIN workflows a ON a.id = d.after_id WHERE d.workflow_id = ?"
                     " AND a.state != 'SUCCESSFUL') WHERE id = ?", (wf_id, wf_id))
    add_event(conn, now, ensemble.id, None, state, reason, workflow_id=wf_id)
    return wf_id


def workflow_exists(conn, ensemble_id, name):
    return conn.execute("SELECT 1 FROM workflows WHERE ensemble_id = ? AND name = ?",
                        (ensemble_id, name)).fetchone() is not None


def get_workflow(conn, ensemble, name):
    row = conn.execute("SELECT %s FROM %s WHERE w.ensemble_id = ? AND w.name = ?"
                       % (_WORKFLOW_COLS, _WORKFLOW_FROM), (ensemble.id, name)).fetchone()
    if row is None:
        raise NotFound("No such ensemble workflow: %s (in ensemble %s)"
                       % (shown(name), ensemble.name))
    return Workflow._make(row)


def get_workflow_by_id(conn, workflow_id):
    row = conn.execute("SELECT %s FROM %s WHERE w.id = ?" % (_WORKFLOW_COLS, _WORKFLOW_FROM),
                       (workflow_id,)).fetchone()
    return Workflow._make(row) if row else None


def list_workflow_rows(conn, ensemble):
    """Raw rows in creation order (the caller renders them without copies)."""
    return conn.execute("SELECT %s FROM %s WHERE w.ensemble_id = ? ORDER BY w.id"
                        % (_WORKFLOW_COLS, _WORKFLOW_FROM), (ensemble.id,)).fetchall()


def _json_object(fields):
    return "json_object(%s)" % ", ".join("'%s', %s" % f for f in fields)


def workflows_json_length(conn, ensemble, fields, href_prefix):
    """Bytes of the JSON list of an ensemble's workflows as SQLite makes it (see
    workflows_json_batch), or None when this SQLite lacks the JSON functions."""
    try:
        count, size = conn.execute(
            "SELECT count(*), coalesce(sum(length(CAST(%s AS BLOB))), 0) FROM workflows w"
            " WHERE w.ensemble_id = ?" % _json_object(fields),
            (href_prefix, ensemble.id)).fetchone()
    except sqlite3.OperationalError:
        return None
    return 2 + size + 2 * max(0, count - 1)  # "[", ", " between objects, "]"


def workflows_json_batch(conn, ensemble, fields, href_prefix, after_id, limit):
    """(the next `limit` workflows after id `after_id` as JSON objects joined by ", ",
    the last one's id), rendered by SQLite (10,000 in a few ms instead of tens), or
    None after the last.  Read in the transaction that counted the length."""
    text, last, count = conn.execute(
        "SELECT group_concat(j, ', '), max(i), count(*) FROM (SELECT %s AS j, w.id AS i"
        " FROM workflows w WHERE w.ensemble_id = ? AND w.id > ? ORDER BY w.id LIMIT ?)"
        % _json_object(fields), (href_prefix, ensemble.id, after_id, limit)).fetchone()
    return (text, last) if count else None


def count_workflows(conn, ensemble):
    return dict(conn.execute("SELECT state, count(*) FROM workflows WHERE ensemble_id = ?"
                             " GROUP BY state", (ensemble.id,)).fetchall())


def set_priority(conn, workflow, priority, now):
    conn.execute("UPDATE workflows SET priority = ?, updated = ? WHERE id = ?",
                 (priority, now, workflow.id))


def set_workflow_state(conn, workflow, new, now, reason=None, **fields):
    """Compare-and-set from any old state the table allows; also sets `fields`.

    Returns the old state, or None when the row is no longer in an allowed state
    (another writer got there first).  In the same transaction the change is an
    event and the time spent in the old state goes to its histogram; what follows
    from it is decided by `transitions`, which calls this."""
    allowed = sources(WORKFLOW_TRANSITIONS, new)
    if not allowed:
        return None
    before = conn.execute("SELECT state, state_since FROM workflows WHERE id = ?",
                          (workflow.id,)).fetchone()
    assignments = ", ".join("%s = ?" % k for k in fields)
    sql = ("UPDATE workflows SET state = ?, updated = ?, reason = ?, state_since = ?%s"
           " WHERE id = ? AND state IN (%s)" % (
               ", " + assignments if assignments else "", ",".join("?" * len(allowed))))
    params = [new, now, reason, now] + list(fields.values()) + [workflow.id] + list(allowed)
    if conn.execute(sql, params).rowcount != 1:
        return None
    old = before[0]
    add_event(conn, now, workflow.ensemble_id, old, new, reason, workflow_id=workflow.id)
    if old in WorkflowState.ACTIVE and old != new and before[1] is not None:
        observe(conn, "state:" + old, now - before[1])
    return old


def set_reason(conn, workflow_id, reason):
    """The reason a workflow stays in its state (a dependency blocks it, or no longer)."""
    conn.execute("UPDATE workflows SET reason = ? WHERE id = ?", (reason, workflow_id))


def request_abort(conn, workflow, now, reason):
    """Mark a PLANNING or RUNNING workflow for the engine to stop, with an event."""
    conn.execute("UPDATE workflows SET abort_requested = 1, updated = ? WHERE id = ?",
                 (now, workflow.id))
    add_event(conn, now, workflow.ensemble_id, workflow.state, workflow.state, reason,
              workflow_id=workflow.id)


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
    trigger_id = next_id(conn, "triggers")  # the caller's rollback undoes it on a conflict
    try:
        conn.execute(
            "INSERT INTO triggers (id, ensemble_id, name, type, state, script, args, interval,"
            " timeout, file_patterns, basedir, created, updated, next_fire, deadline)"
            " VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
            (trigger_id, ensemble.id, name, type_, state, script, json.dumps(list(args)),
             interval, timeout, json.dumps(list(file_patterns)), basedir, now, now, now,
             deadline))
    except sqlite3.IntegrityError:
        raise Conflict("Trigger %s already exists (in ensemble %s)" % (shown(name), ensemble.name))
    add_event(conn, now, ensemble.id, None, state, "created", trigger_id=trigger_id)
    return get_trigger(conn, ensemble, name)


def next_id(conn, table):
    """An id above any `table` ever held (its newest row may have been deleted), so an
    id never names two things (events of a purged trigger name no newer one)."""
    top = conn.execute("SELECT max(id) FROM %s" % table).fetchone()[0] or 0
    row = conn.execute("SELECT value FROM sequences WHERE name = ?", (table,)).fetchone()
    value = max(top, row[0] if row else 0) + 1
    conn.execute("INSERT OR REPLACE INTO sequences (name, value) VALUES (?, ?)", (table, value))
    return value


def get_trigger(conn, ensemble, name):
    row = conn.execute("SELECT %s FROM %s WHERE t.ensemble_id = ? AND t.name = ?"
                       % (_TRIGGER_COLS, _TRIGGER_FROM), (ensemble.id, name)).fetchone()
    if row is None:
        raise NotFound("No such trigger: %s assigned to ensemble id: %d (ensemble %s)"
                       % (shown(name), ensemble.id, ensemble.name))
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


def mark_files(conn, ids, linked):
    """Set `linked` of claimed files before acting on it (MOVED: before the move)."""
    conn.executemany("UPDATE trigger_files SET linked = ? WHERE id = ? AND state = '%s'"
                     % FileState.CLAIMED, [(linked, i) for i in ids])


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
                " w.baseline_blocks, w.baseline_id, w.dagman_held, e.state, w.deps_pending,"
                " w.deferred, w.state_since")


def busy_rows(conn):
    """Every PLANNING or RUNNING workflow: at most the sum of the throttles."""
    rows = conn.execute("SELECT %s FROM workflows w INDEXED BY workflows_busy"
                        " JOIN ensembles e ON e.id = w.ensemble_id"
                        " WHERE w.state IN ('PLANNING', 'RUNNING') AND w.state IN %s"
                        % (_ENGINE_COLS, _BUSY_SQL))
    return [EngineRow._make(r) for r in rows]


def engine_row(conn, workflow_id):
    row = conn.execute("SELECT %s FROM %s WHERE w.id = ?" % (_ENGINE_COLS, _WORKFLOW_FROM),
                       (workflow_id,)).fetchone()
    return EngineRow._make(row) if row else None


def ensemble_loads(conn):
    """Per ensemble with work: throttles and counts, read through the partial indexes
    (READY counts only workflows the engine may plan now, and only in ACTIVE ensembles,
    the only ones it plans for: 100,000 queued in a paused one cost nothing per turn)."""
    counts = {}
    for ensemble_id, state, n in conn.execute(
            "SELECT ensemble_id, state, count(*) FROM workflows INDEXED BY workflows_busy"
            " WHERE state IN %s GROUP BY ensemble_id, state" % _BUSY_SQL):
        counts.setdefault(ensemble_id, {})[state] = n
    for ensemble_id, n in conn.execute(
            "SELECT e.id, (SELECT count(*) FROM workflows w INDEXED BY workflows_eligible"
            " WHERE w.ensemble_id = e.id AND %s) FROM ensembles e WHERE e.state = ?"
            % _ELIGIBLE, (EnsembleState.ACTIVE,)):  # inner names are the workflow's
        if n:
            counts.setdefault(ensemble_id, {})["READY"] = n
    if not counts:
        return []
    rows = conn.execute("SELECT id, state, max_planning, max_running FROM ensembles WHERE id IN"
                        " (%s)" % ",".join("?" * len(counts)), list(counts))
    return [EnsembleLoad(i, s, mp, mr, counts[i].get("READY", 0), counts[i].get("PLANNING", 0),
                         counts[i].get("QUEUED", 0), counts[i].get("RUNNING", 0))
            for i, s, mp, mr in rows]


_ELIGIBLE = "state = 'READY' AND deps_pending = 0 AND deferred = 0"
_BUSY_SQL = "('PLANNING', 'QUEUED', 'RUNNING')"  # the predicate of index workflows_busy


def next_in_queue(conn, ensemble_id, state, limit):
    """(id, priority) of the first `limit` workflows in `state` the engine may take:
    higher priority first, then oldest.  READY ones waiting for a dependency or a
    run-after time are not in the index read, so they cost nothing."""
    if state == WorkflowState.READY:
        sql = ("SELECT id, priority FROM workflows WHERE ensemble_id = ? AND %s"
               " AND abort_requested = 0 ORDER BY priority DESC, id LIMIT ?" % _ELIGIBLE)
        params = (ensemble_id, limit)
    else:
        sql = ("SELECT id, priority FROM workflows WHERE ensemble_id = ? AND state = ?"
               " AND abort_requested = 0 AND state IN %s ORDER BY priority DESC, id LIMIT ?"
               % _ACTIVE_SQL)
        params = (ensemble_id, state, limit)
    return conn.execute(sql, params).fetchall()


def update_engine(conn, workflow_id, **fields):
    """Record engine bookkeeping (pids, phases) without a state change."""
    assignments = ", ".join("%s = ?" % k for k in fields)
    conn.execute("UPDATE workflows SET %s WHERE id = ?" % assignments,
                 list(fields.values()) + [workflow_id])


def engine_caps(conn):
    """Workflows PLANNING and RUNNING across every ensemble (for the global throttles)."""
    counts = dict(conn.execute("SELECT state, count(*) FROM workflows INDEXED BY workflows_busy"
                               " WHERE state IN %s GROUP BY state" % _BUSY_SQL).fetchall())
    return counts.get("PLANNING", 0), counts.get("RUNNING", 0)


# ---- run-after ------------------------------------------------------------

def next_deferred(conn):
    """The earliest run-after time still ahead, or None (one step of a partial index)."""
    row = conn.execute("SELECT run_after FROM workflows WHERE deferred = 1"
                       " ORDER BY run_after LIMIT 1").fetchone()
    return row[0] if row else None


def release_deferred(conn, now):
    """Workflows whose run-after time has come may be planned; -> how many."""
    rows = conn.execute("SELECT id, ensemble_id, state FROM workflows WHERE deferred = 1"
                        " AND run_after <= ?", (now,)).fetchall()
    for wf_id, ensemble_id, state in rows:
        conn.execute("UPDATE workflows SET deferred = 0 WHERE id = ?", (wf_id,))
        if state == WorkflowState.READY:
            add_event(conn, now, ensemble_id, state, state, "run-after time reached",
                      workflow_id=wf_id)
    return len(rows)


# ---- dependencies ---------------------------------------------------------

def find_workflow(conn, ensemble_name, name):
    """(id, ensemble, name, state) of ENSEMBLE.WORKFLOW, or None."""
    return conn.execute("SELECT w.id, e.name, w.name, w.state FROM %s WHERE e.name = ?"
                        " AND w.name = ?" % _WORKFLOW_FROM, (ensemble_name, name)).fetchone()


def dependencies_of(conn, workflow_id):
    """(id, ensemble, name, state) of each workflow it waits for."""
    return conn.execute(
        "SELECT w.id, e.name, w.name, w.state FROM dependencies d"
        " JOIN workflows w ON w.id = d.after_id JOIN ensembles e ON e.id = w.ensemble_id"
        " WHERE d.workflow_id = ? ORDER BY e.name, w.name", (workflow_id,)).fetchall()


def dependents_of(conn, workflow_id, limit=-1):
    """(id, ensemble_id, ensemble, name, state) of the workflows waiting for this one."""
    return conn.execute(
        "SELECT w.id, w.ensemble_id, e.name, w.name, w.state FROM dependencies d"
        " JOIN workflows w ON w.id = d.workflow_id JOIN ensembles e ON e.id = w.ensemble_id"
        " WHERE d.after_id = ? ORDER BY w.id LIMIT ?", (workflow_id, limit)).fetchall()


def reaches(conn, start_ids, target_id):
    """True when `target_id` is among `start_ids` or what they wait for, transitively
    (a new dependency on any of them would close a cycle)."""
    if not start_ids:
        return False
    marks = ",".join("?" * len(start_ids))
    row = conn.execute(
        "WITH RECURSIVE up(id) AS (SELECT id FROM workflows WHERE id IN (%s)"
        " UNION SELECT d.after_id FROM dependencies d JOIN up ON d.workflow_id = up.id)"
        " SELECT 1 FROM up WHERE id = ? LIMIT 1" % marks, list(start_ids) + [target_id]
    ).fetchone()
    return row is not None


def dependency_succeeded(conn, workflow_id):
    """One unmet dependency fewer for each workflow waiting for this one; -> (id,
    ensemble_id) of the READY ones that now wait for nothing."""
    conn.execute("UPDATE workflows SET deps_pending = deps_pending - 1 WHERE id IN"
                 " (SELECT workflow_id FROM dependencies WHERE after_id = ?)", (workflow_id,))
    return conn.execute("SELECT w.id, w.ensemble_id FROM dependencies d JOIN workflows w"
                        " ON w.id = d.workflow_id WHERE d.after_id = ? AND w.deps_pending = 0"
                        " AND w.state = 'READY'", (workflow_id,)).fetchall()


# ---- latency histograms ---------------------------------------------------

BUCKETS = (0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 120.0, 300.0, 600.0, 1800.0,
           3600.0, 7200.0, 21600.0, 86400.0, float("inf"))


def observe(conn, name, seconds):
    """Count one observation in the histogram `name` (a row per bucket)."""
    seconds = max(0.0, seconds)
    le = BUCKETS[bisect.bisect_left(BUCKETS, seconds)]
    if conn.execute("UPDATE latency SET count = count + 1, sum = sum + ? WHERE name = ? AND le = ?",
                    (seconds, name, le)).rowcount == 0:
        conn.execute("INSERT INTO latency (name, le, count, sum) VALUES (?, ?, 1, ?)",
                     (name, le, seconds))


def histograms(conn):
    """name -> ([(le, cumulative count)] for every bucket, count, sum)."""
    raw = {}
    for name, le, count, total in conn.execute("SELECT name, le, count, sum FROM latency"):
        raw.setdefault(name, {})[le] = (count, total)
    out = {}
    for name, by_le in raw.items():
        running, buckets = 0, []
        for le in BUCKETS:
            running += by_le.get(le, (0, 0))[0]
            buckets.append((le, running))
        out[name] = (buckets, running, sum(t for _, t in by_le.values()))
    return out


# ---- notifications --------------------------------------------------------

def set_notify_targets(conn, targets):
    """Replace the (channel, target) pairs notifications are queued for."""
    conn.execute("DELETE FROM notify_targets")
    conn.executemany("INSERT OR IGNORE INTO notify_targets (channel, target) VALUES (?, ?)",
                     list(targets))


def enqueue(conn, kind, now, **fields):
    """Queue a notification for every configured target (none: nothing is written)."""
    payload = json.dumps(dict(fields, event=kind, time=now), sort_keys=True)
    conn.execute("INSERT INTO outbox (channel, target, kind, payload, state, next_try, created,"
                 " updated) SELECT channel, target, ?, ?, 'pending', ?, ?, ? FROM notify_targets",
                 (kind, payload, now, now, now))


_OUTBOX_COLS = "id, channel, target, kind, payload, attempts"


def due_notifications(conn, now, limit=100):
    return conn.execute("SELECT %s FROM outbox WHERE state = 'pending' AND next_try <= ?"
                        " ORDER BY next_try, id LIMIT ?" % _OUTBOX_COLS, (now, limit)).fetchall()


def next_notification_time(conn):
    row = conn.execute("SELECT next_try FROM outbox WHERE state = 'pending'"
                       " ORDER BY next_try LIMIT 1").fetchone()
    return row[0] if row else None


def notification_sent(conn, outbox_id, now):
    conn.execute("UPDATE outbox SET state = 'sent', attempts = attempts + 1, last_error = NULL,"
                 " updated = ? WHERE id = ?", (now, outbox_id))


def notification_failed(conn, outbox_id, now, error, next_try):
    """Another attempt at `next_try`, or (None) none: the notification is failed."""
    conn.execute("UPDATE outbox SET state = ?, attempts = attempts + 1, last_error = ?,"
                 " next_try = coalesce(?, next_try), updated = ? WHERE id = ?",
                 ("pending" if next_try is not None else "failed", error, next_try, now,
                  outbox_id))


def outbox_counts(conn):
    return dict(conn.execute("SELECT state, count(*) FROM outbox GROUP BY state").fetchall())


# ---- the dashboard's views ------------------------------------------------
# What the dashboard shows beyond the API; the order and the reasons a waiting
# workflow waits come from `explain`, as `why` gives them.

_QUEUE_GROUP = ("CASE WHEN w.state IN ('PLANNING', 'RUNNING') THEN 0 WHEN w.state = 'QUEUED'"
                " THEN 1 WHEN w.state = 'READY' AND w.deps_pending = 0 AND w.deferred = 0"
                " THEN 2 WHEN w.state = 'READY' THEN 3 ELSE 4 END")


def queue_page(conn, ensemble_id, limit, offset=0):
    """An ensemble's workflows in queue order: the busy ones (oldest first); QUEUED,
    then READY ones, as the engine takes them (higher priority, then older); READY
    ones waiting for a dependency or a run-after time; then the rest, most recently
    changed first."""
    waiting = "w.state IN ('QUEUED', 'READY')"
    at_rest = "w.state NOT IN %s AND w.state != 'READY'" % _BUSY_SQL
    rows = conn.execute(
        "SELECT %s FROM %s WHERE w.ensemble_id = ? ORDER BY %s, CASE WHEN %s THEN -w.priority"
        " ELSE 0 END, CASE WHEN %s THEN -w.updated ELSE 0 END, CASE WHEN %s THEN -w.id"
        " ELSE w.id END LIMIT ? OFFSET ?" % (_WORKFLOW_COLS, _WORKFLOW_FROM, _QUEUE_GROUP,
                                             waiting, at_rest, at_rest),
        (ensemble_id, limit, offset))
    return [Workflow._make(r) for r in rows]


def _by_ids(conn, sql, ids):
    """Rows of `sql` (with a `%s` for the id list) for many ids, 500 at a time."""
    rows = []
    for start in range(0, len(ids), 500):
        chunk = ids[start:start + 500]
        rows += conn.execute(sql % ",".join("?" * len(chunk)), chunk).fetchall()
    return rows


def workflow_marks(conn, ids):
    """workflow id -> (abort requested, name of the trigger that submitted it or None)."""
    rows = _by_ids(conn, "SELECT w.id, w.abort_requested, t.name FROM workflows w LEFT JOIN"
                   " triggers t ON t.id = w.trigger_id WHERE w.id IN (%s)", ids)
    return {r[0]: (bool(r[1]), r[2]) for r in rows}


def last_events(conn, ids):
    """workflow id -> its newest event (through the per-workflow index)."""
    rows = _by_ids(conn, "SELECT id, time, workflow_id, trigger_id, old_state, new_state,"
                   " reason FROM events WHERE id IN (SELECT max(id) FROM events"
                   " WHERE workflow_id IN (%s) GROUP BY workflow_id)", ids)
    return {r[2]: r for r in rows}


def trigger_states(conn):
    """ensemble id -> {state: number of triggers}."""
    out = {}
    for ensemble_id, state, n in conn.execute(
            "SELECT ensemble_id, state, count(*) FROM triggers GROUP BY ensemble_id, state"):
        out.setdefault(ensemble_id, {})[state] = n
    return out


def trigger_workflow_counts(conn, ensemble_id):
    """trigger id -> how many workflows it submitted (that are still kept)."""
    return dict(conn.execute("SELECT trigger_id, count(*) FROM workflows WHERE ensemble_id = ?"
                             " AND trigger_id IS NOT NULL GROUP BY trigger_id", (ensemble_id,)))


def trigger_workflows(conn, trigger_id):
    """(name, state) of each workflow the trigger submitted, oldest first."""
    return conn.execute("SELECT name, state FROM workflows WHERE trigger_id = ? ORDER BY id",
                        (trigger_id,)).fetchall()


def planned_workflows(conn):
    """(ensemble, name, state, wf_uuid, submitdir, created, updated, reason) of every
    workflow that was planned (it has a submit directory and a wf_uuid)."""
    return conn.execute(
        "SELECT e.name, w.name, w.state, w.wf_uuid, w.submitdir, w.created, w.updated,"
        " w.reason FROM %s WHERE w.submitdir IS NOT NULL AND w.wf_uuid IS NOT NULL"
        % _WORKFLOW_FROM).fetchall()


# ---- explanations and metrics ---------------------------------------------

def queue_ahead(conn, w):
    """How many workflows the engine takes before this READY or QUEUED one:
    higher priority, or the same priority and older (two index range counts)."""
    if w.state == WorkflowState.READY:
        where, params = _ELIGIBLE, [w.ensemble_id]
    else:
        where, params = "state = ? AND state IN %s" % _BUSY_SQL, [w.ensemble_id, w.state]
    sql = ("SELECT (SELECT count(*) FROM workflows WHERE ensemble_id = ? AND %s AND priority > ?)"
           " + (SELECT count(*) FROM workflows WHERE ensemble_id = ? AND %s AND priority = ?"
           " AND id < ?)" % (where, where))
    return conn.execute(sql, params + [w.priority] + params + [w.priority, w.id]).fetchone()[0]


def in_state(conn, state, ensemble_id=None, limit=10):
    """(ensemble, name, state_since) of up to `limit` PLANNING, QUEUED or RUNNING
    workflows, oldest first, and how many there are (of one ensemble, or of all)."""
    where, params = "w.state = ? AND w.state IN %s" % _BUSY_SQL, [state]
    if ensemble_id is not None:
        where += " AND w.ensemble_id = ?"
        params.append(ensemble_id)
    total = conn.execute("SELECT count(*) FROM workflows w WHERE %s" % where, params).fetchone()[0]
    rows = conn.execute("SELECT e.name, w.name, w.state_since FROM %s WHERE %s ORDER BY w.id"
                        " LIMIT ?" % (_WORKFLOW_FROM, where), params + [limit]).fetchall()
    return rows, total


def waiting_counts(conn, ready):
    """ensemble id -> (READY waiting for a dependency, READY waiting for its run-after
    time), given READY per ensemble: READY less the eligible (a covering index) is the
    waiting; those deferred (a small partial index) wait for their time."""
    eligible = dict(conn.execute("SELECT ensemble_id, count(*) FROM workflows INDEXED BY"
                                 " workflows_eligible WHERE %s GROUP BY ensemble_id" % _ELIGIBLE))
    deferred = dict(conn.execute("SELECT ensemble_id, count(*) FROM workflows INDEXED BY"
                                 " workflows_deferred WHERE deferred = 1 AND state = 'READY'"
                                 " GROUP BY ensemble_id"))
    return {e: (n - eligible.get(e, 0) - deferred.get(e, 0), deferred.get(e, 0))
            for e, n in ready.items()}


def last_ensemble_event(conn, ensemble_id):
    """(time, old, new, reason) of the ensemble's last own state change, or None."""
    return conn.execute("SELECT time, old_state, new_state, reason FROM events"
                        " WHERE ensemble_id = ? AND workflow_id IS NULL AND trigger_id IS NULL"
                        " ORDER BY id DESC LIMIT 1", (ensemble_id,)).fetchone()


def workflow_counts(conn):
    """ensemble id -> {state: count}, from the (ensemble_id, state) index alone."""
    out = {}
    for ensemble_id, state, n in conn.execute(
            "SELECT ensemble_id, state, count(*) FROM workflows INDEXED BY workflows_states"
            " GROUP BY ensemble_id, state"):
        out.setdefault(ensemble_id, {})[state] = n
    return out


def trigger_counts(conn):
    """(ensemble, state) -> number of triggers."""
    return {(e, s): n for e, s, n in conn.execute(
        "SELECT e.name, t.state, count(*) FROM %s GROUP BY e.name, t.state" % _TRIGGER_FROM)}


def overdue_triggers(conn, now):
    """(ensemble, trigger, seconds overdue) of live triggers whose firing is late."""
    return conn.execute("SELECT e.name, t.name, ? - t.next_fire FROM %s WHERE t.id IN"
                        " (SELECT id FROM triggers WHERE state IN %s AND next_fire <= ?)"
                        % (_TRIGGER_FROM, _LIVE_SQL), (now, now)).fetchall()


def failing_triggers(conn):
    """(ensemble, trigger, failures in a row) of the live triggers whose firings fail."""
    return conn.execute("SELECT e.name, t.name, t.failures FROM %s WHERE t.id IN"
                        " (SELECT id FROM triggers WHERE state IN %s) AND t.failures > 0"
                        " ORDER BY e.name, t.name" % (_TRIGGER_FROM, _LIVE_SQL)).fetchall()


def last_event_id(conn):
    row = conn.execute("SELECT max(id) FROM events").fetchone()
    return row[0] or 0


# ---- retention ------------------------------------------------------------
# Each function removes one batch (at most `limit` rows) inside the caller's
# transaction and returns what it removed, so no write holds the lock for long.

_FINISHED_SQL = "('SUCCESSFUL', 'ABORTED', 'PLAN_FAILED', 'RUN_FAILED', 'FAILED')"


def remove_finished_workflows(conn, before, limit):
    """Workflows finished before `before`, with their events and dependency rows;
    -> [(ensemble, name)].  Kept whatever their age: the newest workflow and the one
    with the newest event (ids are never given twice), and a failed or aborted one
    that a kept workflow waits for (its dependents count it as unmet)."""
    rows = conn.execute(
        "SELECT w.id, w.ensemble_id, e.name, w.name, w.state FROM workflows w"
        " INDEXED BY workflows_finished JOIN ensembles e ON e.id = w.ensemble_id"
        " WHERE w.state IN %s AND w.state_since < ?"
        " AND w.id < (SELECT max(id) FROM workflows)"
        " AND w.id IS NOT (SELECT workflow_id FROM events ORDER BY id DESC LIMIT 1)"
        " AND (w.state = 'SUCCESSFUL' OR NOT EXISTS"
        " (SELECT 1 FROM dependencies d WHERE d.after_id = w.id))"
        " ORDER BY w.state_since LIMIT ?" % _FINISHED_SQL, (before, limit)).fetchall()
    ids = [(r[0],) for r in rows]
    conn.executemany("DELETE FROM events WHERE workflow_id = ?", ids)
    conn.executemany("DELETE FROM workflows WHERE id = ?", ids)
    for _id, ensemble_id, _e, _n, state in rows:
        _count_removed(conn, ensemble_id, state)
    return [(r[2], r[3]) for r in rows]


def _count_removed(conn, ensemble_id, state):
    if conn.execute("UPDATE removed SET count = count + 1 WHERE ensemble_id = ? AND state = ?",
                    (ensemble_id, state)).rowcount == 0:
        conn.execute("INSERT INTO removed (ensemble_id, state, count) VALUES (?, ?, 1)",
                     (ensemble_id, state))


def remove_old_events(conn, before, limit):
    """Events of ensembles and triggers older than `before` (a workflow's go with it);
    kept: the newest event (ids are never given twice) and the newest of each ensemble
    and of each trigger that still exists, which say why it is in its state."""
    return conn.execute(
        "DELETE FROM events WHERE id IN (SELECT v.id FROM events v INDEXED BY events_unattached"
        " WHERE v.workflow_id IS NULL AND v.time < ? AND v.id < (SELECT max(id) FROM events)"
        " AND (EXISTS (SELECT 1 FROM events n WHERE n.workflow_id IS NULL"
        " AND n.ensemble_id = v.ensemble_id AND n.trigger_id IS v.trigger_id AND n.id > v.id)"
        " OR (v.trigger_id IS NOT NULL AND NOT EXISTS"
        " (SELECT 1 FROM triggers t WHERE t.id = v.trigger_id)))"
        " ORDER BY v.time LIMIT ?)", (before, limit)).rowcount


def done_files(conn, after, limit):
    """(id, path, dev, ino) of done ledger rows after id `after` whose workflow ended
    (or is gone) and whose path no unfinished row names."""
    rows = conn.execute(
        "SELECT f.id, f.path, f.dev, f.ino FROM trigger_files f INDEXED BY trigger_files_done"
        " JOIN triggers t ON t.id = f.trigger_id LEFT JOIN workflows w"
        " ON w.ensemble_id = t.ensemble_id AND w.name = f.workflow"
        " WHERE f.state = 'done' AND f.id > ? AND (w.id IS NULL OR w.state IN %s)"
        " AND NOT EXISTS (SELECT 1 FROM trigger_files o WHERE o.path = f.path"
        " AND o.state != 'done') ORDER BY f.id LIMIT ?" % _FINISHED_SQL, (after, limit))
    return [(i, path, _u64(dev), _u64(ino)) for i, path, dev, ino in rows]


def remove_files(conn, ids):
    conn.executemany("DELETE FROM trigger_files WHERE id = ? AND state = 'done'",
                     [(i,) for i in ids])


def remove_notifications(conn, sent_before, failed_before, limit):
    """Delivered notifications older than `sent_before`, given-up ones older than
    `failed_before`; pending ones never."""
    removed = 0
    for state, before in (("sent", sent_before), ("failed", failed_before)):
        if before is not None:
            removed += conn.execute(
                "DELETE FROM outbox WHERE id IN (SELECT id FROM outbox INDEXED BY outbox_ended"
                " WHERE state != 'pending' AND state = ? AND updated < ? LIMIT ?)",
                (state, before, limit)).rowcount
    return removed


def removed_counts(conn):
    """(ensemble, state) -> workflows removed by retention."""
    return {(e, s): n for e, s, n in conn.execute(
        "SELECT e.name, r.state, r.count FROM removed r JOIN ensembles e ON e.id = r.ensemble_id")}
