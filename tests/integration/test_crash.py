"""SIGKILL of the daemon at any moment loses nothing and duplicates nothing."""

import glob
import json
import os
import random
import re
import sqlite3
import urllib.parse

from conftest import Daemon, wait_until
from test_engine import FAST, TERMINAL, _dagman_out, em, events, submit, wait_state  # noqa: F401


def restart(d):
    d.kill()
    return Daemon(d.user).start()


def run_dirs(d, name):
    return glob.glob(os.path.join(d.user.home, "wf-" + name, "submit", "*", "pegasus", "*",
                                  "run*"))


def starting_up_blocks(submitdir):
    with open(_dagman_out(submitdir)) as f:
        return f.read().count("(CONDOR_DAGMAN) STARTING UP")


def own_basedir(d, name):
    """Each workflow plans in its own copy of the example, so plans can be counted."""
    src = os.path.join(d.user.sandbox.code, "share", "pegasus-sim", "example")
    for f in os.listdir(src):
        with open(os.path.join(src, f)) as fh:
            d.user.write(os.path.join("wf-" + name, f), fh.read(), mode=0o755)
    return os.path.join(d.user.home, "wf-" + name)


def submit_own(d, ensemble, name, *knobs):
    submit(d, ensemble, name, *knobs, basedir=own_basedir(d, name))


def assert_once(d, ensemble, name):
    w = wait_state(d, ensemble, name, *TERMINAL, timeout=60)
    assert w["state"] == "SUCCESSFUL", w
    assert len(run_dirs(d, name)) == 1, run_dirs(d, name)
    assert starting_up_blocks(w["submitdir"]) == 1
    history = events(d, ensemble, name)
    planned = [e for e in history if e["new_state"] == "PLANNING"]
    # A kill between the claim and the spawn legitimately claims again (nothing had run).
    never_started = [e for e in history if e["reason"].startswith("planner was never started")]
    assert len(planned) - len(never_started) == 1, history
    return w


def test_kill_while_planning_picks_up_the_planner_result(em):
    em.request("POST", "/ensembles", {"name": "e"})
    submit_own(em, "e", "w", "pegasus.sim.plan.seconds=1.5", "pegasus.sim.run.seconds=0.2")
    wait_state(em, "e", "w", "PLANNING")
    d = restart(em)
    try:
        assert_once(d, "e", "w")
    finally:
        d.kill()


def test_planner_that_finishes_while_the_daemon_is_down(em):
    em.request("POST", "/ensembles", {"name": "e"})
    submit_own(em, "e", "w", "pegasus.sim.plan.seconds=0.3", "pegasus.sim.run.seconds=0.2")
    wait_state(em, "e", "w", "PLANNING")
    em.kill()
    result = os.path.join(em.user.pegasus_dir, "ensembles", "e", "w.plan.result")
    wait_until(lambda: os.path.exists(result), 20, message="planner result while down")
    d = Daemon(em.user).start()
    try:
        assert_once(d, "e", "w")
    finally:
        d.kill()


def test_kill_while_running_follows_the_same_dagman(em):
    em.request("POST", "/ensembles", {"name": "e"})
    submit_own(em, "e", "w", "pegasus.sim.run.seconds=2")
    w = wait_state(em, "e", "w", "RUNNING")
    wait_until(lambda: _dagman_out(w["submitdir"]), 15, message="DAGMan started")
    d = restart(em)
    try:
        assert_once(d, "e", "w")
    finally:
        d.kill()


def _edit_db(d, sql, params=()):
    conn = sqlite3.connect(os.path.join(d.user.pegasus_dir, "em.db"))
    conn.execute(sql, params)
    conn.commit()
    conn.close()


def test_claim_recorded_but_planner_never_started(em):
    """The window between `READY -> PLANNING` and the spawn: plan it (once) after restart."""
    em.request("POST", "/ensembles", {"name": "e"})
    em.request("POST", "/ensembles/e", {"state": "PAUSED"})
    submit_own(em, "e", "w", "pegasus.sim.run.seconds=0.2")
    em.kill()
    _edit_db(em, "UPDATE workflows SET state = 'PLANNING', plan_pid = NULL, plan_offset = 0")
    _edit_db(em, "UPDATE ensembles SET state = 'ACTIVE'")
    d = Daemon(em.user).start()
    try:
        assert len(run_dirs(d, "w")) == 0
        w = wait_state(d, "e", "w", *TERMINAL)
        assert w["state"] == "SUCCESSFUL" and len(run_dirs(d, "w")) == 1
    finally:
        d.kill()


def test_run_intent_recorded_but_pegasus_run_never_started(em):
    """The window between `QUEUED -> RUNNING` and pegasus-run: run it (once) after restart."""
    em.request("POST", "/ensembles", {"name": "e", "max_running": "1"})
    submit_own(em, "e", "w", "pegasus.sim.run.seconds=0.2")
    w = wait_state(em, "e", "w", "SUCCESSFUL")
    em.kill()
    # Rewind it to "about to run a second time": rerun was asked, claim recorded, then a crash.
    with open(_dagman_out(w["submitdir"])) as f:
        dagman_id = re.findall(r"condor_scheduniv_exec\.([0-9.]+) \(CONDOR_DAGMAN\) STARTING UP",
                               f.read())[-1]
    _edit_db(em, "UPDATE workflows SET state = 'RUNNING', run_phase = 'submit', run_pid = NULL,"
                 " baseline_blocks = 1, baseline_id = ?", (dagman_id,))
    os.unlink(os.path.join(em.user.pegasus_dir, "ensembles", "e", "w.run.result"))
    d = Daemon(em.user).start()
    try:
        w2 = wait_state(d, "e", "w", "SUCCESSFUL", "FAILED", "RUN_FAILED")
        assert w2["state"] == "SUCCESSFUL"
        assert starting_up_blocks(w["submitdir"]) == 2  # exactly one more DAGMan run
    finally:
        d.kill()


def test_restart_on_the_same_port_while_planners_run(user):
    """Planners inherit no descriptor: the port is free again after a crash."""
    user.configure(extra=FAST)
    first = Daemon(user).start()  # on --port 0: the port it got is in its endpoint file
    with open(first.endpoint) as f:
        port = urllib.parse.urlsplit(json.load(f)["url"]).port
    first.request("POST", "/ensembles", {"name": "e"})
    submit_own(first, "e", "w", "pegasus.sim.plan.seconds=3")
    wait_state(first, "e", "w", "PLANNING")
    first.kill()
    second = Daemon(user, ["--port", str(port)]).start()
    try:
        assert second.url.endswith(":%d" % port)
        assert wait_state(second, "e", "w", *TERMINAL)["state"] == "SUCCESSFUL"
    finally:
        second.kill()


def test_random_kills_of_a_busy_ensemble(em):
    rng = random.Random(20261125)
    em.request("POST", "/ensembles", {"name": "busy", "max_planning": "3", "max_running": "3"})
    names = ["w%d" % i for i in range(10)]
    for name in names:
        submit_own(em, "busy", name, "pegasus.sim.plan.seconds=%.2f" % rng.uniform(0.1, 0.6),
                   "pegasus.sim.run.seconds=%.2f" % rng.uniform(0.2, 1.0))
    d = em
    for _ in range(4):
        wait_until(lambda: rng.random() < 0.02, 5, interval=0.02, message="a random moment")
        d = restart(d)
    try:
        for name in names:
            assert_once(d, "busy", name)
    finally:
        d.kill()
