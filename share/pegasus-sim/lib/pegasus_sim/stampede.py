"""The STAMPEDE DB of a run, `<submit_dir>/<label>-0.stampede.db`, written as monitord does.

Pegasus's whole schema and version row (schema.py), filled as monitord fills it
(pegasus-facts.md 3.5).  The root workflow and its sub-workflows share the root's file, as with monitord.
Writes are short BEGIN IMMEDIATE transactions with a long busy timeout, so a
dashboard may read the file while a DAGMan writes it.
"""

import os
import sqlite3
import sys

from . import schema
from .masterdb import plan_epoch

def path_of(bd):
    """Where the root's STAMPEDE DB lives (the master DB's db_url names this file)."""
    return os.path.join(bd["submit_dir"], "%s-%s.stampede.db" % (bd["dax_label"], bd.get("dax_index", "0")))


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
            if not schema.complete(self.conn):
                self._write(schema.create)
        return self.conn

    def _create(self):
        """The file appears with its whole schema (built aside, then renamed), so a reader
        that follows the master DB's db_url never finds it empty."""
        tmp = "%s.tmp.%d" % (self.path, os.getpid())
        conn = sqlite3.connect(tmp, isolation_level=None)
        try:
            conn.execute("BEGIN")
            schema.create(conn)
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

    def workflow(self, bd, static_events, parent_wf_id=None):
        """The workflow row (kept across re-runs) and, the first time, what static.bp describes -> wf_id."""
        return self.call(_workflow, bd, static_events, parent_wf_id)

    def workflow_state(self, wf_id, state, ts, restart_count, status=None, reason=None):
        self.call(lambda c: c.execute(
            "INSERT INTO workflowstate (wf_id, state, timestamp, restart_count, status, reason)"
            " VALUES (?, ?, ?, ?, ?, ?)", (wf_id, state, ts, restart_count, status, reason)))

    def job_ids(self, wf_id):
        return self.call(lambda c: dict(c.execute("SELECT exec_job_id, job_id FROM job WHERE wf_id = ?",
                                                  (wf_id,)))) or {}

    # -- job instances -----------------------------------------------------------------

    def submit(self, job_id, seq, sched_id, site, ts):
        """A new job_instance (try number `seq`) and its SUBMIT state -> job_instance_id."""
        def add(c):
            cur = c.execute("INSERT INTO job_instance (job_id, job_submit_seq, sched_id, site, multiplier_factor)"
                            " VALUES (?, ?, ?, ?, 1)", (job_id, seq, sched_id, site))
            _state(c, cur.lastrowid, "SUBMIT", ts)
            return cur.lastrowid
        return self.call(add)

    def states(self, ji, names, ts, reason=None, skip=0):
        if ji is not None:
            self.call(lambda c: [_state(c, ji, name, ts, reason, skip) for name in names])

    def update(self, ji, **fields):
        if ji is not None and fields:
            self.call(lambda c: c.execute("UPDATE job_instance SET %s WHERE job_instance_id = ?"
                                          % ", ".join("%s = ?" % k for k in fields),
                                          list(fields.values()) + [ji]))

    def invocations(self, wf_id, ji, rows):
        """Invocation rows of one try: (task_submit_seq, start, duration, cpu, exitcode, transformation,
        executable, argv, abs_task_id), in the order monitord adds them (main job, then POST script)."""
        if ji is not None:
            self.call(lambda c: c.executemany(
                "INSERT INTO invocation (wf_id, job_instance_id, task_submit_seq, start_time, remote_duration,"
                " remote_cpu_time, exitcode, transformation, executable, argv, abs_task_id)"
                " VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)", [(wf_id, ji) + tuple(r) for r in rows]))


def _workflow(c, bd, events, parent_wf_id):
    """monitord's wf.plan event, then (on the first run only) the static.bp events."""
    c.execute("INSERT OR IGNORE INTO workflow (wf_uuid, dag_file_name, timestamp, submit_hostname, submit_dir,"
              " planner_arguments, user, grid_dn, planner_version, dax_label, dax_version, dax_file,"
              " parent_wf_id) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
              (bd["wf_uuid"], bd.get("dag"), plan_epoch(bd), bd.get("submit_hostname"), bd.get("submit_dir"),
               planner_arguments(bd), bd.get("user"), bd.get("grid_dn"), bd.get("planner_version"),
               bd.get("dax_label"), bd.get("dax_version"), bd.get("dax"), parent_wf_id))
    wf_id = c.execute("SELECT wf_id FROM workflow WHERE wf_uuid = ?", (bd["wf_uuid"],)).fetchone()[0]
    root = c.execute("SELECT wf_id FROM workflow WHERE wf_uuid = ?", (bd["root_wf_uuid"],)).fetchone()
    c.execute("UPDATE workflow SET root_wf_id = ? WHERE wf_id = ?", (root[0] if root else wf_id, wf_id))
    if not c.execute("SELECT 1 FROM job WHERE wf_id = ? LIMIT 1", (wf_id,)).fetchone():
        for event, fields in events:
            if event in STATIC:
                STATIC[event](c, wf_id, fields)
    return wf_id


def planner_arguments(bd):
    """braindump keeps the planner's arguments quoted, with a trailing blank; monitord stores them bare."""
    text = bd.get("planner_arguments")
    return text.strip('"').strip() if text else text


def _task(c, wf_id, f):
    c.execute("INSERT INTO task (wf_id, abs_task_id, transformation, argv, type_desc) VALUES (?, ?, ?, ?, ?)",
              (wf_id, f["task.id"], f.get("transformation"), f.get("argv"), f.get("type_desc")))


def _job(c, wf_id, f):
    c.execute("INSERT INTO job (wf_id, exec_job_id, submit_file, type_desc, clustered, max_retries, executable,"
              " argv, task_count) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)",
              (wf_id, f["job.id"], f["submit_file"], f["type_desc"], int(f.get("clustered", 0)),
               int(f.get("max_retries", 0)), f["executable"], f.get("argv"), int(f.get("task_count", 0))))


STATIC = {
    "task.info": _task,
    "task.edge": lambda c, wf_id, f: c.execute(
        "INSERT INTO task_edge (wf_id, parent_abs_task_id, child_abs_task_id) VALUES (?, ?, ?)",
        (wf_id, f["parent.task.id"], f["child.task.id"])),
    "xwf.meta": lambda c, wf_id, f: c.execute(
        'INSERT INTO workflow_meta (wf_id, "key", value) VALUES (?, ?, ?)', (wf_id, f["key"], f["value"])),
    "job.info": _job,
    "wf.map.task_job": lambda c, wf_id, f: c.execute(
        "UPDATE task SET job_id = (SELECT job_id FROM job WHERE wf_id = ? AND exec_job_id = ?)"
        " WHERE wf_id = ? AND abs_task_id = ?", (wf_id, f["job.id"], wf_id, f["task.id"])),
    "job.edge": lambda c, wf_id, f: c.execute(
        "INSERT INTO job_edge (wf_id, parent_exec_job_id, child_exec_job_id) VALUES (?, ?, ?)",
        (wf_id, f["parent.job.id"], f["child.job.id"])),
}


def _state(c, ji, name, ts, reason=None, skip=0):
    """A jobstate row numbered as its jobstate.log line; `skip`: lines before it that monitord keeps
    out of the DB (JOB_HELD then JOB_HELD_REASON make one JOB_HELD row, numbered as the second)."""
    seq = c.execute("SELECT coalesce(max(jobstate_submit_seq), 0) + 1 + ? FROM jobstate"
                    " WHERE job_instance_id = ?", (skip, ji)).fetchone()[0]
    c.execute("INSERT OR REPLACE INTO jobstate (job_instance_id, state, timestamp, jobstate_submit_seq, reason)"
              " VALUES (?, ?, ?, ?, ?)", (ji, name, ts, seq, reason))
