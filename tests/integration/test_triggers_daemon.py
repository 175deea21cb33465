"""Triggers end to end: `pegasus-em server` as a throwaway user, its schedules,
restarts, failures and files.  Ensembles are PAUSED so submitted workflows stay
READY: their plan command is only data to check.
"""

import json
import os
import random
import re
import shlex
import tempfile
import threading
import time

import pytest

from conftest import Daemon, throwaway_user, wait_until


def inputs(plan_command):
    words = shlex.split(plan_command)
    return words[words.index("--inputs") + 1:] if "--inputs" in words else []


@pytest.fixture
def em(user):
    user.configure(extra="TRIGGER_MAX_FAILURES = 3\n")
    d = Daemon(user).start()
    yield d
    d.kill()


def paused(d, name="e"):
    assert d.request("POST", "/ensembles", {"name": name})[0] == 201
    assert d.request("POST", "/ensembles/" + name, {"state": "PAUSED"})[0] == 200


def script(d, rel="wf/plan.sh"):
    return d.user.write(rel, "#!/bin/sh\n", mode=0o755)


def create(d, kind, name, interval, workflow_script, ensemble="e", **fields):
    form = {"trigger": name, "workflow_script": workflow_script, "interval": interval,
            "workflow_args": json.dumps(fields.pop("args", [])),
            "type": "CRON" if kind == "cron" else "FILE_PATTERN"}
    if "patterns" in fields:
        form["file_patterns"] = json.dumps(fields.pop("patterns"))
    form.update(fields)
    st, _, body = d.request("POST", "/ensembles/%s/triggers/%s" % (ensemble, kind), form)
    assert st == 201, body


def trigger(d, name, ensemble="e"):
    st, _, body = d.request("GET", "/ensembles/%s/triggers/%s" % (ensemble, name))
    assert st == 200, body
    return body


def workflows(d, ensemble="e", prefix=""):
    """Every workflow (detail: plan_command, basedir) whose name starts with `prefix`."""
    listing = d.request("GET", "/ensembles/%s/workflows" % ensemble)[2]
    return [d.request("GET", "/ensembles/%s/workflows/%s" % (ensemble, w["name"]))[2]
            for w in listing if w["name"].startswith(prefix)]


def until(d, name, predicate, timeout=10, what=None):
    return wait_until(lambda: (lambda t: t if predicate(t) else None)(trigger(d, name)),
                      timeout, interval=0.02, message=what or "trigger %s" % name)


def inbox(d, rel="inbox"):
    path = os.path.join(d.user.home, rel)
    d.user.write(os.path.join(rel, ".keep"), "")
    return path


def arrive(d, folder, name, text=None, age=0.0):
    """Write the file beside the inbox, then rename it in: it arrives whole."""
    staged = d.user.write(os.path.join("staging", name), text or "data of %s\n" % name)
    if age:
        os.utime(staged, (time.time() - age, time.time() - age))
    os.rename(staged, os.path.join(folder, name))


def handed_out(d, prefix):
    out = []
    for w in workflows(d, prefix=prefix + "_"):
        out.extend(inputs(w["plan_command"]))
    return out


def test_cron_trigger_on_schedule_with_its_names_commands_and_basedir(em):
    paused(em)
    plan = script(em)
    base = os.path.join(em.user.home, "base")
    create(em, "cron", "c", "1s", plan, args=["a", "b c"], timeout="3s", basedir=base)
    create(em, "cron", "d", "1h", plan)           # no basedir sent: the script's folder
    t = until(em, "c", lambda t: t["state"] == "TIMED_OUT", what="c to time out")
    ws = sorted(workflows(em, prefix="c_"), key=lambda w: w["created"])
    assert [w["name"] for w in ws] == t["workflows"] and t["fire_count"] == 3
    for k, w in enumerate(ws):
        assert abs(w["created"] - (t["created"] + k)) < 0.2, (k, w["created"] - t["created"])
        second = int(re.match(r"c_(\d+)\Z", w["name"]).group(1))
        assert abs(second - w["created"]) < 1.01
        assert w["plan_command"] == '"%s" "a" "b c"' % plan and w["basedir"] == base
        assert w["state"] == "READY"
    assert t["next_fire"] is None and t["last_error"] is None
    (d_wf,) = until(em, "d", lambda t: t["workflows"])["workflows"]
    assert workflows(em, prefix=d_wf)[0]["basedir"] == os.path.dirname(plan)
    changes = [(e["old_state"], e["new_state"]) for e in
               em.request("GET", "/ensembles/e/events")[2] if e["trigger_id"] == t["id"]]
    assert changes == [(None, "READY"), ("READY", "RUNNING"), ("RUNNING", "TIMED_OUT")]


def test_a_restarted_daemon_keeps_the_schedule_and_coalesces_missed_firings(em):
    paused(em)
    create(em, "cron", "c", "1s", script(em))
    c = until(em, "c", lambda t: t["fire_count"] >= 2)["created"]
    em.kill()
    killed = time.time()
    # Down across two firing times; back 0.1 s after a third, so the catch-up
    # firing and the next slot cannot be confused.
    back = c + int(killed - c) + 3.1
    wait_until(lambda: time.time() >= back, 10, message="downtime")
    d = Daemon(em.user).start()
    up = time.time()  # a loaded machine may take a while to start it
    try:
        t = until(d, "c", lambda t: t["fire_count"] >= 5, what="three more firings")
        ws = sorted(workflows(d), key=lambda w: w["created"])
        assert t["fire_count"] == len(ws) == len(t["workflows"])
        after = [w["created"] for w in ws if w["created"] > killed]
        assert back <= after[0] < max(back, up) + 0.8   # the missed firings, as one
        grid = c + int(after[0] - c) + 1                # then the original grid
        assert abs(after[1] - grid) < 0.2 and abs(after[2] - (grid + 1)) < 0.2
    finally:
        d.kill()


def test_a_failing_trigger_records_errors_then_recovers_or_becomes_failed(em):
    paused(em)
    plan = script(em)
    create(em, "cron", "flaky", "1s", plan)
    create(em, "cron", "broken", "1s", os.path.join(em.user.home, "missing.sh"))
    until(em, "flaky", lambda t: t["fire_count"] >= 1)
    os.chmod(plan, 0o644)
    t = until(em, "flaky", lambda t: t["failures"] >= 2)
    assert t["state"] == "RUNNING" and "is not executable" in t["last_error"]
    os.chmod(plan, 0o755)
    t = until(em, "flaky", lambda t: t["failures"] == 0 and t["fire_count"] >= 2)
    assert t["state"] == "RUNNING"
    b = until(em, "broken", lambda t: t["state"] == "FAILED")
    assert (b["failures"], b["fire_count"], b["workflows"], b["next_fire"]) == (3, 0, [], None)
    assert "missing.sh does not exist" in b["last_error"]
    events = em.request("GET", "/ensembles/e/events")[2]
    reasons = [e["reason"] for e in events if e["trigger_id"] == b["id"]]
    assert sum(r.startswith("firing failed: workflow script") for r in reasons) == 1
    assert reasons[-1].startswith("3 failed firings in a row; the last: workflow script")
    flaky = [e["reason"] for e in events if e["trigger_id"] == t["id"]]
    assert [r.split(" ")[0] for r in flaky if r.startswith(("firing", "recovered"))] == [
        "firing", "recovered"]
    listing = em.cli("triggers", "-l", "e").stdout
    assert "State:        FAILED" in listing and "missing.sh does not exist" in listing
    assert em.request("DELETE", "/ensembles/e/triggers/broken?purge=1")[0] == 202
    assert em.request("GET", "/ensembles/e/triggers/broken")[0] == 404


def test_a_file_trigger_failing_for_30s_across_two_kills_hands_every_file_out_once(daemon):
    """The issue's scenario, with the default settings: the script is gone for 30 s at a
    1 s interval (before: FAILED after 5 firings, and every later file sat in the inbox),
    files keep arriving, and the daemon is SIGKILLed during the outage and again just
    after it ends."""
    d = daemon
    paused(d)
    folder, plan = inbox(d), script(d)
    create(d, "file_pattern", "f", "1s", plan, patterns=[folder + "/*.dat"])
    until(d, "f", lambda t: t["state"] == "RUNNING")
    arrived, done = [], threading.Event()

    def producer():
        while not done.wait(0.25):
            arrive(d, folder, "in%03d.dat" % len(arrived))
            arrived.append("in%03d.dat" % len(arrived))
    writer = threading.Thread(target=producer)
    os.rename(plan, plan + ".away")                 # the mount holding it is gone
    outage = time.monotonic()
    writer.start()
    try:
        until(d, "f", lambda t: t["failures"] >= 3, what="failures")
        d.kill()
        d = Daemon(d.user).start()
        wait_until(lambda: time.monotonic() >= outage + 30, 40, interval=0.2,
                   message="30 s of outage")
        t = trigger(d, "f")
        assert (t["state"], t["failing"], handed_out(d, "f")) == ("RUNNING", True, [])
        assert t["failures"] >= 20 and "does not exist" in t["first_error"]
        assert t["first_failure"] < t["last_failure"]
        assert "Failing:      yes" in d.cli("triggers", "-l", "e").stdout
        os.rename(plan + ".away", plan)
        until(d, "f", lambda t: not t["failing"], what="recovery")
        d.kill()
        d = Daemon(d.user).start()
        until(d, "f", lambda t: t["fire_count"] >= 2, what="a firing after the second kill")
        done.set()
        writer.join(30)
        expected = sorted(os.path.join(folder, "processed", n) for n in arrived)
        wait_until(lambda: sorted(handed_out(d, "f")) == expected, 15, interval=0.1,
                   message="every arrived file handed out")
        handed = handed_out(d, "f")
        assert len(handed) == len(set(handed)) == len(arrived) > 100
        assert sorted(os.listdir(folder)) == [".keep", "processed"]
        reasons = [e["reason"] for e in d.request("GET", "/ensembles/e/events")[2]
                   if e["trigger"] == "f"]
        assert [r.split(" ")[0] for r in reasons if r.startswith(("firing", "recovered"))] == [
            "firing", "recovered"]
    finally:
        done.set()
        writer.join(30)
        d.kill()


def test_start_trigger_from_the_command_line_and_the_api(em):
    paused(em)
    plan = script(em)
    create(em, "cron", "c", "1h", plan, timeout="2s")
    create(em, "cron", "s", "1h", plan)
    until(em, "c", lambda t: t["state"] == "TIMED_OUT")
    assert em.cli("stop-trigger", "e", "s").returncode == 0
    run = em.cli("start-trigger", "e", "c")
    assert run.returncode == 1 and run.stdout.startswith("ERROR: Trigger c is past its deadline")
    run = em.cli("start-trigger", "e", "c", "-t", "1h")
    assert (run.returncode, run.stdout) == (0, "ensemble: e, trigger: c started\n")
    assert em.cli("start-trigger", "e", "s").returncode == 0
    t = until(em, "s", lambda t: t["fire_count"] == 2, what="s to fire when started")
    assert t["state"] == "RUNNING"
    st, _, body = em.request("POST", "/ensembles/e/triggers/s/start", {})
    assert st == 409 and "already RUNNING" in body["message"]
    assert em.request("POST", "/ensembles/e/triggers/nope/start", {})[0] == 404
    c = until(em, "c", lambda t: t["fire_count"] == 2, what="c to fire when started")
    assert c["state"] == "RUNNING" and c["deadline"] > time.time() + 3000


def test_triggers_deleted_right_away_stop_at_once_and_the_others_go_on(em):
    paused(em)
    plan = script(em)
    create(em, "cron", "steady", "1s", plan)
    for i in range(6):
        create(em, "cron", "gone%d" % i, "1s", plan)
        purge = "?purge=1" if i % 2 else ""
        assert em.request("DELETE", "/ensembles/e/triggers/gone%d%s" % (i, purge))[0] == 202
    counts = {i: len(workflows(em, prefix="gone%d_" % i)) for i in range(6)}
    assert set(counts.values()) <= {0, 1}   # at most the firing at creation, if it won
    until(em, "steady", lambda t: t["fire_count"] >= 3)
    assert {i: len(workflows(em, prefix="gone%d_" % i)) for i in range(6)} == counts
    assert [trigger(em, "gone%d" % i)["state"] for i in (0, 2, 4)] == ["STOPPED"] * 3
    assert em.request("GET", "/ensembles/e/triggers/gone1")[0] == 404


def test_files_arriving_across_random_kills_go_to_exactly_one_workflow(em):
    paused(em)
    folder = inbox(em)
    create(em, "file_pattern", "f", "1s", script(em), patterns=[folder + "/*.dat"])
    rng = random.Random(20261126)
    arrived = []
    done = threading.Event()

    def producer():
        for i in range(50):
            name = "in%03d.dat" % i
            arrive(em, folder, name)
            arrived.append(name)
            if done.wait(rng.uniform(0.0, 0.12)):
                return
    writer = threading.Thread(target=producer)
    writer.start()
    d = em
    try:
        for _ in range(3):
            wait_until(lambda: rng.random() < 0.03, 5, interval=0.02, message="a random moment")
            d.kill()
            d = Daemon(em.user).start()
        writer.join(30)
        expected = sorted(os.path.join(folder, "processed", n) for n in arrived)
        wait_until(lambda: sorted(handed_out(d, "f")) == expected, 15, interval=0.1,
                   message="every arrived file handed out")
        handed = handed_out(d, "f")
        assert len(handed) == len(set(handed)) == 50
        assert sorted(os.listdir(folder)) == [".keep", "processed"]
        for path in expected:
            with open(path) as f:
                assert f.read() == "data of %s\n" % os.path.basename(path)
    finally:
        done.set()
        writer.join(30)
        d.kill()


def test_overlapping_patterns_each_file_once_per_trigger_moved_after_both(em):
    paused(em)
    folder = inbox(em)
    plan = script(em)
    processed = os.path.join(folder, "processed")
    create(em, "file_pattern", "slow", "3s", plan, patterns=[folder + "/a*"])
    create(em, "file_pattern", "dat", "1s", plan, patterns=[folder + "/*.dat"])
    for name in ("slow", "dat"):   # their firings at creation, with nothing to hand out
        until(em, name, lambda t: t["state"] == "RUNNING")
    for name in ("a1.dat", "b1.dat", "a2.txt"):
        arrive(em, folder, name, age=5)
    wait_until(lambda: handed_out(em, "dat"), 5, message='"dat" to fire')
    assert sorted(handed_out(em, "dat")) == [processed + "/a1.dat", processed + "/b1.dat"]
    assert os.path.exists(os.path.join(folder, "a1.dat"))   # "slow" has not got it yet
    assert not os.path.exists(os.path.join(folder, "b1.dat"))
    wait_until(lambda: handed_out(em, "slow"), 5, message='"slow" to fire')
    assert sorted(handed_out(em, "slow")) == [processed + "/a1.dat", processed + "/a2.txt"]
    wait_until(lambda: not os.path.exists(os.path.join(folder, "a1.dat")), 5,
               message="a1.dat to leave the inbox once both have it")
    arrive(em, folder, "a3.dat", age=5)
    wait_until(lambda: processed + "/a3.dat" in handed_out(em, "dat"), 5, message="a3.dat")
    assert os.path.exists(os.path.join(folder, "a3.dat"))   # waits for "slow" ...
    assert em.request("DELETE", "/ensembles/e/triggers/slow")[0] == 202
    wait_until(lambda: not os.path.exists(os.path.join(folder, "a3.dat")), 5,
               message="a3.dat to move once nobody else waits for it")   # ... until it stops
    for name in ("dat", "slow"):
        handed = handed_out(em, name)
        assert len(handed) == len(set(handed))
    assert sorted(os.listdir(processed)) == ["a1.dat", "a2.txt", "a3.dat", "b1.dat"]


def test_a_pattern_never_matches_its_own_processed_folder(em):
    paused(em)
    folder = inbox(em)
    em.user.write("inbox/processed/old.txt", "handled long ago\n")
    em.user.write("inbox/sub/.keep", "")
    create(em, "file_pattern", "f", "1s", script(em), patterns=[folder + "/*", folder + "/*/*"])
    until(em, "f", lambda t: t["state"] == "RUNNING")   # fired at creation: nothing there
    arrive(em, folder, "x.txt", age=5)
    arrive(em, os.path.join(folder, "sub"), "y.txt", age=5)
    t = until(em, "f", lambda t: t["fire_count"] >= 1)
    until(em, "f", lambda t: t["next_fire"] >= t["created"] + 3, what="two more scans")
    assert sorted(handed_out(em, "f")) == [folder + "/processed/x.txt",
                                          folder + "/sub/processed/y.txt"]
    assert len(trigger(em, "f")["workflows"]) == 1 == t["fire_count"]
    assert os.path.exists(folder + "/processed/old.txt")


def test_a_file_still_being_written_waits_until_it_stops_changing(em):
    paused(em)
    folder = inbox(em)
    create(em, "file_pattern", "f", "1s", script(em), patterns=[folder + "/*.dat"])
    path = em.user.write("inbox/big.dat", "")
    written = 0
    started = time.time()
    pace = threading.Event()
    with open(path, "a") as f:
        while time.time() < started + 2.5:   # grows across two or three scans
            f.write("x" * 1000)
            f.flush()
            written += 1000
            pace.wait(0.05)                  # the writer's pace, not a synchronisation
    last_write = time.time()
    (w,) = wait_until(lambda: workflows(em, prefix="f_"), 5, message="the grown file")
    assert w["created"] > last_write
    (handed,) = inputs(w["plan_command"])
    assert os.path.getsize(handed) == written


def test_another_users_file_in_a_sticky_directory_waits_and_no_input_is_missing(
        em, sandbox):
    """fs.protected_hardlinks and a 1777 directory: the trigger's user can neither link
    nor move another user's file there, so no workflow may name its processed path."""
    paused(em)
    u = em.user
    shared = tempfile.mkdtemp(prefix="shared-", dir=sandbox.base)
    os.chmod(shared, 0o1777)
    with throwaway_user(sandbox) as v:
        theirs, mine = os.path.join(shared, "theirs.dat"), os.path.join(shared, "mine.dat")
        for path, owner in ((theirs, v), (mine, u)):
            with open(path, "w") as f:
                f.write("data of %s\n" % owner.name)
            os.chown(path, owner.uid, owner.gid)
            os.utime(path, (time.time() - 5, time.time() - 5))
        create(em, "file_pattern", "f", "1s", script(em), patterns=[shared + "/*.dat"])
        processed = os.path.join(shared, "processed")
        wait_until(lambda: handed_out(em, "f"), 5, message="the user's own file")
        until(em, "f", lambda t: t["next_fire"] >= t["created"] + 3, what="two more scans")
        assert all(os.path.exists(p) for p in handed_out(em, "f"))
        assert handed_out(em, "f") == [processed + "/mine.dat"]
        assert os.path.exists(theirs) and not os.path.exists(mine)
        t = trigger(em, "f")
        assert t["state"] == "RUNNING" and t["failures"] == 0
        assert "cannot move %s (owned by uid %d (%s) in a sticky directory)" % (
            theirs, v.uid, v.name) in t["last_error"]
        listed = em.cli("triggers", "-l", "e")
        assert theirs in listed.stdout, listed.stdout + listed.stderr
        os.chown(theirs, u.uid, u.gid)                 # its owner gives it away: it goes
        wait_until(lambda: len(handed_out(em, "f")) == 2, 5, message="the file now movable")
        assert sorted(handed_out(em, "f")) == [processed + "/mine.dat",
                                               processed + "/theirs.dat"]
        assert all(os.path.exists(p) for p in handed_out(em, "f"))
        assert until(em, "f", lambda t: t["last_error"] is None, what="last_error cleared")
