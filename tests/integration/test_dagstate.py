"""dagstate: following real (simulated) DAGMan runs through their files."""

import os
import re
import subprocess
import time

import pytest

from conftest import REPO, SIM_BIN, wait_until
from pegasus_em.core import dagstate, planout

PLAN = os.path.join(REPO, "share", "pegasus-sim", "example", "plan.sh")
FAST = dict(liveness_every=0.1, pending_timeout=0.3)


class Sim:
    """A private fake schedd + master DB; plans and runs example/workflow.yml."""

    def __init__(self, base):
        self.base = base

    def tool(self, *argv, check=True):
        proc = subprocess.run(list(argv), cwd=self.base, stdout=subprocess.PIPE,
                              stderr=subprocess.STDOUT, universal_newlines=True, timeout=60)
        assert proc.returncode == 0 or not check, proc.stdout
        return proc.stdout

    def plan(self, **knobs):
        """Knobs as -D properties: recorded in the submit dir, seen by pegasus-run and DAGMan."""
        props = ["-DPEGASUS_SIM_%s=%s" % (k.upper(), v) for k, v in sorted(knobs.items())]
        return planout.find_submit_dir(self.tool(PLAN, *props))

    def run(self, submit_dir, braindump, **watch_options):
        """baseline, then pegasus-run -> (Watch, DAGMan cluster id)."""
        base = dagstate.baseline(submit_dir, braindump)
        out = self.tool("pegasus-run", submit_dir)
        cluster = re.search(r"submitted to cluster (\d+)", out).group(1)
        return dagstate.Watch(submit_dir, braindump, base, **watch_options), cluster

    def active_clusters(self):
        out = self.tool("condor_q", "-af", "ClusterId")
        return out.split()


@pytest.fixture
def sim(tmp_path, monkeypatch):
    for name in list(os.environ):
        if name.startswith("PEGASUS_SIM_"):
            monkeypatch.delenv(name)
    monkeypatch.setenv("PATH", SIM_BIN + os.pathsep + os.environ["PATH"])
    monkeypatch.setenv("PEGASUS_SIM_SCHEDD", str(tmp_path / "schedd"))
    monkeypatch.setenv("PEGASUS_SIM_MASTER_DB", str(tmp_path / "workflow.db"))
    monkeypatch.setenv("PEGASUS_SIM_RUN_SECONDS", "0.2")
    s = Sim(str(tmp_path))
    yield s
    for cluster in s.active_clusters():  # never leave a DAGMan behind
        s.tool("condor_rm", cluster, check=False)


def follow(watch, until=dagstate.TERMINAL, timeout=15):
    """Poll until the state is in `until`; -> (final status, states seen in order)."""
    seen = []

    def done():
        status = watch.poll(time.monotonic())
        if not seen or seen[-1] != status.state:
            seen.append(status.state)
        return status if status.state in until else None
    return wait_until(done, timeout, message="state in %s, seen %s" % (sorted(until), seen)), seen


def test_success(sim):
    d, bd = sim.plan()
    watch, _ = sim.run(d, bd)
    status, _ = follow(watch)
    assert status == (dagstate.SUCCEEDED, "DAGMan exited with status 0", status.dagman_pid, 0)
    assert status.dagman_pid > 0
    assert watch.poll(time.monotonic()) is status  # terminal is final


def test_failure_names_dag_status_and_rescue(sim):
    d, bd = sim.plan(run_fail="true")
    watch, _ = sim.run(d, bd)
    status, _ = follow(watch)
    assert status.state == dagstate.FAILED
    assert "status 1" in status.reason and "2 (DAG_STATUS_NODE_FAILED)" in status.reason
    assert "workflow-0.dag.rescue001" in status.reason


def test_rerun_after_failure_is_pending_not_the_old_failure(sim):
    d, bd = sim.plan(run_fail_attempts="1", start_delay="0.5")
    first, _ = sim.run(d, bd)
    assert follow(first)[0].state == dagstate.FAILED
    base = dagstate.baseline(d, bd)
    assert base.blocks == 1 and base.last_dagman_id == "1.0"
    sim.tool("pegasus-run", d)
    watch = dagstate.Watch(d, bd, base)
    with open(dagstate.dagman_out_path(d, bd)) as f:
        assert f.read().rstrip().endswith("EXITING WITH STATUS 1")  # still the old end
    assert watch.poll(time.monotonic()).state == dagstate.PENDING
    status, seen = follow(watch)
    assert status.state == dagstate.SUCCEEDED and dagstate.FAILED not in seen
    assert dagstate.baseline(d, bd).blocks == 2


def test_removal(sim):
    d, bd = sim.plan(run_seconds="20")
    watch, _ = sim.run(d, bd)
    follow(watch, until={dagstate.RUNNING})
    sim.tool("pegasus-remove", d)
    status, _ = follow(watch)
    assert status.state == dagstate.REMOVED and "DAG_STATUS_RM" in status.reason


def test_sudden_death_is_failed(sim):
    d, bd = sim.plan(dagman_die="true")
    watch, _ = sim.run(d, bd, **FAST)
    status, seen = follow(watch)
    assert seen[-2:] == [dagstate.RUNNING, dagstate.FAILED]
    assert status.reason == ("DAGMan died (pid %d) without finishing; see workflow-0.dag.dagman.out"
                             % status.dagman_pid)


@pytest.mark.parametrize("ads, state, reason", [
    ([{"ClusterId": 1, "JobStatus": 5, "HoldReason": "via condor_hold"}], dagstate.HELD,
     "DAGMan job is held in the schedd: via condor_hold"),
    ([{"ClusterId": 1, "JobStatus": 1}], dagstate.RUNNING, "the schedd still lists it"),
    (None, dagstate.RUNNING, "condor_q failed"),
])
def test_dead_dagman_the_schedd_still_knows(sim, ads, state, reason):
    """A gone DAGMan that the schedd still lists is held or about to be restarted."""
    d, bd = sim.plan(dagman_die="true")
    watch, _ = sim.run(d, bd, query=lambda uuid: ads, **FAST)
    pid = follow(watch, until={dagstate.RUNNING})[0].dagman_pid
    wait_until(lambda: not dagstate.dagman_process_alive(pid), message="the DAGMan to die")
    later = time.monotonic() + 1
    watch.poll(later)  # reads the DAGMan's last lines: not quiet yet
    status = watch.poll(later + 1)  # quiet for longer than liveness_every: checked
    assert status.state == state and reason in status.reason and status.dagman_pid == pid


def test_sudden_death_elsewhere_trusts_monitord(sim):
    """Submitted from another host: no /proc to look at; monitord's exit 42 decides."""
    d, bd = sim.plan(dagman_die="true")
    bd = dict(bd, submit_hostname="surely-elsewhere.example.org")
    watch, _ = sim.run(d, bd, **FAST)
    pid = follow(watch, until={dagstate.RUNNING})[0].dagman_pid
    wait_until(lambda: not dagstate.dagman_process_alive(pid), message="the DAGMan to die")
    later = time.monotonic() + 1
    watch.poll(later)  # reads the DAGMan's last lines: not quiet yet
    assert watch.poll(later + 1).state == dagstate.RUNNING  # checked: no evidence
    with open(os.path.join(d, "jobstate.log"), "a") as f:  # monitord after "Sudden death"
        f.write("%d INTERNAL *** MONITORD_FINISHED 42 ***\n" % time.time())
    status = watch.poll(later + 2)
    assert status.state == dagstate.FAILED and status.reason.startswith("DAGMan died (pid ")


def test_start_delay_pending_then_running(sim):
    d, bd = sim.plan(start_delay="0.6", run_seconds="0.6")
    asked = []

    def query(uuid):
        ads = dagstate.condor_q(uuid)
        asked.append([ad["JobStatus"] for ad in ads])
        return ads
    watch, _ = sim.run(d, bd, query=query, **FAST)
    assert watch.poll(time.monotonic()) == (dagstate.PENDING, "waiting for DAGMan to start",
                                            None, 0)
    status, seen = follow(watch)
    assert status.state == dagstate.SUCCEEDED
    assert seen[:3] == [dagstate.PENDING, dagstate.RUNNING, dagstate.SUCCEEDED]
    assert [1] in asked  # the schedd was asked while pending, and said idle


def test_held_dagman_job_before_start(sim):
    d, bd = sim.plan(start_delay="30")
    watch, cluster = sim.run(d, bd, **FAST)
    sim.tool("condor_hold", cluster)
    status, _ = follow(watch, until={dagstate.HELD})
    assert status.reason.startswith("DAGMan job is held in the schedd")
    sim.tool("condor_rm", cluster)  # an idle DAGMan just goes: it never started
    status, _ = follow(watch)
    assert status == (dagstate.FAILED, "DAGMan never started; see workflow-0.dag.lib.err", None, 0)


def test_held_running_dagman_reports_held_jobs(sim):
    d, bd = sim.plan(run_seconds="20")
    watch, cluster = sim.run(d, bd, **FAST)
    follow(watch, until={dagstate.RUNNING})
    sim.tool("condor_hold", cluster)
    status = wait_until(lambda: watch.poll(time.monotonic()).held_jobs > 0 and
                        watch.poll(time.monotonic()), message="held jobs")
    assert status.state == dagstate.RUNNING and status.held_jobs == 1
    assert "1 job(s) held" in status.reason
    sim.tool("condor_release", cluster)
    wait_until(lambda: watch.poll(time.monotonic()).held_jobs == 0, message="released")


def test_unchanged_file_costs_one_stat_per_poll(sim, monkeypatch):
    """A quiet dagman.out: one os.stat per poll, no open; growth reads only new bytes."""
    d, bd = sim.plan(run_fail="true")
    first, _ = sim.run(d, bd)
    follow(first)
    path = dagstate.dagman_out_path(d, bd)
    watch = dagstate.Watch(d, bd, dagstate.baseline(d, bd), pending_timeout=1e9)
    assert watch.poll(0.0).state == dagstate.PENDING
    calls = {"stat": 0, "open": 0}
    real_stat, real_open = os.stat, open

    def counting_stat(*a, **k):
        calls["stat"] += 1
        return real_stat(*a, **k)

    def counting_open(*a, **k):
        calls["open"] += 1
        return real_open(*a, **k)
    with monkeypatch.context() as m:
        m.setattr(os, "stat", counting_stat)
        m.setattr("builtins.open", counting_open)
        for t in range(1, 6):
            assert watch.poll(float(t)).state == dagstate.PENDING
    assert calls == {"stat": 5, "open": 0}

    size = os.path.getsize(path)
    with open(path, "a") as f:
        f.write(header_of_first_run(path).replace("exec.1.0", "exec.9.0"))
    read = []
    real_feed = dagstate._Parser.feed
    monkeypatch.setattr(dagstate._Parser, "feed",
                        lambda self, data: read.append(len(data)) or real_feed(self, data))
    status = watch.poll(6.0)
    assert status.state == dagstate.RUNNING and "9.0" in status.reason
    assert read == [os.path.getsize(path) - size]  # only the appended bytes


def header_of_first_run(path):
    """Real dagman.out lines from the first STARTING UP up to `Parsing <dag> ...`."""
    with open(path) as f:
        text = f.read()
    start = text.rfind("\n", 0, text.index("STARTING UP")) + 1
    return text[start:text.rfind("\n", 0, text.index("Parsing ")) + 1]


def test_truncated_file_is_reread_from_start(sim):
    d, bd = sim.plan()
    first, _ = sim.run(d, bd)
    follow(first)
    path = dagstate.dagman_out_path(d, bd)
    watch = dagstate.Watch(d, bd, dagstate.baseline(d, bd), pending_timeout=1e9)
    assert watch.poll(0.0).state == dagstate.PENDING
    header = header_of_first_run(path)
    with open(path, "w") as f:  # rotated: only a newer run's block is left
        f.write(header.replace("exec.1.0", "exec.5.0"))
    status = watch.poll(1.0)
    assert status.state == dagstate.RUNNING and "5.0" in status.reason


def test_shell_workflows_are_not_followed(tmp_path):
    assert not dagstate.is_followed({"type": "shell"})
    assert dagstate.is_followed({"type": "dag"}) and dagstate.is_followed({})
    with pytest.raises(ValueError, match="exit status decides"):
        dagstate.Watch(str(tmp_path), {"type": "shell", "wf_uuid": "u"}, dagstate.Baseline(0, None))


def test_condor_q_output_parsing():
    assert dagstate._json_ads("") == []
    assert dagstate._json_ads("warning: x\n[\n {\"JobStatus\": 1}\n]\n") == [{"JobStatus": 1}]
    assert dagstate._json_ads("garbage") is None
    assert dagstate.condor_q("u", executable="no-such-condor_q-pegasus-em") is None


def test_this_host():
    import socket
    here = socket.gethostname()
    assert dagstate.is_this_host(here) and dagstate.is_this_host(here.split(".")[0] + ".x.org")
    assert not dagstate.is_this_host("surely-not-" + here)
