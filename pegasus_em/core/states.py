"""Ensemble, workflow and trigger states and the one table of allowed transitions.

Every state change in the project, by the API or by the engine, goes through
`transitions`, is checked here and is stored as a compare-and-set on the old
states this table allows.
"""

from ..errors import BadRequest, Conflict, shown


class EnsembleState:
    ACTIVE = "ACTIVE"
    PAUSED = "PAUSED"
    HELD = "HELD"
    ALL = (ACTIVE, PAUSED, HELD)


class WorkflowState:
    READY = "READY"
    PLANNING = "PLANNING"
    PLAN_FAILED = "PLAN_FAILED"
    QUEUED = "QUEUED"
    RUNNING = "RUNNING"
    RUN_FAILED = "RUN_FAILED"
    FAILED = "FAILED"
    SUCCESSFUL = "SUCCESSFUL"
    ABORTED = "ABORTED"
    ALL = (READY, PLANNING, PLAN_FAILED, QUEUED, RUNNING, RUN_FAILED, FAILED,
           SUCCESSFUL, ABORTED)
    # States the engine still has work to do in; everything else is at rest.
    ACTIVE = (READY, PLANNING, QUEUED, RUNNING)
    FAILURES = (PLAN_FAILED, RUN_FAILED, FAILED)
    TERMINAL = (SUCCESSFUL, ABORTED) + FAILURES


class TriggerState:
    READY = "READY"
    RUNNING = "RUNNING"
    STOPPED = "STOPPED"
    TIMED_OUT = "TIMED_OUT"
    FAILED = "FAILED"
    ALL = (READY, RUNNING, STOPPED, TIMED_OUT, FAILED)
    LIVE = (READY, RUNNING)
    ENDED = (STOPPED, TIMED_OUT, FAILED)  # start-trigger resumes these


class FileState:
    """A file in a file-pattern trigger's ledger: claimed -> submitted -> done."""
    CLAIMED = "claimed"      # being handed out; its workflow does not exist yet
    SUBMITTED = "submitted"  # its workflow exists; the original may still sit where it arrived
    DONE = "done"            # the original is gone from where it arrived


class TriggerType:
    CRON = "CRON"
    FILE_PATTERN = "FILE_PATTERN"
    ALL = (CRON, FILE_PATTERN)


W = WorkflowState

# new state -> the old states it may be reached from.  Edges used by users
# (replan, rerun, abort) and by the engine live in one table.
WORKFLOW_TRANSITIONS = {
    W.PLANNING: (W.READY,),                                  # engine claims a plan slot
    W.QUEUED: (W.PLANNING,                                   # planner succeeded
               W.RUN_FAILED, W.FAILED, W.ABORTED),           # user: rerun
    W.PLAN_FAILED: (W.PLANNING,),
    W.RUNNING: (W.QUEUED,),                                  # engine: pegasus-run
    W.RUN_FAILED: (W.QUEUED, W.RUNNING),
    W.SUCCESSFUL: (W.RUNNING,),
    W.FAILED: (W.RUNNING,),
    W.READY: (W.PLAN_FAILED, W.RUN_FAILED, W.FAILED, W.ABORTED,  # user: replan
              W.PLANNING),                                       # engine: planner lost
    W.ABORTED: (W.READY, W.QUEUED,                           # user: at once
                W.PLANNING, W.RUNNING),                      # engine: after kill/remove
}

# What a user may ask for through `state=` on a workflow: the verb, and the states
# it applies to (a PLANNING or RUNNING workflow is aborted by the engine, on request).
USER_WORKFLOW_REQUESTS = {
    W.READY: "replan",
    W.QUEUED: "rerun",
    W.ABORTED: "abort",
}
USER_REQUEST_SOURCES = {
    W.READY: (W.PLAN_FAILED, W.RUN_FAILED, W.FAILED, W.ABORTED),
    W.QUEUED: (W.RUN_FAILED, W.FAILED, W.ABORTED),
    W.ABORTED: (W.READY, W.QUEUED, W.PLANNING, W.RUNNING),
}

# Ensembles move freely between their three states.
ENSEMBLE_TRANSITIONS = {s: tuple(o for o in EnsembleState.ALL if o != s)
                        for s in EnsembleState.ALL}

TRIGGER_TRANSITIONS = {
    TriggerState.READY: TriggerState.ENDED,                            # user: start (never fired)
    TriggerState.RUNNING: (TriggerState.READY,) + TriggerState.ENDED,  # first firing; user: start
    TriggerState.STOPPED: TriggerState.LIVE,
    TriggerState.TIMED_OUT: TriggerState.LIVE,
    TriggerState.FAILED: TriggerState.LIVE,
}


def parse(value, allowed, what):
    """Normalise a state name from a request, or raise 400 naming the choices."""
    state = str(value).strip().upper()
    if state not in allowed:
        raise BadRequest("Invalid %s state: %s (one of %s)"
                         % (what, shown(state), ", ".join(allowed)))
    return state


def sources(table, new):
    """Old states from which `new` may be reached (empty if none)."""
    return table.get(new, ())


def check_request(old, new, planned=True):
    """The verb for a user's request to move a workflow from `old` to `new`, or 409
    with the words 5.x uses for the same refusal, then ours."""
    verb = USER_WORKFLOW_REQUESTS.get(new)
    if verb is None:
        hint = "only READY (replan), QUEUED (rerun) and ABORTED (abort) may be requested"
    elif old not in USER_REQUEST_SOURCES[new]:
        hint = "%s applies to %s workflows" % (verb, ", ".join(USER_REQUEST_SOURCES[new]))
    elif verb == "rerun" and not planned:
        hint = "it was never planned: replan it"
    else:
        return verb
    raise Conflict("%s (%s)" % (refusal(old, new), hint))


def refusal(old, new):
    """What 5.x says when a user's state change is refused (db/ensembles.py)."""
    if old == W.PLAN_FAILED:
        return "Can only replan workflows in PLAN_FAILED state"
    if old in (W.RUN_FAILED, W.FAILED):
        return "Can only replan or rerun workflows in %s state" % old
    return "Invalid state change: %s -> %s" % (old, new)
