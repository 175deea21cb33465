"""Plain records and the validators that turn request fields into them.

Records are NamedTuples built straight from sqlite rows: listing 10,000
workflows must stay cheap.
"""

import datetime
import re
from typing import NamedTuple, Optional

from ..errors import BadRequest, shown

_NAME = re.compile(r"\A[a-zA-Z0-9_-]+\Z")
_DURATION = re.compile(r"\A(\d+) *([smhd])\Z", re.IGNORECASE)
_UNIT_SECONDS = {"s": 1, "m": 60, "h": 3600, "d": 86400}
MAX_INT = 2 ** 31 - 1


class Ensemble(NamedTuple):
    id: int
    name: str
    state: str
    max_planning: int
    max_running: int
    created: float
    updated: float
    max_failures: int = 0       # auto-hold after this many failed workflows in a row (0: off)
    failure_streak: int = 0     # failed workflows in a row so far


class Workflow(NamedTuple):
    id: int
    ensemble_id: int
    ensemble: str
    name: str
    state: str
    priority: int
    basedir: str
    plan_command: str
    wf_uuid: Optional[str]
    submitdir: Optional[str]
    created: float
    updated: float
    reason: Optional[str] = None
    run_after: Optional[float] = None   # not planned before this time
    deferred: int = 0                   # 1 while run_after is ahead
    deps_pending: int = 0               # dependencies not yet SUCCESSFUL
    state_since: Optional[float] = None


class Trigger(NamedTuple):
    id: int
    ensemble_id: int
    ensemble: str
    name: str
    type: str
    state: str
    script: str
    args: tuple
    interval: int
    timeout: Optional[int]
    file_patterns: tuple
    basedir: Optional[str]
    created: float
    updated: float
    next_fire: Optional[float]
    deadline: Optional[float]
    fire_count: int
    failures: int                        # failed firings in a row (0: not failing)
    last_error: Optional[str]
    first_error: Optional[str] = None    # the first of the failures in a row
    first_failure: Optional[float] = None
    last_failure: Optional[float] = None


class LedgerFile(NamedTuple):
    """One file in a file-pattern trigger's ledger (table trigger_files)."""
    id: int
    trigger_id: int
    path: str
    dev: int
    ino: int
    size: int
    mtime_ns: int
    dest: str
    linked: int
    state: str
    workflow: Optional[str]


def timestamp(seconds):
    """Stored times keep 10 us: 15 significant digits, which is exactly what
    SQLite's JSON functions print, so JSON made in SQL and in Python agree."""
    return round(seconds, 5)


# What 5.x says when a name is missing, by what it names.
_SPECIFY = {"ensemble": "Specify ensemble name",
            "ensemble workflow": "Specify ensemble workflow 'name'",
            "trigger": "trigger name must be a non-empty string"}


def name(value, what="ensemble"):
    """Names follow Pegasus: [a-zA-Z0-9_-]+, shorter than 100 characters.  5.x checks
    workflow names with its ensemble-name validator, so they get its words too."""
    if value is None:
        raise BadRequest(_SPECIFY[what])
    value = str(value)
    label = "Trigger" if what == "trigger" else "Ensemble"
    if len(value) >= 100:
        raise BadRequest("%s name too long: %d (at most 99 characters)" % (label, len(value)))
    if not _NAME.match(value):
        kind = "a workflow name: " if what == "ensemble workflow" else ""
        raise BadRequest("Invalid %s name: %s (%sletters, digits, _ and - only)"
                         % (label.lower(), shown(value), kind))
    return value


def integer(value, field, minimum=None):
    """An int as 5.x reads one (int() of the text), with 5.x's words when it is not."""
    invalid = ("Invalid priority: %s" if field == "priority" else
               "Invalid value for " + field + ": %s") % shown(value)
    try:
        number = int(str(value).strip())
    except (TypeError, ValueError):
        raise BadRequest(invalid + " (an integer)")
    if abs(number) > MAX_INT:
        raise BadRequest(invalid + " (out of range)")
    if minimum is not None and number < minimum:
        raise BadRequest("Value for %s must be >= %d: %d" % (field, minimum, number))
    return number


def throttle(value, field):
    return integer(value, field, minimum=1)


def duration(value, field):
    """Seconds from `<int> <s|m|h|d>`, the only text 5.x accepts: `10` alone is refused
    as 5.x refuses it.  An int passes as seconds (5.x stores intervals so)."""
    if isinstance(value, int) and not isinstance(value, bool):
        seconds = value
    else:
        match = _DURATION.match(str(value).strip())
        seconds = int(match.group(1)) * _UNIT_SECONDS[match.group(2).lower()] if match else 0
    if not 0 < seconds <= MAX_INT:
        raise BadRequest("%s must be given as `<int> <s|m|h|d>` and be greater than 0 "
                         "seconds (given: %s)" % (field, shown(value)))
    return seconds


_SPAN = re.compile(r"\A\+?((?:\d+ *[smhd] *)+)\Z", re.IGNORECASE)
_SPAN_PART = re.compile(r"(\d+) *([smhd])", re.IGNORECASE)


def run_after(value, now):
    """Epoch seconds from a duration from now (`2h`, `30m`, `1h30m`), an ISO-8601
    date or time (local time unless it names a zone), or epoch seconds."""
    seconds = span(value)
    if seconds is not None:
        return timestamp(now + seconds)
    return timestamp(moment(value))


def span(value):
    """Seconds of a duration from now (`2h`, `30m`, `+1h30m`), or None for anything else."""
    text_ = str(value).strip()
    if not _SPAN.match(text_):
        return None
    return sum(int(n) * _UNIT_SECONDS[u.lower()] for n, u in _SPAN_PART.findall(text_))


def moment(value):
    """Epoch seconds of an ISO-8601 date or time (local time unless it names a zone)
    or of epoch seconds; 400 for anything else."""
    text_ = str(value).strip()
    try:
        number = float(text_)
    except ValueError:
        number = None
    if number is not None and number == number and abs(number) < 1e11:
        return number
    try:
        return datetime.datetime.fromisoformat(re.sub(r"[zZ]\Z", "+00:00", text_)).timestamp()
    except ValueError:
        raise BadRequest("Invalid run_after: %s (a duration like 2h or 30m, an ISO-8601 "
                         "time like 2030-01-31T18:00, or epoch seconds)" % shown(value))


def text(value, field, limit=4096, required=True):
    if value is None or (required and str(value).strip() == ""):
        raise BadRequest("Specify '%s'" % field)
    value = str(value)
    if len(value) > limit:
        raise BadRequest("'%s' too long: %d characters (at most %d)" % (field, len(value), limit))
    if "\x00" in value:
        raise BadRequest("'%s' contains a NUL character" % field)
    return value


class EngineRow(NamedTuple):
    """A workflow as the engine sees it while planning or running it."""
    id: int
    ensemble_id: int
    ensemble: str
    name: str
    state: str
    basedir: str
    plan_command: str
    submitdir: Optional[str]
    wf_uuid: Optional[str]
    abort_requested: int
    plan_pid: Optional[int]
    plan_start: Optional[int]
    plan_offset: Optional[int]
    plan_began: Optional[float]
    run_phase: Optional[str]
    run_pid: Optional[int]
    run_start: Optional[int]
    run_began: Optional[float]
    baseline_blocks: Optional[int]
    baseline_id: Optional[str]
    dagman_held: int
    ensemble_state: str
    deps_pending: int = 0
    deferred: int = 0
    state_since: Optional[float] = None


class EnsembleLoad(NamedTuple):
    """An ensemble's throttles and how many of its workflows are in each busy state
    (`ready`: those the engine may plan: no unmet dependency, no run-after ahead)."""
    id: int
    state: str
    max_planning: int
    max_running: int
    ready: int
    planning: int
    queued: int
    running: int
