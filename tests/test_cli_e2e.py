"""The real `pegasus-em` command against a real daemon, as its owner would use it."""

import json
import os
import re

import pytest

from conftest import Daemon, wait_until


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
    assert ok(d.cli("cron-trigger", "trig", "hourly", "1h", script, "-t", "2d",
                    "-a", "--site local")) == ""
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
