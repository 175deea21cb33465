"""Use cases of the ensemble manager, one transaction each.

Everything the API, the triggers and (later) the dashboard may do goes
through here; after a change that may give the engine work, `wake()` is
called so a freed or new slot is used at once.
"""

import os
import time

from . import explain, importer, metrics, model, states, store, transitions
from ..errors import BadRequest, Conflict, shown
from .model import Workflow
from .states import EnsembleState, TriggerState, TriggerType, WorkflowState

MAX_LIST = 1000
MAX_PLAN_COMMAND = 65536  # characters


class Ops:
    def __init__(self, db, ensembles_dir, wake=lambda: None, clock=time.time, analyzer=None,
                 limits=(None, None)):
        self.db = db
        self.ensembles_dir = ensembles_dir
        self.wake = wake
        # Trigger changes also wake the trigger scheduler, and state changes the
        # notification sender; a plain submission wakes only the engine.
        self.wake_triggers = lambda: None
        self.wake_notifier = lambda: None
        self.clock = clock
        # analyzer(submitdir) -> (exit code, text): pegasus-analyzer, injected by the daemon.
        self.analyzer = analyzer
        # (MAX_PLANNING_TOTAL, MAX_RUNNING_TOTAL) across all ensembles; None: no cap.
        self.limits = limits

    def now(self):
        return model.timestamp(self.clock())

    # ---- ensembles --------------------------------------------------------

    def list_ensembles(self):
        with self.db.read() as conn:
            return store.list_ensembles(conn)

    def get_ensemble(self, name):
        with self.db.read() as conn:
            return store.get_ensemble(conn, name)

    def ensemble_counts(self, name=None):
        """ensemble id -> {state: number of workflows}, for every ensemble or the one named."""
        with self.db.read() as conn:
            counts = store.workflow_counts(conn)
            if name is not None:
                e = store.get_ensemble(conn, name)
                return {e.id: counts.get(e.id, {})}
            return counts

    def create_ensemble(self, name, max_planning=1, max_running=1, max_failures=None):
        name = model.name(name)
        max_running = model.throttle(max_running, "max_running")  # 5.x's order
        max_planning = model.throttle(max_planning, "max_planning")
        max_failures = _max_failures(max_failures)
        with self.db.write() as conn:
            return store.insert_ensemble(conn, name, EnsembleState.ACTIVE, max_planning,
                                         max_running, self.now(), max_failures or 0)

    def update_ensemble(self, name, state=None, max_planning=None, max_running=None,
                        max_failures=None):
        """Throttles and state together, all validated (in 5.x's order, so the same
        request gets the same first complaint) before anything changes."""
        now = self.now()
        with self.db.write() as conn:
            e = store.get_ensemble(conn, name)
            if max_running is not None:
                max_running = model.throttle(max_running, "max_running")
            if max_planning is not None:
                max_planning = model.throttle(max_planning, "max_planning")
            if state is not None:
                state = states.parse(state, EnsembleState.ALL, "ensemble")
            max_failures = _max_failures(max_failures)
            if max_planning is not None or max_running is not None:
                store.update_throttles(conn, e, max_planning or e.max_planning,
                                       max_running or e.max_running, now)
            if max_failures is not None:
                store.set_max_failures(conn, e, max_failures, now)
            if state is not None and state != e.state:
                transitions.change_ensemble_state(conn, e, state, now, "requested by user")
            e = store.get_ensemble(conn, name)
        self.wake()
        self.wake_notifier()
        return e

    # ---- workflows --------------------------------------------------------

    def list_workflow_rows(self, ensemble):
        with self.db.read() as conn:
            e = store.get_ensemble(conn, ensemble)
            return store.list_workflow_rows(conn, e)

    def list_workflows_json(self, ensemble, fields, href_prefix):
        """JSON text of the listing made by SQLite, or None (then use the rows)."""
        found = self.list_workflows_stream(ensemble, fields, href_prefix)
        return None if found is None else b"".join(found[1]).decode("utf-8")

    def list_workflows_stream(self, ensemble, fields, href_prefix):
        """The listing made by SQLite as (its length in bytes, an iterator of its UTF-8
        pieces, a few hundred workflows each), or None (then use the rows): 100,000
        workflows are never held whole.  The iterator keeps one read transaction open
        until it is exhausted or closed."""
        pieces = _json_pieces(self.db, ensemble, fields, href_prefix)
        length = next(pieces)  # the transaction begins; an unknown ensemble raises here
        return None if length is None else (length, pieces)

    def get_workflow(self, ensemble, workflow):
        with self.db.read() as conn:
            return store.get_workflow(conn, store.get_ensemble(conn, ensemble), workflow)

    def submit(self, ensemble, name, basedir, plan_command, priority=0, after=None,
               run_after=None):
        with self.db.write() as conn:
            w = self.insert_workflow(conn, ensemble, name, basedir, plan_command, priority,
                                     after=after, run_after=run_after)
        self.wake()
        return w

    def insert_workflow(self, conn, ensemble, name, basedir, plan_command, priority=0,
                        trigger_id=None, reason="submitted", after=None, run_after=None):
        """The submit use case inside the caller's transaction (a trigger records its
        schedule and ledger in the same one); the caller wakes the engine.

        `after`: "E.A,E.B" or a list; a name without a dot is of the same ensemble.
        `run_after`: a duration from now, an ISO-8601 time or epoch seconds."""
        name = model.name(name, "ensemble workflow")
        basedir = model.text(basedir, "basedir", limit=4096)
        if not os.path.isabs(basedir):
            raise BadRequest("basedir must be an absolute path: %s" % shown(basedir))
        plan_command = model.text(plan_command, "plan_command", limit=MAX_PLAN_COMMAND)
        priority = model.integer(priority if priority not in (None, "") else 0, "priority")
        now = self.now()
        if run_after not in (None, ""):
            run_after = model.run_after(run_after, now)
        else:
            run_after = None
        e = store.get_ensemble(conn, ensemble)
        deps = _dependencies(conn, e.name, name, after)
        blocked = transitions.blocked_reason(deps)
        wf_id = store.insert_workflow(conn, e, name, priority, basedir, plan_command,
                                      WorkflowState.READY, now, trigger_id,
                                      "; ".join([reason] + ([blocked] if blocked else [])),
                                      run_after=run_after, after=[d[0] for d in deps])
        if store.reaches(conn, [d[0] for d in deps], wf_id):
            raise BadRequest("Dependencies of %s.%s would form a cycle" % (e.name, name))
        if blocked:
            store.set_reason(conn, wf_id, blocked)
        if deps or run_after is not None:
            return store.get_workflow_by_id(conn, wf_id)
        return Workflow(wf_id, e.id, e.name, name, WorkflowState.READY, priority, basedir,
                        plan_command, None, None, now, now, None, state_since=now)

    def update_workflow(self, ensemble, workflow, state=None, priority=None):
        """priority and/or a user request: replan (READY), rerun (QUEUED), abort (ABORTED);
        checked in 5.x's order, nothing changed unless all is well."""
        now = self.now()
        with self.db.write() as conn:
            w = store.get_workflow(conn, store.get_ensemble(conn, ensemble), workflow)
            if priority is not None:
                priority = model.integer(priority, "priority")
            if state is not None:
                state = states.parse(state, WorkflowState.ALL, "ensemble workflow")
            if priority is not None:
                store.set_priority(conn, w, priority, now)
            if state is not None:
                self._request_state(conn, w, state, now)
            w = store.get_workflow_by_id(conn, w.id)
        self.wake()
        self.wake_notifier()
        return w

    def _request_state(self, conn, w, state, now):
        verb = states.check_request(w.state, state, planned=bool(w.submitdir))
        if w.state in (WorkflowState.PLANNING, WorkflowState.RUNNING):
            # The engine stops the planner or DAGMan, then records ABORTED.
            store.request_abort(conn, w, now, "abort requested by user")
            return
        transitions.change_workflow_state(conn, w, state, now, "%s requested by user" % verb,
                                    abort_requested=0)

    def log_path(self, ensemble, workflow):
        return os.path.join(self.ensembles_dir, ensemble, workflow + ".log")

    def analyze(self, ensemble, workflow):
        """The 5.x analyze report, plus the reason of the last transition."""
        w = self.get_workflow(ensemble, workflow)
        lines = ["Workflow state is %s\n" % w.state, "Plan command is: %s\n" % w.plan_command]
        if w.reason:
            lines.append("Reason: %s\n" % w.reason)
        lines.extend(self._log_lines(self.log_path(w.ensemble, w.name)))
        lines.extend(self._analyzer_lines(w.submitdir))
        lines.append(_FAILURE_LINES.get(w.state, ""))
        return "".join(lines)

    @staticmethod
    def _log_lines(path):
        try:
            with open(path, "rb") as f:
                data = f.read()
        except OSError:
            return ["No workflow log available\n"]
        text = data.decode("utf-8", "replace")
        out = ["Workflow log:\n"]
        out.extend("LOG: %s\n" % line for line in text.splitlines())
        return out

    def _analyzer_lines(self, submitdir):
        if not submitdir or not os.path.isdir(submitdir) or self.analyzer is None:
            return ["No submit directory available\n"]
        rc, text = self.analyzer(submitdir)
        out = ["pegasus-analyzer output is:\n"]
        out.extend("ANALYZER: %s\n" % line for line in text.split("\n"))
        out.append("ANALYZER: Exited with code %d\n" % rc)
        return out

    # ---- triggers ---------------------------------------------------------

    def create_trigger(self, ensemble, name, type_, script, args=(), interval=None,
                       timeout=None, file_patterns=(), basedir=None):
        name = _trigger_name(name)
        if type_ not in TriggerType.ALL:
            raise BadRequest("Invalid trigger type: %s (one of %s)"
                             % (shown(type_), ", ".join(TriggerType.ALL)))
        if not script:
            raise BadRequest("workflow_script name must be a non-empty string")
        script = model.text(script, "workflow_script")
        if not os.path.isabs(script):
            raise BadRequest("workflow_script must be given as an absolute path")
        if not isinstance(args, (list, tuple)) or not all(isinstance(a, str) for a in args):
            raise BadRequest("workflow_args must be given as a list serialized to json")
        if interval is None:
            raise BadRequest("interval must be given as `<int> <s|m|h|d>` and be greater "
                             "than 0 seconds")
        interval = model.duration(interval, "interval")
        timeout = model.duration(timeout, "timeout") if timeout not in (None, "") else None
        file_patterns = _patterns(type_, file_patterns)
        if basedir is not None and basedir != "" and not os.path.isabs(str(basedir)):
            raise BadRequest("basedir must be an absolute path: %s" % shown(basedir))
        basedir = basedir or os.path.dirname(script)
        with self.db.write() as conn:
            e = store.get_ensemble(conn, ensemble)
            t = store.insert_trigger(conn, e, name, type_, TriggerState.READY, script, args,
                                     interval, timeout, file_patterns, basedir, self.now())
        self.wake()
        self.wake_triggers()
        return t

    def list_triggers(self, ensemble):
        with self.db.read() as conn:
            return store.list_triggers(conn, store.get_ensemble(conn, ensemble))

    def get_trigger(self, ensemble, name):
        with self.db.read() as conn:
            return store.get_trigger(conn, store.get_ensemble(conn, ensemble), name)

    def trigger_views(self, ensemble, name=None):
        """[(trigger, names of the newest MAX_LIST workflows it submitted, their number)]
        for every trigger of the ensemble, or for the one named."""
        with self.db.read() as conn:
            e = store.get_ensemble(conn, ensemble)
            if name is None:
                triggers = store.list_triggers(conn, e)
                names = store.trigger_workflow_names(conn, e.id)
            else:
                triggers = [store.get_trigger(conn, e, name)]
                names = store.trigger_workflow_names(conn, e.id, triggers[0].id)
        views = []
        for t in triggers:
            submitted = names.get(t.id, [])
            views.append((t, submitted[-MAX_LIST:], len(submitted)))
        return views

    def stop_trigger(self, ensemble, name, purge=False):
        """STOPPED at once; `purge` also forgets it and its history."""
        now = self.now()
        with self.db.write() as conn:
            t = store.get_trigger(conn, store.get_ensemble(conn, ensemble), name)
            if t.state in TriggerState.LIVE:
                store.change_trigger_state(conn, t, TriggerState.STOPPED, now,
                                           "stopped by user")
            if purge:
                store.delete_trigger(conn, t)
        self.wake()
        self.wake_triggers()
        if purge:
            return "ensemble: %s, trigger: %s deleted" % (ensemble, name)
        # 5.x's words, though the trigger stays listed, STOPPED, with its history.
        return ("ensemble: %s, trigger: %s marked for deletion (stopped; --purge forgets it)"
                % (ensemble, name))

    @staticmethod
    def script_warning(script):
        """Why a new trigger's firings will fail, or None.  5.x creates such a trigger
        without a word, and so do we, but the reply says so at once: the script may be
        put in place later."""
        problem = script_problem(script)
        if problem is None:
            return None
        return ("%s: the trigger is created, but each firing fails until that is fixed"
                % problem)

    def start_trigger(self, ensemble, name, timeout=None):
        """Resume a STOPPED, FAILED or TIMED_OUT trigger: it fires at once, then keeps
        its grid, ledger and workflows.  `timeout` sets a new deadline from now, which
        a trigger past its deadline needs."""
        timeout = model.duration(timeout, "timeout") if timeout not in (None, "") else None
        now = self.now()
        with self.db.write() as conn:
            t = store.get_trigger(conn, store.get_ensemble(conn, ensemble), name)
            deadline = _resume_deadline(t, now, timeout)
            fired = t.fire_count or t.last_failure is not None
            store.change_trigger_state(conn, t, TriggerState.RUNNING if fired
                                       else TriggerState.READY, now, "started by user")
            store.update_trigger_run(conn, t.id, next_fire=now, deadline=deadline,
                                     timeout=t.timeout if timeout is None
                                     else int(round(deadline - t.created)),
                                     failures=0, first_error=None, first_failure=None)
        self.wake_triggers()
        return "ensemble: %s, trigger: %s started" % (ensemble, name)

    # ---- history ----------------------------------------------------------

    def history(self, ensemble=None, workflow=None, after=0, limit=100, before=None):
        """Events oldest first, after id `after` (or the newest `limit` before id
        `before`); of a workflow, an ensemble, or (ensemble None) of all."""
        after = model.integer(after or 0, "after", minimum=0)
        limit = min(model.integer(limit or 100, "limit", minimum=1), MAX_LIST)
        if before not in (None, ""):
            before = model.integer(before, "before", minimum=1)
        else:
            before = None
        with self.db.read() as conn:
            if ensemble is None:
                return store.list_events(conn, None, None, after, limit, before)
            e = store.get_ensemble(conn, ensemble)
            wf_id = store.get_workflow(conn, e, workflow).id if workflow else None
            return store.list_events(conn, e.id, wf_id, after, limit, before)

    # ---- beyond Pegasus ---------------------------------------------------

    def dependencies(self, workflow):
        """(ensemble, name, state) of the workflows it waits for."""
        with self.db.read() as conn:
            return [r[1:] for r in store.dependencies_of(conn, workflow.id)]

    def why(self, ensemble, workflow):
        """One paragraph on why the workflow is where it is, and the facts behind it."""
        with self.db.read() as conn:
            e = store.get_ensemble(conn, ensemble)
            w = store.get_workflow(conn, e, workflow)
            return explain.why(conn, e, w, self.limits, self.clock(),
                               self.log_path(e.name, w.name))

    def metrics(self):
        """Prometheus text exposition of the store's figures."""
        with self.db.read() as conn:
            return metrics.render(conn, self.limits, self.clock())

    def import_pegasus(self, rows):
        """Take over the ensembles, workflows and triggers of a Pegasus 5.x workflow.db
        (rows as read by the client); -> a report.  One transaction."""
        with self.db.write() as conn:
            report = importer.take_over(conn, rows, self.ensembles_dir, self.now())
        self.wake()
        self.wake_notifier()
        self.wake_triggers()
        return report


def _max_failures(value):
    if value in (None, ""):
        return None
    return model.integer(value, "max_failures", minimum=0)


def _json_pieces(db, ensemble, fields, href_prefix, batch=1000):
    """Yields the listing's length (None without SQLite's JSON functions), then its
    pieces: "[", the objects a batch at a time, "]"."""
    with db.read() as conn:
        e = store.get_ensemble(conn, ensemble)
        length = store.workflows_json_length(conn, e, fields, href_prefix)
        yield length
        if length is None:
            return
        yield b"["
        separator, last = "", 0
        while True:
            found = store.workflows_json_batch(conn, e, fields, href_prefix, last, batch)
            if found is None:
                break
            yield (separator + found[0]).encode("utf-8")
            separator, last = ", ", found[1]
        yield b"]"


def _dependencies(conn, ensemble, name, after):
    """(id, ensemble, name, state) of each workflow named in `after`, or 400."""
    if after in (None, ""):
        return []
    items = after if isinstance(after, (list, tuple)) else str(after).split(",")
    found = {}
    for item in (str(i).strip() for i in items):
        if not item:
            continue
        e_name, _, w_name = item.rpartition(".")
        e_name = e_name or ensemble
        model.name(e_name, "ensemble")
        model.name(w_name, "ensemble workflow")
        if (e_name, w_name) == (ensemble, name):
            raise BadRequest("%s.%s cannot run after itself (a cycle)" % (ensemble, name))
        row = store.find_workflow(conn, e_name, w_name)
        if row is None:
            raise BadRequest("Unknown dependency: %s.%s" % (e_name, w_name))
        found[row[0]] = row
    if len(found) > MAX_LIST:
        raise BadRequest("Too many dependencies: %d (at most %d)" % (len(found), MAX_LIST))
    return list(found.values())


_FAILURE_LINES = {
    WorkflowState.PLAN_FAILED: "Planner failure detected\n",
    WorkflowState.RUN_FAILED: "pegasus-run failure detected\n",
    WorkflowState.FAILED: "Workflow failure detected\n",
}


def script_problem(script):
    """Why a trigger cannot run its workflow script, or None (the daemon runs as the
    trigger's owner, so its view of the file is the one that counts)."""
    if not os.path.exists(script):
        return "workflow script %s does not exist" % script
    if not os.path.isfile(script):
        return "workflow script %s is not a file" % script
    if not os.access(script, os.X_OK):
        return "workflow script %s is not executable (chmod +x)" % script
    return None



def _resume_deadline(t, now, timeout):
    """The deadline of a trigger started again, or 409/400 naming what is wrong."""
    if t.state not in TriggerState.ENDED:
        raise Conflict("Trigger %s is already %s (in ensemble %s): stop it first"
                       % (t.name, t.state, t.ensemble))
    deadline = t.deadline if timeout is None else now + timeout
    if deadline is not None and deadline <= now:
        raise BadRequest("Trigger %s is past its deadline (in ensemble %s): give a new "
                         "timeout to start it" % (t.name, t.ensemble))
    return deadline


def _trigger_name(name):
    if not name or not str(name).strip():
        raise BadRequest("trigger name must be a non-empty string")
    return model.name(name, "trigger")


def _patterns(type_, patterns):
    if type_ != TriggerType.FILE_PATTERN:
        return ()
    if not isinstance(patterns, (list, tuple)) or not all(isinstance(p, str) for p in patterns):
        raise BadRequest("file_patterns must be given as a list serialized to json")
    if not patterns:
        raise BadRequest("file_patterns must contain at least one file pattern")
    for p in patterns:
        if not os.path.isabs(p):
            raise BadRequest("each file pattern must be given as an absolute path "
                             "(e.g. '/inputs/*.txt') (given: %s)" % shown(p))
    return tuple(patterns)
