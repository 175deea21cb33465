"""`GET /metrics`: the store's figures in the Prometheus text format (0.0.4).

Counts come from indexes, the histograms from the `latency` table that every
state change adds to in its own transaction, so a scrape reads a few hundred
rows however long the history is, and the histograms survive restarts.
"""

import math

from .. import __version__
from . import store
from .states import EnsembleState, WorkflowState

CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8"

_HISTOGRAMS = (
    ("pegasus_em_state_seconds", "state:",
     "Seconds a workflow spent in a state, counted when it left it: READY is the wait "
     "for a planning slot, PLANNING the planner's run, QUEUED the wait for a run slot, "
     "RUNNING the run.", "state"),
    ("pegasus_em_trigger_lag_seconds", "trigger_lag",
     "Seconds between a trigger's scheduled firing and the firing.", None),
)


def render(conn, limits, now):
    out = []
    ensembles = store.list_ensembles(conn)
    counts = store.workflow_counts(conn)
    _header(out, "pegasus_em_up", "gauge", "1 while the ensemble manager answers.")
    out.append("pegasus_em_up 1")
    _header(out, "pegasus_em_build_info", "gauge", "The pegasus-em version.")
    out.append('pegasus_em_build_info{version="%s"} 1' % _escape(__version__))
    _workflows(out, ensembles, counts)
    _ensembles(out, ensembles, counts)
    _waiting(out, conn, ensembles, counts)
    _global(out, counts, limits)
    _histograms(out, store.histograms(conn))
    _triggers(out, conn, now)
    _header(out, "pegasus_em_notifications", "gauge", "Notifications in the outbox by state.")
    outbox = store.outbox_counts(conn)
    for state in ("pending", "sent", "failed"):
        out.append('pegasus_em_notifications{state="%s"} %d' % (state, outbox.get(state, 0)))
    _header(out, "pegasus_em_events_total", "counter",
            "State changes recorded (also those retention removed since).")
    out.append("pegasus_em_events_total %d" % store.last_event_id(conn))
    _header(out, "pegasus_em_workflows_removed_total", "counter",
            "Finished workflows removed by retention, by ensemble and final state.")
    for (ensemble, state), n in sorted(store.removed_counts(conn).items()):
        out.append('pegasus_em_workflows_removed_total{ensemble="%s",state="%s"} %d'
                   % (_escape(ensemble), state, n))
    return "\n".join(out) + "\n"


def _workflows(out, ensembles, counts):
    _header(out, "pegasus_em_workflows", "gauge", "Workflows by ensemble and state.")
    for e in ensembles:
        by_state = counts.get(e.id, {})
        for state in WorkflowState.ALL:
            out.append('pegasus_em_workflows{ensemble="%s",state="%s"} %d'
                       % (_escape(e.name), state, by_state.get(state, 0)))


def _ensembles(out, ensembles, counts):
    _header(out, "pegasus_em_ensemble_state", "gauge", "1 for the state the ensemble is in.")
    for e in ensembles:
        for state in EnsembleState.ALL:
            out.append('pegasus_em_ensemble_state{ensemble="%s",state="%s"} %d'
                       % (_escape(e.name), state, int(e.state == state)))
    _header(out, "pegasus_em_throttle_limit", "gauge",
            "max_planning and max_running of each ensemble.")
    for e in ensembles:
        for kind, limit in (("planning", e.max_planning), ("running", e.max_running)):
            out.append('pegasus_em_throttle_limit{ensemble="%s",kind="%s"} %d'
                       % (_escape(e.name), kind, limit))
    _header(out, "pegasus_em_throttle_used", "gauge",
            "Workflows PLANNING and RUNNING in each ensemble.")
    for e in ensembles:
        by_state = counts.get(e.id, {})
        for kind, state in (("planning", WorkflowState.PLANNING),
                            ("running", WorkflowState.RUNNING)):
            out.append('pegasus_em_throttle_used{ensemble="%s",kind="%s"} %d'
                       % (_escape(e.name), kind, by_state.get(state, 0)))
    _header(out, "pegasus_em_failure_streak", "gauge", "Failed workflows in a row.")
    for e in ensembles:
        out.append('pegasus_em_failure_streak{ensemble="%s"} %d' % (_escape(e.name),
                                                                  e.failure_streak))
    _header(out, "pegasus_em_max_failures", "gauge",
            "Failed workflows in a row that hold the ensemble (0: no auto-hold).")
    for e in ensembles:
        out.append('pegasus_em_max_failures{ensemble="%s"} %d' % (_escape(e.name),
                                                                e.max_failures))


def _waiting(out, conn, ensembles, counts):
    _header(out, "pegasus_em_workflows_waiting", "gauge",
            "READY workflows that may not be planned yet, by cause.")
    waiting = store.waiting_counts(conn, {e: c.get("READY", 0) for e, c in counts.items()})
    for e in ensembles:
        deps, deferred = waiting.get(e.id, (0, 0))
        out.append('pegasus_em_workflows_waiting{ensemble="%s",cause="dependency"} %d'
                   % (_escape(e.name), deps))
        out.append('pegasus_em_workflows_waiting{ensemble="%s",cause="run_after"} %d'
                   % (_escape(e.name), deferred))


def _global(out, counts, limits):
    planning = sum(c.get(WorkflowState.PLANNING, 0) for c in counts.values())
    running = sum(c.get(WorkflowState.RUNNING, 0) for c in counts.values())
    _header(out, "pegasus_em_global_throttle_used", "gauge",
            "Workflows PLANNING and RUNNING across all ensembles.")
    out.append('pegasus_em_global_throttle_used{kind="planning"} %d' % planning)
    out.append('pegasus_em_global_throttle_used{kind="running"} %d' % running)
    if any(limit is not None for limit in limits):
        _header(out, "pegasus_em_global_throttle_limit", "gauge",
                "MAX_PLANNING_TOTAL and MAX_RUNNING_TOTAL (absent: no limit).")
        for kind, limit in zip(("planning", "running"), limits):
            if limit is not None:
                out.append('pegasus_em_global_throttle_limit{kind="%s"} %d' % (kind, limit))


def _histograms(out, hists):
    for metric, key, help_, label in _HISTOGRAMS:
        _header(out, metric, "histogram", help_)
        names = sorted(n for n in hists if n.startswith(key)) if label else [key]
        for name in names:
            buckets, count, total = hists.get(name, ([(le, 0) for le in store.BUCKETS], 0, 0.0))
            labels = '%s="%s",' % (label, _escape(name[len(key):])) if label else ""
            for le, n in buckets:
                out.append('%s_bucket{%sle="%s"} %d' % (metric, labels, _le(le), n))
            braces = "{%s}" % labels.rstrip(",") if labels else ""
            out.append("%s_sum%s %s" % (metric, braces, _number(total)))
            out.append("%s_count%s %d" % (metric, braces, count))


def _triggers(out, conn, now):
    _header(out, "pegasus_em_triggers", "gauge", "Triggers by ensemble and state.")
    for (ensemble, state), n in sorted(store.trigger_counts(conn).items()):
        out.append('pegasus_em_triggers{ensemble="%s",state="%s"} %d' % (_escape(ensemble),
                                                                         state, n))
    _header(out, "pegasus_em_trigger_overdue_seconds", "gauge",
            "How late each live trigger that is due right now is.")
    for ensemble, name, late in store.overdue_triggers(conn, now):
        out.append('pegasus_em_trigger_overdue_seconds{ensemble="%s",trigger="%s"} %s'
                   % (_escape(ensemble), _escape(name), _number(late)))
    _header(out, "pegasus_em_trigger_failures", "gauge",
            "Failed firings in a row of each live trigger that is failing (it retries).")
    for ensemble, name, failures in store.failing_triggers(conn):
        out.append('pegasus_em_trigger_failures{ensemble="%s",trigger="%s"} %d'
                   % (_escape(ensemble), _escape(name), failures))


def _header(out, name, kind, help_):
    out.append("# HELP %s %s" % (name, help_.replace("\\", "\\\\").replace("\n", " ")))
    out.append("# TYPE %s %s" % (name, kind))


def _escape(value):
    return str(value).replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n")


def _le(le):
    return "+Inf" if math.isinf(le) else repr(float(le))


def _number(x):
    return repr(round(float(x), 6))
