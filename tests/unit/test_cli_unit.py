"""pegasus-em client: the parser, the 5.x layouts, and main() against a real socket.

The HTTP tests run a tiny `http.server` on 127.0.0.1 port 0 in a thread; it
answers canned replies and records what the client sent, so each test checks
the exact request a 5.x-compatible daemon receives.
"""

import base64
import http.server
import json
import os
import socket
import subprocess
import sys
import threading
import time
import types
import urllib.parse

import pytest

import pegasus_em
from pegasus_em import __version__, config, fmt
from pegasus_em.em import cli, client

TS = 1700000000  # 2023-11-14 22:13:20 UTC
WHEN = "2023-11-14 22:13:20 UTC"


# --------------------------------------------------------------------------- fixtures

@pytest.fixture
def utc():
    """Times print in local time; pin the zone so layouts are exact."""
    old = os.environ.get("TZ")
    os.environ["TZ"] = "UTC"
    time.tzset()
    yield
    if old is None:
        del os.environ["TZ"]
    else:
        os.environ["TZ"] = old
    time.tzset()


@pytest.fixture
def planner(tmp_path):
    """An executable planning script in its own directory."""
    exe = tmp_path / "bin" / "plan.sh"
    exe.parent.mkdir()
    exe.write_text("#!/bin/sh\necho pegasus-run /tmp/submit\n")
    exe.chmod(0o755)
    return exe


@pytest.fixture
def service_py(tmp_path, monkeypatch):
    """A private config file with credentials, found through PEGASUS_ENV."""
    path = tmp_path / "service.py"
    path.write_text('USERNAME = "alice"\nPASSWORD = "s3cret"\n')
    path.chmod(0o600)
    monkeypatch.setenv("PEGASUS_ENV", str(path))
    monkeypatch.delenv("PEGASUS_EM_URL", raising=False)
    monkeypatch.delenv("PEGASUS_EM_CAFILE", raising=False)
    return path


class Recorded:
    def __init__(self, method, path, headers, body):
        self.method, self.path, self.headers, self.body = method, path, headers, body

    @property
    def form(self):
        return urllib.parse.parse_qsl(self.body, keep_blank_values=True)


class _Handler(http.server.BaseHTTPRequestHandler):
    def _serve(self):
        size = int(self.headers.get("Content-Length") or 0)
        body = self.rfile.read(size).decode("utf-8")
        em = self.server.em
        em.requests.append(Recorded(self.command, self.path, self.headers, body))
        status, ctype, payload, headers = em.replies.get(
            (self.command, self.path), (404, "application/json", b'{"message": "no route"}', {}))
        self.send_response(status)
        for name, value in headers.items():
            self.send_header(name, value)
        self.send_header("Content-Type", ctype)
        self.send_header("Content-Length", str(len(payload)))
        self.end_headers()
        self.wfile.write(payload)

    do_GET = do_POST = do_PUT = do_DELETE = _serve

    def log_message(self, *args):
        pass


class FakeEM:
    """Canned replies by (method, path); every request recorded in order."""

    def __init__(self):
        self.replies = {}
        self.requests = []
        self.httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), _Handler)
        self.httpd.daemon_threads = True
        self.httpd.em = self
        self.url = "http://127.0.0.1:%d" % self.httpd.server_address[1]

    def reply(self, method, path, body=None, status=200, ctype="application/json",
              headers=None):
        if not isinstance(body, bytes):
            body = b"" if body is None else json.dumps(body).encode()
        self.replies[(method, path)] = (status, ctype, body, headers or {})

    @property
    def last(self):
        assert self.requests, "the client sent nothing"
        return self.requests[-1]


@pytest.fixture(scope="module")
def fake_em():
    """One server thread per module: shutdown() waits out a poll interval each time."""
    fake = FakeEM()
    thread = threading.Thread(target=fake.httpd.serve_forever, args=(0.02,), name="fake-em")
    thread.start()
    yield fake
    fake.httpd.shutdown()
    fake.httpd.server_close()
    thread.join()


@pytest.fixture
def em(fake_em, service_py):
    fake_em.replies.clear()
    del fake_em.requests[:]
    return fake_em


def run(em, *argv):
    return cli.main(["--url", em.url] + list(argv))


def basic(user, password):
    return "Basic " + base64.b64encode(("%s:%s" % (user, password)).encode()).decode()


# --------------------------------------------------------------------------- parser

VERB_ARGV = [
    ["server"], ["server", "--host", "0.0.0.0", "--port", "0", "-d"], ["server", "-vv"],
    ["init"],
    ["ensembles"], ["e", "--json"],
    ["create", "x"], ["c", "-P", "2", "-R", "3", "x"],
    ["pause", "x"], ["activate", "x"], ["hold", "x"], ["config", "-R", "2", "x"],
    ["workflows", "-l", "x"], ["w", "x"],
    ["submit", "x.y", "plan.sh"], ["sub", "-p", "3", "x.y", "plan.sh", "--dir", "d"],
    ["status", "x.y"], ["st", "x.y"], ["analyze", "x.y"], ["an", "x.y"],
    ["replan", "x.y"], ["rerun", "x.y"], ["abort", "x.y"], ["priority", "x.y", "-p", "3"],
    ["cron-trigger", "x", "t", "30s", "wf.py", "-t", "1h", "-a", "--site local"],
    ["file-pattern-trigger", "x", "t", "1m", "wf.py", "/in/*.csv", "/in2/*"],
    ["triggers", "-l", "x"], ["t", "x"], ["stop-trigger", "x", "t", "--purge"],
    ["start-trigger", "x", "t", "-t", "1h"],
    ["history", "x.y", "--limit", "5", "--after", "3"], ["why", "--json", "x.y"],
    ["watch", "-n", "0.5", "--once", "x"], ["import", "--db", "/tmp/workflow.db", "--json"],
    ["submit", "--after", "a,x.b", "--run-after", "2h", "x.y", "plan.sh"],
    ["config", "--max-failures", "3", "x"], ["create", "--max-failures", "2", "x"],
]


def _verbs_and_aliases():
    parser = cli.build_parser()
    subs = next(a for a in parser._actions if isinstance(a, cli.argparse._SubParsersAction))
    return set(subs.choices)


@pytest.fixture
def path_with_planner(planner, monkeypatch):
    monkeypatch.setenv("PATH", str(planner.parent))


@pytest.mark.parametrize("argv", VERB_ARGV, ids=lambda a: " ".join(a))
def test_every_verb_and_alias_parses(argv, path_with_planner):
    args = cli.parse_args(argv)
    assert callable(args.func)


def test_the_table_covers_every_verb_and_alias():
    assert {argv[0] for argv in VERB_ARGV} == _verbs_and_aliases()
    assert _verbs_and_aliases() == {
        "server", "init", "ensembles", "e", "create", "c", "pause", "activate", "hold", "config",
        "submit", "sub", "workflows", "w", "status", "st", "analyze", "an", "replan", "rerun",
        "abort", "priority", "cron-trigger", "file-pattern-trigger", "triggers", "t",
        "stop-trigger", "start-trigger", "history", "why", "watch", "import"}


@pytest.mark.parametrize("verb", sorted(_verbs_and_aliases()))
def test_every_verb_has_help(verb, capsys):
    assert cli.main([verb, "-h"]) == 0
    assert capsys.readouterr().out.startswith("usage: pegasus-em ")


def test_version(capsys):
    assert cli.main(["--version"]) == 0
    assert capsys.readouterr().out == "pegasus-em %s\n" % __version__


def test_no_verb_is_a_usage_error(capsys):
    assert cli.main([]) == 2
    assert "usage: pegasus-em" in capsys.readouterr().err


@pytest.mark.parametrize("typo,verb", [("stauts", "status"), ("sumbit", "submit"),
                                       ("ensemble", "ensembles"), ("triger", "triggers"),
                                       ("stop", "stop-trigger"), ("cron", "cron-trigger"),
                                       ("hitsory", "history")])
def test_a_mistyped_verb_gets_the_closest_one(typo, verb, capsys):
    assert cli.main([typo, "x.y"]) == 2
    err = capsys.readouterr().err
    assert "error: argument VERB: invalid choice: %r (did you mean %s?)\n" % (typo, verb) in err
    assert "choose from" not in err


def test_a_word_like_no_verb_still_lists_them(capsys):
    assert cli.main(["frobnicate"]) == 2
    assert "invalid choice: 'frobnicate' (choose from " in capsys.readouterr().err


def test_url_is_accepted_before_and_after_the_verb():
    assert cli.parse_args(["--url", "http://a:1", "ensembles"]).url == "http://a:1"
    assert cli.parse_args(["ensembles", "--url", "http://b:2"]).url == "http://b:2"
    assert cli.parse_args(["ensembles"]).url is None


@pytest.mark.parametrize("bad", ["run1", "a.b.c", ".b", "a.", "."])
@pytest.mark.parametrize("verb", ["status", "analyze", "replan", "abort"])
def test_ensemble_workflow_must_have_two_parts(verb, bad, capsys):
    assert cli.main([verb, bad]) == 2
    assert "error: Invalid ENSEMBLE.WORKFLOW: %s\n" % bad in capsys.readouterr().err


def test_workflow_verbs_split_the_name():
    args = cli.parse_args(["priority", "myruns.run1", "-p", "5"])
    assert (args.ensemble, args.workflow, args.priority) == ("myruns", "run1", 5)


ENSEMBLE_VERBS = [["pause"], ["activate"], ["hold"], ["config", "-P", "1"],
                  ["workflows"], ["triggers"]]


@pytest.mark.parametrize("verb", ENSEMBLE_VERBS, ids=lambda v: v[0])
def test_ensemble_verbs_take_the_ensemble_of_ensemble_workflow(verb, capsys):
    args = cli.parse_args(verb + ["myruns.run1"])
    assert args.ensemble == "myruns"
    assert capsys.readouterr().err == \
        "note: myruns.run1 is ENSEMBLE.WORKFLOW; using ensemble myruns\n"


def test_trigger_verbs_take_the_ensemble_of_ensemble_workflow(capsys):
    args = cli.parse_args(["stop-trigger", "myruns.run1", "t1"])
    assert (args.ensemble, args.trigger) == ("myruns", "t1")
    assert "using ensemble myruns" in capsys.readouterr().err


def test_create_sends_a_dotted_name_as_typed_for_the_server_to_refuse(capsys):
    """5.x answers `create bad.name` with "Invalid ensemble name: bad.name"; making
    an ensemble `bad` instead would surprise a script."""
    assert cli.parse_args(["create", "bad.name"]).ensemble == "bad.name"
    assert capsys.readouterr().err == ""


def test_plain_ensemble_gives_no_note(capsys):
    assert cli.parse_args(["pause", "myruns"]).ensemble == "myruns"
    assert capsys.readouterr().err == ""


def test_ensemble_part_must_not_be_empty(capsys):
    assert cli.main(["pause", ".run1"]) == 2
    assert "Invalid ENSEMBLE: .run1" in capsys.readouterr().err


def test_config_needs_a_limit(capsys):
    assert cli.main(["config", "myruns"]) == 2
    assert "Specify --max-planning, --max-running or --max-failures" in capsys.readouterr().err


def test_priority_is_a_required_int(capsys):
    assert cli.main(["priority", "a.b"]) == 2
    assert cli.main(["priority", "a.b", "-p", "high"]) == 2


# --------------------------------------------------------------------------- submit

def test_submit_quotes_every_word_and_keeps_options_after_the_command(planner):
    args = cli.parse_args(["submit", "-p", "7", "e.w", str(planner),
                           "--dir", "a b", "-p", "3", "-h"])
    assert args.priority == "7"
    assert args.plan_command == '"%s" "--dir" "a b" "-p" "3" "-h"' % planner


def test_submit_priority_is_sent_as_typed(planner):
    assert cli.parse_args(["submit", "e.w", str(planner)]).priority == "0"
    assert cli.parse_args(["submit", "-p", "+010", "e.w", str(planner)]).priority == "+010"


def test_submit_makes_a_relative_command_absolute(planner, monkeypatch):
    monkeypatch.chdir(planner.parent.parent)
    args = cli.parse_args(["submit", "e.w", "bin/plan.sh", "x"])
    assert args.plan_command == '"%s" "x"' % planner


def test_submit_searches_path_for_a_bare_name(planner, monkeypatch):
    monkeypatch.setenv("PATH", os.pathsep.join(["/nonexistent", str(planner.parent)]))
    assert cli.pathfind("plan.sh") == str(planner)
    assert cli.parse_args(["submit", "e.w", "plan.sh"]).plan_command == '"%s"' % planner


@pytest.mark.parametrize("command,why", [
    ("./missing.sh", "not found"),
    ("no-such-planner-anywhere", "no executable of that name in PATH"),
    ("plan.txt", "no executable of that name in PATH; for the one here, type ./plan.txt"),
    ("./plan.txt", "not executable: chmod +x ./plan.txt"),
    ("./sub", "a directory, not a script")])
def test_submit_says_why_a_command_cannot_run(command, why, capsys, monkeypatch, tmp_path):
    """5.x's words, then what is wrong: a script without its x bit is the usual case."""
    (tmp_path / "plan.txt").write_text("not a program")
    (tmp_path / "sub").mkdir()
    monkeypatch.chdir(tmp_path)
    assert cli.main(["submit", "e.w", command]) == 2
    assert "error: invalid planning command: %s (%s)\n" % (command, why) \
        in capsys.readouterr().err


def test_submit_needs_a_command(capsys):
    assert cli.main(["submit", "e.w"]) == 2
    assert "Specify ENSEMBLE.WORKFLOW and planning command" in capsys.readouterr().err


def test_submit_validates_the_name(planner, capsys):
    assert cli.main(["submit", "ew", str(planner)]) == 2
    assert "Invalid ENSEMBLE.WORKFLOW: ew" in capsys.readouterr().err


# --------------------------------------------------------------------------- triggers

REFUSED_TRIGGERS = [
    (["cron-trigger", "e", "t", "10", "/wf.py"], "interval", "10",
     "interval must be given as `<int> <s|m|h|d>` and be greater than 0 seconds (given: 10)"),
    (["cron-trigger", "e", "t", "5s", "/wf.py", "-t", "soon"], "timeout", "soon",
     "timeout must be given as `<int> <s|m|h|d>` and be greater than 0 seconds (given: soon)"),
    (["file-pattern-trigger", "e", "t", "5s", "/wf.py", "in/*"], "file_patterns", '["in/*"]',
     "each file pattern must be given as an absolute path (e.g. '/inputs/*.txt') "
     "(given: in/*)"),
]


@pytest.mark.parametrize("argv,field,sent,message", REFUSED_TRIGGERS)
def test_trigger_values_go_as_typed_and_the_servers_refusal_is_printed(em, argv, field, sent,
                                                                         message, capsys):
    """As the 5.x client: no check of its own, so the server's 5.x message is what
    a script sees, on stdout after ERROR:, with exit status 1."""
    route = "/ensembles/e/triggers/" + ("cron" if argv[0] == "cron-trigger" else "file_pattern")
    em.reply("POST", route, {"message": message}, status=400)
    assert run(em, *argv) == 1
    assert dict(em.last.form)[field] == sent
    assert capsys.readouterr().out == "ERROR: %s\n" % message


def test_trigger_args_are_split_like_a_shell_and_concatenated():
    args = cli.parse_args(["cron-trigger", "e", "t", "5s", "wf.py",
                           "-a", "--site 'my pool'", "x", "-a", "y"])
    assert args.script_args == ["--site", "my pool", "x", "y"]
    assert cli.parse_args(["cron-trigger", "e", "t", "5s", "wf.py"]).script_args == []


# --------------------------------------------------------------------------- layouts

ENSEMBLE = {"id": 1, "name": "myruns", "state": "ACTIVE", "created": TS, "updated": TS,
            "max_planning": 1, "max_running": 5, "workflows": [], "href": "h"}
WORKFLOW = {"id": 3, "name": "run1", "state": "RUNNING", "priority": 10, "created": TS,
            "updated": TS, "wf_uuid": "f00c0056-abd4", "href": "http://em/ensembles/myruns/"
            "workflows/run1", "basedir": "/home/a", "plan_command": '"/bin/plan.sh" "x"',
            "log": "/home/a/.pegasus/run1.log", "submitdir": "/home/a/submit/run0001"}


def test_ensembles_table(utc):
    assert fmt.ensembles([ENSEMBLE]) == (
        "NAME                 STATE    CREATED                  UPDATED                  "
        "MAX PLANNING  MAX RUNNING\n"
        "myruns               ACTIVE   2023-11-14 22:13:20 UTC  2023-11-14 22:13:20 UTC  "
        "           1            5")


def test_empty_lists_print_nothing():
    assert fmt.ensembles([]) == fmt.workflows([]) == fmt.workflows_long([]) == ""
    assert fmt.triggers([]) == fmt.triggers_long([]) == ""


def test_workflows_table(utc):
    assert fmt.workflows([WORKFLOW]) == (
        "NAME                 STATE           PRIORITY CREATED                  "
        "UPDATED                 \n"
        "run1                 RUNNING         10       2023-11-14 22:13:20 UTC  "
        "2023-11-14 22:13:20 UTC ")


def test_workflows_long(utc):
    block = ("ID:       3\n"
             "Name:     run1\n"
             "Created:  %s\n"
             "Updated:  %s\n"
             "State:    RUNNING\n"
             "Priority: 10\n"
             "UUID:     f00c0056-abd4\n"
             "URL:      http://em/ensembles/myruns/workflows/run1\n" % (WHEN, WHEN))
    assert fmt.workflows_long([WORKFLOW, WORKFLOW]) == block + "\n" + block


def test_status(utc):
    assert fmt.status(WORKFLOW) == (
        "ID:           3\n"
        "Name:         run1\n"
        'Plan Command: "/bin/plan.sh" "x"\n'
        "Created:      %s\n"
        "Updated:      %s\n"
        "State:        RUNNING\n"
        "UUID:         f00c0056-abd4\n"
        "Priority:     10\n"
        "Base Dir:     /home/a\n"
        "Submit Dir:   /home/a/submit/run0001\n"
        "Log:          /home/a/.pegasus/run1.log" % (WHEN, WHEN))


def test_status_shows_reason_and_blanks_for_nulls(utc):
    wf = dict(WORKFLOW, wf_uuid=None, submitdir=None, state="PLAN_FAILED",
              reason="pegasus-plan exited with status 1")
    lines = fmt.status(wf).split("\n")
    assert lines[6] == "UUID:         "
    assert lines[9] == "Submit Dir:   "
    assert lines[-1] == "Reason:       pegasus-plan exited with status 1"
    assert "Reason" not in fmt.status(dict(wf, reason=""))


def test_abort_of_a_busy_workflow_says_it_is_under_way():
    """5.x's `State: RUNNING`, then why it is not ABORTED yet."""
    assert fmt.aborting({"state": "ABORTED"}) == "State: ABORTED"
    assert fmt.aborting({"state": "RUNNING"}) == (
        "State: RUNNING (abort requested: its DAGMan is being removed, and it becomes "
        "ABORTED once DAGMan is gone)")
    assert fmt.aborting({"state": "PLANNING"}).startswith(
        "State: PLANNING (abort requested: its planner is being stopped")


def test_why_never_breaks_a_long_word():
    path = "/home/someone/" + "deep/" * 20 + "run0001"
    out = fmt.why({"explanation": "It was planned into %s, a long path." % path})
    assert path + "," in out.splitlines()
    assert out.split() == ["It", "was", "planned", "into", path + ",", "a", "long", "path."]


def test_state_priority_and_limits():
    assert fmt.state({"state": "PAUSED"}) == "State: PAUSED"
    assert fmt.priority({"priority": 5}) == "Priority: 5"
    assert fmt.limits(ENSEMBLE) == "Max Planning: 1\nMax Running: 5"


@pytest.mark.parametrize("seconds, shown", [
    (30, "30s"), (300, "5m"), (7200, "2h"), (86400, "1d"), (90, "90s"), (0, "0s"),
    (3600.0, "1h"), (1.5, "1.5s"), (None, ""), ("3 s", "3 s")])
def test_duration(seconds, shown):
    assert fmt.duration(seconds) == shown


TRIGGER = {"id": 7, "ensemble_id": 1, "name": "inbox", "state": "RUNNING",
           "type": "FILE_PATTERN", "workflow": {"script": "/home/a/wf.py",
                                                "args": ["--site", "my pool"]},
           "args": {"interval": 300, "timeout": 86400, "file_patterns": ["/in/*.csv"]},
           "next_fire": TS, "fire_count": 4, "last_error": None,
           "workflows": ["inbox_1", "inbox_2"]}
FIVE_X_TRIGGER = {"id": 8, "ensemble_id": 1, "name": "tick", "state": "READY", "type": "CRON",
                  "workflow": {"script": "/home/a/wf.py", "args": None}, "args": None}


def test_triggers_table_tolerates_5x_objects(utc):
    assert fmt.triggers([TRIGGER, FIVE_X_TRIGGER]) == (
        "NAME                 TYPE         STATE     INTERVAL NEXT                     "
        "FIRES SCRIPT\n"
        "inbox                FILE_PATTERN RUNNING   5m       %s      4 /home/a/wf.py\n"
        "tick                 CRON         READY     -        -                            - "
        "/home/a/wf.py" % WHEN)


def test_triggers_long(utc):
    assert fmt.triggers_long([TRIGGER]) == (
        "ID:           7\n"
        "Name:         inbox\n"
        "Ensemble:     1\n"
        "Type:         FILE_PATTERN\n"
        "State:        RUNNING\n"
        "Script:       /home/a/wf.py\n"
        "Args:         --site 'my pool'\n"
        "Base Dir:     \n"
        "Interval:     5m\n"
        "Timeout:      1d\n"
        "Patterns:     '/in/*.csv'\n"
        "Created:      \n"
        "Updated:      \n"
        "Next Fire:    %s\n"
        "Deadline:     \n"
        "Fires:        4\n"
        "Failing:      \n"
        "Failures:     \n"
        "First Error:  \n"
        "Last Error:   \n"
        "Workflows:    inbox_1, inbox_2\n"
        "URL:          \n" % WHEN)


def test_triggers_long_formats_our_extra_fields(utc):
    out = fmt.triggers_long([dict(TRIGGER, ensemble="myruns", deadline=TS, created=TS,
                                  failures=2, href="http://em/t")])
    for line in ("Ensemble:     myruns", "Deadline:     " + WHEN, "Created:      " + WHEN,
                 "Failures:     2", "URL:          http://em/t"):
        assert line + "\n" in out


def test_triggers_long_shows_a_failing_trigger_with_its_errors_and_times(utc):
    out = fmt.triggers_long([dict(TRIGGER, failing=True, failures=9, first_error="gone",
                                  first_failure=TS, last_error="still gone",
                                  last_failure=TS)])
    for line in ("Failing:      yes (retried at each interval)", "Failures:     9",
                 "First Error:  %s: gone" % WHEN, "Last Error:   %s: still gone" % WHEN):
        assert line + "\n" in out
    assert "Failing:      no\n" in fmt.triggers_long([dict(TRIGGER, failing=False)])


def test_triggers_long_names_many_workflows_by_count_and_the_newest():
    names = ["inbox_%d" % i for i in range(1000)]
    out = fmt.triggers_long([dict(TRIGGER, workflows=names, workflow_count=1500)])
    assert ("Workflows:    1500: ..., %s\n" % ", ".join(names[-10:])) in out
    assert "workflow_count" not in out
    assert "Workflows:    a, b\n" in fmt.triggers_long([dict(TRIGGER, workflows=["a", "b"],
                                                                 workflow_count=2)])


def test_triggers_long_tolerates_nulls_and_shows_unknown_fields():
    out = fmt.triggers_long([dict(FIVE_X_TRIGGER, workflow=None, extra="x")])
    assert "Script:       \n" in out and "Interval:     \n" in out
    assert out.endswith("extra:        x\n")


def test_json_output_is_sorted_and_indented():
    assert fmt.to_json({"b": 1, "a": [1]}) == '{\n  "a": [\n    1\n  ],\n  "b": 1\n}'


# --------------------------------------------------------------------------- requests

def test_ensembles_sends_auth_and_accept_and_prints_the_table(em, utc, capsys):
    em.reply("GET", "/ensembles", [ENSEMBLE])
    assert run(em, "ensembles") == 0
    assert capsys.readouterr().out == fmt.ensembles([ENSEMBLE]) + "\n"
    req = em.last
    assert (req.method, req.path, req.body) == ("GET", "/ensembles", "")
    assert req.headers["Authorization"] == basic("alice", "s3cret")
    assert req.headers["Accept"] == "application/json"


def test_empty_ensembles_print_nothing(em, capsys):
    em.reply("GET", "/ensembles", [])
    assert run(em, "e") == 0
    assert capsys.readouterr().out == ""


def test_json_prints_the_reply(em, capsys):
    em.reply("GET", "/ensembles", [ENSEMBLE])
    assert run(em, "ensembles", "--json") == 0
    assert json.loads(capsys.readouterr().out) == [ENSEMBLE]


def test_url_after_the_verb(em, capsys):
    em.reply("GET", "/ensembles", [])
    assert cli.main(["ensembles", "--url", em.url]) == 0
    assert em.last.path == "/ensembles"


def test_create_posts_a_form(em, capsys):
    em.reply("POST", "/ensembles", ENSEMBLE, status=201)
    assert run(em, "create", "-P", "2", "myruns") == 0
    req = em.last
    assert (req.method, req.path) == ("POST", "/ensembles")
    assert req.body == "name=myruns&max_planning=2&max_running=1"
    assert req.headers["Content-Type"] == "application/x-www-form-urlencoded"
    assert capsys.readouterr().out == ""


@pytest.mark.parametrize("verb, state", [("pause", "PAUSED"), ("activate", "ACTIVE"),
                                         ("hold", "HELD")])
def test_ensemble_state_verbs(em, capsys, verb, state):
    em.reply("POST", "/ensembles/myruns", dict(ENSEMBLE, state=state))
    assert run(em, verb, "myruns") == 0
    assert em.last.body == "state=" + state
    assert capsys.readouterr().out == "State: %s\n" % state


def test_config_sends_only_the_limits_given(em, capsys):
    em.reply("POST", "/ensembles/myruns", ENSEMBLE)
    assert run(em, "config", "myruns.run1", "-R", "5") == 0
    assert (em.last.path, em.last.body) == ("/ensembles/myruns", "max_running=5")
    out, err = capsys.readouterr()
    assert out == "Max Planning: 1\nMax Running: 5\n"
    assert "using ensemble myruns" in err


def test_submit_posts_the_5x_form(em, planner, tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)
    em.reply("POST", "/ensembles/myruns/workflows", WORKFLOW, status=201)
    assert run(em, "submit", "-p", "3", "myruns.run1", str(planner), "a b") == 0
    assert em.last.form == [("name", "run1"), ("priority", "3"),
                            ("basedir", str(tmp_path)),
                            ("plan_command", '"%s" "a b"' % planner)]
    assert capsys.readouterr().out == ""


def test_workflows_table_and_long(em, utc, capsys):
    em.reply("GET", "/ensembles/myruns/workflows", [WORKFLOW])
    assert run(em, "w", "myruns") == 0
    assert capsys.readouterr().out == fmt.workflows([WORKFLOW]) + "\n"
    assert run(em, "workflows", "-l", "myruns") == 0
    assert capsys.readouterr().out.startswith("ID:       3\nName:     run1\n")


def test_status(em, utc, capsys):
    em.reply("GET", "/ensembles/myruns/workflows/run1", WORKFLOW)
    assert run(em, "st", "myruns.run1") == 0
    assert capsys.readouterr().out == fmt.status(WORKFLOW) + "\n"


def test_analyze_writes_the_text_as_is(em, capsys):
    em.reply("GET", "/ensembles/myruns/workflows/run1/analyze", b"plan log\nno newline",
             ctype="text/plain")
    assert run(em, "an", "myruns.run1") == 0
    assert capsys.readouterr().out == "plan log\nno newline"


@pytest.mark.parametrize("verb, state", [("replan", "READY"), ("rerun", "QUEUED"),
                                         ("abort", "ABORTED")])
def test_workflow_state_verbs(em, capsys, verb, state):
    em.reply("POST", "/ensembles/myruns/workflows/run1", dict(WORKFLOW, state=state))
    assert run(em, verb, "myruns.run1") == 0
    assert (em.last.method, em.last.body) == ("POST", "state=" + state)
    assert capsys.readouterr().out == "State: %s\n" % state


def test_priority(em, capsys):
    em.reply("POST", "/ensembles/myruns/workflows/run1", dict(WORKFLOW, priority=5))
    assert run(em, "priority", "myruns.run1", "-p", "5") == 0
    assert em.last.body == "priority=5"
    assert capsys.readouterr().out == "Priority: 5\n"


def test_cron_trigger_form(em, tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)
    em.reply("POST", "/ensembles/myruns/triggers/cron", FIVE_X_TRIGGER, status=201)
    assert run(em, "cron-trigger", "myruns", "tick", "30s", "wf.py") == 0
    assert em.last.form == [
        ("trigger", "tick"), ("workflow_script", str(tmp_path / "wf.py")),
        ("workflow_args", "[]"), ("interval", "30s"), ("type", "CRON"),
        ("basedir", str(tmp_path))]
    assert capsys.readouterr().out == ""


def test_file_pattern_trigger_form(em, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    em.reply("POST", "/ensembles/myruns/triggers/file_pattern", TRIGGER, status=201)
    assert run(em, "file-pattern-trigger", "myruns", "inbox", "5 m", "/abs/wf.py",
               "/in/*.csv", "/in/*.txt", "-t", "1d", "-a", "--site 'my pool'") == 0
    assert em.last.form == [
        ("trigger", "inbox"), ("workflow_script", "/abs/wf.py"),
        ("workflow_args", '["--site", "my pool"]'), ("interval", "5 m"), ("timeout", "1d"),
        ("type", "FILE_PATTERN"), ("basedir", str(tmp_path)),
        ("file_patterns", '["/in/*.csv", "/in/*.txt"]')]


def test_triggers_table_and_long(em, utc, capsys):
    em.reply("GET", "/ensembles/myruns/triggers", [TRIGGER, FIVE_X_TRIGGER])
    assert run(em, "triggers", "myruns") == 0
    assert capsys.readouterr().out == fmt.triggers([TRIGGER, FIVE_X_TRIGGER]) + "\n"
    assert run(em, "triggers", "-l", "myruns") == 0
    assert "Workflows:    inbox_1, inbox_2\n" in capsys.readouterr().out


@pytest.mark.parametrize("extra, path", [([], "/ensembles/myruns/triggers/tick"),
                                         (["--purge"], "/ensembles/myruns/triggers/tick?purge=1")])
def test_stop_trigger(em, capsys, extra, path):
    em.reply("DELETE", path, {"message": "trigger tick stopped"}, status=202)
    assert run(em, "stop-trigger", "myruns", "tick", *extra) == 0
    assert (em.last.method, em.last.path) == ("DELETE", path)
    assert capsys.readouterr().out == "trigger tick stopped\n"


def test_names_are_escaped_in_paths(em, capsys):
    em.reply("POST", "/ensembles/a%2Fb%20c", {"state": "HELD"})
    assert run(em, "hold", "a/b c") == 0
    assert em.last.path == "/ensembles/a%2Fb%20c"


# --------------------------------------------------------------------------- errors

def test_json_error_prints_its_message_on_stdout(em, capsys):
    em.reply("GET", "/ensembles/nope/workflows", {"message": "No such ensemble: nope"},
             status=404)
    assert run(em, "workflows", "nope") == 1
    assert capsys.readouterr().out == "ERROR: No such ensemble: nope\n"


def test_a_refused_password_of_the_daemon_says_it_reads_service_py_at_start(em, capsys,
                                                                             service_py):
    em.reply("GET", "/ensembles", {"message": "Invalid username or password"}, status=401,
             headers={"WWW-Authenticate": 'Basic realm="pegasus-em"'})
    assert run(em, "ensembles") == 1
    assert capsys.readouterr().out == (
        "ERROR: Invalid username or password (pegasus-em server reads USERNAME and PASSWORD "
        "from %s only when it starts: restart it after editing that file)\n" % service_py)


def test_a_refused_password_of_pegasus_service_gets_no_such_hint(em, capsys):
    """pegasus-service asks PAM: service.py has nothing to do with it."""
    em.reply("GET", "/ensembles", {"message": "Invalid username or password"}, status=401,
             headers={"WWW-Authenticate": 'Basic realm="Pegasus Service", charset="UTF-8"'})
    assert run(em, "ensembles") == 1
    assert capsys.readouterr().out == "ERROR: Invalid username or password\n"


def test_a_trigger_created_with_a_warning_prints_it_on_stderr(em, capsys):
    em.reply("POST", "/ensembles/myruns/triggers/cron", {
        "message": "created", "warning": "workflow script /x.sh does not exist: ..."},
        status=201)
    assert run(em, "cron-trigger", "myruns", "tick", "30s", "/x.sh") == 0
    out = capsys.readouterr()
    assert out.out == "" and out.err == "WARNING: workflow script /x.sh does not exist: ...\n"


def test_text_error_prints_the_raw_body(em, capsys):
    em.reply("POST", "/ensembles/e", b"Internal Server Error", status=500, ctype="text/html")
    assert run(em, "pause", "e") == 1
    assert capsys.readouterr().out == "ERROR: Internal Server Error\n"


def test_empty_error_names_the_status(em, capsys):
    em.reply("GET", "/ensembles", b"", status=502)
    assert run(em, "ensembles") == 1
    assert capsys.readouterr().out == "ERROR: HTTP 502\n"


def test_non_json_success_is_an_error_not_a_traceback(em, capsys):
    em.reply("GET", "/ensembles", b"<html>", ctype="text/html")
    assert run(em, "ensembles") == 1
    assert "not JSON" in capsys.readouterr().err


def test_connection_refused_is_one_line(service_py, capsys):
    # A bound socket that never listens refuses connections, with no race.
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        url = "http://127.0.0.1:%d" % sock.getsockname()[1]
        assert cli.main(["--url", url, "ensembles"]) == 1
    out, err = capsys.readouterr()
    assert out == ""
    assert err == ("ERROR: cannot reach the ensemble manager at %s: it is not running "
                   "(connection refused). Start it with: pegasus-em server\n" % url)


@pytest.mark.parametrize("url", ["127.0.0.1:8000", "ftp://host/", "http://"])
def test_bad_url_is_one_line(service_py, capsys, url):
    assert cli.main(["--url", url, "ensembles"]) == 1
    assert capsys.readouterr().err == \
        "ERROR: invalid ensemble manager URL: %s (expected http://HOST:PORT)\n" % url


def test_unreadable_cafile_is_one_line(service_py, tmp_path, capsys):
    missing = str(tmp_path / "missing.pem")
    assert cli.main(["--url", "https://127.0.0.1:9", "--cafile", missing, "ensembles"]) == 1
    assert capsys.readouterr().err.startswith("ERROR: cannot load CA file %s: " % missing)


def test_missing_credentials(tmp_path, monkeypatch, capsys):
    path = tmp_path / "service.py"
    path.write_text('USERNAME = "alice"\n')
    monkeypatch.setenv("PEGASUS_ENV", str(path))
    assert cli.main(["--url", "http://127.0.0.1:9", "ensembles"]) == 1
    assert capsys.readouterr().err == \
        "ERROR: Specify USERNAME and PASSWORD in %s\n" % path


def test_missing_pegasus_env_file_names_its_path(tmp_path, monkeypatch, capsys):
    """5.x fails too when the file PEGASUS_ENV names is missing (Flask from_envvar)."""
    path = tmp_path / "absent.py"
    monkeypatch.setenv("PEGASUS_ENV", str(path))
    assert cli.main(["--url", "http://127.0.0.1:9", "ensembles"]) == 2
    assert capsys.readouterr().err == "ERROR: PEGASUS_ENV names %s, which does not exist\n" % path


def test_broken_config_exits_2(service_py, capsys):
    service_py.write_text("USERNAME = \n")
    assert cli.main(["--url", "http://127.0.0.1:9", "ensembles"]) == 2
    err = capsys.readouterr().err
    assert err.startswith("ERROR: %s, line 1: syntax error" % service_py)
    assert "Traceback" not in err


def test_config_warnings_go_to_stderr(em, service_py, capsys):
    service_py.write_text(service_py.read_text() + "EM_PROT = 1\n")
    em.reply("GET", "/ensembles", [])
    assert run(em, "ensembles") == 0
    out, err = capsys.readouterr()
    assert out == ""
    assert err == "WARNING: %s: unknown setting EM_PROT (ignored)\n" % service_py


def test_ctrl_c_exits_130(service_py, monkeypatch):
    def interrupted(*args, **kwargs):
        raise KeyboardInterrupt
    monkeypatch.setattr(cli.config, "load", interrupted)
    assert cli.main(["--url", "http://127.0.0.1:9", "ensembles"]) == 130


def test_server_verb_calls_daemon_serve_lazily(monkeypatch):
    calls = []
    fake = types.ModuleType("pegasus_em.em.daemon")
    fake.serve = lambda **kw: calls.append(kw) or 3
    monkeypatch.setitem(sys.modules, "pegasus_em.em.daemon", fake)
    monkeypatch.setattr(pegasus_em.em, "daemon", fake, raising=False)
    assert cli.main(["server", "--port", "0", "-d"]) == 3
    assert calls == [{"host": None, "port": 0, "debug": True, "allow_remote": False}]
    assert cli.main(["server", "--host", "0.0.0.0", "--allow-remote"]) == 3
    assert calls[1] == {"host": "0.0.0.0", "port": None, "debug": False, "allow_remote": True}
    assert cli.main(["server", "-v"]) == 3   # Pegasus's -v: INFO, our default already
    assert calls[2]["debug"] is False
    assert cli.main(["server", "-vv"]) == 3  # Pegasus's -vv: DEBUG
    assert calls[3]["debug"] is True


def test_t_is_short_for_triggers(em):
    em.reply("GET", "/ensembles/x/triggers", [])
    assert run(em, "t", "x") == 0
    assert (em.last.method, em.last.path) == ("GET", "/ensembles/x/triggers")


# --------------------------------------------------------------------------- client

def test_request_returns_any_status_and_helpers_raise(em):
    em.reply("GET", "/ensembles/x", {"message": "gone"}, status=404)
    api = client.Client(em.url + "/", "u", "p")
    status, headers, body = api.request("GET", "/ensembles/x")
    assert (status, headers["Content-Type"], json.loads(body)) == \
        (404, "application/json", {"message": "gone"})
    with pytest.raises(client.ReplyError) as info:
        api.get_json("/ensembles/x")
    assert (info.value.status, info.value.message) == (404, "gone")


def test_get_fields_become_a_query_string(em):
    em.reply("GET", "/ensembles?a=1&b=x+y", [])
    api = client.Client(em.url, "u", "p")
    assert api.request("GET", "/ensembles", {"a": 1, "b": "x y"})[0] == 200


def _dead_pid():
    child = subprocess.Popen([sys.executable, "-c", "pass"])
    child.wait()
    return child.pid


@pytest.fixture
def endpoint(tmp_path):
    return tmp_path / "em-server.json"


@pytest.fixture
def listener():
    """A listening socket of ours, as a live daemon holds one."""
    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    sock.listen()
    yield "http://127.0.0.1:%d" % sock.getsockname()[1]
    sock.close()


def _write(endpoint, url, pid=None, token="run-token", mode=0o600):
    endpoint.write_text(json.dumps({"url": url, "pid": pid or os.getpid(), "token": token}))
    endpoint.chmod(mode)


def test_discovery_prefers_the_option_then_the_environment(endpoint, listener):
    _write(endpoint, listener)
    env = {"PEGASUS_EM_URL": "http://127.0.0.1:2"}
    chosen = client.discover("http://127.0.0.1:1", env, {}, str(endpoint))
    assert chosen == ("http://127.0.0.1:1", None, client.refuse_other_users)
    remote = client.discover("http://192.0.2.1:1", {}, {}, str(endpoint))
    assert remote == ("http://192.0.2.1:1", None, None)  # the user's call; proxies apply
    assert client.discover(None, env, {}, str(endpoint)).url == "http://127.0.0.1:2"
    assert client.discover(None, {}, {}, str(endpoint)) == \
        (listener, "run-token", client.require_own_listener)
    assert client.read_endpoint(str(endpoint)) == listener


def _fallback(port=4321):
    return ("http://127.0.0.1:%d" % port, None, client.require_own_listener)


@pytest.mark.parametrize("content", [
    None, "garbage", '{"url": "http://127.0.0.1:3"}', '["x"]',
    json.dumps({"url": "http://127.0.0.1:3", "pid": "1"})])
def test_discovery_ignores_missing_or_garbled_endpoint_files(endpoint, content):
    if content is not None:
        endpoint.write_text(content)
    assert client.discover(None, {}, {"EM_PORT": 4321}, str(endpoint)) == _fallback()


def test_discovery_ignores_a_dead_daemons_file(endpoint, listener):
    _write(endpoint, listener, pid=_dead_pid())
    assert client.discover(None, {}, {}, str(endpoint)) == _fallback(config.em_port())


def test_discovery_ignores_a_file_whose_port_is_not_held_by_us(endpoint, listener):
    """A recycled pid of ours, but the daemon's socket is gone: the port is anyone's."""
    _write(endpoint, "http://127.0.0.1:9")  # nothing of ours listens on port 9
    assert client.discover(None, {}, {"EM_PORT": 4321}, str(endpoint)) == _fallback()
    _write(endpoint, listener.replace("127.0.0.1", "localhost"))  # not what our daemon writes
    assert client.read_endpoint(str(endpoint)) is None


def test_listener_owners_reads_proc_net_tcp():
    me = os.geteuid()
    v4, v6, wild6 = socket.socket(), socket.socket(socket.AF_INET6), \
        socket.socket(socket.AF_INET6)
    try:
        v4.bind(("127.0.0.1", 0))
        v6.bind(("::1", 0))
        wild6.bind(("::", 0))
        for s in (v4, v6, wild6):
            s.listen()
        p4, p6, pw = (s.getsockname()[1] for s in (v4, v6, wild6))
        assert client.listener_owners("127.0.0.1", p4) == {me}
        assert client.listener_owners("::ffff:127.0.0.1", p4) == {me}
        assert client.listener_owners("127.0.0.2", p4) == set()
        assert client.listener_owners("::1", p6) == {me}
        assert client.listener_owners("127.0.0.1", p6) == set()
        assert client.listener_owners("127.0.0.1", pw) == {me}  # dual-stack wildcard
    finally:
        for s in (v4, v6, wild6):
            s.close()
    assert client.listener_owners("127.0.0.1", p4) == set()


def test_a_guard_that_refuses_means_nothing_is_sent(em):
    em.reply("GET", "/ensembles", [])
    seen = []

    def guard(peer):
        seen.append(peer[:2])
        raise client.NotRunning("not ours")

    api = client.Client(em.url, "u", "p", guard=guard)
    with pytest.raises(client.NotRunning):
        api.get_json("/ensembles")
    assert seen == [("127.0.0.1", int(em.url.rsplit(":", 1)[1]))] and em.requests == []
    assert client.Client(em.url, "u", "p", guard=lambda peer: None).get_json("/ensembles") == []
