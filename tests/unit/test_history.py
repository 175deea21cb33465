"""History: events carry names and page both ways, on the API and the command line."""

import json
import re

from beyond_fixtures import move, run_cli, stack  # noqa: F401
from pegasus_em import fmt
from pegasus_em.em import cli
from pegasus_em.core.states import WorkflowState as W


def test_events_carry_names_and_page_both_ways(stack):
    stack.ensemble("h")
    for name in ("a", "b", "c"):
        assert stack.submit("h", name)[0] == 201
    move(stack, "h", "a", W.PLANNING, W.PLAN_FAILED, reason="planner exited with code 1")
    events = stack.events("h")
    assert [(e["workflow"], e["old_state"], e["new_state"]) for e in events] == [
        (None, None, "ACTIVE"), ("a", None, "READY"), ("b", None, "READY"),
        ("c", None, "READY"), ("a", "READY", "PLANNING"), ("a", "PLANNING", "PLAN_FAILED")]
    assert all(e["ensemble"] == "h" for e in events)
    ids = [e["id"] for e in events]
    newest = stack.get("/ensembles/h/events?before=%d&limit=2" % (2 ** 31 - 1))
    assert [e["id"] for e in newest] == ids[-2:]  # the newest two, oldest first
    older = stack.get("/ensembles/h/events?before=%d&limit=2" % ids[-2])
    assert [e["id"] for e in older] == ids[-4:-2]
    assert [e["id"] for e in stack.get("/ensembles/h/events?after=%d&limit=2" % ids[1])] == \
        ids[2:4]
    one = stack.get("/ensembles/h/workflows/a/events")
    assert [e["new_state"] for e in one] == ["READY", "PLANNING", "PLAN_FAILED"]
    assert one[-1]["reason"] == "planner exited with code 1"
    stack.ensemble("h2")
    everything = stack.get("/events?after=%d" % ids[-1])
    assert [(e["ensemble"], e["new_state"]) for e in everything] == [("h2", "ACTIVE")]
    assert stack.request("GET", "/ensembles/h/events?before=x")[0] == 400


def test_history_command_prints_a_table_and_pages(stack, run_cli):
    stack.ensemble("h")
    stack.submit("h", "run1")
    move(stack, "h", "run1", W.PLANNING, W.PLAN_FAILED, reason="planner exited with code 2")
    code, out, err = run_cli("history", "h")
    lines = out.splitlines()
    assert code == 0 and lines[0].split() == ["ID", "TIME", "WORKFLOW", "CHANGE", "REASON"]
    assert re.match(r"\d+ +\d{4}-\d\d-\d\d \d\d:\d\d:\d\d UTC +-> ACTIVE +created$", lines[1])
    assert re.search(r"UTC  run1 +PLANNING -> PLAN_FAILED +planner exited with code 2$",
                     lines[-1])
    code, out, _ = run_cli("history", "h.run1")
    assert out.splitlines()[0].split() == ["ID", "TIME", "CHANGE", "REASON"]
    assert len(out.splitlines()) == 4 and "READY -> PLANNING" in out
    code, out, err = run_cli("history", "--limit", "2", "h")
    assert len(out.splitlines()) == 3 and "(more: pegasus-em history h --before" in err
    first = int(out.splitlines()[1].split()[0])
    code, out, err = run_cli("history", "--after", str(first - 1), "--limit", "1", "h")
    assert out.splitlines()[1].split()[0] == str(first) and "--after %d" % first in err
    code, out, _ = run_cli("history", "--json", "h.run1")
    assert [e["new_state"] for e in json.loads(out)] == ["READY", "PLANNING", "PLAN_FAILED"]
    assert run_cli("history", "h.a.b")[0] == 2
    assert run_cli("history", "nope")[0:2] == (1, "ERROR: No such ensemble: nope\n")


def test_history_all_follows_every_page(stack, run_cli, monkeypatch):
    monkeypatch.setattr(cli, "MAX_PAGE", 3)
    stack.ensemble("h")
    for i in range(7):
        stack.submit("h", "w%d" % i)
    code, out, _ = run_cli("history", "--all", "--json", "h")
    assert [e["workflow"] for e in json.loads(out)] == [None] + ["w%d" % i for i in range(7)]


def test_history_and_import_layouts():
    rows = [{"id": 7, "time": 0, "workflow": None, "trigger": "t", "old_state": "READY",
             "new_state": "RUNNING", "reason": "first firing"}]
    assert fmt.history(rows).splitlines()[1].split()[-6:] == [
        "trigger:t", "READY", "->", "RUNNING", "first", "firing"]
    assert fmt.history([]) == ""
    assert fmt.import_report({"ensembles": ["a"], "workflows": 2, "triggers": 1,
                              "following": ["a.r"], "requeued": [], "skipped": ["x: y"]}) == (
        "Imported 1 ensembles, 2 workflows and 1 triggers.\n"
        "Following (not run again): a.r\nSkipped x: y")
