"""A sub-workflow node (STAMPEDE type `dag`), run by its parent DAGMan in-process.

For real, the node is a nested condor_dagman whose PRE script plans the inner
workflow into `00/00/<label>_<id>.NNN` (a new NNN per attempt, with the
unsuffixed name a symlink to the newest, pegasus-facts.md 2.2).  Here the
parent plays that DAGMan and its monitord while the node executes: the inner
submit dir gets its braindump (own wf_uuid, the root's root_wf_uuid), DAG,
dagman.out, jobstate.log and job output, and the root's STAMPEDE DB gets the
inner workflow (parent_wf_id, root_wf_id) with its jobs, and the node's
job_instance names it in `subwf_id`.  The master DB knows only the root.
"""

import os
import time
import uuid

from . import braindump, dagfiles, osutil
from . import dagman_out as out
from .monitord import Monitord

JOBS = ("sim_ID0000001", "sim_ID0000002")  # the inner workflow: two compute jobs, the second may fail


class SubWorkflow:
    def __init__(self, parent, node, commands):
        self.parent = parent
        self.node = node
        self.label = dagfiles.subworkflow_label(node)
        self.link = commands.get("initialdir") or os.path.abspath(os.path.join("00", "00", self.label))

    def run(self, fail, dt):
        """Plan and run the inner workflow (its second job fails if `fail`); True on success."""
        p = self.parent
        self.dir = self.allocate()
        self.bd = self.plan()
        self.monitord = Monitord(self.dir)
        self.cluster = p.schedd.new_cluster()
        self.wf_id = None
        if p.stampede and p.wf_id is not None:
            bd = dict(self.bd, db_url="sqlite:///" + p.stampede.path)
            self.wf_id = p.stampede.workflow(bd, [p.job(n) for n in JOBS], p.wf_id, p.wf_id)
            p.record([], subwf_id=self.wf_id)
        self.start()
        code = 0
        for index, name in enumerate(JOBS):
            outcome = self.run_job(name, fail and index == len(JOBS) - 1, dt / (3 * len(JOBS)))
            if outcome != 0:
                code = outcome
                break
        self.finish(code)
        return code == 0

    def allocate(self):
        """<label>_<id>.NNN, next free NNN; the unsuffixed name links to it (relative)."""
        n = 0
        while os.path.exists("%s.%03d" % (self.link, n)):
            n += 1
        path = "%s.%03d" % (self.link, n)
        os.makedirs(os.path.join(path, "00", "00"))
        if os.path.islink(self.link):
            os.unlink(self.link)
        if not os.path.exists(self.link):
            os.symlink(os.path.basename(path), self.link)
        return path

    def plan(self):
        root = self.parent.bd
        bd = dict(root, wf_uuid=str(uuid.uuid4()), root_wf_uuid=root["root_wf_uuid"], dax_label=self.label,
                  pegasus_wf_name="%s-0" % self.label, timestamp=time.strftime("%Y%m%dT%H%M%S%z"),
                  submit_dir=self.dir, rundir=os.path.basename(self.dir), condor_log="%s-0.log" % self.label,
                  dag="%s-0.dag" % self.label, notify="%s-0.notify" % self.label)
        nodes = [(name, "condorpool") for name in JOBS]
        dagfiles.write_plan(self.dir, bd, nodes, "condorpool", osutil.BINDIR)
        braindump.write(self.dir, bd)
        return bd

    def path(self, *parts):
        return os.path.join(self.dir, *parts)

    def log(self, *texts):
        osutil.append(self.path(self.bd["dag"] + ".dagman.out"), out.lines(*texts))

    def start(self):
        self.log("******************************************************",
                 "** condor_scheduniv_exec.%d.0 (CONDOR_DAGMAN) STARTING UP" % self.cluster,
                 "** PID = %d" % os.getpid(), "******************************************************",
                 "Parsing 1 dagfiles", "Parsing %s ..." % self.bd["dag"],
                 "Dag contains %d total jobs" % len(JOBS))
        self.monitord.started()
        self.monitord.internal("DAGMAN_STARTED", "%d.0" % self.cluster)
        self.ts = time.time()
        if self.wf_id is not None:
            self.parent.stampede.workflow_state(self.wf_id, "WORKFLOW_STARTED", self.ts, 0)

    def run_job(self, name, fail, dt):
        """One inner job: -> 0, 1 (failed) or 2 (removed)."""
        p, st = self.parent, self.parent.stampede
        node_id = p.schedd.new_cluster()
        cid = "%d.0" % node_id
        p.seq += 1
        job_ids = st.job_ids(self.wf_id) if self.wf_id is not None else {}
        ji = None
        if name in job_ids:
            ji = st.submit(job_ids[name], p.seq, cid, "condorpool", self.dir, "00/00/%s.out.000" % name,
                           "00/00/%s.err.000" % name, time.time())
        self.log("Submitting HTCondor Node %s job(s)..." % name, "\tassigned HTCondor ID (%d.0.0)" % node_id)
        self.jobstate(name, [("SUBMIT", cid)])
        p.wait(dt)
        if p.removed:
            return self.aborted(name, cid, ji)
        start = time.time()
        self.jobstate(name, [("EXECUTE", cid)])
        if ji is not None:
            st.states(ji, ["EXECUTE"], start)
            st.update(ji, host_id=st.host(self.wf_id, "condorpool"))
        p.wait(dt)
        if p.removed:
            return self.aborted(name, cid, ji)
        out_text = "pegasus-sim: node %s of sub-workflow %s ran on %s\n" % (name, self.label, osutil.hostname())
        err_text = "pegasus-sim: simulated failure of %s: exit status 2\n" % name if fail else ""
        osutil.write_atomic(self.path("00", "00", name + ".out.000"), out_text)
        osutil.write_atomic(self.path("00", "00", name + ".err.000"), err_text)
        now = time.time()
        self.jobstate(name, [("JOB_TERMINATED", cid), ("JOB_FAILURE", 2) if fail else ("JOB_SUCCESS", 0),
                             ("POST_SCRIPT_STARTED", cid)])
        if ji is not None:
            st.states(ji, ["JOB_TERMINATED", "JOB_FAILURE" if fail else "JOB_SUCCESS", "POST_SCRIPT_STARTED"], now)
            st.update(ji, local_duration=round(now - start, 3), stdout_text=out_text, stderr_text=err_text)
            st.invocation(self.wf_id, ji, p.job(name), start, now - start, 2 if fail else 0)
        p.wait(dt)
        self.log("Node %s job proc (%s.0) %s" % (name, cid, "failed with status 2." if fail
                                                  else "completed successfully."))
        self.jobstate(name, [("POST_SCRIPT_TERMINATED", cid),
                             ("POST_SCRIPT_FAILURE", 1) if fail else ("POST_SCRIPT_SUCCESS", cid)])
        if ji is not None:
            st.states(ji, ["POST_SCRIPT_TERMINATED", "POST_SCRIPT_FAILURE" if fail else "POST_SCRIPT_SUCCESS"],
                      time.time())
            st.update(ji, exitcode=1 if fail else 0)
        return 1 if fail else 0

    def aborted(self, name, cid, ji):
        self.jobstate(name, [("JOB_ABORTED", cid)])
        if ji is not None:
            self.parent.stampede.states(ji, ["JOB_ABORTED"], time.time())
        return 2

    def jobstate(self, name, events):
        self.monitord.job([(name, state, value, "condorpool", self.parent.seq) for state, value in events])

    def finish(self, code):
        self.log("All jobs Completed!" if code == 0 else "Aborting DAG...",
                 "**** condor_scheduniv_exec.%d.0 (condor_DAGMAN) pid %d EXITING WITH STATUS %d"
                 % (self.cluster, os.getpid(), code))
        self.monitord.internal("DAGMAN_FINISHED", code)
        if self.wf_id is not None:
            self.parent.stampede.workflow_state(self.wf_id, "WORKFLOW_TERMINATED", max(time.time(), self.ts),
                                                0, code)
        self.monitord.finished(0)
