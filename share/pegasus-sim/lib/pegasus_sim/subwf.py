"""A sub-workflow node (STAMPEDE type `dag`): its own DAGMan run, played by the parent's process.

For real, the node's PRE script plans the inner workflow into
`00/00/<label>_<id>.NNN` (a new NNN per try, the unsuffixed name a symlink to the
newest, pegasus-facts.md 2.2) and the node's job is a nested condor_dagman
writing its own dagman.out, which the root's monitord follows.  Here the parent
plans it when it submits the node and runs it, in the inner directory, while the
node executes: same dagman.out lines, jobstate.log and job files as a root run.
The simulator's writer adds the inner workflow to the root's STAMPEDE DB
(parent_wf_id, root_wf_id, the node's `subwf_id`); the master DB knows only the root.
"""

import os
import time
import uuid

from . import braindump, dagfiles, osutil
from .dagman import DagRun
from .record import Recorder

JOBS = ("sim_ID0000001", "sim_ID0000002")  # the inner workflow: two compute jobs, the second may fail


class SubRun(DagRun):
    @classmethod
    def plan(cls, parent, node):
        """Plan the inner workflow into the next <link>.NNN -> its run, ready to start."""
        commands = parent.subs[node][0]
        link = commands.get("initialdir") or os.path.abspath(os.path.join("00", "00", node))
        path = _allocate(link)
        root = parent.bd
        label = dagfiles.subworkflow_label(node)
        bd = dict(root, wf_uuid=str(uuid.uuid4()), root_wf_uuid=root["root_wf_uuid"], dax_label=label,
                  pegasus_wf_name="%s-0" % label, timestamp=time.strftime("%Y%m%dT%H%M%S%z"),
                  submit_dir=path, rundir=os.path.basename(path), condor_log="%s-0.log" % label,
                  dag="%s-0.dag" % label, notify="%s-0.notify" % label)
        dagfiles.write_plan(path, bd, [(name, "condorpool") for name in JOBS], "condorpool", osutil.BINDIR)
        braindump.write(path, bd)
        return cls(parent, path, bd["dag"])

    def __init__(self, parent, path, dag):
        self.parent = parent
        here = os.getcwd()
        os.chdir(path)
        try:
            super().__init__(dag, parent.schedd.new_cluster(), parent.flags)
        finally:
            os.chdir(here)
        self.wait = parent.wait
        self.rec = Recorder(self, parent.rec) if parent.rec else None

    def run(self, fail, dt):
        """The inner DAGMan run (its second job fails if `fail`) -> True on success."""
        here = os.getcwd()
        os.chdir(self.dir)
        try:
            self.started = True
            self.tick()
            self.write(self.header(["condor_dagman", "-p", "0", "-f", "-l", ".", "-Dag", self.dag]))
            self.parsing()
            if self.rec:
                self.rec.started(1)
            self.progress(0)
            halted = self.run_nodes(dt, len(self.nodes) - 1, fail, 0)
            code, dag_status, first_lines = self.end_status(halted)
            self.ending(code, dag_status, first_lines, 0)
            if self.rec:
                self.rec.finished(code, self.removed)
        finally:
            os.chdir(here)
        return code == 0


def _allocate(link):
    """<link>.NNN, the next free NNN; the unsuffixed name links to it (relative)."""
    n = 0
    while os.path.exists("%s.%03d" % (link, n)):
        n += 1
    path = "%s.%03d" % (link, n)
    os.makedirs(os.path.join(path, "00", "00"))
    if os.path.islink(link):
        os.unlink(link)
    if not os.path.exists(link):
        os.symlink(os.path.basename(path), link)
    return path
