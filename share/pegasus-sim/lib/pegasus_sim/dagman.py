"""The fake DAGMan job: condor_dagman, pegasus-dagman and pegasus-monitord in one process.

Started detached by the fake schedd (schedd.py).  It runs the DAG's nodes as a
chain in simulated time, appending to <dag>.dagman.out what condor_dagman would.
Then either Pegasus's own pegasus-monitord, when installed (realmonitord.py),
or the simulator's writer (record.py) turns those lines into jobstate.log, the
STAMPEDE DB and the master DB, as monitord does.  Knobs: knobs.py.
Signals: SIGUSR1 = condor_rm, SIGUSR2 = condor_hold (log held jobs, then stop).
"""

import glob
import os
import re
import select
import signal
import sys
import time

from . import CONDOR_VERSION, braindump, knobs, osutil, realmonitord
from . import dagman_out as out
from .record import Recorder
from .schedd import COMPLETED, HELD, REMOVED, RUNNING, Schedd, parse_submit

EVENT_STEPS = 4  # submit, execute, terminate, post script: the waits per node
POST_SCRIPT = re.compile(r"SCRIPT (?:PRE|POST)\s+(\S+)\s(\S+)\s(.*)", re.IGNORECASE)  # monitord's reading


def main(argv, early=()):
    dag = argv[argv.index("-Dag") + 1] if "-Dag" in argv else None
    if not dag or not os.path.isfile(dag):
        sys.stderr.write("pegasus-sim-dagman: no readable -Dag file given\n")
        return 1
    m = re.search(r"condor_scheduniv_exec\.(\d+)\.", os.path.basename(argv[0]))
    cluster = int(m.group(1)) if m else int(os.environ.get("CONDOR_ID", "0").split(".")[0])
    return RootRun(dag, cluster, argv, early).run()


def read_dag(path):
    """[(node, submit file)] in file order; the simulator runs them as a chain."""
    nodes = []
    for line in osutil.read_text(path).splitlines():
        parts = line.split()
        if len(parts) >= 3 and parts[0] == "JOB":
            nodes.append((parts[1], parts[2]))
    return nodes


def post_scripts(path):
    """{node: (executable, arguments)} of the DAG's SCRIPT POST lines."""
    found = {}
    for line in osutil.read_text(path).splitlines():
        m = POST_SCRIPT.search(line)
        if m and line.split()[1].upper() == "POST":
            found[m.group(1)] = (m.group(2), m.group(3))
    return found


def latest_rescue(dag):
    """(number, path) of the newest <dag>.rescueNNN, or (0, None)."""
    found = [(int(p[-3:]), p) for p in glob.glob(glob.escape(dag) + ".rescue[0-9][0-9][0-9]")]
    return max(found) if found else (0, None)


def rescue_done(path):
    return {line.split()[1] for line in osutil.read_text(path).splitlines()
            if line.startswith("DONE ") and len(line.split()) > 1}


class Flags:
    """What the signal handlers record; a nested (sub-workflow) run shares its parent's."""

    def __init__(self):
        self.removed = False
        self.hold_requested = False


class DagRun:
    """One DAGMan run over one DAG in the current directory: the node chain and its dagman.out."""

    def __init__(self, dag, cluster, flags, out_file=None):
        self.dag, self.cluster, self.flags = dag, cluster, flags
        self.id = "%d.0" % cluster
        self.out = os.path.abspath(out_file or dag + ".dagman.out")
        self.dir = os.getcwd()
        self.schedd = Schedd()
        self.bd = braindump.read(".")  # None: a plain DAG, no Pegasus monitoring
        self.nodes = read_dag(dag)
        self.subs = {name: parse_submit(sub) for name, sub in self.nodes}
        self.posts = post_scripts(dag)
        self.sites = {name: attrs.get("pegasus_site", "local") for name, (_, attrs) in self.subs.items()}
        self.done, self.failed = set(), None
        self.current, self.phase, self.node_id, self.t = None, None, None, time.time()
        self.rec, self.sub_run, self.started = None, None, False

    @property
    def removed(self):
        return self.flags.removed

    # -- output helpers -----------------------------------------------------
    def tick(self):
        """The time of the next dagman.out event; monitord keeps its whole second."""
        self.t = time.time()
        return int(self.t)

    def write(self, text):
        osutil.append(self.out, text)

    def log(self, *texts):
        self.write(out.lines(*texts, t=self.t))

    def progress(self, status, held=0):
        self.write(out.progress(status, self.counts(), held=held, t=self.t))

    def event(self, ulog):
        return "Event: %s for HTCondor Node %s (%d.0.0) {%s}" % (ulog, self.current, self.node_id,
                                                               out.stamp(self.t))

    def counts(self):
        total, done = len(self.nodes), len(self.done)
        left = total - done - (1 if self.failed else 0) - (1 if self.phase else 0)
        futile = left if self.failed else 0
        ready = 1 if left > futile and not self.phase else 0
        return {"Done": done, "Queued": int(self.phase == "queued"), "Post": int(self.phase == "post"),
                "Ready": ready, "Un-Ready": left - futile - ready, "Failed": int(bool(self.failed)),
                "Futile": futile}

    def header(self, argv):
        args = ["condor_scheduniv_exec.%s" % self.id] + argv[1:]
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
            "DAG Input file is %s" % self.dag, t=self.t)

    def parsing(self, rescue_no=0, rescue=None):
        lines = []
        if rescue:
            lines = ["Found rescue DAG number %d; running %s in combination with normal DAG file"
                     % (rescue_no, rescue), "USING RESCUE DAG %s" % rescue]
        self.log(*(lines + ["Parsing 1 dagfiles", "Parsing %s ..." % self.dag,
                            "Dag contains %d total jobs" % len(self.nodes), "Bootstrapping...",
                            "Number of pre-completed nodes: %d" % len(self.done)]))

    # -- the nodes ------------------------------------------------------------
    def run_nodes(self, dt, fail_at, fail, retries):
        """The chain; the node at `fail_at` fails (always if `fail`, else its first `retries` tries)."""
        for index, (name, sub) in enumerate(self.nodes):
            if self.removed or self.failed:
                return None
            if name in self.done:
                continue
            if os.path.exists(self.dag + ".halt"):
                return "halted"
            tries = 1 + (retries if index == fail_at else 0)
            for attempt in range(1, tries + 1):
                fails = index == fail_at and (fail or attempt <= retries)
                if not self.run_node(name, sub, fails, dt, retry=attempt < tries):
                    break
                self.log("Retrying node %s (retry #%d of %d)..." % (name, attempt, retries))
        return None

    def run_node(self, name, sub, fail, dt, retry=False):
        """One try of a node through submit, execute, terminate and POST (stops early on condor_rm).
        True when it failed and DAGMan retries it (`retry`: a retry is left)."""
        self.submit(name, sub)
        if self.stalls():
            self.wait(None)  # this job never ends: only condor_rm gets us out
        for step in range(3):
            self.wait(dt)
            if self.removed:
                return False
            if step == 0:
                fail = self.execute(name, fail, dt)
            elif step == 1:
                self.terminate(name, fail)
            else:
                self.post(name, fail, retry)
        self.wait(dt)
        return fail and retry

    def stalls(self):
        return False

    def submit(self, name, sub):
        self.current, self.phase = name, "queued"
        self.node_id = self.schedd.new_cluster()
        self.try_no = self.tries_so_far(name)
        sub_run = self.plan_subworkflow(name)  # what the node's PRE script does for real
        self.tick()
        self.log("Submitting HTCondor Node %s job(s)..." % name,
                 "Submitting node %s from file %s using direct job submission" % (name, sub),
                 "\tassigned HTCondor ID (%d.0.0)" % self.node_id, "Just submitted 1 job this cycle...")
        self.progress(0)
        self.log("Currently monitoring 1 HTCondor log file(s)", self.event("ULOG_SUBMIT"),
                 "Number of idle job procs: 1")
        if self.rec:
            self.rec.submit(name, sub_run)
        self.sub_run = sub_run

    def tries_so_far(self, name):
        """Earlier submissions of the node (a dead DAGMan's included): monitord numbers .out.NNN by them."""
        mark = "Event: ULOG_SUBMIT for HTCondor Node %s (" % name
        return osutil.read_text(self.out).count(mark)

    def plan_subworkflow(self, name):
        if self.subs[name][1].get("pegasus_wf_xformation") != "condor::dagman":
            return None
        from .subwf import SubRun  # only hierarchical plans need it
        return SubRun.plan(self, name)

    def execute(self, name, fail, dt):
        """ULOG_EXECUTE; a sub-workflow node runs its workflow now.  -> whether the node fails."""
        self.tick()
        self.log("Currently monitoring 1 HTCondor log file(s)", self.event("ULOG_EXECUTE"),
                 "Number of idle job procs: 0")
        if self.rec:
            self.rec.execute()
        if self.sub_run is not None:
            fail = not self.sub_run.run(fail, dt / (EVENT_STEPS * 2))
        return fail

    def terminate(self, name, fail):
        self.write_job_files(name, fail)
        self.phase = "post"
        self.tick()
        self.log("Currently monitoring 1 HTCondor log file(s)", self.event("ULOG_JOB_TERMINATED"),
                 "Number of idle job procs: 0",
                 "Node %s job proc (%d.0.0) %s" % (name, self.node_id, "failed with status 2." if fail
                                                   else "completed successfully."),
                 "Node %s job completed" % name, "Running POST script of Node %s..." % name)
        self.progress(0)
        if self.rec:
            self.rec.terminate(fail)

    def post(self, name, fail, retry=False):
        self.phase = None
        if fail and not retry:
            self.failed = name
        elif not fail:
            self.done.add(name)
        result = (["POST Script of node %s failed with status 1" % name, "POST for Node %s returned 1" % name]
                  if fail else ["POST Script of node %s completed successfully." % name])
        self.tick()
        self.log("Currently monitoring 1 HTCondor log file(s)", self.event("ULOG_POST_SCRIPT_TERMINATED"),
                 *result)
        self.progress(2 if fail and not retry else 0)
        if self.rec:
            self.rec.post(fail)
        if not fail or retry:
            self.current = None

    def write_job_files(self, name, fail):
        """<node>.out.NNN / .err.NNN, the files pegasus-analyzer shows for a failed job."""
        base = os.path.join("00", "00", "%s.%%s.%03d" % (name, self.try_no))
        os.makedirs(os.path.join("00", "00"), exist_ok=True)
        osutil.write_atomic(base % "out", "pegasus-sim: node %s ran on %s (DAGMan %s)\n"
                            % (name, osutil.hostname(), self.id))
        osutil.write_atomic(base % "err", "pegasus-sim: simulated failure of %s: exit status 2"
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

    def ending(self, code, dag_status, first_lines, rescue_no):
        """The dagman.out tail of a run: what went wrong, rescue DAG, statistics, EXITING."""
        rescue = self.write_rescue(rescue_no) if code else []
        self.tick()
        self.log(*(first_lines + rescue + [
            "Note: 0 total job deferrals because of -MaxJobs limit (0)",
            "Note: 0 total job deferrals because of -MaxIdle limit (1000)",
            "Note: 0 total job deferrals because of node category throttles",
            "Note: 0 total PRE script deferrals because of -MaxPre limit (20) or DEFER",
            "Note: 0 total POST script deferrals because of -MaxPost limit (20) or DEFER",
            "Note: 0 total HOLD script deferrals because of -MaxHold limit (20) or DEFER"]))
        self.progress(dag_status)
        self.log("Wrote metrics file %s.metrics." % self.dag,
                 "**** condor_scheduniv_exec.%s (condor_DAGMAN) pid %d EXITING WITH STATUS %d"
                 % (self.id, os.getpid(), code))

    def end_status(self, halted):
        """(exit code, DAG status, first lines of the tail) of a run that stopped."""
        if halted:
            return 1, 6, ["Exiting because DAG is halted and no jobs or scripts are running"]
        if self.removed:
            return 2, 4, ["Received SIGUSR1", "Aborting DAG..."]
        if self.failed:
            return 1, 2, self.failure_report() + ["Aborting DAG..."]
        return 0, 0, ["All jobs Completed!"]

    def write_rescue(self, rescue_no):
        number = rescue_no + 1
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


class RootRun(DagRun):
    """The DAGMan job the schedd started: the queue, signals, runs counted in dagman.out, the master DB."""

    def __init__(self, dag, cluster, argv, early=()):
        self.argv = argv
        self.flags = Flags()
        self._signals(early)
        self.knobs = knobs.load(braindump.properties_of(".", braindump.read(".")))
        super().__init__(dag, cluster, self.flags, os.environ.get("_CONDOR_DAGMAN_LOG"))
        real = realmonitord.command() if self.bd else None
        self.rec = Recorder(self) if self.bd and not real else None
        self.monitord = None
        if real:  # started as pegasus-dagman starts it, before DAGMan writes a line
            self.monitord = realmonitord.start(real, self.out)
        self.submits = 0
        self.paced_until = None  # SCHEDD_DELAY: where the last wait ended, by the clock

    # -- signals and waiting ------------------------------------------------
    def _signals(self, early=()):
        self.wake, w = os.pipe()
        os.set_blocking(w, False)
        os.set_blocking(self.wake, False)
        signal.set_wakeup_fd(w)
        signal.signal(signal.SIGUSR1, lambda *a: setattr(self.flags, "removed", True))
        signal.signal(signal.SIGUSR2, lambda *a: setattr(self.flags, "hold_requested", True))
        # A caller that blocked these (a daemon thread's mask survives exec) must not mute condor_rm.
        signal.pthread_sigmask(signal.SIG_UNBLOCK, {signal.SIGUSR1, signal.SIGUSR2, signal.SIGCONT})
        self.flags.removed = signal.SIGUSR1 in early  # signals that came before these handlers
        self.flags.hold_requested = signal.SIGUSR2 in early

    def wait(self, seconds):
        """Sleep in simulated time (None: until condor_rm), waking at once for condor_rm / condor_hold."""
        deadline = None if seconds is None else self._deadline(seconds)
        while not self.removed:
            if self.flags.hold_requested:
                self.flags.hold_requested = False
                self._hold()
            left = None if deadline is None else deadline - time.monotonic()
            if left is not None and left <= 0:
                return
            select.select([self.wake], [], [], left)
            try:
                os.read(self.wake, 512)
            except BlockingIOError:
                pass

    def _deadline(self, seconds):
        """With SCHEDD_DELAY each wait ends `seconds` after the previous one ended, so
        the writes in between do not stretch the run (a real DAGMan's bookkeeping does
        not stretch its jobs); otherwise `seconds` from now."""
        now = time.monotonic()
        start = self.paced_until if self.knobs["SCHEDD_DELAY"] and self.paced_until else now
        self.paced_until = start + seconds
        return self.paced_until

    def _hold(self):
        """Held by condor_hold: log our running job as held, stop until condor_release."""
        ad = self.schedd.get(self.cluster)
        if not ad or ad.get("JobStatus") != HELD:
            return
        reason = ad.get("HoldReason")
        self._job_event("ULOG_JOB_HELD", ["  Hold reason: %s" % reason], held=1)
        if self.rec and self.current:
            self.rec.held(reason)
        os.kill(os.getpid(), signal.SIGSTOP)
        self.paced_until = None  # the time held is not made up for
        if not self.removed:  # condor_rm of a held job continues us only to abort
            self._job_event("ULOG_JOB_RELEASED", [], held=0)
            if self.rec and self.current:
                self.rec.released()

    def _job_event(self, ulog, extra, held):
        if self.started and self.current:
            self.tick()
            self.log("Currently monitoring 1 HTCondor log file(s)", self.event(ulog), *extra)
            self.progress(0, held=held)

    # -- the run ------------------------------------------------------------
    def run(self):
        self.wait(self.knobs["START_DELAY"] + self.knobs["SCHEDD_DELAY"])  # idle in the queue
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
        pending = [n for n in self.nodes if n[0] not in self.done]
        retries = self.knobs["JOB_FAILURES"]
        dt = self._run_budget() / max(1, EVENT_STEPS * (len(pending) + retries))
        self.paced_until = None  # paced from here
        fail_at = max(len(self.nodes) // 2, len(self.nodes) - len(pending))
        halted = self.run_nodes(dt, fail_at, knobs.attempt_fails(self.knobs, self.attempt, "RUN_FAIL"), retries)
        return self.finish(*self.end_status(halted))

    def stalls(self):
        self.submits += 1
        return self.submits == self.knobs["STALL_AT"]

    def _run_budget(self):
        """RUN_SECONDS counted from when pegasus-run started (PEGASUS_SIM_T0), less only
        the tools' own start-up: the deliberate START_DELAY in the queue is not run time
        (SCHEDD_DELAY is)."""
        try:
            elapsed = time.time() - float(os.environ["PEGASUS_SIM_T0"])
        except (KeyError, ValueError):
            elapsed = 0.0
        overhead = elapsed - self.knobs["START_DELAY"]
        return max(0.0, self.knobs["RUN_SECONDS"] - max(0.0, overhead))

    def start(self, previous):
        """The STARTING UP block; a re-run starts in a later second than the last run's last line,
        so the two runs' workflow states never share a timestamp (monitord's UNIQUE key)."""
        self.started = True
        self.rescue_no, rescue = latest_rescue(self.dag)
        if rescue:
            self.done = rescue_done(rescue)
        if previous:
            _next_second(os.stat(self.out).st_mtime)
        self.tick()
        self.write(self.header(self.argv))
        self.parsing(self.rescue_no, rescue)
        if self.rec:
            self.rec.started(self.attempt, previous and out.summarize(previous[-1])["exit"] is None)
        osutil.write_atomic(self.dag + ".lock", "%d\n" % os.getpid())
        self.progress(0)
        self.log("Registering condor_event_timer...")

    def die(self):
        """Sudden death: a node in flight, then gone without a word (monitord.pid stays)."""
        name, sub = next(((n, s) for n, s in self.nodes if n not in self.done), (None, None))
        if name:
            self.submit(name, sub)
        os._exit(137)

    def finish(self, code, dag_status, first_lines):
        """The end of a run: dagman.out tail, monitord's end, leave the queue."""
        self.ending(code, dag_status, first_lines, self.rescue_no)
        if self.rec:
            self.rec.finished(code, self.removed)
        realmonitord.wait(self.monitord)
        osutil.remove(self.dag + ".lock")
        self.leave_queue(code)
        return code

    def leave_queue(self, code):
        ad = self.schedd.get(self.cluster)
        if not ad:
            return
        status = REMOVED if ad.get("JobStatus") == REMOVED else COMPLETED
        self.schedd.update(self.cluster, JobStatus=status, ExitCode=code, CompletionDate=int(time.time()))
        self.schedd.log_event(ad, "005", "Job terminated.\n\t(1) Normal termination (return value %d)" % code)
        osutil.remove(os.path.join(self.schedd.dir, "spool", "condor_scheduniv_exec.%s" % self.id))


def _next_second(after):
    """Sleep until the wall clock is in a later whole second than `after`."""
    while int(time.time()) <= int(after):
        time.sleep(int(after) + 1 - time.time() + 0.001)
