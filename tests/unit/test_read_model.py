"""One read model of em.db: the REST API, `pegasus-em why` and the dashboard say the
same about where a waiting workflow stands (its place in the queue) and why it
waits, for blocked, deferred, throttled and held workflows.  In process: the real
store, Ops, API over HTTP, the CLI and the dashboard reading em.db read-only."""

import json
import glob
import os
import re
import time

import pytest

from pegasus_em.core import db, store, transitions
from pegasus_em.dashboard import dashboard
from pegasus_em.em import cli
from pegasus_em.core.states import WorkflowState as W
from stack import Stack


@pytest.fixture
def world(tmp_path, monkeypatch):
    """A user's home whose ~/.pegasus is the stack's directory, so the dashboard reads
    the very em.db the API writes; the CLI talks to the stack's API."""
    home = tmp_path / "home"
    now = time.time()
    s = Stack(home / ".pegasus", clock=lambda: now)  # the same paragraphs at every call
    monkeypatch.setenv("PEGASUS_ENV", s.config_file())
    s.home = str(home)
    yield s
    s.close()


def move(s, ensemble, name, *path):
    for new in path:
        with s.db.write() as conn:
            w = store.get_workflow(conn, store.get_ensemble(conn, ensemble), name)
            assert transitions.change_workflow_state(conn, w, new, s.ops.now(), "test"), new


def build(s):
    """q: planning and running throttles full, two QUEUED, two READY in line, one
    blocked by a failed dependency, one waiting for a dependency, one deferred;
    h: HELD, with a READY workflow."""
    s.ensemble("q", max_planning=1, max_running=1)
    for name, priority, extra in (("run", 0, {}), ("busy", 0, {}), ("bad", 0, {}),
                                  ("q1", 1, {}), ("q2", 3, {}), ("lo", 0, {}), ("hi", 5, {}),
                                  ("later", 9, {"run_after": "2h"}),
                                  ("dep", 9, {"after": "bad"}), ("waits", 9, {"after": "busy"})):
        assert s.submit("q", name, priority=priority, **extra)[0] == 201, name
    move(s, "q", "run", W.PLANNING, W.QUEUED, W.RUNNING)
    move(s, "q", "bad", W.PLANNING, W.PLAN_FAILED)
    for name in ("q1", "q2"):
        move(s, "q", name, W.PLANNING, W.QUEUED)
    move(s, "q", "busy", W.PLANNING)
    s.ensemble("h")
    s.submit("h", "w1")
    s.post("/ensembles/h", state="HELD")


def board(s, path):
    """The dashboard's JSON twin of a page, as the user's own process serves it."""
    d = dashboard.Dashboard(home_of=lambda user: s.home)
    r = d.handle("GET", path, "", {"accept": "application/json"}, b"", "alice", "alice", "", "")
    assert r.status == 200, (r.status, r.body)
    return json.loads(r.body)


def cli_why(s, capsys, target):
    """`pegasus-em why` as printed, and its --json."""
    assert cli.main(["--url", s.url, "why", target]) == 0
    text = " ".join(capsys.readouterr().out.split())
    assert cli.main(["--url", s.url, "why", "--json", target]) == 0
    return text, json.loads(capsys.readouterr().out)


def test_api_why_and_dashboard_agree_on_queue_order_and_reasons(world, capsys):
    build(world)
    page = board(world, "/ensembles/q")
    rows = {w["name"]: w for w in page["workflows"]}
    listed = {w["name"]: w for w in world.get("/ensembles/q/workflows?detail=1")}
    facts = {}
    for name in rows:
        text, data = cli_why(world, capsys, "q." + name)
        assert data == world.get("/ensembles/q/workflows/%s/why" % name)
        assert text == " ".join(data["explanation"].split())
        facts[name] = data
        assert rows[name]["position"] == data.get("position"), name
        assert rows[name]["reason"] == listed[name]["reason"], name
    # the engine's order: busy, QUEUED, READY in line, READY that wait for something, the rest
    assert [w["name"] for w in page["workflows"]] == [
        "run", "busy", "q2", "q1", "hi", "lo", "later", "dep", "waits", "bad"]
    assert [rows[n]["position"] for n in ("q2", "q1", "hi", "lo")] == [1, 2, 1, 2]
    assert [rows[n]["position"] for n in ("later", "dep", "waits")] == [None] * 3

    # blocked
    assert facts["dep"]["blocked_by"] == "q.bad"
    assert rows["dep"]["waiting"] == listed["dep"]["reason"] == "blocked: dependency q.bad is PLAN_FAILED"
    assert "It is blocked: dependency q.bad is PLAN_FAILED" in facts["dep"]["explanation"]
    assert rows["waits"]["waiting"] == "waiting for 1 workflow(s) it depends on to succeed"
    assert "It waits for 1 workflow to succeed: q.busy (PLANNING)." in facts["waits"]["explanation"]
    # deferred
    when = time.strftime("%Y-%m-%d %H:%M:%S %Z", time.localtime(facts["later"]["run_after"]))
    assert rows["later"]["waiting"] == "not to be planned before " + when
    assert "It is not planned before %s" % when in facts["later"]["explanation"]
    # throttled
    assert facts["lo"]["throttle"] == {"kind": "planning", "limit": 1, "used": 1, "by": ["q.busy"]}
    assert rows["lo"]["waiting"] == "all 1 planning slots in use; 1 workflow(s) ahead of it"
    assert "The planning throttle of q is full" in facts["lo"]["explanation"]
    assert rows["q2"]["waiting"] == "all 1 running slots in use"
    assert "It is first in the run queue of q." in facts["q2"]["explanation"]


def test_api_why_and_dashboard_agree_on_a_held_ensemble(world, capsys):
    build(world)
    row, = board(world, "/ensembles/h")["workflows"]
    text, data = cli_why(world, capsys, "h.w1")
    assert row["position"] == data["position"] == 1
    assert data["ensemble_state"] == "HELD" and "Ensemble h is HELD (requested by user)" in text
    assert row["waiting"] == "ensemble h is HELD: nothing new starts (activate it)"
    one = board(world, "/ensembles/h/workflows/w1")["workflow"]
    assert (one["position"], one["waiting"]) == (row["position"], row["waiting"])


def test_the_workflow_page_and_why_agree_on_a_deferred_workflow(world, capsys):
    """The old dashboard gave a deferred workflow of priority 9 the first place in the
    planning queue, which the engine never gives it."""
    build(world)
    one = board(world, "/ensembles/q/workflows/later")["workflow"]
    _, data = cli_why(world, capsys, "q.later")
    assert one["position"] is None and "position" not in data
    assert one["waiting"].startswith("not to be planned before ")


def test_queue_order_pages_in_sql(world):
    """The page is cut in SQL, in the same order as the whole list."""
    build(world)
    everything = [w["name"] for w in board(world, "/ensembles/q")["workflows"]]
    with world.db.read() as conn:
        e = store.get_ensemble(conn, "q")
        pages = [w.name for offset in range(0, 10, 3) for w in store.queue_page(conn, e.id, 3, offset)]
    assert pages == everything


def test_em_db_is_read_only_through_store():
    """The modules that use em.db hold no SQL of its tables: `store` has it all."""
    tables = set()
    for script in db.SCHEMA:
        tables |= set(_words_after("CREATE TABLE", script))
    package = os.path.dirname(os.path.dirname(store.__file__))
    for module in ("ops", "transitions", "explain", "ensview", "empages", "metrics", "importer",
                   "manager", "triggers", "notify"):
        [path] = glob.glob(os.path.join(package, "*", module + ".py"))
        with open(path) as f:
            source = f.read()
        for verb in ("FROM", "JOIN", "UPDATE", "INSERT INTO", "DELETE FROM"):
            assert not set(_words_after(verb, source)) & tables, (module, verb)


def _words_after(verb, text):
    return re.findall(r"\b%s\s+(?:IF NOT EXISTS\s+)?(\w+)" % verb, text)
