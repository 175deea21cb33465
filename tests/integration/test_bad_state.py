"""Bad state on disk: one clear line, never a traceback, and nothing acknowledged lost.

A broken em.db, a read-only ~/.pegasus or an unwritable log stop the daemon at
start with `ERROR: ...` naming the file and the fix.  A disk that fills up while
the daemon runs makes writes answer 503 with a message; the daemon keeps going
and takes writes again once space returns.
"""

import errno
import os
import subprocess

import pytest

from conftest import Daemon, wait_until


def start_fails(user):
    proc = user.run([user.python, "-m", "pegasus_em", "server", "--port", "0"])
    assert proc.returncode != 0
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("ERROR: "), proc.stderr
    return lines[0]


def pegasus_file(user, name):
    return os.path.join(user.pegasus_dir, name)


def test_garbage_database(user):
    user.configure()
    path = user.write(".pegasus/em.db", "this is not sqlite\n" * 100)
    line = start_fails(user)
    assert path in line and "not a usable SQLite database" in line and "mv " in line


def test_truncated_database(user):
    user.configure()
    d = Daemon(user).start()
    for i in range(200):
        assert d.request("POST", "/ensembles", {"name": "e%d" % i})[0] == 201
    d.stop()  # clean: the WAL is checkpointed into em.db and removed
    path = pegasus_file(user, "em.db")
    assert not os.path.exists(path + "-wal")
    os.truncate(path, os.path.getsize(path) // 2)
    line = start_fails(user)
    assert path in line and "malformed" in line and "backup" in line


def test_database_that_is_a_directory(user):
    user.configure()
    path = pegasus_file(user, "em.db")
    os.mkdir(path)
    line = start_fails(user)
    assert path in line and "Is a directory" in line and "move it away" in line


@pytest.mark.parametrize("ran_before", [False, True])
def test_read_only_pegasus_dir(user, ran_before):
    user.configure()
    if ran_before:
        Daemon(user).start().stop()
    os.chmod(user.pegasus_dir, 0o500)
    line = start_fails(user)
    assert line.endswith("Run: chmod 700 %s" % user.pegasus_dir)


def test_unwritable_log(user):
    user.configure()
    path = pegasus_file(user, "em-server.log")
    with open(path, "w"):
        pass
    os.chmod(path, 0o600)  # root's file: the user cannot write it
    line = start_fails(user)
    assert path in line and "Permission denied" in line and "chmod 600" in line
    assert not os.path.exists(pegasus_file(user, "em-server.json"))


# --------------------------------------------------------------------------- full disk


@pytest.fixture
def small_pegasus_dir(user):
    """~/.pegasus on a tmpfs of its own, small enough to fill."""
    os.makedirs(user.pegasus_dir, mode=0o700, exist_ok=True)
    proc = subprocess.run(["mount", "-t", "tmpfs", "-o", "size=8m,mode=0700,uid=%d,gid=%d"
                           % (user.uid, user.gid), "tmpfs", user.pegasus_dir],
                          capture_output=True, text=True)
    if proc.returncode != 0:
        pytest.skip("cannot mount a tmpfs here: %s" % proc.stderr.strip())
    try:
        yield user
    finally:
        subprocess.run(["pkill", "-KILL", "-u", user.name])
        subprocess.run(["umount", "-l", user.pegasus_dir])


def fill(path):
    """Write `path` until the filesystem has no byte left."""
    fd = os.open(path, os.O_WRONLY | os.O_CREAT, 0o600)
    try:
        for size in (1 << 20, 4096, 1):
            chunk = b"\0" * size
            while True:
                try:
                    os.write(fd, chunk)
                except OSError as e:
                    assert e.errno == errno.ENOSPC
                    break
    finally:
        os.close(fd)


def submit(d, name):
    return d.request("POST", "/ensembles/e/workflows", {
        "name": name, "basedir": "/tmp", "plan_command": "/bin/true", "priority": "0"})


def test_full_disk_answers_503_then_recovers_and_loses_nothing(small_pegasus_dir):
    user = small_pegasus_dir
    user.configure()
    d = Daemon(user).start()
    assert d.request("POST", "/ensembles", {"name": "e", "max_planning": "2"})[0] == 201
    assert d.request("POST", "/ensembles/e/triggers/cron", {
        "trigger": "t", "workflow_script": "/bin/true", "workflow_args": "[]",
        "interval": "1s"})[0] == 201
    acked = [name for name in ("a%d" % i for i in range(5)) if submit(d, name)[0] == 201]
    assert len(acked) == 5
    filler = os.path.join(user.pegasus_dir, "filler")
    fill(filler)
    for i in range(5000):  # the WAL may still have room for a few
        status, _, body = submit(d, "b%d" % i)
        if status != 201:
            break
        acked.append("b%d" % i)
    assert status == 503, (status, body)
    assert "is full" in body["message"] and "em.db" in body["message"]
    assert d.request("GET", "/ensembles/e/workflows")[0] == 200  # reads go on
    assert submit(d, "refused")[0] == 503
    os.unlink(filler)
    status = wait_until(lambda: submit(d, "after")[0], message="a submission after space returns")
    assert status == 201
    acked.append("after")
    assert d.proc.poll() is None
    assert "Traceback" not in d.errors()
    d.kill()
    restarted = Daemon(user).start()
    try:
        names = {w["name"] for w in restarted.request("GET", "/ensembles/e/workflows")[2]}
        assert set(acked) <= names and "refused" not in names
    finally:
        restarted.kill()
    with open(os.path.join(user.pegasus_dir, "em-server.log")) as f:
        log = f.read()
    assert log.count("Traceback") <= 3, log
