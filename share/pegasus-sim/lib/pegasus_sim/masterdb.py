"""The Pegasus master DB (~/.pegasus/workflow.db), written as pegasus-monitord does.

Pegasus's whole schema (schema.py, created if missing, dbversion 14); a
master_workflow row when the DAGMan starts; WORKFLOW_STARTED / _TERMINATED rows
in master_workflowstate (pegasus-facts.md 3.3).  busy_timeout lets many DAGMans share the file.
"""

import os
import sqlite3
import time
from calendar import timegm

from . import osutil, schema

def path_for(props, environ=None):
    """Where monitord would write: the master-url/dashboard properties, else the
    sim override PEGASUS_SIM_MASTER_DB, else ~/.pegasus/workflow.db (passwd home)."""
    environ = os.environ if environ is None else environ
    for key in ("pegasus.catalog.master.url", "pegasus.dashboard.output"):
        url = props.get(key, "")
        if url.startswith("sqlite:///"):
            return url[len("sqlite:///"):]
        if url and "://" not in url:
            return url
    return environ.get("PEGASUS_SIM_MASTER_DB") or os.path.join(osutil.home(), ".pegasus", "workflow.db")


def connect(path):
    """Create dir (0755) and file (0600) like Pegasus, then open with a long busy timeout."""
    os.makedirs(os.path.dirname(os.path.abspath(path)), mode=0o755, exist_ok=True)
    if not os.path.exists(path):
        os.close(os.open(path, os.O_CREAT | os.O_WRONLY, 0o600))
    conn = sqlite3.connect(path, timeout=60, isolation_level=None)
    conn.execute("PRAGMA busy_timeout = 60000")
    conn.execute("PRAGMA foreign_keys = ON")
    _ensure_schema(conn)
    return conn


def _ensure_schema(conn):
    if not schema.complete(conn):
        with _write(conn):
            schema.create(conn)


class _write:
    """BEGIN IMMEDIATE ... COMMIT, rolled back on error."""

    def __init__(self, conn):
        self.conn = conn

    def __enter__(self):
        self.conn.execute("BEGIN IMMEDIATE")

    def __exit__(self, kind, value, tb):
        self.conn.execute("COMMIT" if kind is None else "ROLLBACK")


def plan_epoch(bd):
    """braindump `timestamp` (20230303T222333-0800) as epoch seconds."""
    text = bd.get("timestamp") or ""
    try:
        local = timegm(time.strptime(text[:15], "%Y%m%dT%H%M%S"))
        sign = -1 if text[15] == "-" else 1
        return local - sign * (int(text[16:18]) * 3600 + int(text[18:20]) * 60)
    except (ValueError, IndexError):
        return int(time.time())


def workflow_planned(path, bd):
    """The master_workflow row alone (kept on re-runs), as monitord's first pass writes it
    when pegasus-dagman starts it, before DAGMan parses the DAG; -> its wf_id."""
    conn = connect(path)
    try:
        with _write(conn):
            return _add_workflow(conn, bd)
    finally:
        conn.close()


def _add_workflow(conn, bd):
    conn.execute(
        "INSERT OR IGNORE INTO master_workflow (wf_uuid, dax_label, dax_version, dax_file,"
        " dag_file_name, timestamp, submit_hostname, submit_dir, planner_arguments, user,"
        " grid_dn, planner_version, db_url, archived) VALUES (?,?,?,?,?,?,?,?,NULL,?,?,?,?,0)",
        (bd["wf_uuid"], bd.get("dax_label"), bd.get("dax_version"), bd.get("dax"),
         bd.get("dag"), plan_epoch(bd), bd.get("submit_hostname"), bd.get("submit_dir"),
         bd.get("user"), bd.get("grid_dn"), bd.get("planner_version"), stampede_url(bd)))
    return _wf_id(conn, bd["wf_uuid"])


def workflow_started(path, bd, restart_count, now=None):
    """master_workflow row (kept on re-runs) + WORKFLOW_STARTED; returns the row's timestamp."""
    conn = connect(path)
    try:
        with _write(conn):
            wf_id = _add_workflow(conn, bd)
            ts = _next_ts(conn, wf_id, now)
            conn.execute("INSERT INTO master_workflowstate (wf_id, state, timestamp, restart_count,"
                         " status, reason) VALUES (?, 'WORKFLOW_STARTED', ?, ?, NULL, NULL)",
                         (wf_id, ts, restart_count))
        return ts
    finally:
        conn.close()


def workflow_terminated(path, wf_uuid, restart_count, status, now=None, reason=None):
    conn = connect(path)
    try:
        with _write(conn):
            wf_id = _wf_id(conn, wf_uuid)
            last = conn.execute("SELECT max(timestamp) FROM master_workflowstate WHERE wf_id = ?"
                                " AND state = 'WORKFLOW_STARTED'", (wf_id,)).fetchone()[0]
            ts = max(int(now or time.time()), int(last or 0))
            conn.execute("INSERT OR REPLACE INTO master_workflowstate (wf_id, state, timestamp,"
                         " restart_count, status, reason) VALUES (?, 'WORKFLOW_TERMINATED', ?, ?, ?, ?)",
                         (wf_id, ts, restart_count, status, reason))
    finally:
        conn.close()


def _wf_id(conn, wf_uuid):
    return conn.execute("SELECT wf_id FROM master_workflow WHERE wf_uuid = ?", (wf_uuid,)).fetchone()[0]


def _next_ts(conn, wf_id, now):
    """Whole seconds like monitord; a fast re-run never lands on an earlier row's second."""
    last = conn.execute("SELECT max(timestamp) FROM master_workflowstate WHERE wf_id = ?",
                        (wf_id,)).fetchone()[0]
    ts = int(now or time.time())
    return ts if last is None or ts > int(last) else int(last) + 1


def stampede_url(bd):
    return "sqlite:///%s/%s-%s.stampede.db" % (bd.get("submit_dir"), bd.get("dax_label"),
                                               bd.get("dax_index", "0"))
