"""Pegasus's own tools accept every simulator scenario, and its monitord agrees with the simulator's.

Each scenario runs once (module fixture, all at the same time) as a throwaway
user with the simulator's own monitord writer.  Then, on a copy of each submit
dir, the real `pegasus-monitord --replay` rebuilds the STAMPEDE and master
databases from the simulated dagman.out alone: they must equal the simulator's.
The real analyzer, statistics, status, db-admin, graphviz and submitdir then
read the simulator's own files and databases.
"""

import concurrent.futures
import json
import os
import re
import shutil

import pytest

from conftest import wait_until

from . import canonical

# name: (pegasus-plan -D knobs, runs, extra steps, DAGMan exits, analyzer status and exit,
#        jobs (succeeded, failed, incomplete, total, retries), sub-workflows)
SCENARIOS = {
    "success": ((), 1, None, [0], ("success", 0), (4, 0, 0, 4, 0), 0),
    "failure": (("run.fail=true",), 1, None, [1], ("failure", 2), (2, 1, 1, 4, 0), 0),
    "rescue": (("run.fail.attempts=1",), 2, None, [1, 0], ("success", 0), (4, 0, 0, 4, 1), 0),
    "retry": (("job.failures=1",), 1, None, [0], ("success", 0), (4, 0, 0, 4, 1), 0),
    "removal": (("stall.at=2",), 1, "remove", [2], ("failure", 2), (1, 0, 3, 4, 0), 0),
    "held": (("stall.at=1",), 1, "hold", [2], ("failure", 2), (0, 0, 4, 4, 0), 0),
    "death": ((), 2, "die", [0], ("success", 0), (4, 0, 0, 4, 1), 0),
    # statistics count jobs of both tries of the sub-workflow (each try is a workflow), not the dag job
    "subworkflows": (("subworkflows=1", "run.fail.attempts=1", "jobs=3"), 2, None, [1, 0],
                     ("success", 0), (6, 1, 0, 7, 0), 1),
}


class Scenario:
    def __init__(self, name, user, pegasus, base):
        self.name, self.user, self.pegasus = name, user, pegasus
        self.knobs, self.runs, self.step, self.exits, self.outcome, self.jobs, self.subwfs = SCENARIOS[name]
        self.base = os.path.join(base, name)
        os.makedirs(self.base)
        os.chown(self.base, user.uid, user.gid)

    def sim(self, tool, *args, **env):
        proc = self.user.run([os.path.join(self.user.sandbox.sim_bin, tool)] + [str(a) for a in args],
                             cwd=self.base, env=self.user.env(PEGASUS_SIM_RUN_SECONDS="0", PEGASUS_SIM_MONITORD="",
                                                              **env))
        return proc

    def play(self):
        """Plan, run (and re-run), with the scenario's own intervention."""
        with open(os.path.join(self.base, "diamond.yml"), "w") as f:
            f.write("pegasus: 5.0.4\nname: diamond\n")
        plan = self.sim("pegasus-plan", "--dir", "submit", *["-Dpegasus.sim." + k for k in self.knobs], "diamond.yml")
        assert plan.returncode == 0, plan.stderr
        self.dir = re.findall(r"^pegasus-run\s+(\S+)$", plan.stdout, re.M)[-1]
        self.bd = {k: json.loads(v) for k, v in (l.split(": ", 1) for l in self.read("braindump.yml").splitlines())}
        exited = 0
        for run in range(1, self.runs + 1):
            dies = self.step == "die" and run == 1
            assert self.sim("pegasus-run", self.dir, **({"PEGASUS_SIM_DAGMAN_DIE": "1"} if dies else {})).returncode == 0
            getattr(self, "_" + (self.step or "none"))(run)
            if not dies:
                exited += 1
                self.wait_exit(exited)
        return self

    def read(self, name):
        with open(os.path.join(self.dir, name)) as f:
            return f.read()

    def dagman_out(self):
        path = os.path.join(self.dir, self.bd["dag"] + ".dagman.out")
        return open(path).read() if os.path.exists(path) else ""

    def blocks(self):
        return re.findall(r"\(CONDOR_DAGMAN\) STARTING UP", self.dagman_out())

    def wait_exit(self, n):
        """Until the DAGMan's nth EXITING line and monitord's end; that exit is the scenario's nth."""
        exits = lambda: re.findall(r"EXITING WITH STATUS (\d+)$", self.dagman_out(), re.M)
        wait_until(lambda: len(exits()) >= n and not os.path.exists(os.path.join(self.dir, "monitord.pid")), 30,
                   message="%s to end its run %d" % (self.name, n))
        assert int(exits()[n - 1]) == self.exits[n - 1]

    def _none(self, run):
        pass

    def _remove(self, run):
        wait_until(lambda: self.dagman_out().count("ULOG_SUBMIT") == 2, 30, message="the stalled job")
        assert self.sim("pegasus-remove", self.dir).returncode == 0

    def _hold(self, run):
        """condor_hold and condor_release while the first job is queued, then condor_rm."""
        wait_until(lambda: "ULOG_SUBMIT" in self.dagman_out(), 30, message="a queued job")
        cluster = re.search(r"condor_scheduniv_exec\.(\d+)\.0 \(CONDOR_DAGMAN\)", self.dagman_out()).group(1)
        assert self.sim("condor_hold", cluster).returncode == 0
        wait_until(lambda: "1 job proc(s) currently held" in self.dagman_out(), 30, message="the hold")
        assert self.sim("condor_release", cluster).returncode == 0
        wait_until(lambda: "ULOG_JOB_RELEASED" in self.dagman_out(), 30, message="the release")
        assert self.sim("pegasus-remove", self.dir).returncode == 0

    def _die(self, run):
        if run == 1:
            pid = int(wait_until(lambda: re.search(r"\*\* PID = (\d+)$", self.dagman_out(), re.M), 30).group(1))
            wait_until(lambda: not os.path.exists("/proc/%d" % pid) or _zombie(pid), 30, message="the death")

    # -- the real tools ---------------------------------------------------------------
    def replay(self):
        """pegasus-monitord --replay on a copy (it rotates jobstate.log and the DBs it finds)."""
        self.copy = os.path.join(self.base, "replay")
        shutil.copytree(self.dir, self.copy, symlinks=True)
        self.replay_home = os.path.join(self.base, "replay-home")
        os.mkdir(self.replay_home)
        for root, dirs, files in os.walk(self.base):
            for name in dirs + files:
                os.lchown(os.path.join(root, name), self.user.uid, self.user.gid)
        self.replay_db = os.path.join(self.base, "monitord.stampede.db")
        self.replayed = self.pegasus.run(self.user, "monitord", "--replay", "--dest", "sqlite:///" + self.replay_db,
                                         self.bd["dag"] + ".dagman.out", cwd=self.copy, home=self.replay_home)
        return self

    def tool(self, tool, *args, cwd=None):
        return self.pegasus.run(self.user, tool, *args, cwd=cwd or self.dir)


def _zombie(pid):
    try:
        with open("/proc/%d/stat" % pid) as f:
            return f.read().rpartition(")")[2].split()[0] == "Z"
    except OSError:
        return True


@pytest.fixture(scope="module")
def scenarios(pegasus, module_user):
    base = os.path.join(module_user.home, "scenarios")
    os.makedirs(base)
    with concurrent.futures.ThreadPoolExecutor(len(SCENARIOS)) as pool:
        played = list(pool.map(lambda n: Scenario(n, module_user, pegasus, base).play(), SCENARIOS))
        list(pool.map(Scenario.replay, played))
    return {s.name: s for s in played}


@pytest.fixture(params=sorted(SCENARIOS))
def scenario(request, scenarios):
    return scenarios[request.param]


def stampede_db(s):
    return os.path.join(s.dir, "diamond-0.stampede.db")


def test_monitord_replays_the_run_into_the_simulators_stampede_db(scenario):
    assert scenario.replayed.returncode == 0, scenario.replayed.stderr[-3000:]
    assert canonical.rows(scenario.replay_db) == canonical.rows(stampede_db(scenario))


def test_monitord_replays_the_run_into_the_simulators_master_db(scenario):
    ours = canonical.master_rows(os.path.join(scenario.user.home, ".pegasus", "workflow.db"), scenario.bd["wf_uuid"])
    theirs = canonical.master_rows(os.path.join(scenario.replay_home, ".pegasus", "workflow.db"),
                                   scenario.bd["wf_uuid"])
    assert theirs[0][0].pop("db_url") == "sqlite:///" + scenario.replay_db  # its --dest
    assert ours[0][0].pop("db_url") == "sqlite:///" + stampede_db(scenario)
    assert ours == theirs and ours[1][-1][0] == "WORKFLOW_TERMINATED"


def test_analyzer_reads_the_outcome_and_counts(scenario):
    proc = scenario.tool("analyzer", scenario.dir)
    status, code = scenario.outcome
    assert proc.returncode == code, proc.stdout + proc.stderr
    assert re.search(r"Workflow Status\s+: %s\n" % status, proc.stdout)
    assert_counts(scenario, proc.stdout)


def test_analyzer_files_mode_agrees(scenario):
    """--files reads jobstate.log and the submit files instead of the database."""
    proc = scenario.tool("analyzer", "--files", scenario.dir)
    failed = scenario.outcome[0] == "failure" and scenario.jobs[1]  # a failed job, not a removed DAGMan
    assert proc.returncode == (2 if failed else 0), proc.stdout + proc.stderr
    assert_counts(scenario, proc.stdout)


def assert_counts(scenario, report):
    """The root workflow's jobs (a hierarchical run's report adds its sub-workflows' jobs)."""
    succeeded, failed = scenario.jobs[:2]
    if not scenario.subwfs:
        assert re.search(r"# jobs succeeded\s+:\s+%d " % succeeded, report), report
        assert re.search(r"# jobs failed\s+:\s+%d " % failed, report), report


def test_statistics_count_the_jobs(scenario):
    proc = scenario.tool("statistics", "-s", "all", scenario.dir)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    summary = scenario.read("statistics/summary.txt")
    jobs = re.search(r"^Jobs\s+(\d+)\s+(\d+)\s+(\d+)\s+(\d+)\s+(\d+)\s+\d+\s*$", summary, re.M)
    assert jobs, summary
    jobs = jobs.groups()
    assert tuple(int(n) for n in jobs) == scenario.jobs
    subs = re.search(r"^Sub-Workflows\s+(\d+)\s+(\d+)\s+(\d+)\s+(\d+)", summary, re.M).groups()
    assert int(subs[3]) == scenario.subwfs


def test_status_reads_the_last_run(scenario):
    proc = scenario.tool("status", "-l", scenario.dir)
    state = "Success" if scenario.exits[-1] == 0 else "Failure"
    assert proc.returncode == 0 and re.search(r"Summary: \d+ DAGs? total \(%s:" % state, proc.stdout), proc.stdout


def test_db_admin_checks_both_databases(scenario):
    for url in ("sqlite:///" + stampede_db(scenario), None):
        proc = scenario.tool("db-admin", "check", *([url] if url else []))
        assert proc.returncode == 0 and not proc.stdout + proc.stderr, proc.stdout + proc.stderr


def test_graphviz_draws_every_node_and_edge(scenario):
    proc = scenario.tool("graphviz", "--output", "graph.dot", scenario.bd["dag"])
    assert proc.returncode == 0, proc.stderr
    dot = scenario.read("graph.dot")
    nodes = re.findall(r"^\s+\"([^\"]+)\" \[shape", dot, re.M)
    edges = re.findall(r"^\s+\"[^\"]+\" -> \"[^\"]+\"", dot, re.M)
    dag = scenario.read(scenario.bd["dag"])
    assert sorted(nodes) == sorted(re.findall(r"^JOB (\S+)", dag, re.M))
    assert len(edges) == len(re.findall(r"^PARENT", dag, re.M))


def test_submitdir_archives_and_extracts_the_run(scenario):
    """Last: it changes the submit dir."""
    proc = scenario.tool("submitdir", "archive", scenario.dir, cwd=scenario.base)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert os.path.exists(os.path.join(scenario.dir, "archive.tar.gz"))
    assert not os.path.exists(os.path.join(scenario.dir, "00"))
    proc = scenario.tool("submitdir", "extract", scenario.dir, cwd=scenario.base)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert os.path.exists(os.path.join(scenario.dir, "00", "00", "sim_ID0000001.sub"))


def test_our_dashboard_and_api_serve_what_the_real_monitord_wrote(scenarios):
    """The databases pegasus-monitord itself wrote (the replay's) through our monitoring
    API and dashboard: states right, and job output, which monitord stores URL-quoted,
    shown decoded."""
    import sqlite3
    from pegasus_em.dashboard.dashboard import Dashboard
    from pegasus_em.service.monitoring import Monitoring
    for name in ("failure", "retry"):
        s = scenarios[name]
        home = s.replay_home
        api = Monitoring()
        root = json.loads(api.handle(home, "/root", {}).body())
        assert root["records"][0]["workflow_state"]["state"] == "WORKFLOW_TERMINATED"
        assert (root["records"][0]["workflow_state"]["status"] != 0) == (name == "failure")
        failed = api.handle(home, "/root/1/workflow/1/job/failed", {})
        count = json.loads(failed.body())["_meta"]["records_filtered"] if failed.status == 200 else 0
        assert count == (s.jobs[1] if name == "failure" else 1)  # retry: one failed try
        with sqlite3.connect(s.replay_db) as db:
            job_id, ji, raw = db.execute(
                "SELECT j.job_id, i.job_instance_id, i.stdout_text FROM job_instance i "
                "JOIN job j USING (job_id) WHERE i.stdout_text LIKE '%\\%0A%' ESCAPE '\\' "
                "ORDER BY i.job_instance_id LIMIT 1").fetchone()
        board = Dashboard(home_of=lambda user: home, file_owner=lambda user: None)
        r = board.handle("GET", "/r/1/w/1/j/%d/ji/%d/stdout" % (job_id, ji), "",
                         {"accept": "text/plain"}, b"", s.user.name, s.user.name, "", "")
        text = r.body.decode("utf-8")
        assert r.status == 200 and "%0A" in raw and "%0A" not in text and "\n" in text.strip()
        r = board.handle("GET", "/", "", {"accept": "application/json"}, b"", s.user.name,
                         s.user.name, "", "")
        states = {w["state"] for w in json.loads(r.body)["workflows"]}
        assert states == {"failed" if name == "failure" else "successful"}, states
