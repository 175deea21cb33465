"""The statistics and charts pages of one workflow: what pegasus-statistics and
Pegasus's dashboard show (workflow, job and transformation statistics, integrity
metrics, the job distribution, the time chart and the Gantt chart), as tables
and server-made SVG.

Each choice a chart offers (by count or by time, by jobs or by invocations) is a
link, so the pages work without JavaScript.
"""

import time

from . import charts, pages
from .dashpage import View
from ..errors import BadRequest
from .pages import Column, Markup, dl, link, section, table

JOB_LIMIT = 100
SPANS = (("pre", "PRE script"), ("condor", "in HTCondor (submit to end)"),
         ("grid", "grid submit to execute"), ("exec", "executing"),
         ("kickstart", "kickstart (the tasks)"), ("post", "POST script"))


def _choice(req, name, choices):
    value = req.args.get(name) or choices[0]
    if value not in choices:
        raise BadRequest("%s must be %s" % (name, " or ".join(choices)))
    return value


def _switch(req, name, current, choices):
    """Links that pick one view of a chart (the current one marked)."""
    return pages.tabs([(label, None, req.here(**{name: value, "offset": None}), value == current)
                       for value, label in choices])


def _secs(title, key):
    return Column(title, lambda r: "-" if r[key] is None else "%.1f" % r[key],
                  key=lambda r: r[key] if r[key] is not None else -1, numeric=True)


def _n(key):
    return lambda r: pages.number(r[key])


_SUMMARY_COLUMNS = [Column("Type", lambda r: r["type"]),
                    Column("Succeeded", lambda r: r["succeeded"], numeric=True),
                    Column("Failed", lambda r: r["failed"], numeric=True),
                    Column("Incomplete", lambda r: r["incomplete"], numeric=True),
                    Column("Total", lambda r: r["total"], numeric=True),
                    Column("Retries", lambda r: r["retries"], numeric=True),
                    Column("Total + retries", lambda r: r["total_runs"], numeric=True)]
_BREAKDOWN_COLUMNS = [
    Column("Transformation", lambda r: r["transformation"]),
    Column("Count", _n("count"), key=lambda r: r["count"], numeric=True),
    Column("Succeeded", _n("succeeded"), key=lambda r: r["succeeded"], numeric=True),
    Column("Failed", _n("failed"), key=lambda r: r["failed"], numeric=True),
    Column("Min (s)", _n("min"), key=lambda r: r["min"] or 0, numeric=True),
    Column("Max (s)", _n("max"), key=lambda r: r["max"] or 0, numeric=True),
    Column("Mean (s)", _n("mean"), key=lambda r: r["mean"] or 0, numeric=True),
    Column("Total (s)", _n("total"), key=lambda r: r["total"] or 0, numeric=True),
    Column("Max RSS (KiB)", _n("maxrss"), key=lambda r: r["maxrss"] or 0, numeric=True),
    Column("Mean CPU", lambda r: "-" if r["avg_cpu"] is None else "%.0f%%" % (100 * r["avg_cpu"]),
           key=lambda r: r["avg_cpu"] or 0, numeric=True)]
_INTEGRITY_COLUMNS = [Column("Type", lambda r: r["type"]),
                      Column("Files", lambda r: r["file_type"] or "-"),
                      Column("Count", _n("count"), numeric=True),
                      Column("Duration (s)", _n("duration"), numeric=True)]


class StatsPages:
    """`workflows`: a stampede.Workflows; `wf`: the wfpages.WorkflowPages whose
    context, links and crumbs these pages share."""

    def __init__(self, workflows, wf):
        self.workflows = workflows
        self.wf = wf

    # ---- statistics ------------------------------------------------------------------

    def statistics(self, req, m, w):
        ctx = self.wf.context(req, m, w)
        wf_id = ctx.wf["wf_id"]
        offset = req.int_arg("offset")
        tree = self.workflows.tree(ctx.db, wf_id) if ctx.wf["children"] else [wf_id]
        jobs, total = self.workflows.job_stats(ctx.db, wf_id, JOB_LIMIT, offset)
        wall, _ = self.workflows.wall_time(ctx.states, time.time())
        data = {"summary": self.workflows.summary(ctx.db, [wf_id]),
                "tree_summary": self.workflows.summary(ctx.db, tree) if len(tree) > 1 else None,
                "breakdown": self.workflows.breakdown(ctx.db, [wf_id]), "wall_time": wall,
                "cumulative_wall_time": self.workflows.cumulative_time(ctx.db, [wf_id]),
                "tree_cumulative_wall_time": self.workflows.cumulative_time(ctx.db, tree),
                "times": self.workflows.summary_times(ctx.db, [wf_id]),
                "integrity": self.workflows.integrity(ctx.db, [wf_id]),
                "tree_integrity": self.workflows.integrity(ctx.db, tree) if len(tree) > 1
                else None, "jobs": jobs, "jobs_total": total, "offset": offset}
        body = [self._times(data), section("This workflow", table(
            _SUMMARY_COLUMNS, data["summary"], sortable=False))]
        if data["tree_summary"]:
            body.append(section("This workflow and its sub-workflows",
                                table(_SUMMARY_COLUMNS, data["tree_summary"], sortable=False)))
        body.append(section("Transformations", table(_BREAKDOWN_COLUMNS, data["breakdown"],
                                                     empty="No invocations yet.")))
        body.append(self._integrity(data))
        stats = table(self._stat_columns(req, ctx), jobs, cls="grid stats",
                      empty="No job has run.")
        body.append(section("Jobs (times in seconds)", stats +
                            pages.pager(total, offset, JOB_LIMIT, lambda o: req.here(offset=o))))
        return View("Statistics", data, pages.join(body),
                    crumbs=self.wf.crumbs(req, ctx, ("Statistics", None, True)))

    @staticmethod
    def _times(data):
        t = data["times"]
        return dl([("Workflow wall time", pages.duration(data["wall_time"])),
                   ("Cumulative job wall time", pages.duration(data["cumulative_wall_time"])),
                   ("... of the whole tree", pages.duration(data["tree_cumulative_wall_time"])),
                   ("Cumulative job wall time, failed tries (badput)",
                    pages.duration(t["cum-badput-time"])),
                   ("Cumulative job wall time as seen from the submit side",
                    pages.duration(t["job-cum-time"])),
                   ("... failed tries (badput)", pages.duration(t["job-cum-badput-time"])),
                   ("Workflow retries", t["retry-count"])])

    @staticmethod
    def _integrity(data):
        body = table(_INTEGRITY_COLUMNS, data["integrity"], sortable=False,
                     empty="No integrity checks are recorded for this workflow.")
        if data["tree_integrity"]:
            body += Markup("<h3>This workflow and its sub-workflows</h3>") + table(
                _INTEGRITY_COLUMNS, data["tree_integrity"], sortable=False)
        return section("Integrity", body, "integrity")

    def _stat_columns(self, req, ctx):
        href = lambda r: self.wf.wf_url(req, ctx, "j", r["job_id"], "ji",  # noqa: E731
                                        r["job_instance_id"])
        return [Column("Job", lambda r: link(href(r), r["exec_job_id"]),
                       key=lambda r: r["exec_job_id"]),
                Column("Try", lambda r: r["try"], numeric=True),
                Column("Site", lambda r: r["site"] or "-"),
                Column("Host", lambda r: r["hostname"] or "-"),
                _secs("Condor queue", "condor_q_time"),
                _secs("Resource delay", "resource_delay"), _secs("Runtime", "runtime"),
                _secs("Kickstart", "kickstart"), _secs("CPU time", "remote_cpu_time"),
                _secs("Post", "post"), _secs("Seqexec", "seqexec"),
                _secs("Seqexec delay", "seqexec_delay"),
                Column("Exit code", lambda r: "-" if r["exitcode"] is None else r["exitcode"],
                       numeric=True)]

    # ---- charts ----------------------------------------------------------------------

    def charts(self, req, m, w):
        ctx = self.wf.context(req, m, w)
        wf_id = ctx.wf["wf_id"]
        offset = req.int_arg("offset")
        dist = _choice(req, "dist", ("count", "time"))
        by, measure = _choice(req, "time", ("jobs", "invocations")), \
            _choice(req, "measure", ("count", "runtime"))
        breakdown = self.workflows.breakdown(ctx.db, [wf_id])
        width, buckets = self.workflows.time_buckets(ctx.db, wf_id, ctx.states)
        series = self.workflows.time_chart(ctx.db, [wf_id], width) if width else []
        rows, total = self.workflows.job_stats(ctx.db, wf_id, JOB_LIMIT, offset)
        data = {"transformations": breakdown, "bucket_seconds": width,
                "jobs_over_time": [{"start": b[0], "successful": b[1], "failed": b[2],
                                    "jobs": b[3]} for b in buckets],
                "time_chart": [{"start": b * width, "jobs": j, "job_runtime": jt,
                                "invocations": i, "invocation_runtime": it}
                               for b, j, jt, i, it in series],
                "gantt": rows, "gantt_total": total, "offset": offset}
        body = [section("Job distribution", _switch(req, "dist", dist, (
                    ("count", "By count"), ("time", "By time"))) + self._distribution(
                    breakdown, dist), "distribution"),
                section("Time chart", _switch(req, "time", by, (
                    ("jobs", "By jobs"), ("invocations", "By invocations"))) + _switch(
                    req, "measure", measure, (("count", "Count"), ("runtime", "Runtime"))) +
                    self._time_chart(data, by, measure, width), "time-chart"),
                section("Gantt chart", self._gantt(rows) + pages.pager(
                    total, offset, JOB_LIMIT, lambda o: req.here(offset=o)), "gantt")]
        return View("Charts", data, pages.join(body),
                    crumbs=self.wf.crumbs(req, ctx, ("Charts", None, True)))

    @staticmethod
    def _distribution(breakdown, dist):
        if dist == "count":
            return charts.stacked_bars(
                [(r["transformation"], [int(r["succeeded"]), int(r["failed"])])
                 for r in breakdown], [("succeeded", "ok"), ("failed", "fail")],
                "Invocations per transformation, by count")
        return charts.stacked_bars(
            [(r["transformation"], [round(float(r["total"] or 0), 3)]) for r in breakdown],
            [("total runtime (s)", "run")], "Invocations per transformation, by time (s)")

    @staticmethod
    def _time_chart(data, by, measure, width):
        if by == "jobs" and measure == "count":
            return charts.columns(
                [(b["start"], [b["successful"], b["failed"],
                               b["jobs"] - b["successful"] - b["failed"]])
                 for b in data["jobs_over_time"]],
                [("successful", "ok"), ("failed", "fail"), ("running", "run")],
                "Jobs started", width or 60)
        key = {("jobs", "runtime"): "job_runtime", ("invocations", "count"): "invocations",
               ("invocations", "runtime"): "invocation_runtime"}[(by, measure)]
        what = "%s %s" % ("Jobs" if by == "jobs" else "Invocations",
                          "started" if measure == "count" else "runtime (s)")
        return charts.columns([(b["start"], [round(b[key], 3)]) for b in data["time_chart"]],
                              [(what.lower(), "ok" if by == "jobs" else "run")], what,
                              width or 60)

    @staticmethod
    def _gantt(rows):
        lanes = [("%s #%s" % (r["exec_job_id"], r["job_submit_seq"]),
                  [(r[k + "_start"], _end(r[k + "_start"], r[k + "_duration"]), k, what)
                   for k, what in SPANS]) for r in rows]
        legend = charts.legend([(what, k) for k, what in SPANS])
        return charts.gantt(lanes, "Job timeline (Gantt): each job's spans, one lane each") + \
            legend


def _end(start, duration):
    return None if start is None or duration is None else start + duration
