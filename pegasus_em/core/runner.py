"""Child processes: detached runs that outlive the daemon, and short blocking calls.

Every planner and `pegasus-run` goes through `spawn`: a `/bin/sh` wrapper in its
own session appends the command's output to a log file and, when the command
ends, writes its exit status to a result file itself, so a daemon that died
and restarted still finds the outcome.  The status is one short line written
by one write(): a reader sees the whole line or no line (`read_result` takes
only a line ending in a newline), so no rename is needed, and none of the
fork and exec of `mv` it cost at the end of every plan and run.  A process is
identified by (pid, start time from /proc), never by pid alone, so a recycled
pid or an unreaped zombie is never taken for our living child.

Reaping: `spawn` keeps the Popen of each wrapper and `reap()` polls exactly
those pids (waitpid(pid, WNOHANG)).  Not `waitpid(-1)`: it would also collect
the children of `subprocess.run` calls in other daemon threads, which then
report exit status 0 whatever happened.  Not a double fork: the wrapper would
no longer lead its own process group with pgid == pid.  A daemon that dies
leaves its wrappers to init; where init is slow to reap, the zombie still
reads as ended (`is_alive` checks the process state).

Aborting is non-blocking: `kill_group(...)` sends SIGTERM to the group at once
and returns a `GroupKill` whose `poll(now)` sends SIGKILL once `grace` seconds
have passed and reports when the group is empty.
"""

import os
import signal
import subprocess
import threading
import time
from typing import NamedTuple

from ..errors import EMError

# $1 = the user's command, $2 = the result file.  The trap makes the wrapper
# outlive a SIGTERM to the group long enough to record the command's status
# (143); a trapped signal is reset to its default in the command, so the
# command itself still dies of it.  printf is the shell's builtin: no process.
WRAPPER = 'trap : TERM; /bin/sh -c "$1"; printf "%d\\n" "$?" >"$2"'
WRAPPER_NAME = "pegasus-em-run"  # $0 of the wrapper: what `ps` shows
TIMEOUT_RC = 124  # run() after a timeout, as timeout(1) does

_children = {}  # pid -> Popen of spawned wrappers not yet reaped
_children_lock = threading.Lock()


class SpawnError(EMError):
    """A detached command could not be started at all (no cwd, no /bin/sh, no log)."""


class Spawned(NamedTuple):
    pid: int
    start_time: int  # /proc/<pid>/stat field 22: clock ticks since boot


class Result(NamedTuple):
    rc: int
    output: str
    seconds: float


def spawn(command, cwd, log_path, result_path, env=None):
    """Start `command` (a shell string) detached; -> Spawned.  Raises SpawnError.

    A result file left by an earlier attempt is removed first, so that
    read_result() only ever reports this run.
    """
    reap()
    if not os.path.isdir(cwd):
        raise SpawnError("cannot run %s: directory %s does not exist" % (command, cwd))
    _clear_result(result_path, command)
    log = _open_log(log_path, command)
    try:
        proc = subprocess.Popen(["/bin/sh", "-c", WRAPPER, WRAPPER_NAME, command, result_path],
                                cwd=cwd, env=env, stdin=subprocess.DEVNULL, stdout=log,
                                stderr=log, close_fds=True, start_new_session=True)
    except OSError as e:
        raise SpawnError("cannot run %s in %s: %s" % (command, cwd, _describe(e))) from e
    finally:
        log.close()
    with _children_lock:
        _children[proc.pid] = proc
    return Spawned(proc.pid, process_start_time(proc.pid))


def _clear_result(result_path, command):
    try:
        os.unlink(result_path)
    except FileNotFoundError:
        if not os.path.isdir(os.path.dirname(os.path.abspath(result_path))):
            raise SpawnError("cannot run %s: directory of result file %s does not exist"
                             % (command, result_path)) from None
    except OSError as e:
        raise SpawnError("cannot run %s: cannot remove old result %s: %s"
                         % (command, result_path, e.strerror)) from e


def _open_log(log_path, command):
    try:
        fd = os.open(log_path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o600)
    except OSError as e:
        raise SpawnError("cannot run %s: cannot open log %s: %s"
                         % (command, log_path, e.strerror)) from e
    return os.fdopen(fd, "ab")


def _describe(error):
    if error.filename:
        return "%s: %s" % (error.strerror, error.filename)
    return error.strerror or str(error)


def reap():
    """Collect spawned wrappers that have ended (no zombies while the daemon lives)."""
    with _children_lock:
        done = [pid for pid, proc in _children.items() if proc.poll() is not None]
        for pid in done:
            del _children[pid]
    return len(done)


def _stat_fields(pid):
    """Fields 3.. of /proc/<pid>/stat (after the parenthesised command name), or None."""
    try:
        with open("/proc/%d/stat" % pid, "rb") as f:
            text = f.read()
    except OSError:
        return None
    fields = text.rpartition(b")")[2].split()
    return fields if len(fields) > 19 else None


def process_start_time(pid):
    """Start time of `pid` in clock ticks since boot (stat field 22), None if no such pid."""
    fields = _stat_fields(pid)
    return int(fields[19]) if fields else None


def is_alive(pid, start_time):
    """True only for the very process we started: same start time, not a zombie."""
    fields = _stat_fields(pid)
    if not fields or int(fields[19]) != start_time:
        return False
    return fields[0] not in (b"Z", b"X", b"x")


def read_result(result_path):
    """Exit status recorded by the wrapper, None if not (completely) written yet."""
    try:
        with open(result_path, "rb") as f:
            text = f.read(64)
        return int(text) if text.endswith(b"\n") else None
    except (OSError, ValueError):
        return None


# -- aborting a process group ------------------------------------------------------

def _group_is_ours(pid, start_time):
    """Whether process group `pid` can only hold our processes.

    Linux does not hand out a pid while a process group of that number exists,
    so if no process has this pid (or it is still ours), group members are ours.
    """
    now = process_start_time(pid)
    return now is None or now == start_time


def _signal_group(pid, start_time, sig):
    """Send `sig` to the group if it is ours; True if some process received it."""
    reap()
    if not _group_is_ours(pid, start_time):
        return False
    try:
        os.killpg(pid, sig)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True  # members exist but are not ours to signal: report them alive
    return True


def terminate_group(pid, start_time):
    """SIGTERM the group of a spawned command; True if anything was left to signal."""
    return _signal_group(pid, start_time, signal.SIGTERM)


def force_group(pid, start_time):
    """SIGKILL the group of a spawned command; True if anything was left to signal."""
    return _signal_group(pid, start_time, signal.SIGKILL)


def group_alive(pid, start_time):
    """Whether a live process of our group is left.

    kill(0) alone is not enough: killed grandchildren stay zombies until init
    reaps them, and some container inits reap slowly or never.  So a positive
    answer is confirmed by a scan of /proc (only while an abort is in progress).
    """
    return _signal_group(pid, start_time, 0) and _has_live_member(pid)


def _has_live_member(pgid):
    for name in os.listdir("/proc"):
        fields = _stat_fields(int(name)) if name.isdigit() else None
        if fields and int(fields[2]) == pgid and fields[0] not in (b"Z", b"X", b"x"):
            return True
    return False


class GroupKill:
    """An abort in progress: TERM sent; `poll(now)` sends KILL after `grace` seconds.

    `now` is time.monotonic() unless given.  poll() returns True once the group is empty.
    """

    def __init__(self, pid, start_time, grace=5.0, now=None):
        self.pid, self.start_time = pid, start_time
        self.deadline = (time.monotonic() if now is None else now) + grace
        self.forced = False
        self.done = not terminate_group(pid, start_time)

    def poll(self, now=None):
        if self.done:
            return True
        now = time.monotonic() if now is None else now
        if not group_alive(self.pid, self.start_time):
            self.done = True
        elif now >= self.deadline and not self.forced:
            self.forced = True
            force_group(self.pid, self.start_time)
        return self.done


def kill_group(pid, start_time, grace=5.0, now=None):
    """Start aborting a spawned command and its descendants in its group -> GroupKill."""
    return GroupKill(pid, start_time, grace, now)


# -- short blocking calls -----------------------------------------------------------

def run(argv, cwd=None, log_path=None, timeout=60, env=None):
    """Run `argv` to completion (stdout+stderr captured) -> Result; never raises OSError.

    A missing executable gives rc 127 (126 for other start failures); a timeout kills
    the process group (TERM, then KILL) and gives rc 124.  A signal n gives 128+n.
    """
    started = time.monotonic()
    try:
        proc = subprocess.Popen(argv, cwd=cwd, env=env, stdin=subprocess.DEVNULL,
                                stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                                close_fds=True, start_new_session=True)
    except OSError as e:
        rc = 127 if isinstance(e, FileNotFoundError) else 126
        output = "pegasus-em: cannot run %s: %s\n" % (argv[0], _describe(e))
    else:
        rc, output = _collect(proc, timeout)
    if log_path:
        _append(log_path, output)
    return Result(rc, output, time.monotonic() - started)


def _collect(proc, timeout):
    try:
        data, _ = proc.communicate(timeout=timeout)
    except subprocess.TimeoutExpired:
        data = _stop(proc)
        text = data.decode("utf-8", "replace")
        return TIMEOUT_RC, text + "pegasus-em: %s timed out after %gs and was killed\n" % (
            proc.args[0], timeout)
    rc = proc.returncode
    return (128 - rc if rc < 0 else rc), data.decode("utf-8", "replace")


def _stop(proc, grace=2.0):
    """TERM then KILL the group of a timed-out run(); -> the output it gave."""
    output = b""  # communicate() accumulates: each answer holds all output so far
    for sig in (signal.SIGTERM, signal.SIGKILL):
        try:
            os.killpg(proc.pid, sig)
        except OSError:
            pass
        try:
            return proc.communicate(timeout=grace)[0] or b""
        except subprocess.TimeoutExpired as e:
            output = e.output or output
    # A descendant that left the group still holds the pipe: stop reading it.
    proc.stdout.close()
    proc.wait()
    return output


def _append(path, text):
    fd = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o600)
    try:
        os.write(fd, text.encode("utf-8"))
    finally:
        os.close(fd)


def find_by_result(result_path):
    """The live wrapper writing `result_path`, found in /proc; None if there is none.

    Used after a crash between recording an intent and recording the pid.
    """
    target = result_path.encode()
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            with open("/proc/%s/cmdline" % entry, "rb") as f:
                argv = f.read().split(b"\0")
        except OSError:
            continue
        if WRAPPER_NAME.encode() in argv and target in argv:
            pid = int(entry)
            start = process_start_time(pid)
            if start is not None and is_alive(pid, start):
                return Spawned(pid, start)
    return None


def pidfd(pid, start_time):
    """A descriptor that becomes readable when the process exits; None if unsupported
    or the process is already gone (then poll instead)."""
    if not hasattr(os, "pidfd_open"):
        return None
    try:
        fd = os.pidfd_open(pid)
    except OSError:
        return None
    if not is_alive(pid, start_time):  # the pid was reused before we opened it
        os.close(fd)
        return None
    return fd
