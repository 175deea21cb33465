"""The engine: plan, run and follow workflows in priority order under the throttles.

Claim before act, reconcile on start.  Every step first records its intent in
the store (READY -> PLANNING, QUEUED -> RUNNING with the dagman.out baseline),
then acts (spawns the planner or pegasus-run, detached, writing its own exit
status to a result file), then records the pid.  A daemon killed at any
moment therefore finds, for every busy row, either a result file, a live
process (by pid + start time, or by its result path in /proc), or proof that
the action never began, and carries on from there: nothing is planned twice
and nothing is left hanging.

The engine thread sleeps until the API wakes it, a child process exits (a
pidfd per planner, pegasus-run and local DAGMan), or a followed workflow is
due for its next look at dagman.out.
"""

import functools
import logging
import os
import queue
import selectors
import shlex
import threading
import time

from .. import loops
from . import dagstate, planout, policy, runner, store, transitions
from ..errors import EMError
from .model import timestamp
from .states import EnsembleState, WorkflowState as W

log = logging.getLogger(__name__)

PLAN_RESULT = ".plan.result"
RUN_RESULT = ".run.result"
REMOVE_RESULT = ".remove.result"
SUBMIT, FOLLOW, REMOVE = "submit", "follow", "remove"
FIRST_LOOK = 0.05       # seconds before the first look at a new DAGMan run
MIN_TICK_GAP = 0.01     # a burst of API wakes costs at most 100 ticks a second
LOG_TAIL = 65536
CHORE_WORKERS = 2       # threads running condor_hold / condor_release for the engine


class Settings:
    def __init__(self, interval=5.0, plan_timeout=None, pending_timeout=300.0,
                 liveness_every=None, env=None, max_planning_total=None,
                 max_running_total=None):
        self.interval = float(interval)          # longest wait between looks at a workflow
        self.plan_timeout = plan_timeout          # seconds, None = no limit
        self.pending_timeout = pending_timeout
        # How long dagman.out may stay quiet before we check that DAGMan still lives.
        self.liveness_every = liveness_every or max(1.0, min(10.0, 2 * self.interval))
        self.env = env
        # Across all ensembles (None: no cap), as MAX_PLANNING_TOTAL / MAX_RUNNING_TOTAL.
        self.limits = (max_planning_total, max_running_total)


class Tracked:
    """What the engine keeps in memory about one busy workflow (rebuilt after a restart)."""

    __slots__ = ("row", "fd", "fd_pid", "watch", "braindump", "kill", "timed_out",
                 "next_look", "delay", "last_state", "retry_remove_at")

    def __init__(self, row):
        self.row = row
        self.fd = self.fd_pid = self.watch = self.braindump = self.kill = None
        self.timed_out = False
        self.next_look = None   # monotonic time of the next look; None: wait for the pidfd
        self.delay = FIRST_LOOK
        self.last_state = None
        self.retry_remove_at = 0.0


class Manager:
    def __init__(self, db, ensembles_dir, settings=None, clock=time.time,
                 monotonic=time.monotonic, runner=runner):
        self.db = db
        self.ensembles_dir = ensembles_dir
        self.settings = settings or Settings()
        self.clock = clock
        self.monotonic = monotonic
        self.runner = runner              # starts, watches and stops processes (a fake in tests)
        self._turn_now = None             # the wall clock of a turn ticked with `now`
        self.tracked = {}
        self.notify_wake = lambda: None   # the notification sender, woken when a workflow ends
        self._next_deferred = None        # the earliest run-after time ahead (wall clock)
        self._wakeup = loops.WakePipe()
        self._thread = None
        self._stop = threading.Event()
        # condor_hold / condor_release run here, never on the engine thread: a slow
        # schedd must not stop every other ensemble.  `_holding`: workflow ids with a
        # command queued or running; `_hold_after`: when a failed one may be tried again.
        self._chores = queue.SimpleQueue()
        self._chore_threads = []
        self._holding = set()
        self._hold_after = {}

    # ---- the loop ----------------------------------------------------------

    def wake(self):
        """Called by the API after any change: look again soon (coalesced)."""
        self._wakeup.wake()

    def start(self):
        self._chore_threads = [loops.start("engine-chores", self._chore, None, self._stop, log)
                               for _ in range(CHORE_WORKERS)]
        self._thread = loops.start("engine", self._timed_tick, self._sleep, self._stop, log)

    @property
    def running(self):
        return self._thread is not None and self._thread.is_alive()

    def stop(self, timeout=10):
        self._stop.set()
        self.wake()
        for _ in self._chore_threads:
            self._chores.put(None)  # a chore still running (a hung condor_hold) is left
        if self._thread:
            self._thread.join(timeout)
        for t in self.tracked.values():
            _close(t)
        self._wakeup.close()

    def _timed_tick(self):
        """One turn of the supervised loop; -> (when it began, seconds until due)."""
        started = self.monotonic()
        return started, self.tick()

    def _sleep(self, turn):
        started, wait = turn
        if self._wait(wait) == "api":
            # Only the API woke us: let a burst of submissions coalesce into one tick.
            loops.coalesce(self._stop, started, MIN_TICK_GAP, self.monotonic)

    def _wait(self, timeout):
        """Sleep until woken; -> "api", "process" (a child exited) or None (time is up)."""
        cause = None
        sel = selectors.PollSelector()  # unlike epoll, needs no descriptor of its own
        try:
            sel.register(self._wakeup, selectors.EVENT_READ, None)
            for t in self.tracked.values():
                if t.fd is not None:
                    sel.register(t.fd, selectors.EVENT_READ, t)
            for key, _ in sel.select(max(0.0, timeout)):
                if key.data is None:
                    self._wakeup.take()
                    cause = cause or "api"
                else:  # the process exited: look now; the fd has served its purpose
                    key.data.next_look = 0.0
                    os.close(key.data.fd)
                    key.data.fd = None
                    cause = "process"
        finally:
            sel.close()
        return cause

    # ---- one turn ----------------------------------------------------------

    def tick(self, now=None):
        """Handle every busy workflow, then fill free slots; -> seconds until due again.
        `now`, if given, is the wall clock of the whole turn (else read at each step)."""
        self._turn_now = now
        try:
            return self._turn()
        finally:
            self._turn_now = None

    def _turn(self):
        self.runner.reap()
        with self.db.read() as conn:
            rows = {r.id: r for r in store.busy_rows(conn)}
        for wf_id in list(self.tracked):
            if wf_id not in rows:
                _close(self.tracked.pop(wf_id))
                self._hold_after.pop(wf_id, None)
        for row in rows.values():
            t = self.tracked.setdefault(row.id, Tracked(row))
            t.row = row
            try:
                self._handle(t)
            except Exception:
                log.exception("engine: error while handling %s.%s", row.ensemble, row.name)
        self._release_deferred()
        self._start_new()
        return self._next_due()

    def _release_deferred(self):
        """Workflows whose run-after time has come become eligible (one index step when
        nothing is due); remember the next such time to wake up then."""
        now = self.now()
        with self.db.read() as conn:
            due = store.next_deferred(conn)
        if due is not None and due <= now:
            with self.db.write() as conn:
                store.release_deferred(conn, now)
                due = store.next_deferred(conn)
        self._next_deferred = due

    def _handle(self, t):
        if t.row.state == W.PLANNING:
            self._planning(t)
        elif t.row.run_phase == SUBMIT or t.row.run_phase is None:
            self._submitting(t)
        else:
            self._following(t)

    def _next_due(self):
        now = self.monotonic()
        due = [t.next_look for t in self.tracked.values() if t.next_look is not None]
        wait = min(due) - now if due else self.settings.interval
        if self._next_deferred is not None:
            wait = min(wait, self._next_deferred - self._wall())
        return max(0.0, min(wait, self.settings.interval))

    # ---- planning ----------------------------------------------------------

    def _planning(self, t):
        row = t.row
        result_path = self._path(row, PLAN_RESULT)
        rc = self.runner.read_result(result_path)
        if rc is not None:
            return self._planned(t, rc)
        if row.plan_pid is None and not self._adopt(t, result_path, "plan"):
            if self.runner.read_result(result_path) is None:
                # The daemon stopped between claiming and spawning: nothing ran yet.
                return self._move(row, W.READY, "planner was never started; planning again")
            return None
        row = t.row
        if self.runner.is_alive(row.plan_pid, row.plan_start):
            return self._watch_planner(t)
        if self.runner.read_result(result_path) is None:
            if row.abort_requested:
                return self._move(row, W.ABORTED, "aborted while planning")
            return self._move(row, W.PLAN_FAILED, "planner (pid %d) vanished without an exit "
                              "status" % row.plan_pid)
        return None  # the result appeared meanwhile: next tick

    def _watch_planner(self, t):
        row = t.row
        self._ensure_fd(t, row.plan_pid, row.plan_start)
        limit = self.settings.plan_timeout
        if t.kill is None and (row.abort_requested or
                               (limit and self._wall() - (row.plan_began or 0) > limit)):
            t.timed_out = not row.abort_requested
            log.info("%s.%s: stopping planner pid %d (%s)", row.ensemble, row.name,
                     row.plan_pid, "abort" if row.abort_requested else "timeout")
            t.kill = self.runner.kill_group(row.plan_pid, row.plan_start)
        if t.kill is not None:
            t.kill.poll()
            t.next_look = self.monotonic() + 0.5

    def _planned(self, t, rc):
        row = t.row
        if row.abort_requested:
            return self._move(row, W.ABORTED, "aborted while planning")
        if t.timed_out:
            return self._move(row, W.PLAN_FAILED, "planner timed out after %d s"
                              % self.settings.plan_timeout)
        if rc != 0:
            return self._move(row, W.PLAN_FAILED, "planner exited with code %d%s"
                              % (rc, _last_line(self._log_since(row, row.plan_offset))))
        try:
            submitdir, braindump = planout.find_submit_dir(
                self._log_since(row, row.plan_offset), row.basedir)
        except EMError as e:
            return self._move(row, W.PLAN_FAILED, e.message)
        return self._move(row, W.QUEUED, "planned into %s" % submitdir, submitdir=submitdir,
                          wf_uuid=braindump["wf_uuid"], plan_pid=None, plan_start=None)

    # ---- pegasus-run -------------------------------------------------------

    def _submitting(self, t):
        row = t.row
        result_path = self._path(row, RUN_RESULT)
        rc = self.runner.read_result(result_path)
        if rc is None and row.run_pid is None and not self._adopt(t, result_path, "run"):
            if self.runner.read_result(result_path) is None:
                return self._spawn_run(t)  # intent recorded, but pegasus-run never started
            return None
        if rc is None:
            row = t.row
            if self.runner.is_alive(row.run_pid, row.run_start):
                return self._ensure_fd(t, row.run_pid, row.run_start)
            if self.runner.read_result(result_path) is None:
                return self._move(row, W.RUN_FAILED, "pegasus-run (pid %d) vanished without an "
                                  "exit status" % row.run_pid)
            return None
        return self._ran(t, rc)

    def _ran(self, t, rc):
        row = t.row
        _close(t)
        braindump = self._braindump(t)
        if braindump is None:
            return None
        tail = self._log_tail(row)
        if rc != 0 and "already running" not in tail:
            return self._move(row, W.RUN_FAILED, "pegasus-run exited with code %d%s"
                              % (rc, _last_line(tail)))
        if not dagstate.is_followed(braindump):
            return self._move(row, W.SUCCESSFUL, "pegasus-run of the %s workflow succeeded"
                              % braindump.get("type"))
        self._record(row, run_phase=FOLLOW, run_pid=None, run_start=None)
        t.next_look = 0.0
        return None

    def _spawn_run(self, t):
        row = t.row
        error = self._spawn(t, "pegasus-run %s" % shlex.quote(row.submitdir), row.submitdir,
                            RUN_RESULT, "run")
        if error is not None:
            self._move(row, W.RUN_FAILED, error.message)

    # ---- following DAGMan --------------------------------------------------

    def _following(self, t):
        row = t.row
        if t.watch is None and not self._make_watch(t):
            return None
        if row.run_phase == REMOVE:
            self._removing(t)
        elif row.abort_requested and self.monotonic() >= t.retry_remove_at:
            self._spawn_remove(t)
        self._hold_or_release(t)
        if t.next_look is not None and self.monotonic() < t.next_look:
            return None
        status = t.watch.poll(self._wall())
        if status.state in dagstate.TERMINAL:
            return self._finished(t, status)
        self._after_look(t, status)
        return None

    def _make_watch(self, t):
        row = t.row
        braindump = self._braindump(t)
        if braindump is None:
            return False
        try:
            t.watch = dagstate.Watch(
                row.submitdir, braindump,
                dagstate.Baseline(row.baseline_blocks or 0, row.baseline_id),
                liveness_every=self.settings.liveness_every,
                pending_timeout=self.settings.pending_timeout, since=row.run_began)
        except ValueError as e:
            self._move(row, W.FAILED, str(e))
            return False
        return True

    def _after_look(self, t, status):
        if status.state != t.last_state:
            t.delay = FIRST_LOOK
            t.last_state = status.state
        else:
            t.delay = min(t.delay * 2, self.settings.interval)
        t.next_look = self.monotonic() + t.delay
        pid = status.dagman_pid
        if pid and t.fd_pid != pid and t.watch.local:
            start = self.runner.process_start_time(pid)
            if start is not None:
                self._ensure_fd(t, pid, start)

    def _finished(self, t, status):
        row = t.row
        _close(t)
        if status.state == dagstate.SUCCEEDED:
            return self._move(row, W.SUCCESSFUL, "DAGMan finished: %s" % status.reason)
        if row.abort_requested:
            return self._move(row, W.ABORTED, "aborted: %s" % status.reason)
        return self._move(row, W.FAILED, status.reason)

    def _spawn_remove(self, t):
        row = t.row
        error = self._spawn(t, "pegasus-remove %s" % shlex.quote(row.submitdir), row.submitdir,
                            REMOVE_RESULT, "run", run_phase=REMOVE)
        if error is not None:
            log.warning("%s.%s: %s", row.ensemble, row.name, error.message)
            t.retry_remove_at = self.monotonic() + self.settings.interval

    def _removing(self, t):
        row = t.row
        rc = self.runner.read_result(self._path(row, REMOVE_RESULT))
        alive = row.run_pid is not None and self.runner.is_alive(row.run_pid, row.run_start)
        if rc is None and alive:
            return
        if rc not in (0, None):
            log.warning("%s.%s: pegasus-remove exited with code %d; trying again later",
                        row.ensemble, row.name, rc)
        # Removal was asked for; DAGMan's own exit, seen by the watch, decides the end.
        t.retry_remove_at = self.monotonic() + self.settings.interval
        self._record(row, run_phase=FOLLOW, run_pid=None, run_start=None)
        t.next_look = 0.0

    def _hold_or_release(self, t):
        """HELD ensembles hold their running DAGMan jobs; activating releases them."""
        row = t.row
        want = row.ensemble_state == EnsembleState.HELD
        if want == bool(row.dagman_held) or row.abort_requested or row.id in self._holding \
                or self.monotonic() < self._hold_after.get(row.id, 0.0):
            return
        current = dagstate.baseline(row.submitdir, t.watch.braindump)
        if current.blocks <= (row.baseline_blocks or 0):
            return  # DAGMan has not started yet; look again later
        self._holding.add(row.id)
        chore = functools.partial(self._hold_job, row, want, current.last_dagman_id)
        if self._chore_threads:
            self._chores.put(chore)
        else:  # the engine is ticked by hand (tests): no chore threads
            chore()

    def _hold_job(self, row, want, dagman_id):
        """On a chore thread: run the command, record the outcome, wake the engine."""
        verb = "condor_hold" if want else "condor_release"
        try:
            result = self.runner.run([verb, dagman_id], log_path=self._path(row, ".log"),
                                env=self.settings.env, timeout=60)
            if result.rc == 0 or not want:
                self._hold_after.pop(row.id, None)
                with self.db.write() as conn:
                    store.update_engine(conn, row.id, dagman_held=1 if want else 0)
                    state = store.current_workflow_state(conn, row.id) or row.state
                    store.add_event(conn, self.now(), row.ensemble_id, state, state,
                                    "%s %s" % (verb, dagman_id), workflow_id=row.id)
            else:
                self._hold_after[row.id] = self.monotonic() + self.settings.interval
                log.warning("%s.%s: %s %s failed: %s", row.ensemble, row.name, verb,
                            dagman_id, result.output.strip()[-200:])
        finally:
            self._holding.discard(row.id)
            self.wake()

    def _chore(self):
        """One turn of a chore thread: the next queued job (None: stop)."""
        job = self._chores.get()
        if job is not None:
            job()

    # ---- starting new work -------------------------------------------------

    def _start_new(self):
        runs, plans = [], []
        with self.db.read() as conn:
            loads = store.ensemble_loads(conn)
            for a in policy.select(loads):
                run = a.kind == policy.RUN
                queue = store.next_in_queue(conn, a.ensemble_id, W.QUEUED if run else W.READY,
                                            a.count)
                (runs if run else plans).extend((priority, wf_id) for wf_id, priority in queue)
        plan_budget, run_budget = policy.global_budgets(loads, self.settings.limits)
        for claim, chosen in ((self._claim_run, policy.within(runs, run_budget)),
                              (self._claim_plan, policy.within(plans, plan_budget))):
            for _priority, wf_id in chosen:
                try:
                    claim(wf_id)
                except Exception:
                    log.exception("engine: cannot start workflow %d", wf_id)

    def _claim(self, wf_id, old, new, reason, **fields):
        """Compare-and-set into a busy state, only while the ensemble is ACTIVE."""
        with self.db.write() as conn:
            row = store.engine_row(conn, wf_id)
            if row is None or row.state != old or row.ensemble_state != EnsembleState.ACTIVE:
                return None
            if new == W.PLANNING and (row.deps_pending or row.deferred):
                return None  # waits for a dependency or its run-after time
            if not transitions.change_workflow_state(conn, row, new, self.now(), reason, **fields):
                return None
            return store.engine_row(conn, wf_id)

    def _claim_plan(self, wf_id):
        with self.db.read() as conn:
            peek = store.engine_row(conn, wf_id)
        os.makedirs(os.path.join(self.ensembles_dir, peek.ensemble), mode=0o700, exist_ok=True)
        _unlink(self._path(peek, PLAN_RESULT))  # before the claim: never read an old attempt's
        offset = _size(self._path(peek, ".log"))
        row = self._claim(wf_id, W.READY, W.PLANNING, "planning", plan_pid=None,
                          plan_start=None, plan_offset=offset, plan_began=self.now())
        if row is None:
            return
        t = self.tracked[row.id] = Tracked(row)
        error = self._spawn(t, row.plan_command, row.basedir, PLAN_RESULT, "plan")
        if error is not None:
            self._move(row, W.PLAN_FAILED, error.message)

    def _claim_run(self, wf_id):
        with self.db.read() as conn:
            peek = store.engine_row(conn, wf_id)
        try:
            braindump = planout.read_braindump(peek.submitdir)
        except EMError as e:
            self._move(peek, W.RUN_FAILED, e.message)
            return
        base = dagstate.baseline(peek.submitdir, braindump) if dagstate.is_followed(
            braindump) else dagstate.Baseline(0, None)
        _unlink(self._path(peek, RUN_RESULT))  # before the claim: never read an old run's
        row = self._claim(wf_id, W.QUEUED, W.RUNNING, "starting pegasus-run", run_phase=SUBMIT,
                          run_pid=None, run_start=None, run_began=self.now(),
                          baseline_blocks=base.blocks, baseline_id=base.last_dagman_id,
                          dagman_held=0)
        if row is None:
            return
        t = self.tracked[row.id] = Tracked(row)
        t.braindump = braindump
        self._spawn_run(t)

    # ---- helpers -----------------------------------------------------------

    def _wall(self):
        return self.clock() if self._turn_now is None else self._turn_now

    def now(self):
        return timestamp(self._wall())

    def _path(self, row, suffix):
        return os.path.join(self.ensembles_dir, row.ensemble, row.name + suffix)

    def _move(self, row, new, reason, **fields):
        """State change from the engine; the row may have moved on (then nothing)."""
        with self.db.write() as conn:
            moved = transitions.change_workflow_state(conn, row, new, self.now(), reason, **fields)
        if moved:
            log.info("%s.%s: %s -> %s: %s", row.ensemble, row.name, row.state, new, reason)
            if new not in (W.PLANNING, W.RUNNING):
                _close(self.tracked.pop(row.id, None))
            if new in W.TERMINAL:
                self.notify_wake()
        return moved

    def _record(self, row, **fields):
        with self.db.write() as conn:
            store.update_engine(conn, row.id, **fields)
            fresh = store.engine_row(conn, row.id)
        t = self.tracked.get(row.id)
        if t is not None and fresh is not None:
            t.row = fresh

    def _adopt(self, t, result_path, what):
        """After a crash: find the process we may have started before recording its pid."""
        found = self.runner.find_by_result(result_path)
        if found is None:
            return False
        self._record(t.row, **_pid_fields(what, found))
        return True

    def _spawn(self, t, command, cwd, result, what, **fields):
        """Start `command` detached, then record its pid as the `what` ("plan" or "run")
        process, with `fields`; -> None, or the EMError if it could not start."""
        row = t.row
        try:
            spawned = self.runner.spawn(command, cwd, self._path(row, ".log"),
                                        self._path(row, result), self.settings.env)
        except EMError as e:
            return e
        self._record(row, **_pid_fields(what, spawned), **fields)
        self._ensure_fd(t, spawned.pid, spawned.start_time)
        return None

    def _ensure_fd(self, t, pid, start):
        if t.fd_pid == pid:
            return
        if t.fd is not None:
            os.close(t.fd)
        t.fd = self.runner.pidfd(pid, start)
        t.fd_pid = pid if t.fd is not None else None
        if t.fd is None:  # no pidfd: poll instead
            t.next_look = self.monotonic() + min(t.delay, self.settings.interval)
            t.delay = min(t.delay * 2, self.settings.interval)

    def _braindump(self, t):
        if t.braindump is None:
            try:
                t.braindump = planout.read_braindump(t.row.submitdir)
            except EMError as e:
                self._move(t.row, W.FAILED, e.message)
                return None
        return t.braindump

    def _log_since(self, row, offset):
        try:
            with open(self._path(row, ".log"), "rb") as f:
                f.seek(offset or 0)
                return f.read().decode("utf-8", "replace")
        except OSError:
            return ""

    def _log_tail(self, row):
        path = self._path(row, ".log")
        return self._log_since(row, max(0, _size(path) - LOG_TAIL))


def _pid_fields(what, spawned):
    return {what + "_pid": spawned.pid, what + "_start": spawned.start_time}


def _unlink(path):
    try:
        os.unlink(path)
    except FileNotFoundError:
        pass


def _size(path):
    try:
        return os.path.getsize(path)
    except OSError:
        return 0


def _last_line(text):
    lines = [line.strip() for line in text.splitlines() if line.strip()]
    return ": %s" % lines[-1][-300:] if lines else ""


def _close(t):
    if t is not None and t.fd is not None:
        os.close(t.fd)
        t.fd = t.fd_pid = None
