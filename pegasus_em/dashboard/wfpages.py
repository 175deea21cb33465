"""The workflow pages of the dashboard: the list of root workflows, workflow,
job and invocation details, statistics, charts and the submit-dir browser.

Handlers take the request (a `dashpage.Request`) and the URL's groups and return
a `View` (JSON data + HTML body) or a raw response; `context`, `wf_url` and
`crumbs` serve the statistics pages and 5.x's feeds too.
"""

import collections
import stat
import time

from . import browse, charts, pages, stampede
from .dashpage import View, raw_response
from ..errors import BadRequest
from .masterdb import Unavailable
from .pages import Column, Markup, dl, escape, link, notice, section, state_badge, table

STATE_LABELS = {stampede.RUNNING: "Running", stampede.SUCCESSFUL: "Successful",
                stampede.FAILED: "Failed", stampede.DIED: "DAGMan died",
                stampede.NOT_STARTED: "Not started"}
CARD_CLASSES = {stampede.RUNNING: "c-running", stampede.SUCCESSFUL: "c-ok",
                stampede.FAILED: "c-fail", stampede.DIED: "c-fail", stampede.NOT_STARTED: "c-idle"}
WINDOWS = {"day": 86400, "week": 7 * 86400, "month": 31 * 86400, "year": 366 * 86400}
SORTS = {"submitted": lambda r: (r["timestamp"] or 0, r["wf_id"] or 0),
         "label": lambda r: ((r["dax_label"] or "").lower(), r["wf_id"] or 0),
         "state": lambda r: (r["state"], -(r["timestamp"] or 0)),
         "host": lambda r: ((r["submit_hostname"] or "").lower(), -(r["timestamp"] or 0))}
LIST_FIELDS = ("wf_id", "wf_uuid", "dax_label", "state", "reason", "timestamp", "submit_hostname",
               "submit_dir", "user", "last_state", "status", "restart_count", "archived",
               "ensemble", "em_workflow", "em_href", "href")
JOB_TABS = (("failed", "Failed"), ("failing", "Failing"), ("running", "Running"),
            ("successful", "Successful"))
ARCHIVED = Markup(' <span class="state s-archived" title="archived in the master database">'
                  'archived</span>')
LIST_LIMIT = 1000
JOB_LIMIT = 100
REFRESH = 10


class Context:
    """A workflow page's subject: the root (master row), its STAMPEDE DB and the workflow."""

    __slots__ = ("m", "root", "db", "root_id", "wf", "states", "state", "reason", "problem")


class WorkflowPages:
    """`workflows`: a stampede.Workflows; `ensembles`: an ensview.Ensembles (the runs the
    ensemble manager started); `file_owner(user) -> uid or None`: whose files the
    browser may serve."""

    def __init__(self, workflows, ensembles, file_owner):
        self.workflows = workflows
        self.ensembles = ensembles
        self.file_owner = file_owner

    # ---- the list --------------------------------------------------------------------

    def workflow_list(self, req):
        text = req.args.get("q", "").strip()
        window = req.args.get("window", "all")
        if window not in WINDOWS and window != "all":
            raise BadRequest("window must be day, week, month, year or all")
        since = time.time() - WINDOWS[window] if window in WINDOWS else None
        state = req.args.get("state", "")
        if state and state not in STATE_LABELS:
            raise BadRequest("state must be one of %s" % ", ".join(STATE_LABELS))
        sort = req.args.get("sort", "-submitted")
        if sort.lstrip("-") not in SORTS:
            raise BadRequest("sort must be one of %s (- for descending)" % ", ".join(SORTS))
        offset = req.int_arg("offset")
        limit = req.int_arg("limit", LIST_LIMIT, 1, 100000)
        rows, problem, planned = self.root_rows(req, text, since)
        counts = collections.Counter(r["state"] for r in rows)
        shown = sorted((r for r in rows if r["state"] == state) if state else rows,
                       key=SORTS[sort.lstrip("-")], reverse=sort.startswith("-"))
        page_rows = shown[offset:offset + limit]
        prefix = req.url("r", "")
        for r in page_rows:
            if r["wf_id"] is not None:
                r["href"] = prefix + str(r["wf_id"])
        if planned:
            page_rows = self._with_em_names(req, page_rows, planned)
        if req.json:
            page_rows = [{k: r.get(k) for k in LIST_FIELDS} for r in page_rows]
        data = {"counts": dict({s: counts.get(s, 0) for s in STATE_LABELS}, total=len(rows)),
                "filter": {"q": text, "window": window, "state": state, "sort": sort},
                "total": len(shown), "offset": offset, "limit": limit, "workflows": page_rows}
        if problem:
            data["notice"] = problem
        body = [self._list_filter(req, text, window, state, sort)]
        cards = [("All", len(rows), req.here(state=None, offset=None), "c-all", not state)]
        cards += [(label, counts.get(s, 0), req.here(state=s, offset=None), CARD_CLASSES[s],
                   state == s) for s, label in STATE_LABELS.items()]
        body.append(pages.cards(cards))
        if problem:
            body.append(notice(problem, "warn"))
        filtered = bool(text or state or since is not None)
        body.append(pages.table(self._list_columns(), page_rows,
                                empty="No workflows match." if filtered else "No workflows yet."))
        body.append(pages.pager(len(shown), offset, limit, lambda o: req.here(offset=o)))
        live = counts.get(stampede.RUNNING, 0) > 0
        return View("Workflows", data, pages.join(body), refresh=REFRESH if live else None)

    def root_rows(self, req, text, since):
        """Root workflows of the master DB (rows shared with the cache: only `href` is set
        on them) and the ensemble workflows planned but never started."""
        problem = None
        try:
            rows = self.workflows.roots(req.home, text or None, since)
        except Unavailable as e:
            rows, problem = [], ("%s. Workflows appear here once pegasus-run starts them."
                                 % e.message)
        except stampede.SchemaProblem as e:
            rows, problem = [], "The master database cannot be read: %s" % e.message
        planned = self.ensembles.by_uuid(req.home)
        if not planned:
            return rows, problem, planned
        needle = text.casefold()
        filtered = bool(text) or since is not None
        known = self._known_uuids(req) if filtered else set(r["wf_uuid"] for r in rows)
        if needle:
            rows = rows + self._found_by_em_name(req, needle, since, planned, rows)
        extra = [self._not_started_row(req, w) for uuid, w in planned.items()
                 if uuid not in known and _matches(w, needle, since)]
        return rows + extra, problem, planned

    def _found_by_em_name(self, req, needle, since, planned, found):
        """Started runs whose ensemble workflow's name (not their label) matches the filter."""
        seen = set(r["wf_uuid"] for r in found)
        try:
            every = self.workflows.roots(req.home, None, since)
        except (Unavailable, stampede.SchemaProblem):
            return []
        return [r for r in every if r["wf_uuid"] not in seen and r["wf_uuid"] in planned
                and needle in _em_name(planned[r["wf_uuid"]]).casefold()]

    @staticmethod
    def _not_started_row(req, w):
        return {
            "wf_id": None, "wf_uuid": w["wf_uuid"], "state": stampede.NOT_STARTED,
            "dax_label": _em_name(w),
            "reason": "planned by the ensemble manager (%s); no DAGMan has started it yet"
                      % w["em_state"],
            "timestamp": w["created"], "submit_hostname": None, "submit_dir": w["submit_dir"],
            "user": None, "ensemble": w["ensemble"], "em_workflow": _em_name(w),
            "href": req.url("ensembles", w["ensemble"], "workflows", w["name"])}

    @staticmethod
    def _with_em_names(req, rows, planned):
        """The page's rows, each run the ensemble manager started named by its ensemble
        workflow (copies: the master DB's rows are shared with the cache)."""
        out = []
        for r in rows:
            w = planned.get(r["wf_uuid"]) if r["wf_id"] is not None else None
            if w is not None:
                r = dict(r, ensemble=w["ensemble"], em_workflow=_em_name(w),
                         em_href=req.url("ensembles", w["ensemble"], "workflows", w["name"]))
            out.append(r)
        return out

    def _known_uuids(self, req):
        try:
            return set(r["wf_uuid"] for r in self.workflows.roots(req.home))
        except (Unavailable, stampede.SchemaProblem):
            return set()

    def _list_filter(self, req, text, window, state, sort):
        options = _options(window, (("all", "any time"), ("day", "last day"),
                                    ("week", "last week"), ("month", "last month"),
                                    ("year", "last year")))
        sorts = _options(sort, (("-submitted", "newest first"), ("submitted", "oldest first"),
                                ("label", "label"), ("state", "state"), ("host", "submit host")))
        return Markup(
            '<form class="filter" method="get" action="%s" role="search">'
            '<label>Filter <input type="search" name="q" value="%s" '
            'placeholder="label, name, directory"></label> '
            '<label>Submitted <select name="window">%s</select></label> '
            '<label>Sort <select name="sort">%s</select></label>%s '
            '<button type="submit">Apply</button></form>'
            % (escape(req.url()), escape(text), options, sorts,
               pages.hidden("state", state) if state else ""))

    @staticmethod
    def _list_columns():
        """Every cell sorts as shown (dates are ISO-like), so no data-sort keys: the list
        can have 10,000 rows."""
        return [
            Column("Workflow", _label_cell),
            Column("State", lambda r: Markup('%s <span class="why">%s</span>' % (
                state_badge(r["state"], STATE_LABELS[r["state"]]),
                escape(r["reason"] if r["state"] not in _QUIET else "")))),
            Column("Submitted", lambda r: pages.when(r["timestamp"])),
            Column("Submit host", lambda r: r["submit_hostname"] or "-"),
            Column("Submit directory", lambda r: _path(r["submit_dir"])),
        ]

    # ---- one workflow ----------------------------------------------------------------

    def context(self, req, m, w=None, need_stampede=True):
        ctx = Context()
        ctx.m = m
        ctx.root = self.workflows.root(req.home, m)
        ctx.db = ctx.root_id = ctx.wf = ctx.problem = None
        ctx.states = []
        try:
            ctx.db, ctx.root_id = self.workflows.stampede(ctx.root)
        except (Unavailable, stampede.SchemaProblem) as e:
            if need_stampede:
                raise
            ctx.problem = e.message
            ctx.state, ctx.reason = ctx.root["state"], ctx.root["reason"]
            return ctx
        ctx.wf = self.workflows.workflow(ctx.db, ctx.root_id, w if w is not None else ctx.root_id)
        ctx.states = self.workflows.workflow_states(ctx.db, ctx.wf["wf_id"])
        if ctx.wf["wf_id"] == ctx.root_id:
            ctx.state, ctx.reason = ctx.root["state"], ctx.root["reason"]
        else:
            ctx.state, ctx.reason = self.workflows.progress(ctx.states)
        return ctx

    def wf_url(self, req, ctx, *parts, **query):
        wf_id = ctx.wf["wf_id"] if ctx.wf else "root"
        return req.url("r", ctx.root["wf_id"], "w", wf_id, *parts, **query)

    def crumbs(self, req, ctx, *more):
        root = ctx.root
        out = [(root["dax_label"] or root["wf_uuid"], req.url("r", root["wf_id"]), False)]
        if ctx.wf and ctx.wf["wf_id"] != ctx.root_id:
            out.append((ctx.wf["dax_label"] or ctx.wf["wf_uuid"], self.wf_url(req, ctx), False))
        return out + list(more)

    def root_details(self, req, m):
        return self.workflow_details(req, m, None)

    def workflow_details(self, req, m, w):
        ctx = self.context(req, m, w, need_stampede=w is not None)
        if ctx.wf is None:
            return self._root_only(req, ctx)
        wf_id = ctx.wf["wf_id"]
        counts = self.workflows.job_counts(ctx.db, [wf_id])
        now = time.time()
        wall, since = self.workflows.wall_time(ctx.states, now)
        cumulative = self.workflows.cumulative_time(ctx.db, [wf_id])
        subs = self.workflows.sub_workflows(ctx.db, wf_id) if ctx.wf["children"] else []
        meta = self.workflows.workflow_meta(ctx.db, wf_id)
        n_files = self.workflows.file_count(ctx.db, wf_id)
        em = self._ensemble_workflow(req, ctx)
        tab = req.args.get("tab") or self._default_tab(counts, subs)
        offset = req.int_arg("offset")
        rows, total, key, table_html = self._tab_rows(req, ctx, tab, subs, meta, offset)
        data = {"workflow": ctx.wf, "root": _root_json(ctx.root), "state": ctx.state,
                "reason": ctx.reason, "type": "root-wf" if wf_id == ctx.root_id else "sub-wf",
                "states": ctx.states, "archived": ctx.root["archived"],
                "wall_time": wall, "running_since": since, "cumulative_wall_time": cumulative,
                "job_counts": counts, "metadata_count": len(meta), "file_count": n_files,
                "tab": tab, "total": total, "offset": offset, key: rows,
                "em_workflow": em[0], "em_href": em[1]}
        body = [self._facts(req, ctx, wall, since, cumulative, em), self._status_chart(counts),
                self._wf_links(req, ctx), self._job_tabs(req, counts, subs, tab, meta, n_files),
                table_html, pages.pager(total, offset, JOB_LIMIT, lambda o: req.here(offset=o))]
        title = ctx.wf["dax_label"] or ctx.wf["wf_uuid"]
        return View(title, data, pages.join(body),
                    crumbs=self.crumbs(req, ctx)[:-1] + [(title, None, True)],
                    refresh=REFRESH if ctx.state == stampede.RUNNING else None)

    def _tab_rows(self, req, ctx, tab, subs, meta, offset):
        """(rows, total, JSON key, table) of the tab shown below the workflow's facts."""
        wf_id = ctx.wf["wf_id"]
        if tab == "sub":
            for r in subs:
                r["href"] = req.url("r", ctx.root["wf_id"], "w", r["wf_id"])
            return subs, len(subs), "sub_workflows", table(self._sub_columns(), subs,
                                                             empty="No sub-workflows.")
        if tab == "metadata":
            return meta, len(meta), "metadata", table(
                [Column("Key", lambda r: r["key"]), Column("Value", lambda r: r["value"])],
                meta, empty="No metadata is recorded for this workflow.")
        if tab == "files":
            rows, total = self.workflows.files(ctx.db, wf_id, JOB_LIMIT, offset)
            return rows, total, "files", table(_FILE_COLUMNS, rows,
                                               empty="No files are recorded for this workflow.")
        if tab not in dict(JOB_TABS):
            raise BadRequest("tab must be sub, failed, failing, running, successful, metadata "
                             "or files")
        rows, total = self.workflows.jobs(ctx.db, wf_id, tab, JOB_LIMIT, offset)
        for r in rows:
            self._job_links(req, ctx, r)
        return rows, total, "jobs", table(self._job_columns(), rows, empty="No %s jobs." % tab)

    def _root_only(self, req, ctx):
        """A root workflow whose STAMPEDE DB cannot be read: what the master DB knows."""
        root = ctx.root
        data = {"root": _root_json(root), "state": ctx.state, "reason": ctx.reason,
                "notice": ctx.problem,
                "states": self.workflows.root_states(req.home, root["wf_id"])}
        body = [notice(ctx.problem, "warn"),
                dl([("Label", root["dax_label"]),
                    ("State", self._state_html(ctx.state, ctx.reason) +
                     (ARCHIVED if root.get("archived") else "")),
                    ("Workflow UUID", root["wf_uuid"]), ("Submit host", root["submit_hostname"]),
                    ("User", root["user"]), ("Submit directory", self._dir_link(req, root)),
                    ("Planned", pages.when(root["timestamp"])),
                    ("STAMPEDE database", root["db_url"])]),
                section("Runs", table([Column("State", lambda s: s["state"]),
                                       Column("Time", lambda s: pages.when(s["timestamp"])),
                                       Column("Restart", lambda s: s["restart_count"],
                                              numeric=True),
                                       Column("Status", lambda s: s["status"], numeric=True)],
                                      data["states"], empty="No run has started."))]
        title = root["dax_label"] or root["wf_uuid"]
        return View(title, data, pages.join(body), crumbs=[(title, None, True)],
                    refresh=REFRESH if ctx.state == stampede.RUNNING else None)

    @staticmethod
    def _default_tab(counts, subs):
        for key in ("failed", "failing", "running"):
            if counts[key]["all"]:
                return key
        return "sub" if subs else "successful"

    @staticmethod
    def _state_html(state, reason):
        return Markup('%s <span class="why">%s</span>'
                      % (state_badge(state, STATE_LABELS.get(state, state)), escape(reason)))

    @staticmethod
    def _dir_link(req, root):
        if not root["submit_dir"]:
            return "-"
        return link(req.url("r", root["wf_id"], "w", "root", "files"),
                    pages.breakable(root["submit_dir"]), class_="path")

    def _ensemble_workflow(self, req, ctx):
        """(name, href) of the ensemble workflow that started this root, or (None, None)."""
        if ctx.wf["wf_id"] != ctx.root_id:
            return None, None
        w = self.ensembles.by_uuid(req.home).get(ctx.wf["wf_uuid"])
        if w is None:
            return None, None
        return _em_name(w), req.url("ensembles", w["ensemble"], "workflows", w["name"])

    def _facts(self, req, ctx, wall, since, cumulative, em):
        wf, root = ctx.wf, ctx.root
        is_root = wf["wf_id"] == ctx.root_id
        kind = "root workflow" if is_root else Markup("sub-workflow of %s" % link(
            req.url("r", root["wf_id"], "w", wf["parent_wf_id"]), "its parent"))
        if em[0]:
            kind = Markup("root workflow, started by the ensemble manager as %s"
                          % link(em[1], em[0]))
        dagman = (wf["dag_file_name"] or "") + ".dagman.out" if wf["dag_file_name"] else None
        files = lambda *p: self.wf_url(req, ctx, "files", *p)  # noqa: E731
        restarts = max([s.get("restart_count") or 0 for s in ctx.states] or [0])
        wall_text = pages.duration(wall)
        if since is not None and ctx.state == stampede.DIED:
            wall_text = "- (started %s; its DAGMan died)" % pages.when(since)
        elif since is not None:
            wall_text = "%s (running since %s)" % (wall_text, pages.when(since))
        return dl([("Label", wf["dax_label"]), ("Type", kind),
                   ("Progress", self._state_html(ctx.state, ctx.reason) +
                    (ARCHIVED if root.get("archived") else "")),
                   ("Submit host", wf.get("submit_hostname")), ("User", wf.get("user")),
                   ("Submit directory", link(files(), pages.breakable(wf["submit_dir"]),
                                             class_="path") if wf.get("submit_dir") else "-"),
                   ("DAGMan output", link(files(dagman), dagman) if dagman else "-"),
                   ("Workflow UUID", wf["wf_uuid"]), ("Planner", wf.get("planner_version")),
                   ("Planned", pages.when(wf.get("timestamp"))), ("Restarts", restarts),
                   ("Wall time", wall_text),
                   ("Cumulative job wall time", pages.duration(cumulative))])

    @staticmethod
    def _status_chart(counts):
        c = lambda k: counts[k]["all"]  # noqa: E731
        parts = [("Successful", c("successful"), "ok"), ("Failed", c("failed"), "fail"),
                 ("Failing", c("failing"), "failing"),
                 ("Running", c("running") - c("failing"), "run"),
                 ("Unsubmitted", c("unsubmitted"), "idle")]
        return section("Jobs (%d)" % c("total"), charts.status_bar(parts, "Job status"))

    def _wf_links(self, req, ctx):
        items = [("Statistics", self.wf_url(req, ctx, "statistics")),
                 ("Charts", self.wf_url(req, ctx, "charts")),
                 ("Files", self.wf_url(req, ctx, "files"))]
        return Markup('<p class="links">%s</p>'
                      % " \u00b7 ".join(str(link(h, t)) for t, h in items))

    def _job_tabs(self, req, counts, subs, current, meta, n_files):
        items = []
        if subs:
            items.append(("Sub-workflows", len(subs), req.here(tab="sub", offset=None),
                          current == "sub"))
        for key, label in JOB_TABS:
            items.append((label, counts[key]["all"], req.here(tab=key, offset=None),
                          current == key))
        items.append(("Metadata", len(meta), req.here(tab="metadata", offset=None),
                      current == "metadata"))
        items.append(("Files", n_files, req.here(tab="files", offset=None), current == "files"))
        return pages.tabs(items)

    def _job_links(self, req, ctx, r):
        base = ("r", ctx.root["wf_id"], "w", ctx.wf["wf_id"], "j", r["job_id"])
        r["href"] = req.url(*base)
        r["instance_href"] = req.url(*(base + ("ji", r["job_instance_id"])))
        r["stdout_href"] = req.url(*(base + ("ji", r["job_instance_id"], "stdout")))
        r["stderr_href"] = req.url(*(base + ("ji", r["job_instance_id"], "stderr")))
        if r.get("subwf_id"):
            r["sub_workflow_href"] = req.url("r", ctx.root["wf_id"], "w", r["subwf_id"])

    @staticmethod
    def _job_columns():
        return [
            Column("Job", lambda r: link(r["href"], r["exec_job_id"]),
                   key=lambda r: r["exec_job_id"]),
            Column("Type", lambda r: r["type_desc"]),
            Column("Tries", lambda r: r["tries"], key=lambda r: r["tries"], numeric=True),
            Column("Exit code", lambda r: "-" if r["exitcode"] is None else r["exitcode"],
                   key=lambda r: -1 if r["exitcode"] is None else r["exitcode"], numeric=True),
            Column("Site", lambda r: r["site"] or "-"),
            Column("Host", lambda r: r["hostname"] or "-"),
            Column("Submitted", lambda r: pages.when(r["submitted"]),
                   key=lambda r: r["submitted"] or 0),
            Column("Duration", lambda r: pages.duration(r["local_duration"]),
                   key=lambda r: r["local_duration"] or 0, numeric=True),
            Column("Output", _output_links),
        ]

    def _sub_columns(self):
        return [
            Column("Label", lambda r: link(r["href"], r["dax_label"] or r["wf_uuid"]),
                   key=lambda r: r["dax_label"] or ""),
            Column("State", lambda r: self._state_html(
                r["state"], r["reason"] if r["state"] == stampede.FAILED else ""),
                key=lambda r: r["state"]),
            Column("Planned", lambda r: pages.when(r["timestamp"]),
                   key=lambda r: r["timestamp"] or 0),
            Column("Submit directory", lambda r: _path(r["submit_dir"])),
        ]

    # ---- jobs, instances, invocations --------------------------------------------------

    def job_details(self, req, m, w, job_id):
        ctx = self.context(req, m, w)
        instances = self.workflows.instances(ctx.db, int(job_id))
        if not instances:
            job = self.workflows.job(ctx.db, ctx.wf["wf_id"], int(job_id))
            return self._job_page(req, ctx, job, instances, None)
        return self.instance_details(req, m, w, job_id, instances[-1]["job_instance_id"])

    def instance_details(self, req, m, w, job_id, ji):
        ctx = self.context(req, m, w)
        job = self.workflows.job(ctx.db, ctx.wf["wf_id"], int(job_id))
        instances = self.workflows.instances(ctx.db, int(job_id))
        instance = self.workflows.instance(ctx.db, int(job_id), int(ji))
        return self._job_page(req, ctx, job, instances, instance)

    def _job_page(self, req, ctx, job, instances, instance):
        base = ("r", ctx.root["wf_id"], "w", ctx.wf["wf_id"], "j", job["job_id"])
        for i in instances:
            i["href"] = req.url(*(base + ("ji", i["job_instance_id"])))
        data = {"job": job, "instances": instances, "instance": instance}
        body = []
        facts = [("Job", job["exec_job_id"]), ("Type", job["type_desc"]),
                 ("Submit file", self._maybe_file(req, ctx, job["submit_file"])),
                 ("Executable", job.get("executable")), ("Arguments", job.get("argv")),
                 ("Maximum retries", job.get("max_retries")), ("Tries", len(instances))]
        title = job["exec_job_id"]
        if instance is None:
            body.append(notice("This job has not been submitted yet.", "info"))
            body.append(dl(facts))
            return View(title, data, pages.join(body),
                        crumbs=self.crumbs(req, ctx, (title, None, True)))
        ji = instance["job_instance_id"]
        states = self.workflows.jobstates(ctx.db, ji)
        invocations = self.workflows.invocations(ctx.db, ctx.wf["wf_id"], ji)
        for i in invocations:
            i["href"] = req.url(*(base + ("ji", ji, "i", i["invocation_id"])))
        data.update(states=states, invocations=invocations)
        code = instance["exitcode"]
        try_no = [i["job_instance_id"] for i in instances].index(ji) + 1
        facts += [("Try shown", "%s (submit sequence %s)" % (try_no, instance["job_submit_seq"])),
                  ("Exit code", "running" if code is None else code),
                  ("HTCondor id", instance.get("sched_id")), ("Site", instance.get("site")),
                  ("Host", instance.get("hostname")),
                  ("Working directory", instance.get("work_dir")),
                  ("Duration", pages.duration(instance.get("local_duration"))),
                  ("stdout file", self._maybe_file(req, ctx, instance.get("stdout_file"))),
                  ("stderr file", self._maybe_file(req, ctx, instance.get("stderr_file")))]
        if instance.get("subwf_id"):
            sub = req.url("r", ctx.root["wf_id"], "w", instance["subwf_id"])
            facts.append(("Sub-workflow", link(sub, "workflow %s" % instance["subwf_id"])))
        body.append(dl(facts))
        t0 = float(states[0]["timestamp"]) if states else 0.0
        body.append(section("State timeline", table(
            [Column("State", lambda s: s["state"]),
             Column("Time", lambda s: pages.when(s["timestamp"])),
             Column("+", lambda s: "+%.1f s" % (float(s["timestamp"]) - t0), numeric=True),
             Column("Reason", lambda s: s["reason"] or "")],
            states, sortable=False, empty="No states yet.")))
        body.append(section("Tries", table(
            [Column("Try", lambda i: link(i["href"], i["job_submit_seq"])
                    if i["job_instance_id"] != ji
                    else Markup("<strong>%s</strong>" % escape(i["job_submit_seq"]))),
             Column("HTCondor id", lambda i: i["sched_id"]),
             Column("Exit code", lambda i: "running" if i["exitcode"] is None else i["exitcode"]),
             Column("Host", lambda i: i["hostname"] or "-"),
             Column("Duration", lambda i: pages.duration(i["local_duration"]), numeric=True)],
            instances, sortable=False)))
        body.append(section("Invocations", table(
            [Column("Task", lambda i: link(i["href"], i["abs_task_id"] or i["transformation"])),
             Column("Transformation", lambda i: i["transformation"]),
             Column("Exit code", lambda i: i["exitcode"], numeric=True),
             Column("Start", lambda i: pages.when(i["start_time"])),
             Column("Duration", lambda i: pages.duration(i["remote_duration"]), numeric=True)],
            invocations, empty="No invocation recorded."), "invocations"))
        out_href = req.url(*(base + ("ji", ji, "stdout")))
        err_href = req.url(*(base + ("ji", ji, "stderr")))
        for name, href in (("stdout", out_href), ("stderr", err_href)):
            text = pages.pre(instance.get(name + "_text"))
            plain = Markup("<p>%s</p>" % link(href, "as plain text"))
            body.append(section(name, text + plain, name))
        live = code is None and ctx.state == stampede.RUNNING
        return View(title, data, pages.join(body),
                    crumbs=self.crumbs(req, ctx, (title, None, True)),
                    refresh=REFRESH if live else None)

    def _maybe_file(self, req, ctx, path):
        if not path:
            return "-"
        submit = ctx.wf.get("submit_dir") or ""
        rel = path[len(submit):].lstrip("/") if submit and path.startswith(submit + "/") else path
        if rel.startswith("/"):
            return path
        return link(self.wf_url(req, ctx, "files", *rel.split("/")), path)

    def job_output(self, req, m, w, job_id, ji, which):
        ctx = self.context(req, m, w)
        self.workflows.job(ctx.db, ctx.wf["wf_id"], int(job_id))
        instance = self.workflows.instance(ctx.db, int(job_id), int(ji))
        text = instance.get("%s_text" % which) or ""
        if req.json:
            return View(which, {"text": text, "file": instance.get("%s_file" % which)},
                        Markup(""))
        return raw_response(text.encode("utf-8"), "text/plain; charset=utf-8", None)

    def invocation_details(self, req, m, w, job_id, ji, inv):
        ctx = self.context(req, m, w)
        job = self.workflows.job(ctx.db, ctx.wf["wf_id"], int(job_id))
        instance = self.workflows.instance(ctx.db, int(job_id), int(ji))
        row = self.workflows.invocation(ctx.db, ctx.wf["wf_id"], int(ji),
                                        None if inv is None else int(inv))
        task = self.workflows.task(ctx.db, ctx.wf["wf_id"], row.get("abs_task_id"))
        meta = self.workflows.task_meta(ctx.db, task and task["task_id"])
        data = {"invocation": row, "task": task, "task_metadata": meta,
                "work_dir": instance.get("work_dir")}
        facts = dl([("Task", row.get("abs_task_id")),
                    ("Transformation", row.get("transformation")),
                    ("Working directory", instance.get("work_dir")),
                    ("Executable", row.get("executable")), ("Arguments", row.get("argv")),
                    ("Exit code", row.get("exitcode")),
                    ("Start", pages.when(row.get("start_time"))),
                    ("Remote duration", pages.duration(row.get("remote_duration"))),
                    ("Remote CPU time", pages.duration(row.get("remote_cpu_time"))),
                    ("Max RSS (KiB)", pages.number(row.get("maxrss"))),
                    ("Average CPU", pages.number(row.get("avg_cpu"))),
                    ("Try sequence", row.get("task_submit_seq"))])
        body = facts + section("Task metadata", table(
            [Column("Key", lambda r: r["key"]), Column("Value", lambda r: r["value"])], meta,
            empty="No metadata is recorded for this task."), "task-metadata")
        job_href = self.wf_url(req, ctx, "j", job["job_id"], "ji", ji)
        title = "%s: %s" % (job["exec_job_id"],
                            row.get("abs_task_id") or row.get("transformation"))
        return View(title, data, body,
                    crumbs=self.crumbs(req, ctx, (job["exec_job_id"], job_href, False),
                                       (title, None, True)))

    # ---- files -----------------------------------------------------------------------

    def files(self, req, m, w, rest):
        """The submit-dir browser; for anything but a browser loading a page, Pegasus
        5.x's JSON listing (with our entries beside its `dirs` and `files`)."""
        req.json = req.json or not req.navigating()
        ctx = self.context(req, m, None if w == "root" else w, need_stampede=w != "root")
        submit_dir = ctx.wf["submit_dir"] if ctx.wf else ctx.root["submit_dir"]
        names = browse.split(rest or "")
        browser = browse.Browser(submit_dir, self.file_owner(req.user))
        real, st = browser.stat(names)
        here = lambda *p: self.wf_url(req, ctx, "files", *(names + list(p)))  # noqa: E731
        crumbs = self.crumbs(req, ctx, ("Files", self.wf_url(req, ctx, "files") if names else None,
                                        not names))
        for i, n in enumerate(names):
            last = i == len(names) - 1
            crumbs.append((n, None if last else self.wf_url(req, ctx, "files", *names[:i + 1]),
                           last))
        title = "/".join(names) or "Files"
        if stat.S_ISDIR(st.st_mode):
            entries = browser.listing(names)
            for e in entries:
                e["href"] = None if e["outside"] else here(e["name"])
            data = {"submit_dir": submit_dir, "path": "/".join(names), "entries": entries,
                    # Pegasus 5.x's listing: paths below the submit directory
                    "dirs": [_below(names, e["name"]) for e in entries if e["dir"]],
                    "files": [_below(names, e["name"]) for e in entries if not e["dir"]]}
            cols = [Column("Name", _entry_html, key=lambda e: (not e["dir"], e["name"])),
                    Column("Size", lambda e: pages.size(e["size"]) if not e["dir"] else "-",
                           key=lambda e: e["size"] or 0, numeric=True),
                    Column("Modified", lambda e: pages.when(e["mtime"]),
                           key=lambda e: e["mtime"] or 0)]
            body = Markup('<p class="path">%s</p>' % pages.breakable(real)) + table(
                cols, entries, empty="Empty directory.")
            return View(title, data, body, crumbs=crumbs)
        if req.args.get("raw"):
            data, _, _ = browser.read(names, limit=None)
            binary = browse.is_binary(data)
            kind = "application/octet-stream" if binary else "text/plain; charset=utf-8"
            inline = req.args["raw"] == "inline" and not binary
            return raw_response(data, kind, None if inline else names[-1])
        data, size, truncated = browser.read(names)
        binary = browse.is_binary(data)
        text = None if binary else data.decode("utf-8", "replace")
        info = {"submit_dir": submit_dir, "path": "/".join(names), "size": size,
                "truncated": truncated, "binary": binary, "text": text}
        raw = pages.query(here(), raw=1)
        parts = [Markup('<p class="path">%s &middot; %s &middot; %s</p>' % (
            pages.breakable(real), escape(pages.size(size)), link(raw, "download")))]
        if binary:
            parts.append(notice("A binary file; download it to read it.", "info"))
        else:
            if truncated:
                parts.append(notice("Showing the last %s of %s."
                                    % (pages.size(len(data)), pages.size(size)), "info"))
            parts.append(pages.pre(text, "output file"))
        return View(title, info, pages.join(parts), crumbs=crumbs)



_QUIET = (stampede.SUCCESSFUL, stampede.RUNNING)  # states whose reason the list leaves out
_ROOT_JSON = ("wf_id", "wf_uuid", "dax_label", "submit_hostname", "submit_dir", "timestamp",
              "user", "db_url", "state", "reason", "last_state", "status", "restart_count",
              "archived")


def _pairs(items, key, value):
    """A small two-column list inside a cell (PFNs and sites, metadata keys and values)."""
    if not items:
        return Markup('<span class="muted">none</span>')
    return Markup('<ul class="pairs">%s</ul>' % "".join(
        "<li>%s%s</li>" % (escape(i[key]), Markup(' <span class="why">%s</span>'
                                                   % escape(i[value])) if i[value] else "")
        for i in items))


_FILE_COLUMNS = [Column("LFN", lambda r: r["lfn"], key=lambda r: r["lfn"]),
                 Column("Type", lambda r: r["file_type"] or "-"),
                 Column("PFNs (site)", lambda r: _pairs(r["pfns"], "pfn", "site")),
                 Column("Metadata", lambda r: _pairs(r["meta"], "key", "value"))]


def _root_json(root):
    return {k: root.get(k) for k in _ROOT_JSON}


def _path(text):
    return Markup('<span class="path">%s</span>' % pages.breakable(text))


def _label_cell(r):
    """Pegasus's label (the same for every run of a DAX) and, for a run the ensemble
    manager started, the ensemble workflow that tells it apart."""
    cell = link(r["href"], r["dax_label"] or r["wf_uuid"])
    if r.get("archived"):
        cell += ARCHIVED
    if r.get("em_href"):
        cell += Markup('<span class="em"><span class="why">ensemble workflow</span> %s</span>'
                       % link(r["em_href"], r["em_workflow"]))
    return cell


def _em_name(w):
    return "%s.%s" % (w["ensemble"], w["name"])


def _matches(w, needle, since):
    """Whether a planned ensemble workflow passes the list's filter."""
    if since is not None and w["created"] < since:
        return False
    hay = " ".join(str(w[k] or "") for k in ("name", "submit_dir", "wf_uuid", "ensemble"))
    return not needle or needle in (hay + " " + _em_name(w)).casefold()


def _options(current, choices):
    return "".join('<option value="%s"%s>%s</option>'
                   % (value, " selected" if value == current else "", label)
                   for value, label in choices)


def _output_links(r):
    sub = r.get("sub_workflow_href")
    return Markup("%s %s%s" % (link(r["stdout_href"], "stdout"), link(r["stderr_href"], "stderr"),
                               " " + link(sub, "sub-workflow") if sub else ""))


def _below(names, name):
    return "/".join(names + [name])


def _entry_html(e):
    name = e["name"] + ("/" if e["dir"] else "")
    out = link(e["href"], name) if e["href"] else Markup("<span>%s</span>" % escape(name))
    if e["link"] is not None:
        out = Markup('%s <span class="why">&rarr; %s%s</span>' % (
            out, escape(e["link"]), " (outside the submit directory)" if e["outside"] else ""))
    return out
