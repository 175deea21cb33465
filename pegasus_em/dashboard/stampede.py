"""What the dashboard reads from a user's Pegasus databases, read-only: the root
workflows of the master DB with their real state, and from each STAMPEDE DB the
workflows, jobs, instances, invocations and the statistics and chart data.

States and counts follow the Pegasus dashboard (pegasus-facts §3.6) and fix it:
every root workflow is listed (a workflow with no state row is "not started",
not hidden), and a workflow whose last state is WORKFLOW_STARTED is checked
against its files, so a DAGMan that died is "failed", not running forever.
Jobs are judged by their latest instance (highest job_submit_seq).

Older schemas: optional columns missing from a table are read as NULL; a
missing table or key column raises `SchemaProblem` naming it.
"""

import collections
import os
import re
import sqlite3
import threading
import time
import urllib.parse

from ..core import dagstate
from ..errors import EMError, NotFound
from .masterdb import MASTER_DB, Connections, Unavailable, stampede_path
from .. import owned
from ..owned import reader_uid

RUNNING, SUCCESSFUL, FAILED, DIED, NOT_STARTED = (
    "running", "successful", "failed", "died", "not-started")
LIST_STATES = (RUNNING, SUCCESSFUL, FAILED, DIED, NOT_STARTED)
JOB_KINDS = ("failed", "failing", "running", "successful")
SUB_TYPES = ("dag", "dax")
WATCH_CACHE = 512  # running workflows whose dagman.out is followed
CACHE_ENTRIES = 16  # query results kept per thread
_HAY = ("dax_label", "submit_dir", "submit_hostname", "wf_uuid")  # what the text filter reads
ROOT_FIELDS = ("wf_id", "wf_uuid", "dax_label", "submit_hostname", "submit_dir", "timestamp",
               "dag_file_name", "user", "db_url", "planner_version", "archived")
# Pegasus release of each schema version the dashboard may meet (pegasus-db-admin's table)
SCHEMA_RELEASES = {"1": "4.3", "2": "4.4", "4": "4.5", "5": "4.5.4", "6": "4.6", "8": "4.7/4.8",
                   "11": "4.9", "13": "5.0", "14": "5.1"}
# What pegasus-monitord's quote() leaves: printable ASCII but ' " %, and %XX escapes.
_QUOTED = re.compile(r"(?:[ !#$&(-~]|%[0-9A-Fa-f]{2})*\Z")


class SchemaProblem(EMError):
    """A database without what the dashboard needs (older or foreign schema)."""
    status = 200


def decode_output(text):
    """Job output as pegasus-monitord stored it (URL-quoted, pegasus-facts §7) made readable,
    as Pegasus's utils.unquote does; text that cannot be quoted output (a raw newline, a
    quote, a lone %) is legacy unquoted text and is shown as it is."""
    if not text or not _QUOTED.match(text):
        return text
    return urllib.parse.unquote_to_bytes(text).decode("utf-8", "replace")


def schema_version(db):
    """'schema version 11 (Pegasus 4.9)' from the dbversion table, or None."""
    try:
        db.columns("dbversion")
        row = db.execute("SELECT version FROM dbversion ORDER BY id DESC LIMIT 1").fetchone()
    except (Unavailable, sqlite3.Error):
        return None
    if not row:
        return None
    version = str(row[0]).split(".")[0]
    release = SCHEMA_RELEASES.get(version)
    return "schema version %s%s" % (version, " (Pegasus %s)" % release if release else "")


def has_table(db, table):
    try:
        db.columns(table)
        return True
    except Unavailable:
        return False


def master_path(home):
    return os.path.join(home, ".pegasus", MASTER_DB)


def _column(db, table, name, alias):
    """`alias.name`, or NULL when this (older) schema lacks the column."""
    return '%s."%s"' % (alias, name) if name in db.columns(table) else "NULL"


def _need(db, table, names):
    try:
        have = set(db.columns(table))
    except Unavailable:
        raise SchemaProblem("the database has no %s table%s: it was not written by Pegasus "
                            "4.x/5.x, or its schema is older than this dashboard reads "
                            "(pegasus-db-admin update upgrades it)" % (table, _which(db)))
    missing = [n for n in names if n not in have]
    if missing:
        raise SchemaProblem("table %s lacks column%s %s%s: an older schema; pegasus-db-admin "
                            "update upgrades it" % (table, "s" if len(missing) > 1 else "",
                                                    ", ".join(missing), _which(db)))


def _which(db):
    version = schema_version(db)
    return " (%s)" % version if version else ""


def _rows(cursor):
    names = [d[0] for d in cursor.description]
    return [dict(zip(names, r)) for r in cursor]


def _one(cursor):
    rows = _rows(cursor)
    return rows[0] if rows else None


class Liveness:
    """dagstate.Watch per running root workflow: one stat per look when nothing changed."""

    def __init__(self, size=WATCH_CACHE):
        self.size = size
        self._watches = collections.OrderedDict()
        self._lock = threading.Lock()

    def check(self, row, owner=None, now=None):
        """(state, reason) of a root workflow whose latest master state is WORKFLOW_STARTED.
        `owner` (owned.reader_uid): the submit directory is a path the user wrote, read
        here with the user's own file-system identity."""
        with owned.as_user(owner):
            return self._check(row, owner, now)

    def _check(self, row, owner, now):
        submit_dir, dag = row.get("submit_dir"), row.get("dag_file_name")
        if not submit_dir or not dag or not os.path.isdir(submit_dir):
            return RUNNING, "started (submit directory not found, cannot check DAGMan)"
        key = (owner, submit_dir, row.get("state_ts"))
        with self._lock:
            watch = self._watches.pop(key, None)
            if watch is None:
                bd = {"dag": dag, "wf_uuid": row.get("wf_uuid"), "type": "dag",
                      "jsd": "jobstate.log", "submit_hostname": row.get("submit_hostname")}
                # No schedd query from a web page: a DAGMan gone from this host is dead.
                watch = dagstate.Watch(submit_dir, bd, dagstate.Baseline(0, None),
                                       query=lambda uuid: [], liveness_every=0.0,
                                       pending_timeout=float("inf"))
            self._watches[key] = watch
            while len(self._watches) > self.size:
                self._watches.popitem(last=False)
            try:
                status = watch.poll(time.monotonic() if now is None else now)
            except PermissionError:
                self._watches.pop(key, None)
                return RUNNING, "started (cannot read the submit directory to check DAGMan)"
        if status.state == dagstate.FAILED and "died" in status.reason:
            return DIED, status.reason
        if status.state in (dagstate.FAILED, dagstate.REMOVED):
            return FAILED, status.reason
        if status.state == dagstate.SUCCEEDED:
            return SUCCESSFUL, status.reason
        if status.held_jobs:
            return RUNNING, "running; %d job(s) held" % status.held_jobs
        return RUNNING, "running"


class Workflows:
    """Read-only queries; `conns` is a masterdb.Connections (one per thread and file)."""

    def __init__(self, conns=None, liveness=None):
        self.conns = conns or Connections()
        self.liveness = liveness or Liveness()
        self._local = threading.local()

    # ---- master DB -------------------------------------------------------------------

    def master(self, home):
        return self.conns.get(master_path(home), "Master database", reader_uid(home))

    def roots(self, home, text=None, since=None):
        """Every root workflow (filtered by text and planning time) with `state` and `reason`.
        The rows are shared with later calls (cached while the master DB is unchanged):
        callers may only set `href` on them."""
        cached = self._cached(self.master(home), "roots", self._load_roots)
        rows = cached["rows"]
        if text:
            if cached["hays"] is None:
                cached["hays"] = [" ".join(str(r[k] or "") for k in _HAY).casefold() for r in rows]
            needle = text.casefold()
            rows = [r for r, hay in zip(rows, cached["hays"]) if needle in hay]
        if since is not None:
            rows = [r for r in rows if (r["timestamp"] or 0) >= since]
        owner = reader_uid(home)
        for row in cached["running"]:
            row["state"], row["reason"] = self.liveness.check(row, owner)
        return rows

    def _load_roots(self, db):
        _need(db, "master_workflow", ("wf_id", "wf_uuid", "submit_dir"))
        _need(db, "master_workflowstate", ("wf_id", "state", "timestamp"))
        sql = "SELECT %s FROM master_workflow AS r ORDER BY r.wf_id" % ", ".join(
            _column(db, "master_workflow", c, "r") for c in ROOT_FIELDS)
        rows = [dict(zip(ROOT_FIELDS, r)) for r in db.execute(sql)]
        # The latest state of each: newest; on a tie TERMINATED, then the higher restart count.
        restarts = _column(db, "master_workflowstate", "restart_count", "s")
        sql = ("SELECT s.wf_id, s.state, s.timestamp, %s, %s, %s FROM master_workflowstate AS s"
               " ORDER BY s.wf_id, s.timestamp, s.state = 'WORKFLOW_TERMINATED', %s" % (
                   _column(db, "master_workflowstate", "status", "s"), restarts,
                   _column(db, "master_workflowstate", "reason", "s"), restarts))
        latest = {r[0]: r for r in db.execute(sql)}
        none = (None,) * 6
        running, by_key = [], {}
        for row in rows:
            row["archived"] = bool(row["archived"])
            _, last, row["state_ts"], row["status"], row["restart_count"], row["state_reason"] = \
                latest.get(row["wf_id"], none)
            row["last_state"] = last
            if last == "WORKFLOW_STARTED":
                row["state"], row["reason"] = RUNNING, "running"
                running.append(row)
            else:
                row["state"], row["reason"] = self.state(row)
            by_key[str(row["wf_id"])] = by_key[row["wf_uuid"]] = row
        return {"rows": rows, "running": running, "by_key": by_key, "hays": None}

    def _cached(self, db, key, make):
        """make(db), reused by this thread until another connection commits to `db`
        (PRAGMA data_version): dashboards ask for the same pages over and over."""
        cache = self._local.__dict__.setdefault("cache", collections.OrderedDict())
        version = db.data_version()
        found = cache.get((id(db), key))
        if found is not None and found[0] is db and found[1] == version:
            cache.move_to_end((id(db), key))
            return found[2]
        value = make(db)
        cache[(id(db), key)] = (db, version, value)
        while len(cache) > CACHE_ENTRIES:
            cache.popitem(last=False)
        return value

    def state(self, row):
        """(list state, reason) of one root row (latest master state + files)."""
        last = row.get("last_state")
        if last is None:
            return NOT_STARTED, "no WORKFLOW_STARTED in the master database yet"
        if last == "WORKFLOW_TERMINATED":
            status = row.get("status")
            if status == 0:
                return SUCCESSFUL, "DAGMan exited with status 0"
            return FAILED, row.get("state_reason") or "DAGMan exited with status %s" % status
        return self.liveness.check(row, reader_uid(row["home"]) if row.get("home") else None)

    def root(self, home, m):
        """One root workflow by master wf_id (digits) or wf_uuid."""
        row = self._cached(self.master(home), "roots", self._load_roots)["by_key"].get(str(m))
        if row is None:
            raise NotFound("No root workflow %s in %s" % (m, master_path(home)))
        row = dict(row, home=home)  # whose STAMPEDE DB stampede() may open
        if row["last_state"] == "WORKFLOW_STARTED":
            row["state"], row["reason"] = self.liveness.check(row, reader_uid(home))
        return row

    def root_states(self, home, wf_id):
        db = self.master(home)
        return _rows(db.execute("SELECT state, timestamp, %s AS restart_count, %s AS status, "
                                "%s AS reason FROM master_workflowstate AS s WHERE wf_id = ? "
                                "ORDER BY timestamp, state" % (
                                    _column(db, "master_workflowstate", "restart_count", "s"),
                                    _column(db, "master_workflowstate", "status", "s"),
                                    _column(db, "master_workflowstate", "reason", "s")),
                                [wf_id]))

    # ---- STAMPEDE DB -----------------------------------------------------------------

    def stampede(self, root):
        """(handle, stampede wf_id of the root) for a root row from `root()`."""
        db = self.conns.get(stampede_path(root.get("db_url")), "STAMPEDE database",
                            reader_uid(root["home"]))
        _need(db, "workflow", ("wf_id", "wf_uuid", "submit_dir", "parent_wf_id", "root_wf_id"))
        row = db.execute("SELECT wf_id FROM workflow WHERE wf_uuid = ?",
                         [root["wf_uuid"]]).fetchone()
        if row is None:
            raise Unavailable("the STAMPEDE database has no row for %s yet (monitord has not "
                              "loaded it)" % root["wf_uuid"])
        return db, row[0]

    def workflow(self, db, root_id, w):
        """A workflow of this root's tree, by stampede wf_id or wf_uuid."""
        key = "wf_id" if str(w).isdigit() else "wf_uuid"
        row = _one(db.execute(
            "SELECT w.*, (SELECT count(*) FROM workflow AS c WHERE c.parent_wf_id = w.wf_id)"
            " AS children FROM workflow AS w WHERE w.%s = ? AND (w.root_wf_id = ? OR w.wf_id = ?)"
            % key,
            [int(w) if str(w).isdigit() else w, root_id, root_id]))
        if row is None:
            raise NotFound("No workflow %s under this root workflow" % w)
        return row

    def workflow_states(self, db, wf_id):
        _need(db, "workflowstate", ("wf_id", "state", "timestamp"))
        return _rows(db.execute("SELECT state, timestamp, restart_count, status, reason FROM "
                                "workflowstate WHERE wf_id = ? ORDER BY timestamp, state",
                                [wf_id]))

    @staticmethod
    def progress(states):
        """(running|successful|failed|not-started, reason) from a workflow's state rows."""
        if not states:
            return NOT_STARTED, "no workflow state recorded yet"
        last = max(states, key=lambda s: (s["timestamp"], s["state"] == "WORKFLOW_TERMINATED"))
        if last["state"] != "WORKFLOW_TERMINATED":
            return RUNNING, "running (restart %s)" % (last.get("restart_count") or 0)
        if last.get("status") == 0:
            return SUCCESSFUL, "DAGMan exited with status 0"
        return FAILED, last.get("reason") or "DAGMan exited with status %s" % last.get("status")

    @staticmethod
    def wall_time(states, now):
        """(wall time, running since): sum of ended runs (Pegasus: only when every start
        has its end); while a run goes on, its start."""
        starts = [s["timestamp"] for s in states if s["state"] == "WORKFLOW_STARTED"]
        ends = [s["timestamp"] for s in states if s["state"] == "WORKFLOW_TERMINATED"]
        if not starts:
            return None, None
        if len(starts) == len(ends):
            return float(sum(ends) - sum(starts)), None
        done = float(sum(ends) - sum(starts[:len(ends)])) if ends else 0.0
        return done + (now - float(starts[-1])), float(starts[-1])

    @staticmethod
    def _need_jobs(db):
        _need(db, "job", ("job_id", "wf_id", "exec_job_id", "type_desc"))
        _need(db, "job_instance", ("job_instance_id", "job_id", "job_submit_seq", "exitcode"))

    def job_index(self, db, wf_id):
        """[(job_id, is sub-workflow, kind, tries, latest job_instance_id)] of a workflow's
        jobs in job_id order, kind one of unsubmitted/failing/running/successful/failed by
        the latest instance; cached while the DB is unchanged."""
        self._need_jobs(db)
        return self._cached(db, ("jobs", wf_id),
                            lambda db: db.execute(_JOB_INDEX, [wf_id]).fetchall())

    def job_counts(self, db, wf_ids):
        """{kind: {"all": n, "sub": n}} for total, successful, failed, running (failing
        included, as Pegasus lists them in both), failing, unsubmitted and retries."""
        counts = {k: {"all": 0, "sub": 0} for k in ("total", "successful", "failed", "running",
                                                     "failing", "unsubmitted", "retries")}
        for wf_id in wf_ids:
            for _, sub, kind, tries, _, _ in self.job_index(db, wf_id):
                keys = (kind, "total") if kind != "failing" else ("failing", "running", "total")
                for key in keys:
                    counts[key]["all"] += 1
                    counts[key]["sub"] += sub
                if tries > 1:
                    counts["retries"]["all"] += tries - 1
                    counts["retries"]["sub"] += (tries - 1) * sub
        return counts

    def jobs(self, db, wf_id, kind, limit=100, offset=0):
        """(rows, total) of jobs whose latest instance is `kind` (JOB_KINDS), by job_id."""
        kinds = ("running", "failing") if kind == "running" else (kind,)
        chosen = [(r[0], r[3], r[4]) for r in self.job_index(db, wf_id) if r[2] in kinds]
        page = chosen[offset:offset + limit]
        if not page:
            return [], len(chosen)
        tries = {ji: n for _, n, ji in page}
        rows = _rows(db.execute(
            "SELECT j.job_id, j.exec_job_id, j.type_desc, ji.job_instance_id, ji.job_submit_seq,"
            " ji.exitcode, ji.site, ji.sched_id, ji.local_duration, ji.subwf_id, h.hostname,"
            " (SELECT min(timestamp) FROM jobstate WHERE job_instance_id = ji.job_instance_id)"
            " AS submitted"
            " FROM job_instance AS ji JOIN job AS j ON j.job_id = ji.job_id"
            " LEFT JOIN host AS h ON h.host_id = ji.host_id WHERE ji.job_instance_id IN (%s)"
            " ORDER BY j.job_id" % ",".join("?" * len(page)), [ji for _, _, ji in page]))
        for r in rows:
            r["tries"] = tries[r["job_instance_id"]]
        return rows, len(chosen)

    def sub_workflows(self, db, wf_id):
        rows = _rows(db.execute(
            "SELECT w.wf_id, w.wf_uuid, w.dax_label, w.submit_dir, w.timestamp,"
            " (SELECT count(*) FROM workflow AS c WHERE c.parent_wf_id = w.wf_id) AS children"
            " FROM workflow AS w WHERE w.parent_wf_id = ? ORDER BY w.wf_id", [wf_id]))
        for row in rows:
            row["state"], row["reason"] = self.progress(self.workflow_states(db, row["wf_id"]))
        return rows

    def tree(self, db, wf_id):
        """wf_id and every workflow below it."""
        rows = db.execute("WITH RECURSIVE t(id) AS (SELECT ? UNION SELECT w.wf_id FROM workflow "
                          "AS w JOIN t ON w.parent_wf_id = t.id) SELECT id FROM t",
                          [wf_id]).fetchall()
        return [r[0] for r in rows]

    def cumulative_time(self, db, wf_ids):
        """Sum of the invocations' remote durations (tasks, not POST scripts)."""
        marks = ",".join("?" * len(wf_ids))
        value = db.execute("SELECT total(remote_duration) FROM invocation WHERE wf_id IN (%s) AND "
                           "task_submit_seq >= 0" % marks, list(wf_ids)).fetchone()[0]
        return float(value or 0.0)

    # ---- one job ---------------------------------------------------------------------

    def job(self, db, wf_id, job_id):
        row = _one(db.execute("SELECT * FROM job WHERE job_id = ? AND wf_id = ?", [job_id, wf_id]))
        if row is None:
            raise NotFound("No job %s in workflow %s" % (job_id, wf_id))
        return row

    def instances(self, db, job_id):
        return _rows(db.execute(
            "SELECT ji.job_instance_id, ji.job_submit_seq, ji.sched_id, ji.site, ji.exitcode,"
            " ji.local_duration, ji.subwf_id, h.hostname FROM job_instance AS ji"
            " LEFT JOIN host AS h ON h.host_id = ji.host_id WHERE ji.job_id = ?"
            " ORDER BY ji.job_submit_seq", [job_id]))

    def instance(self, db, job_id, ji):
        row = _one(db.execute(
            "SELECT ji.*, h.hostname, h.ip, h.uname, h.total_memory FROM job_instance AS ji"
            " LEFT JOIN host AS h ON h.host_id = ji.host_id"
            " WHERE ji.job_instance_id = ? AND ji.job_id = ?", [ji, job_id]))
        if row is None:
            raise NotFound("No instance %s of job %s" % (ji, job_id))
        for name in ("stdout_text", "stderr_text"):
            row[name] = decode_output(row.get(name))
        return row

    def jobstates(self, db, ji):
        return _rows(db.execute("SELECT state, timestamp, jobstate_submit_seq, reason FROM "
                                "jobstate WHERE job_instance_id = ? ORDER BY "
                                "jobstate_submit_seq, timestamp", [ji]))

    def invocations(self, db, wf_id, ji):
        return _rows(db.execute(
            "SELECT invocation_id, task_submit_seq, abs_task_id, transformation, executable, argv,"
            " start_time, remote_duration, remote_cpu_time, exitcode FROM invocation"
            " WHERE wf_id = ? AND job_instance_id = ? ORDER BY task_submit_seq", [wf_id, ji]))

    def invocation(self, db, wf_id, ji, inv):
        """One invocation of an instance; `inv` None: its first task (Pegasus's `.../i/`)."""
        if inv is None:
            row = _one(db.execute("SELECT * FROM invocation WHERE wf_id = ? AND job_instance_id"
                                  " = ? AND task_submit_seq >= 0 ORDER BY task_submit_seq"
                                  " LIMIT 1", [wf_id, ji]))
        else:
            row = _one(db.execute("SELECT * FROM invocation WHERE invocation_id = ? AND wf_id = ?"
                                  " AND job_instance_id = ?", [inv, wf_id, ji]))
        if row is None:
            raise NotFound("No invocation %s of instance %s" % ("" if inv is None else inv, ji))
        return row

    def task(self, db, wf_id, abs_task_id):
        if not abs_task_id:
            return None
        return _one(db.execute("SELECT * FROM task WHERE wf_id = ? AND abs_task_id = ?",
                               [wf_id, abs_task_id]))

    # ---- statistics and charts -------------------------------------------------------

    def summary(self, db, wf_ids):
        """Pegasus's workflow statistics rows: tasks, jobs, sub-workflows (pegasus-facts §3.6:
        incomplete = total - succeeded - failed; retries = runs beyond the first)."""
        return self._cached(db, ("summary", tuple(wf_ids)), lambda db: self._summary(db, wf_ids))

    def _summary(self, db, wf_ids):
        marks = ",".join("?" * len(wf_ids))
        counts = self.job_counts(db, wf_ids)
        jobs = {k: counts[k]["all"] - counts[k]["sub"] for k in counts}
        subs = {k: counts[k]["sub"] for k in counts}
        tasks = db.execute("SELECT count(*) FROM task WHERE wf_id IN (%s)" % marks,
                           list(wf_ids)).fetchone()[0]
        # each task by its latest invocation
        _, ok, bad, retries = db.execute(
            "SELECT count(*), total(code = 0), total(code != 0), total(n - 1) FROM (SELECT"
            " exitcode AS code, max(invocation_id), count(*) AS n FROM invocation WHERE wf_id IN"
            " (%s) AND task_submit_seq >= 0 AND abs_task_id IS NOT NULL GROUP BY wf_id,"
            " abs_task_id)" % marks, list(wf_ids)).fetchone()
        out = []
        for name, total, ok, bad, retries in (
                ("Tasks", tasks, int(ok), int(bad), int(retries)),
                ("Jobs", jobs["total"], jobs["successful"], jobs["failed"], jobs["retries"]),
                ("Sub-workflows", subs["total"], subs["successful"], subs["failed"],
                 subs["retries"])):
            out.append({"type": name, "total": total, "succeeded": ok, "failed": bad,
                        "incomplete": total - ok - bad, "retries": retries,
                        "total_runs": total + retries})
        return out

    def breakdown(self, db, wf_ids):
        """Per transformation: count, succeeded, failed, min/max/mean/total runtime, max RSS
        and CPU."""
        marks = ",".join("?" * len(wf_ids))
        # maxrss and avg_cpu came with schema version 13 (Pegasus 5.0)
        return self._cached(db, ("breakdown", tuple(wf_ids)), lambda db: _rows(db.execute(
            "SELECT transformation, count(*) AS count, total(exitcode = 0) AS succeeded,"
            " total(exitcode != 0) AS failed, min(remote_duration) AS min,"
            " max(remote_duration) AS max, avg(remote_duration) AS mean,"
            " total(remote_duration) AS total, max(%s) AS maxrss,"
            " avg(%s) AS avg_cpu FROM invocation AS i WHERE wf_id IN (%s)"
            " GROUP BY transformation ORDER BY transformation"
            % (_column(db, "invocation", "maxrss", "i"), _column(db, "invocation", "avg_cpu", "i"),
               marks), list(wf_ids))))

    def job_stats(self, db, wf_id, limit=100, offset=0):
        """(rows, total) per job instance in job_submit_seq order (as pegasus-statistics):
        Pegasus's job statistics and Gantt spans (pegasus-facts §4) from one pass over the
        page's jobstates and invocations; `limit` None: every instance."""
        total = self._cached(db, ("instances", wf_id), lambda db: db.execute(
            "SELECT count(*) FROM job_instance WHERE job_id IN (SELECT job_id FROM job"
            " WHERE wf_id = ?)",
            [wf_id]).fetchone()[0])
        rows = _rows(db.execute(_INSTANCES, [wf_id, -1 if limit is None else limit, offset]))
        ids = None if limit is None else [r["job_instance_id"] for r in rows]
        times = _by_instance(db, _STATE_TIMES, wf_id, ids)
        invs = _by_instance(db, _INVOCATION_SUMS, wf_id, ids)
        for r in rows:
            _job_times(r, times.get(r["job_instance_id"], {}),
                       invs.get(r["job_instance_id"], {}))
        return rows, total

    def time_buckets(self, db, wf_id, states):
        """Jobs started (EXECUTE) per time bucket over the workflow's runs (`states`, its
        workflowstate rows): (bucket seconds, [(start, jobs ok, jobs failed, jobs)])."""
        return self._cached(db, ("buckets", wf_id), lambda db: self._buckets(db, wf_id, states))

    def _buckets(self, db, wf_id, states):
        times = [float(s["timestamp"]) for s in states]
        if times and states[-1]["state"] == "WORKFLOW_TERMINATED":
            t0, t1 = min(times), max(times)
        else:
            t0, t1 = db.execute(
                "SELECT min(js.timestamp), max(js.timestamp) FROM jobstate AS js"
                " JOIN job_instance AS ji ON ji.job_instance_id = js.job_instance_id"
                " JOIN job AS j ON j.job_id = ji.job_id WHERE j.wf_id = ? AND"
                " js.state = 'EXECUTE'", [wf_id]).fetchone()
            if t0 is None:
                return None, []
            t0, t1 = float(t0), float(t1)
        width = next((w for w in (1, 5, 15, 60, 300, 900, 3600, 6 * 3600, 86400)
                      if (t1 - t0) / w <= 60), 7 * 86400)
        t0 -= t0 % width
        rows = db.execute(
            "SELECT CAST((js.timestamp - ?) / ? AS INTEGER) AS b, total(ji.exitcode = 0),"
            " total(ji.exitcode IS NOT NULL AND ji.exitcode != 0), count(*) FROM jobstate AS js"
            " JOIN job_instance AS ji ON ji.job_instance_id = js.job_instance_id JOIN job AS j"
            " ON j.job_id = ji.job_id WHERE j.wf_id = ? AND js.state = 'EXECUTE'"
            " GROUP BY b ORDER BY b",
            [t0, width, wf_id]).fetchall()
        return width, [(t0 + b * width, int(ok), int(bad), n) for b, ok, bad, n in rows]

    # ---- metadata, files, integrity ----------------------------------------------------

    def workflow_meta(self, db, wf_id):
        """[{key, value}] of the workflow (table workflow_meta; none in older schemas)."""
        if not has_table(db, "workflow_meta"):
            return []
        return _rows(db.execute('SELECT "key", value FROM workflow_meta WHERE wf_id = ?'
                                ' ORDER BY "key"', [wf_id]))

    def task_meta(self, db, task_id):
        if task_id is None or not has_table(db, "task_meta"):
            return []
        return _rows(db.execute('SELECT "key", value FROM task_meta WHERE task_id = ?'
                                ' ORDER BY "key"', [task_id]))

    def file_count(self, db, wf_id):
        if not all(has_table(db, t) for t in ("workflow_files", "rc_lfn")):
            return 0
        return db.execute("SELECT count(DISTINCT lfn_id) FROM workflow_files WHERE wf_id = ?",
                          [wf_id]).fetchone()[0]

    def files(self, db, wf_id, limit=100, offset=0):
        """(rows, total): the workflow's files by LFN, each with its PFNs ({pfn, site}) and
        metadata ({key, value}), as Pegasus's Files tab shows them."""
        total = self.file_count(db, wf_id)
        if not total:
            return [], 0
        rows = _rows(db.execute(
            "SELECT l.lfn_id, l.lfn, group_concat(DISTINCT f.file_type) AS file_type"
            " FROM workflow_files AS f JOIN rc_lfn AS l ON l.lfn_id = f.lfn_id"
            " WHERE f.wf_id = ? GROUP BY l.lfn_id ORDER BY l.lfn LIMIT ? OFFSET ?",
            [wf_id, limit, offset]))
        ids = [r["lfn_id"] for r in rows]
        pfns = _grouped(db, "rc_pfn", "pfn, site", ids)
        meta = _grouped(db, "rc_meta", '"key", value', ids)
        for r in rows:
            r["pfns"], r["meta"] = pfns.get(r["lfn_id"], []), meta.get(r["lfn_id"], [])
        return rows, total

    def integrity(self, db, wf_ids):
        """[{type, file_type, count, duration}]: integrity checks and checksum computations
        (table integrity; integrity_metrics before schema version 11)."""
        table = next((t for t in ("integrity", "integrity_metrics") if has_table(db, t)), None)
        if table is None or not wf_ids:
            return []
        return _rows(db.execute(
            "SELECT type, file_type, sum(count) AS count, total(duration) AS duration FROM %s"
            " WHERE wf_id IN (%s) GROUP BY type, file_type ORDER BY type, file_type"
            % (table, ",".join("?" * len(wf_ids))), list(wf_ids)))

    # ---- Pegasus's dashboard feeds ------------------------------------------------------

    def latest_jobs(self, db, wf_id, kind):
        """The rows of Pegasus's job tabs: each job's latest instance that is failed,
        running or successful; for failing, the latest failed try of a job that runs
        again.  [{job_id, job_instance_id, exec_job_id, exitcode, duration}]."""
        self._need_jobs(db)
        return _rows(db.execute(_LATEST_JOBS[kind], [wf_id]))

    def time_chart(self, db, wf_ids, width=3600):
        """[(bucket, jobs, job runtime, invocations, invocation runtime)] per `width`
        seconds: jobs by their EXECUTE time (sub-workflow jobs left out), invocations by
        start (condor::dagman left out), as Pegasus's time chart."""
        marks = ",".join("?" * len(wf_ids))
        jobs = db.execute(
            "SELECT CAST(js.timestamp / ? AS INTEGER) AS b, count(*), total(ji.local_duration)"
            " FROM jobstate AS js JOIN job_instance AS ji ON ji.job_instance_id ="
            " js.job_instance_id JOIN job AS j ON j.job_id = ji.job_id WHERE j.wf_id IN (%s)"
            " AND js.state = 'EXECUTE' AND ji.local_duration IS NOT NULL AND j.type_desc"
            " NOT IN ('dag', 'dax') GROUP BY b" % marks, [width] + list(wf_ids)).fetchall()
        invs = db.execute(
            "SELECT CAST(start_time / ? AS INTEGER) AS b, count(*), total(remote_duration)"
            " FROM invocation WHERE wf_id IN (%s) AND transformation != 'condor::dagman'"
            " GROUP BY b" % marks, [width] + list(wf_ids)).fetchall()
        out = collections.defaultdict(lambda: [0, 0.0, 0, 0.0])
        for b, n, t in jobs:
            out[b][0:2] = [n, float(t)]
        for b, n, t in invs:
            out[b][2:4] = [n, float(t)]
        return [(b,) + tuple(v) for b, v in sorted(out.items())]

    def transformation_stats(self, db, wf_ids, exclude=()):
        """Pegasus's transformation statistics: one row per transformation and outcome
        ('successful'/'failed'), runtimes weighted by the multiplier factor."""
        marks = ",".join("?" * len(wf_ids))
        skip = " AND i.transformation NOT IN (%s)" % ",".join("?" * len(exclude)) \
            if exclude else ""
        return _rows(db.execute(
            "SELECT i.transformation, CASE WHEN i.exitcode = 0 THEN 'successful' ELSE 'failed'"
            " END AS type, count(*) AS count, count(CASE WHEN i.exitcode = 0 THEN 1 END) AS"
            " success, count(CASE WHEN i.exitcode != 0 THEN 1 END) AS failure,"
            " min(i.remote_duration * ji.multiplier_factor) AS min,"
            " max(i.remote_duration * ji.multiplier_factor) AS max,"
            " avg(i.remote_duration * ji.multiplier_factor) AS avg,"
            " total(i.remote_duration * ji.multiplier_factor) AS sum"
            " FROM invocation AS i JOIN job_instance AS ji ON ji.job_instance_id ="
            " i.job_instance_id WHERE i.wf_id IN (%s)%s GROUP BY i.transformation, type"
            " ORDER BY i.transformation, type" % (marks, skip),
            list(wf_ids) + list(exclude)))

    def summary_times(self, db, wf_ids):
        """Pegasus's summary times: cumulative job wall time (kickstart) and as seen from the
        submit side, each with its badput (failed tries), and the workflow retries."""
        marks = ",".join("?" * len(wf_ids))
        cum = db.execute(
            "SELECT sum(i.remote_duration * ji.multiplier_factor), total(CASE WHEN i.exitcode > 0"
            " THEN i.remote_duration * ji.multiplier_factor END) FROM invocation AS i"
            " JOIN job_instance AS ji ON ji.job_instance_id = i.job_instance_id"
            " WHERE i.task_submit_seq >= 0 AND i.wf_id IN (%s) AND i.transformation !="
            " 'condor::dagman'" % marks, list(wf_ids)).fetchone()
        job = db.execute(
            "SELECT sum(ji.local_duration * ji.multiplier_factor), total(CASE WHEN ji.exitcode > 0"
            " THEN ji.local_duration * ji.multiplier_factor END) FROM job_instance AS ji"
            " JOIN job AS j ON j.job_id = ji.job_id WHERE j.wf_id IN (%s)" % marks,
            list(wf_ids)).fetchone()
        retries = db.execute(
            "SELECT total(r) FROM (SELECT max(restart_count) AS r FROM workflowstate"
            " WHERE wf_id IN (%s) GROUP BY wf_id)" % marks, list(wf_ids)).fetchone()[0]
        f = lambda v: None if v is None else float(v)  # noqa: E731
        return {"cum-time": f(cum[0]), "cum-badput-time": f(cum[1]) if cum[0] is not None
                else None, "job-cum-time": f(job[0]),
                "job-cum-badput-time": f(job[1]) if job[0] is not None else None,
                "retry-count": int(retries or 0)}


# One row per job of a workflow, from its latest instance (the row holding max(job_submit_seq):
# SQLite takes bare columns from it).  The job table is read in job_id order, so the GROUP BY
# needs no sort.
_JOB_INDEX = (
    "SELECT j.job_id, j.type_desc IN ('dag', 'dax'), CASE"
    " WHEN count(ji.job_instance_id) = 0 THEN 'unsubmitted'"
    " WHEN ji.exitcode IS NULL AND total(ji.exitcode != 0) > 0 THEN 'failing'"
    " WHEN ji.exitcode IS NULL THEN 'running' WHEN ji.exitcode = 0 THEN 'successful'"
    " ELSE 'failed' END,"
    " count(ji.job_instance_id), ji.job_instance_id, max(ji.job_submit_seq)"
    " FROM job AS j NOT INDEXED LEFT JOIN job_instance AS ji ON ji.job_id = j.job_id"
    " WHERE j.wf_id = ? GROUP BY j.job_id")


def _latest(kind_sql):
    return ("SELECT j.job_id, ji.job_instance_id, j.exec_job_id, ji.exitcode, ji.job_submit_seq,"
            " CASE WHEN j.clustered THEN ji.cluster_duration ELSE ji.local_duration END"
            " AS duration FROM job AS j JOIN job_instance AS ji ON ji.job_id = j.job_id"
            " WHERE j.wf_id = ? AND " + kind_sql + " ORDER BY j.job_id")


_LAST_TRY = ("ji.job_submit_seq = (SELECT max(x.job_submit_seq) FROM job_instance AS x"
             " WHERE x.job_id = j.job_id)")
_LATEST_JOBS = {
    "failed": _latest(_LAST_TRY + " AND ji.exitcode != 0"),
    "running": _latest(_LAST_TRY + " AND ji.exitcode IS NULL"),
    "successful": _latest(_LAST_TRY + " AND ji.exitcode = 0"),
    "failing": _latest(
        "ji.exitcode != 0 AND ji.job_submit_seq = (SELECT max(x.job_submit_seq) FROM"
        " job_instance AS x WHERE x.job_id = j.job_id AND x.exitcode != 0) AND EXISTS"
        " (SELECT 1 FROM job_instance AS y WHERE y.job_id = j.job_id AND y.exitcode IS NULL)"),
}


def _grouped(db, table, columns, lfn_ids):
    """{lfn_id: [row]} of rc_pfn or rc_meta for these LFNs ({} without the table)."""
    if not lfn_ids or not has_table(db, table):
        return {}
    out = collections.defaultdict(list)
    for r in _rows(db.execute("SELECT lfn_id, %s FROM %s WHERE lfn_id IN (%s) ORDER BY 2"
                              % (columns, table, ",".join("?" * len(lfn_ids))), lfn_ids)):
        out[r.pop("lfn_id")].append(r)
    return out


_INSTANCES = (
    "SELECT j.job_id, j.exec_job_id, j.type_desc, j.clustered, ji.job_instance_id,"
    " ji.job_submit_seq, ji.exitcode, ji.site, h.hostname, ji.local_duration,"
    " ji.cluster_duration, ji.multiplier_factor, (SELECT count(*) FROM job_instance AS x"
    " WHERE x.job_id = ji.job_id AND x.job_submit_seq <= ji.job_submit_seq) AS try"
    " FROM job_instance AS ji"
    " JOIN job AS j ON j.job_id = ji.job_id LEFT JOIN host AS h ON h.host_id = ji.host_id"
    " WHERE j.wf_id = ? ORDER BY ji.job_submit_seq, ji.job_instance_id LIMIT ? OFFSET ?")


def _at(agg, *states):
    return "%s(CASE WHEN js.state IN (%s) THEN js.timestamp END)" % (
        agg, ", ".join("'%s'" % s for s in states))


# Per instance, the jobstate times Pegasus's statistics and Gantt chart are made of.
_STATE_TIMES = (
    "SELECT js.job_instance_id, min(js.timestamp) AS first, max(js.timestamp) AS last, "
    + ", ".join("%s AS %s" % (sql, name) for name, sql in (
        ("pre_start", _at("min", "PRE_SCRIPT_STARTED")),
        ("pre_end", _at("max", "PRE_SCRIPT_TERMINATED")),
        ("submit", _at("min", "SUBMIT")), ("terminated", _at("max", "JOB_TERMINATED")),
        ("grid_first", _at("min", "GRID_SUBMIT", "GLOBUS_SUBMIT")),
        ("grid_last", _at("max", "GRID_SUBMIT", "GLOBUS_SUBMIT")),
        ("execute", _at("min", "EXECUTE")), ("exec_start", _at("max", "EXECUTE", "SUBMIT")),
        ("queued_until", _at("min", "GRID_SUBMIT", "GLOBUS_SUBMIT", "EXECUTE")),
        ("post_start", _at("max", "POST_SCRIPT_STARTED", "JOB_TERMINATED")),
        ("post_end", _at("max", "POST_SCRIPT_TERMINATED"))))
    + " FROM jobstate AS js JOIN job_instance AS ji ON ji.job_instance_id = js.job_instance_id"
    " JOIN job AS j ON j.job_id = ji.job_id WHERE j.wf_id = ? %s GROUP BY js.job_instance_id")

# Per instance, its tasks (task_submit_seq >= 0; -1 is the PRE script, -2 the POST script).
_INVOCATION_SUMS = (
    "SELECT i.job_instance_id, sum(CASE WHEN i.task_submit_seq >= 0 THEN i.remote_duration END)"
    " AS kickstart, min(CASE WHEN i.task_submit_seq >= 0 THEN i.start_time END) AS ks_start,"
    " sum(CASE WHEN i.task_submit_seq >= 0 THEN i.remote_cpu_time END) AS cpu,"
    " max(CASE WHEN i.task_submit_seq >= -1 THEN i.exitcode END) AS inv_exitcode,"
    " group_concat(DISTINCT CASE WHEN i.transformation NOT IN ('dagman::pre', 'dagman::post')"
    " THEN i.transformation END) AS transformation"
    " FROM invocation AS i WHERE i.wf_id = ? %s GROUP BY i.job_instance_id")


def _by_instance(db, sql, wf_id, ids):
    """{job_instance_id: row} of `sql` for the instances `ids` (None: all of wf_id's)."""
    if ids is not None and not ids:
        return {}
    alias = "js" if "jobstate AS js" in sql else "i"
    where = "" if ids is None else "AND %s.job_instance_id IN (%s)" % (
        alias, ",".join("?" * len(ids)))
    return {r["job_instance_id"]: r for r in _rows(db.execute(sql % where,
                                                              [wf_id] + list(ids or ())))}


def _job_times(r, t, inv):
    """Fill one instance row with Pegasus's job statistics and Gantt spans (pegasus-facts §4,
    stampede_statistics's definitions); missing states give None."""
    f = {k: (None if v is None else float(v)) for k, v in t.items() if k != "job_instance_id"}
    kick = None if inv.get("kickstart") is None else float(inv["kickstart"])
    seqexec = None if r["cluster_duration"] is None else float(r["cluster_duration"])
    runtime = r["local_duration"]
    r.update(
        queue=_span(f.get("submit"), f.get("execute")),
        condor_q_time=_diff(f.get("queued_until"), f.get("submit")),
        resource_delay=_diff(f.get("execute"), f.get("grid_first")),
        runtime=float(runtime) if runtime is not None else _span(f.get("execute"),
                                                                 f.get("terminated")),
        kickstart=kick, kickstart_multi=None if kick is None else kick * (
            r["multiplier_factor"] or 1),
        remote_cpu_time=None if inv.get("cpu") is None else float(inv["cpu"]),
        post=_diff(f.get("post_end"), f.get("post_start")), seqexec=seqexec,
        seqexec_delay=None if seqexec is None or kick is None else seqexec - kick,
        exit_code=raw_to_regular(inv.get("inv_exitcode")),
        transformation=inv.get("transformation"),
        jobS=f.get("first"), jobDuration=_diff(f.get("last"), f.get("first")),
        pre_start=f.get("pre_start"), pre_duration=_diff(f.get("pre_end"), f.get("pre_start")),
        condor_start=f.get("submit"), condor_duration=_diff(f.get("terminated"), f.get("submit")),
        grid_start=f.get("grid_last"), grid_duration=_diff(f.get("execute"), f.get("grid_last")),
        exec_start=f.get("exec_start"),
        exec_duration=_diff(f.get("terminated"), f.get("exec_start")),
        kickstart_start=None if inv.get("ks_start") is None else float(inv["ks_start"]),
        kickstart_duration=kick,
        post_start=f.get("post_start"), post_duration=_diff(f.get("post_end"), f.get("post_start")))


def raw_to_regular(code):
    """A kickstart raw status as an exit code (Pegasus's utils.raw_to_regular): 0-127, a
    signal as its negative number, -128 for a failure to run."""
    if not isinstance(code, int):
        return code
    if code < 0:
        return -128
    return -(code & 127) if code & 127 else code >> 8


def _diff(b, a):
    return None if a is None or b is None else float(b) - float(a)


def _span(a, b):
    if a is None or b is None:
        return None
    return max(0.0, float(b) - float(a))
