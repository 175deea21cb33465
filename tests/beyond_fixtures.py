"""Fixtures and helpers of the tests of what Pegasus 5.x never had (history, why,
auto-hold, dependencies, run-after, global throttles, metrics, watch, notifications,
import): the in-process stack (tests/stack.py), workflows walked through states in
the store, and a webhook and an SMTP server in threads of the test process."""

import json
import time

import pytest

from pegasus_em.core import store, transitions
from pegasus_em.em import cli
from pegasus_em.core.states import WorkflowState as W
from stack import Stack


TERMINAL = ("SUCCESSFUL", "FAILED", "PLAN_FAILED", "RUN_FAILED", "ABORTED")


@pytest.fixture
def stack(tmp_path):
    s = Stack(tmp_path)
    yield s
    s.close()


@pytest.fixture
def engine(tmp_path):
    s = Stack(tmp_path, engine=True, interval=0.5).start_engine()
    yield s
    s.close()


@pytest.fixture
def run_cli(stack, monkeypatch, capsys):
    """cli.main against the stack: -> (exit code, stdout, stderr)."""
    monkeypatch.setenv("PEGASUS_ENV", stack.config_file())
    monkeypatch.setenv("TZ", "UTC")
    time.tzset()

    def run(*argv):
        code = cli.main(["--url", stack.url] + list(argv))
        out = capsys.readouterr()
        return code, out.out, out.err
    yield run
    monkeypatch.delenv("TZ")
    time.tzset()


def move(s, ensemble, name, *path, reason=None, **fields):
    """Walk a workflow through states directly in the store (no engine)."""
    for new in path:
        with s.db.write() as conn:
            w = store.get_workflow(conn, store.get_ensemble(conn, ensemble), name)
            assert transitions.change_workflow_state(conn, w, new, s.ops.now(), reason, **fields), \
                (w.state, new)


TO_SUCCESS = (W.PLANNING, W.QUEUED, W.RUNNING, W.SUCCESSFUL)


def why(s, ensemble, name):
    return s.get("/ensembles/%s/workflows/%s/why" % (ensemble, name))


def bulk_submit(s, ensemble, n, prefix="w"):
    """n READY workflows in one transaction (a benchmark's setup, not the API's)."""
    with s.db.write() as conn:
        e = store.get_ensemble(conn, ensemble)
        now = s.ops.now()
        for i in range(n):
            store.insert_workflow(conn, e, "%s%05d" % (prefix, i), i % 7, "/tmp", '"/bin/true"',
                                  W.READY, now)


class Webhook:
    """A local HTTP server recording JSON POSTs; the first `fail` answer 500,
    and each answer can be held back `delay` seconds."""

    def __init__(self, fail=0, delay=0.0):
        import http.server
        import threading
        hook = self
        self.fail, self.delay, self.events, self.attempts = fail, delay, [], 0
        self.release = threading.Event()

        class Handler(http.server.BaseHTTPRequestHandler):
            def do_POST(self):
                data = self.rfile.read(int(self.headers["Content-Length"]))
                hook.attempts += 1
                if hook.delay:
                    hook.release.wait(hook.delay)
                ok = hook.attempts > hook.fail
                if ok:
                    hook.events.append(json.loads(data))
                self.send_response(200 if ok else 500)
                self.send_header("Content-Length", "0")
                self.end_headers()

            def log_message(self, *args):
                pass

        self.httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.httpd.daemon_threads = True
        self.url = "http://127.0.0.1:%d/hook" % self.httpd.server_address[1]
        self.thread = threading.Thread(target=self.httpd.serve_forever, args=(0.02,),
                                       daemon=True)
        self.thread.start()

    def close(self):
        self.release.set()
        self.httpd.shutdown()
        self.httpd.server_close()


class SMTPServer:
    """Just enough SMTP (smtpd is gone in 3.12): one thread, messages recorded."""

    def __init__(self):
        import socket
        import threading
        self.sock = socket.socket()
        self.sock.bind(("127.0.0.1", 0))
        self.sock.listen(5)
        self.port = self.sock.getsockname()[1]
        self.messages = []
        self.thread = threading.Thread(target=self._serve, daemon=True)
        self.thread.start()

    def _serve(self):
        while True:
            try:
                conn, _ = self.sock.accept()
            except OSError:
                return
            with conn, conn.makefile("rb") as f:
                self._session(conn, f)

    def _session(self, conn, f):
        conn.sendall(b"220 localhost test SMTP\r\n")
        envelope = {"rcpt": []}
        while True:
            line = f.readline()
            if not line:
                return
            verb = line[:4].upper()
            if verb in (b"EHLO", b"HELO"):
                conn.sendall(b"250 localhost\r\n")
            elif verb == b"MAIL":
                envelope["from"] = line.decode().strip()
                conn.sendall(b"250 OK\r\n")
            elif verb == b"RCPT":
                envelope["rcpt"].append(line.decode().strip())
                conn.sendall(b"250 OK\r\n")
            elif verb == b"DATA":
                conn.sendall(b"354 go ahead\r\n")
                data = b""
                while not data.endswith(b"\r\n.\r\n"):
                    chunk = f.readline()
                    if not chunk:
                        return
                    data += chunk
                envelope["data"] = data.decode("utf-8", "replace")
                self.messages.append(dict(envelope))
                conn.sendall(b"250 queued\r\n")
            elif verb == b"QUIT":
                conn.sendall(b"221 bye\r\n")
                return
            else:
                conn.sendall(b"250 OK\r\n")

    def close(self):
        self.sock.close()


@pytest.fixture
def webhook():
    hook = Webhook()
    yield hook
    hook.close()


def outbox(s):
    with s.db.read() as conn:
        return conn.execute("SELECT kind, channel, target, state, attempts, last_error"
                            " FROM outbox ORDER BY id").fetchall()
