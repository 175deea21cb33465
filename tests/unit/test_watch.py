"""`pegasus-em watch`: plain tables without a terminal, redrawn screens on one."""

import re

from beyond_fixtures import move, run_cli, stack  # noqa: F401
from pegasus_em.core.states import WorkflowState as W


def api_for(s):
    from stack import PASSWORD, USER
    from pegasus_em.em import client
    return client.Client(s.url, USER, PASSWORD)


def test_watch_once_prints_plain_tables(stack, run_cli):
    stack.ensemble("w", max_planning=2)
    stack.submit("w", "a")
    stack.submit("w", "b", after="a")
    move(stack, "w", "a", W.PLANNING)
    code, out, _ = run_cli("watch", "--once", "w")
    lines = out.splitlines()
    assert code == 0 and "\x1b" not in out
    assert lines[0].split() == ["ENSEMBLE", "STATE", "READY", "PLAN", "QUEUED", "RUN", "DONE",
                                "FAILED", "ABORTED"]
    assert lines[1].split() == ["w", "ACTIVE", "1", "1/2", "0", "0/1", "0", "0", "0"]
    assert lines[3].split() == ["WORKFLOW", "STATE", "PRIORITY", "FOR", "REASON"]
    assert lines[4].split()[:2] == ["a", "PLANNING"]  # busy first
    assert lines[5].split()[:2] == ["b", "READY"]
    assert run_cli("watch", "--once")[1].count("\n") == 2  # all ensembles, no workflows


def test_watch_without_a_terminal_prints_one_line_per_change(stack):
    import io
    from pegasus_em.em import watch
    stack.ensemble("w")
    stack.submit("w", "a")
    out = io.StringIO()
    steps = [lambda: move(stack, "w", "a", W.PLANNING, W.PLAN_FAILED, reason="rc 1"),
             lambda: stack.submit("w", "b")]
    watch.run(api_for(stack), "w", 0.01, out=out, tty=False, iterations=2,
              sleep=lambda _: steps.pop(0)())
    lines = out.getvalue().splitlines()
    changes = [line for line in lines if "  w." in line]
    assert [c.split("  ")[1:] for c in changes] == [
        ["w.a", "READY -> PLANNING", "rc 1"], ["w.a", "PLANNING -> PLAN_FAILED", "rc 1"],
        ["w.b", "-> READY", "submitted"]]
    assert re.match(r"\d{4}-\d\d-\d\d \d\d:\d\d:\d\d ", changes[0])


def test_watch_on_a_terminal_redraws_and_highlights_changes(stack):
    import io
    from pegasus_em.em import watch
    stack.ensemble("w")
    stack.submit("w", "a")
    stack.submit("w", "b")
    out = io.StringIO()
    watch.run(api_for(stack), "w", 0.01, out=out, tty=True, iterations=2,
              sleep=lambda _: move(stack, "w", "a", W.PLANNING))
    screens = out.getvalue().split(watch.CLEAR)[1:]
    assert len(screens) == 2 and watch.REVERSE not in screens[0]
    changed = [line for line in screens[1].splitlines() if line.startswith(watch.REVERSE)]
    assert len(changed) == 1 and "a " in changed[0] and "PLANNING" in changed[0]
    assert out.getvalue().startswith(watch.HIDE_CURSOR)
    assert out.getvalue().endswith(watch.SHOW_CURSOR)
