"""The ensemble pages of the dashboard: ensembles with their throttles and
counts, an ensemble's workflows in queue order with why each waits, a
workflow's history and analysis, and triggers, each with its action forms.

The forms post back to the page's own URL, where `dashboard.Dashboard.act`
sends them to the user's daemon.
"""

from . import pages
from .dashpage import View
from .ensview import EMSchemaProblem
from ..errors import EMError
from .masterdb import Unavailable
from .pages import Column, Markup, dl, escape, link, notice, section, state_badge, table
from ..core.states import EnsembleState, TriggerState, WorkflowState

W = WorkflowState
ENSEMBLE_LIMIT = 200
REFRESH = 10
START_EM = "pegasus-em server &"
ENSEMBLE_BUTTONS = (("activate", "Activate", EnsembleState.ACTIVE),
                    ("pause", "Pause", EnsembleState.PAUSED),
                    ("hold", "Hold", EnsembleState.HELD))
# Where a priority still decides something: the workflow waits, or will wait, in the queue.
PRIORITIZED = (W.READY, W.PLANNING, W.QUEUED)
REPLANNABLE = (W.PLAN_FAILED, W.RUN_FAILED, W.FAILED, W.ABORTED)
RERUNNABLE = (W.RUN_FAILED, W.FAILED, W.ABORTED)
ABORTABLE = (W.READY, W.QUEUED, W.PLANNING, W.RUNNING)


class EnsemblePages:
    """`ensembles`: an ensview.Ensembles; `workflows`: a stampede.Workflows (links to a
    run's pages); `em`: an EMProxy (is the daemon running, analyze); `csrf(req)`: a
    form token, or None where the viewer may not act."""

    def __init__(self, ensembles, workflows, em, csrf):
        self.ensembles = ensembles
        self.workflows = workflows
        self.em = em
        self.csrf = csrf

    @staticmethod
    def _em_problem(e):
        if isinstance(e, Unavailable):
            return ("No ensembles yet: %s. `pegasus-em server` creates it; `pegasus-em create` "
                    "adds an ensemble." % e.message)
        return e.message

    def manager_state(self, req, data):
        """Whether the user's pegasus-em runs (in `data` too) and, when it does not, a notice
        saying so: its pages then show where it stopped, and nothing moves until it runs."""
        running = self.em.running(req.home)
        data["manager_running"] = running
        if running is not False:
            return running, Markup("")
        text = ("%s's ensemble manager is not running: these pages show its state when it "
                "stopped, and nothing is planned, run or triggered until it runs again. Start "
                "it (as %s) with: " % (req.user, req.user))
        data["manager_notice"] = text + START_EM
        return running, notice(escape(text) + Markup("<code>%s</code>" % escape(START_EM)),
                               "error")

    def ensemble_list(self, req):
        try:
            rows = self.ensembles.ensembles(req.home)
            problem = None
        except (Unavailable, EMSchemaProblem) as e:
            rows, problem = [], self._em_problem(e)
        for r in rows:
            r["href"] = req.url("ensembles", r["name"])
        data = {"ensembles": rows}
        body = []
        running = None
        if problem:
            data["notice"] = problem
            body.append(notice(problem, "warn"))
        else:
            running, down = self.manager_state(req, data)
            body.append(down)
        if rows or not problem:
            body.append(table(_ENSEMBLE_COLUMNS, rows, empty="No ensembles."))
        busy = any(_busy(r) for r in rows)
        return View("Ensembles", data, pages.join(body), section="ensembles",
                    refresh=REFRESH if busy and running is not False else None)

    def ensemble_page(self, req, name):
        offset = req.int_arg("offset")
        info = self.ensembles.ensemble(req.home, name, ENSEMBLE_LIMIT, offset)
        e = info["ensemble"]
        token = self.csrf(req)
        for wf in info["workflows"]:
            wf["href"] = req.url("ensembles", name, "workflows", wf["name"])
        for t in info["triggers"]:
            t["href"] = req.url("ensembles", name, "triggers", t["name"])
        info["offset"] = offset
        running, down = self.manager_state(req, info)
        queue = table(self._queue_columns(token), info["workflows"], empty="No workflows.")
        pager = pages.pager(info["total"], offset, ENSEMBLE_LIMIT, lambda o: req.here(offset=o))
        body = [down, dl([("State", state_badge(e["state"])),
                          ("Planning", fill(e["planning"], e["max_planning"])),
                          ("Running", fill(e["running"], e["max_running"])),
                          ("Workflows", state_counts(e["counts"])),
                          ("Created", pages.when(e["created"])),
                          ("Updated", pages.when(e["updated"]))]),
                ensemble_forms(req.url("ensembles", name), token, e["state"]),
                section("Workflows, in queue order", queue + pager),
                section("Triggers", table(self._trigger_columns(token), info["triggers"],
                                          empty="No triggers."))]
        return View(name, info, pages.join(body), section="ensembles",
                    crumbs=[("Ensembles", req.url("ensembles"), False), (name, None, True)],
                    refresh=REFRESH if _busy(e) and running is not False else None)

    @staticmethod
    def _queue_columns(token):
        return [
            Column("#", lambda w: w["position"] or "", key=lambda w: w["position"] or 0,
                   numeric=True),
            Column("Workflow", lambda w: link(w["href"], w["name"]), key=lambda w: w["name"]),
            Column("State", lambda w: state_badge(w["state"]), key=lambda w: w["state"]),
            Column("Priority", lambda w: priority_form(w["href"], token, w),
                   key=lambda w: w["priority"], numeric=True),
            Column("Last event", lambda w: event_text(w["last_event"]),
                   key=lambda w: (w["last_event"] or {}).get("time") or 0),
            Column("Waiting for / reason",
                   lambda w: pages.prose(w["waiting"] or w["reason"] or "")),
            Column("Actions", lambda w: workflow_forms(w["href"], token, w)),
        ]

    @staticmethod
    def _trigger_columns(token):
        return [
            Column("Trigger", lambda t: link(t["href"], t["name"]), key=lambda t: t["name"]),
            Column("Type", lambda t: t["type"]),
            Column("State", lambda t: state_badge(t["state"]), key=lambda t: t["state"]),
            Column("Every", lambda t: pages.duration(t["interval"]), key=lambda t: t["interval"],
                   numeric=True),
            Column("Next firing", lambda t: pages.when(t["next_fire"]),
                   key=lambda t: t["next_fire"] or 0),
            Column("Deadline", lambda t: pages.when(t["deadline"])),
            Column("Fired", lambda t: t["fire_count"], numeric=True),
            Column("Workflows", lambda t: t["workflow_count"], numeric=True),
            Column("Failures", lambda t: t["failures"], numeric=True),
            Column("Last error", lambda t: pages.prose(t["last_error"] or "")),
            Column("", lambda t: trigger_form(t["href"], token)
                   if t["state"] in TriggerState.LIVE else ""),
        ]

    def em_workflow(self, req, ensemble, name):
        info = self.ensembles.workflow(req.home, ensemble, name)
        wf = info["workflow"]
        token = self.csrf(req)
        href = req.url("ensembles", ensemble, "workflows", name)
        root = self._master_link(req, wf.get("wf_uuid"))
        info["root_href"] = root
        info["analyze_href"] = req.url("ensembles", ensemble, "workflows", name, "analyze")
        running, down = self.manager_state(req, info)
        trigger = (link(req.url("ensembles", ensemble, "triggers", wf["trigger"]), wf["trigger"])
                   if wf.get("trigger") else "-")
        body = [down, workflow_facts(wf, priority_form(href, token, wf), root, trigger),
                Markup('<div class="actions">%s</div>' % workflow_forms(href, token, wf)),
                Markup('<p class="links">%s</p>'
                       % link(info["analyze_href"], "Analyze (log and pegasus-analyzer)")),
                section("History", table(_EVENT_COLUMNS, info["events"], empty="No events."))]
        live = wf["state"] in W.ACTIVE
        return View("%s.%s" % (ensemble, name), info, pages.join(body), section="ensembles",
                    crumbs=_crumbs(req, ensemble, (name, None, True)),
                    refresh=REFRESH if live and running is not False else None)

    def _master_link(self, req, wf_uuid):
        if not wf_uuid:
            return None
        try:
            root = self.workflows.root(req.home, wf_uuid)
        except EMError:
            return None
        return req.url("r", root["wf_id"])

    def analyze(self, req, ensemble, name):
        """The daemon's analyze report (its log and pegasus-analyzer), asked for on demand."""
        self.ensembles.workflow(req.home, ensemble, name)  # 404 for unknown names
        try:
            status, _, body = self.em.forward(
                req.home, req.user, "GET", "/ensembles/%s/workflows/%s/analyze" % (ensemble, name),
                "", {"accept": "text/plain"}, b"", req.origin + req.prefix)
            text = body.decode("utf-8", "replace")
            problem = None if status == 200 else "pegasus-em answered %d: %s" % (status, text)
        except EMError as e:
            text, problem = None, e.message
        data = {"text": text, "notice": problem}
        parts = [notice(problem, "warn") if problem else pages.pre(text)]
        return View("Analysis of %s.%s" % (ensemble, name), data, pages.join(parts),
                    section="ensembles",
                    crumbs=_crumbs(req, ensemble, (name, req.url("ensembles", ensemble,
                                                                 "workflows", name), False),
                                   ("Analyze", None, True)))

    def trigger_page(self, req, ensemble, name):
        info = self.ensembles.trigger(req.home, ensemble, name)
        t = info["trigger"]
        token = self.csrf(req)
        href = req.url("ensembles", ensemble, "triggers", name)
        for w in t["workflows"]:
            w["href"] = req.url("ensembles", ensemble, "workflows", w["name"])
        running, down = self.manager_state(req, info)
        facts = [("State", state_badge(t["state"])), ("Type", t["type"]),
                 ("Every", pages.duration(t["interval"])),
                 ("Next firing", pages.when(t["next_fire"])),
                 ("Deadline", pages.when(t["deadline"])), ("Fired", t["fire_count"]),
                 ("Failing", _failing(t)),
                 ("Failures in a row", t["failures"]), ("Last error", t["last_error"]),
                 ("Script", t["script"]), ("Arguments", " ".join(t["args"])),
                 ("Base directory", t["basedir"]), ("Created", pages.when(t["created"]))]
        if t["type"] == "FILE_PATTERN":
            facts.append(("File patterns", ", ".join(t["file_patterns"])))
        submitted = table([Column("Workflow", lambda w: link(w["href"], w["name"]),
                                  key=lambda w: w["name"]),
                           Column("State", lambda w: state_badge(w["state"] or "-"))],
                          t["workflows"], empty="None yet.")
        live = t["state"] in TriggerState.LIVE
        body = [down, dl(facts), trigger_form(href, token) if live else Markup(""),
                section("Workflows it submitted (%d)" % t["workflow_count"], submitted),
                section("History", table(_EVENT_COLUMNS, info["events"], empty="No events."))]
        return View("Trigger %s" % name, info, pages.join(body), section="ensembles",
                    crumbs=_crumbs(req, ensemble, (name, None, True)),
                    refresh=REFRESH if live and running is not False else None)


def _failing(t):
    """A live trigger whose firings fail retries at each interval: say since when."""
    if not t["failing"]:
        return "no"
    return "yes, since %s (first error: %s; last at %s)" % (
        pages.when(t["first_failure"]), t["first_error"], pages.when(t["last_failure"]))


def _busy(e):
    """Whether an ensemble (summary) has work going on: its page then refreshes itself."""
    return bool(e["planning"] or e["running"] or e["counts"][W.READY] or e["counts"][W.QUEUED])


def _crumbs(req, ensemble, *more):
    return [("Ensembles", req.url("ensembles"), False),
            (ensemble, req.url("ensembles", ensemble), False)] + list(more)


_ENSEMBLE_COLUMNS = [
    Column("Ensemble", lambda r: link(r["href"], r["name"]), key=lambda r: r["name"]),
    Column("State", lambda r: state_badge(r["state"]), key=lambda r: r["state"]),
    Column("Planning", lambda r: fill(r["planning"], r["max_planning"]),
           key=lambda r: r["planning"]),
    Column("Running", lambda r: fill(r["running"], r["max_running"]), key=lambda r: r["running"]),
    Column("Workflows", lambda r: state_counts(r["counts"]), key=lambda r: r["workflows"]),
    Column("Triggers", lambda r: "%d live, %d in all" % (r["live_triggers"],
                                                         sum(r["triggers"].values())),
           key=lambda r: r["live_triggers"]),
    Column("Updated", lambda r: pages.when(r["updated"]), key=lambda r: r["updated"]),
]

_EVENT_COLUMNS = [
    Column("Time", lambda e: pages.when(e["time"]), key=lambda e: e["time"]),
    Column("From", lambda e: e["old_state"] or "-"),
    Column("To", lambda e: state_badge(e["new_state"])),
    Column("Reason", lambda e: pages.prose(e["reason"] or "")),
]


def fill(n, limit):
    """'2 / 4' with a progress bar (no inline style: CSP)."""
    return Markup('<span class="fill">%d / %d <progress max="%d" value="%d">%d of %d</progress>'
                  '</span>' % (n, limit, max(limit, 1), min(n, max(limit, 1)), n, limit))


def state_counts(counts):
    parts = ['<span class="pair">%s %s</span>' % (state_badge(s), escape(n))
             for s, n in counts.items() if n]
    return Markup('<span class="counts">%s</span>' % " ".join(parts)) if parts else "none"


def event_text(e):
    """The change and its time; its reason is the workflow's, shown in a column of its own."""
    if not e:
        return "-"
    arrow = "%s \u2192 %s" % (e["old_state"], e["new_state"]) if e["old_state"] else e["new_state"]
    return Markup('<span class="change">%s</span> <span class="why when">%s</span>'
                  % (escape(arrow), escape(pages.when(e["time"]))))


def workflow_facts(wf, priority, root, trigger):
    """An ensemble workflow's facts; what waiting workflows alone have is left out for others."""
    waiting = [("Waiting for", wf["waiting"])] if wf["waiting"] else []
    queued = [("Queue position", wf["position"])] if wf["position"] else []
    return dl([("State", state_badge(wf["state"]))] + waiting +
              [("Reason", pages.breakable(wf["reason"])), ("Priority", priority)] + queued +
              [("Created", pages.when(wf["created"])), ("Updated", pages.when(wf["updated"])),
               ("Base directory", pages.breakable(wf["basedir"])),
               ("Plan command", Markup("<code>%s</code>" % pages.breakable(wf["plan_command"]))),
               ("Submit directory", pages.breakable(wf["submitdir"])),
               ("Workflow UUID", wf["wf_uuid"]),
               ("Workflow pages", link(root, "details, jobs, statistics") if root else "-"),
               ("Triggered by", trigger), ("Log", pages.breakable(wf["log"]))])


def ensemble_forms(href, token, state):
    forms = [pages.action_form(href, token, label, [("action", action)])
             for action, label, target in ENSEMBLE_BUTTONS if target != state]
    return Markup('<div class="actions">%s</div>' % "".join(forms))


def workflow_forms(href, token, wf):
    """The actions a workflow's state allows (the daemon checks again)."""
    forms = []
    state = wf["state"]
    if state in REPLANNABLE:
        forms.append(pages.action_form(href, token, "Replan", [("action", "replan")]))
    if state in RERUNNABLE and wf.get("submitdir"):
        forms.append(pages.action_form(href, token, "Rerun", [("action", "rerun")]))
    if state in ABORTABLE and not wf.get("abort_requested"):
        forms.append(pages.action_form(href, token, "Abort", [("action", "abort")], danger=True))
    return Markup("".join(forms))


def priority_form(href, token, wf):
    """A box to change the priority where it still orders the queue, else the number."""
    priority = wf["priority"]
    if token is None or wf["state"] not in PRIORITIZED:
        return escape(priority)
    field = Markup('<input type="number" name="priority" value="%s" aria-label="priority" '
                   'step="1">' % escape(priority))
    return pages.action_form(href, token, "Set", [("action", "priority")], cls="act prio",
                             extra=field)


def trigger_form(href, token):
    return pages.action_form(href, token, "Stop", [("action", "stop")], danger=True)
