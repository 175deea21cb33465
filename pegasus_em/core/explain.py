"""`why`: one paragraph on why a workflow is where it is.

Every figure comes from a counting query on an index (its place in the queue,
who fills the throttle, what it waits for), so the answer costs the same with
ten workflows queued or ten thousand; only a failed workflow's log tail is read.
The dashboard's queue shows the place and a line on the reason (`waiting`) made
from the same facts.
"""

import glob
import os
import re
import time

from . import store
from .states import EnsembleState, WorkflowState as W

SHOW = 5               # workflows named before "and N more"
LOG_TAIL = 65536       # bytes of a log read for the lines that show a failure
LOG_LINES = 5
_FAILURE = re.compile(r"error|fatal|fail|abort|exception|traceback|denied|not found|"
                      r"no such|cannot|killed|exiting with status [1-9]", re.IGNORECASE)
# dagman.out's progress tables and start-up banner: "Failed" heads a column of
# every table and "No such file" is in every banner, yet neither tells what happened.
_ROUTINE = re.compile(r"Un-Ready +Failed|^[\d/: ]*[=\d ]+$|Of \d+ nodes total:|"
                      r"job proc\(s\) currently held|DAG status: 0 \(|Log last touched")
_STARTING = re.compile(r"\(CONDOR_DAGMAN\) STARTING UP")
_EXITING = re.compile(r"EXITING WITH STATUS")
_ENDED_BADLY = W.FAILURES + (W.ABORTED,)
_NEXT_STEP = {
    W.PLAN_FAILED: "`pegasus-em replan %s` plans it again",
    W.RUN_FAILED: "`pegasus-em rerun %s` runs it again (or `replan`)",
    W.FAILED: "`pegasus-em rerun %s` runs it again from its rescue DAG (or `replan`)",
    W.ABORTED: "`pegasus-em replan %s` plans it again",
}


def why(conn, e, w, limits, now, log_path):
    """-> {"explanation": paragraph, and the facts it is made of}."""
    facts = {"workflow": "%s.%s" % (e.name, w.name), "state": w.state,
             "since": w.state_since, "ensemble_state": e.state, "reason": w.reason}
    label = facts["workflow"]
    parts = ["%s is %s%s." % (label, w.state, _since(w.state_since, now))]
    handler = _BY_STATE.get(w.state)
    if handler is not None:
        handler(conn, e, w, limits, now, log_path, parts, facts)
    _dependents(conn, w, parts, facts)
    facts["explanation"] = " ".join(p for p in parts if p)
    return facts


def waiting(conn, e, w, limits, now, abort_requested=False):
    """(place in its queue or None, a line on what it waits for or None): the
    dashboard's columns, made from the facts `why` gives, so the two never disagree."""
    if abort_requested:
        return None, "abort requested: the engine is stopping it"
    if w.state not in (W.READY, W.QUEUED):
        return None, None
    facts = why(conn, e, w, limits, now, None)
    return facts.get("position"), in_short(e, facts)


def in_short(e, facts):
    """The first thing a READY or QUEUED workflow waits for, in a line."""
    if e.state != EnsembleState.ACTIVE:
        return "ensemble %s is %s: nothing new starts (activate it)" % (e.name, e.state)
    unmet = [d for d in facts.get("dependencies", ()) if d["state"] != W.SUCCESSFUL]
    blocked = [d for d in unmet if d["name"] == facts.get("blocked_by")]
    if blocked:
        return "blocked: dependency %s is %s" % (blocked[0]["name"], blocked[0]["state"])
    if unmet:
        return "waiting for %d workflow(s) it depends on to succeed" % len(unmet)
    if "run_after" in facts:
        return "not to be planned before %s" % _when(facts["run_after"])
    return _throttle_line(facts["throttle"], facts["position"] - 1)


def _throttle_line(throttle, ahead):
    limit, used = throttle["limit"], throttle["used"]
    kind = throttle["kind"].split("_")[0]
    scope = " of all ensembles" if throttle["kind"].endswith("_total") else ""
    free = max(0, limit - used)
    if free > ahead:
        return "next in line for a %s slot%s (%d of %d in use)" % (kind, scope, used, limit)
    if free == 0:
        return "all %d %s slots%s in use%s" % (limit, kind, scope, "; %d workflow(s) ahead of"
                                               " it" % ahead if ahead else "")
    return "%d workflow(s) ahead of it for %d free %s slot(s)%s" % (ahead, free, kind, scope)


# ---- waiting to be planned or run --------------------------------------------

def _ready(conn, e, w, limits, now, log_path, parts, facts):
    waiting = _dependencies(conn, w, parts, facts)
    if w.deferred and w.run_after is not None:
        facts["run_after"] = w.run_after
        parts.append("It is not planned before %s (in %s); the engine wakes then."
                     % (_when(w.run_after), _span(w.run_after - now)))
        waiting = True
    _ensemble_state(conn, e, parts, "planned")
    if waiting:
        return
    _queue(conn, e, w, parts, facts, "planning", e.max_planning, limits[0],
           W.PLANNING, "MAX_PLANNING_TOTAL")


def _queued(conn, e, w, limits, now, log_path, parts, facts):
    parts.append("It was planned into %s." % w.submitdir)
    _ensemble_state(conn, e, parts, "started")
    _queue(conn, e, w, parts, facts, "running", e.max_running, limits[1], W.RUNNING,
           "MAX_RUNNING_TOTAL")


def _dependencies(conn, w, parts, facts):
    """Say what it waits for; -> True while a dependency has not succeeded."""
    deps = store.dependencies_of(conn, w.id)
    facts["dependencies"] = [{"name": "%s.%s" % (d[1], d[2]), "state": d[3]} for d in deps]
    unmet = [d for d in deps if d[3] != W.SUCCESSFUL]
    if not unmet:
        return False
    parts.append("It waits for %s to succeed: %s." % (
        _plural(len(unmet), "workflow"), _names(["%s.%s (%s)" % d[1:] for d in unmet])))
    for d in unmet:
        if d[3] in _ENDED_BADLY:
            dep = "%s.%s" % d[1:3]
            parts.append("It is blocked: dependency %s is %s; %s, and this one follows."
                         % (dep, d[3], _NEXT_STEP[d[3]] % dep))
            facts["blocked_by"] = dep
            break
    return True


def _ensemble_state(conn, e, parts, verb):
    if e.state == EnsembleState.ACTIVE:
        return
    last = store.last_ensemble_event(conn, e.id)
    cause = ""
    if last is not None and last[2] == e.state and last[3]:
        cause = " (%s)" % last[3]
    parts.append("Ensemble %s is %s%s: nothing new is %s until `pegasus-em activate %s`."
                 % (e.name, e.state, cause, verb, e.name))


def _queue(conn, e, w, parts, facts, kind, limit, total_limit, busy_state, setting):
    """Its place in the queue and the throttle that holds it back."""
    ahead = store.queue_ahead(conn, w)
    facts["position"] = ahead + 1
    queue = "planning" if kind == "planning" else "run"
    if ahead:
        parts.append("It is number %d in the %s queue of %s: %s %s first (higher priority "
                     "than its %d, or the same and older)."
                     % (ahead + 1, queue, e.name, _plural(ahead, "workflow"),
                        "comes" if ahead == 1 else "come", w.priority))
    else:
        parts.append("It is first in the %s queue of %s." % (queue, e.name))
    busy, count = store.in_state(conn, busy_state, e.id, SHOW)
    facts["throttle"] = {"kind": kind, "limit": limit, "used": count,
                         "by": ["%s.%s" % r[:2] for r in busy]}
    free = limit - count
    if free <= 0:
        parts.append("The %s throttle of %s is full: max_%s is %d and %s %s."
                     % (kind, e.name, kind, limit, _names(["%s.%s" % r[:2] for r in busy],
                                                          count), _is(count, busy_state)))
        return
    if total_limit is not None:
        busy_all, count_all = store.in_state(conn, busy_state, None, SHOW)
        if count_all >= total_limit:
            facts["throttle"] = {"kind": kind + "_total", "limit": total_limit,
                                 "used": count_all, "by": ["%s.%s" % r[:2] for r in busy_all]}
            parts.append("The global %s of %d is full: %s %s."
                         % (setting, total_limit, _names(["%s.%s" % r[:2] for r in busy_all],
                                                         count_all), _is(count_all, busy_state)))
            return
        free = min(free, total_limit - count_all)
    if e.state != EnsembleState.ACTIVE:
        return
    if ahead < free:
        parts.append("A %s slot is free (%d of %d in use): the engine takes it now."
                     % (kind, count, limit))
    else:
        parts.append("%d of the %d %s slots %s free; the workflows ahead of it take them "
                     "first." % (free, limit, kind, "is" if free == 1 else "are"))


# ---- busy --------------------------------------------------------------------

def _planning(conn, e, w, limits, now, log_path, parts, facts):
    row = store.engine_row(conn, w.id)
    pid = " (planner pid %d)" % row.plan_pid if row and row.plan_pid else ""
    parts.append("Its plan command runs in %s%s; its output goes to %s." % (w.basedir, pid,
                                                                             log_path))
    if row and row.abort_requested:
        parts.append("An abort was requested: the planner is being stopped.")


def _running(conn, e, w, limits, now, log_path, parts, facts):
    row = store.engine_row(conn, w.id)
    parts.append("DAGMan runs it from %s." % w.submitdir)
    if row and row.dagman_held:
        parts.append("Its DAGMan is held because ensemble %s is %s; `pegasus-em activate %s` "
                     "releases it." % (e.name, e.state, e.name))
    elif e.state == EnsembleState.HELD:
        parts.append("Ensemble %s is HELD: its DAGMan is being held." % e.name)
    if row and row.abort_requested:
        parts.append("An abort was requested: pegasus-remove is stopping its DAGMan.")


# ---- at rest -----------------------------------------------------------------

def _failed(conn, e, w, limits, now, log_path, parts, facts):
    label = "%s.%s" % (e.name, w.name)
    if w.reason:
        parts[-1] = parts[-1][:-1] + ": %s." % w.reason.rstrip(".")
    submitdir = w.submitdir if w.state == W.FAILED else None
    last = last_words(submitdir)
    lines = last or failure_lines(log_path, submitdir)
    facts["log"] = lines
    if last:
        parts.append("The last lines its DAGMan wrote, with no EXITING line after them: %s."
                     % " | ".join(last))
    elif lines:
        parts.append("The log shows: %s." % " | ".join(lines))
    if w.state in _NEXT_STEP:
        parts.append("`pegasus-em analyze %s` shows the whole log; %s."
                     % (label, _NEXT_STEP[w.state] % label))
    if w.state in W.FAILURES and e.max_failures:
        if e.state == EnsembleState.HELD:
            _ensemble_state(conn, e, parts, "planned")
        else:
            parts.append("Ensemble %s has %s in a row; at %d it is held (max_failures)."
                         % (e.name, _plural(e.failure_streak, "failed workflow"),
                            e.max_failures))


def _successful(conn, e, w, limits, now, log_path, parts, facts):
    parts.append("It finished successfully%s." % (" in %s" % w.submitdir if w.submitdir else ""))


def _dependents(conn, w, parts, facts):
    waiting = store.dependents_of(conn, w.id, SHOW + 1)
    if not waiting:
        return
    names = ["%s.%s" % r[2:4] for r in waiting]
    facts["dependents"] = names
    verb = "can now be planned" if w.state == W.SUCCESSFUL else "wait for it"
    parts.append("%s %s: %s." % ("Its dependents" if w.state == W.SUCCESSFUL else
                                 "Workflows that", verb, _names(names[:SHOW], len(names))))


_BY_STATE = {W.READY: _ready, W.QUEUED: _queued, W.PLANNING: _planning, W.RUNNING: _running,
             W.SUCCESSFUL: _successful, W.PLAN_FAILED: _failed, W.RUN_FAILED: _failed,
             W.FAILED: _failed, W.ABORTED: _failed}


# ---- the lines that show a failure -------------------------------------------

def failure_lines(log_path, submitdir=None):
    """The last lines of the workflow log (and, for a failed DAGMan, of dagman.out)
    that mention a failure; else the log's last lines."""
    lines = _tail(log_path)
    for path in _dagman_outs(submitdir):
        lines += _last_run(_tail(path))
    hits = [line for line in lines if _FAILURE.search(line) and not _ROUTINE.search(line)]
    return [line[:300] for line in (hits or lines[-3:])[-LOG_LINES:]]


def last_words(submitdir):
    """For a DAGMan that died (its last run in dagman.out has no EXITING line): the
    last lines it wrote, without its progress tables; else []."""
    for path in _dagman_outs(submitdir):
        run = _last_run(_tail(path))
        if run and not any(_EXITING.search(line) for line in run):
            said = [line for line in run if not _ROUTINE.search(line)]
            return [line[:300] for line in said[-LOG_LINES:]]
    return []


def _dagman_outs(submitdir):
    if not submitdir:
        return []
    return sorted(glob.glob(os.path.join(glob.escape(submitdir), "*.dagman.out")))


def _last_run(lines):
    """The lines of DAGMan's last run: a rescue run appends to the same file."""
    starts = [i for i, line in enumerate(lines) if _STARTING.search(line)]
    return lines[starts[-1]:] if starts else lines


def _tail(path):
    try:
        with open(path, "rb") as f:
            f.seek(max(0, os.fstat(f.fileno()).st_size - LOG_TAIL))
            data = f.read()
    except OSError:
        return []
    # Runs of blanks and tabs (DAGMan aligns with them) are one space in a paragraph.
    return [" ".join(line.split()) for line in data.decode("utf-8", "replace").splitlines()
            if line.strip()]


# ---- words -------------------------------------------------------------------

def _names(names, total=None):
    total = len(names) if total is None else total
    shown = ", ".join(names[:SHOW])
    return shown + (" and %d more" % (total - min(len(names), SHOW))
                    if total > min(len(names), SHOW) else "")


def _is(count, state):
    return ("is %s" if count == 1 else "are %s") % state


def _plural(n, word):
    return "%d %s%s" % (n, word, "" if n == 1 else "s")


def _when(ts):
    return time.strftime("%Y-%m-%d %H:%M:%S %Z", time.localtime(ts))


def _since(ts, now):
    if ts is None:
        return ""
    return " since %s (%s ago)" % (_when(ts), _span(now - ts))


def _span(seconds):
    seconds = max(0, int(round(seconds)))
    if seconds < 60:
        return "%ds" % seconds
    parts = []
    for unit, size in (("d", 86400), ("h", 3600), ("m", 60), ("s", 1)):
        if seconds >= size:
            parts.append("%d%s" % (seconds // size, unit))
            seconds %= size
    return " ".join(parts[:2])
