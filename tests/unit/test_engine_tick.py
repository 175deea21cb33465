"""The engine's turns with an explicit clock and no processes: `Manager.tick(now)` on a
real sqlite file, with a fake process runner in place of `pegasus_em.core.runner`.

The fake starts nothing: `spawn` records the command and the test ends it, writing
what the real wrapper writes (the command's output to the workflow log, its exit
status to the result file), so the engine reads plan output, braindump.yml and
dagman.out as it does for real.  It hands out no pidfds, so the engine polls.
"""

import os
import types

import pytest

from conftest import Clock
from pegasus_em.core import db as dbmod
from pegasus_em.core import runner
from pegasus_em.core.manager import PLAN_RESULT, RUN_RESULT, Manager, Settings
from pegasus_em.core.ops import Ops

T0 = 1_800_000_000.0
START = 4242  # the start time of every fake process


class Proc:
    def __init__(self, pid, command, cwd, log_path, result_path):
        self.pid, self.command, self.cwd = pid, command, cwd
        self.log_path, self.result_path = log_path, result_path
        self.alive = True


class FakeRunner:
    """The process runner's interface, with processes as data."""

    def __init__(self):
        self.procs = []
        self.ran = []
        self.spawn_error = None  # a message: spawns fail with it
        self.reaps = 0

    def spawn(self, command, cwd, log_path, result_path, env=None):
        if self.spawn_error:
            raise runner.SpawnError(self.spawn_error)
        proc = Proc(1000 + len(self.procs), command, cwd, log_path, result_path)
        self.procs.append(proc)
        return runner.Spawned(proc.pid, START)

    def exit(self, proc, rc, output=""):
        with open(proc.log_path, "a") as f:
            f.write(output)
        with open(proc.result_path, "w") as f:
            f.write("%d\n" % rc)
        proc.alive = False

    def live(self, suffix):
        return [p for p in self.procs if p.alive and p.result_path.endswith(suffix)]

    read_result = staticmethod(runner.read_result)

    def is_alive(self, pid, start_time):
        return start_time == START and any(p.alive for p in self.procs if p.pid == pid)

    def kill_group(self, pid, start_time, grace=5.0, now=None):
        (proc,) = [p for p in self.procs if p.pid == pid]
        self.exit(proc, 143)  # what the wrapper records for a command killed by SIGTERM
        return types.SimpleNamespace(poll=lambda now=None: True)

    def run(self, argv, cwd=None, log_path=None, timeout=60, env=None):
        self.ran.append(argv)
        return runner.Result(0, "", 0.0)

    def reap(self):
        self.reaps += 1
        return 0

    def pidfd(self, pid, start_time):
        return None

    def process_start_time(self, pid):
        return None

    def find_by_result(self, result_path):
        return None


class Engine:
    """Ops and a Manager on one em.db; the test moves the clock and ends processes."""

    def __init__(self, tmp_path, **settings):
        self.tmp = tmp_path
        self.db = dbmod.open_database(str(tmp_path / "em.db"))
        self.clock = Clock(T0)
        ensembles = str(tmp_path / "ensembles")
        self.ops = Ops(self.db, ensembles, clock=self.clock)
        self.runner = FakeRunner()
        self.manager = Manager(self.db, ensembles, Settings(**settings), clock=self.clock,
                               monotonic=self.clock, runner=self.runner)

    def close(self):
        self.manager.stop()
        self.db.close()

    def tick(self, dt=1.0):
        self.clock.t += dt
        return self.manager.tick(self.clock.t)

    def ensemble(self, name, state=None, **throttles):
        self.ops.create_ensemble(name, **throttles)
        if state:
            self.ops.update_ensemble(name, state=state)

    def submit(self, ensemble, name, priority=0):
        self.ops.submit(ensemble, name, str(self.tmp), "plan-%s --conf x" % name, priority)

    def state(self, ensemble, name):
        return self.ops.get_workflow(ensemble, name).state

    def reason(self, ensemble, name):
        return self.ops.get_workflow(ensemble, name).reason

    def process(self, name, suffix):
        (proc,) = [p for p in self.runner.live(suffix)
                   if os.path.basename(p.log_path) == name + ".log"]
        return proc

    def planned(self, name, dag=False):
        """The planner of `name` ends well, naming a submit dir it wrote."""
        submitdir = self.tmp / "submit" / name
        submitdir.mkdir(parents=True)
        kind = "dag: %s.dag\n" % name if dag else "type: shell\n"
        (submitdir / "braindump.yml").write_text("wf_uuid: uuid-%s\n%s" % (name, kind))
        self.runner.exit(self.process(name, PLAN_RESULT), 0,
                         "planning...\npegasus-run  %s\n" % submitdir)
        return submitdir

    def planning(self):
        return sorted(os.path.basename(p.log_path)[:-4] for p in self.runner.live(PLAN_RESULT))


@pytest.fixture
def eng(tmp_path):
    e = Engine(tmp_path)
    yield e
    e.close()


def test_planned_run_and_successful_in_three_turns(eng):
    eng.ensemble("e")
    eng.submit("e", "w")
    assert eng.state("e", "w") == "READY"
    eng.tick()
    assert eng.state("e", "w") == "PLANNING"
    (plan,) = eng.runner.procs
    assert plan.command == "plan-w --conf x" and plan.cwd == str(eng.tmp)
    eng.tick()
    assert eng.state("e", "w") == "PLANNING"  # the planner still runs
    submitdir = eng.planned("w")
    eng.tick()  # planned -> QUEUED, and a free run slot: RUNNING in the same turn
    assert eng.state("e", "w") == "RUNNING"
    run = eng.process("w", RUN_RESULT)
    assert run.command == "pegasus-run %s" % submitdir and run.cwd == str(submitdir)
    eng.runner.exit(run, 0)
    eng.tick()
    w = eng.ops.get_workflow("e", "w")
    assert w.state == "SUCCESSFUL" and w.submitdir == str(submitdir)
    assert [event[5] for event in eng.ops.history("e", "w")] == [  # new_state
        "READY", "PLANNING", "QUEUED", "RUNNING", "SUCCESSFUL"]
    assert eng.runner.reaps == 4 and not eng.runner.live("")


def test_a_followed_dagman_decides_the_end(eng):
    eng.ensemble("e")
    eng.submit("e", "w")
    eng.tick()
    submitdir = eng.planned("w", dag=True)
    eng.tick()
    dagman_out = submitdir / "w.dag.dagman.out"
    dagman_out.write_text("12/04/26 10:00:00 ** condor_scheduniv_exec.7.0 (CONDOR_DAGMAN) "
                          "STARTING UP\n12/04/26 10:00:00 ** PID = 77\n")
    eng.runner.exit(eng.process("w", RUN_RESULT), 0)
    eng.tick()
    eng.tick()
    assert eng.state("e", "w") == "RUNNING"  # DAGMan runs: pegasus-run's exit decides nothing
    with dagman_out.open("a") as f:
        f.write("12/04/26 10:00:05 **** condor_scheduniv_exec.7.0 (condor_DAGMAN) pid 77 "
                "EXITING WITH STATUS 1\n")
    eng.tick()
    assert eng.state("e", "w") == "FAILED"
    assert eng.reason("e", "w").startswith("DAGMan exited with status 1")


@pytest.mark.parametrize("rc, output, reason", [
    (2, "ERROR: no site local\n", "planner exited with code 2: ERROR: no site local"),
    (0, "all is well\n", "planner output names no submit directory"),
    (0, "pegasus-run /nowhere/at/all\n", "submit directory /nowhere/at/all named by the"),
])
def test_a_failed_plan_is_plan_failed_with_its_reason(eng, rc, output, reason):
    eng.ensemble("e")
    eng.submit("e", "w")
    eng.tick()
    eng.runner.exit(eng.process("w", PLAN_RESULT), rc, output)
    eng.tick()
    assert eng.state("e", "w") == "PLAN_FAILED" and reason in eng.reason("e", "w")
    assert not eng.runner.live("")


def test_a_planner_that_cannot_start_or_vanishes_is_plan_failed(eng):
    eng.ensemble("e", max_planning=2)
    eng.runner.spawn_error = "cannot run plan-a: no /bin/sh"
    eng.submit("e", "a")
    eng.tick()
    assert eng.state("e", "a") == "PLAN_FAILED" and eng.reason("e", "a") == \
        "cannot run plan-a: no /bin/sh"
    eng.runner.spawn_error = None
    eng.submit("e", "b")
    eng.tick()
    eng.process("b", PLAN_RESULT).alive = False  # gone, and no exit status written
    eng.tick()
    assert eng.state("e", "b") == "PLAN_FAILED"
    assert "vanished without an exit status" in eng.reason("e", "b")


def test_a_failed_pegasus_run_is_run_failed(eng):
    eng.ensemble("e")
    eng.submit("e", "w")
    eng.tick()
    eng.planned("w")
    eng.tick()
    eng.runner.exit(eng.process("w", RUN_RESULT), 1, "condor_submit: no schedd\n")
    eng.tick()
    assert eng.state("e", "w") == "RUN_FAILED"
    assert eng.reason("e", "w") == "pegasus-run exited with code 1: condor_submit: no schedd"


def test_a_planner_past_its_timeout_or_aborted_is_stopped(tmp_path):
    eng = Engine(tmp_path, plan_timeout=30)
    try:
        eng.ensemble("e", max_planning=2)
        eng.submit("e", "slow")
        eng.submit("e", "gone")
        eng.tick()
        eng.ops.update_workflow("e", "gone", state="ABORTED")
        eng.tick(29)
        assert eng.planning() == ["slow"] and eng.state("e", "gone") == "PLANNING"
        eng.tick()
        assert eng.state("e", "gone") == "ABORTED"
        eng.tick(2)  # 31 s: the wall clock of the turn, not the test's
        eng.tick()
        assert eng.state("e", "slow") == "PLAN_FAILED"
        assert eng.reason("e", "slow") == "planner timed out after 30 s"
    finally:
        eng.close()


def test_max_planning_and_max_running_are_honoured(eng):
    eng.ensemble("e", max_planning=2, max_running=1)
    for name in "abcde":
        eng.submit("e", name)
    eng.tick()
    eng.tick()
    assert eng.planning() == ["a", "b"]
    eng.planned("a")
    eng.planned("b")
    eng.tick()
    assert [eng.state("e", n) for n in "abcde"] == [
        "RUNNING", "QUEUED", "PLANNING", "PLANNING", "READY"]
    eng.tick()
    assert len(eng.runner.live(RUN_RESULT)) == 1 and eng.planning() == ["c", "d"]
    eng.runner.exit(eng.process("a", RUN_RESULT), 0)
    eng.tick()
    assert [eng.state("e", n) for n in "ab"] == ["SUCCESSFUL", "RUNNING"]


def test_workflows_start_by_priority_then_age(eng):
    eng.ensemble("e", max_planning=1)
    for name, priority in (("a", 0), ("b", 5), ("c", 5), ("d", 1), ("f", -1)):
        eng.submit("e", name, priority)
    order = []
    for _ in range(5):
        eng.tick()
        (name,) = eng.planning()
        order.append(name)
        eng.runner.exit(eng.process(name, PLAN_RESULT), 1)
    assert order == ["b", "c", "d", "a", "f"]


def test_the_global_caps_take_the_highest_priority_of_every_ensemble(tmp_path):
    eng = Engine(tmp_path, max_planning_total=2)
    try:
        eng.ensemble("x", max_planning=5)
        eng.ensemble("y", max_planning=5)
        eng.submit("x", "x1", 1)
        eng.submit("y", "y1", 3)
        eng.submit("x", "x2", 2)
        eng.tick()
        assert eng.planning() == ["x2", "y1"] and eng.state("x", "x1") == "READY"
    finally:
        eng.close()


@pytest.mark.parametrize("state", ["PAUSED", "HELD"])
def test_paused_and_held_ensembles_start_nothing_but_let_planning_go_on(eng, state):
    eng.ensemble("e", max_planning=2)
    eng.submit("e", "busy")
    eng.tick()
    eng.ops.update_ensemble("e", state=state)
    eng.submit("e", "waits")
    eng.planned("busy")
    eng.tick()
    eng.tick()
    assert [eng.state("e", n) for n in ("busy", "waits")] == ["QUEUED", "READY"]
    assert len(eng.runner.procs) == 1
    eng.ops.update_ensemble("e", state="ACTIVE")
    eng.tick()
    assert [eng.state("e", n) for n in ("busy", "waits")] == ["RUNNING", "PLANNING"]


def test_an_idle_engine_waits_the_interval_a_polled_process_less(eng):
    assert eng.tick() == eng.manager.settings.interval
    eng.ensemble("e")
    eng.submit("e", "w")
    assert 0 < eng.tick() < 1.0  # no pidfd: look again soon
