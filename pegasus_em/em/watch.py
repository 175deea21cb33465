"""`pegasus-em watch [ENSEMBLE]`: a live view of ensembles and workflows.

On a terminal the screen is redrawn every INTERVAL seconds, and rows whose
state changed since the previous drawing are highlighted.  Anywhere else
(a pipe, a file, a log) it prints the tables once and then one line per state
change as it happens (read from the events API), or only the tables with
--once: output a script or `tail -f` can use.
"""

import shutil
import sys
import time

from .. import fmt
from . import client
from ..core.states import EnsembleState as E, WorkflowState as W

CLEAR = "\x1b[H\x1b[2J"
HIDE_CURSOR, SHOW_CURSOR = "\x1b[?25l", "\x1b[?25h"
BOLD, REVERSE, RESET = "\x1b[1m", "\x1b[7m", "\x1b[0m"
GREEN, CYAN, YELLOW, RED, DIM = "\x1b[32m", "\x1b[36m", "\x1b[33m", "\x1b[31m", "\x1b[2m"
COLORS = {W.SUCCESSFUL: GREEN, W.RUNNING: CYAN, W.PLANNING: YELLOW, W.QUEUED: YELLOW,
          W.ABORTED: DIM, E.HELD: RED, E.PAUSED: YELLOW}
COLORS.update((s, RED) for s in W.FAILURES)
BUSY_ORDER = {W.RUNNING: 0, W.PLANNING: 1, W.QUEUED: 2, W.READY: 3}
ENSEMBLE_FMT = "%-20s %-7s %6s %7s %6s %7s %6s %6s %7s"
WORKFLOW_FMT = "%-24s %-11s %8s %8s  %s"
MAX_EVENTS = 1000
LAST_ID = 2 ** 31 - 1


class Snapshot:
    """What the server says now: ensembles (with counts) and one ensemble's workflows."""

    def __init__(self, api, ensemble=None):
        self.ensembles = api.get_json("/ensembles?detail=1") or []
        if ensemble is not None:
            self.ensembles = [e for e in self.ensembles if e.get("name") == ensemble]
        self.workflows = None
        if ensemble is not None:
            self.workflows = api.get_json(client.path("ensembles", ensemble, "workflows")
                                          + "?detail=1") or []

    def states(self):
        """Row key -> state, to see what changed between two snapshots."""
        out = {("e", e.get("name")): e.get("state") for e in self.ensembles}
        for w in self.workflows or ():
            out[("w", w.get("name"))] = w.get("state")
        return out


def ensemble_rows(ensembles):
    lines = [ENSEMBLE_FMT % ("ENSEMBLE", "STATE", "READY", "PLAN", "QUEUED", "RUN", "DONE",
                             "FAILED", "ABORTED")]
    keys = []
    for e in ensembles:
        c = e.get("counts") or {}
        get = (lambda s: str(c.get(s, 0))) if c else (lambda s: "-")
        failed = str(sum(c.get(s, 0) for s in W.FAILURES)) if c else "-"
        lines.append(ENSEMBLE_FMT % (
            fmt.text(e.get("name")), fmt.text(e.get("state")), get(W.READY),
            "%s/%s" % (get(W.PLANNING), fmt.text(e.get("max_planning"))), get(W.QUEUED),
            "%s/%s" % (get(W.RUNNING), fmt.text(e.get("max_running"))), get(W.SUCCESSFUL),
            failed, get(W.ABORTED)))
        keys.append(("e", e.get("name")))
    return lines, keys


def workflow_rows(workflows, now, limit=None):
    """Busy workflows first, then the most recently changed; at most `limit`."""
    ordered = sorted(workflows, key=lambda w: (BUSY_ORDER.get(w.get("state"), 9),
                                               -(w.get("state_since") or w.get("updated") or 0)))
    shown = ordered if limit is None else ordered[:max(0, limit)]
    lines = [WORKFLOW_FMT % ("WORKFLOW", "STATE", "PRIORITY", "FOR", "REASON")]
    keys = []
    for w in shown:
        since = w.get("state_since") or w.get("updated")
        age = _age(now - since) if isinstance(since, (int, float)) else ""
        lines.append(WORKFLOW_FMT % (fmt.text(w.get("name")), fmt.text(w.get("state")),
                                     fmt.text(w.get("priority")), age,
                                     fmt.text(w.get("reason"))))
        keys.append(("w", w.get("name")))
    if len(shown) < len(ordered):
        lines.append("... and %d more" % (len(ordered) - len(shown)))
    return lines, keys


def _age(seconds):
    seconds = max(0, int(seconds))
    for unit, size in (("d", 86400), ("h", 3600), ("m", 60)):
        if seconds >= size:
            return "%d%s" % (seconds // size, unit)
    return "%ds" % seconds


def plain(snap, now):
    """The tables as plain text."""
    lines, _ = ensemble_rows(snap.ensembles)
    if snap.workflows is not None:
        lines.append("")
        lines += workflow_rows(snap.workflows, now)[0]
    return "\n".join(lines)


def screen(snap, previous, now, width, height, header):
    """One terminal screen: changed rows in reverse video, states in colour."""
    states = snap.states()
    changed = {k for k, s in states.items() if previous is not None and previous.get(k) != s}
    out = [BOLD + header[:width] + RESET, ""]
    lines, keys = ensemble_rows(snap.ensembles)
    out += _paint(lines, [None] + keys, states, changed, width)
    if snap.workflows is not None:
        room = height - len(out) - 3
        lines, keys = workflow_rows(snap.workflows, now, limit=max(1, room))
        out.append("")
        out += _paint(lines, [None] + keys + [None], states, changed, width)
    return "\n".join(out)


def _paint(lines, keys, states, changed, width):
    out = []
    for line, key in zip(lines, keys + [None] * (len(lines) - len(keys))):
        line = line[:width]
        state = states.get(key) if key else None
        if state in COLORS:
            line = line.replace(state, COLORS[state] + state + RESET + (
                REVERSE if key in changed else ""), 1)
        if key in changed:
            line = REVERSE + line + RESET
        elif key is None and line.startswith(("ENSEMBLE ", "WORKFLOW ")):
            line = BOLD + line + RESET
        out.append(line)
    return out


def run(api, ensemble=None, interval=2.0, once=False, out=None, tty=None, iterations=None,
        clock=time.time, sleep=time.sleep):
    """The verb; `iterations` bounds the refreshes (tests)."""
    out = out or sys.stdout
    tty = out.isatty() if tty is None else tty
    if tty and not once:
        return _live(api, ensemble, interval, out, iterations, clock, sleep)
    snap = Snapshot(api, ensemble)
    out.write(plain(snap, clock()) + "\n")
    out.flush()
    if once:
        return 0
    return _follow(api, ensemble, interval, out, iterations, sleep)


def _live(api, ensemble, interval, out, iterations, clock, sleep):
    previous, n = None, 0
    out.write(HIDE_CURSOR)
    try:
        while iterations is None or n < iterations:
            snap = Snapshot(api, ensemble)
            size = shutil.get_terminal_size((100, 40))
            header = "pegasus-em watch %s  every %gs  %s  (Ctrl-C to quit)" % (
                ensemble or "", interval, time.strftime("%H:%M:%S", time.localtime(clock())))
            out.write(CLEAR + screen(snap, previous, clock(), size.columns, size.lines,
                                     header) + "\n")
            out.flush()
            previous, n = snap.states(), n + 1
            if iterations is None or n < iterations:
                sleep(interval)
    except KeyboardInterrupt:
        pass
    finally:
        out.write(SHOW_CURSOR)
        out.flush()
    return 0


def _follow(api, ensemble, interval, out, iterations, sleep):
    """One line per state change, from the events API, until interrupted."""
    base = client.path("ensembles", ensemble, "events") if ensemble else "/events"
    newest = api.get_json(base + "?before=%d&limit=1" % LAST_ID) or []
    after, n = (newest[-1]["id"] if newest else 0), 0
    try:
        while iterations is None or n < iterations:
            sleep(interval)
            n += 1
            for e in api.get_json(base + "?after=%d&limit=%d" % (after, MAX_EVENTS)) or []:
                after = max(after, e.get("id") or 0)
                out.write(event_line(e) + "\n")
            out.flush()
    except KeyboardInterrupt:
        pass
    return 0


def event_line(e):
    """`TIME  ENSEMBLE.WORKFLOW  OLD -> NEW  reason` (trigger:T for a trigger's events)."""
    what = e.get("ensemble") or ""
    if e.get("workflow"):
        what += "." + e["workflow"]
    elif e.get("trigger"):
        what += " trigger:" + e["trigger"]
    return "%s  %s  %s  %s" % (fmt.when(e.get("time")), what, fmt.change(e),
                               fmt.text(e.get("reason")))
