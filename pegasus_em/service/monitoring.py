"""The Pegasus monitoring REST API, `/api/v1/user/<user>/root...` (pegasus-facts §4),
over a user's master DB and the STAMPEDE DBs it points to, read-only.

Collections answer `{"records": [...], "_meta": {"records_total", "records_filtered"}}`,
or 204 with no body when there is nothing at all; one record answers the object
itself; an error answers 5.x's `{"code", "message"}`.  `m` (root workflow) is the
master wf_id when all digits, else its wf_uuid; `w` likewise in the STAMPEDE DB.
Field names, counts and values are those of Pegasus 5.x's queries on the same
databases (apiquery.py renders the records), except where 5.x is broken:
`/job/running` lists jobs with a running try (5.x always answers 204), `/meta` and
`/files` are the named workflow's (5.x gives the root's), and a file matched by a
`query` counts once however many PFNs and metadata it has.  Runs as the user whose
data it reads, or with that user's filesystem identity (owned.py).
"""

import collections
import json
import os
import sqlite3
import threading
from functools import partial

from ..web import web
from .apiquery import Collection, Paging, json_object, table_fields, table_object
from ..errors import EMError, NotFound
from ..dashboard.masterdb import MASTER_DB, Connections, Unavailable, stampede_path
from ..owned import reader_uid

_ID = r"([^/]+)"
_NUM = r"(\d+)"
_HIDDEN_INSTANCE_FIELDS = ("stdout_text", "stderr_text")
# The tables listed per workflow and read one row by id: table -> (alias, id column).
_OF_WORKFLOW = {"host": ("h", "host_id"), "task": ("t", "task_id"),
                "invocation": ("i", "invocation_id")}
CACHE_ENTRIES = 32          # answers remembered per thread
CACHE_MAX_TEXT = 256 << 10  # larger answers are not kept


class DatabaseBusy(EMError):
    status = 503


class Result:
    """What a handler returns: a status and JSON text (None: no body)."""

    __slots__ = ("status", "text")

    def __init__(self, status, text):
        self.status = status
        self.text = text

    def body(self, pretty=False):
        if self.text is None:
            return b""
        if pretty:
            return json.dumps(json.loads(self.text), indent=2, ensure_ascii=False).encode()
        return self.text.encode("utf-8")


def error_result(e):
    """5.x's error body for `e` (None: an unexpected failure): `code` beside `message`."""
    if e is None:
        return Result(500, json.dumps({"code": "UNKNOWN", "message": "Internal server error"}))
    body = {"code": api_code(e), "message": e.message}
    return Result(e.status, json.dumps(body, ensure_ascii=False))


def api_code(e):
    """NOT_FOUND, INVALID_QUERY, INVALID_ORDER, INVALID_QUERY_ARGUMENT or UNKNOWN."""
    code = getattr(e, "api_code", None)
    if code:
        return code
    return "NOT_FOUND" if isinstance(e, NotFound) and e.status == 404 else "UNKNOWN"


class Monitoring:
    """Routes below /api/v1/user/<user>; `handle(home, rest, args)` -> Result."""

    def __init__(self):
        self.conns = Connections()
        self._local = threading.local()
        w = r"/root/%s/workflow/%s" % (_ID, _ID)
        table = [
            (r"/root", self.roots),
            (r"/root/%s" % _ID, self.root),
            (r"/root/%s/workflow" % _ID, self.workflows),
            (w, self.workflow),
            (w + "/meta", self.workflow_meta),
            (w + "/files", self.files),
            (w + "/state", self.workflow_states),
            (w + "/job", self.jobs),
            (w + "/job/(running|successful|failed|failing)", self.jobs_by_state),
            (w + "/job/%s" % _NUM, self.job),
            (w + "/job/%s/task" % _NUM, self.job_tasks),
            (w + "/job/%s/job-instance" % _NUM, self.job_instances),
            (w + "/job/%s/job-instance/%s" % (_NUM, _NUM), self.job_instance),
            (w + "/job-instance/%s" % _NUM, self.workflow_job_instance),
            (w + "/job/%s/job-instance/%s/state" % (_NUM, _NUM), self.job_states),
            (w + "/job/%s/job-instance/%s/invocation" % (_NUM, _NUM),
             self.job_invocations),
            (w + "/host", partial(self.rows, "host")),
            (w + "/host/%s" % _NUM, partial(self.row, "host")),
            (w + "/task", partial(self.rows, "task")),
            (w + "/task/%s" % _NUM, partial(self.row, "task")),
            (w + "/task/%s/meta" % _NUM, self.task_meta),
            (w + "/invocation", partial(self.rows, "invocation")),
            (w + "/invocation/%s" % _NUM, partial(self.row, "invocation")),
        ]
        self.routes = web.Routes([(p, {"GET": h}) for p, h in table],
                                 missing="No such resource: /api/v1/user/<user>{path}")

    def handle(self, home, rest, args):
        """The answer, from this thread's cache while no database it read has changed
        (PRAGMA data_version): dashboards poll the same URLs over and over."""
        master = os.path.join(home, ".pegasus", MASTER_DB)
        owner = reader_uid(home)
        key = (master, owner, rest, tuple(sorted(args.items())))
        cache = self._local.__dict__.setdefault("cache", collections.OrderedDict())
        hit = cache.get(key)
        if hit is not None and self._fresh(hit[0]):
            cache.move_to_end(key)
            return hit[1]
        handler, groups = self.routes.find("GET", rest)  # userapp lets HEAD in too
        ctx = Context(self.conns, master, args, owner)
        result = self._run(handler, ctx, groups)
        if result.text is None or len(result.text) <= CACHE_MAX_TEXT:
            cache[key] = (ctx.read, result)
            while len(cache) > CACHE_ENTRIES:
                cache.popitem(last=False)
        return result

    def _fresh(self, read):
        for path, owner, handle, version in read:
            try:
                if self.conns.get(path, "database", owner) is not handle or \
                        handle.data_version() != version:
                    return False
            except (EMError, sqlite3.Error):
                return False
        return True

    def _run(self, handler, ctx, groups):
        try:
            return handler(ctx, *groups)
        except sqlite3.OperationalError as e:
            if "no such" in str(e):
                raise Unavailable("the database lacks what this needs (%s); was it "
                                  "written by Pegasus?" % e)
            raise DatabaseBusy("the database cannot be read now: %s" % e)

    # ---- master DB ---------------------------------------------------------

    def roots(self, ctx):
        db = ctx.master()
        coll = Collection({"r": "master_workflow", "ws": "master_workflowstate"},
                          "master_workflow AS r " + _LATEST_MASTER_STATE,
                          default_order='r."wf_id"', count_from="master_workflow AS r")
        return ctx.collect(db, coll, _root_object(db))

    def root(self, ctx, m):
        return Result(200, ctx.root(m)[0])

    # ---- STAMPEDE DB -------------------------------------------------------

    def workflows(self, ctx, m):
        db, root_id = ctx.stampede(m)
        coll = Collection({"w": "workflow"}, "workflow AS w", 'w."root_wf_id" = ?', [root_id],
                          'w."wf_id"')
        return ctx.collect(db, coll, table_object(db, "workflow", "w"))

    def workflow(self, ctx, m, w):
        db, root_id = ctx.stampede(m)
        wf_id = ctx.wf_id(db, root_id, w)
        return ctx.one(db, "workflow", "w", 'w."wf_id" = ?', [wf_id], "workflow", w)

    def workflow_meta(self, ctx, m, w):
        db, wf_id = ctx.workflow(m, w)
        return ctx.simple(db, "workflow_meta", "wm", 'wm."wf_id" = ?', [wf_id], 'wm."key"')

    def files(self, ctx, m, w):
        """The workflow's files: `workflow_files` rows with their LFN, `pfns` and `meta`;
        `query` and `order` take `l.` (rc_lfn), `p.` (rc_pfn) and `rm.` (rc_meta)."""
        db, wf_id = ctx.workflow(m, w)
        coll = Collection({"l": "rc_lfn", "p": "rc_pfn", "rm": "rc_meta"}, _FILE_JOINS,
                          'f."wf_id" = ?', [wf_id], "f.rowid",
                          count_from="workflow_files AS f", group="f.rowid")
        return ctx.collect(db, coll, _file_object(db))

    def workflow_states(self, ctx, m, w):
        db, wf_id = ctx.workflow(m, w)
        return ctx.simple(db, "workflowstate", "ws", 'ws."wf_id" = ?', [wf_id],
                          'ws."timestamp", ws."restart_count"')

    def jobs(self, ctx, m, w):
        db, wf_id = ctx.workflow(m, w)
        return ctx.simple(db, "job", "j", 'j."wf_id" = ?', [wf_id], 'j."job_id"')

    def jobs_by_state(self, ctx, m, w, state):
        """Jobs with a try in `state`, each with its latest such try, as 5.x: `failed`
        counts a job that failed once and then succeeded, and `failing` is a failed job
        still running, shown with its latest failed try."""
        db, wf_id = ctx.workflow(m, w)
        where = 'j."wf_id" = ?' + (" AND " + _STILL_RUNNING if state == "failing" else "")
        coll = Collection({"j": "job", "ji": "job_instance"},
                          "job AS j " + _LATEST_TRY % _TRY_STATE[state], where, [wf_id],
                          'j."job_id"')
        return ctx.collect(db, coll, db.memo("job+instance", lambda: json_object(
            table_fields(db, "job", "j") + [("job_instance", table_object(
                db, "job_instance", "ji", _HIDDEN_INSTANCE_FIELDS))])))

    def job(self, ctx, m, w, job_id):
        db, wf_id = ctx.workflow(m, w)
        return ctx.one(db, "job", "j", 'j."job_id" = ? AND j."wf_id" = ?', [int(job_id), wf_id],
                       "job", job_id)

    def job_tasks(self, ctx, m, w, job_id):
        db, wf_id = ctx.workflow(m, w)
        return ctx.simple(db, "task", "t", 't."wf_id" = ? AND t."job_id" = ?',
                          [wf_id, int(job_id)], 't."task_id"')

    def job_instances(self, ctx, m, w, job_id):
        """A job's tries; `recent=true` (exactly, as 5.x) keeps the latest only."""
        db, wf_id = ctx.workflow(m, w)
        coll = Collection({"ji": "job_instance"}, 'job_instance AS ji JOIN job AS j '
                          'ON j."job_id" = ji."job_id"', 'j."wf_id" = ? AND ji."job_id" = ?',
                          [wf_id, int(job_id)], 'ji."job_submit_seq"',
                          narrow=_RECENT_TRY if ctx.args.get("recent") == "true" else None)
        return ctx.collect(db, coll, table_object(db, "job_instance", "ji"))

    def job_instance(self, ctx, m, w, job_id, ji):
        db, wf_id = ctx.workflow(m, w)
        return ctx.one(db, "job_instance", "ji", 'ji."job_instance_id" = ? AND ji."job_id" = ? '
                       'AND ' + _IN_WORKFLOW, [int(ji), int(job_id), wf_id], "job instance", ji)

    def workflow_job_instance(self, ctx, m, w, ji):
        db, wf_id = ctx.workflow(m, w)
        return ctx.one(db, "job_instance", "ji", 'ji."job_instance_id" = ? AND ' + _IN_WORKFLOW,
                       [int(ji), wf_id], "job instance", ji)

    def job_states(self, ctx, m, w, job_id, ji):
        db, wf_id = ctx.workflow(m, w)
        coll = Collection({"js": "jobstate"}, 'jobstate AS js JOIN job_instance AS ji ON '
                          'ji."job_instance_id" = js."job_instance_id" JOIN job AS j ON '
                          'j."job_id" = ji."job_id"',
                          'j."wf_id" = ? AND j."job_id" = ? AND js."job_instance_id" = ?',
                          [wf_id, int(job_id), int(ji)], 'js."jobstate_submit_seq"')
        return ctx.collect(db, coll, table_object(db, "jobstate", "js"))

    def job_invocations(self, ctx, m, w, job_id, ji):
        db, wf_id = ctx.workflow(m, w)
        return ctx.simple(db, "invocation", "i", 'i."wf_id" = ? AND i."job_instance_id" = ?',
                          [wf_id, int(ji)], 'i."task_submit_seq"')

    def rows(self, table, ctx, m, w):
        """Every host, task or invocation of a workflow (`table`, see _OF_WORKFLOW)."""
        alias, key = _OF_WORKFLOW[table]
        db, wf_id = ctx.workflow(m, w)
        return ctx.simple(db, table, alias, '%s."wf_id" = ?' % alias, [wf_id],
                          '%s."%s"' % (alias, key))

    def row(self, table, ctx, m, w, ident):
        """One host, task or invocation of a workflow, by its id."""
        alias, key = _OF_WORKFLOW[table]
        db, wf_id = ctx.workflow(m, w)
        return ctx.one(db, table, alias, '%s."%s" = ? AND %s."wf_id" = ?' % (alias, key, alias),
                       [int(ident), wf_id], table, ident)

    def task_meta(self, ctx, m, w, task_id):
        db, wf_id = ctx.workflow(m, w)
        coll = Collection({"tm": "task_meta"}, 'task_meta AS tm JOIN task AS t ON '
                          't."task_id" = tm."task_id"', 't."wf_id" = ? AND tm."task_id" = ?',
                          [wf_id, int(task_id)], 'tm."key"')
        return ctx.collect(db, coll, table_object(db, "task_meta", "tm"))


# The latest state of each root workflow: newest timestamp; on a tie TERMINATED wins.
_LATEST_MASTER_STATE = (
    'LEFT JOIN master_workflowstate AS ws ON ws.rowid = ('
    'SELECT s.rowid FROM master_workflowstate AS s WHERE s.wf_id = r.wf_id '
    "ORDER BY s.timestamp DESC, s.state = 'WORKFLOW_TERMINATED' DESC, "
    's.restart_count DESC LIMIT 1)')

# The latest try of a job in a state (`x`: its tries).
_LATEST_TRY = (
    'JOIN job_instance AS ji ON ji."job_instance_id" = ('
    'SELECT x."job_instance_id" FROM job_instance AS x WHERE x."job_id" = j."job_id" '
    'AND %s ORDER BY x."job_submit_seq" DESC LIMIT 1)')

_TRY_STATE = {
    "running": 'x."exitcode" IS NULL',
    "successful": 'x."exitcode" = 0',
    "failed": 'x."exitcode" != 0',
    "failing": 'x."exitcode" != 0',
}

_STILL_RUNNING = ('EXISTS (SELECT 1 FROM job_instance AS y WHERE y."job_id" = j."job_id" '
                  'AND y."exitcode" IS NULL)')

_RECENT_TRY = ('ji."job_submit_seq" = (SELECT max(x."job_submit_seq") FROM job_instance AS x '
               'WHERE x."job_id" = ji."job_id")')

_IN_WORKFLOW = 'ji."job_id" IN (SELECT "job_id" FROM job WHERE "wf_id" = ?)'

_FILE_JOINS = (
    'workflow_files AS f LEFT JOIN rc_lfn AS l ON l."lfn_id" = f."lfn_id" '
    'LEFT JOIN rc_pfn AS p ON p."lfn_id" = f."lfn_id" '
    'LEFT JOIN rc_meta AS rm ON rm."lfn_id" = f."lfn_id"')


def _file_object(db):
    """One workflow_files row with `lfn`, and its `pfns` and `meta` as arrays."""
    def array(table, alias, order):
        return ('json((SELECT json_group_array(json(o)) FROM (SELECT %s AS o FROM %s AS %s '
                'WHERE %s."lfn_id" = f."lfn_id" ORDER BY %s)))'
                % (table_object(db, table, alias), table, alias, alias, order))
    return db.memo("file", lambda: json_object(table_fields(db, "workflow_files", "f") + [
        ("lfn", 'l."lfn"'), ("pfns", array("rc_pfn", "pf", 'pf."pfn_id"')),
        ("meta", array("rc_meta", "md", 'md."key"'))]))


def _root_object(db):
    """master_workflow's columns plus `workflow_state`, its latest state (or null)."""
    def make():
        state = table_object(db, "master_workflowstate", "ws")
        return json_object(table_fields(db, "master_workflow", "r") + [
            ("workflow_state", "json(CASE WHEN ws.wf_id IS NULL THEN NULL ELSE %s END)"
             % state)])
    return db.memo("root", make)


class Context:
    """One request: its connections, arguments and the root workflow it names."""

    def __init__(self, conns, master_path, args, owner=None):
        self.conns = conns
        self.master_path = master_path
        self.args = args
        self.owner = owner  # whose files the databases must be (owned.reader_uid)
        self.read = []  # (path, owner, handle, data_version) of each database used

    def paging(self):
        return Paging.from_args(self.args)

    def db(self, path, what):
        handle = self.conns.get(path, what, self.owner)
        self.read.append((path, self.owner, handle, handle.data_version()))
        return handle

    def master(self):
        return self.db(self.master_path, "Master database")

    def root(self, m):
        """(JSON text, wf_uuid, db_url) of a root workflow."""
        db = self.master()
        key = 'r."wf_id"' if m.isdigit() else 'r."wf_uuid"'
        row = db.execute("SELECT %s, r.wf_uuid, r.db_url FROM master_workflow AS r %s "
                         "WHERE %s = ?" % (_root_object(db), _LATEST_MASTER_STATE, key),
                         [int(m) if m.isdigit() else m]).fetchone()
        if row is None:
            raise NotFound("No root workflow %s in %s" % (m, self.master_path))
        return row

    def stampede(self, m):
        """(the root's STAMPEDE DB, the root's wf_id in it)."""
        _, uuid, db_url = self.root(m)
        db = self.db(stampede_path(db_url), "STAMPEDE database")
        row = db.execute("SELECT wf_id FROM workflow WHERE wf_uuid = ?", [uuid]).fetchone()
        if row is None:
            raise NotFound("Root workflow %s is not in its STAMPEDE database yet" % uuid)
        return db, row[0]

    def wf_id(self, db, root_id, w):
        key = "wf_id" if w.isdigit() else "wf_uuid"
        row = db.execute("SELECT wf_id FROM workflow WHERE %s = ? AND "
                         "(root_wf_id = ? OR wf_id = ?)" % key,
                         [int(w) if w.isdigit() else w, root_id, root_id]).fetchone()
        if row is None:
            raise NotFound("No workflow %s under this root workflow" % w)
        return row[0]

    def workflow(self, m, w):
        db, root_id = self.stampede(m)
        return db, self.wf_id(db, root_id, w)

    def simple(self, db, table, alias, where, params, order):
        coll = Collection({alias: table}, "%s AS %s" % (table, alias), where, params, order)
        return self.collect(db, coll, table_object(db, table, alias))

    def collect(self, db, coll, obj_sql):
        text, total, filtered = coll.fetch(db, self.paging(), obj_sql)
        if total == 0:
            return Result(204, None)
        return Result(200, '{"records":%s,"_meta":{"records_total":%d,"records_filtered":%d}}'
                      % (text, total, filtered))

    def one(self, db, table, alias, where, params, what, ident):
        row = db.execute("SELECT %s FROM %s AS %s WHERE %s"
                         % (table_object(db, table, alias), table, alias, where),
                         params).fetchone()
        if row is None:
            raise NotFound("No %s %s" % (what, ident))
        return Result(200, row[0])
