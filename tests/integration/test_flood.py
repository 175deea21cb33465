"""Floods: a local user opens more connections than the server has descriptors,
or sends a request a byte at a time.  The owner's client must still be served,
the engine must keep planning, and nothing may spin or die.

The servers run under `prlimit --nofile=256:256`, so a flood of 400
connections is more than they could ever hold (today's descriptor limit is a
thousand or so, and the attack scales with it)."""

import logging
import os
import re
import shutil
import socket
import subprocess
import sys
import textwrap
import threading
import time

import pytest

from conftest import REPO, Daemon, unique, wait_until
from service_fixtures import Service, make_certificate
from stack import Stack
from test_engine import example, submit, wait_state
from test_service import set_password, PASSWORDS

from pegasus_em import loops

FD_LIMIT = 256
FLOOD = 400
PRLIMIT = ["prlimit", "--nofile=%d:%d" % (FD_LIMIT, FD_LIMIT)]
PLANNED = ("PLANNING", "QUEUED", "RUNNING", "SUCCESSFUL")

needs_prlimit = pytest.mark.skipif(shutil.which("prlimit") is None, reason="needs prlimit")


# ---- the attacker ------------------------------------------------------------

class Flood:
    """FLOOD connections to host:port, opened without waiting for the server to accept
    them; every other one sends half a request (`partial`) and stops."""

    def __init__(self, host, port, partial, count=FLOOD):
        self.socks = []
        for i in range(count):
            s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
            s.setblocking(False)
            s.connect_ex((host, port))
            self.socks.append((s, partial if i % 2 else b""))
        self.sent = 0

    def send_partial(self):
        """Once connected, each half-sender sends its bytes (those the server shed
        see an error: that is the point)."""
        for s, data in self.socks:
            if data:
                try:
                    self.sent += s.send(data)
                except OSError:
                    pass

    def release(self):
        for s, _ in self.socks:
            s.close()
        self.socks = []


def cpu_seconds(pid):
    with open("/proc/%d/stat" % pid) as f:
        fields = f.read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def cpu_share(pid, seconds=2.0):
    """Share of one core the process used over `seconds` (a spinning accept loop: ~1)."""
    before, t0 = cpu_seconds(pid), time.monotonic()
    time.sleep(seconds)  # measuring an interval, not waiting for an event
    return (cpu_seconds(pid) - before) / (time.monotonic() - t0)


def answered(call):
    """Poll `call` (-> status) until it answers 200; each try may time out."""
    def ok():
        try:
            return call() == 200
        except OSError:
            return False
    return wait_until(ok, timeout=10, interval=0.1, message="a legitimate request answered")


def settle(pid):
    """Wait until the process has accepted the flood: its CPU use drops."""
    wait_until(lambda: cpu_share(pid, 0.5) < 0.3, timeout=20, interval=0,
               message="the server to be done with the flood's connections")


# ---- the daemon --------------------------------------------------------------

@pytest.fixture
def limited_daemon(user):
    user.configure(extra="EM_INTERVAL = 0.5\n")
    d = Daemon(user, prefix=PRLIMIT).start()
    yield d
    d.kill()


def _host_port(url):
    host, port = url.split("//", 1)[1].rstrip("/").rsplit(":", 1)
    return host, int(port)


@needs_prlimit
def test_a_connection_flood_neither_stops_the_daemon_nor_its_engine(limited_daemon):
    d = limited_daemon
    assert d.request("POST", "/ensembles", {"name": "e", "max_planning": "5"})[0] == 201
    host, port = _host_port(d.url)
    flood = Flood(host, port, b"GET /ensembles HTTP/1.1\r\nHost: x\r\n")
    try:
        settle(d.proc.pid)
        flood.send_partial()
        answered(lambda: d.request("GET", "/ensembles")[0])
        submit(d, "e", "during", "pegasus.sim.run.seconds=0.2")
        wait_state(d, "e", "during", *PLANNED)
        assert cpu_share(d.proc.pid) < 0.3  # no spinning on EMFILE
    finally:
        flood.release()
    submit(d, "e", "after", "pegasus.sim.run.seconds=0.2")
    wait_state(d, "e", "after", *PLANNED)  # the engine thread is alive
    with open(os.path.join(d.user.pegasus_dir, "em-server.log")) as f:
        text = f.read()
    assert "at the connection cap (%d)" % (FD_LIMIT // 2) in text  # the flood was real
    assert "Traceback" not in text and " died" not in text, text[-3000:]
    assert "Traceback" not in d.errors(), d.errors()[-3000:]


# ---- pegasus-service ---------------------------------------------------------

class LimitedService(Service):
    def command(self):
        return PRLIMIT + super().command()


@needs_prlimit
def test_a_connection_flood_does_not_stop_pegasus_service(sandbox, user):
    user.configure(extra="EM_INTERVAL = 0.5\n")
    set_password(user, "Pw-%s-2y" % user.name)
    daemon = Daemon(user).start()
    cert, key = make_certificate(sandbox.base)
    svc = LimitedService(sandbox, "CERTIFICATE = %r\nPRIVATE_KEY = %r\n" % (cert, key),
                         python=user.python).start()
    client = svc.client()

    def call(method, path, **kwargs):
        return client.request(method, path, user.name, PASSWORDS[user.name], **kwargs)

    name = unique("fl")
    try:
        assert call("POST", "/ensembles", form={"name": name})[0] == 201
        flood = Flood(client.host, client.port, b"\x16\x03\x01\x02\x00\x01")  # half a hello
        try:
            settle(svc.proc.pid)
            flood.send_partial()
            answered(lambda: call("GET", "/ensembles")[0])
            basedir = example(daemon)
            status, _, body = call("POST", "/ensembles/%s/workflows" % name, form={
                "name": "during", "basedir": basedir, "plan_command": basedir + "/plan.sh"})
            assert status == 201, body
            wait_state(daemon, name, "during", *PLANNED)
            assert cpu_share(svc.proc.pid) < 0.3
        finally:
            flood.release()
        answered(lambda: call("GET", "/ensembles")[0])
    finally:
        svc.stop()
        daemon.kill()
    assert "Traceback" not in svc.errors(), svc.errors()[-3000:]


# ---- slowloris ---------------------------------------------------------------

SLOW_REQUESTS = {  # the first line goes at once, then a byte each 0.5 s for 10 s
    "headers": (b"GET /ensembles HTTP/1.1\r\n", b"X-Slow: " + b"a" * 12),
    "body": (b"POST /ensembles HTTP/1.1\r\nContent-Length: 20\r\n\r\n", b"n" * 20),
}


@pytest.mark.parametrize("part", sorted(SLOW_REQUESTS))
def test_a_request_sent_a_byte_at_a_time_is_cut_off_at_the_deadline(user, part):
    user.configure(extra="REQUEST_TIMEOUT = 2\n")
    d = Daemon(user).start()
    try:
        host, port = _host_port(d.url)
        first, slow = SLOW_REQUESTS[part]
        with socket.create_connection((host, port), timeout=10) as s:
            s.sendall(first)
            s.setblocking(False)  # recv tells at once whether the server closed it
            began = time.monotonic()
            for i in range(len(slow)):
                try:
                    s.send(slow[i:i + 1])
                    if s.recv(1, socket.MSG_DONTWAIT) == b"":
                        break
                except BlockingIOError:
                    pass
                except OSError:
                    break
                time.sleep(0.5)  # the attacker's pace
            else:
                pytest.fail("the server took all %d bytes over %.0f s"
                            % (len(slow), time.monotonic() - began))
        assert time.monotonic() - began >= 1.5  # the deadline, not an error at once
    finally:
        d.kill()


# ---- out of descriptors --------------------------------------------------------

EMFILE_SERVER = textwrap.dedent("""
    import logging, sys
    from pegasus_em.web.httpd import Server
    logging.basicConfig(stream=sys.stderr, level=logging.INFO)
    def app(environ, start_response):
        start_response("200 OK", [("Content-Length", "2")])
        return [b"ok"]
    server = Server(("127.0.0.1", 0), app)
    server.max_connections = 100000  # no cap: the descriptors run out first
    print(server.server_port, flush=True)
    server.serve_forever()
""")


@needs_prlimit
def test_running_out_of_descriptors_does_not_spin_the_accept_loop(tmp_path):
    err = open(tmp_path / "stderr", "w+")
    proc = subprocess.Popen(["prlimit", "--nofile=64:64", sys.executable, "-c", EMFILE_SERVER],
                            stdout=subprocess.PIPE, stderr=err, cwd=REPO,
                            env=dict(os.environ, PYTHONPATH=REPO))
    try:
        port = int(proc.stdout.readline())
        flood = Flood("127.0.0.1", port, b"GET / HTTP/1.1\r\n", count=200)
        try:
            time.sleep(1)  # let the connections arrive: accept() fails with EMFILE
            assert cpu_share(proc.pid) < 0.3
            answered(lambda: _get("127.0.0.1", port))
        finally:
            flood.release()
    finally:
        proc.kill()
        proc.wait()
    err.seek(0)
    log = err.read()
    assert len(re.findall("accept\\(\\) failed", log)) <= 3, log[-3000:]  # once an episode
    assert "Traceback" not in log, log[-3000:]


def _get(host, port):
    with socket.create_connection((host, port), timeout=2) as s:
        s.sendall(b"GET / HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
        return int(s.recv(100).split()[1])


# ---- the supervised loop -------------------------------------------------------

def test_the_engine_survives_emfile_in_its_wait(tmp_path, caplog):
    """The reported death: the engine's wait (which made a selector) was outside the
    loop's try, so one EMFILE there ended the engine thread for good."""
    s = Stack(tmp_path, engine=True)
    real_wait, failures = s.manager._wait, []

    def wait(timeout):
        if len(failures) < 3:
            failures.append(timeout)
            raise OSError(24, "Too many open files")
        return real_wait(timeout)

    s.manager._wait = wait
    try:
        s.start_engine()
        s.ensemble("e")
        wait_until(lambda: len(failures) == 3, message="three failed waits")
        s.submit("e", "w")
        wait_until(lambda: s.state("e", "w") != "READY", message="the workflow planned")
        assert s.manager.running
    finally:
        s.close()
    assert len([r for r in caplog.records if "engine failed" in r.getMessage()]) == 3


def test_a_failing_turn_is_logged_and_retried_with_growing_pauses(caplog):
    stop = threading.Event()
    calls = []

    def tick():
        calls.append(time.monotonic())
        if len(calls) >= 6:
            stop.set()
        raise OSError(24, "Too many open files")

    caplog.set_level(logging.ERROR, logger="pegasus_em.loops")
    thread = loops.start("test-loop", tick, None, stop)
    thread.join(10)
    assert not thread.is_alive() and len(calls) == 6
    gaps = [b - a for a, b in zip(calls, calls[1:])]
    assert all(gap >= 0.9 * loops.FIRST_PAUSE * 2 ** i for i, gap in enumerate(gaps)), gaps
    failures = [r for r in caplog.records if "test-loop failed" in r.getMessage()]
    assert len(failures) == 6 and all(r.exc_info for r in failures)
