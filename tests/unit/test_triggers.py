"""Triggers: the scheduler's rules with an explicit clock.

`Triggers.tick(now)` in process on a real sqlite file and real files (including a
simulated crash at every step of a file firing).  Real daemons: in
tests/integration/test_triggers_daemon.py.
"""

import errno
import json
import os
import shlex
import subprocess
import time

import pytest

from conftest import Clock
from pegasus_em.core import db as dbmod
from pegasus_em.core import store
from pegasus_em.core import triggers as trg
from pegasus_em.core.ops import Ops
from pegasus_em.core.triggers import Matcher, Pattern, Triggers, next_slot, quote, split_inputs


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
