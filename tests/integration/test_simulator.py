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

from conftest import REPO

SIM = os.path.join(REPO, "share", "pegasus-sim")
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
    assert report.returncode == 2 and "# jobs failed      :      1 (25.00%)" in report.stdout
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


# ---- the STAMPEDE DB the simulated monitord writes (pegasus-facts.md 3.5) --------------------

JOB_STATES_OK = ["SUBMIT", "EXECUTE", "JOB_TERMINATED", "JOB_SUCCESS", "POST_SCRIPT_STARTED",
                 "POST_SCRIPT_TERMINATED", "POST_SCRIPT_SUCCESS"]


def stampede(sim, submit_dir):
    """The STAMPEDE DB named by the master DB's db_url for this submit dir."""
    conn = sqlite3.connect(sim.db)
    url, = conn.execute("SELECT db_url FROM master_workflow WHERE submit_dir = ?", (submit_dir,)).fetchone()
    conn.close()
    assert url == "sqlite:///%s/diamond-0.stampede.db" % submit_dir
    return sqlite3.connect(url[len("sqlite:///"):])


def instances(db, wf_id=None):
    """{job name: [(try seq, exitcode), ...]} in submit order."""
    out = {}
    sql = ("SELECT j.exec_job_id, ji.job_submit_seq, ji.exitcode FROM job j JOIN job_instance ji"
           " ON ji.job_id = j.job_id%s ORDER BY ji.job_submit_seq" % (" WHERE j.wf_id = ?" if wf_id else ""))
    for name, seq, code in db.execute(sql, (wf_id,) if wf_id else ()):
        out.setdefault(name, []).append((seq, code))
    return out


def started(sim):
    """The master DB has a state row (False while the DAGMan is still creating it)."""
    try:
        return os.path.exists(sim.db) and sim.states()
    except sqlite3.Error:
        return False


def test_successful_run_writes_its_stampede_db(sim):
    submit_dir = sim.start()
    assert sim.wait_exit(submit_dir) == 0
    db = stampede(sim, submit_dir)
    bd = {l.split(": ", 1)[0]: json.loads(l.split(": ", 1)[1])
          for l in open(os.path.join(submit_dir, "braindump.yml")).read().splitlines()}
    assert db.execute("SELECT version FROM dbversion").fetchall() == [("14",)]
    wf = db.execute("SELECT wf_id, wf_uuid, submit_dir, dax_label, parent_wf_id, root_wf_id, dag_file_name"
                    " FROM workflow").fetchall()
    assert wf == [(1, bd["wf_uuid"], submit_dir, "diamond", None, 1, "diamond-0.dag")]
    states = db.execute("SELECT state, restart_count, status FROM workflowstate ORDER BY timestamp, state")
    assert states.fetchall() == sim.states()
    jobs = db.execute("SELECT exec_job_id, type_desc, submit_file FROM job ORDER BY job_id").fetchall()
    assert [j[:2] for j in jobs] == [("create_dir_diamond_0_local", "create-dir"), ("sim_ID0000001", "compute"),
                                     ("sim_ID0000002", "compute"), ("cleanup_diamond_0_local", "cleanup")]
    assert all(os.path.exists(os.path.join(submit_dir, j[2])) for j in jobs)
    assert [v for v in instances(db).values()] == [[(1, 0)], [(2, 0)], [(3, 0)], [(4, 0)]]
    for ji, in db.execute("SELECT job_instance_id FROM job_instance"):
        assert [r[0] for r in db.execute("SELECT state FROM jobstate WHERE job_instance_id = ?"
                                         " ORDER BY jobstate_submit_seq", (ji,))] == JOB_STATES_OK
    row = db.execute("SELECT ji.stdout_file, ji.stdout_text, ji.host_id, ji.site, ji.sched_id FROM job_instance ji"
                     " JOIN job j ON j.job_id = ji.job_id WHERE j.exec_job_id = 'sim_ID0000001'").fetchone()
    text = open(os.path.join(submit_dir, row[0])).read()
    assert row[1] == "#@ 1 stdout%0A" + text.replace("\n", "%0A")  # URL-quoted, as monitord stores it
    assert row[2] is None and row[3] == "condorpool" and re.match(r"^\d+\.0$", row[4])
    assert db.execute("SELECT count(*) FROM host").fetchone() == (0,)  # monitord learns hosts from kickstart
    inv = db.execute("SELECT transformation, exitcode, task_submit_seq FROM invocation ORDER BY invocation_id")
    assert inv.fetchall() == [(x, 0, seq) for x in ("pegasus::dirmanager", "sim::preprocess", "sim::findrange",
                                                     "pegasus::cleanup") for x, seq in ((x, 1), ("dagman::post", -2))]
    assert db.execute("SELECT count(*) FROM task").fetchone() == (2,)
    db.close()


def test_job_failures_knob_retries_a_job_then_succeeds(sim):
    submit_dir = sim.start("-Dpegasus.sim.job.failures=1")
    assert sim.wait_exit(submit_dir) == 0
    assert "RETRY sim_ID0000002 1" in open(os.path.join(submit_dir, "diamond-0.dag")).read()
    assert "Retrying node sim_ID0000002 (retry #1 of 1)..." in sim.dagman_out(submit_dir)
    db = stampede(sim, submit_dir)
    assert instances(db)["sim_ID0000002"] == [(3, 256), (4, 0)]  # the POST script's 1 as a wait status
    first, second = db.execute("SELECT stderr_text, stderr_file FROM job_instance ji JOIN job j USING (job_id)"
                               " WHERE j.exec_job_id = 'sim_ID0000002' ORDER BY job_submit_seq").fetchall()
    assert "simulated failure of sim_ID0000002" in first[0] and first[1] == "00/00/sim_ID0000002.err.000"
    assert second == ("", "00/00/sim_ID0000002.err.001")
    assert db.execute("SELECT exitcode FROM invocation ORDER BY invocation_id").fetchall()[4:8] == [
        (512,), (256,), (0,), (0,)]  # the job's exit 2 and the POST script's 1, then the retry
    assert db.execute("SELECT max_retries FROM job WHERE exec_job_id = 'sim_ID0000002'").fetchone() == (1,)
    db.close()


def test_failed_run_then_rescue_run_in_the_stampede_db(sim):
    submit_dir = sim.start("-Dpegasus.sim.run.fail.attempts=1")
    assert sim.wait_exit(submit_dir) == 1
    assert sim.run("pegasus-run", submit_dir).returncode == 0
    assert sim.wait_exit(submit_dir, runs=2) == 0
    db = stampede(sim, submit_dir)
    assert db.execute("SELECT state, restart_count, status FROM workflowstate ORDER BY timestamp, state"
                      ).fetchall() == sim.states()
    assert instances(db) == {"create_dir_diamond_0_local": [(1, 0)], "sim_ID0000001": [(2, 0)],
                             "sim_ID0000002": [(3, 256), (4, 0)], "cleanup_diamond_0_local": [(5, 0)]}
    assert db.execute("SELECT count(*) FROM job").fetchone() == (4,)  # jobs are not added again
    db.close()


def test_subworkflow_knob_writes_a_hierarchical_workflow(sim):
    submit_dir = sim.start("-Dpegasus.sim.subworkflows=1")
    assert sim.wait_exit(submit_dir) == 0
    db = stampede(sim, submit_dir)
    rows = db.execute("SELECT wf_id, wf_uuid, dax_label, parent_wf_id, root_wf_id, submit_dir FROM workflow"
                      " ORDER BY wf_id").fetchall()
    assert [r[2:5] for r in rows] == [("diamond", None, 1), ("sub5", 1, 1)]
    sub_dir = rows[1][5]
    assert sub_dir == os.path.join(submit_dir, "00", "00", "sub5_ID0000005.000")
    assert os.readlink(os.path.join(submit_dir, "00", "00", "sub5_ID0000005")) == "sub5_ID0000005.000"
    sub_bd = open(os.path.join(sub_dir, "braindump.yml")).read()
    assert 'wf_uuid: "%s"' % rows[1][1] in sub_bd and 'root_wf_uuid: "%s"' % rows[0][1] in sub_bd
    dag_job = db.execute("SELECT j.type_desc, ji.subwf_id, ji.exitcode FROM job j JOIN job_instance ji"
                         " USING (job_id) WHERE j.exec_job_id = 'pegasus-plan_ID0000005'").fetchall()
    assert dag_job == [("dag", 2, 0)]
    assert instances(db, 2) == {"sim_ID0000001": [(1, 0)], "sim_ID0000002": [(2, 0)]}  # its own sequence
    assert db.execute("SELECT state, status FROM workflowstate WHERE wf_id = 2 ORDER BY timestamp").fetchall() == [
        ("WORKFLOW_STARTED", None), ("WORKFLOW_TERMINATED", 0)]
    assert "EXITING WITH STATUS 0" in open(os.path.join(sub_dir, "sub5-0.dag.dagman.out")).read()
    assert "sim_ID0000002 POST_SCRIPT_SUCCESS" in open(os.path.join(sub_dir, "jobstate.log")).read()
    assert sim.states() == [("WORKFLOW_STARTED", 0, None), ("WORKFLOW_TERMINATED", 0, 0)]  # master: root only
    db.close()


def test_stall_knob_keeps_a_job_running_until_removed(sim):
    submit_dir = sim.start("-Dpegasus.sim.stall.at=4", "-Dpegasus.sim.job.failures=1")
    wait_until(lambda: started(sim))
    db = stampede(sim, submit_dir)
    wait_until(lambda: len(instances(db).get("sim_ID0000002", [])) == 2)  # the schema is there at once
    assert instances(db)["sim_ID0000002"] == [(3, 256), (4, None)]  # failing: retried, running again
    assert sim.states() == [("WORKFLOW_STARTED", 0, None)]
    assert sim.run("pegasus-remove", submit_dir).returncode == 0
    assert sim.wait_exit(submit_dir) == 2
    assert db.execute("SELECT state FROM jobstate WHERE job_instance_id = 4 ORDER BY jobstate_submit_seq"
                      ).fetchall() == [("SUBMIT",)]  # DAGMan logs no event for the job it removes
    assert db.execute("SELECT status FROM workflowstate WHERE state = 'WORKFLOW_TERMINATED'").fetchall() == [(2,)]
    db.close()


def test_schedd_delay_starts_the_dagman_later_within_the_run_time(sim):
    """SCHEDD_DELAY (bench/engine.py's mode): the job idles in the queue first, as under a
    real schedd, and its run still ends; the delay is part of RUN_SECONDS (here all of it)."""
    submit_dir = sim.start(env={"PEGASUS_SIM_SCHEDD_DELAY": "5", "PEGASUS_SIM_RUN_SECONDS": "5"})
    assert [ad["JobStatus"] for ad in sim.queue()] == [1]
    assert sim.dagman_out(submit_dir) == ""
    assert sim.wait_exit(submit_dir, timeout=30) == 0
