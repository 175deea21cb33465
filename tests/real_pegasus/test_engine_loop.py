"""The engine end to end with Pegasus's own pegasus-run, pegasus-remove, pegasus-analyzer and monitord.

PATH puts the real tools first: the daemon's `pegasus-run` and `pegasus-remove`
are Pegasus's, they drive the simulated schedd, and the simulated DAGMan starts
the real pegasus-monitord (as pegasus-dagman does), which writes the master DB
the engine follows.  Only the planner, HTCondor and DAGMan are simulated.
"""

import os

import pytest

from conftest import Daemon, wait_until
from test_engine import FAST, TERMINAL, example, submit, wait_state


@pytest.fixture(scope="module")
def em(pegasus, module_user):
    module_user.configure(extra=FAST)
    d = Daemon(module_user, env=pegasus.env(module_user, real_first=True, PEGASUS_SIM_RUN_SECONDS="0")).start()
    d.request("POST", "/ensembles", {"name": "e", "max_running": "3"})
    d.example = example(d)
    yield d
    d.kill()


def read(path):
    with open(path) as f:
        return f.read()


def test_the_real_monitord_reports_success_and_failure_to_the_engine(em):
    submit(em, "e", "ok", basedir=em.example)
    submit(em, "e", "bad", "pegasus.sim.run.fail=true", basedir=em.example)
    ok = wait_state(em, "e", "ok", *TERMINAL, timeout=60)
    bad = wait_state(em, "e", "bad", *TERMINAL, timeout=60)
    assert (ok["state"], bad["state"]) == ("SUCCESSFUL", "FAILED")
    for w in (ok, bad):  # written by Pegasus's monitord, not by the simulator
        wait_until(lambda: os.path.exists(os.path.join(w["submitdir"], "monitord.done")), 30, message="monitord")
        assert "pegasus-monitord starting" in read(os.path.join(w["submitdir"], "monitord.log"))
    report = em.cli("analyze", "e.bad")
    assert report.returncode == 0, report.stderr
    assert "ANALYZER:  Workflow Status    : failure" in report.stdout
    assert "ANALYZER:  last state: POST_SCRIPT_FAILED" in report.stdout  # the real analyzer reads monitord's DB
    assert "ANALYZER: Exited with code 2" in report.stdout


def test_abort_runs_the_real_pegasus_remove(em):
    submit(em, "e", "long", "pegasus.sim.stall.at=2", basedir=em.example)
    w = wait_state(em, "e", "long", "RUNNING", timeout=60)
    out = os.path.join(w["submitdir"], "workflow-0.dag.dagman.out")
    wait_until(lambda: os.path.exists(out) and read(out).count("ULOG_SUBMIT") == 2, 30, message="the stalled job")
    assert em.request("POST", "/ensembles/e/workflows/long", {"state": "ABORTED"})[0] == 200
    assert wait_state(em, "e", "long", *TERMINAL, timeout=60)["state"] == "ABORTED"
    wait_until(lambda: "EXITING WITH STATUS 2" in read(out), 30, message="the DAGMan to leave")
    assert "Received SIGUSR1" in read(out)
