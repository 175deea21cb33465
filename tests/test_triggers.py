"""Triggers: the scheduler's rules with an explicit clock, then real daemons.

The first half drives `Triggers.tick(now)` in-process on a real sqlite file and
real files (including a simulated crash at every step of a file firing); the
second half runs `pegasus-em server` as a throwaway user and checks schedules,
restarts, failures and files end to end.  Ensembles are PAUSED so submitted
workflows stay READY: their plan command is only data to check.
"""

import errno
import json
import os
import random
import re
import shlex
import subprocess
import tempfile
import threading
import time

import pytest

from conftest import Clock, Daemon, throwaway_user, wait_until
from pegasus_em import db as dbmod
from pegasus_em import store
from pegasus_em import triggers as trg
from pegasus_em.ops import Ops
from pegasus_em.triggers import Matcher, Pattern, Triggers, next_slot, quote, split_inputs


def inputs(plan_command):
    words = shlex.split(plan_command)
    return words[words.index("--inputs") + 1:] if "--inputs" in words else []


# ---- pure rules ----------------------------------------------------------------------

@pytest.mark.parametrize("now, expected", [
    (100.0, 110.0), (105.0, 110.0), (110.0, 120.0), (119.99, 120.0),
    (155.0, 160.0),    # five slots missed: one firing now, then back on the grid
    (90.0, 110.0),     # a clock that went back never schedules before creation + interval
])
def test_next_slot_keeps_the_grid_of_creation_plus_k_intervals(now, expected):
    assert next_slot(100.0, 10, now) == expected


def test_quote_is_the_5x_format_and_safe_for_the_shell():
    assert quote(["/s.sh", "a", "b c"]) == '"/s.sh" "a" "b c"'
    odd = ["sp ace", 'quo"te', "dol$HOME", "back`tick`", "back\\slash", "", "new\nline"]
    out = subprocess.run(["/bin/sh", "-c", quote(["printf", "%s\\0"] + odd)],
                         stdout=subprocess.PIPE, check=True).stdout
    assert out.decode().split("\0")[:-1] == odd


def test_split_inputs_keeps_every_file_once_within_the_limit():
    files = ["/in/processed/file-%04d.dat" % i for i in range(1000)]
    limit = 4000
    groups = split_inputs(["/s.sh", "-x"], files, limit)
    assert len(groups) > 5 and [f for g in groups for f in g] == files
    for g in groups:
        assert len(quote(["/s.sh", "-x", "--inputs"] + g).encode()) < limit
    assert split_inputs(["/s.sh"], files[:3], 1) == [[f] for f in files[:3]]  # never empty


@pytest.mark.parametrize("pattern, path, matches", [
    ("/in/*", "/in/a.txt", True),
    ("/in/*", "/in/.hidden", False),
    ("/in/.*", "/in/.hidden", True),
    ("/in/*", "/in/sub/a.txt", False),
    ("/in/*/*", "/in/sub/a.txt", True),
    ("/in/*/*", "/in/processed/a.txt", False),       # its own processed/ folder
    ("/in/proc*/*", "/in/processed/a.txt", False),
    ("/data/processed/*", "/data/processed/a", True),  # named literally: the user's choice
    ("/in//*.dat", "/in/a.dat", True),
    ("/in/[ab]?.dat", "/in/b1.dat", True),
    ("/in/[ab]?.dat", "/in/c1.dat", False),
])
def test_pattern_matching_follows_glob_without_processed(pattern, path, matches):
    assert Pattern(pattern).matches(path) is matches
    assert (1 in Matcher([(1, (pattern,))]).triggers_for(path)) is matches


# ---- the scheduler with an explicit clock ------------------------------------------

class Local:
    """An Ops + Triggers pair on a real sqlite file, with a clock the test sets."""

    def __init__(self, tmp_path):
        self.tmp = tmp_path
        self.db = dbmod.open_database(str(tmp_path / "em.db"))
        # Ten seconds ahead of the files' mtimes: files written now count as settled.
        self.t0 = float(int(time.time())) + 10
        self.clock = Clock(self.t0)
        self.ops = Ops(self.db, str(tmp_path / "ensembles"), clock=self.clock,
                       wake=lambda: self.triggers.wake())
        self.ops.create_ensemble("e")
        self.script = self.write("bin/wf.sh", "#!/bin/sh\n", 0o755)
        self.inbox = str(tmp_path / "in")
        os.makedirs(self.inbox)
        self.triggers = self.scheduler()

    def scheduler(self, **kw):
        return Triggers(self.ops, clock=self.clock, **kw)

    def write(self, rel, text, mode=0o644):
        path = str(self.tmp / rel)
        os.makedirs(os.path.dirname(path), exist_ok=True)
        with open(path, "w") as f:
            f.write(text)
        os.chmod(path, mode)
        return path

    def arrive(self, *names):
        for name in names:
            self.write(os.path.join("in", name), "content of %s\n" % name)

    def cron(self, name, interval="10s", **kw):
        return self.ops.create_trigger("e", name, "CRON", self.script, kw.pop("args", ["a"]),
                                       interval, **kw)

    def files(self, name, *patterns, interval="10s", **kw):
        patterns = patterns or (self.inbox + "/*",)
        return self.ops.create_trigger("e", name, "FILE_PATTERN", self.script, [], interval,
                                       file_patterns=list(patterns), **kw)

    def tick(self, dt, triggers=None):
        self.clock.t = self.t0 + dt
        return (triggers or self.triggers).tick(self.clock.t)

    def trigger(self, name):
        (view,) = self.ops.trigger_views("e", name)
        return view

    def workflows(self, trigger=None):
        return [self.ops.get_workflow("e", r[3]) for r in self.ops.list_workflow_rows("e")
                if trigger is None or r[3].startswith(trigger + "_")]

    def handed_out(self, trigger):
        """processed path -> number of workflows of `trigger` whose --inputs name it."""
        counts = {}
        for w in self.workflows(trigger):
            for path in inputs(w.plan_command):
                counts[path] = counts.get(path, 0) + 1
        return counts

    def left_in_inbox(self):
        return sorted(n for n in os.listdir(self.inbox) if n != "processed")


@pytest.fixture
def local(tmp_path):
    env = Local(tmp_path)
    yield env
    env.db.close()


def test_cron_fires_at_creation_then_on_a_fixed_grid_and_coalesces(local):
    local.cron("c", args=["a", "b c"])
    assert local.tick(0) == 10.0
    assert local.tick(5) == 5.0             # not due: nothing
    local.tick(10.2)
    local.tick(55)                          # 20, 30, 40, 50 missed: one firing
    local.tick(60)
    names = [w.name for w in local.workflows()]
    assert names == ["c_%d" % (local.t0 + dt) for dt in (0, 10, 55, 60)]
    t, listed, count = local.trigger("c")
    assert (t.state, t.fire_count, t.next_fire - local.t0, listed, count) == (
        "RUNNING", 4, 70, names, 4)
    w = local.workflows()[0]
    assert w.plan_command == '"%s" "a" "b c"' % local.script
    assert w.basedir == os.path.dirname(local.script)


def test_timeout_counts_from_creation_and_ends_the_schedule(local):
    local.cron("c", timeout="25s")
    for dt in (0, 10, 20):
        local.tick(dt)
    assert local.tick(24) == 1.0           # wakes for the deadline, not the next slot
    local.tick(25)
    local.tick(30)
    t, names, _ = local.trigger("c")
    assert t.state == "TIMED_OUT" and len(names) == 3
    assert local.tick(1000) == trg.MAX_WAIT
    events = [(e[4], e[5]) for e in local.ops.history("e") if e[3] == t.id]
    assert events == [(None, "READY"), ("READY", "RUNNING"), ("RUNNING", "TIMED_OUT")]


def test_a_trigger_stopped_before_its_first_firing_never_fires(local):
    local.cron("c")
    local.cron("other")
    local.ops.stop_trigger("e", "c")
    local.tick(0)
    local.tick(10)
    assert [w.name for w in local.workflows()] == [
        "other_%d" % local.t0, "other_%d" % (local.t0 + 10)]
    assert local.trigger("c")[0].state == "STOPPED"


def test_two_firings_in_one_second_and_long_names_stay_unique(local):
    long_name = "x" * 99
    local.cron(long_name, interval="1s")
    local.tick(0)
    local.tick(1)
    local.clock.t = local.t0 + 1.5   # a firing in the same second (as after a restart)
    with local.db.write() as conn:
        store.update_trigger_run(conn, local.trigger(long_name)[0].id, next_fire=local.clock.t)
    local.tick(1.5)
    names = [w.name for w in local.workflows()]
    suffix = "_%d" % (local.t0 + 1)
    assert names[1:] == ["x" * (99 - len(suffix)) + suffix,
                         "x" * (99 - len(suffix) - 2) + suffix + "_1"]
    assert all(len(n) == 99 for n in names)


def test_failures_are_recorded_retried_reset_then_fail_the_trigger(local):
    local.triggers = local.scheduler(max_failures=3)
    local.cron("c")
    local.tick(0)
    os.chmod(local.script, 0o644)
    local.tick(10)
    local.tick(20)
    t = local.trigger("c")[0]
    assert (t.state, t.failures) == ("RUNNING", 2) and "not executable" in t.last_error
    os.chmod(local.script, 0o755)
    local.tick(30)
    t = local.trigger("c")[0]
    assert (t.state, t.failures, t.fire_count) == ("RUNNING", 0, 2)
    os.unlink(local.script)
    for dt in (40, 50, 60, 70):
        local.tick(dt)
    t, names, _ = local.trigger("c")
    assert t.state == "FAILED" and t.failures == 3 and "does not exist" in t.last_error
    assert len(names) == 2
    reasons = [e[6] for e in local.ops.history("e") if e[3] == t.id]
    assert reasons[-1].startswith("3 failed firings in a row; the last: workflow script")


def notified(local):
    with local.db.read() as conn:
        return [json.loads(p) for (p,) in conn.execute("SELECT payload FROM outbox ORDER BY id")]


def test_a_failing_trigger_keeps_its_schedule_and_recovers_by_itself(local):
    """Before: 5 failed firings in a row (a 50 s outage at a 10 s interval) made the
    trigger FAILED for good.  Now it fails visibly and carries on."""
    with local.db.write() as conn:
        store.set_notify_targets(conn, [("webhook", "http://127.0.0.1:9/hook")])
    local.cron("c")
    local.tick(0)
    os.unlink(local.script)                 # the mount that holds it goes away
    for k in range(1, 21):
        local.tick(10 * k)
    t = local.trigger("c")[0]
    assert (t.state, t.failures, t.fire_count, t.next_fire) == (
        "RUNNING", 20, 1, local.t0 + 210)
    assert "does not exist" in t.first_error and "does not exist" in t.last_error
    assert (t.first_failure, t.last_failure) == (local.t0 + 10, local.t0 + 200)
    view = local.ops.trigger_views("e", "c")[0][0]
    assert view.failures == 20
    local.write("bin/wf.sh", "#!/bin/sh\n", 0o755)   # back
    local.tick(210)
    t, names, _ = local.trigger("c")
    assert (t.state, t.failures, t.first_error, t.first_failure, len(names)) == (
        "RUNNING", 0, None, None, 2)
    reasons = [e[6] for e in local.ops.history("e") if e[3] == t.id]
    assert [r for r in reasons if r.startswith(("firing failed", "recovered"))] == [
        "firing failed: workflow script %s does not exist" % local.script,
        "recovered after 20 failed firings in a row over 200 s"]
    assert [(n["event"], n["failures"]) for n in notified(local)] == [
        ("trigger.failed", 1), ("trigger.recovered", 20)]


def test_files_that_arrive_while_a_trigger_fails_go_out_once_it_recovers(local):
    local.files("f")
    local.tick(0)
    os.chmod(local.script, 0o644)
    for k in range(1, 6):
        local.arrive("during%d.dat" % k)
        local.tick(10 * k)
    assert local.workflows() == [] and local.trigger("f")[0].failures == 5
    os.chmod(local.script, 0o755)
    local.arrive("after.dat")
    local.tick(60)
    local.tick(70)
    processed = os.path.join(local.inbox, "processed")
    assert local.handed_out("f") == {processed + "/%s.dat" % n: 1
                                     for n in ["after"] + ["during%d" % k for k in range(1, 6)]}
    assert local.left_in_inbox() == []


def test_giving_up_is_opt_in_and_may_be_bounded_by_time(local):
    local.triggers = local.scheduler(failure_timeout=30)
    local.cron("c")
    os.unlink(local.script)
    for dt in (0, 10, 20):
        local.tick(dt)
    assert local.trigger("c")[0].state == "RUNNING"
    local.tick(30)                          # failing for 30 s: it gives up
    t = local.trigger("c")[0]
    assert (t.state, t.failures) == ("FAILED", 4)
    reasons = [e[6] for e in local.ops.history("e") if e[3] == t.id]
    assert reasons[-1].startswith("failing for 30 s (4 failed firings in a row); the last:")


def test_start_trigger_resumes_stopped_failed_and_timed_out_triggers(local):
    local.triggers = local.scheduler(max_failures=1)
    local.arrive("a.dat")
    local.files("f")
    local.cron("c", timeout="15s")
    other = local.write("bin/x.sh", "#!/bin/sh\n", 0o755)
    local.ops.create_trigger("e", "x", "CRON", other, [], "10s")
    local.tick(0)
    local.ops.stop_trigger("e", "f")
    local.arrive("b.dat")
    os.chmod(other, 0o644)
    local.tick(10)                          # x fails once: FAILED; c fires
    local.tick(20)                          # c times out
    assert [local.trigger(n)[0].state for n in "fcx"] == ["STOPPED", "TIMED_OUT", "FAILED"]
    os.chmod(other, 0o755)
    with pytest.raises(trg.EMError) as refused:
        local.ops.start_trigger("e", "c")
    assert refused.value.status == 400 and "past its deadline" in refused.value.message
    local.clock.t = local.t0 + 25
    for name, timeout in (("f", None), ("c", "20s"), ("x", None)):
        assert local.ops.start_trigger("e", name, timeout).endswith("started")
    with pytest.raises(trg.EMError) as refused:
        local.ops.start_trigger("e", "f")
    assert refused.value.status == 409 and "already RUNNING" in refused.value.message
    local.tick(25)                          # each fires at once ...
    processed = os.path.join(local.inbox, "processed")
    assert local.handed_out("f") == {processed + "/a.dat": 1, processed + "/b.dat": 1}
    t = local.trigger("x")[0]
    assert (t.state, t.failures, t.fire_count, t.next_fire) == ("RUNNING", 0, 2, local.t0 + 30)
    c = local.trigger("c")[0]
    assert (c.deadline, c.timeout, c.fire_count) == (local.t0 + 45, 45, 3)
    local.tick(45)                          # ... and keeps its grid and its new deadline
    assert local.trigger("c")[0].state == "TIMED_OUT"
    changes = [(e[4], e[5], e[6]) for e in local.ops.history("e") if e[3] == c.id]
    assert ("TIMED_OUT", "RUNNING", "started by user") in changes


def test_a_purged_trigger_id_is_never_given_again(local):
    """Before: purging the newest trigger let the next one take its id, so the old
    trigger's events showed up as the new one's."""
    local.cron("old")
    gone = local.trigger("old")[0].id
    local.ops.stop_trigger("e", "old", purge=True)
    local.cron("new")
    new = local.trigger("new")[0].id
    assert new > gone
    assert [e[4:6] for e in local.ops.history("e") if e[3] == new] == [(None, "READY")]


def test_file_trigger_hands_files_out_through_processed(local):
    local.arrive("a.dat", "b.dat", "c.txt")
    os.makedirs(os.path.join(local.inbox, "sub"))
    local.files("f", local.inbox + "/*.dat")
    local.tick(0)
    (w,) = local.workflows()
    processed = os.path.join(local.inbox, "processed")
    assert inputs(w.plan_command) == [processed + "/a.dat", processed + "/b.dat"]
    assert shlex.split(w.plan_command)[:2] == [local.script, "--inputs"]
    assert local.left_in_inbox() == ["c.txt", "sub"]
    with open(processed + "/a.dat") as f:
        assert f.read() == "content of a.dat\n"
    local.tick(10)                          # nothing new: no workflow, no firing counted
    t = local.trigger("f")[0]
    assert len(local.workflows()) == 1 and t.fire_count == 1 and t.state == "RUNNING"
    with local.db.read() as conn:
        assert {f.state for f in store.unfinished_files(conn)} == set()


def test_a_name_taken_in_processed_gets_a_suffix_and_nothing_is_overwritten(local):
    local.arrive("a.dat")
    local.files("f")
    local.tick(0)
    local.arrive("a.dat")                   # the same name again, another file
    local.tick(10)
    processed = os.path.join(local.inbox, "processed")
    assert sorted(local.handed_out("f")) == [processed + "/a.dat", processed + "/a_1.dat"]
    assert len(os.listdir(processed)) == 2


def test_a_file_still_changing_waits_for_the_next_scan(local):
    local.files("f")
    local.tick(0)
    local.arrive("grow.dat")
    path = os.path.join(local.inbox, "grow.dat")
    os.utime(path, (local.t0 + 9.5, local.t0 + 9.5))   # written half a second ago
    local.tick(10)
    assert local.workflows() == []                    # first seen, too fresh
    with open(path, "a") as f:
        f.write("more\n")
    os.utime(path, (local.t0 + 19.5, local.t0 + 19.5))
    local.tick(20)
    assert local.workflows() == []                    # changed since the previous scan
    local.tick(30)
    (w,) = local.workflows()                          # unchanged since: handed out
    with open(inputs(w.plan_command)[0]) as f:
        assert f.read().endswith("more\n")


def test_too_many_files_for_one_command_are_split_none_dropped(local):
    local.triggers.limit = 3000
    names = ["file-with-a-long-name-%04d.dat" % i for i in range(300)]
    local.arrive(*names)
    local.files("f")
    local.tick(0)
    ws = local.workflows()
    handed = local.handed_out("f")
    processed = os.path.join(local.inbox, "processed")
    assert len(ws) > 5 and sorted(handed) == [processed + "/" + n for n in names]
    assert set(handed.values()) == {1}
    assert all(len(w.plan_command) < 3000 for w in ws)
    assert len({w.name for w in ws}) == len(ws) and local.trigger("f")[0].fire_count == 1


def test_overlapping_triggers_each_get_every_file_and_it_moves_after_both(local):
    local.files("dat", local.inbox + "/*.dat")
    local.files("a", local.inbox + "/a*", interval="1h")
    local.tick(0)
    local.arrive("a1.dat", "b1.dat", "a2.txt")
    local.tick(10)                          # "dat" fires; "a" is not due for an hour
    processed = os.path.join(local.inbox, "processed")
    assert sorted(local.handed_out("dat")) == [processed + "/a1.dat", processed + "/b1.dat"]
    assert local.left_in_inbox() == ["a1.dat", "a2.txt"]  # a1.dat waits for "a"
    assert os.path.samefile(processed + "/a1.dat", os.path.join(local.inbox, "a1.dat"))
    local.tick(3600)
    assert sorted(local.handed_out("a")) == [processed + "/a1.dat", processed + "/a2.txt"]
    assert local.left_in_inbox() == []
    local.arrive("a3.dat")
    local.tick(3610)
    assert local.left_in_inbox() == ["a3.dat"]
    local.ops.stop_trigger("e", "a")        # no longer waited for
    local.tick(3611)
    assert local.left_in_inbox() == []
    assert processed + "/a3.dat" in local.handed_out("dat")
    assert set(local.handed_out("dat").values()) == set(local.handed_out("a").values()) == {1}


def refuse_links(monkeypatch):
    def refuse(src, dst, **kw):
        raise PermissionError(errno.EPERM, "Operation not permitted")
    monkeypatch.setattr(os, "link", refuse)   # as under fs.protected_hardlinks


def test_files_that_cannot_be_linked_are_moved_before_their_workflow_names_them(
        local, monkeypatch):
    refuse_links(monkeypatch)
    real_insert = Ops.insert_workflow

    def insert(self, conn, ensemble, name, basedir, command, **kw):
        for path in inputs(command):
            assert os.path.exists(path), path  # the processed path exists already
        return real_insert(self, conn, ensemble, name, basedir, command, **kw)
    monkeypatch.setattr(Ops, "insert_workflow", insert)
    local.arrive("a.dat")
    local.files("f")
    local.tick(0)
    (w,) = local.workflows()
    assert os.path.exists(inputs(w.plan_command)[0]) and local.left_in_inbox() == []


def test_a_file_neither_linkable_nor_movable_waits_with_a_visible_error(local, monkeypatch):
    refuse_links(monkeypatch)
    real_rename = os.rename
    stuck = os.path.join(local.inbox, "theirs.dat")

    def rename(src, dst, **kw):
        if src == stuck:
            raise PermissionError(errno.EPERM, "Operation not permitted")
        return real_rename(src, dst, **kw)
    monkeypatch.setattr(os, "rename", rename)
    local.arrive("mine.dat", "theirs.dat")
    local.files("f")
    local.tick(0)
    processed = os.path.join(local.inbox, "processed")
    assert local.handed_out("f") == {processed + "/mine.dat": 1}   # the other goes through
    t = local.trigger("f")[0]
    assert t.state == "RUNNING" and t.failures == 0
    assert t.last_error.startswith(trg.WAITING) and stuck in t.last_error
    local.tick(10)
    local.tick(20)
    assert local.handed_out("f") == {processed + "/mine.dat": 1}
    assert local.left_in_inbox() == ["theirs.dat"]
    waiting = [e for e in local.ops.history("e") if e[6] and e[6].startswith(trg.WAITING)]
    assert len(waiting) == 1                                      # one event, not one a firing
    with local.db.read() as conn:
        assert store.unfinished_files(conn) == []                 # no claim left behind
    monkeypatch.setattr(os, "rename", real_rename)               # e.g. its owner gave it away
    local.tick(30)
    assert local.handed_out("f") == {processed + "/mine.dat": 1, processed + "/theirs.dat": 1}
    t = local.trigger("f")[0]
    assert t.last_error is None and t.state == "RUNNING" and local.left_in_inbox() == []


class Crash(BaseException):
    """Stands for SIGKILL: nothing after it runs (cleanup code catches Exception only)."""


def _arm(monkeypatch, owner, name, nth):
    real = getattr(owner, name)
    calls = [0]

    def wrapper(*args, **kwargs):
        calls[0] += 1
        if calls[0] == nth:
            raise Crash(name)
        return real(*args, **kwargs)
    monkeypatch.setattr(owner, name, wrapper)


CRASH_POINTS = [
    (store, "claim_files", 1),      # in the claim transaction
    (os, "link", 1), (os, "link", 4),
    (Ops, "insert_workflow", 1),    # in the submit transaction
    (store, "submit_files", 1),
    ("engine_wake", None, 1),       # just after the submit commit
    (os, "rename", 1), (os, "rename", 3),
    (os, "unlink", 2),              # the original moved aside, not yet removed
    (store, "finish_files", 1),
]


MOVE_CRASH_POINTS = [
    (store, "mark_files", 1),       # the claims marked MOVED, nothing moved yet
    (os, "rename", 1), (os, "rename", 4),   # some files in processed/, no workflow yet
    (Ops, "insert_workflow", 1),
    ("engine_wake", None, 1),
    (store, "finish_files", 1),
]


@pytest.mark.parametrize("owner, name, nth", CRASH_POINTS,
                         ids=["%s-%s" % (n or o, k) for o, n, k in CRASH_POINTS])
def test_a_crash_at_any_step_of_a_firing_loses_and_duplicates_nothing(
        local, monkeypatch, owner, name, nth):
    crash_and_recover(local, monkeypatch, owner, name, nth)


@pytest.mark.parametrize("owner, name, nth", MOVE_CRASH_POINTS,
                         ids=["%s-%s" % (n or o, k) for o, n, k in MOVE_CRASH_POINTS])
def test_a_crash_while_moving_unlinkable_files_loses_and_duplicates_nothing(
        local, monkeypatch, owner, name, nth):
    crash_and_recover(local, monkeypatch, owner, name, nth, links=False)


def crash_and_recover(local, monkeypatch, owner, name, nth, links=True):
    names = ["f%d.dat" % i for i in range(6)]
    local.arrive(*names)
    local.files("f")
    if not links:
        refuse_links(monkeypatch)
    if owner == "engine_wake":
        def crash():
            raise Crash("after commit")
        local.triggers.engine_wake = crash
    else:
        _arm(monkeypatch, owner, name, nth)
    with pytest.raises(Crash):
        local.tick(0)
    monkeypatch.undo()
    if not links:
        refuse_links(monkeypatch)
    local.arrive("late.dat")                          # arrives while "down"
    restarted = local.scheduler()
    restarted.recover()
    local.tick(10, restarted)
    local.tick(20, restarted)
    processed = os.path.join(local.inbox, "processed")
    handed = local.handed_out("f")
    assert sorted(handed) == sorted(processed + "/" + n for n in names + ["late.dat"])
    assert set(handed.values()) == {1}
    assert local.left_in_inbox() == []
    assert sorted(os.listdir(processed)) == sorted(names + ["late.dat"])  # no stray links
    for n in names:
        with open(os.path.join(processed, n)) as f:
            assert f.read() == "content of %s\n" % n
    with local.db.read() as conn:
        assert store.unfinished_files(conn) == []


# ---- real daemons ---------------------------------------------------------------------

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
