"""Pegasus 5.x's own dashboard URLs (pegasus-facts §7), so bookmarks, e-mails and
scrapers made for Pegasus keep working: its JSON feeds answered with 5.x's shapes
(the DataTables lists, `files/`'s `dirs`/`files`, the chart and statistics
feeds), and its HTML-only pages sent to ours, keeping the query.

A feed that 5.x answered with HTML to a browser and with data to its own
scripts (`sw/`, `i/successful`, `i/failed`) decides the same way: a browser
navigating there (Accept: text/html, no X-Requested-With) is redirected to our
page; anything else gets JSON.  Values follow 5.x's definitions; where 5.x
leaves HTML in a value (a job name wrapped in a link) we give the plain text.
"""

import time

from .. import __version__
from . import browse, pages, stampede
from .dashpage import View, json_response, redirect
from ..errors import BadRequest

# 5.x's workflow-list states and time filters (queries.py)
STATES_5X = {stampede.RUNNING: "Running", stampede.SUCCESSFUL: "Successful",
             stampede.FAILED: "Failed", stampede.DIED: "Failed",
             stampede.NOT_STARTED: "Not started"}
TIME_FILTERS = {"day": 86400, "week": 604800, "month": 2620800, "year": 31449600}
LIST_COLUMNS = ("dax_label", "submit_hostname", "submit_dir", "state", "timestamp")
# the columns each job tab sorts and searches on (queries.py display_columns)
JOB_SORTS = {"failed": ("exec_job_id", "exitcode"), "failing": ("exec_job_id", "exitcode"),
             "successful": ("exec_job_id", "duration"), "running": ("exec_job_id",)}
STAT_FEEDS = ("summary", "workflow", "job_breakdown", "job", "integrity", "time")


class Table:
    """DataTables' server-side arguments (draw, start, length, search, order)."""

    def __init__(self, req, columns):
        self.draw = _int(req, "draw", 0)
        self.start = _int(req, "start", 0)
        self.length = _int(req, "length", -1)
        self.search = req.args.get("search[value]", "")
        self.order = []
        for i in range(len(req.args)):
            if "order[%d][column]" % i not in req.args:
                break
            col = _int(req, "order[%d][column]" % i, 0)
            if not 0 <= col < len(columns):
                raise BadRequest("Invalid column (%d) to sort on: 0 to %d"
                                 % (col, len(columns) - 1))
            self.order.append((columns[col], req.args.get("order[%d][dir]" % i) == "asc"))

    def reply(self, rows, total, default_key, default_reverse=True):
        """The DataTables answer: {draw, recordsTotal, recordsFiltered, data}."""
        for key, ascending in reversed(self.order or [(default_key, not default_reverse)]):
            rows = sorted(rows, key=lambda r: _sortable(r.get(key)), reverse=not ascending)
        page = rows[self.start:] if self.length < 0 else rows[self.start:self.start + self.length]
        return {"draw": self.draw, "recordsTotal": total, "recordsFiltered": len(rows),
                "data": page}


def _int(req, name, default):
    value = req.args.get(name, "")
    if value == "":
        return default
    try:
        return int(value)
    except ValueError:
        raise BadRequest("Argument %s must be an integer, not %r" % (name, value))


def _sortable(value):
    return (value is None, value if isinstance(value, (int, float)) else str(value or ""))


def time_to_str(seconds):
    """A duration as 5.x's dashboard writes it: the two largest units, e.g. '1 hour 5 mins'."""
    if not isinstance(seconds, float):
        return seconds
    left, parts = int(seconds), []
    for name, size in (("day", 86400), ("hour", 3600), ("min", 60), ("sec", 1)):
        if left >= size and len(parts) < 2:
            n, left = divmod(left, size)
            parts.append("%d %s%s" % (n, name, "s" if n > 1 else ""))
    return " ".join(parts) or "0 secs"


def _f(value):
    return None if value is None else float(value)


class PegasusFeeds:
    """`workflows`: a stampede.Workflows; `wf`: the wfpages.WorkflowPages whose
    context, links and pages the feeds share or send a browser to."""

    def __init__(self, workflows, wf):
        self.workflows = workflows
        self.wf = wf

    # ---- the workflow list ----------------------------------------------------------

    def workflow_table(self, req):
        """`/u/<user>/` as 5.x's DataTables feed (an XMLHttpRequest, or `draw` given)."""
        table = Table(req, LIST_COLUMNS)
        rows = [{"dax_label": r["dax_label"], "wf_id": r["wf_id"], "wf_uuid": r["wf_uuid"],
                 "state": STATES_5X[r["state"]], "reason": r["reason"],
                 "archived": bool(r.get("archived")), "submit_hostname": r["submit_hostname"],
                 "submit_dir": r["submit_dir"], "timestamp": _f(r["timestamp"])}
                for r in self.wf.root_rows(req, "", None)[0] if r["wf_id"] is not None]
        total = len(rows)
        window = req.args.get("time_filter")
        if window in TIME_FILTERS:
            since = time.time() - TIME_FILTERS[window]
            rows = [r for r in rows if (r["timestamp"] or 0) >= since]
        if table.search:
            needle = table.search.casefold()
            rows = [r for r in rows if any(needle in str(r[k] or "").casefold() for k in (
                "dax_label", "submit_hostname", "submit_dir", "state"))]
        return json_response(table.reply(rows, total, "timestamp"))

    # ---- one workflow's tabs -------------------------------------------------------

    def root_w(self, req, m):
        """`r/<root>/w[?wf_uuid=…]`: the root workflow, or the one with that UUID."""
        return self.wf.workflow_details(req, m, req.args.get("wf_uuid") or None)

    def sub_workflow_feed(self, req, m, w):
        ctx = self.wf.context(req, m, w)
        if req.navigating():
            return redirect(self.wf.wf_url(req, ctx, tab="sub"))
        rows = [{"root_wf_id": s.get("root_wf_id", ctx.root_id), "wf_id": s["wf_id"],
                 "wf_uuid": s["wf_uuid"], "dax_label": s["dax_label"],
                 "state": STATES_5X[s["state"]]}
                for s in self.workflows.sub_workflows(ctx.db, ctx.wf["wf_id"])]
        return json_response(Table(req, ("dax_label", "state")).reply(rows, len(rows), "wf_id",
                                                                      False))

    def job_feed(self, req, m, w, kind):
        ctx = self.wf.context(req, m, w)
        columns = JOB_SORTS[kind]
        table = Table(req, columns)
        rows = []
        for r in self.workflows.latest_jobs(ctx.db, ctx.wf["wf_id"], kind):
            row = {"root_wf_id": m, "wf_id": w, "job_id": r["job_id"],
                   "job_instance_id": r["job_instance_id"], "exec_job_id": r["exec_job_id"]}
            if kind in ("failed", "failing"):
                row["exitcode"] = r["exitcode"]
            if kind == "successful":
                row["duration"] = _f(r["duration"])
                row["duration_formatted"] = time_to_str(_f(r["duration"]))
            rows.append(row)
        total = len(rows)
        if table.search:
            rows = [r for r in rows if any(table.search.casefold() in str(r.get(k)).casefold()
                                           for k in columns if k != "duration")]
        return json_response(table.reply(rows, total, "exec_job_id"))

    # ---- jobs and invocations ------------------------------------------------------

    def invocation_feed(self, req, m, w, job_id, ji, outcome):
        ctx = self.wf.context(req, m, w)
        job = self.workflows.job(ctx.db, ctx.wf["wf_id"], int(job_id))
        self.workflows.instance(ctx.db, int(job_id), int(ji))
        if req.navigating():
            return redirect(self.wf.wf_url(req, ctx, "j", job_id, "ji", ji) +
                            "#invocations")
        ok = outcome == "successful"
        rows = [{"exec_job_id": job["exec_job_id"], "invocation_id": i["invocation_id"],
                 "abs_task_id": i["abs_task_id"], "exitcode": i["exitcode"],
                 "remote_duration": _f(i["remote_duration"]),
                 "remote_duration_formatted": time_to_str(_f(i["remote_duration"]))}
                for i in self.workflows.invocations(ctx.db, ctx.wf["wf_id"], int(ji))
                if (i["exitcode"] == 0) == ok and (i["abs_task_id"] is not None or
                                                    i["task_submit_seq"] == 1)]
        return json_response(Table(req, ("invocation_id",)).reply(rows, len(rows), "invocation_id",
                                                                  False))

    def first_invocation(self, req, m, w, job_id, ji):
        """`.../ji/<ji>/i/`: the instance's first task, as 5.x shows it."""
        return self.wf.invocation_details(req, m, w, job_id, ji, None)

    # ---- charts and statistics -----------------------------------------------------

    def chart_feed(self, req, m, w, which):
        ctx = self.wf.context(req, m, w)
        wf_id = ctx.wf["wf_id"]
        if which == "time_chart":
            return json_response([{"date_format": b, "count": {"job": j, "invocation": i},
                                   "total_runtime": {"job": jt, "invocation": it}}
                                  for b, j, jt, i, it in self.workflows.time_chart(
                                      ctx.db, self.workflows.tree(ctx.db, wf_id))])
        rows, _ = self.workflows.job_stats(ctx.db, wf_id, None)
        return json_response([{k: r[k] for k in _GANTT} for r in rows])

    def statistics_feed(self, req, m, w, which):
        ctx = self.wf.context(req, m, w)
        wf_id, db = ctx.wf["wf_id"], ctx.db
        everything = self.workflows.tree(db, ctx.root_id)
        if which == "summary":
            data = self.workflows.summary_times(db, [wf_id])
            data["wall-time"] = self.workflows.wall_time(ctx.states, time.time())[0]
            data = {k: time_to_str(v) for k, v in data.items()}
        elif which == "workflow":
            data = {"individual": _workflow_stats(self.workflows.summary(db, [wf_id])),
                    "all": _workflow_stats(self.workflows.summary(db, everything))}
        elif which == "job_breakdown":
            data = [[t["transformation"], t["count"], t["success"], t["failure"], _f(t["min"]),
                     _f(t["max"]), _f(t["avg"]), _f(t["sum"])]
                    for t in self.workflows.transformation_stats(db, [wf_id])]
        elif which == "job":
            data = _job_stats(self.workflows.job_stats(db, wf_id, None)[0])
        elif which == "integrity":
            data = {"individual": self.workflows.integrity(db, [wf_id]),
                    "all": self.workflows.integrity(db, everything)}
        else:
            data = {}
        return json_response(data)

    # ---- the file browser ------------------------------------------------------------

    def browser(self, req, m, w):
        """5.x's file browser page -> ours, opening `init_file` when given."""
        query = {k: v for k, v in req.args.items() if k != "init_file"}
        names = browse.split(req.args.get("init_file") or "")  # no ../ even in a redirect
        base = req.url("r", m, "w", w, "files", *names)
        return redirect(base + ("" if names else "/"), query)

    def file_view(self, req, m, w, rest):
        """5.x's `file/<path>`: the file itself (sandboxed, never run as a page)."""
        req.args["raw"] = "inline"
        return self.wf.files(req, m, w, rest)

    # ---- the info page ---------------------------------------------------------------

    def info(self, req):
        data = {"service": "pegasus-service (pegasus_em)", "version": __version__,
                "user": req.user, "workflows": req.url(), "ensembles": req.url("ensembles"),
                "api": req.prefix + "/api/v1/user/" + req.user}
        body = pages.dl([("Service", data["service"]), ("Version", data["version"]),
                         ("User", data["user"]),
                         ("Workflows", pages.link(data["workflows"], "all workflows")),
                         ("Ensembles", pages.link(data["ensembles"], "ensembles")),
                         ("Monitoring API", pages.Markup("<code>%s</code>"
                                                         % pages.escape(data["api"])))])
        return View("About this dashboard", data, body)


_GANTT = ("job_id", "job_instance_id", "job_submit_seq", "exec_job_id", "transformation", "jobS",
          "jobDuration", "pre_start", "pre_duration", "condor_start", "condor_duration",
          "grid_start", "grid_duration", "exec_start", "exec_duration", "kickstart_start",
          "kickstart_duration", "post_start", "post_duration")


def _workflow_stats(summary):
    """Our summary rows in 5.x's shape: [tasks, jobs, sub-workflows] dicts."""
    out = []
    for row, (kind, plural) in zip(summary, (("task", "tasks"), ("job", "jobs"),
                                             ("sub_wfs", "sub_wfs"))):
        out.append({"total_%s" % plural: row["total"],
                    "total_succeeded_%s" % plural: row["succeeded"],
                    "total_failed_%s" % plural: row["failed"],
                    "total_unsubmitted_%s" % plural: row["incomplete"],
                    "total_%s_retries" % kind: row["retries"],
                    "total_%s_invocations" % kind: row["succeeded"] + row["failed"] +
                    row["retries"]})
    return out


def _job_stats(rows):
    """5.x's statistics/job rows: lists in its column order, '0' and '-' for unknowns."""
    out = []
    zero = lambda v: "0" if v is None else v  # noqa: E731
    for r in rows:
        out.append([r["exec_job_id"], r["try"], r["site"], zero(r["kickstart"]),
                    zero(r["multiplier_factor"]), zero(r["kickstart_multi"]),
                    zero(r["remote_cpu_time"]), zero(r["post"]), zero(r["condor_q_time"]),
                    zero(r["resource_delay"]), zero(_f(r["local_duration"])),
                    "-" if r["seqexec"] is None else r["seqexec"],
                    "-" if r["seqexec_delay"] is None else r["seqexec_delay"],
                    r["exit_code"], r["hostname"]])
    return out
