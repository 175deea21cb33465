"""The simulated Pegasus/HTCondor toolchain (share/pegasus-sim), through real subprocesses.

Every test gets its own HOME, schedd directory and master DB; the DAGMans it
starts are killed at teardown.  No sleeps: state is polled with a deadline.
"""

import json
import os
import pwd
import re
import signal
import socket
import sqlite3
import subprocess
import sys
import time
import uuid

import pytest

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
SIM = os.path.join(ROOT, "share", "pegasus-sim")
BIN = os.path.join(SIM, "bin")
sys.path.insert(0, os.path.join(SIM, "lib"))

from pegasus_sim import dagman_out  # noqa: E402

from conftest import wait_until  # noqa: E402

BRAINDUMP_KEYS = ["user", "grid_dn", "submit_hostname", "root_wf_uuid", "wf_uuid", "dax", "dax_label",
                  "dax_index", "dax_version", "pegasus_wf_name", "timestamp", "basedir", "submit_dir",
                  "planner", "planner_version", "pegasus_build", "planner_arguments", "jsd", "rundir",
                  "bindir", "vogroup", "uses_pmc", "properties", "condor_log", "dag", "type", "notify"]


class Sim:
    """One isolated simulator world: env, base dir and helpers to drive the tools."""

    def __init__(self, tmp_path):
        self.base = tmp_path
        self.home = tmp_path / "home"
        self.home.mkdir()
        self.db = str(tmp_path / "home" / ".pegasus" / "workflow.db")
        self.schedd = str(tmp_path / "schedd")
        self.env = dict(os.environ, HOME=str(self.home), PATH=BIN + os.pathsep + os.environ.get("PATH", ""),
                        PEGASUS_SIM_MASTER_DB=self.db, PEGASUS_SIM_SCHEDD=self.schedd,
                        PEGASUS_SIM_RUN_SECONDS="0")
        for name in list(self.env):
            if name.startswith("PEGASUS_SIM_") and name not in ("PEGASUS_SIM_MASTER_DB", "PEGASUS_SIM_SCHEDD",
                                                                "PEGASUS_SIM_RUN_SECONDS"):
                del self.env[name]
        self.workflow = tmp_path / "diamond.yml"
        self.workflow.write_text("pegasus: 5.0.4\nname: diamond\n")

    def run(self, tool, *args, env=None, **kw):
        return subprocess.run([os.path.join(BIN, tool)] + [str(a) for a in args], cwd=str(self.base),
                              env=dict(self.env, **(env or {})), stdout=subprocess.PIPE,
                              stderr=subprocess.PIPE, universal_newlines=True, timeout=30, **kw)

    def plan(self, *extra, env=None):
        proc = self.run("pegasus-plan", "--dir", "submit", "--sites", "condorpool", *extra, self.workflow,
                        env=env)
        assert proc.returncode == 0, proc.stderr
        lines = [l for l in proc.stdout.splitlines() if l.startswith("pegasus-run")]
        return lines[-1].split()[-1]

    def start(self, *extra, env=None, run_env=None):
        """Plan and pegasus-run; `env` applies to both, `run_env` to pegasus-run only."""
        submit_dir = self.plan(*extra, env=env)
        proc = self.run("pegasus-run", submit_dir, env=dict(env or {}, **(run_env or {})))
        assert proc.returncode == 0, proc.stdout + proc.stderr
        return submit_dir

    def dagman_out(self, submit_dir):
        path = os.path.join(submit_dir, "diamond-0.dag.dagman.out")
        return open(path).read() if os.path.exists(path) else ""

    def wait_exit(self, submit_dir, runs=1, timeout=10.0):
        """Wait for run number `runs` to print EXITING WITH STATUS n; returns n."""
        def exited():
            b = dagman_out.blocks(self.dagman_out(submit_dir))
            return len(b) >= runs and dagman_out.summarize(b[runs - 1])["exit"] is not None and b
        blocks = wait_until(exited, timeout)
        wait_until(lambda: not os.path.exists(os.path.join(submit_dir, "monitord.pid")), timeout)
        return dagman_out.summarize(blocks[runs - 1])["exit"]

    def queue(self, *args):
        text = self.run("condor_q", "-json", *args).stdout
        return json.loads(text) if text.strip() else []

    def states(self, db=None):
        conn = sqlite3.connect(db or self.db)
        try:
            return conn.execute("SELECT state, restart_count, status FROM master_workflowstate"
                                " ORDER BY timestamp, state").fetchall()
        finally:
            conn.close()

    def kill_all(self):
        if not os.path.isdir(self.schedd):
            return
        for name in os.listdir(self.schedd):
            if name.endswith(".json"):
                pid = json.load(open(os.path.join(self.schedd, name))).get("pid")
                for sig in (signal.SIGCONT, signal.SIGKILL):
                    try:
                        os.kill(pid, sig)
                    except (OSError, TypeError):
                        pass


@pytest.fixture
def sim(tmp_path):
    world = Sim(tmp_path)
    yield world
    world.kill_all()


def test_plan_prints_the_real_success_text_and_writes_the_submit_dir(sim):
    proc = sim.run("pegasus-plan", "--dir", "submit", "--sites", "condorpool", "--cleanup", "leaf",
                   sim.workflow)
    assert proc.returncode == 0
    submit_dir = str(sim.base / "submit" / pwd.getpwuid(os.getuid()).pw_name / "pegasus" / "diamond" / "run0001")
    assert "\npegasus-run  %s\n" % submit_dir in proc.stdout
    assert "I have concretized your abstract workflow." in proc.stdout
    assert re.search(r"^\d{4}\.\d\d\.\d\d \d\d:\d\d:\d\d\.\d{3} \S+:  $", proc.stdout, re.M)
    assert re.search(r"Time taken to execute is \d+\.\d{3} seconds\n$", proc.stdout)
    lines = open(os.path.join(submit_dir, "braindump.yml")).read().splitlines()
    assert [l.split(": ")[0] for l in lines] == BRAINDUMP_KEYS
    bd = {l.split(": ", 1)[0]: json.loads(l.split(": ", 1)[1]) for l in lines}
    assert uuid.UUID(bd["wf_uuid"]).version == 4 and bd["root_wf_uuid"] == bd["wf_uuid"]
    assert bd["submit_hostname"] == socket.gethostname() and bd["bindir"] == os.path.realpath(BIN)
    assert bd["submit_dir"] == submit_dir and bd["dag"] == "diamond-0.dag" and bd["type"] == "dag"
    assert lines[1] == "grid_dn: null" and lines[0].startswith('user: "')
    sub = open(os.path.join(submit_dir, "diamond-0.dag.condor.sub")).read()
    assert '+pegasus_wf_uuid="%s"' % bd["wf_uuid"] in sub and '+pegasus_wf_xformation="pegasus::dagman"' in sub
    assert "_CONDOR_DAGMAN_LOG=diamond-0.dag.dagman.out" in sub and "on_exit_remove\t= (ExitSignal" in sub
    assert len(os.listdir(os.path.join(submit_dir, "00", "00"))) == 4
    assert open(os.path.join(submit_dir, "diamond-0.dag")).read().count("\nJOB ") == 4
    assert sim.plan().endswith("run0002")


def test_plan_json_failure_and_missing_workflow(sim):
    proc = sim.run("pegasus-plan", "--json", "--dir", "submit", sim.workflow)
    data = json.loads(proc.stdout)
    assert proc.returncode == 0 and data["pegasus-run"] == "pegasus-run --json  " + data["submit_dir"]
    assert data["message"].startswith("\n\n\nI have concretized") and "Time taken" in proc.stderr
    proc = sim.run("pegasus-plan", "--dir", "submit", sim.workflow,
                   env={"PEGASUS_SIM_PLAN_FAIL": "1", "PEGASUS_SIM_PLAN_EXIT": "3"})
    assert proc.returncode == 3 and "[FATAL ERROR]" in proc.stderr and "pegasus-run" not in proc.stdout
    assert not list((sim.base / "submit").rglob("run0002/braindump.yml"))
    proc = sim.run("pegasus-plan", "--dir", "submit", sim.base / "missing.yml")
    assert proc.returncode == 1 and "[FATAL ERROR]" in proc.stderr


def test_zero_second_run_writes_complete_files_and_master_db(sim):
    submit_dir = sim.plan()
    t0 = time.monotonic()
    proc = sim.run("pegasus-run", submit_dir)
    assert proc.returncode == 0
    assert "Submitting to condor diamond-0.dag.condor.sub" in proc.stderr
    assert re.search(r"^1 job\(s\) submitted to cluster \d+\.$", proc.stderr, re.M)
    assert "pegasus-status -l %s\n" % submit_dir in proc.stdout and "pegasus-remove %s\n" % submit_dir in proc.stdout
    assert sim.wait_exit(submit_dir) == 0 and time.monotonic() - t0 < 3
    text = sim.dagman_out(submit_dir)
    run = dagman_out.last_run(text)
    assert "Parsing diamond-0.dag ..." in text and "All jobs Completed!" in text
    assert run["counts"]["Done"] == run["total"] == 4 and run["pid"] and run["dag_status"] == 0
    internal = [l.split(" ", 1)[1] for l in open(os.path.join(submit_dir, "jobstate.log")) if "INTERNAL" in l]
    assert internal == ["INTERNAL *** MONITORD_STARTED ***\n", "INTERNAL *** DAGMAN_STARTED %s ***\n" % run["id"],
                        "INTERNAL *** DAGMAN_FINISHED 0 ***\n", "INTERNAL *** MONITORD_FINISHED 0 ***\n"]
    assert os.path.exists(os.path.join(submit_dir, "monitord.done"))
    assert sim.states() == [("WORKFLOW_STARTED", 0, None), ("WORKFLOW_TERMINATED", 0, 0)]
    conn = sqlite3.connect(sim.db)
    assert conn.execute("SELECT version FROM dbversion").fetchall() == [("14",)]
    assert {"ensemble", "ensemble_workflow", "trigger", "master_workflow"} <= {
        r[0] for r in conn.execute("SELECT name FROM sqlite_master WHERE type='table'")}
    assert conn.execute("SELECT submit_dir, archived FROM master_workflow").fetchall() == [(submit_dir, 0)]
    conn.close()
    wait_until(lambda: sim.queue() == [])
    assert "Success" in sim.run("pegasus-status", "-l", submit_dir).stdout
    assert "Workflow Status    : success" in sim.run("pegasus-analyzer", submit_dir).stdout


def test_failed_run_leaves_rescue_dag_and_rerun_succeeds(sim):
    submit_dir = sim.start("-Dpegasus.sim.run.fail.attempts=1")
    assert sim.wait_exit(submit_dir) == 1
    assert os.path.exists(os.path.join(submit_dir, "diamond-0.dag.rescue001"))
    text = sim.dagman_out(submit_dir)
    assert "Aborting DAG..." in text and "DAG status: 2 (DAG_STATUS_NODE_FAILED)" in text
    report = sim.run("pegasus-analyzer", submit_dir)
    assert report.returncode == 0 and "# jobs failed      :      1 (25.00%)" in report.stdout
    assert "sim_ID0000002" in report.stdout and "simulated failure" in report.stdout
    assert "Failure" in sim.run("pegasus-status", submit_dir).stdout
    assert sim.run("pegasus-run", submit_dir).returncode == 0
    assert sim.wait_exit(submit_dir, runs=2) == 0
    second = dagman_out.blocks(sim.dagman_out(submit_dir))[1]
    assert "Found rescue DAG number 1; running diamond-0.dag.rescue001" in second
    assert sim.states() == [("WORKFLOW_STARTED", 0, None), ("WORKFLOW_TERMINATED", 0, 1),
                            ("WORKFLOW_STARTED", 1, None), ("WORKFLOW_TERMINATED", 1, 0)]


def test_hold_release_and_remove_a_running_dagman(sim):
    submit_dir = sim.start(env={"PEGASUS_SIM_RUN_SECONDS": "30"})
    wait_until(lambda: "Submitting HTCondor Node" in sim.dagman_out(submit_dir))
    assert sim.run("pegasus-run", submit_dir).returncode == 1  # already running
    cluster = dagman_out.last_run(sim.dagman_out(submit_dir))["id"].split(".")[0]
    assert sim.run("condor_hold", cluster).returncode == 0
    assert [ad["JobStatus"] for ad in sim.queue(cluster)] == [5]
    wait_until(lambda: dagman_out.last_run(sim.dagman_out(submit_dir))["held"] == 1)
    assert sim.run("condor_release", cluster).returncode == 0
    wait_until(lambda: dagman_out.last_run(sim.dagman_out(submit_dir))["held"] == 0)
    assert [ad["JobStatus"] for ad in sim.queue(cluster)] == [2]
    proc = sim.run("pegasus-remove", submit_dir)
    assert proc.returncode == 0 and "\u2728 Success" in proc.stdout
    assert sim.wait_exit(submit_dir) == 2
    text = sim.dagman_out(submit_dir)
    assert "Received SIGUSR1" in text and "DAG status: 4 (DAG_STATUS_RM)" in text
    assert sim.states()[-1] == ("WORKFLOW_TERMINATED", 0, 2)
    assert sim.run("pegasus-remove", submit_dir).returncode == 42


def test_sudden_death_then_rerun(sim):
    submit_dir = sim.start(run_env={"PEGASUS_SIM_DAGMAN_DIE": "1"})
    pid = wait_until(lambda: (dagman_out.last_run(sim.dagman_out(submit_dir)) or {}).get("pid"))
    wait_until(lambda: not os.path.exists("/proc/%d" % pid) or open("/proc/%d/stat" % pid).read().split(")")[1]
               .split()[0] == "Z")
    assert "EXITING" not in sim.dagman_out(submit_dir)
    assert os.path.exists(os.path.join(submit_dir, "monitord.pid"))
    assert sim.states() == [("WORKFLOW_STARTED", 0, None)]
    assert sim.queue() == []  # reaped: the DAGMan is gone
    assert sim.run("pegasus-run", submit_dir).returncode == 0
    assert sim.wait_exit(submit_dir, runs=2) == 0
    assert "INTERNAL *** DAGMAN_FINISHED 2 ***" in open(os.path.join(submit_dir, "jobstate.log")).read()
    assert [s[2] for s in sim.states()] == [None, 2, None, 0]


def test_start_delay_keeps_the_dagman_idle_then_removal_while_idle(sim):
    submit_dir = sim.start(env={"PEGASUS_SIM_START_DELAY": "0.5"})
    wf_uuid = json.loads(re.search(r"^wf_uuid: (.*)$", open(os.path.join(submit_dir, "braindump.yml")).read(),
                                   re.M).group(1))
    constraint = 'pegasus_wf_uuid=="%s" && pegasus_wf_xformation=="pegasus::dagman"' % wf_uuid
    assert [ad["JobStatus"] for ad in sim.queue("-constraint", constraint)] == [1]
    assert sim.dagman_out(submit_dir) == ""
    assert sim.wait_exit(submit_dir) == 0
    idle = sim.start(env={"PEGASUS_SIM_START_DELAY": "30"})
    assert sim.run("pegasus-remove", idle).returncode == 0
    wait_until(lambda: sim.queue() == [])
    assert sim.dagman_out(idle) == ""


def test_concurrent_runs_get_distinct_clusters_and_all_finish(sim):
    dirs = [sim.plan() for _ in range(6)]
    procs = [subprocess.Popen([os.path.join(BIN, "pegasus-run"), d], env=sim.env, stdout=subprocess.PIPE,
                              stderr=subprocess.PIPE, universal_newlines=True) for d in dirs]
    clusters = {re.search(r"cluster (\d+)\.", p.communicate()[1]).group(1) for p in procs}
    assert len(clusters) == 6
    assert all(sim.wait_exit(d) == 0 for d in dirs)
    assert len(sim.states()) == 12


def test_submit_option_property_db_and_pegasus_run_knob(sim):
    other = str(sim.base / "other.db")
    proc = sim.run("pegasus-plan", "--dir", "submit", "--submit", "-Dpegasus.catalog.master.url=sqlite:///" + other,
                   sim.workflow)
    assert proc.returncode == 0 and "pegasus-run  " not in proc.stdout and "pegasus-status -l " in proc.stdout
    submit_dir = re.search(r"pegasus-remove (\S+)", proc.stdout).group(1)
    assert sim.wait_exit(submit_dir) == 0
    assert sim.states(other)[-1] == ("WORKFLOW_TERMINATED", 0, 0) and not os.path.exists(sim.db)
    failing = sim.plan("-DPEGASUS_SIM_PEGASUS_RUN_EXIT=5")
    assert sim.run("pegasus-run", failing).returncode == 5 and sim.queue() == []
    proc = sim.run("pegasus-run", sim.base)
    assert proc.returncode == 1 and "is not a valid submit-dir" in proc.stdout
    assert sim.run("pegasus-analyzer", sim.base).returncode == 1


def test_halt_then_pegasus_run_releases_and_finishes(sim):
    submit_dir = sim.start(env={"PEGASUS_SIM_RUN_SECONDS": "1"})
    wait_until(lambda: "Submitting HTCondor Node" in sim.dagman_out(submit_dir))
    assert sim.run("pegasus-halt", submit_dir).returncode == 0
    assert sim.wait_exit(submit_dir) == 1
    assert "DAG status: 6 (DAG_STATUS_HALTED)" in sim.dagman_out(submit_dir)
    proc = sim.run("pegasus-run", submit_dir)
    assert proc.returncode == 0 and "Found a previously halted workflow" in proc.stdout
    assert sim.wait_exit(submit_dir, runs=2) == 0


def test_condor_submit_dag_no_submit(sim):
    dag = sim.base / "plain.dag"
    dag.write_text("JOB a a.sub\n")
    proc = sim.run("condor_submit_dag", "-no_submit", dag.name)
    assert proc.returncode == 0 and "-no_submit given" in proc.stdout
    assert "pegasus-sim-dagman" in (sim.base / "plain.dag.condor.sub").read_text()
