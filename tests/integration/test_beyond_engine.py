"""What Pegasus 5.x never had, with the engine's thread planning and running
(simulated) workflows in this process, and one real `pegasus-em server` to check
that the settings are wired through."""

import json
import os
import re
import time

import pytest

from beyond_fixtures import TERMINAL, Webhook, engine, webhook  # noqa: F401
from conftest import wait_until
from pegasus_em.em import cli
from stack import Stack


def test_the_engine_holds_after_real_failures_and_plans_nothing_more(engine):
    engine.ensemble("e", max_failures=2)
    for name in ("a", "b", "c"):
        engine.submit("e", name, '"/bin/false"')
    wait_until(lambda: engine.get("/ensembles/e")["state"] == "HELD", 15, message="auto-hold")
    states = {n: engine.state("e", n) for n in "abc"}
    assert states == {"a": "PLAN_FAILED", "b": "PLAN_FAILED", "c": "READY"}
    assert "auto-hold" in engine.events("e")[-1]["reason"]


def test_dependencies_across_ensembles_run_in_order_with_the_engine(engine):
    engine.ensemble("first")
    engine.ensemble("then", max_planning=2)
    engine.submit("first", "a", engine.plan_command("pegasus.sim.run.seconds=0.2"))
    engine.submit("then", "b", '"/bin/false"', after="first.a")
    engine.submit("then", "c", '"/bin/false"')
    wait_until(lambda: engine.state("then", "b") in TERMINAL, 30, message="b to finish")
    assert engine.state("first", "a") == "SUCCESSFUL"
    done = [e["time"] for e in engine.events("first", "a") if e["new_state"] == "SUCCESSFUL"]
    planned = [e["time"] for e in engine.events("then", "b") if e["new_state"] == "PLANNING"]
    assert planned[0] >= done[0]
    assert engine.state("then", "c") == "PLAN_FAILED"  # not held back by b


def test_the_engine_wakes_at_the_run_after_time(tmp_path):
    s = Stack(tmp_path, engine=True, interval=30).start_engine()  # no polling to hide behind
    try:
        s.ensemble("r")
        when = time.time() + 1.0
        assert s.submit("r", "w", '"/bin/false"', run_after="%.3f" % when)[0] == 201
        assert s.workflow("r", "w")["run_after"] == pytest.approx(when, abs=0.01)
        wait_until(lambda: s.state("r", "w") == "PLAN_FAILED", 10, message="planned")
        events = s.events("r", "w")
        released = [e for e in events if e["reason"] == "run-after time reached"]
        planned = [e["time"] for e in events if e["new_state"] == "PLANNING"][0]
        assert released and when <= planned < when + 1.0, (when, events)
    finally:
        s.close()


def test_global_planning_cap_across_ensembles(tmp_path):
    s = Stack(tmp_path, engine=True, limits=(2, None))
    try:
        for e in ("g1", "g2"):
            s.ensemble(e, max_planning=3)
            s.post("/ensembles/%s" % e, state="PAUSED")
            for i in range(3):
                s.submit(e, "w%d" % i, '"/bin/sleep" "0.3"', priority=i if e == "g2" else 0)
        s.start_engine()
        for e in ("g1", "g2"):
            s.post("/ensembles/%s" % e, state="ACTIVE")
        wait_until(lambda: all(s.state(e, "w%d" % i) in TERMINAL for e in ("g1", "g2")
                               for i in range(3)), 20, message="all planned")
        marks = sorted((ev["time"], 1 if ev["new_state"] == "PLANNING" else -1)
                       for e in ("g1", "g2") for ev in s.events(e)
                       if "PLANNING" in (ev["new_state"], ev["old_state"])
                       and ev["new_state"] != ev["old_state"])
        level = peak = 0
        for _, step in marks:
            level += step
            peak = max(peak, level)
        assert peak == 2
        text = s.get("/metrics")
        assert 'pegasus_em_global_throttle_limit{kind="planning"} 2' in text
    finally:
        s.close()


def test_a_slow_webhook_never_holds_up_the_engine(tmp_path):
    hook = Webhook(delay=30)
    s = Stack(tmp_path, engine=True, targets=[("webhook", hook.url)])
    s.start_engine().start_notifier()
    try:
        s.ensemble("slow", max_planning=4)
        started = time.monotonic()
        for i in range(4):
            s.submit("slow", "w%d" % i, '"/bin/false"')
        wait_until(lambda: all(s.state("slow", "w%d" % i) == "PLAN_FAILED" for i in range(4)),
                   10, message="all failed")
        assert time.monotonic() - started < 5
        assert hook.attempts >= 1 and not hook.events  # the sender is stuck in the first
    finally:
        hook.close()
        s.close()


PEGASUS_DDL = """
CREATE TABLE dbversion (id INTEGER NOT NULL PRIMARY KEY AUTOINCREMENT, version_number INTEGER,
  version VARCHAR(50) NOT NULL, version_timestamp INTEGER NOT NULL);
CREATE TABLE ensemble (id INTEGER NOT NULL, name VARCHAR(100) NOT NULL,
  created DATETIME NOT NULL, updated DATETIME NOT NULL, state VARCHAR(6) NOT NULL,
  max_running INTEGER NOT NULL, max_planning INTEGER NOT NULL, username VARCHAR(100) NOT NULL,
  PRIMARY KEY (id), CONSTRAINT "UNIQUE_ENSEMBLE" UNIQUE (name, username));
CREATE TABLE ensemble_workflow (id INTEGER NOT NULL, ensemble_id INTEGER NOT NULL,
  name VARCHAR(100) NOT NULL, basedir VARCHAR(512) NOT NULL, created DATETIME NOT NULL,
  updated DATETIME NOT NULL, state VARCHAR(11) NOT NULL, priority INTEGER NOT NULL,
  wf_uuid VARCHAR(36), submitdir VARCHAR(512), plan_command VARCHAR(1024) NOT NULL,
  PRIMARY KEY (id), FOREIGN KEY(ensemble_id) REFERENCES ensemble (id),
  CONSTRAINT "UNIQUE_ENSEMBLE_WORKFLOW" UNIQUE (ensemble_id, name));
CREATE TABLE "trigger" (id INTEGER NOT NULL, ensemble_id INTEGER NOT NULL,
  name VARCHAR(100) NOT NULL, state VARCHAR(7) NOT NULL, workflow TEXT NOT NULL, args TEXT,
  type VARCHAR(12) NOT NULL, PRIMARY KEY (id), FOREIGN KEY(ensemble_id) REFERENCES ensemble (id),
  CONSTRAINT "UNIQUE_TRIGGER" UNIQUE (ensemble_id, name));
INSERT INTO dbversion VALUES (1, 14, '14', 1677911024);
"""


def sim_plan(s, basedir, *knobs):
    """Plan the example with the simulator -> (planner output, submit dir)."""
    import subprocess
    os.makedirs(basedir, exist_ok=True)
    out = subprocess.run(["/bin/sh", "-c", s.plan_command(*knobs)], cwd=basedir, env=s.env,
                         stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                         timeout=60).stdout
    return out, re.search(r"pegasus-run +(\S+)", out).group(1)


def pegasus_db(path, ensembles, workflows, triggers=()):
    import sqlite3
    conn = sqlite3.connect(path)
    conn.executescript(PEGASUS_DDL)
    conn.executemany("INSERT INTO ensemble VALUES (?, ?, ?, ?, ?, ?, ?, ?)", ensembles)
    conn.executemany("INSERT INTO ensemble_workflow VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
                     workflows)
    conn.executemany('INSERT INTO "trigger" VALUES (?, ?, ?, ?, ?, ?, ?)', triggers)
    conn.commit()
    conn.close()


def test_import_takes_over_without_replanning_what_runs(tmp_path, monkeypatch, capsys):
    import subprocess
    s = Stack(tmp_path / "em", engine=True).start_engine()
    try:
        s.ensemble("taken")
        work = str(tmp_path / "work")
        _, running = sim_plan(s, work + "/run1", "pegasus.sim.run.seconds=1")
        subprocess.run(["pegasus-run", running], env=s.env, stdout=subprocess.DEVNULL,
                       stderr=subprocess.DEVNULL, check=True, timeout=60)
        planned_out, planned = sim_plan(s, work + "/p1")
        os.makedirs(os.path.join(s.ensembles, "old"))
        with open(os.path.join(s.ensembles, "old", "p1.log"), "w") as f:
            f.write(planned_out)  # 5.x's planner log, where the manager finds it
        t = "2023-03-04 12:00:00.500000"
        cmd = '"/bin/true"'
        path = str(tmp_path / "workflow.db")
        pegasus_db(path, [
            (1, "old", t, t, "PAUSED", 3, 2, "alice"), (2, "taken", t, t, "ACTIVE", 1, 1, "alice"),
            (3, "bad name", t, t, "ACTIVE", 1, 1, "alice")], [
            (1, 1, "r1", work, t, t, "READY", 5, None, None, cmd),
            (2, 1, "p1", work + "/p1", t, t, "PLANNING", 0, None, None, cmd),
            (3, 1, "p2", work, t, t, "PLANNING", 0, None, None, cmd),
            (4, 1, "q1", work, t, t, "QUEUED", 0, None, None, cmd),
            (5, 1, "run1", work + "/run1", t, t, "RUNNING", 0, None, running, cmd),
            (6, 1, "f1", work, t, t, "FAILED", 0, "u-f1", "/gone/submit", cmd),
            (7, 1, "s1", work, t, t, "SUCCESSFUL", 0, "u-s1", "/gone/s1", cmd),
            (8, 2, "x", work, t, t, "READY", 0, None, None, cmd)], [
            (1, 1, "nightly", "READY", json.dumps({"script": "/bin/true", "args": ["-x"]}),
             json.dumps({"interval": 3600, "timeout": None}), "CRON"),
            (2, 1, "files", "STOPPED", json.dumps({"script": "/bin/true", "args": []}),
             json.dumps({"interval": "30s", "file_patterns": ["/in/*.dat"]}), "FILE_PATTERN"),
            (3, 1, "rel", "READY", json.dumps({"script": "gen.sh", "args": []}),
             json.dumps({"interval": 60}), "CRON")])
        monkeypatch.setenv("PEGASUS_ENV", s.config_file())
        assert cli.main(["--url", s.url, "import", "--db", path]) == 0
        out = capsys.readouterr().out
        assert out.splitlines()[:3] == [
            "Imported 1 ensembles, 7 workflows and 2 triggers.",
            "Following (not run again): old.run1",
            "To be planned again (no submit dir found): old.p2, old.q1"]
        assert "Skipped ensemble taken: an ensemble of that name exists; skipped (with its 1 " \
               "workflows and 0 triggers)" in out
        assert "Skipped ensemble bad name: Invalid ensemble name" in out
        assert "Skipped trigger old.rel: its workflow script is not an absolute path" in out

        e = s.get("/ensembles/old")
        assert (e["state"], e["max_planning"], e["max_running"]) == ("PAUSED", 2, 3)
        assert e["created"] == 1677931200.5
        states = {w["name"]: w["state"] for w in s.get("/ensembles/old/workflows")}
        assert {k: v for k, v in states.items() if k != "run1"} == {
            "r1": "READY", "p1": "QUEUED", "p2": "READY", "q1": "READY", "f1": "FAILED",
            "s1": "SUCCESSFUL"}
        assert s.workflow("old", "p1")["submitdir"] == planned
        assert s.workflow("old", "f1")["submitdir"] == "/gone/submit"  # rerun still works
        w = wait_until(lambda: (lambda w: w if w["state"] in TERMINAL else None)(
            s.workflow("old", "run1")), 30, message="run1 followed to its end")
        assert w["state"] == "SUCCESSFUL" and w["submitdir"] == running
        dagman_out = [n for n in os.listdir(running) if n.endswith(".dagman.out")][0]
        with open(os.path.join(running, dagman_out)) as f:
            assert f.read().count("(CONDOR_DAGMAN) STARTING UP") == 1  # never run again
        assert [ev["new_state"] for ev in s.events("old", "run1")] == ["RUNNING", "SUCCESSFUL"]
        assert "imported from Pegasus 5.x as RUNNING" in s.events("old", "run1")[0]["reason"]
        trig = {t["name"]: t for t in s.get("/ensembles/old/triggers")}
        assert trig["nightly"]["state"] == "READY"
        assert trig["nightly"]["workflow"] == {"script": "/bin/true", "args": ["-x"]}
        assert trig["files"]["state"] == "STOPPED"
        assert trig["files"]["args"] == {"interval": 30, "timeout": None,
                                         "file_patterns": ["/in/*.dat"]}
        assert s.state("old", "p1") == "QUEUED"  # the ensemble is PAUSED: nothing started
        assert cli.main(["--url", s.url, "import", "--db", path]) == 0  # again: all skipped
        assert capsys.readouterr().out.startswith("Imported 0 ensembles")
    finally:
        s.close()


def test_a_real_daemon_wires_notifications_auto_hold_and_global_limits(user, webhook):
    from conftest import Daemon
    user.configure(extra="EM_INTERVAL = 0.5\nMAX_PLANNING_TOTAL = 1\nNOTIFY_WEBHOOK = %r\n"
                   % webhook.url)
    d = Daemon(user).start()
    try:
        assert d.cli("create", "--max-failures", "1", "e").returncode == 0
        assert d.cli("submit", "e.w", "/bin/false").returncode == 0
        wait_until(lambda: len(webhook.events) == 2, 15, message="two notifications")
        assert [e["event"] for e in webhook.events] == ["workflow.ended", "ensemble.held"]
        history = d.cli("history", "e")
        assert history.returncode == 0 and "ACTIVE -> HELD" in history.stdout
        why_ = d.cli("why", "e.w")
        assert why_.returncode == 0 and "Ensemble e is HELD (auto-hold" in why_.stdout
        text = wait_until(lambda: (lambda t: t if 'pegasus_em_notifications{state="sent"} 2'
                                   in t else None)(d.request("GET", "/metrics")[2]), 10,
                          message="both recorded as sent")
        assert 'pegasus_em_global_throttle_limit{kind="planning"} 1' in text
    finally:
        d.kill()
