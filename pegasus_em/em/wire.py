"""The Pegasus 5.x JSON shapes: the only module that knows field names.

Extra fields are ours (reason, ensemble, schedule of triggers); the 5.x
client ignores them.
"""

import json

from ..core.states import TriggerState, WorkflowState

_dumps = json.JSONEncoder(ensure_ascii=False, separators=(", ", ": ")).encode


def encode(obj):
    return _dumps(obj).encode("utf-8")


def message(text):
    return {"message": text}


def ensemble_url(base, name):
    return "%s/ensembles/%s" % (base, name)


def ensemble(e, base):
    href = ensemble_url(base, e.name)
    return {
        "id": e.id,
        "name": e.name,
        "created": e.created,
        "updated": e.updated,
        "state": e.state,
        "max_running": e.max_running,
        "max_planning": e.max_planning,
        "workflows": href + "/workflows",
        "href": href,
    }


def ensemble_detail(e, base, counts):
    """One ensemble with our extra fields: auto-hold and workflows per state."""
    obj = ensemble(e, base)
    obj.update(max_failures=e.max_failures, failure_streak=e.failure_streak,
               counts={state: counts.get(state, 0) for state in WorkflowState.ALL})
    return obj


def workflow_url(base, ensemble_name, name):
    return "%s/ensembles/%s/workflows/%s" % (base, ensemble_name, name)


# name -> SQL expression over `workflows w`; `?` is the href prefix.
WORKFLOW_LIST_FIELDS = (("id", "w.id"), ("name", "w.name"), ("created", "w.created"),
                        ("updated", "w.updated"), ("state", "w.state"),
                        ("priority", "w.priority"), ("wf_uuid", "w.wf_uuid"),
                        ("href", "? || w.name"))
# ?detail=1 adds these (ours): why it is where it is, and since when.
WORKFLOW_DETAIL_FIELDS = (("reason", "w.reason"), ("run_after", "w.run_after"),
                          ("state_since", "w.state_since"))


def workflow_list_prefix(base, ensemble_name):
    return "%s/ensembles/%s/workflows/" % (base, ensemble_name)


def workflow_rows(rows, base, detail=False):
    """List objects straight from store rows (id, ensemble_id, ensemble, name, ...)."""
    prefix = None
    out = []
    append = out.append
    for r in rows:
        if prefix is None:
            prefix = "%s/ensembles/%s/workflows/" % (base, r[2])
        obj = {"id": r[0], "name": r[3], "created": r[10], "updated": r[11], "state": r[4],
               "priority": r[5], "wf_uuid": r[8], "href": prefix + r[3]}
        if detail:
            obj.update(reason=r[12], run_after=r[13], state_since=r[16])
        append(obj)
    return out


def workflow(w, base, log, dependencies=()):
    return {
        "id": w.id,
        "name": w.name,
        "created": w.created,
        "updated": w.updated,
        "state": w.state,
        "priority": w.priority,
        "wf_uuid": w.wf_uuid,
        "href": workflow_url(base, w.ensemble, w.name),
        "basedir": w.basedir,
        "plan_command": w.plan_command,
        "log": log,
        "submitdir": w.submitdir,
        "ensemble": w.ensemble,
        "reason": w.reason,
        "state_since": w.state_since,
        "run_after": w.run_after,
        "after": [{"name": "%s.%s" % (e, n), "state": s} for e, n, s in dependencies],
    }


def trigger_url(base, ensemble_name, name):
    return "%s/ensembles/%s/triggers/%s" % (base, ensemble_name, name)


def trigger(t, base, workflows=None, workflow_count=None):
    """`workflows`: names of the (newest) workflows it submitted, oldest first;
    `next_fire` is null once the trigger can no longer fire; `failing` while a live
    trigger's last firing failed (it retries at each interval)."""
    args = {"interval": t.interval, "timeout": t.timeout}
    if t.type == "FILE_PATTERN":
        args["file_patterns"] = list(t.file_patterns)
    obj = {
        "id": t.id,
        "ensemble_id": t.ensemble_id,
        "name": t.name,
        "state": t.state,
        "workflow": {"script": t.script, "args": list(t.args)},
        "args": args,
        "type": t.type,
        "ensemble": t.ensemble,
        "basedir": t.basedir,
        "created": t.created,
        "updated": t.updated,
        "next_fire": t.next_fire if t.state in TriggerState.LIVE else None,
        "deadline": t.deadline,
        "fire_count": t.fire_count,
        "failures": t.failures,
        "last_error": t.last_error,
        "failing": bool(t.failures) and t.state in TriggerState.LIVE,
        "first_error": t.first_error,
        "first_failure": t.first_failure,
        "last_failure": t.last_failure,
        "href": trigger_url(base, t.ensemble, t.name),
    }
    if workflows is not None:
        obj["workflows"] = workflows
        obj["workflow_count"] = len(workflows) if workflow_count is None else workflow_count
    return obj


def event(row):
    return {"id": row[0], "time": row[1], "workflow_id": row[2], "trigger_id": row[3],
            "old_state": row[4], "new_state": row[5], "reason": row[6], "ensemble": row[7],
            "workflow": row[8], "trigger": row[9]}
