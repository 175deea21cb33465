"""Text output of pegasus-em: the Pegasus 5.x tables and blocks, and --json.

Every function takes decoded JSON and returns a string (no trailing newline;
"" when 5.x prints nothing), so layouts are testable without a server.  Column
formats and labels are copied from Pegasus 5.x so scripts that scrape them
keep working; missing values print as "" rather than "None".
"""

import json
import shlex
import textwrap
import time

ENSEMBLES_FMT = "%-20s %-8s %-24s %-24s %12s %12s"
WORKFLOWS_FMT = "%-20s %-15s %-8s %-24s %-24s"
TRIGGERS_FMT = "%-20s %-12s %-9s %-8s %-24s %5s %s"
HISTORY_FMT = "%-7s %-24s %-24s %-26s %s"

_UNITS = (("d", 86400), ("h", 3600), ("m", 60))


def to_json(reply):
    return json.dumps(reply, indent=2, sort_keys=True)


def local_time(ts):
    """Epoch seconds in local time with its zone, as 5.x prints them; None if `ts` is
    not a time."""
    try:
        return time.strftime("%Y-%m-%d %H:%M:%S %Z", time.localtime(float(ts)))
    except (TypeError, ValueError, OverflowError, OSError):
        return None


def when(ts):
    """Epoch seconds as 5.x shows them; "" when unknown."""
    if ts is None or ts == "":
        return ""
    text = local_time(ts)
    return str(ts) if text is None else text  # a server that already formats its times


def duration(seconds):
    """Seconds in the largest whole unit, the way triggers are typed: 30s, 5m, 2h, 1d."""
    if seconds is None or seconds == "":
        return ""
    if isinstance(seconds, bool) or not isinstance(seconds, (int, float)):
        return str(seconds)
    if seconds != int(seconds):
        return "%gs" % seconds
    seconds = int(seconds)
    for unit, size in _UNITS:
        if seconds and seconds % size == 0:
            return "%d%s" % (seconds // size, unit)
    return "%ds" % seconds


def text(value):
    return "" if value is None else str(value)


def state(reply):
    return "State: %s" % text(reply.get("state"))


# An abort of a busy workflow is a request: the engine stops it, then records ABORTED.
_ABORTING = {"PLANNING": "its planner is being stopped, and it becomes ABORTED once the "
                         "planner has exited",
             "RUNNING": "its DAGMan is being removed, and it becomes ABORTED once DAGMan "
                        "is gone"}


def aborting(reply):
    """`State: RUNNING` alone reads as a refused abort: say that it is under way."""
    pending = _ABORTING.get(reply.get("state"))
    return state(reply) + (" (abort requested: %s)" % pending if pending else "")


def priority(reply):
    return "Priority: %s" % text(reply.get("priority"))


def limits(reply, failures=False):
    out = "Max Planning: %s\nMax Running: %s" % (
        text(reply.get("max_planning")), text(reply.get("max_running")))
    if failures:  # only when asked for: the 5.x layout has two lines
        out += "\nMax Failures: %s" % text(reply.get("max_failures"))
    return out


def change(event):
    """`OLD -> NEW` of an event (`-> NEW` when it created the thing)."""
    old, new = event.get("old_state"), event.get("new_state")
    return "%s-> %s" % (text(old) + " " if old else "", text(new))


def history(rows, with_workflow=True):
    """Events oldest first: ID, TIME, WORKFLOW (or trigger:T; blank for the
    ensemble's own changes), OLD -> NEW, REASON."""
    if not rows:
        return ""
    layout = HISTORY_FMT if with_workflow else HISTORY_FMT.replace("%-24s ", "", 1)
    lines = [layout % (("ID", "TIME") + (("WORKFLOW",) if with_workflow else ())
                       + ("CHANGE", "REASON"))]
    for e in rows:
        what = e.get("workflow") or (("trigger:%s" % e["trigger"]) if e.get("trigger") else "")
        lines.append(layout % ((text(e.get("id")), when(e.get("time")))
                               + ((what,) if with_workflow else ())
                               + (change(e), text(e.get("reason")))))
    return "\n".join(line.rstrip() for line in lines)


def why(reply, width=78):
    """The explanation as a wrapped paragraph; a path longer than a line gets a line
    of its own, whole, so that it can be copied."""
    return textwrap.fill(text((reply or {}).get("explanation")), width=width,
                         break_on_hyphens=False, break_long_words=False)


def import_report(r):
    r = r or {}
    lines = ["Imported %d ensembles, %d workflows and %d triggers."
             % (len(r.get("ensembles") or ()), r.get("workflows") or 0, r.get("triggers") or 0)]
    if r.get("following"):
        lines.append("Following (not run again): %s" % ", ".join(r["following"]))
    if r.get("requeued"):
        lines.append("To be planned again (no submit dir found): %s"
                     % ", ".join(r["requeued"]))
    lines.extend("Skipped %s" % m for m in r.get("skipped") or ())
    return "\n".join(lines)


def ensembles(rows):
    if not rows:
        return ""
    lines = [ENSEMBLES_FMT % ("NAME", "STATE", "CREATED", "UPDATED",
                              "MAX PLANNING", "MAX RUNNING")]
    for r in rows:
        lines.append(ENSEMBLES_FMT % (
            text(r.get("name")), text(r.get("state")), when(r.get("created")),
            when(r.get("updated")), text(r.get("max_planning")), text(r.get("max_running"))))
    return "\n".join(lines)


def workflows(rows):
    if not rows:
        return ""
    lines = [WORKFLOWS_FMT % ("NAME", "STATE", "PRIORITY", "CREATED", "UPDATED")]
    for w in rows:
        lines.append(WORKFLOWS_FMT % (
            text(w.get("name")), text(w.get("state")), text(w.get("priority")),
            when(w.get("created")), when(w.get("updated"))))
    return "\n".join(lines)


def workflows_long(rows):
    """5.x `print("ID:      ", value)` blocks: label, one space, value, blank line after."""
    lines = []
    for w in rows or ():
        pairs = (("ID:      ", w.get("id")), ("Name:    ", w.get("name")),
                 ("Created: ", when(w.get("created"))), ("Updated: ", when(w.get("updated"))),
                 ("State:   ", w.get("state")), ("Priority:", w.get("priority")),
                 ("UUID:    ", w.get("wf_uuid")), ("URL:     ", w.get("href")))
        lines.extend("%s %s" % (label, text(value)) for label, value in pairs)
        lines.append("")
    return "\n".join(lines)


def status(w):
    pairs = [("ID", w.get("id")), ("Name", w.get("name")),
             ("Plan Command", w.get("plan_command")),
             ("Created", when(w.get("created"))), ("Updated", when(w.get("updated"))),
             ("State", w.get("state")), ("UUID", w.get("wf_uuid")),
             ("Priority", w.get("priority")), ("Base Dir", w.get("basedir")),
             ("Submit Dir", w.get("submitdir")), ("Log", w.get("log"))]
    if w.get("reason"):  # our extension: why the workflow failed or was aborted
        pairs.append(("Reason", w["reason"]))
    if w.get("after"):  # ours: dependencies, only when there are some
        pairs.append(("After", ", ".join("%s (%s)" % (text(d.get("name")), text(d.get("state")))
                                         for d in w["after"] if isinstance(d, dict))))
    if w.get("run_after"):
        pairs.append(("Run After", when(w["run_after"])))
    return _block(pairs)


def _block(pairs):
    """`Label:` padded to 14 columns, as in 5.x `pegasus-em status`."""
    return "\n".join("%-13s %s" % (label + ":", text(value)) for label, value in pairs)


def _sub(obj, key):
    """obj[key] when obj is a dict; tolerates the nulls 5.x servers send."""
    return obj.get(key) if isinstance(obj, dict) else None


def triggers(rows):
    if not rows:
        return ""
    lines = [TRIGGERS_FMT % ("NAME", "TYPE", "STATE", "INTERVAL", "NEXT", "FIRES", "SCRIPT")]
    for t in rows:
        lines.append(TRIGGERS_FMT % (
            text(t.get("name")), text(t.get("type")), text(t.get("state")),
            duration(_sub(t.get("args"), "interval")) or "-",
            when(t.get("next_fire")) or "-", text(t.get("fire_count")) or "-",
            text(_sub(t.get("workflow"), "script"))))
    return "\n".join(lines)


_TRIGGER_KEYS = ("id", "ensemble_id", "ensemble", "name", "type", "state", "workflow",
                 "args", "basedir", "created", "updated", "next_fire", "deadline",
                 "fire_count", "failures", "last_error", "workflows", "workflow_count", "href",
                 "failing", "first_error", "first_failure", "last_failure")
SHOW_WORKFLOWS = 10  # -l names at most this many of a trigger's workflows, the newest


def triggers_long(rows):
    blocks = [_block(_trigger_pairs(t)) + "\n" for t in rows or ()]
    return "\n".join(blocks)


def _trigger_pairs(t):
    args, wf = t.get("args"), t.get("workflow")
    pairs = [("ID", t.get("id")), ("Name", t.get("name")),
             ("Ensemble", t.get("ensemble") or t.get("ensemble_id")),
             ("Type", t.get("type")), ("State", t.get("state")),
             ("Script", _sub(wf, "script")), ("Args", _words(_sub(wf, "args"))),
             ("Base Dir", t.get("basedir")),
             ("Interval", duration(_sub(args, "interval"))),
             ("Timeout", duration(_sub(args, "timeout"))),
             ("Patterns", _words(_sub(args, "file_patterns"))),
             ("Created", when(t.get("created"))), ("Updated", when(t.get("updated"))),
             ("Next Fire", when(t.get("next_fire"))), ("Deadline", when(t.get("deadline"))),
             ("Fires", t.get("fire_count")), ("Failing", _failing(t)),
             ("Failures", t.get("failures")),
             ("First Error", _at(t.get("first_error"), t.get("first_failure"))),
             ("Last Error", _at(t.get("last_error"), t.get("last_failure"))),
             ("Workflows", _names(t.get("workflows"), t.get("workflow_count"))),
             ("URL", t.get("href"))]
    # Fields a newer server adds still show up rather than being dropped.
    pairs.extend((k, t[k]) for k in sorted(t) if k not in _TRIGGER_KEYS)
    return pairs


def _failing(t):
    """yes/no from a server that says (ours), else nothing to show."""
    if "failing" not in t:
        return None
    return "yes (retried at each interval)" if t["failing"] else "no"


def _at(message, epoch):
    """An error with the time it happened, when the server gives one."""
    return "%s: %s" % (when(epoch), message) if message and epoch else message


def _words(values):
    """A list as the shell would need it typed; tolerates a JSON string or null."""
    if isinstance(values, str):
        try:
            values = json.loads(values)
        except ValueError:
            return values
    if not isinstance(values, (list, tuple)):
        return text(values)
    return " ".join(shlex.quote(str(v)) for v in values)


def _names(workflows, count=None):
    """`a, b, c`; beyond SHOW_WORKFLOWS, how many and the newest: `250: ..., x, y`."""
    if not isinstance(workflows, (list, tuple)):
        return text(workflows)
    names = [text(w.get("name") if isinstance(w, dict) else w) for w in workflows]
    if not isinstance(count, int) or isinstance(count, bool):
        count = len(names)
    if count <= SHOW_WORKFLOWS and count == len(names):
        return ", ".join(names)
    return "%d: ..., %s" % (count, ", ".join(names[-SHOW_WORKFLOWS:]))
