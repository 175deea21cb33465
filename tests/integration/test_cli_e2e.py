"""The real `pegasus-em` command against a real daemon, as its owner would use it."""

import json
import os
import re
import subprocess
import tempfile

import pytest

from conftest import REPO, Daemon, throwaway_user, unique, wait_until
from pegasus_em import __version__
from test_engine import TERMINAL, example, wait_state


@pytest.fixture(scope="module")
def em(shared_daemon):
    return shared_daemon


def ok(proc):
    assert proc.returncode == 0, (proc.stdout, proc.stderr)
    return proc.stdout


def test_full_session(em):
    d = em
    assert ok(d.cli("create", "-P", "2", "-R", "3", "myruns")) == ""
    lines = ok(d.cli("ensembles")).splitlines()
    assert lines[0].split() == ["NAME", "STATE", "CREATED", "UPDATED", "MAX", "PLANNING", "MAX",
                                "RUNNING"]
    row = [line for line in lines if line.startswith("myruns ")][0]
    assert row.split()[1] == "ACTIVE" and row.split()[-2:] == ["2", "3"]

    assert ok(d.cli("pause", "myruns")) == "State: PAUSED\n"
    assert ok(d.cli("hold", "myruns")) == "State: HELD\n"
    assert ok(d.cli("activate", "myruns")) == "State: ACTIVE\n"
    assert ok(d.cli("pause", "myruns")) == "State: PAUSED\n"  # keep workflows READY below

    proc = d.cli("config", "myruns.run1", "-P", "1", "-R", "5")
    assert ok(proc) == "Max Planning: 1\nMax Running: 5\n"
    assert "myruns" in proc.stderr  # the one-line note about ENSEMBLE.WORKFLOW

    workdir = d.user.write("work/plan.sh", "#!/bin/sh\necho planning\n", mode=0o755)
    cwd = os.path.dirname(workdir)
    assert ok(d.cli("submit", "-p", "7", "myruns.run1", "./plan.sh", "--dir", "a b",
                    cwd=cwd)) == ""
    status = ok(d.cli("status", "myruns.run1"))
    assert "Plan Command: \"%s\" \"--dir\" \"a b\"\n" % workdir in status
    assert "Base Dir:     %s\n" % cwd in status
    assert "State:        READY\n" in status and "Priority:     7\n" in status

    table = ok(d.cli("workflows", "myruns")).splitlines()
    assert table[0].split() == ["NAME", "STATE", "PRIORITY", "CREATED", "UPDATED"]
    assert table[1].split()[:3] == ["run1", "READY", "7"]
    long = ok(d.cli("workflows", "-l", "myruns"))
    assert "Name:     run1\n" in long and "URL:      %s/ensembles/myruns/workflows/run1" % d.url in long

    assert ok(d.cli("priority", "myruns.run1", "-p", "9")) == "Priority: 9\n"
    assert ok(d.cli("abort", "myruns.run1")) == "State: ABORTED\n"
    assert ok(d.cli("replan", "myruns.run1")) == "State: READY\n"
    assert ok(d.cli("analyze", "myruns.run1")).startswith("Workflow state is READY\n")

    rerun = d.cli("rerun", "myruns.run1")
    assert rerun.returncode == 1 and \
        rerun.stdout.startswith("ERROR: Invalid state change: READY -> QUEUED")

    data = json.loads(ok(d.cli("status", "--json", "myruns.run1")))
    assert data["name"] == "run1" and data["priority"] == 9


def test_triggers_from_the_command_line(em):
    d = em
    ok(d.cli("create", "trig"))
    ok(d.cli("pause", "trig"))
    script = d.user.write("wf/gen.sh", "#!/bin/sh\n", mode=0o755)
    proc = d.cli("cron-trigger", "trig", "hourly", "1h", script, "-t", "2d", "-a", "--site local")
    assert (ok(proc), proc.stderr) == ("", "")
    assert ok(d.cli("file-pattern-trigger", "trig", "files", "30s", script,
                    "/data/in/*.csv")) == ""

    def fired():  # both fire when created: READY -> RUNNING
        detail = json.loads(ok(d.cli("triggers", "--json", "trig")))
        return detail if {t["state"] for t in detail} == {"RUNNING"} else None
    detail = wait_until(fired, message="both triggers to fire once")
    listing = ok(d.cli("triggers", "trig"))
    assert "hourly" in listing and "files" in listing and "RUNNING" in listing
    hourly = [t for t in detail if t["name"] == "hourly"][0]
    assert hourly["workflow"] == {"script": script, "args": ["--site", "local"]}
    assert hourly["args"] == {"interval": 3600, "timeout": 172800}
    (name,) = hourly["workflows"]
    assert hourly["fire_count"] == 1 and name.startswith("hourly_")
    assert "Workflows:    %s\n" % name in ok(d.cli("triggers", "-l", "trig"))
    assert "hourly" in ok(d.cli("stop-trigger", "trig", "hourly"))
    assert "STOPPED" in ok(d.cli("triggers", "-l", "trig"))


@pytest.mark.parametrize("argv,message", [
    (["create", "dup"], "ERROR: Ensemble dup already exists"),
    (["status", "nope.w"], "ERROR: No such ensemble: nope"),
    (["pause", "nope"], "ERROR: No such ensemble: nope"),
    (["create", "bad.name"], "ERROR: Invalid ensemble name: bad.name"),
    (["create", "-R", "0", "zero"], "ERROR: Value for max_running must be >= 1: 0"),
    (["submit", "-p", "abc", "dup.w", "/bin/true"], "ERROR: Invalid priority: abc"),
    (["status", "dup.nope"], "ERROR: No such ensemble workflow: nope"),
    (["rerun", "dup.nope"], "ERROR: No such ensemble workflow: nope"),
    (["cron-trigger", "dup", "t", "10", "/bin/true"],
     "ERROR: interval must be given as `<int> <s|m|h|d>` and be greater than 0 seconds"),
    (["cron-trigger", "dup", "t", "5s", "/bin/true", "-t", "7"],
     "ERROR: timeout must be given as `<int> <s|m|h|d>` and be greater than 0 seconds"),
    (["file-pattern-trigger", "dup", "t", "5s", "/bin/true", "rel/*"],
     "ERROR: each file pattern must be given as an absolute path"),
    (["stop-trigger", "dup", "nope"], "ERROR: No such trigger: nope assigned to ensemble id: "),
])
def test_server_errors_print_error_and_exit_1(em, argv, message):
    """As the 5.x client prints them: ERROR: and the 5.x text on stdout (a hint in
    parentheses may follow), exit status 1."""
    em.cli("create", "dup")
    proc = em.cli(*argv)
    line = proc.stdout.rstrip("\n")
    assert proc.returncode == 1 and line.startswith(message), proc
    assert re.fullmatch(r"\d* ?(\(.+\))?", line[len(message):]), line


def test_usage_errors_exit_2_without_a_request(em):
    proc = em.cli("status", "no-dot")
    assert proc.returncode == 2 and "Invalid ENSEMBLE.WORKFLOW" in proc.stderr


def test_daemon_not_running_is_one_clear_line(user):
    user.configure()
    proc = Daemon(user).cli("--url", "http://127.0.0.1:9", "ensembles")
    assert proc.returncode == 1
    assert "pegasus-em server" in proc.stderr and "Traceback" not in proc.stderr
    assert len(proc.stderr.strip().splitlines()) == 1


def test_init_writes_a_private_config_then_the_server_starts(user):
    d = Daemon(user)
    first = d.cli("init")
    assert first.returncode == 0 and "Wrote" in first.stdout
    path = os.path.join(user.pegasus_dir, "service.py")
    assert oct(os.stat(path).st_mode & 0o777) == "0o600"
    assert d.cli("init").returncode == 0  # repeatable, never overwrites
    with open(path) as f:
        text = f.read()
    ns = {}
    exec(text, ns)
    user.password = ns["PASSWORD"]
    assert ns["USERNAME"] == user.name and len(user.password) >= 20
    d.start()
    try:
        assert d.request("GET", "/ensembles")[0] == 200
        assert d.cli("ensembles").returncode == 0  # found through em-server.json
    finally:
        d.kill()


# ---- the first hour (issue 14): what a new user runs into --------------------------

@pytest.fixture(scope="module")
def fast(sandbox):
    """A daemon of its own whose engine looks at running workflows twice a second."""
    with throwaway_user(sandbox) as u:
        u.configure(extra="EM_INTERVAL = 0.5\n")
        d = Daemon(u).start()
        yield d
        d.kill()


def test_server_prints_one_line_with_its_url_and_log_file(user):
    user.configure()
    out = tempfile.TemporaryFile()
    proc = user.popen([user.python, "-m", "pegasus_em", "server", "--port", "0"], stdout=out,
                      stderr=subprocess.DEVNULL)
    try:
        def printed():
            out.seek(0)
            text = out.read().decode()
            return text if text.endswith("\n") else None
        text = wait_until(printed, 15, message="the start line")
        with open(os.path.join(user.pegasus_dir, "em-server.json")) as f:
            url = json.load(f)["url"]
        assert text == "pegasus-em %s serving %s (pid %d); log: %s\n" % (
            __version__, url, proc.pid, os.path.join(user.pegasus_dir, "em-server.log"))
    finally:
        proc.kill()
        proc.wait()


def test_a_mistyped_verb_gets_the_closest_one(em):
    proc = em.cli("stauts", "x.y")
    assert proc.returncode == 2 and proc.stdout == ""
    assert proc.stderr.endswith("error: argument VERB: invalid choice: 'stauts' "
                                "(did you mean status?)\n")


def test_create_with_a_dotted_name_is_refused_and_creates_nothing(em):
    """Not `my` with a note, as before: 5.x's refusal, and no ensemble at all."""
    head = unique("my")
    proc = em.cli("create", head + ".runs")
    assert proc.returncode == 1 and proc.stderr == ""
    assert proc.stdout.startswith("ERROR: Invalid ensemble name: %s.runs (" % head)
    names = [e["name"] for e in json.loads(ok(em.cli("ensembles", "--json")))]
    assert head not in names and head + ".runs" not in names


def test_submit_of_a_script_that_is_not_executable_says_so(em):
    ens = unique("s")
    ok(em.cli("create", ens))
    script = em.user.write("notexe/plan.sh", "#!/bin/sh\n", mode=0o644)
    cwd = os.path.dirname(script)
    proc = em.cli("submit", ens + ".w", "./plan.sh", cwd=cwd)
    assert proc.returncode == 2
    assert proc.stderr.endswith("error: invalid planning command: ./plan.sh "
                                "(not executable: chmod +x ./plan.sh)\n")
    proc = em.cli("submit", ens + ".w", "./nope.sh", cwd=cwd)
    assert proc.stderr.endswith("error: invalid planning command: ./nope.sh (not found)\n")
    assert ok(em.cli("workflows", ens)) == ""


def test_a_trigger_whose_script_cannot_run_is_created_with_a_warning(em):
    """Created, as 5.x creates it (the script may come later), but said at once."""
    ens = unique("t")
    ok(em.cli("create", ens))
    ok(em.cli("pause", ens))
    missing = os.path.join(em.user.home, "nonexist.sh")
    proc = em.cli("cron-trigger", ens, "nightly", "1d", missing)
    assert proc.returncode == 0 and proc.stdout == ""
    assert proc.stderr == ("WARNING: workflow script %s does not exist: the trigger is "
                           "created, but each firing fails until that is fixed\n" % missing)
    assert "nightly" in ok(em.cli("triggers", ens))
    plain = em.user.write("wf/plain.sh", "#!/bin/sh\n", mode=0o644)
    proc = em.cli("file-pattern-trigger", ens, "files", "1h", plain, "/data/in/*.csv")
    assert proc.returncode == 0
    assert proc.stderr.startswith("WARNING: workflow script %s is not executable" % plain)
    st, _, body = em.request("POST", "/ensembles/%s/triggers/cron" % ens, {
        "trigger": "fivex", "workflow_script": missing, "workflow_args": "[]",
        "interval": "1h", "type": "CRON"})
    assert st == 201 and body["message"] == "created" and "does not exist" in body["warning"]


def test_stop_trigger_says_it_stays_listed_until_purged(em):
    ens = unique("t")
    ok(em.cli("create", ens))
    ok(em.cli("pause", ens))
    script = em.user.write("wf/gen.sh", "#!/bin/sh\n", mode=0o755)
    ok(em.cli("cron-trigger", ens, "hourly", "1h", script))
    assert ok(em.cli("stop-trigger", ens, "hourly")) == (
        "ensemble: %s, trigger: hourly marked for deletion (stopped; --purge forgets it)\n"
        % ens)
    assert "STOPPED" in ok(em.cli("triggers", ens))
    assert ok(em.cli("stop-trigger", "--purge", ens, "hourly")) == (
        "ensemble: %s, trigger: hourly deleted\n" % ens)
    assert ok(em.cli("triggers", ens)) == ""


def test_a_password_edited_after_the_start_is_refused_with_a_hint(daemon):
    path = daemon.user.configure(password="edited-later")
    proc = daemon.cli("--url", daemon.url, "ensembles")
    assert proc.returncode == 1
    assert proc.stdout == (
        "ERROR: Invalid username or password (pegasus-em server reads USERNAME and PASSWORD "
        "from %s only when it starts: restart it after editing that file)\n" % path)


def submit_simulated(d, ensemble, **knobs):
    """A new ensemble that takes them all at once, and one workflow per simulator knob."""
    ok(d.cli("create", ensemble, "-P", str(len(knobs)), "-R", str(len(knobs))))
    base = example(d)
    for name, knob in knobs.items():
        ok(d.cli("submit", "%s.%s" % (ensemble, name), "./plan.sh", "-D" + knob, cwd=base))


def test_abort_of_a_busy_workflow_says_it_is_being_removed(fast):
    """`State: RUNNING` alone read as a refused abort."""
    d = fast
    submit_simulated(d, "ab", run="pegasus.sim.run.seconds=60",
                     plan="pegasus.sim.plan.seconds=60")
    wait_state(d, "ab", "run", "RUNNING")
    wait_state(d, "ab", "plan", "PLANNING")
    assert ok(d.cli("abort", "ab.run")) == (
        "State: RUNNING (abort requested: its DAGMan is being removed, and it becomes "
        "ABORTED once DAGMan is gone)\n")
    assert ok(d.cli("abort", "ab.plan")) == (
        "State: PLANNING (abort requested: its planner is being stopped, and it becomes "
        "ABORTED once the planner has exited)\n")
    for name in ("run", "plan"):
        assert wait_state(d, "ab", name, *TERMINAL)["state"] == "ABORTED"


def test_why_counts_right_and_never_breaks_a_long_name(fast):
    d = fast
    ok(d.cli("create", "q"))
    ok(d.cli("pause", "q"))
    long = "w" * 95
    ok(d.cli("submit", "q.first", "/bin/true"))
    ok(d.cli("submit", "q." + long, "/bin/true"))
    out = ok(d.cli("why", "q." + long))
    assert "1 workflow comes first" in " ".join(out.split())
    explanation = json.loads(ok(d.cli("why", "--json", "q." + long)))["explanation"]
    ages = re.compile(r"\(\d+[smhd]")  # a second may pass between the two calls
    assert ages.sub("(", out).split() == ages.sub("(", explanation).split()  # no word cut in two
    assert "q.%s" % long in out.split()


_TABLE = re.compile(r"Un-Ready|===|Log last touched")


def test_why_quotes_what_a_dead_dagman_wrote_last_not_its_tables(fast):
    d = fast
    submit_simulated(d, "dd", died="pegasus.sim.dagman.die=true",
                     failed="pegasus.sim.run.fail=true")
    for name in ("died", "failed"):
        assert wait_state(d, "dd", name, *TERMINAL, timeout=60)["state"] == "FAILED"
    died = json.loads(ok(d.cli("why", "--json", "dd.died")))
    assert died["log"] and not any(_TABLE.search(line) for line in died["log"])
    assert any("submit" in line.lower() for line in died["log"]), died["log"]
    assert "The last lines its DAGMan wrote, with no EXITING line after them: " \
        in died["explanation"]
    failed = json.loads(ok(d.cli("why", "--json", "dd.failed")))
    assert not any(_TABLE.search(line) for line in failed["log"]), failed["log"]
    assert "EXITING WITH STATUS 1" in failed["log"][-1]


def test_the_quick_starts_failure_story_works_as_written(em):
    """The README's run2: submitted with the knob it shows, it fails; `rerun` then
    finishes it through DAGMan's rescue DAG (the knob fails the first run only)."""
    with open(os.path.join(REPO, "README.md"), encoding="utf-8") as f:
        readme = f.read()
    submit = re.search(r"^pegasus-em submit myruns\.run2 (\./plan\.sh \S+)", readme, re.M)
    assert submit and "rerun myruns.run2" in readme
    d, ens = em, unique("qs")
    ok(d.cli("create", "-P", "2", "-R", "4", ens))
    ok(d.cli("submit", ens + ".run2", *submit.group(1).split(), cwd=example(d)))
    assert wait_state(d, ens, "run2", *TERMINAL, timeout=60)["state"] == "FAILED"
    assert "Workflow failure detected" in ok(d.cli("analyze", ens + ".run2"))
    assert "State: QUEUED" in ok(d.cli("rerun", ens + ".run2"))
    assert wait_state(d, ens, "run2", *TERMINAL, timeout=60)["state"] == "SUCCESSFUL"
