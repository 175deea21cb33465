"""The STAMPEDE DB of a run, `<submit_dir>/<label>-0.stampede.db`, written as monitord does.

The tables the dashboard and pegasus-statistics read (pegasus-facts.md 3.5), with
the real column sets, keys and unique indexes, and a `dbversion` row '14'.  The
root workflow and its sub-workflows share the root's file, as with monitord.
Writes are short BEGIN IMMEDIATE transactions with a long busy timeout, so a
dashboard may read the file while a DAGMan writes it.
"""

import os
import sqlite3
import sys
import time

from . import osutil
from .masterdb import plan_epoch

VERSION = 14

DDL = [
    """CREATE TABLE IF NOT EXISTS dbversion (
  id INTEGER NOT NULL PRIMARY KEY AUTOINCREMENT, version_number INTEGER,
  version VARCHAR(50) NOT NULL, version_timestamp INTEGER NOT NULL)""",
    """CREATE TABLE IF NOT EXISTS workflow (
  wf_id INTEGER NOT NULL, wf_uuid VARCHAR(255) NOT NULL, dag_file_name VARCHAR(255),
  timestamp NUMERIC(16, 6), submit_hostname VARCHAR(255), submit_dir TEXT, planner_arguments TEXT,
  user VARCHAR(255), grid_dn VARCHAR(255), planner_version VARCHAR(255), dax_label VARCHAR(255),
  dax_version VARCHAR(255), dax_file VARCHAR(255), db_url TEXT, parent_wf_id INTEGER,
  root_wf_id INTEGER,
  PRIMARY KEY (wf_id), CONSTRAINT "UNIQUE_WF_UUID" UNIQUE (wf_uuid),
  FOREIGN KEY(parent_wf_id) REFERENCES workflow (wf_id) ON DELETE CASCADE)""",
    """CREATE TABLE IF NOT EXISTS workflowstate (
  wf_id INTEGER NOT NULL, state VARCHAR(255) NOT NULL, timestamp NUMERIC(16, 6) NOT NULL,
  restart_count INTEGER NOT NULL, status INTEGER, reason TEXT,
  PRIMARY KEY (wf_id, state, timestamp),
  FOREIGN KEY(wf_id) REFERENCES workflow (wf_id) ON DELETE CASCADE)""",
    """CREATE TABLE IF NOT EXISTS workflow_meta (
  wf_id INTEGER NOT NULL, "key" VARCHAR(255) NOT NULL, value VARCHAR(255) NOT NULL,
  PRIMARY KEY (wf_id, "key"), FOREIGN KEY(wf_id) REFERENCES workflow (wf_id) ON DELETE CASCADE)""",
    """CREATE TABLE IF NOT EXISTS host (
  host_id INTEGER NOT NULL, wf_id INTEGER NOT NULL, site VARCHAR(255) NOT NULL,
  hostname VARCHAR(255) NOT NULL, ip VARCHAR(255) NOT NULL, uname VARCHAR(255), total_memory INTEGER,
  PRIMARY KEY (host_id), CONSTRAINT "UNIQUE_HOST" UNIQUE (wf_id, site, hostname, ip),
  FOREIGN KEY(wf_id) REFERENCES workflow (wf_id) ON DELETE CASCADE)""",
    """CREATE TABLE IF NOT EXISTS job (
  job_id INTEGER NOT NULL, wf_id INTEGER NOT NULL, exec_job_id VARCHAR(255) NOT NULL,
  submit_file VARCHAR(255) NOT NULL, type_desc VARCHAR(255) NOT NULL, clustered BOOLEAN NOT NULL,
  max_retries INTEGER NOT NULL, executable TEXT NOT NULL, argv TEXT, task_count INTEGER NOT NULL,
  PRIMARY KEY (job_id), CONSTRAINT "UNIQUE_JOB" UNIQUE (wf_id, exec_job_id),
  FOREIGN KEY(wf_id) REFERENCES workflow (wf_id) ON DELETE CASCADE)""",
    """CREATE TABLE IF NOT EXISTS job_edge (
  wf_id INTEGER NOT NULL, parent_exec_job_id VARCHAR(255) NOT NULL,
  child_exec_job_id VARCHAR(255) NOT NULL,
  PRIMARY KEY (wf_id, parent_exec_job_id, child_exec_job_id),
  FOREIGN KEY(wf_id) REFERENCES workflow (wf_id) ON DELETE CASCADE)""",
    """CREATE TABLE IF NOT EXISTS job_instance (
  job_instance_id INTEGER NOT NULL, job_id INTEGER NOT NULL, host_id INTEGER,
  job_submit_seq INTEGER NOT NULL, sched_id VARCHAR(255), site VARCHAR(255), user VARCHAR(255),
  work_dir TEXT, cluster_start NUMERIC(16, 6), cluster_duration NUMERIC(10, 3),
  local_duration NUMERIC(10, 3), subwf_id INTEGER, stdout_file VARCHAR(255), stdout_text TEXT,
  stderr_file VARCHAR(255), stderr_text TEXT, stdin_file VARCHAR(255),
  multiplier_factor INTEGER NOT NULL, exitcode INTEGER,
  PRIMARY KEY (job_instance_id), CONSTRAINT "UNIQUE_JOB_INSTANCE" UNIQUE (job_id, job_submit_seq),
  FOREIGN KEY(job_id) REFERENCES job (job_id) ON DELETE CASCADE,
  FOREIGN KEY(host_id) REFERENCES host (host_id) ON DELETE SET NULL,
  FOREIGN KEY(subwf_id) REFERENCES workflow (wf_id) ON DELETE SET NULL)""",
    """CREATE TABLE IF NOT EXISTS jobstate (
  job_instance_id INTEGER NOT NULL, state VARCHAR(255) NOT NULL, timestamp NUMERIC(16, 6) NOT NULL,
  jobstate_submit_seq INTEGER NOT NULL, reason TEXT,
  PRIMARY KEY (job_instance_id, state, timestamp),
  FOREIGN KEY(job_instance_id) REFERENCES job_instance (job_instance_id) ON DELETE CASCADE)""",
    """CREATE TABLE IF NOT EXISTS task (
  task_id INTEGER NOT NULL, job_id INTEGER, wf_id INTEGER NOT NULL, abs_task_id VARCHAR(255),
  transformation TEXT NOT NULL, argv TEXT, type_desc VARCHAR(255) NOT NULL,
  PRIMARY KEY (task_id), CONSTRAINT "UNIQUE_TASK" UNIQUE (wf_id, abs_task_id),
  FOREIGN KEY(job_id) REFERENCES job (job_id) ON DELETE SET NULL,
  FOREIGN KEY(wf_id) REFERENCES workflow (wf_id) ON DELETE CASCADE)""",
    """CREATE TABLE IF NOT EXISTS task_meta (
  task_id INTEGER NOT NULL, "key" VARCHAR(255) NOT NULL, value VARCHAR(255) NOT NULL,
  PRIMARY KEY (task_id, "key"), FOREIGN KEY(task_id) REFERENCES task (task_id) ON DELETE CASCADE)""",
    """CREATE TABLE IF NOT EXISTS invocation (
  invocation_id INTEGER NOT NULL, wf_id INTEGER NOT NULL, job_instance_id INTEGER NOT NULL,
  task_submit_seq INTEGER NOT NULL, start_time NUMERIC(16, 6) NOT NULL,
  remote_duration NUMERIC(10, 3), remote_cpu_time NUMERIC(10, 3), exitcode INTEGER NOT NULL,
  transformation TEXT NOT NULL, executable TEXT NOT NULL, argv TEXT, abs_task_id VARCHAR(255),
  maxrss INTEGER, avg_cpu NUMERIC(16, 6),
  PRIMARY KEY (invocation_id),
  CONSTRAINT "UNIQUE_INVOCATION" UNIQUE (job_instance_id, task_submit_seq),
  FOREIGN KEY(wf_id) REFERENCES workflow (wf_id) ON DELETE CASCADE,
  FOREIGN KEY(job_instance_id) REFERENCES job_instance (job_instance_id) ON DELETE CASCADE)""",
    'CREATE INDEX IF NOT EXISTS "job_type_desc_COL" ON job (type_desc)',
    'CREATE INDEX IF NOT EXISTS "task_abs_task_id_COL" ON task (abs_task_id)',
    'CREATE INDEX IF NOT EXISTS "invoc_wf_id_COL" ON invocation (wf_id)',
]
TABLES = ("dbversion", "workflow", "workflowstate", "workflow_meta", "host", "job", "job_edge",
          "job_instance", "jobstate", "task", "task_meta", "invocation")


def path_of(bd):
    """Where the root's STAMPEDE DB lives (the master DB's db_url names this file)."""
    return os.path.join(bd["submit_dir"], "%s-%s.stampede.db" % (bd["dax_label"], bd.get("dax_index", "0")))


class Job:
    """What the writer needs to know of one DAG node."""

    __slots__ = ("name", "type_desc", "transformation", "task_id", "executable", "argv", "max_retries")

    def __init__(self, name, type_desc, transformation, task_id, executable, argv, max_retries=0):
        self.name, self.type_desc, self.transformation = name, type_desc, transformation
        self.task_id, self.executable, self.argv, self.max_retries = task_id, executable, argv, max_retries


class Stampede:
    """One run's writer.  Every failure is logged and swallowed: monitord carries on too."""

    def __init__(self, path):
        self.path = path
        self.conn = None
        self.broken = False

    def _connect(self):
        if self.conn is None:
            if not os.path.exists(self.path):
                self._create()
            self.conn = sqlite3.connect(self.path, timeout=60, isolation_level=None)
            self.conn.execute("PRAGMA busy_timeout = 60000")
            self.conn.execute("PRAGMA foreign_keys = ON")
            have = {r[0] for r in self.conn.execute("SELECT name FROM sqlite_master WHERE type='table'")}
            if not set(TABLES) <= have:
                self._write(self._schema)
        return self.conn

    def _create(self):
        """The file appears with its whole schema (built aside, then renamed), so a reader
        that follows the master DB's db_url never finds it empty."""
        tmp = "%s.tmp.%d" % (self.path, os.getpid())
        conn = sqlite3.connect(tmp, isolation_level=None)
        try:
            conn.execute("BEGIN")
            self._schema(conn)
            conn.execute("COMMIT")
        finally:
            conn.close()
        os.chmod(tmp, 0o644)
        try:
            os.link(tmp, self.path)  # never replaces a file another DAGMan made meanwhile
        except FileExistsError:
            pass
        except OSError:  # a filesystem without hard links
            if not os.path.exists(self.path):
                os.replace(tmp, self.path)
        finally:
            if os.path.exists(tmp):
                os.unlink(tmp)

    def prepare(self):
        """Create the file (with its schema) now; False if that failed."""
        return self.call(lambda conn: True) is True

    def _schema(self, conn):
        for statement in DDL:
            conn.execute(statement)
        if not conn.execute("SELECT 1 FROM dbversion LIMIT 1").fetchone():
            conn.execute("INSERT INTO dbversion (version_number, version, version_timestamp) VALUES (?, ?, ?)",
                         (VERSION, str(VERSION), int(time.time())))

    def _write(self, fn, *args):
        conn = self.conn
        conn.execute("BEGIN IMMEDIATE")
        try:
            result = fn(conn, *args)
        except BaseException:
            conn.execute("ROLLBACK")
            raise
        conn.execute("COMMIT")
        return result

    def call(self, fn, *args):
        """fn(conn, *args) in one transaction; None (and a note on stderr) on any DB error."""
        if self.broken:
            return None
        try:
            self._connect()
            return self._write(fn, *args)
        except Exception as e:  # noqa: BLE001 - the run goes on without its DB, as with monitord
            sys.stderr.write("pegasus-sim: STAMPEDE DB %s: %s\n" % (self.path, e))
            return None

    def close(self):
        if self.conn is not None:
            self.conn.close()
            self.conn = None

    # -- workflows ------------------------------------------------------------------

    def workflow(self, bd, jobs, parent_wf_id=None, root_wf_id=None):
        """The workflow row (kept across re-runs), its jobs, tasks and edges -> wf_id."""
        return self.call(_workflow, bd, jobs, parent_wf_id, root_wf_id)

    def workflow_state(self, wf_id, state, ts, restart_count, status=None, reason=None):
        self.call(lambda c: c.execute(
            "INSERT OR REPLACE INTO workflowstate (wf_id, state, timestamp, restart_count, status, reason)"
            " VALUES (?, ?, ?, ?, ?, ?)", (wf_id, state, ts, restart_count, status, reason)))

    def job_ids(self, wf_id):
        return self.call(lambda c: dict(c.execute("SELECT exec_job_id, job_id FROM job WHERE wf_id = ?",
                                                  (wf_id,)))) or {}

    def host(self, wf_id, site):
        """host_id of this machine at `site` (one row per workflow, site and host)."""
        def add(c):
            name = osutil.hostname()
            c.execute("INSERT OR IGNORE INTO host (wf_id, site, hostname, ip, uname, total_memory)"
                      " VALUES (?, ?, ?, '127.0.0.1', ?, ?)", (wf_id, site, name, _uname(), _memory()))
            return c.execute("SELECT host_id FROM host WHERE wf_id = ? AND site = ? AND hostname = ?",
                             (wf_id, site, name)).fetchone()[0]
        return self.call(add)

    # -- job instances -----------------------------------------------------------------

    def submit(self, job_id, seq, sched_id, site, work_dir, out_file, err_file, ts):
        """A new job_instance (try number `seq`) and its SUBMIT state -> job_instance_id."""
        def add(c):
            cur = c.execute(
                "INSERT INTO job_instance (job_id, job_submit_seq, sched_id, site, user, work_dir,"
                " stdout_file, stderr_file, multiplier_factor) VALUES (?, ?, ?, ?, ?, ?, ?, ?, 1)",
                (job_id, seq, sched_id, site, osutil.user(), work_dir, out_file, err_file))
            _state(c, cur.lastrowid, "SUBMIT", ts)
            return cur.lastrowid
        return self.call(add)

    def states(self, ji, names, ts, reason=None):
        if ji is not None:
            self.call(lambda c: [_state(c, ji, name, ts, reason) for name in names])

    def update(self, ji, **fields):
        if ji is not None and fields:
            self.call(lambda c: c.execute("UPDATE job_instance SET %s WHERE job_instance_id = ?"
                                          % ", ".join("%s = ?" % k for k in fields),
                                          list(fields.values()) + [ji]))

    def invocation(self, wf_id, ji, job, start, duration, exitcode):
        def add(c):
            c.execute("INSERT OR REPLACE INTO invocation (wf_id, job_instance_id, task_submit_seq, start_time,"
                      " remote_duration, remote_cpu_time, exitcode, transformation, executable, argv,"
                      " abs_task_id, maxrss, avg_cpu) VALUES (?, ?, 1, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
                      (wf_id, ji, start, round(duration, 3), round(duration * 0.8, 3), exitcode,
                       job.transformation, job.executable, job.argv, job.task_id, 2048 + 512 * (ji % 7),
                       0.8))
        self.call(add)


def _workflow(c, bd, jobs, parent_wf_id, root_wf_id):
    c.execute("INSERT OR IGNORE INTO workflow (wf_uuid, dag_file_name, timestamp, submit_hostname, submit_dir,"
              " planner_arguments, user, grid_dn, planner_version, dax_label, dax_version, dax_file, db_url,"
              " parent_wf_id, root_wf_id) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
              (bd["wf_uuid"], bd.get("dag"), plan_epoch(bd), bd.get("submit_hostname"), bd.get("submit_dir"),
               bd.get("planner_arguments"), bd.get("user"), bd.get("grid_dn"), bd.get("planner_version"),
               bd.get("dax_label"), bd.get("dax_version"), bd.get("dax"), bd.get("db_url"),
               parent_wf_id, root_wf_id))
    wf_id = c.execute("SELECT wf_id FROM workflow WHERE wf_uuid = ?", (bd["wf_uuid"],)).fetchone()[0]
    if root_wf_id is None:  # a root workflow is its own root
        c.execute("UPDATE workflow SET root_wf_id = ? WHERE wf_id = ?", (wf_id, wf_id))
    for job in jobs:
        cur = c.execute("INSERT OR IGNORE INTO job (wf_id, exec_job_id, submit_file, type_desc, clustered,"
                        " max_retries, executable, argv, task_count) VALUES (?, ?, ?, ?, 0, ?, ?, ?, ?)",
                        (wf_id, job.name, "00/00/%s.sub" % job.name, job.type_desc, job.max_retries,
                         job.executable, job.argv, 1 if job.task_id else 0))
        if cur.rowcount and job.task_id:
            c.execute("INSERT OR IGNORE INTO task (job_id, wf_id, abs_task_id, transformation, argv, type_desc)"
                      " VALUES (?, ?, ?, ?, ?, ?)", (cur.lastrowid, wf_id, job.task_id, job.transformation,
                                                     job.argv, job.type_desc))
    c.executemany("INSERT OR IGNORE INTO job_edge (wf_id, parent_exec_job_id, child_exec_job_id) VALUES (?, ?, ?)",
                  [(wf_id, a.name, b.name) for a, b in zip(jobs, jobs[1:])])
    return wf_id


def _state(c, ji, name, ts, reason=None):
    seq = c.execute("SELECT count(*) + 1 FROM jobstate WHERE job_instance_id = ?", (ji,)).fetchone()[0]
    c.execute("INSERT OR REPLACE INTO jobstate (job_instance_id, state, timestamp, jobstate_submit_seq, reason)"
              " VALUES (?, ?, ?, ?, ?)", (ji, name, ts, seq, reason))


def _uname():
    u = os.uname()
    return "%s-%s-%s" % (u.sysname.lower(), u.release, u.machine)


def _memory():
    try:
        return os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES") // 1024
    except (ValueError, OSError):
        return None
