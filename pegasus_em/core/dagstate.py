"""Following a running workflow from its files (pegasus-facts.md §2.9).

`baseline()` is taken just before `pegasus-run`; a `Watch` then reads only what
DAGMan appends to `<dag>.dagman.out` after it, so the previous run's
`EXITING WITH STATUS 1` still at the end of the file reads as PENDING.

A poll costs one `os.stat` when nothing changed.  The DAGMan process and the
schedd are consulted only when the file has been quiet for `liveness_every`
seconds (DAGMan died?) or nothing started within `pending_timeout` (DAGMan job
idle, held or gone?).  `now` is any clock, consistent with `since`.

Only braindumps of type `dag` are followed (`is_followed`): for `shell`
workflows, pegasus-run runs the whole script, and its exit status decides.
"""

import json
import os
import re
import socket
from typing import NamedTuple, Optional

from . import runner

PENDING, RUNNING, SUCCEEDED, FAILED, REMOVED, HELD = (
    "PENDING", "RUNNING", "SUCCEEDED", "FAILED", "REMOVED", "HELD")
TERMINAL = frozenset((SUCCEEDED, FAILED, REMOVED))
JOB_IDLE, JOB_RUNNING, JOB_HELD = 1, 2, 5  # condor JobStatus

STARTING_UP = re.compile(r"\*\* condor_scheduniv_exec\.([0-9.]+) \(CONDOR_DAGMAN\) STARTING UP")
EXITING = re.compile(r"\(condor_DAGMAN\)[\w\s]+EXITING WITH STATUS (\d+)$")
PID = re.compile(r"\*\* PID = (\d+)$")
DAG_STATUS = re.compile(r"DAG status: (\d+ \(\w+\))")
HELD_JOBS = re.compile(r"(\d+) job proc\(s\) currently held")
RESCUE = re.compile(r"Writing Rescue DAG to (\S+?)\.\.\.")
DAGMAN_NAMES = ("condor_dagman", "condor_scheduniv_exec", "dagman")
JOBSTATE_TAIL = 65536  # bytes of jobstate.log read for the monitord cross-check


class Baseline(NamedTuple):
    blocks: int  # STARTING UP blocks in dagman.out before pegasus-run
    last_dagman_id: Optional[str]  # e.g. "7.0", None when there were none


class Status(NamedTuple):
    state: str
    reason: str
    dagman_pid: Optional[int]
    held_jobs: int


def is_followed(braindump):
    """Whether a Watch can follow this workflow (type dag); else pegasus-run's rc decides."""
    return braindump.get("type", "dag") == "dag"


def dagman_out_path(submit_dir, braindump):
    return os.path.join(submit_dir, braindump["dag"] + ".dagman.out")


def baseline(submit_dir, braindump):
    """Count the DAGMan runs already in dagman.out (call just before pegasus-run)."""
    ids = dagman_ids(submit_dir, braindump)
    return Baseline(len(ids), ids[-1] if ids else None)


def dagman_ids(submit_dir, braindump):
    """The DAGMan job id of every run in dagman.out, oldest first ([] without the file)."""
    parser = _Parser()
    try:
        with open(dagman_out_path(submit_dir, braindump), "rb") as f:
            parser.feed_file(f)
    except FileNotFoundError:
        pass
    return parser.ids


def condor_q(wf_uuid, executable="condor_q", env=None, timeout=30):
    """The workflow's DAGMan job ads from the schedd; [] if none; None if condor_q failed."""
    constraint = 'pegasus_wf_uuid=="%s" && pegasus_wf_xformation=="pegasus::dagman"' % wf_uuid
    result = runner.run([executable, "-json", "-constraint", constraint], timeout=timeout, env=env)
    if result.rc != 0:
        return None
    return _json_ads(result.output)


def _json_ads(text):
    """The JSON array in condor_q's output (stderr may be mixed in); empty output = []."""
    start = re.search(r"^\s*\[", text, re.MULTILINE)
    if start is None:
        return None if text.strip() else []
    try:
        ads, _ = json.JSONDecoder().raw_decode(text, start.end() - 1)
    except ValueError:
        return None
    return ads if isinstance(ads, list) else None


class _Block:
    """What one DAGMan run (one STARTING UP block) has said so far."""

    __slots__ = ("id", "pid", "exit", "dag_status", "held", "removed", "rescue")

    def __init__(self, dagman_id):
        self.id, self.pid, self.exit, self.dag_status = dagman_id, None, None, None
        self.held, self.removed, self.rescue = 0, False, None

    def feed(self, line):
        for key, regex, name, kind in _FIELDS:
            match = key in line and regex.search(line)  # substring first: most lines match none
            if match:
                setattr(self, name, kind(match.group(1)))
        if "Received SIGUSR1" in line or "DAG_STATUS_RM" in line:
            self.removed = True


_FIELDS = (("** PID", PID, "pid", int), ("EXITING", EXITING, "exit", int),
           ("DAG status", DAG_STATUS, "dag_status", str),
           ("currently held", HELD_JOBS, "held", int), ("Rescue DAG", RESCUE, "rescue", str))
CHUNK = 1 << 20  # dagman.out is read in pieces: it can be hundreds of MB


class _Parser:
    """Incremental dagman.out reader: ids of every block, summary of the last one."""

    def __init__(self):
        self.ids, self.last = [], None

    def feed(self, data):
        """Consume complete lines of `data` (bytes); -> number of bytes consumed."""
        end = data.rfind(b"\n") + 1
        for line in data[:end].decode("utf-8", "replace").splitlines():
            match = "STARTING UP" in line and STARTING_UP.search(line)
            if match:
                self.ids.append(match.group(1))
                self.last = _Block(match.group(1))
            elif self.last is not None:
                self.last.feed(line)
        return end

    def feed_file(self, f):
        """Consume `f` from its position to its last complete line; -> bytes consumed."""
        consumed, rest = 0, b""
        while True:
            data = f.read(CHUNK)
            if not data:
                return consumed
            data = rest + data
            used = self.feed(data)
            consumed, rest = consumed + used, data[used:]


def _first_new(ids, base):
    """Index of the first block written after the baseline."""
    if base.blocks == 0:
        return 0
    if len(ids) >= base.blocks and ids[base.blocks - 1] == base.last_dagman_id:
        return base.blocks
    # dagman.out was truncated or rotated since the baseline: go by DAGMan ids
    if base.last_dagman_id in ids:
        return len(ids) - ids[::-1].index(base.last_dagman_id)
    return 0


def _finished(block, dag):
    """Status of a block that has its EXITING WITH STATUS line."""
    if block.exit == 0:
        return Status(SUCCEEDED, "DAGMan exited with status 0", block.pid, 0)
    if block.exit == 2 and block.removed:
        return Status(REMOVED, "workflow removed (DAGMan exited with status 2, DAG_STATUS_RM)",
                      block.pid, block.held)
    parts = ["DAGMan exited with status %d" % block.exit]
    if block.dag_status:
        parts.append("DAG status: %s" % block.dag_status)
    parts.append("rescue DAG %s" % block.rescue if block.rescue else "see %s.dagman.out" % dag)
    return Status(FAILED, "; ".join(parts), block.pid, block.held)


def is_this_host(hostname):
    """Whether a braindump's submit_hostname names this machine (short names compared)."""
    if not hostname or hostname == "localhost":
        return True
    here = socket.gethostname()
    return hostname == here or hostname.split(".")[0] == here.split(".")[0]


def dagman_process_alive(pid):
    """Whether `pid` is a live (non-zombie) process whose command line names DAGMan."""
    state = _proc_state(pid)
    if state is None or state in ("Z", "X", "x"):
        return False
    try:
        with open("/proc/%d/cmdline" % pid, "rb") as f:
            cmdline = f.read().decode("utf-8", "replace")
    except FileNotFoundError:
        return False
    except OSError:
        return True  # not ours to read: cannot tell, assume alive
    return any(name in cmdline for name in DAGMAN_NAMES)


def _proc_state(pid):
    try:
        with open("/proc/%d/stat" % pid, "rb") as f:
            text = f.read().decode("ascii", "replace")
    except OSError:
        return None
    fields = text.rpartition(")")[2].split()
    return fields[0] if fields else None


def monitord_says_died(submit_dir, braindump, dagman_id):
    """jobstate.log tail: `MONITORD_FINISHED 42` after `DAGMAN_STARTED <dagman_id>`."""
    path = os.path.join(submit_dir, braindump.get("jsd") or "jobstate.log")
    try:
        with open(path, "rb") as f:
            f.seek(max(0, os.fstat(f.fileno()).st_size - JOBSTATE_TAIL))
            text = f.read().decode("utf-8", "replace")
    except OSError:
        return False
    started = text.rfind(" INTERNAL *** DAGMAN_STARTED %s ***" % dagman_id)
    return started >= 0 and text.find(" INTERNAL *** MONITORD_FINISHED 42 ***", started) > 0


class Watch:
    """Follows one DAGMan run of a submit dir.  poll(now) -> Status; terminal is final.

    `query(wf_uuid) -> list of job ads | None` asks the schedd (default `condor_q`).
    `since`: when pegasus-run was called (same clock as `now`); default the first poll.
    """

    def __init__(self, submit_dir, braindump, baseline, query=None, liveness_every=10.0,
                 pending_timeout=300.0, since=None):
        if not is_followed(braindump):
            raise ValueError("a %s workflow is not followed: pegasus-run's exit status decides"
                             % braindump.get("type"))
        self.submit_dir, self.braindump, self.baseline = submit_dir, braindump, baseline
        self.dag = braindump["dag"]
        self.path = dagman_out_path(submit_dir, braindump)
        self.query = query or condor_q
        self.liveness_every, self.pending_timeout = liveness_every, pending_timeout
        self.since = since
        self.local = is_this_host(braindump.get("submit_hostname"))
        self._parser, self._offset, self._key = _Parser(), 0, None
        self._changed_at = self._checked_at = None
        self._last = self._final = None

    def poll(self, now):
        if self._final is not None:
            return self._final
        if self.since is None:
            self.since = now
        if self._refresh() or self._changed_at is None:
            self._changed_at = now
        status = self._evaluate(now)
        if status.state in TERMINAL:
            self._final = status
        self._last = status
        return status

    # -- reading dagman.out ----------------------------------------------------------

    def _refresh(self):
        """One stat; read what was appended if the file changed.  -> whether it changed."""
        try:
            st = os.stat(self.path)
        except FileNotFoundError:
            return False
        key = (st.st_ino, st.st_size, st.st_mtime_ns)
        if key == self._key:
            return False
        if self._key is None or st.st_ino != self._key[0] or st.st_size < self._offset:
            self._parser, self._offset = _Parser(), 0  # new, rotated or truncated file
        self._key = key
        self._read()
        return True

    def _read(self):
        try:
            with open(self.path, "rb") as f:
                f.seek(self._offset)
                self._offset += self._parser.feed_file(f)
        except FileNotFoundError:
            pass

    def _current(self):
        """The last block written after the baseline, or None."""
        if len(self._parser.ids) > _first_new(self._parser.ids, self.baseline):
            return self._parser.last
        return None

    # -- deciding ----------------------------------------------------------------------

    def _evaluate(self, now, check=True):
        """`check=False` after a re-read inside a check, so checks never recurse."""
        block = self._current()
        if block is None:
            return self._pending(now, check)
        if block.exit is not None:
            return _finished(block, self.dag)
        status = _running(block)
        if check and now - self._changed_at >= self.liveness_every and self._due(now):
            return self._check_alive(block, status, now)
        return status

    def _due(self, now):
        """Rate limit for the expensive checks (/proc, jobstate.log, condor_q)."""
        if self._checked_at is not None and now - self._checked_at < self.liveness_every:
            return False
        self._checked_at = now
        return True

    def _check_alive(self, block, status, now):
        if not self._dagman_gone(block):
            return status
        if self._refresh():  # it may have written EXITING just before it ended
            self._changed_at = now
            if self._current() is not block or block.exit is not None:
                return self._evaluate(now, check=False)
        ads = self.query(self.braindump["wf_uuid"])
        if ads is None:
            return status._replace(reason="DAGMan pid %s is gone; condor_q failed" % block.pid)
        if ads and _latest(ads).get("JobStatus") == JOB_HELD:  # HTCondor stops held jobs
            return _held(_latest(ads))._replace(dagman_pid=block.pid, held_jobs=block.held)
        if ads:  # the schedd restarts it (on_exit_remove): a new block will follow
            return status._replace(reason="DAGMan pid %s is gone; the schedd still lists it"
                                   % block.pid)
        return Status(FAILED, "DAGMan died (pid %s) without finishing; see %s.dagman.out"
                      % (block.pid, self.dag), block.pid, block.held)

    def _dagman_gone(self, block):
        """On this host /proc decides; elsewhere only monitord's verdict in jobstate.log."""
        if self.local and block.pid is not None:
            return not dagman_process_alive(block.pid)
        return monitord_says_died(self.submit_dir, self.braindump, block.id)

    def _pending(self, now, check):
        waiting = Status(PENDING, "waiting for DAGMan to start", None, 0)
        if not check or now - self.since < self.pending_timeout:
            return waiting
        if not self._due(now):  # keep the schedd's last answer (e.g. HELD) between asks
            return self._last if self._last and self._last.state in (PENDING, HELD) else waiting
        ads = self.query(self.braindump["wf_uuid"])
        if self._refresh():  # it may have started (and even ended) meanwhile
            self._changed_at = now
            if self._current() is not None:
                return self._evaluate(now, check=False)
        return _from_schedd(ads, self.dag)


def _running(block):
    reason = "DAGMan %s running" % block.id
    if block.held:
        reason += "; %d job(s) held" % block.held
    return Status(RUNNING, reason, block.pid, block.held)


def _from_schedd(ads, dag):
    """PENDING / HELD / FAILED for a DAGMan job that has not written dagman.out yet."""
    if ads is None:
        return Status(PENDING, "waiting for DAGMan to start; condor_q failed", None, 0)
    if not ads:
        return Status(FAILED, "DAGMan never started; see %s.lib.err" % dag, None, 0)
    ad = _latest(ads)
    if ad.get("JobStatus") == JOB_HELD:
        return _held(ad)
    if ad.get("JobStatus") == JOB_RUNNING:
        return Status(PENDING, "DAGMan job is running but has not written dagman.out yet",
                      None, 0)
    return Status(PENDING, "DAGMan job is idle in the schedd", None, 0)


def _latest(ads):
    return max(ads, key=lambda ad: ad.get("ClusterId", 0))


def _held(ad):
    reason = "DAGMan job is held in the schedd"
    if ad.get("HoldReason"):
        reason += ": %s" % ad["HoldReason"]
    return Status(HELD, reason, None, 0)
