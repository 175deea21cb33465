"""Notifications: ended workflows, held ensembles and failing triggers, posted to a
webhook and mailed, retried, kept across a restart, given up in the end."""

import json
import os
import re
import time

from beyond_fixtures import SMTPServer, Webhook, move, outbox, stack, webhook  # noqa: F401
from conftest import wait_until
from pegasus_em.core.states import WorkflowState as W
from stack import Stack


def test_ended_workflows_are_posted_and_mailed_with_retries(tmp_path):
    hook, smtp = Webhook(fail=2), SMTPServer()
    s = Stack(tmp_path, targets=[("webhook", hook.url), ("email", "me@example.org")],
              smtp=("127.0.0.1", smtp.port)).start_notifier()
    try:
        s.ensemble("n")
        s.submit("n", "w")
        move(s, "n", "w", W.PLANNING, W.PLAN_FAILED, reason="planner exited with code 1")
        s.ops.wake()
        wait_until(lambda: hook.events and smtp.messages, 10, message="both delivered")
        (event,) = hook.events
        assert {k: event[k] for k in ("event", "ensemble", "workflow", "state", "old_state",
                                      "reason")} == {
            "event": "workflow.ended", "ensemble": "n", "workflow": "w", "state": "PLAN_FAILED",
            "old_state": "PLANNING", "reason": "planner exited with code 1"}
        assert isinstance(event["id"], int) and isinstance(event["time"], float)
        (mail,) = smtp.messages
        assert [r.upper() for r in mail["rcpt"]] == ["RCPT TO:<ME@EXAMPLE.ORG>"]
        assert "<em@test>" in mail["from"]
        assert "Subject: [pegasus-em] n.w PLAN_FAILED" in mail["data"]
        assert "reason: planner exited with code 1" in mail["data"]
        wait_until(lambda: {r[3] for r in outbox(s)} == {"sent"}, 10, message="recorded")
        rows = {r[1]: r for r in outbox(s)}
        assert rows["webhook"][3:5] == ("sent", 3) and rows["email"][3:5] == ("sent", 1)
        assert hook.attempts == 3
        assert 'pegasus_em_notifications{state="sent"} 2' in s.get("/metrics")
    finally:
        s.close()
        hook.close()
        smtp.close()


def test_nothing_is_queued_without_targets(stack):
    stack.ensemble("n")
    stack.submit("n", "w")
    move(stack, "n", "w", W.PLANNING, W.PLAN_FAILED)
    assert outbox(stack) == []


def test_undelivered_notifications_survive_a_restart(tmp_path):
    hook = Webhook(fail=10 ** 6)  # refuses everything until the restart
    s = Stack(tmp_path, targets=[("webhook", hook.url)]).start_notifier()
    try:
        s.ensemble("r", max_failures=1)
        s.submit("r", "w")
        move(s, "r", "w", W.PLANNING, W.PLAN_FAILED)
        s.ops.wake()
        wait_until(lambda: hook.attempts >= 2, 10, message="failed attempts")
    finally:
        s.close()
    pending = [r for r in _rows(tmp_path) if r[3] == "pending"]
    assert sorted(r[0] for r in pending) == ["ensemble.held", "workflow.ended"]
    hook.fail = 0
    s2 = Stack(tmp_path, targets=[("webhook", hook.url)]).start_notifier()
    try:
        wait_until(lambda: len(hook.events) == 2, 10, message="delivered after the restart")
        assert sorted(e["event"] for e in hook.events) == ["ensemble.held", "workflow.ended"]
        held = [e for e in hook.events if e["event"] == "ensemble.held"][0]
        assert held["ensemble"] == "r" and held["state"] == "HELD" and "auto-hold" in held["reason"]
        wait_until(lambda: {r[3] for r in outbox(s2)} == {"sent"}, 10, message="recorded")
    finally:
        s2.close()
        hook.close()


def _rows(base):
    import sqlite3
    conn = sqlite3.connect(os.path.join(str(base), "em.db"))
    try:
        return conn.execute("SELECT kind, channel, target, state FROM outbox").fetchall()
    finally:
        conn.close()


def test_a_notification_that_keeps_failing_is_given_up(tmp_path):
    s = Stack(tmp_path, targets=[("webhook", "http://127.0.0.1:9/nothing-listens")])
    try:
        s.notifier.max_attempts = 3
        s.ensemble("g")
        s.submit("g", "w")
        s.post("/ensembles/g/workflows/w", state="ABORTED")
        for _ in range(3):
            s.notifier.tick(time.time() + 3600)
        ((kind, _, _, state, attempts, error),) = outbox(s)
        assert (kind, state, attempts) == ("workflow.ended", "failed", 3)
        assert "refused" in error.lower() or "URLError" in error
    finally:
        s.close()


def test_a_failing_trigger_is_notified_once_then_when_it_fails(tmp_path, webhook):
    from pegasus_em.core.triggers import Triggers
    s = Stack(tmp_path, targets=[("webhook", webhook.url)])
    try:
        s.ensemble("t")
        s.post("/ensembles/t/triggers/cron", trigger="nightly", interval="10s",
               workflow_script="/no/such/script.sh", workflow_args="[]")
        trig = Triggers(s.ops, max_failures=3)
        t0 = time.time()
        for k in range(3):
            trig.tick(t0 + 10 * k + 11)
        kinds = [(json.loads(p)["failures"], json.loads(p)["state"]) for p, in
                 _payloads(s, "trigger.failed")]
        assert kinds == [(1, "RUNNING"), (3, "FAILED")]
        s.notifier.tick(t0 + 100)  # queued at the (explicit) firing times
        assert [e["trigger"] for e in webhook.events] == ["nightly", "nightly"]
        assert "does not exist" in webhook.events[0]["error"]
        lag = re.search(r"pegasus_em_trigger_lag_seconds_count (\d+)", s.get("/metrics"))
        assert lag and int(lag.group(1)) == 3
    finally:
        s.close()


def _payloads(s, kind):
    with s.db.read() as conn:
        return conn.execute("SELECT payload FROM outbox WHERE kind = ? ORDER BY id",
                            (kind,)).fetchall()
