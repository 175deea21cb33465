"""The client sends credentials only to its own user's daemon (issue: port squatting).

Once a user's daemon is gone (stopped, or SIGKILLed leaving em-server.json), its
port is anybody's.  Each test here puts a squatter, a process of ANOTHER user, on
the port the client would use, runs the real `pegasus-em` as the victim, and
checks what the squatter received: never an Authorization header.
"""

import base64
import json
import os
import subprocess

import pytest

from conftest import Daemon, throwaway_user, wait_until

# Answers every connection like a 5.x daemon would, and appends what it read to OUT.
SQUATTER = r"""
import socket, sys
port, out = int(sys.argv[1]), sys.argv[2]
srv = socket.socket()
srv.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
srv.bind(("127.0.0.1", port))
srv.listen(16)
open(out + ".ready", "w").close()
while True:
    conn, _ = srv.accept()
    conn.settimeout(5)
    data = b""
    try:
        while b"\r\n\r\n" not in data:
            chunk = conn.recv(65536)
            if not chunk:
                break
            data += chunk
        if data:
            conn.sendall(b"HTTP/1.0 200 OK\r\nContent-Type: application/json\r\n"
                         b"Content-Length: 2\r\n\r\n[]")
    except OSError:
        pass
    conn.close()
    with open(out, "ab") as f:
        f.write(b"--- connection\n" + data)
"""


class Squatter:
    def __init__(self, owner, port):
        self.out = os.path.join(owner.home, "received-%d" % port)
        self.proc = owner.popen([owner.python, "-c", SQUATTER, str(port), self.out],
                                stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
        wait_until(lambda: os.path.exists(self.out + ".ready") or self.proc.poll() is not None,
                   message="the squatter to listen")
        assert self.proc.poll() is None, self.proc.stderr.read()

    def received(self):
        try:
            with open(self.out, "rb") as f:
                return f.read()
        except FileNotFoundError:
            return b""

    def stop(self):
        self.proc.kill()
        self.proc.wait()


@pytest.fixture
def other(sandbox):
    with throwaway_user(sandbox) as u:
        yield u


@pytest.fixture
def squat(other):
    squatters = []

    def start(port):
        squatters.append(Squatter(other, port))
        return squatters[-1]
    yield start
    for s in squatters:
        s.stop()


def formula_port(user):
    return 7919 + user.uid % (65535 - 7919)


def assert_refused(proc, squatter):
    """Non-zero, one line saying the daemon is not running, and nothing sent."""
    assert proc.returncode != 0
    assert "not running" in proc.stderr and "Traceback" not in proc.stderr, proc.stderr
    assert len(proc.stderr.strip().splitlines()) == 1, proc.stderr
    received = squatter.received()
    assert b"authorization" not in received.lower() and PASSWORD_MARK not in received


PASSWORD_MARK = b"s3cret-"  # conftest's PASSWORD prefix


def test_squatter_on_the_formula_port_gets_nothing(user, squat, other):
    user.configure()
    squatter = squat(formula_port(user))
    proc = Daemon(user).cli("ensembles")
    assert_refused(proc, squatter)
    assert "another user (uid %d)" % other.uid in proc.stderr
    assert b"--- connection" in squatter.received()  # it was reached, and told nothing


def test_squatter_on_em_port_gets_nothing(user, squat, other):
    port = formula_port(other)  # free: nothing of `other` listens there but the squatter
    user.configure(extra="EM_PORT = %d\n" % port)
    squatter = squat(port)
    assert_refused(Daemon(user).cli("ensembles"), squatter)


@pytest.mark.parametrize("pid", ["dead", "recycled"])
def test_squatter_on_a_killed_daemons_port_gets_nothing(user, squat, pid):
    user.configure()
    d = Daemon(user).start()
    d.kill()  # SIGKILL: em-server.json stays behind
    with open(d.endpoint) as f:
        stale = json.load(f)
    port = int(stale["url"].rsplit(":", 1)[1])
    squatter = squat(port)
    formula = squat(formula_port(user))
    sleeper = None
    if pid == "recycled":  # the daemon's pid now belongs to another process of the user
        sleeper = user.popen(["sleep", "60"])
        stale["pid"] = sleeper.pid
        user.write(".pegasus/em-server.json", json.dumps(stale))
    try:
        proc = d.cli("ensembles")
    finally:
        if sleeper:
            sleeper.kill()
            sleeper.wait()
    assert_refused(proc, formula)
    assert squatter.received() == b""  # the stale address is never even tried


def test_chosen_loopback_url_of_another_user_is_refused(user, squat, other):
    user.configure()
    squatter = squat(formula_port(other))
    url = "http://127.0.0.1:%d" % formula_port(other)
    for proc in (Daemon(user).cli("--url", url, "ensembles"),
                 Daemon(user).cli("ensembles", env=user.env(PEGASUS_EM_URL=url))):
        assert proc.returncode == 1 and "another user" in proc.stderr, proc.stderr
        assert "Traceback" not in proc.stderr
    assert b"authorization" not in squatter.received().lower()


def test_client_uses_the_run_token_from_the_endpoint_file(daemon):
    """Found through em-server.json, the CLI sends this run's token, not PASSWORD:
    with a wrong PASSWORD in its config it still gets in."""
    user = daemon.user
    with open(daemon.endpoint) as f:
        token = json.load(f)["token"]
    assert len(token) >= 32
    wrong = user.write("wrong.py", "USERNAME = %r\nPASSWORD = 'not-it'\n" % user.name)
    proc = daemon.cli("ensembles", env=user.env(PEGASUS_ENV=wrong))
    assert proc.returncode == 0, proc.stderr
    chosen = daemon.cli("--url", daemon.url, "ensembles", env=user.env(PEGASUS_ENV=wrong))
    assert chosen.returncode == 1 and "Invalid username or password" in chosen.stdout


def test_token_and_password_both_work_and_a_restart_changes_the_token(daemon):
    user = daemon.user
    with open(daemon.endpoint) as f:
        token = json.load(f)["token"]

    def status(secret, d=daemon):
        header = base64.b64encode(("%s:%s" % (user.name, secret)).encode()).decode()
        return d.request("GET", "/ensembles", auth=False,
                         headers={"Authorization": "Basic " + header})[0]
    assert status(token) == 200 and status(user.password) == 200  # 5.x clients: PASSWORD
    assert status(token[:-1]) == 401 and status("") == 401
    assert daemon.cli("--url", daemon.url, "ensembles").returncode == 0  # PASSWORD
    daemon.stop()
    restarted = Daemon(user).start()
    try:
        assert status(token, restarted) == 401 and status(user.password, restarted) == 200
    finally:
        restarted.kill()
