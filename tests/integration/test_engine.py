"""The engine end to end: a real daemon plans and runs workflows with the simulated toolchain."""

import os

import pytest

from conftest import SIM_BIN, Daemon, wait_until
from stack import Stack

FAST = "EM_INTERVAL = 0.5\n"


@pytest.fixture
def em(user):
    user.configure(extra=FAST)
    d = Daemon(user).start()
    yield d
    d.kill()


def example(d):
    """A copy of the shipped example, owned by the user (planning writes submit/ there)."""
    src = os.path.join(d.user.sandbox.code, "share", "pegasus-sim", "example")
    for name in os.listdir(src):
        with open(os.path.join(src, name)) as f:
            d.user.write(os.path.join("example", name), f.read(), mode=0o755)
    return os.path.join(d.user.home, "example")


def submit(d, ensemble, name, *knobs, priority=0, basedir=None, command=None):
    basedir = basedir or example(d)
    command = command or " ".join(['"%s/plan.sh"' % basedir] + ['"-D%s"' % k for k in knobs])
    st, _, body = d.request("POST", "/ensembles/%s/workflows" % ensemble, {
        "name": name, "priority": str(priority), "basedir": basedir, "plan_command": command})
    assert st == 201, body


def state_of(d, ensemble, name):
    return d.request("GET", "/ensembles/%s/workflows/%s" % (ensemble, name))[2]


def wait_state(d, ensemble, name, *states, timeout=30):
    def reached():
        w = state_of(d, ensemble, name)
        return w if w["state"] in states else None
    return wait_until(reached, timeout, interval=0.05,
                      message="%s.%s to reach %s (now %s)" % (
                          ensemble, name, states, state_of(d, ensemble, name)["state"]))


def events(d, ensemble, name):
    return d.request("GET", "/ensembles/%s/workflows/%s/events" % (ensemble, name))[2]


def test_a_workflow_is_planned_run_and_followed_to_success(em):
    em.request("POST", "/ensembles", {"name": "e"})
    submit(em, "e", "w1", "pegasus.sim.run.seconds=0.3")
    w = wait_state(em, "e", "w1", "SUCCESSFUL", "FAILED", "PLAN_FAILED", "RUN_FAILED")
    assert w["state"] == "SUCCESSFUL", w
    assert len(w["wf_uuid"]) == 36 and os.path.isfile(os.path.join(w["submitdir"],
                                                                     "braindump.yml"))
    assert [e["new_state"] for e in events(em, "e", "w1")] == [
        "READY", "PLANNING", "QUEUED", "RUNNING", "SUCCESSFUL"]
    with open(w["log"]) as f:
        text = f.read()
    assert "pegasus-run" in text and "Your workflow has been started" in text


TERMINAL = ("SUCCESSFUL", "FAILED", "PLAN_FAILED", "RUN_FAILED", "ABORTED")


def test_planner_exit_code_decides_and_analyze_says_so(em):
    em.request("POST", "/ensembles", {"name": "e"})
    submit(em, "e", "bad", "pegasus.sim.plan.fail=true", "pegasus.sim.plan.exit=3")
    w = wait_state(em, "e", "bad", *TERMINAL)
    assert w["state"] == "PLAN_FAILED" and "planner exited with code 3" in w["reason"]
    text = em.request("GET", "/ensembles/e/workflows/bad/analyze")[2]
    assert text.startswith("Workflow state is PLAN_FAILED\n")
    assert "LOG: " in text and "[FATAL ERROR]" in text
    assert text.rstrip().endswith("Planner failure detected")


@pytest.mark.parametrize("command,reason", [
    ('"/no/such/planner" "x"', "code 127"),
    ('"/bin/echo" "I planned nothing"', "names no submit directory"),
    ('"/bin/echo" "pegasus-run  /"', "no braindump.yml"),
])
def test_bad_plan_commands_fail_with_a_reason(em, command, reason):
    em.request("POST", "/ensembles", {"name": "e"})
    submit(em, "e", "w", command=command, basedir=em.user.home)
    w = wait_state(em, "e", "w", *TERMINAL)
    assert w["state"] == "PLAN_FAILED" and reason in w["reason"], w


def test_vanished_basedir_fails_that_workflow_only(em):
    em.request("POST", "/ensembles", {"name": "e", "max_planning": "2"})
    gone = os.path.join(em.user.home, "gone")
    submit(em, "e", "lost", command='"/bin/true"', basedir=gone)
    submit(em, "e", "fine", "pegasus.sim.run.seconds=0")
    assert "does not exist" in wait_state(em, "e", "lost", *TERMINAL)["reason"]
    assert wait_state(em, "e", "fine", *TERMINAL)["state"] == "SUCCESSFUL"


def test_failed_run_then_rerun_uses_the_rescue_dag(em):
    em.request("POST", "/ensembles", {"name": "e"})
    submit(em, "e", "w", "pegasus.sim.run.seconds=0.2", "pegasus.sim.run.fail.attempts=1")
    w = wait_state(em, "e", "w", *TERMINAL)
    assert w["state"] == "FAILED" and "DAG status" in w["reason"], w
    text = em.request("GET", "/ensembles/e/workflows/w/analyze")[2]
    assert "ANALYZER: " in text and text.rstrip().endswith("Workflow failure detected")
    assert em.request("POST", "/ensembles/e/workflows/w", {"state": "QUEUED"})[0] == 200
    w2 = wait_state(em, "e", "w", "SUCCESSFUL", "FAILED", "RUN_FAILED")
    assert w2["state"] == "SUCCESSFUL" and w2["submitdir"] == w["submitdir"]
    with open(_dagman_out(w["submitdir"])) as f:
        assert "Found rescue DAG" in f.read()


def _dagman_out(submitdir):
    names = [n for n in os.listdir(submitdir) if n.endswith(".dagman.out")]
    return os.path.join(submitdir, names[0]) if names else None


def test_pegasus_run_failure_is_run_failed(em):
    em.request("POST", "/ensembles", {"name": "e"})
    submit(em, "e", "w", "pegasus.sim.pegasus.run.exit=4")
    w = wait_state(em, "e", "w", *TERMINAL)
    assert w["state"] == "RUN_FAILED" and "code 4" in w["reason"]


def test_dagman_sudden_death_fails_with_a_reason(em):
    em.request("POST", "/ensembles", {"name": "e"})
    submit(em, "e", "w", "pegasus.sim.dagman.die=true", "pegasus.sim.run.seconds=0.2")
    w = wait_state(em, "e", "w", *TERMINAL, timeout=60)
    assert w["state"] == "FAILED" and "DAGMan died" in w["reason"], w


def _concurrency(d, ensemble, names, state):
    """Largest number of workflows that were in `state` at once, from the event history."""
    marks = []
    for name in names:
        for e in events(d, ensemble, name):
            if e["new_state"] == state:
                marks.append((e["time"], 1))
            elif e["old_state"] == state:
                marks.append((e["time"], -1))
    level = peak = 0
    for _, step in sorted(marks, key=lambda m: (m[0], m[1])):
        level += step
        peak = max(peak, level)
    return peak


def test_throttles_and_priority_order(em):
    em.request("POST", "/ensembles", {"name": "e", "max_planning": "2", "max_running": "2"})
    em.request("POST", "/ensembles/e", {"state": "PAUSED"})
    names = ["w%d" % i for i in range(6)]
    for i, name in enumerate(names):
        submit(em, "e", name, "pegasus.sim.plan.seconds=0.3", "pegasus.sim.run.seconds=0.5",
               priority=i % 3)
    em.request("POST", "/ensembles/e", {"state": "ACTIVE"})
    for name in names:
        assert wait_state(em, "e", name, *TERMINAL)["state"] == "SUCCESSFUL"
    assert _concurrency(em, "e", names, "PLANNING") == 2
    assert _concurrency(em, "e", names, "RUNNING") == 2
    started = sorted(names, key=lambda n: [e["time"] for e in events(em, "e", n)
                                           if e["new_state"] == "PLANNING"][0])
    # priority 2 first (w2, w5), then 1 (w1, w4), then 0 (w0, w3); oldest first within one
    assert started == ["w2", "w5", "w1", "w4", "w0", "w3"]


def test_paused_ensemble_starts_nothing_until_activated(em):
    em.request("POST", "/ensembles", {"name": "e"})
    em.request("POST", "/ensembles/e", {"state": "PAUSED"})
    submit(em, "e", "w", "pegasus.sim.run.seconds=0")
    submit(em, "e", "probe", command='"/bin/true"', basedir=em.user.home)
    em.request("POST", "/ensembles", {"name": "other"})
    submit(em, "other", "done", command='"/bin/true"', basedir=em.user.home)
    wait_state(em, "other", "done", "PLAN_FAILED")  # the engine has been round at least once
    assert state_of(em, "e", "w")["state"] == "READY"
    em.request("POST", "/ensembles/e", {"state": "ACTIVE"})
    assert wait_state(em, "e", "w", *TERMINAL)["state"] == "SUCCESSFUL"


def _process_gone(pattern):
    def check():
        for pid in os.listdir("/proc"):
            if pid.isdigit():
                try:
                    with open("/proc/%s/cmdline" % pid, "rb") as f:
                        if pattern.encode() in f.read():
                            return False
                except OSError:
                    pass
        return True
    return check


def test_abort_while_planning_kills_the_planner(em):
    em.request("POST", "/ensembles", {"name": "e"})
    submit(em, "e", "slow", "pegasus.sim.plan.seconds=60", "pegasus.sim.marker=abortplan")
    wait_state(em, "e", "slow", "PLANNING")
    st, _, w = em.request("POST", "/ensembles/e/workflows/slow", {"state": "ABORTED"})
    assert st == 200
    w = wait_state(em, "e", "slow", *TERMINAL)
    assert w["state"] == "ABORTED"
    wait_until(_process_gone("pegasus.sim.marker=abortplan"), 10, message="planner gone")


def test_abort_while_running_removes_the_dagman(em):
    em.request("POST", "/ensembles", {"name": "e"})
    submit(em, "e", "long", "pegasus.sim.run.seconds=60")
    w = wait_state(em, "e", "long", "RUNNING")
    wait_until(lambda: _dagman_out(w["submitdir"]), 15, message="DAGMan started")
    assert em.request("POST", "/ensembles/e/workflows/long", {"state": "ABORTED"})[0] == 200
    w = wait_state(em, "e", "long", *TERMINAL)
    assert w["state"] == "ABORTED"
    with open(_dagman_out(w["submitdir"])) as f:
        assert "Received SIGUSR1" in f.read()


def test_held_ensemble_holds_running_dagmans_and_activate_releases(em):
    em.request("POST", "/ensembles", {"name": "e"})
    submit(em, "e", "w", "pegasus.sim.run.seconds=3")
    w = wait_state(em, "e", "w", "RUNNING")
    em.request("POST", "/ensembles/e", {"state": "HELD"})
    wait_until(lambda: any(e["reason"].startswith("condor_hold") for e in events(em, "e", "w")),
               15, message="condor_hold")
    em.request("POST", "/ensembles/e", {"state": "ACTIVE"})
    wait_until(lambda: any(e["reason"].startswith("condor_release")
                           for e in events(em, "e", "w")), 15, message="condor_release")
    assert wait_state(em, "e", "w", *TERMINAL)["state"] == "SUCCESSFUL"
    assert w["state"] == "RUNNING"


def test_a_slow_condor_hold_never_holds_up_other_ensembles(tmp_path):
    """condor_hold ran on the engine thread: a schedd slow to answer (up to the 60 s
    timeout) stopped every other ensemble's planning and running for that long."""
    fakebin, go, asked = tmp_path / "bin", tmp_path / "go", tmp_path / "hold-asked"
    fakebin.mkdir()
    (fakebin / "condor_hold").write_text(
        "#!/bin/sh\ntouch '%s'\ni=0\nwhile [ ! -e '%s' ] && [ $i -lt 600 ]; do sleep 0.1; "
        "i=$((i+1)); done\nexec '%s/condor_hold' \"$@\"\n" % (asked, go, SIM_BIN))
    (fakebin / "condor_hold").chmod(0o755)
    s = Stack(tmp_path / "em", engine=True, interval=0.5)
    s.env["PATH"] = "%s%s%s" % (fakebin, os.pathsep, s.env["PATH"])
    s.start_engine()
    try:
        s.ensemble("slow")
        s.submit("slow", "w", s.plan_command("pegasus.sim.run.seconds=60"))
        wait_until(lambda: s.state("slow", "w") == "RUNNING", 30, message="slow.w RUNNING")
        s.post("/ensembles/slow", state="HELD")
        wait_until(asked.exists, 30, message="condor_hold called")
        s.ensemble("other")
        s.submit("other", "x", s.plan_command("pegasus.sim.run.seconds=0.2"))
        wait_until(lambda: s.state("other", "x") in TERMINAL, 30, message="other.x ended")
        assert s.state("other", "x") == "SUCCESSFUL" and not go.exists()
        go.touch()
        wait_until(lambda: any(e["reason"].startswith("condor_hold")
                               for e in s.events("slow", "w")), 30, message="hold recorded")
        s.post("/ensembles/slow/workflows/w", state="ABORTED")
        wait_until(lambda: s.state("slow", "w") in TERMINAL, 30, message="slow.w aborted")
    finally:
        go.touch()
        s.close()


def test_planner_timeout_stops_the_planner(user):
    user.configure(extra=FAST + "EM_PLAN_TIMEOUT = 1\n")
    d = Daemon(user).start()
    try:
        d.request("POST", "/ensembles", {"name": "e"})
        submit(d, "e", "w", "pegasus.sim.plan.seconds=60", "pegasus.sim.marker=timeoutplan")
        w = wait_state(d, "e", "w", *TERMINAL)
        assert w["state"] == "PLAN_FAILED" and "timed out after 1 s" in w["reason"]
        wait_until(_process_gone("pegasus.sim.marker=timeoutplan"), 10, message="planner gone")
    finally:
        d.kill()
