"""Every state change of a workflow or an ensemble, and what follows from it.

Users (through `ops`), the engine and the triggers change states only through
here, inside their own transaction.  `store` records a change (compare-and-set
on the old states `states` allows, and an event); this module decides what the
change means for others, in the same transaction: dependents unblocked or told
why they are blocked, the ensemble's failure streak and auto-hold (itself a
checked change), and a notification when a workflow ends.
"""

from . import store
from .states import EnsembleState, WorkflowState as W

ENDED_BADLY = W.FAILURES + (W.ABORTED,)


def change_workflow_state(conn, w, new, now, reason=None, **fields):
    """Compare-and-set (also setting `fields`), then its consequences; False when the
    row is no longer in a state `new` may follow, so callers never act on a stale
    decision.  `w` is any record with id, ensemble_id, ensemble and name."""
    old = store.set_workflow_state(conn, w, new, now, reason, **fields)
    if old is None:
        return False
    _after(conn, w, old, new, now, reason)
    return True


def _after(conn, w, old, new, now, reason):
    """What follows from a workflow's change from `old` to `new`."""
    label = "%s.%s" % (w.ensemble, w.name)
    if new == W.SUCCESSFUL:
        _succeeded(conn, w, label, now)
    elif new in ENDED_BADLY:
        _tell_dependents(conn, w, now, "blocked: dependency %s is %s" % (label, new))
    elif old in ENDED_BADLY:
        _tell_dependents(conn, w, now, "waiting for dependency %s (%s again)" % (label, new))
    if new in W.TERMINAL:
        store.enqueue(conn, "workflow.ended", now, ensemble=w.ensemble, workflow=w.name,
                      old_state=old, state=new, reason=reason)
    if new in W.FAILURES:
        _count_failure(conn, w, label, new, reason, now)


def change_ensemble_state(conn, e, new, now, reason=None):
    """Compare-and-set from `e.state`; False when the table forbids it or another
    writer changed the state first."""
    if not store.set_ensemble_state(conn, e, new, now, reason):
        return False
    if new == EnsembleState.ACTIVE:  # a fresh start: failures before it no longer count
        store.reset_failure_streak(conn, e.id)
    return True


def blocked_reason(dependencies):
    """The reason of a workflow with a dependency that ended badly, or None;
    `dependencies`: (id, ensemble, name, state) rows as `store.dependencies_of` gives."""
    for _id, ensemble, name, state in dependencies:
        if state in ENDED_BADLY:
            return "blocked: dependency %s.%s is %s" % (ensemble, name, state)
    return None


def _succeeded(conn, w, label, now):
    """Dependents whose last dependency this was may be planned now; a success
    starts the ensemble's failure count again."""
    for wf_id, ensemble_id in store.dependency_succeeded(conn, w.id):
        store.set_reason(conn, wf_id, None)
        store.add_event(conn, now, ensemble_id, W.READY, W.READY,
                        "dependencies met (the last: %s)" % label, workflow_id=wf_id)
    store.reset_failure_streak(conn, w.ensemble_id)


def _tell_dependents(conn, w, now, reason):
    """A READY dependent's reason and history say what it waits for now: unblocked by
    this one unless another dependency still blocks it."""
    for wf_id, ensemble_id, _e, _n, state in store.dependents_of(conn, w.id):
        if state != W.READY:
            continue
        why = reason
        if not reason.startswith("blocked"):
            why = blocked_reason(store.dependencies_of(conn, wf_id)) or reason
        store.set_reason(conn, wf_id, why)
        store.add_event(conn, now, ensemble_id, state, state, why, workflow_id=wf_id)


def _count_failure(conn, w, label, new, reason, now):
    """Auto-hold: `max_failures` failed workflows in a row hold the ensemble."""
    e = store.add_failure(conn, w.ensemble_id)
    if not e.max_failures or e.failure_streak < e.max_failures or e.state == EnsembleState.HELD:
        return
    why = "auto-hold after %d failed workflows in a row (max_failures); the last: %s %s%s" % (
        e.failure_streak, label, new, ", %s" % reason if reason else "")
    if change_ensemble_state(conn, e, EnsembleState.HELD, now, why):
        store.reset_failure_streak(conn, e.id)
        store.enqueue(conn, "ensemble.held", now, ensemble=e.name, old_state=e.state,
                      state=EnsembleState.HELD, reason=why)
