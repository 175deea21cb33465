"""What pegasus-monitord leaves in a submit dir: jobstate.log and monitord.* files.

Formats from pegasus-facts.md 2.4-2.5.  In the simulator the DAGMan process
plays monitord too, so monitord.pid holds the DAGMan's pid.
"""

import os
import time

from . import osutil

PID_FILE = "monitord.pid"
STARTED_FILE = "monitord.started"
DONE_FILE = "monitord.done"


class Monitord:
    def __init__(self, submit_dir, jsd="jobstate.log"):
        self.dir = submit_dir
        self.jobstate = os.path.join(submit_dir, jsd or "jobstate.log")
        self.start = time.time()

    def _path(self, name):
        return os.path.join(self.dir, name)

    def started(self):
        """monitord start: MONITORD_STARTED, pid + started files, no stale done file."""
        self.start = time.time()
        osutil.append(self.jobstate, "%d INTERNAL *** MONITORD_STARTED ***\n" % self.start)
        stamp = "pid %d\ntimestamp %s\n" % (os.getpid(), osutil.iso_now(self.start))
        osutil.write_atomic(self._path(PID_FILE), stamp)
        osutil.write_atomic(self._path(STARTED_FILE), stamp)
        osutil.remove(self._path(DONE_FILE))

    def internal(self, event, value, t):
        """DAGMAN_STARTED <condor id> / DAGMAN_FINISHED <exit>, at the dagman.out line's second `t`."""
        osutil.append(self.jobstate, "%d INTERNAL *** %s %s ***\n" % (t, event, value))

    def job(self, lines, t):
        """Job lines (job, state, value, site, seq) of one dagman.out event at second `t`, in one append."""
        osutil.append(self.jobstate, "".join(
            "%d %s %s %s %s - %s\n" % (t, job, state, value, site, seq)
            for job, state, value, site, seq in lines))

    def finished(self, code=0):
        """MONITORD_FINISHED, monitord.done, then the pid file goes (atexit in monitord)."""
        end = time.time()
        osutil.append(self.jobstate, "%d INTERNAL *** MONITORD_FINISHED %d ***\n" % (end, code))
        osutil.write_atomic(self._path(DONE_FILE), "%s %.3f\n" % (osutil.iso_now(end), end - self.start))
        osutil.remove(self._path(PID_FILE))


def running_pid(submit_dir):
    """The pid in monitord.pid if that process is alive, else None."""
    text = osutil.read_text(os.path.join(submit_dir, PID_FILE))
    for line in text.splitlines():
        if line.startswith("pid "):
            try:
                pid = int(line.split()[1])
            except (IndexError, ValueError):
                return None
            return pid if osutil.pid_alive(pid) else None
    return None


def last_states(submit_dir, jsd="jobstate.log"):
    """{job: (state, value, site)} from the last jobstate.log line of each job."""
    states = {}
    for line in osutil.read_text(os.path.join(submit_dir, jsd or "jobstate.log")).splitlines():
        parts = line.split()
        if len(parts) >= 7 and parts[1] != "INTERNAL":
            states[parts[1]] = (parts[2], parts[3], parts[4])
    return states
