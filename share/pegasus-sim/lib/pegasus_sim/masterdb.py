"""The Pegasus master DB (~/.pegasus/workflow.db), written as pegasus-monitord does.

Full master DDL of pegasus-facts.md 3.2 (created if missing, dbversion '14'); a
master_workflow row when the DAGMan starts; WORKFLOW_STARTED / _TERMINATED rows
in master_workflowstate (3.3).  busy_timeout lets many DAGMans share the file.
"""

import os
import sqlite3
import time
from calendar import timegm

from . import osutil

DDL = [
    """CREATE TABLE IF NOT EXISTS dbversion (
  id INTEGER NOT NULL PRIMARY KEY AUTOINCREMENT, version_number INTEGER,
  version VARCHAR(50) NOT NULL, version_timestamp INTEGER NOT NULL)""",
    """CREATE TABLE IF NOT EXISTS master_workflow (
  wf_id INTEGER NOT NULL, wf_uuid VARCHAR(255) NOT NULL, dax_label VARCHAR(255), dax_version VARCHAR(255),
  dax_file VARCHAR(255), dag_file_name VARCHAR(255), timestamp NUMERIC(16, 6), submit_hostname VARCHAR(255),
  submit_dir TEXT, planner_arguments TEXT, user VARCHAR(255), grid_dn VARCHAR(255), planner_version VARCHAR(255),
  db_url TEXT, archived BOOLEAN NOT NULL,
  PRIMARY KEY (wf_id), CONSTRAINT "UNIQUE_MASTER_WF_UUID" UNIQUE (wf_uuid))""",
    """CREATE TABLE IF NOT EXISTS master_workflowstate (
  wf_id INTEGER NOT NULL, state VARCHAR(19) NOT NULL,
  timestamp NUMERIC(16, 6) NOT NULL, restart_count INTEGER NOT NULL, status INTEGER, reason TEXT,
  PRIMARY KEY (wf_id, state, timestamp),
  FOREIGN KEY(wf_id) REFERENCES master_workflow (wf_id) ON DELETE CASCADE)""",
    """CREATE TABLE IF NOT EXISTS ensemble (
  id INTEGER NOT NULL, name VARCHAR(100) NOT NULL, created DATETIME NOT NULL, updated DATETIME NOT NULL,
  state VARCHAR(6) NOT NULL,
  max_running INTEGER NOT NULL, max_planning INTEGER NOT NULL, username VARCHAR(100) NOT NULL,
  PRIMARY KEY (id), CONSTRAINT "UNIQUE_ENSEMBLE" UNIQUE (name, username))""",
    """CREATE TABLE IF NOT EXISTS ensemble_workflow (
  id INTEGER NOT NULL, ensemble_id INTEGER NOT NULL, name VARCHAR(100) NOT NULL, basedir VARCHAR(512) NOT NULL,
  created DATETIME NOT NULL, updated DATETIME NOT NULL,
  state VARCHAR(11) NOT NULL,
  priority INTEGER NOT NULL, wf_uuid VARCHAR(36), submitdir VARCHAR(512), plan_command VARCHAR(1024) NOT NULL,
  PRIMARY KEY (id), FOREIGN KEY(ensemble_id) REFERENCES ensemble (id),
  CONSTRAINT "UNIQUE_ENSEMBLE_WORKFLOW" UNIQUE (ensemble_id, name))""",
    """CREATE TABLE IF NOT EXISTS "trigger" (
  id INTEGER NOT NULL, ensemble_id INTEGER NOT NULL, name VARCHAR(100) NOT NULL,
  state VARCHAR(7) NOT NULL,
  workflow TEXT NOT NULL, args TEXT, type VARCHAR(12) NOT NULL,
  PRIMARY KEY (id), FOREIGN KEY(ensemble_id) REFERENCES ensemble (id),
  CONSTRAINT "UNIQUE_TRIGGER" UNIQUE (ensemble_id, name))""",
]
TABLES = ("dbversion", "master_workflow", "master_workflowstate", "ensemble",
          "ensemble_workflow", "trigger")
VERSION = 14


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
    have = {r[0] for r in conn.execute("SELECT name FROM sqlite_master WHERE type='table'")}
    if set(TABLES) <= have and conn.execute("SELECT 1 FROM dbversion LIMIT 1").fetchone():
        return
    with _write(conn):
        for statement in DDL:
            conn.execute(statement)
        if not conn.execute("SELECT 1 FROM dbversion LIMIT 1").fetchone():
            conn.execute("INSERT INTO dbversion (version_number, version, version_timestamp)"
                         " VALUES (?, ?, ?)", (VERSION, str(VERSION), int(time.time())))


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


def workflow_terminated(path, wf_uuid, restart_count, status, now=None):
    conn = connect(path)
    try:
        with _write(conn):
            wf_id = _wf_id(conn, wf_uuid)
            last = conn.execute("SELECT max(timestamp) FROM master_workflowstate WHERE wf_id = ?"
                                " AND state = 'WORKFLOW_STARTED'", (wf_id,)).fetchone()[0]
            ts = max(int(now or time.time()), int(last or 0))
            conn.execute("INSERT OR REPLACE INTO master_workflowstate (wf_id, state, timestamp,"
                         " restart_count, status, reason) VALUES (?, 'WORKFLOW_TERMINATED', ?, ?, ?, NULL)",
                         (wf_id, ts, restart_count, status))
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
