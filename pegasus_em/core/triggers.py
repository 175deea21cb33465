"""Triggers: submit workflows on a fixed schedule, or for the files that arrived.

One scheduler thread serves every trigger: `tick(now)` fires the triggers that
are due and returns the seconds until the next one is; the thread sleeps that
long or until the API wakes it.  A firing submits through the API's own use
case (`Ops.insert_workflow`), in one transaction with the trigger's schedule,
counters and, for file triggers, the ledger.

Schedule: firings at created + k*interval (k = 0, 1, ...), so the time a firing
takes never shifts the next one.  Firings missed while the daemon was down
coalesce into one; past its deadline a trigger becomes TIMED_OUT.  A failed
firing is recorded (failures in a row, first and last error and their times)
and tried again at the next slot: a mount that is gone for an hour costs an
hour, not the trigger.  The first failure of a run and the recovery each get
an event and a notification.  Giving up (FAILED) is opt-in:
TRIGGER_MAX_FAILURES in a row, or TRIGGER_FAILURE_TIMEOUT seconds of failing.

File-pattern triggers hand every file to exactly one workflow per trigger
through a ledger (table trigger_files), each step idempotent:
  1. scan   glob the patterns; skip files in the ledger, files in processed/
            folders and files still changing;
  2. claim  record each file (path, dev, ino, size, mtime) and its name in
            processed/ beside it;
  3. link   hard-link the file to that name; the original stays where it is;
  4. submit one transaction inserts the workflow(s), whose plan command names
            the processed paths after --inputs, and marks the files submitted;
  5. finish remove the original once every live trigger whose patterns match
            it has it in its ledger; the file is then done.
So a file exists at its processed path before any workflow names it, and
(linked) stays where it arrived until its workflow exists.  A restarted daemon
releases claims (their workflow was never committed: it is inserted in the
same transaction that marks them submitted) and finishes submitted files.  Where a
hard link is impossible (another user's file under protected_hardlinks, a
filesystem without links) step 3 moves the file instead, after marking its
claim MOVED: a released MOVED claim puts the file back where it arrived.  A
file that can be neither linked nor moved (another user's, in a sticky
directory) is released and waits, named in the trigger's last_error.
"""

import errno
import fnmatch
import glob
import itertools
import logging
import os
import pwd
import re
import stat
import time

from .. import loops
from . import store
from ..errors import EMError
from .model import timestamp
from .ops import MAX_PLAN_COMMAND, script_problem
from .states import FileState, TriggerState, TriggerType

log = logging.getLogger(__name__)

PROCESSED = "processed"
SETTLE = 1.0          # seconds a file seen for the first time must have been left alone
MAX_WAIT = 60.0       # longest sleep; bounds the effect of a wall-clock jump
MIN_TICK_GAP = 0.01   # a burst of API wakes costs at most 100 ticks a second
SWEEP_EVERY = 60.0    # look again at files waiting for another trigger
ARG_STRLEN = 131072   # Linux's limit for one execve argument (the whole `sh -c` command)
MARGIN = 4096
_NO_LINK = {errno.EPERM, errno.EXDEV, errno.ENOTSUP, errno.EOPNOTSUPP, errno.EMLINK}
_MAGIC = re.compile(r"[*?[]")
_SH_SPECIAL = re.compile(r'[\\"$`]')
_TMP = ".pegasus-em-%d"
LINKED, MOVED = 1, 2  # trigger_files.linked: a hard link, or the file itself (0: renamed at
                      # step 5, by daemons before MOVED existed)
WAITING = "left waiting"  # starts the last_error naming files neither linkable nor movable


class FiringError(EMError):
    """A firing that cannot submit: recorded as a failure, tried again at the next slot."""


class _Gone(Exception):
    """The trigger was stopped or purged while it fired: submit nothing."""


# ---- pure rules -----------------------------------------------------------

def next_slot(created, interval, now):
    """The catch-up rule: the first firing time created + k*interval after `now`.

    However many slots a stopped daemon or a long firing missed, the trigger
    fires once and then keeps to its original grid: no drift, no burst."""
    k = max(1, int((now - created) // interval) + 1)
    slot = timestamp(created + k * interval)
    return slot if slot > now else timestamp(created + (k + 1) * interval)


def quote(words):
    """5.x's plan_command: each word in double quotes, separated by spaces.  \\ " $ `
    are escaped, so /bin/sh hands odd file names to the script unchanged."""
    return '"' + '" "'.join(_SH_SPECIAL.sub(r"\\\g<0>", w) for w in words) + '"'


def command_limit(env):
    """Bytes one plan command may take: the store's limit, one execve argument (the
    engine runs it as `sh -c COMMAND`), and the script's argv plus the environment
    within SC_ARG_MAX; less a margin."""
    env_bytes = sum(len(os.fsencode(k)) + len(os.fsencode(v)) + 2 + 8 for k, v in env.items())
    try:
        arg_max = os.sysconf("SC_ARG_MAX")
    except (ValueError, OSError):
        arg_max = ARG_STRLEN
    return min(MAX_PLAN_COMMAND, ARG_STRLEN, arg_max - env_bytes) - MARGIN


def _cost(word):
    """Bytes a word adds to the quoted command, or to argv (NUL and pointer): the larger."""
    raw = len(word.encode("utf-8"))
    quoted = len(_SH_SPECIAL.sub(r"\\\g<0>", word).encode("utf-8")) + 3
    return max(quoted, raw + 9)


def split_inputs(words, items, limit, key=lambda item: item):
    """`items` in groups whose command (words, --inputs, the group's keys) fits in
    `limit` bytes; every item in exactly one group, in order."""
    base = sum(_cost(w) for w in words) + _cost("--inputs")
    groups, group, size = [], [], base
    for item in items:
        cost = _cost(key(item))
        if group and size + cost > limit:
            groups.append(group)
            group, size = [], base
        group.append(item)
        size += cost
    if group:
        groups.append(group)
    return groups


class Pattern:
    """An absolute glob pattern, matched as glob.glob matches, except that a wildcard
    never matches a folder named processed (where matched files are moved)."""

    def __init__(self, text):
        self.text = re.sub("/+", "/", text)
        self.parts = self.text.split("/")
        self.regex = [re.compile(fnmatch.translate(p)) if _MAGIC.search(p) else None
                      for p in self.parts]
        magic = [i for i, rx in enumerate(self.regex) if rx is not None]
        first = magic[0] if magic else len(self.parts) - 1
        self.key = "/".join(self.parts[:first])  # the literal folder the wildcards start in

    def excluded(self, path):
        """True for a glob result under a processed/ folder matched by a wildcard."""
        parts = path.split("/")
        return any(rx is not None and name == PROCESSED
                   for rx, name in zip(self.regex[:-1], parts[:-1]))

    def matches(self, path):
        parts = path.split("/")
        if len(parts) != len(self.parts):
            return False
        for part, rx, name in zip(self.parts, self.regex, parts):
            if rx is None:
                if part != name:
                    return False
            elif (name.startswith(".") and not part.startswith(".")) or not rx.match(name):
                return False
        return not self.excluded(path)


class Matcher:
    """Which live file-pattern triggers match a path, looked up by literal folder."""

    def __init__(self, triggers):
        self.by_key = {}
        for trigger_id, patterns in triggers:
            for text in patterns:
                p = Pattern(text)
                self.by_key.setdefault(p.key, []).append((trigger_id, p))

    def triggers_for(self, path):
        parts = path.split("/")
        found = set()
        for j in range(1, len(parts)):
            for trigger_id, p in self.by_key.get("/".join(parts[:j]), ()):
                if trigger_id not in found and p.matches(path):
                    found.add(trigger_id)
        return found


def scan(patterns):
    """Regular files matching any pattern, outside processed/ folders -> {path: lstat}."""
    found = {}
    for text in patterns:
        p = Pattern(text)
        for path in glob.glob(p.text):
            if path in found or p.excluded(path) or not _storable(path):
                continue
            st = _lstat(path)
            if st is not None and stat.S_ISREG(st.st_mode):
                found[path] = st
    return found


_UNSTORABLE = set()  # names already warned about


def _storable(path):
    """The ledger stores names as text: a name that is not UTF-8 is left alone."""
    try:
        path.encode("utf-8")
    except UnicodeEncodeError:
        if path not in _UNSTORABLE and len(_UNSTORABLE) < 10000:
            _UNSTORABLE.add(path)
            log.warning("ignoring %r: its name is not valid UTF-8", path)
        return False
    return True


def _lstat(path):
    try:
        return os.lstat(path)
    except OSError:
        return None


def _same(st, f):
    return st is not None and (st.st_dev, st.st_ino) == (f.dev, f.ino)


class Claim:
    """A file this firing hands out (the fields the ledger keeps of it)."""

    __slots__ = ("id", "trigger_id", "path", "dev", "ino", "size", "mtime_ns", "dest",
                 "linked", "dropped", "stuck")

    def __init__(self, trigger_id, path, st, dest):
        self.id = None
        self.trigger_id = trigger_id
        self.path = path
        self.dev, self.ino, self.size, self.mtime_ns = (st.st_dev, st.st_ino, st.st_size,
                                                         st.st_mtime_ns)
        self.dest = dest
        self.linked = 0
        self.dropped = False
        self.stuck = None  # why it can be neither linked nor moved

    def row(self):
        return (self.path, self.dev, self.ino, self.size, self.mtime_ns, self.dest)


def _free_dest(f, reserved):
    """processed/<name> beside the file, or <root>_1<ext>, <root>_2<ext>, ... when that
    name holds another file or is promised to one; a link of this very file is reused."""
    folder = os.path.join(os.path.dirname(f.path), PROCESSED)
    name = os.path.basename(f.path)
    root, ext = os.path.splitext(name)
    for n in itertools.count():
        dest = os.path.join(folder, name if n == 0 else "%s_%d%s" % (root, n, ext))
        if dest in reserved:
            continue
        other = _lstat(dest)
        if other is None or _same(other, f):
            return dest
    return None  # not reached


def _try_link(c):
    """Link the file to c.dest; -> None, or the errno (EEXIST: another file is there)."""
    try:
        os.link(c.path, c.dest)
    except FileExistsError:
        return None if _same(_lstat(c.dest), c) else errno.EEXIST
    except OSError as e:
        return e.errno
    return None


def _restore(tmp, path):
    """Put back a file that took `path` just as we removed the original from there."""
    for n in itertools.count():
        target = path if n == 0 else "%s.%d" % (path, n)
        if os.path.lexists(target):
            continue
        os.rename(tmp, target)
        return


# ---- the scheduler --------------------------------------------------------

class Triggers(loops.Loop):
    def __init__(self, ops, engine_wake=lambda: None, max_failures=None, env=None,
                 clock=time.time, failure_timeout=None):
        self.ops = ops
        self.db = ops.db
        self.engine_wake = engine_wake
        # Giving up is opt-in: after this many failed firings in a row, or this many
        # seconds of failing; None: a failing trigger retries for ever.
        self.max_failures = None if max_failures is None else max(1, int(max_failures))
        self.failure_timeout = failure_timeout
        self.limit = command_limit(os.environ if env is None else env)
        self.clock = clock
        self.notify_wake = lambda: None  # the notification sender, woken when a firing fails
        self._seen = {}          # trigger id -> {path: identity} of files left to settle
        self._waiting = {}       # trigger id -> {path: why} of files neither linked nor moved
        self._live_key = None    # which file triggers were live at the last sweep
        self._look_again = True  # woken, or a state we changed: the live set may differ
        self._next_sweep = float("inf")
        super().__init__("triggers", log, MIN_TICK_GAP)

    # ---- the thread --------------------------------------------------------

    def wake(self):
        """Called by the API after any change: look at the triggers again now."""
        self._look_again = True
        super().wake()

    # ---- one turn ----------------------------------------------------------

    def tick(self, now=None):
        """Fire what is due at `now`; -> seconds until something is due again."""
        now = self.clock() if now is None else now
        with self.db.read() as conn:
            due = store.due_triggers(conn, now)
        stuck = False
        for t in due:
            stuck |= not self._handle(t, now)
        if self._live_set_changed() or now >= self._next_sweep:
            self._sweep(now)
        wait = self._wait(now)
        return max(wait, 1.0) if stuck else wait

    def _live_set_changed(self):
        """Did a file-pattern trigger start or stop being live (files may wait for it)?"""
        if not self._look_again:
            return False
        self._look_again = False
        with self.db.read() as conn:
            key = store.live_file_triggers_key(conn)
        changed, self._live_key = key != self._live_key, key
        return changed

    def recover(self):
        """On start, before the engine runs: settle every file a crash left in flight."""
        self._sweep(self.clock(), recovering=True)

    def _wait(self, now):
        with self.db.read() as conn:
            due = store.next_trigger_time(conn)
        wait = MAX_WAIT if due is None else due - now
        return max(0.0, min(wait, MAX_WAIT, self._next_sweep - now))

    def _handle(self, t, now):
        """One due trigger; False when even its failure could not be recorded."""
        try:
            if t.deadline is not None and now >= t.deadline:
                self._time_out(t, now)
            elif t.next_fire is not None and t.next_fire <= now:
                self._fire(t, now)
            return True
        except Exception as e:
            log.exception("trigger %s.%s: firing failed", t.ensemble, t.name)
            try:
                self._failed(t, now, next_slot(t.created, t.interval, now),
                             "internal error: %s" % e)
                return True
            except Exception:
                log.exception("trigger %s.%s: cannot record the failure", t.ensemble, t.name)
                return False

    def _fire(self, t, now):
        next_fire = next_slot(t.created, t.interval, now)
        with self.db.write() as conn:
            store.observe(conn, "trigger_lag", now - t.next_fire)
        try:
            problem = script_problem(t.script)
            if problem:
                raise FiringError(problem)
            if t.type == TriggerType.FILE_PATTERN:
                self._fire_files(t, now, next_fire)
            else:
                self._submit(t, now, next_fire, [(quote(self._words(t)), ())])
        except _Gone:
            log.info("trigger %s.%s stopped while firing", t.ensemble, t.name)
        except EMError as e:
            self._failed(t, now, next_fire, e.message)

    @staticmethod
    def _words(t):
        return [t.script] + list(t.args)

    # ---- recording ---------------------------------------------------------

    @staticmethod
    def _live(conn, trigger_id):
        fresh = store.get_trigger_by_id(conn, trigger_id)
        if fresh is None or fresh.state not in TriggerState.LIVE:
            raise _Gone()
        return fresh

    @staticmethod
    def _started(conn, t, now):
        """READY -> RUNNING at the first firing."""
        if t.state != TriggerState.READY:
            return t
        store.change_trigger_state(conn, t, TriggerState.RUNNING, now, "first firing")
        return t._replace(state=TriggerState.RUNNING)

    def _submit(self, t, now, next_fire, batches):
        """Insert one workflow per (command, files) batch and record the firing, at once."""
        with self.db.write() as conn:
            fresh = self._started(conn, self._live(conn, t.id), now)
            names = self._names(conn, fresh, now, len(batches))
            basedir = fresh.basedir or os.path.dirname(fresh.script)
            items = []
            for name, (command, files) in zip(names, batches):
                self.ops.insert_workflow(conn, fresh.ensemble, name, basedir, command,
                                         trigger_id=fresh.id,
                                         reason="submitted by trigger %s" % fresh.name)
                items.extend((name, f.dest, f.linked, f.id) for f in files)
            store.submit_files(conn, items, self.ops.now())
            store.update_trigger_run(conn, fresh.id, next_fire=next_fire,
                                     fire_count=fresh.fire_count + 1)
            recovered = self._recovered(conn, fresh, now)
        self._after_recovery(t, recovered)
        self.engine_wake()
        log.info("trigger %s.%s submitted %s%s", t.ensemble, t.name, ", ".join(names),
                 " (%d files)" % len(items) if items else "")
        return names

    @staticmethod
    def _names(conn, t, now, count):
        """<trigger>_<unix seconds>, then _1, _2, ... after it for names already taken
        (two firings in one second, or one firing's several workflows)."""
        stamp = "_%d" % int(now)
        names = []
        for n in itertools.count():
            if len(names) == count:
                return names
            suffix = stamp + ("_%d" % n if n else "")
            name = t.name[:99 - len(suffix)] + suffix
            if name not in names and not store.workflow_exists(conn, t.ensemble_id, name):
                names.append(name)
        return names  # not reached

    def _advance(self, t, now, next_fire):
        """A firing that found nothing to submit: only the schedule moves on."""
        with self.db.write() as conn:
            try:
                fresh = self._started(conn, self._live(conn, t.id), now)
            except _Gone:
                return
            store.update_trigger_run(conn, fresh.id, next_fire=next_fire)
            recovered = self._recovered(conn, fresh, now)
        self._after_recovery(t, recovered)

    @staticmethod
    def _recovered(conn, t, now):
        """A firing that worked ends a run of failures: counters cleared, an event and a
        trigger.recovered notification; -> the failures it ended (0: none)."""
        if not t.failures:
            return 0
        store.update_trigger_run(conn, t.id, failures=0, first_error=None, first_failure=None)
        why = "recovered after %d failed firings in a row over %d s" % (
            t.failures, now - (t.first_failure or now))
        store.add_event(conn, now, t.ensemble_id, t.state, t.state, why, trigger_id=t.id)
        store.enqueue(conn, "trigger.recovered", now, ensemble=t.ensemble, trigger=t.name,
                      failures=t.failures, first_failure=t.first_failure,
                      last_error=t.last_error, state=t.state)
        return t.failures

    def _after_recovery(self, t, failures):
        if failures:
            self.notify_wake()
            log.info("trigger %s.%s works again after %d failed firings", t.ensemble, t.name,
                     failures)

    def _failed(self, t, now, next_fire, message):
        """Record a failed firing; the schedule goes on."""
        with self.db.write() as conn:
            try:
                fresh = self._started(conn, self._live(conn, t.id), now)
            except _Gone:
                return
            failures, first = self._count_failure(conn, fresh, now, next_fire, message)
            gives_up = self._gives_up(failures, now - first)
            self._report_failure(conn, fresh, now, message, failures, first, gives_up)
        self._after_failure(t, failures, message, gives_up)

    @staticmethod
    def _count_failure(conn, t, now, next_fire, message):
        """-> (failed firings in a row, when the first of them was)."""
        failures = t.failures + 1
        first = t.first_failure if t.failures and t.first_failure else now
        first_error = t.first_error if failures > 1 and t.first_error else message
        store.update_trigger_run(conn, t.id, next_fire=next_fire, failures=failures,
                                 last_error=message, last_failure=now, first_failure=first,
                                 first_error=first_error)
        return failures, first

    def _report_failure(self, conn, t, now, message, failures, first, gives_up):
        """An event and a trigger.failed notification at the first failure of a run,
        and when the trigger gives up (FAILED); the ones between only count."""
        if failures == 1:
            store.add_event(conn, now, t.ensemble_id, t.state, t.state,
                            "firing failed: %s" % message, trigger_id=t.id)
        if gives_up:
            store.change_trigger_state(conn, t, TriggerState.FAILED, now,
                                       "%s; the last: %s" % (gives_up, message))
            self._look_again = True
        if failures == 1 or gives_up:
            store.enqueue(conn, "trigger.failed", now, ensemble=t.ensemble, trigger=t.name,
                          failures=failures, error=message, first_failure=first,
                          state=TriggerState.FAILED if gives_up else t.state)

    def _gives_up(self, failures, seconds):
        """Why a failing trigger becomes FAILED now, or None: it goes on trying."""
        if self.max_failures is not None and failures >= self.max_failures:
            return "%d failed firings in a row" % failures
        if self.failure_timeout is not None and seconds >= self.failure_timeout:
            return "failing for %d s (%d failed firings in a row)" % (seconds, failures)
        return None

    def _after_failure(self, t, failures, message, gives_up):
        self.notify_wake()
        if gives_up:
            self._seen.pop(t.id, None)
        if gives_up or failures & (failures - 1) == 0:  # 1, 2, 4, 8, ...: a bounded log
            log.warning("trigger %s.%s: firing failed (%d in a row): %s", t.ensemble, t.name,
                        failures, message)

    def _time_out(self, t, now):
        with self.db.write() as conn:
            changed = store.change_trigger_state(conn, t, TriggerState.TIMED_OUT, now,
                                                 "timed out %d s after its creation"
                                                 % t.timeout)
        self._seen.pop(t.id, None)
        self._look_again = True
        if changed:
            log.info("trigger %s.%s timed out", t.ensemble, t.name)

    # ---- file-pattern triggers ---------------------------------------------

    def _fire_files(self, t, now, next_fire):
        with self.db.read() as conn:
            unfinished = store.unfinished_files(conn)
        mine = {(f.path, f.dev, f.ino) for f in unfinished if f.trigger_id == t.id}
        found = {path: st for path, st in scan(t.file_patterns).items()
                 if (path, st.st_dev, st.st_ino) not in mine}
        ready = self._settled(t.id, found, now)
        if not ready:
            self._note_waiting(t, now, [])
            return self._advance(t, now, next_fire)
        claims = self._claim(t, ready, unfinished)
        try:
            self._link(claims, {f.dest for f in unfinished} | {c.dest for c in claims})
            kept = [c for c in claims if not c.dropped]
            if kept:
                self._submit(t, now, next_fire, self._batches(t, kept))
        except Exception:
            self._release_quietly(claims)
            raise
        self._release([c for c in claims if c.dropped])
        self._note_waiting(t, now, [c for c in claims if c.stuck])
        if not kept:
            return self._advance(t, now, next_fire)  # all gone again since the scan
        self._finish(kept)
        return None

    def _batches(self, t, claims):
        """(plan command, files) per workflow: as many workflows as the OS limit needs."""
        words = self._words(t)
        groups = split_inputs(words, claims, self.limit, key=lambda c: c.dest)
        return [(quote(words + ["--inputs"] + [c.dest for c in group]), group)
                for group in groups]

    def _settled(self, trigger_id, found, now):
        """Files unchanged since the previous scan, or, first seen, left alone for
        SETTLE seconds; the others wait for the next scan."""
        before = self._seen.get(trigger_id, {})
        settled_ns = int((now - SETTLE) * 1e9)
        ready, waiting = {}, {}
        for path, st in found.items():
            ident = (st.st_dev, st.st_ino, st.st_size, st.st_mtime_ns)
            prev = before.get(path)
            if prev == ident or (prev is None and st.st_mtime_ns <= settled_ns):
                ready[path] = st
            else:
                waiting[path] = ident
        self._seen[trigger_id] = waiting
        return ready

    def _claim(self, t, ready, unfinished):
        """Step 2: record the files and their processed names before touching them."""
        known = {(f.path, f.dev, f.ino): f.dest for f in unfinished}
        reserved = {f.dest for f in unfinished}
        claims = []
        for path in sorted(ready):
            c = Claim(t.id, path, ready[path], None)
            c.dest = known.get((c.path, c.dev, c.ino)) or _free_dest(c, reserved)
            reserved.add(c.dest)
            claims.append(c)
        with self.db.write() as conn:
            ids = store.claim_files(conn, t.id, [c.row() for c in claims], self.ops.now())
        for c, file_id in zip(claims, ids):
            c.id = file_id
        return claims

    def _link(self, claims, reserved):
        """Step 3: processed/<name> becomes a hard link of each file or, where links are
        impossible, the file itself (moved there once its claim says MOVED)."""
        for folder in sorted({os.path.dirname(c.dest) for c in claims}):
            try:
                os.makedirs(folder, exist_ok=True)
            except OSError as e:
                raise FiringError("cannot create %s: %s" % (folder, e.strerror or e))
        for c in claims:
            self._link_one(c, reserved)
        unlinked = [c for c in claims if not c.linked and not c.dropped]
        if unlinked:
            with self.db.write() as conn:
                store.mark_files(conn, [c.id for c in unlinked], MOVED)
            for c in unlinked:
                _move(c)

    @staticmethod
    def _link_one(c, reserved):
        error = _try_link(c)
        while error == errno.EEXIST:  # the name was taken since the claim: take another
            c.dest = _free_dest(c, reserved)
            reserved.add(c.dest)
            error = _try_link(c)
        if error == errno.ENOENT:
            c.dropped = True  # gone since the scan: nothing to hand out
        elif error in _NO_LINK:
            c.linked = 0
        elif error is not None:
            raise FiringError("cannot link %s to %s: %s" % (c.path, c.dest, os.strerror(error)))
        elif not _same(_lstat(c.dest), c):
            os.unlink(c.dest)  # a new file took the arrival name since the scan: next time
            c.dropped = True
        else:
            c.linked = LINKED

    def _release(self, files):
        """Forget claims whose workflow was never created: links only they made are
        removed, files they moved go back where they arrived; the files are found again.
        -> how many stay claimed (moved files that cannot go back now)."""
        if not files:
            return 0
        with self.db.read() as conn:
            held = [f for f in files if store.file_holders(conn, f.path, f.dev, f.ino)]
        kept = set()
        for f in files:
            if f in held:
                continue
            if f.linked == MOVED:
                if not _put_back(f):
                    kept.add(f.id)  # still in processed/: the claim stays, tried again
            elif _same(_lstat(f.path), f) and _same(_lstat(f.dest), f):
                os.unlink(f.dest)  # an extra link of a file still where it arrived
        if kept:
            self._next_sweep = min(self._next_sweep, self.clock() + SWEEP_EVERY)
        with self.db.write() as conn:
            store.release_files(conn, [f.id for f in files
                                       if f.id is not None and f.id not in kept])
        return len(kept)

    def _note_waiting(self, t, now, stuck):
        """Files that can be neither linked nor moved wait, named in the trigger's
        last_error (and an event when one starts waiting), which is cleared once none
        is left.  Not a failure: the trigger goes on, and so do its other files."""
        reasons = {c.path: c.stuck for c in stuck}
        before = self._waiting.get(t.id)
        if reasons == before:
            return
        self._waiting[t.id] = reasons
        with self.db.write() as conn:
            fresh = store.get_trigger_by_id(conn, t.id)
            if fresh is None:
                return
            if reasons:
                store.update_trigger_run(conn, t.id, last_error=_waiting_message(reasons))
            elif (fresh.last_error or "").startswith(WAITING):
                store.update_trigger_run(conn, t.id, last_error=None)
            for path in sorted(set(reasons) - set(before or ())):
                store.add_event(conn, now, fresh.ensemble_id, fresh.state, fresh.state,
                                "%s: %s" % (WAITING, reasons[path]), trigger_id=t.id)

    def _release_quietly(self, files):
        try:
            self._release(files)
        except Exception:
            log.exception("cannot release claimed files; trying again at the next tick")
            self._next_sweep = self.clock()

    # ---- step 5: finishing --------------------------------------------------

    def _sweep(self, now, recovering=False):
        """Release claims left by a crash; finish files waiting for other triggers."""
        with self.db.read() as conn:
            files = store.unfinished_files(conn)
        kept = self._release([f for f in files if f.state == FileState.CLAIMED])
        waiting = self._finish([f for f in files if f.state == FileState.SUBMITTED],
                               recovering)
        self._next_sweep = now + SWEEP_EVERY if waiting or kept else float("inf")

    def _finish(self, files, recovering=False):
        """Remove originals that every live matching trigger has; -> files still waiting."""
        matcher, done, waiting = None, [], []
        for f in files:
            if recovering:
                self._clean_tmp(f)
            if _same(_lstat(f.path), f):
                matcher = matcher or self._matcher()
                if self._others_lack(f, matcher) or not self._remove_original(f):
                    waiting.append(f)
                    continue
            done.append(f.id)
        if done:
            with self.db.write() as conn:
                store.finish_files(conn, done, self.ops.now())
        if waiting:
            self._next_sweep = min(self._next_sweep, self.clock() + SWEEP_EVERY)
        return waiting

    def _matcher(self):
        with self.db.read() as conn:
            return Matcher(store.live_file_triggers(conn))

    def _others_lack(self, f, matcher):
        """True while another live trigger matching the file has not got it yet."""
        others = matcher.triggers_for(f.path) - {f.trigger_id}
        if not others:
            return False
        with self.db.read() as conn:
            return bool(others - store.file_holders(conn, f.path, f.dev, f.ino))

    @staticmethod
    def _remove_original(f):
        """The processed link exists: drop the arrival name.  Through a rename, so a new
        file that takes the name at this very moment is put back, not deleted."""
        if not f.linked:
            return _move_into(f)
        tmp = os.path.join(os.path.dirname(f.dest), _TMP % f.id)
        try:
            os.rename(f.path, tmp)
        except FileNotFoundError:
            return True
        except OSError as e:
            log.warning("cannot remove %s (handed out as %s): %s", f.path, f.dest, e)
            return False
        if _same(_lstat(tmp), f):
            os.unlink(tmp)
        else:
            _restore(tmp, f.path)
        return True

    @staticmethod
    def _clean_tmp(f):
        """A crash in _remove_original: finish the removal or put back the newcomer."""
        tmp = os.path.join(os.path.dirname(f.dest), _TMP % f.id)
        st = _lstat(tmp)
        if st is None:
            return
        if _same(st, f):
            os.unlink(tmp)
        else:
            _restore(tmp, f.path)


def _move_into(f):
    """A file submitted unlinked by a daemon from before MOVED: rename it to its processed
    path now (its workflow exists)."""
    if os.path.lexists(f.dest):
        log.warning("cannot move %s to %s: another file is there", f.path, f.dest)
        return False
    try:
        os.rename(f.path, f.dest)
    except FileNotFoundError:
        return True
    except OSError as e:
        log.warning("cannot move %s to %s: %s", f.path, f.dest, e)
        return False
    return True


def _move(c):
    """Step 3 without a link: rename the file to its processed name, which must be free
    (a rename would replace it).  Else the claim is dropped: c.stuck says why when the
    file cannot be moved at all (another user's, in a sticky directory)."""
    c.dropped = True
    if os.path.lexists(c.dest) or not _same(_lstat(c.path), c):
        return  # the name was taken, or the file replaced, since the claim: next time
    try:
        os.rename(c.path, c.dest)
    except FileNotFoundError:
        return
    except OSError as e:
        c.stuck = _why_stuck(c.path, e)
        return
    if not _same(_lstat(c.dest), c):
        _restore(c.dest, c.path)  # a new file took the name at that instant: put it back
        return
    c.linked, c.dropped = MOVED, False


def _put_back(f):
    """A MOVED file whose workflow was never created returns where it arrived (as
    name.1, ... when a new file has that name); False when it cannot now."""
    if not _same(_lstat(f.dest), f) or _same(_lstat(f.path), f):
        return True  # not moved, or already back
    try:
        _restore(f.dest, f.path)
    except OSError as e:
        log.warning("cannot put %s back to %s: %s; trying again later", f.dest, f.path, e)
        return False
    return True


def _why_stuck(path, error):
    st, folder = _lstat(path), _lstat(os.path.dirname(path))
    if st is not None and folder is not None and folder.st_mode & stat.S_ISVTX and \
            os.geteuid() not in (st.st_uid, folder.st_uid):
        return ("cannot move %s (owned by %s in a sticky directory): ask its owner to make "
                "it yours, or place inputs in a directory you own" % (path, _who(st.st_uid)))
    return "cannot link or move %s into processed/: %s" % (path, error.strerror or error)


def _who(uid):
    try:
        return "uid %d (%s)" % (uid, pwd.getpwuid(uid).pw_name)
    except KeyError:
        return "uid %d" % uid


def _waiting_message(reasons):
    shown = [reasons[p] for p in sorted(reasons)[:3]]
    more = len(reasons) - len(shown)
    return "%s: %d file%s cannot be handed out: %s%s" % (
        WAITING, len(reasons), "" if len(reasons) == 1 else "s", "; ".join(shown),
        "; and %d more" % more if more else "")
