"""The simulator's own pegasus-monitord: what it makes of each dagman.out event.

Used when Pegasus's monitord is not installed (realmonitord.py).  Every event is
recorded at the whole second of its dagman.out line, as monitord parses it, into
jobstate.log, the STAMPEDE DB and (root only) the master DB, with monitord's
values: exit codes as raw wait statuses (a POST script's 1 is 256), a
`dagman::post` invocation per try, job output URL-quoted (pegasus-facts.md §7),
no host rows (monitord learns hosts from kickstart records, which the simulated
jobs do not write).  tests/real_pegasus compares the result with monitord's own.
"""

import os
import sys

from . import braindump, masterdb, osutil, staticbp
from .monitord import Monitord
from .stampede import Stampede, path_of

REMOVED_REASON = "DAGMan aborted as it received SIGUSR1 signal."


def quote(text):
    """Pegasus.tools.utils.quote: bytes < 0x20 or >= 0x7F, ' \" and % as %XX."""
    return "".join("%%%02X" % b if b < 0x20 or b >= 0x7F or b in b"'\"%" else chr(b)
                   for b in text.encode("utf-8"))


def wait_status(code):
    """A process exit code as the raw wait status monitord stores (exit 1 -> 256)."""
    return code << 8


class Recorder:
    def __init__(self, run, parent=None):
        self.run, self.parent = run, parent
        self.bd = run.bd
        self.monitord = Monitord(run.dir, self.bd.get("jsd"))
        self.stampede = parent.stampede if parent else Stampede(path_of(self.bd))
        props = braindump.properties_of(run.dir, self.bd)
        self.master = None if parent else masterdb.path_for(props)
        self.wf_id, self.job_ids, self.ji, self.seq = None, {}, None, self._submit_count()
        self.restarts = 0

    def _submit_count(self):
        return sum(1 for line in osutil.read_text(self.monitord.jobstate).splitlines() if " SUBMIT " in line)

    def master_call(self, fn, *args):
        """Master-DB trouble is logged, never fatal: monitord carries on the same way."""
        if self.master is None:
            return None
        try:
            return fn(self.master, *args)
        except Exception as e:  # noqa: BLE001 - any DB error must not kill the run
            sys.stderr.write("pegasus-sim: master DB %s: %s\n" % (self.master, e))
            return None

    # -- the workflow -----------------------------------------------------------
    def register(self):
        """monitord's wf.plan and the static.bp events (first run only) -> wf_id."""
        self.stampede.prepare()  # the file the master row's db_url names exists first
        events = staticbp.parse(osutil.read_text(staticbp.path_for(self.run.dir, self.bd["dag"])))
        self.wf_id = self.stampede.workflow(self.bd, events, self.parent.wf_id if self.parent else None)
        if self.wf_id is not None:
            self.job_ids = self.stampede.job_ids(self.wf_id)
        return self.wf_id

    def started(self, attempt, after_sudden_death=False):
        """MONITORD_STARTED, DAGMAN_STARTED, WORKFLOW_STARTED at the `Parsing` line."""
        ts = int(self.run.t)
        self.restarts = attempt - 1
        self.monitord.started()
        if after_sudden_death:  # monitord's answer to two starts in a row: the earlier run ended with 2
            self.monitord.internal("DAGMAN_FINISHED", 2, ts)
            self.master_call(masterdb.workflow_terminated, self.bd["wf_uuid"], attempt - 2, 2, ts - 1)
        self.monitord.internal("DAGMAN_STARTED", self.run.id, ts)
        if self.wf_id is None:
            self.register()
        self.master_call(masterdb.workflow_started, self.bd, self.restarts, ts)
        if self.wf_id is not None:
            if after_sudden_death:
                self.stampede.workflow_state(self.wf_id, "WORKFLOW_TERMINATED", ts - 1, attempt - 2, 2)
            self.stampede.workflow_state(self.wf_id, "WORKFLOW_STARTED", ts, self.restarts)

    def finished(self, code, removed=False):
        ts = int(self.run.t)
        reason = REMOVED_REASON if removed else None
        self.monitord.internal("DAGMAN_FINISHED", code, ts)
        self.master_call(masterdb.workflow_terminated, self.bd["wf_uuid"], self.restarts, code, ts, reason)
        if self.wf_id is not None:
            self.stampede.workflow_state(self.wf_id, "WORKFLOW_TERMINATED", ts, self.restarts, code, reason)
        self.monitord.finished(0)

    # -- one try of a node -----------------------------------------------------------
    def jobstate(self, *events):
        r = self.run
        site = r.sites.get(r.current, "local")
        self.monitord.job([(r.current, state, value, site, self.seq) for state, value in events], int(r.t))

    def states(self, *names, reason=None, skip=0):
        self.stampede.states(self.ji, names, int(self.run.t), reason, skip)

    def submit(self, name, sub_run):
        r = self.run
        self.seq += 1
        self.cid = "%d.0" % r.node_id
        self.jobstate(("SUBMIT", self.cid))
        self.ji = None
        if name in self.job_ids:
            self.ji = self.stampede.submit(self.job_ids[name], self.seq, self.cid, r.sites.get(name), int(r.t))
        if sub_run is not None and sub_run.rec is not None and self.ji is not None:
            self.stampede.update(self.ji, subwf_id=sub_run.rec.register())
        self.exec_ts = self.term_ts = None

    def execute(self):
        self.exec_ts = int(self.run.t)
        self.jobstate(("EXECUTE", self.cid))
        self.states("EXECUTE")

    def held(self, reason):
        """`Hold reason: <text>` becomes monitord's JOB_HELD_REASON line and the JOB_HELD row's reason."""
        self.jobstate(("JOB_HELD", self.cid), ("JOB_HELD_REASON", self.cid))
        self.states("JOB_HELD", reason=" " + reason, skip=1)

    def released(self):
        self.jobstate(("JOB_RELEASED", self.cid))
        self.states("JOB_RELEASED")

    def terminate(self, fail):
        self.term_ts = int(self.run.t)
        self.jobstate(("JOB_TERMINATED", self.cid), ("JOB_FAILURE", 2) if fail else ("JOB_SUCCESS", 0),
                      ("POST_SCRIPT_STARTED", self.cid))
        self.states("JOB_TERMINATED", "JOB_FAILURE" if fail else "JOB_SUCCESS", "POST_SCRIPT_STARTED")

    def post(self, fail):
        self.jobstate(("POST_SCRIPT_TERMINATED", self.cid),
                      ("POST_SCRIPT_FAILURE", 1) if fail else ("POST_SCRIPT_SUCCESS", 0))
        self.states("POST_SCRIPT_TERMINATED", "POST_SCRIPT_FAILED" if fail else "POST_SCRIPT_SUCCESS")
        if self.ji is not None:
            self.job_end(fail)
            self.stampede.invocations(self.wf_id, self.ji, [self.main_invocation(fail), self.post_invocation(fail)])

    def job_end(self, fail):
        """The try's end (monitord's main.end, then post.end): durations, output, exit status."""
        r = self.run
        base = os.path.join("00", "00", "%s.%%s.%03d" % (r.current, r.try_no))
        self.stampede.update(self.ji, user=self.bd.get("user"), work_dir=self.bd.get("submit_dir"),
                             local_duration=self.term_ts - self.exec_ts, stdout_file=base % "out",
                             stdout_text=quote("#@ 1 stdout\n" + osutil.read_text(base % "out")),
                             stderr_file=base % "err", stderr_text=quote(osutil.read_text(base % "err")),
                             exitcode=wait_status(1 if fail else 0))

    def main_invocation(self, fail):
        """What monitord makes of a job without a kickstart record: its submit file's facts."""
        commands, attrs = self.run.subs[self.run.current]
        task = attrs.get("pegasus_wf_dax_job_id")
        argv = commands.get("arguments", "")
        return (1, self.exec_ts, self.term_ts - self.exec_ts, None, wait_status(2 if fail else 0),
                attrs.get("pegasus_wf_xformation"), commands.get("executable", ""),
                argv[1:-1] if argv.startswith('"') and argv.endswith('"') and len(argv) > 2 else None,
                None if task in (None, "null") else task)

    def post_invocation(self, fail):
        executable, argv = self.run.posts.get(self.run.current, ("", None))
        duration = int(self.run.t) - self.term_ts
        return (-2, self.term_ts, duration, duration, wait_status(1 if fail else 0), "dagman::post",
                executable, argv, None)
