"""The fake DAGMan job: condor_dagman, pegasus-dagman and pegasus-monitord in one process.

Started detached by the fake schedd (schedd.py).  It runs the DAG's nodes as a
chain in simulated time, appending to <dag>.dagman.out, jobstate.log and the
master DB exactly what the real trio would, and honours the knobs (knobs.py).
Signals: SIGUSR1 = condor_rm, SIGUSR2 = condor_hold (log held jobs, then stop).
"""

import glob
import os
import re
import select
import signal
import sys
import time

from . import CONDOR_VERSION, braindump, dagfiles, knobs, masterdb, osutil
from . import dagman_out as out
from .monitord import Monitord
from .schedd import COMPLETED, HELD, REMOVED, RUNNING, Schedd, parse_submit
from .stampede import Job, Stampede, path_of

EVENT_STEPS = 4  # submit, execute, terminate, post script: the waits per node


def main(argv, early=()):
    dag = argv[argv.index("-Dag") + 1] if "-Dag" in argv else None
    if not dag or not os.path.isfile(dag):
        sys.stderr.write("pegasus-sim-dagman: no readable -Dag file given\n")
        return 1
    m = re.search(r"condor_scheduniv_exec\.(\d+)\.", os.path.basename(argv[0]))
    cluster = int(m.group(1)) if m else int(os.environ.get("CONDOR_ID", "0").split(".")[0])
    return DagRun(dag, cluster, argv, early).run()


def read_dag(path):
    """[(node, submit file)] in file order; the simulator runs them as a chain."""
    nodes = []
    for line in osutil.read_text(path).splitlines():
        parts = line.split()
        if len(parts) >= 3 and parts[0] == "JOB":
            nodes.append((parts[1], parts[2]))
    return nodes


def latest_rescue(dag):
    """(number, path) of the newest <dag>.rescueNNN, or (0, None)."""
    found = [(int(p[-3:]), p) for p in glob.glob(glob.escape(dag) + ".rescue[0-9][0-9][0-9]")]
    return max(found) if found else (0, None)


def rescue_done(path):
    return {line.split()[1] for line in osutil.read_text(path).splitlines()
            if line.startswith("DONE ") and len(line.split()) > 1}


class DagRun:
    def __init__(self, dag, cluster, argv, early=()):
        self.dag, self.cluster, self.argv = dag, cluster, argv
        self.id = "%d.0" % cluster
        self.out = os.environ.get("_CONDOR_DAGMAN_LOG") or dag + ".dagman.out"
        self.schedd = Schedd()
        self.bd = braindump.read(".")  # None: a plain DAG, no Pegasus monitoring
        props = braindump.properties_of(".", self.bd)
        self.knobs = knobs.load(props)
        self.db = masterdb.path_for(props) if self.bd else None
        self.monitord = Monitord(".", self.bd.get("jsd")) if self.bd else None
        self.nodes = read_dag(dag)
        self.subs = {name: parse_submit(sub) for name, sub in self.nodes}
        self.sites = {name: attrs.get("pegasus_site", "local") for name, (_, attrs) in self.subs.items()}
        self.done, self.failed = set(), None
        self.current, self.phase, self.node_id, self.seq = None, None, None, 0
        self.stampede = Stampede(path_of(self.bd)) if self.bd else None
        self.wf_id, self.job_ids, self.ji, self.exec_at, self.submits = None, {}, None, None, 0
        self._started_ts = 0
        self.started = self.removed = self.hold_requested = False
        self._signals(early)

    # -- signals and waiting ------------------------------------------------
    def _signals(self, early=()):
        self.wake, w = os.pipe()
        os.set_blocking(w, False)
        os.set_blocking(self.wake, False)
        signal.set_wakeup_fd(w)
        signal.signal(signal.SIGUSR1, lambda *a: setattr(self, "removed", True))
        signal.signal(signal.SIGUSR2, lambda *a: setattr(self, "hold_requested", True))
        # A caller that blocked these (a daemon thread's mask survives exec) must not mute condor_rm.
        signal.pthread_sigmask(signal.SIG_UNBLOCK, {signal.SIGUSR1, signal.SIGUSR2, signal.SIGCONT})
        if signal.SIGUSR1 in early:  # signals that came before these handlers
            self.removed = True
        if signal.SIGUSR2 in early:
            self.hold_requested = True

    def wait(self, seconds):
        """Sleep in simulated time (None: until condor_rm), waking at once for condor_rm / condor_hold."""
        deadline = None if seconds is None else time.monotonic() + seconds
        while not self.removed:
            if self.hold_requested:
                self.hold_requested = False
                self._hold()
            left = None if deadline is None else deadline - time.monotonic()
            if left is not None and left <= 0:
                return
            select.select([self.wake], [], [], left)
            try:
                os.read(self.wake, 512)
            except BlockingIOError:
                pass

    def _hold(self):
        """Held by condor_hold: log our running job as held, stop until condor_release."""
        ad = self.schedd.get(self.cluster)
        if not ad or ad.get("JobStatus") != HELD:
            return
        self._job_event("ULOG_JOB_HELD", "JOB_HELD", ["  Hold reason: %s" % ad.get("HoldReason")], held=1)
        os.kill(os.getpid(), signal.SIGSTOP)
        if not self.removed:  # condor_rm of a held job continues us only to abort
            self._job_event("ULOG_JOB_RELEASED", "JOB_RELEASED", [], held=0)

    def _job_event(self, ulog, state, extra, held):
        if not (self.started and self.current):
            return
        self.log("Event: %s for HTCondor Node %s (%d.0.0) {%s}" % (ulog, self.current, self.node_id,
                                                                   out.stamp()), *extra)
        self.write(out.progress(0, self.counts(), held=held))
        self.jobstate((state, "%d.0" % self.node_id))
        self.record([state], reason=extra[0].strip() if extra else None)

    # -- output helpers -----------------------------------------------------
    def write(self, text):
        osutil.append(self.out, text)

    def log(self, *texts):
        self.write(out.lines(*texts))

    def jobstate(self, *events):
        if self.monitord and self.current:
            site = self.sites.get(self.current, "local")
            self.monitord.job([(self.current, state, value, site, self.seq) for state, value in events])

    def record(self, states, reason=None, **fields):
        """The same events in the STAMPEDE DB: jobstate rows of the current instance, its fields."""
        if self.stampede and self.ji is not None:
            self.stampede.states(self.ji, states, time.time(), reason)
            self.stampede.update(self.ji, **fields)

    def counts(self):
        total, done = len(self.nodes), len(self.done)
        left = total - done - (1 if self.failed else 0) - (1 if self.phase else 0)
        futile = left if self.failed else 0
        ready = 1 if left > futile and not self.phase else 0
        return {"Done": done, "Queued": int(self.phase == "queued"), "Post": int(self.phase == "post"),
                "Ready": ready, "Un-Ready": left - futile - ready, "Failed": int(bool(self.failed)),
                "Futile": futile}

    def db_call(self, fn, *args):
        """Master-DB trouble is logged, never fatal: monitord carries on the same way."""
        try:
            return fn(self.db, *args)
        except Exception as e:  # noqa: BLE001 - any DB error must not kill the run
            sys.stderr.write("pegasus-sim: master DB %s: %s\n" % (self.db, e))

    # -- the run ------------------------------------------------------------
    def run(self):
        self.wait(self.knobs["START_DELAY"])  # idle in the queue
        if self.removed:
            return 0
        self.schedd.update(self.cluster, JobStatus=RUNNING)
        ad = self.schedd.get(self.cluster)
        if ad:
            self.schedd.log_event(ad, "001", "Job executing on host: <127.0.0.1:9618?sim>")
        previous = out.blocks(osutil.read_text(self.out))
        self.attempt = len(previous) + 1
        self.start(previous)
        if knobs.attempt_fails(self.knobs, self.attempt, "DAGMAN_DIE"):
            self.die()
        fail = knobs.attempt_fails(self.knobs, self.attempt, "RUN_FAIL")
        pending = [n for n in self.nodes if n[0] not in self.done]
        retries = self.knobs["JOB_FAILURES"]
        dt = self._run_budget() / max(1, EVENT_STEPS * (len(pending) + retries))
        fail_at = max(len(self.nodes) // 2, len(self.nodes) - len(pending))
        for index, (name, sub) in enumerate(self.nodes):
            if self.removed or self.failed:
                break
            if name in self.done:
                continue
            if os.path.exists(self.dag + ".halt"):
                return self.finish(1, 6, ["Exiting because DAG is halted and no jobs or scripts are running"])
            tries = 1 + (retries if index == fail_at else 0)
            for attempt in range(1, tries + 1):
                fails = index == fail_at and (fail or attempt <= retries)
                if not self.run_node(name, sub, fails, dt, retry=attempt < tries):
                    break
                self.log("Retrying node %s (retry #%d of %d)..." % (name, attempt, retries))
        if self.removed:
            return self.finish(2, 4, ["Received SIGUSR1", "Aborting DAG..."])
        if self.failed:
            return self.finish(1, 2, self.failure_report() + ["Aborting DAG..."])
        return self.finish(0, 0, ["All jobs Completed!"])

    def _run_budget(self):
        """RUN_SECONDS counted from when pegasus-run started (PEGASUS_SIM_T0), less only
        the tools' own start-up: the deliberate START_DELAY in the queue is not run time."""
        try:
            elapsed = time.time() - float(os.environ["PEGASUS_SIM_T0"])
        except (KeyError, ValueError):
            elapsed = 0.0
        overhead = elapsed - self.knobs["START_DELAY"]
        return max(0.0, self.knobs["RUN_SECONDS"] - max(0.0, overhead))

    def start(self, previous):
        """The STARTING UP block, monitord start, master DB rows."""
        self.started = True
        self.rescue_no, rescue = latest_rescue(self.dag)
        if rescue:
            self.done = rescue_done(rescue)
        self.write(self.header())
        if self.monitord:
            self.seq = self._submit_count()
            self.monitord.started()
            if previous and out.summarize(previous[-1])["exit"] is None:
                # monitord's answer to two starts in a row: the earlier run ended with 2
                self.monitord.internal("DAGMAN_FINISHED", 2)
                self.db_call(masterdb.workflow_terminated, self.bd["wf_uuid"], self.attempt - 2, 2,
                             time.time() - 1)
            self.monitord.internal("DAGMAN_STARTED", self.id)
        parsing = []
        if rescue:
            parsing = ["Found rescue DAG number %d; running %s in combination with normal DAG file"
                       % (self.rescue_no, rescue), "USING RESCUE DAG %s" % rescue]
        self.log(*(parsing + ["Parsing 1 dagfiles", "Parsing %s ..." % self.dag,
                              "Dag contains %d total jobs" % len(self.nodes), "Bootstrapping...",
                              "Number of pre-completed nodes: %d" % len(self.done)]))
        if self.monitord:
            self.stampede.prepare()  # the file the master row's db_url names exists first
            ts = self.db_call(masterdb.workflow_started, self.bd, self.attempt - 1) or int(time.time())
            self.stampede_start(ts, previous and out.summarize(previous[-1])["exit"] is None)
        osutil.write_atomic(self.dag + ".lock", "%d\n" % os.getpid())
        self.write(out.progress(0, self.counts()) + out.lines("Registering condor_event_timer..."))

    def stampede_start(self, ts, after_sudden_death):
        """Workflow, jobs and tasks (first run), then WORKFLOW_STARTED, as monitord's stampede loader."""
        self._started_ts = ts
        bd = dict(self.bd, db_url=masterdb.stampede_url(self.bd))
        self.wf_id = self.stampede.workflow(bd, [self.job(name) for name, _ in self.nodes])
        if self.wf_id is None:
            return
        self.job_ids = self.stampede.job_ids(self.wf_id)
        if after_sudden_death:
            self.stampede.workflow_state(self.wf_id, "WORKFLOW_TERMINATED", ts - 1, self.attempt - 2, 2)
        self.stampede.workflow_state(self.wf_id, "WORKFLOW_STARTED", ts, self.attempt - 1)

    def job(self, name):
        type_desc, xformation, task = dagfiles.job_type(name)
        commands = self.subs.get(name, ({}, {}))[0]
        argv = commands.get("arguments") or ("-i f.a -o f.%s" % (task or name)[-1].lower() if task else None)
        return Job(name, type_desc, xformation, task, commands.get("executable", "/bin/true"), argv,
                   self.knobs["JOB_FAILURES"])

    def header(self):
        args = ["condor_scheduniv_exec.%s" % self.id] + self.argv[1:]
        return out.lines(
            "******************************************************",
            "** condor_scheduniv_exec.%s (CONDOR_DAGMAN) STARTING UP" % self.id,
            "** %s" % osutil.tool("pegasus-sim-dagman"),
            "** SubsystemInfo: name=DAGMAN type=DAGMAN(9) class=CLIENT(2)",
            "** Configuration: subsystem:DAGMAN local:<NONE> class:CLIENT",
            "** " + CONDOR_VERSION,
            "** $CondorPlatform: x86_64_pegasus-sim $",
            "** PID = %d" % os.getpid(),
            "** Log last touched time unavailable (No such file or directory)",
            "******************************************************",
            "DAGMAN_AUTO_RESCUE setting: True",
            *['argv[%d] == "%s"' % (i, a) for i, a in enumerate(args)],
            "Workflow batch-id: <%s>" % self.id,
            "Workflow batch-name: <%s+%d>" % (self.dag, self.cluster),
            "DAG Lockfile will be written to %s.lock" % self.dag,
            "DAG Input file is %s" % self.dag)

    def _submit_count(self):
        text = osutil.read_text(self.monitord.jobstate)
        return sum(1 for line in text.splitlines() if " SUBMIT " in line)

    def die(self):
        """Sudden death: a node in flight, then gone without a word (monitord.pid stays)."""
        name, sub = next(((n, s) for n, s in self.nodes if n not in self.done), (None, None))
        if name:
            self.submit(name, sub)
        os._exit(137)

    def submit(self, name, sub):
        self.current, self.phase = name, "queued"
        self.node_id = self.schedd.new_cluster()
        self.seq += 1
        self.submits += 1
        self.log("Submitting HTCondor Node %s job(s)..." % name,
                 "Submitting node %s from file %s using direct job submission" % (name, sub),
                 "\tassigned HTCondor ID (%d.0.0)" % self.node_id, "Just submitted 1 job this cycle...")
        self.write(out.progress(0, self.counts()))
        self.jobstate(("SUBMIT", "%d.0" % self.node_id))
        self.try_no = len(glob.glob(glob.escape(os.path.join("00", "00", name)) + ".out.[0-9][0-9][0-9]"))
        self.ji = None
        if self.stampede and name in self.job_ids:
            base = os.path.join("00", "00", "%s.%%s.%03d" % (name, self.try_no))
            self.ji = self.stampede.submit(self.job_ids[name], self.seq, "%d.0" % self.node_id,
                                           self.sites.get(name, "local"), os.getcwd(), base % "out",
                                           base % "err", time.time())

    def run_node(self, name, sub, fail, dt, retry=False):
        """One try of a node through submit, execute, terminate and POST (stops early on condor_rm).
        True when it failed and DAGMan retries it (`retry`: a retry is left)."""
        self.submit(name, sub)
        ev = "Event: %%s for HTCondor Node %s (%d.0.0) {%%s}" % (name, self.node_id)
        cid = "%d.0" % self.node_id
        if self.submits == self.knobs["STALL_AT"]:
            self.wait(None)  # this job never ends: only condor_rm gets us out
        for step in range(3):
            self.wait(dt)
            if self.removed:
                self.jobstate(("JOB_ABORTED", cid))
                self.record(["JOB_ABORTED"])
                return False
            if step == 0:
                self.log("Currently monitoring 1 HTCondor log file(s)", ev % ("ULOG_SUBMIT", out.stamp()),
                         "Number of idle job procs: 1", ev % ("ULOG_EXECUTE", out.stamp()),
                         "Number of idle job procs: 0")
                self.jobstate(("EXECUTE", cid))
                self.exec_at = time.time()
                host = self.stampede.host(self.wf_id, self.sites.get(name, "local")) if self.ji else None
                self.record(["EXECUTE"], host_id=host)
                if dagfiles.job_type(name)[0] == "dag":
                    from .subwf import SubWorkflow  # only hierarchical plans need it
                    fail = not SubWorkflow(self, name, self.subs[name][0]).run(fail, dt)
            elif step == 1:
                self.terminate(name, ev, cid, fail)
            else:
                self.post(name, ev, cid, fail, retry)
        self.wait(dt)
        return fail and retry

    def terminate(self, name, ev, cid, fail):
        self.write_job_files(name, fail)
        self.phase = "post"
        self.log("Currently monitoring 1 HTCondor log file(s)", ev % ("ULOG_JOB_TERMINATED", out.stamp()),
                 "Number of idle job procs: 0",
                 "Node %s job proc (%s.0) %s" % (name, cid, "failed with status 2." if fail
                                                 else "completed successfully."),
                 "Node %s job completed" % name, "Running POST script of Node %s..." % name)
        self.write(out.progress(0, self.counts()))
        self.jobstate(("JOB_TERMINATED", cid), ("JOB_FAILURE", 2) if fail else ("JOB_SUCCESS", 0),
                      ("POST_SCRIPT_STARTED", cid))
        if self.ji is not None:
            now = time.time()
            start = self.exec_at or now
            base = os.path.join("00", "00", "%s.%%s.%03d" % (name, self.try_no))
            self.record(["JOB_TERMINATED", "JOB_FAILURE" if fail else "JOB_SUCCESS", "POST_SCRIPT_STARTED"],
                        local_duration=round(now - start, 3), stdout_text=osutil.read_text(base % "out"),
                        stderr_text=osutil.read_text(base % "err"))
            self.stampede.invocation(self.wf_id, self.ji, self.job(name), start, now - start, 2 if fail else 0)

    def post(self, name, ev, cid, fail, retry=False):
        self.phase = None
        if fail and not retry:
            self.failed = name
        elif not fail:
            self.done.add(name)
        result = (["POST Script of node %s failed with status 1" % name, "POST for Node %s returned 1" % name]
                  if fail else ["POST Script of node %s completed successfully." % name])
        self.log("Currently monitoring 1 HTCondor log file(s)",
                 ev % ("ULOG_POST_SCRIPT_TERMINATED", out.stamp()), *result)
        self.write(out.progress(2 if fail and not retry else 0, self.counts()))
        self.jobstate(("POST_SCRIPT_TERMINATED", cid),
                      ("POST_SCRIPT_FAILURE", 1) if fail else ("POST_SCRIPT_SUCCESS", cid))
        self.record(["POST_SCRIPT_TERMINATED", "POST_SCRIPT_FAILURE" if fail else "POST_SCRIPT_SUCCESS"],
                    exitcode=1 if fail else 0)
        if not fail or retry:
            self.current = None

    def write_job_files(self, name, fail):
        """<node>.out.NNN / .err.NNN, the files pegasus-analyzer shows for a failed job."""
        base = os.path.join("00", "00", name)
        os.makedirs(os.path.dirname(base), exist_ok=True)
        n = len(glob.glob(glob.escape(base) + ".out.[0-9][0-9][0-9]"))
        osutil.write_atomic("%s.out.%03d" % (base, n), "pegasus-sim: node %s ran on %s (DAGMan %s)\n"
                            % (name, osutil.hostname(), self.id))
        osutil.write_atomic("%s.err.%03d" % (base, n), "pegasus-sim: simulated failure of %s: exit status 2"
                            " (PEGASUS_SIM_RUN_FAIL / PEGASUS_SIM_RUN_FAIL_ATTEMPTS / PEGASUS_SIM_JOB_FAILURES)\n"
                            % name if fail else "")

    def failure_report(self):
        return ["ERROR: the following job(s) failed:",
                "---------------------- Job ----------------------",
                "      Node Name: %s" % self.failed,
                "    Node Status: STATUS_ERROR",
                "Node return val: 1",
                "          Error: Job exited with status 2 and POST Script failed with status 1",
                "Job Submit File: 00/00/%s.sub" % self.failed,
                " HTCondor Job ID: (%d.0.0)" % self.node_id,
                "---------------------------------------\t<END>"]

    def finish(self, code, dag_status, first_lines):
        """The end of a run: dagman.out tail, rescue DAG, monitord/DB end, leave the queue."""
        rescue = []
        if code:
            rescue = self.write_rescue()
        self.log(*(first_lines + rescue + [
            "Note: 0 total job deferrals because of -MaxJobs limit (0)",
            "Note: 0 total job deferrals because of -MaxIdle limit (1000)",
            "Note: 0 total job deferrals because of node category throttles",
            "Note: 0 total PRE script deferrals because of -MaxPre limit (20) or DEFER",
            "Note: 0 total POST script deferrals because of -MaxPost limit (20) or DEFER",
            "Note: 0 total HOLD script deferrals because of -MaxHold limit (20) or DEFER"]))
        self.write(out.progress(dag_status, self.counts()) + out.lines(
            "Wrote metrics file %s.metrics." % self.dag,
            "**** condor_scheduniv_exec.%s (condor_DAGMAN) pid %d EXITING WITH STATUS %d"
            % (self.id, os.getpid(), code)))
        if self.monitord:
            self.monitord.internal("DAGMAN_FINISHED", code)
            self.db_call(masterdb.workflow_terminated, self.bd["wf_uuid"], self.attempt - 1, code)
            if self.wf_id is not None:
                self.stampede.workflow_state(self.wf_id, "WORKFLOW_TERMINATED", max(int(time.time()), self._started_ts),
                                             self.attempt - 1, code)
            self.monitord.finished(0)
        osutil.remove(self.dag + ".lock")
        self.leave_queue(code)
        return code

    def write_rescue(self):
        number = self.rescue_no + 1
        path = "%s.rescue%03d" % (self.dag, number)
        failed = [self.failed] if self.failed else []
        osutil.write_atomic(path, "".join([
            "# Rescue DAG file, created after running\n#   the %s DAG file\n" % self.dag,
            "# Created %s UTC\n" % time.strftime("%m/%d/%Y %H:%M:%S", time.gmtime()),
            "# Rescue DAG version: 2.0.1 (partial)\n#\n",
            "# Total number of Nodes: %d\n# Nodes premarked DONE: %d\n" % (len(self.nodes), len(self.done)),
            "# Nodes that failed: %d\n#   %s<ENDLIST>\n\n" % (len(failed), "".join(f + "," for f in failed)),
            "".join("DONE %s\n" % n for n, _ in self.nodes if n in self.done)]))
        return ["Writing Rescue DAG to %s..." % path, "Removing submitted jobs...",
                "Removing any/all submitted HTCondor jobs...",
                "Running: %s -const DAGManJobId==%d" % (osutil.tool("condor_rm"), self.cluster)]

    def leave_queue(self, code):
        ad = self.schedd.get(self.cluster)
        if not ad:
            return
        status = REMOVED if ad.get("JobStatus") == REMOVED else COMPLETED
        self.schedd.update(self.cluster, JobStatus=status, ExitCode=code, CompletionDate=int(time.time()))
        self.schedd.log_event(ad, "005", "Job terminated.\n\t(1) Normal termination (return value %d)" % code)
        osutil.remove(os.path.join(self.schedd.dir, "spool", "condor_scheduniv_exec.%s" % self.id))
