"""runner: detached commands that record their own exit status, identity by
(pid, start time), process-group aborts, short blocking calls."""

import os
import signal
import socket
import subprocess
import sys
import textwrap

import pytest

from conftest import REPO, wait_until
from pegasus_em.core import runner


@pytest.fixture
def files(tmp_path):
    return str(tmp_path / "wf.log"), str(tmp_path / "wf.result")


def group_members(pgid):
    """Live (non-zombie) pids whose process group is `pgid`."""
    found = []
    for name in os.listdir("/proc"):
        if not name.isdigit():
            continue
        try:
            with open("/proc/%s/stat" % name, "rb") as f:
                fields = f.read().rpartition(b")")[2].split()
        except OSError:
            continue
        if int(fields[2]) == pgid and fields[0] != b"Z":
            found.append(int(name))
    return found


@pytest.fixture
def cleanup():
    """Kill whatever group a test leaves behind."""
    groups = []
    yield groups.append
    for pgid in groups:
        try:
            os.killpg(pgid, signal.SIGKILL)
        except OSError:
            pass
    runner.reap()


@pytest.mark.parametrize("command, rc", [("true", 0), ("exit 3", 3),
                                         ("no-such-command-pegasus-em", 127)])
def test_spawn_records_exit_status(tmp_path, files, command, rc):
    log, result = files
    spawned = runner.spawn(command, str(tmp_path), log, result)
    assert wait_until(lambda: runner.read_result(result) is not None) is not None
    assert runner.read_result(result) == rc
    assert set(os.listdir(str(tmp_path))) == {"wf.log", "wf.result"}  # no tmp file left
    wait_until(lambda: not runner.is_alive(*spawned), message="wrapper to end")
    if rc == 127:
        assert "no-such-command-pegasus-em" in open(log).read()


def test_spawn_appends_output_and_runs_in_cwd(tmp_path, files):
    log, result = files
    with open(log, "w") as f:
        f.write("earlier plan attempt\n")
    # "$1" is empty: the wrapper's own arguments do not leak into the command
    runner.spawn("pwd; echo to-stderr >&2; echo \"$1x\"", str(tmp_path), log, result)
    wait_until(lambda: runner.read_result(result) is not None)
    assert open(log).read() == "earlier plan attempt\n%s\nto-stderr\nx\n" % tmp_path


def test_spawn_session_and_stdin(tmp_path, files, cleanup):
    log, result = files
    spawned = runner.spawn("cat; sleep 30", str(tmp_path), log, result)
    cleanup(spawned.pid)
    assert os.getpgid(spawned.pid) == spawned.pid == os.getsid(spawned.pid)
    assert spawned.start_time == runner.process_start_time(spawned.pid)
    assert runner.is_alive(*spawned)
    assert os.readlink("/proc/%d/fd/0" % spawned.pid) == os.devnull


def test_spawn_errors_name_the_problem(tmp_path, files):
    log, result = files
    missing = str(tmp_path / "gone")
    with pytest.raises(runner.SpawnError, match="gone"):
        runner.spawn("true", missing, log, result)
    with pytest.raises(runner.SpawnError, match="cannot open log"):
        runner.spawn("true", str(tmp_path), str(tmp_path / "no" / "x.log"), result)
    assert issubclass(runner.SpawnError, runner.EMError)


def test_spawn_clears_a_stale_result(tmp_path, files):
    log, result = files
    with open(result, "w") as f:
        f.write("0\n")  # from an earlier attempt
    runner.spawn("sleep 0.2; exit 7", str(tmp_path), log, result)
    assert runner.read_result(result) is None
    wait_until(lambda: runner.read_result(result) == 7, message="new result")
    with pytest.raises(runner.SpawnError, match="result file"):
        runner.spawn("true", str(tmp_path), log, str(tmp_path / "no" / "r"))


def test_result_survives_the_death_of_the_spawner(tmp_path, files):
    """The daemon may be SIGKILLed right after spawning: the wrapper still reports."""
    log, result = files
    helper = textwrap.dedent("""
        import os, signal, sys
        sys.path.insert(0, %r)
        from pegasus_em.core import runner
        s = runner.spawn("sleep 0.3; exit 5", %r, %r, %r)
        print(s.pid, s.start_time, flush=True)
        os.kill(os.getpid(), signal.SIGKILL)
    """) % (REPO, str(tmp_path), log, result)
    proc = subprocess.run([sys.executable, "-c", helper], stdout=subprocess.PIPE, timeout=30)
    assert proc.returncode == -signal.SIGKILL
    pid, start = map(int, proc.stdout.split())
    assert runner.read_result(result) is None  # still running when its parent died
    wait_until(lambda: runner.read_result(result) == 5, message="orphan's result")
    wait_until(lambda: not runner.is_alive(pid, start), message="orphan to be gone")


def test_listening_socket_is_not_inherited(tmp_path, files, cleanup):
    log, result = files
    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    sock.listen()
    sock.set_inheritable(True)  # even a leaky daemon must not leak it
    try:
        spawned = runner.spawn("sleep 30", str(tmp_path), log, result)
        cleanup(spawned.pid)
        inode = "socket:[%d]" % os.fstat(sock.fileno()).st_ino
        members = wait_until(lambda: len(group_members(spawned.pid)) >= 2 and
                             group_members(spawned.pid), message="command to start")
        for pid in members:
            fds = os.listdir("/proc/%d/fd" % pid)
            assert sorted(fds) == ["0", "1", "2"], (pid, fds)
            assert inode not in [os.readlink("/proc/%d/fd/%s" % (pid, fd)) for fd in fds]
    finally:
        sock.close()


def test_is_alive_false_for_zombie_and_recycled_pid():
    proc = subprocess.Popen(["true"])  # never reaped until the end: a zombie
    try:
        start = runner.process_start_time(proc.pid)
        wait_until(lambda: open("/proc/%d/stat" % proc.pid).read().rpartition(")")[2].split()[0]
                   == "Z", message="zombie")
        assert runner.process_start_time(proc.pid) == start
        assert not runner.is_alive(proc.pid, start)
    finally:
        proc.wait()
    me = runner.process_start_time(os.getpid())
    assert runner.is_alive(os.getpid(), me)
    assert not runner.is_alive(os.getpid(), me + 1)  # same pid, another process
    assert not runner.is_alive(proc.pid, start)


def test_read_result_needs_a_complete_file(tmp_path):
    path = str(tmp_path / "r")
    assert runner.read_result(path) is None
    for text, want in (("", None), ("1", None), ("x\n", None), ("0\n", 0), ("143\n", 143)):
        with open(path, "w") as f:
            f.write(text)
        assert runner.read_result(path) == want, text


def test_kill_group_kills_grandchildren(tmp_path, files, cleanup):
    log, result = files
    spawned = runner.spawn("sleep 300 & sleep 300 & wait", str(tmp_path), log, result)
    cleanup(spawned.pid)
    wait_until(lambda: len(group_members(spawned.pid)) >= 4, message="grandchildren")
    kill = runner.kill_group(*spawned, grace=30)
    wait_until(kill.poll, message="group to end")
    assert not kill.forced and group_members(spawned.pid) == []
    assert runner.read_result(result) == 143  # the wrapper records the TERM
    assert kill.poll() and not runner.is_alive(*spawned)


def test_kill_group_forces_after_grace(tmp_path, files, cleanup):
    log, result = files
    spawned = runner.spawn("trap '' TERM; sleep 300 & wait", str(tmp_path), log, result)
    cleanup(spawned.pid)
    wait_until(lambda: len(group_members(spawned.pid)) >= 3, message="grandchild")
    kill = runner.kill_group(*spawned, grace=0.2)
    assert not kill.poll()  # TERM ignored: still there before the grace ends
    wait_until(kill.poll, message="group to be killed")
    assert kill.forced and group_members(spawned.pid) == []


def test_kill_group_spares_a_recycled_pid(tmp_path, files, cleanup):
    """A pid whose start time differs is another process: its group gets nothing."""
    other = subprocess.Popen(["sleep", "300"], start_new_session=True)
    cleanup(other.pid)
    wrong_start = runner.process_start_time(other.pid) + 1
    kill = runner.kill_group(other.pid, wrong_start)
    assert kill.poll() and not kill.forced
    assert not runner.terminate_group(other.pid, wrong_start)
    assert other.poll() is None


def test_reap_collects_finished_wrappers(tmp_path, files):
    log, result = files
    spawned = runner.spawn("true", str(tmp_path), log, result)
    wait_until(lambda: runner.read_result(result) is not None)
    wait_until(lambda: runner.reap() or spawned.pid not in runner._children, message="reap")
    assert runner.process_start_time(spawned.pid) is None  # not left as a zombie


def test_run_captures_output_and_appends_to_log(tmp_path):
    log = str(tmp_path / "a.log")
    with open(log, "w") as f:
        f.write("before\n")
    res = runner.run(["sh", "-c", "echo out; echo err >&2; exit 4"], cwd=str(tmp_path),
                     log_path=log)
    assert (res.rc, res.output) == (4, "out\nerr\n") and res.seconds >= 0
    assert open(log).read() == "before\nout\nerr\n"


def test_run_missing_executable_is_127(tmp_path):
    res = runner.run(["no-such-tool-pegasus-em", "x"])
    assert res.rc == 127 and "no-such-tool-pegasus-em" in res.output
    res = runner.run(["true"], cwd=str(tmp_path / "missing"))
    assert res.rc == 127 and "missing" in res.output


def test_run_timeout_kills_the_group(tmp_path):
    pidfile = str(tmp_path / "pid")
    res = runner.run(["sh", "-c", "echo started; sleep 300 & echo $! >%s; wait" % pidfile],
                     timeout=0.5)
    assert res.rc == runner.TIMEOUT_RC and res.seconds < 10
    assert res.output.startswith("started\n") and "timed out" in res.output
    grandchild = int(open(pidfile).read())
    wait_until(lambda: runner.process_start_time(grandchild) is None or
               not runner.is_alive(grandchild, runner.process_start_time(grandchild)),
               message="grandchild killed")


def test_run_reports_signals_as_128_plus_n():
    assert runner.run(["sh", "-c", "kill -TERM $$"]).rc == 128 + signal.SIGTERM
