"""Take over the ensembles of a Pegasus 5.x ensemble manager (`pegasus-em import`).

The client reads the `ensemble`, `ensemble_workflow` and `trigger` rows of the
user's workflow.db (read-only) and posts them; `take_over` inserts them in one
transaction, so an import happens completely or not at all.  Nothing that is
already planned or running is planned or run again:

- RUNNING with a submit dir: followed from the DAGMan run now in its dagman.out
  (the baseline is the run before the last STARTING UP);
- PLANNING: QUEUED when the planner's log (~/.pegasus/ensembles/E/W.log, the
  same file 5.x writes) names a submit dir with a braindump, else READY;
- QUEUED without a submit dir: READY; the other states as they are;
- live triggers start again from the import (5.x keeps no creation time);
- an ensemble whose name exists is skipped, with its workflows and triggers.
"""

import calendar
import datetime
import json
import os

from . import dagstate, model, planout, store
from ..errors import EMError
from .states import EnsembleState, TriggerState, TriggerType, WorkflowState as W

FOLLOW = "follow"


def take_over(conn, rows, ensembles_dir, now):
    """-> {"ensembles": [...], "workflows": n, "triggers": n, "following": [...],
    "requeued": [...], "skipped": [messages]}."""
    report = {"ensembles": [], "workflows": 0, "triggers": 0, "following": [],
              "requeued": [], "skipped": []}
    source = rows.get("source") or "workflow.db"
    workflows = _by_ensemble(rows.get("workflows"))
    triggers = _by_ensemble(rows.get("triggers"))
    for e in _list(rows.get("ensembles")):
        own_workflows, own_triggers = workflows.get(e.get("id"), []), triggers.get(e.get("id"), [])
        try:
            ens = _ensemble(conn, e, source, now)
        except _Skip as skip:
            report["skipped"].append("ensemble %s: %s (with its %d workflows and %d triggers)"
                                     % (e.get("name"), skip, len(own_workflows),
                                        len(own_triggers)))
            continue
        report["ensembles"].append(ens.name)
        for w in own_workflows:
            _one(report, "workflow %s.%s" % (ens.name, w.get("name")),
                 lambda: _workflow(conn, ens, w, ensembles_dir, now, report))
        for t in own_triggers:
            _one(report, "trigger %s.%s" % (ens.name, t.get("name")),
                 lambda: _trigger(conn, ens, t, now))
    return report


class _Skip(Exception):
    pass


def _one(report, what, insert):
    try:
        kind = insert()
    except (_Skip, EMError) as e:
        report["skipped"].append("%s: %s" % (what, getattr(e, "message", None) or e))
        return
    report[kind] += 1


def _list(value):
    return [r for r in value if isinstance(r, dict)] if isinstance(value, list) else []


def _by_ensemble(rows):
    out = {}
    for r in _list(rows):
        out.setdefault(r.get("ensemble_id"), []).append(r)
    return out


# ---- ensembles -----------------------------------------------------------------

def _ensemble(conn, e, source, now):
    try:
        name = model.name(e.get("name"))
        max_planning = model.throttle(e.get("max_planning", 1), "max_planning")
        max_running = model.throttle(e.get("max_running", 1), "max_running")
    except EMError as err:
        raise _Skip(err.message)
    if store.ensemble_exists(conn, name):
        raise _Skip("an ensemble of that name exists; skipped")
    state = str(e.get("state") or "").upper()
    if state not in EnsembleState.ALL:
        state = EnsembleState.PAUSED
    return store.insert_ensemble(conn, name, state, max_planning, max_running, now,
                                 created=utc_epoch(e.get("created"), now),
                                 reason="imported from Pegasus 5.x (%s)" % source)


# ---- workflows -----------------------------------------------------------------

def _workflow(conn, ens, w, ensembles_dir, now, report):
    name = model.name(w.get("name"), "ensemble workflow")
    basedir = model.text(w.get("basedir"), "basedir")
    plan_command = model.text(w.get("plan_command"), "plan_command", limit=65536)
    priority = model.integer(w.get("priority") or 0, "priority")
    state, fields, note = _takeover_state(ens.name, name, w, basedir, ensembles_dir, now)
    fields["created"] = utc_epoch(w.get("created"), now)
    label = "%s.%s" % (ens.name, name)
    if state == W.RUNNING:
        report["following"].append(label)
    elif str(w.get("state")).upper() in (W.PLANNING, W.QUEUED) and state == W.READY:
        report["requeued"].append(label)
    store.insert_workflow(conn, ens, name, priority, basedir, plan_command, state, now,
                          reason="imported from Pegasus 5.x as %s%s" % (w.get("state"), note),
                          **fields)
    return "workflows"


def _takeover_state(ensemble, name, w, basedir, ensembles_dir, now):
    """(our state, columns, note for the event) for a 5.x row."""
    old = str(w.get("state") or "").upper()
    submitdir, wf_uuid = w.get("submitdir") or None, w.get("wf_uuid") or None
    fields = {"submitdir": submitdir, "wf_uuid": wf_uuid}
    if old == W.PLANNING:
        found = _planned(os.path.join(ensembles_dir, ensemble, name + ".log"), basedir)
        if found is None:
            return W.READY, fields, ": no submit dir in its log; planned again"
        fields.update(submitdir=found[0], wf_uuid=found[1].get("wf_uuid"))
        return W.QUEUED, fields, ": its planner had finished into %s" % found[0]
    if old == W.QUEUED and not submitdir:
        return W.READY, fields, ": no submit dir; planned again"
    if old == W.RUNNING:
        return _running(submitdir, fields, now)
    if old not in W.ALL:
        raise _Skip("unknown state %r" % w.get("state"))
    return old, fields, ""


def _planned(log_path, basedir):
    try:
        with open(log_path, "rb") as f:
            text = f.read().decode("utf-8", "replace")
        return planout.find_submit_dir(text, basedir)
    except (OSError, EMError):
        return None


def _running(submitdir, fields, now):
    """Follow the DAGMan run now in dagman.out, without running anything again."""
    if not submitdir:
        return W.READY, fields, ": no submit dir; planned again"
    try:
        braindump = planout.read_braindump(submitdir)
    except EMError as e:
        return W.FAILED, fields, ": cannot follow it: %s" % e.message
    if not dagstate.is_followed(braindump):
        return W.RUN_FAILED, fields, (": a %s workflow cannot be followed; rerun or replan it"
                                      % braindump.get("type"))
    ids = dagstate.dagman_ids(submitdir, braindump)
    before = ids[:-1]  # the runs before the current one: the Watch reads only after them
    fields.update(run_phase=FOLLOW, run_began=now, baseline_blocks=len(before),
                  baseline_id=before[-1] if before else None,
                  wf_uuid=fields["wf_uuid"] or braindump.get("wf_uuid"))
    return W.RUNNING, fields, ": followed from its dagman.out"


# ---- triggers ------------------------------------------------------------------

def _trigger(conn, ens, t, now):
    name = model.name(t.get("name"), "trigger")
    type_ = str(t.get("type") or "").upper()
    type_ = TriggerType.CRON if type_ == "CHRON" else type_
    if type_ not in TriggerType.ALL:
        raise _Skip("unknown type %r" % t.get("type"))
    args, workflow = _json(t.get("args")), _json(t.get("workflow"))
    script = workflow.get("script") or args.get("workflow_script")
    script_args = workflow.get("args", args.get("workflow_args", []))
    script_args = _json(script_args, []) if isinstance(script_args, str) else script_args
    if not script or not os.path.isabs(str(script)):
        raise _Skip("its workflow script is not an absolute path: %r" % script)
    if not isinstance(script_args, list) or not all(isinstance(a, str) for a in script_args):
        raise _Skip("its workflow arguments are not a list of strings")
    interval = model.duration(args.get("interval"), "interval")
    timeout = args.get("timeout")
    timeout = model.duration(timeout, "timeout") if timeout not in (None, "") else None
    patterns = args.get("file_patterns") or []
    if type_ == TriggerType.FILE_PATTERN and not (
            isinstance(patterns, list) and patterns and all(os.path.isabs(str(p))
                                                           for p in patterns)):
        raise _Skip("its file patterns are not a list of absolute paths")
    state = str(t.get("state") or "").upper()
    state = state if state in (TriggerState.STOPPED, TriggerState.FAILED) else TriggerState.READY
    store.insert_trigger(conn, ens, name, type_, state, str(script), script_args, interval,
                         timeout, [str(p) for p in patterns] if type_ == TriggerType.FILE_PATTERN
                         else [], os.path.dirname(str(script)), now)
    return "triggers"


def _json(value, default=None):
    if isinstance(value, (dict, list)):
        return value
    try:
        obj = json.loads(value) if value else None
    except (TypeError, ValueError):
        obj = None
    if obj is None:
        return {} if default is None else default
    return obj


def utc_epoch(value, default):
    """5.x stores naive UTC datetimes ("2023-03-04 12:00:00.123456"); -> epoch seconds."""
    if isinstance(value, (int, float)) and not isinstance(value, bool):
        return model.timestamp(float(value))
    try:
        when = datetime.datetime.fromisoformat(str(value).strip())
    except ValueError:
        return default
    if when.tzinfo is not None:
        return model.timestamp(when.timestamp())
    return model.timestamp(calendar.timegm(when.timetuple()) + when.microsecond / 1e6)
