#!/usr/bin/env python3
"""REST API throughput and latency against a real `pegasus-em server`.

Prints one JSON object:
  submissions_per_s_new_connection  4 client processes, a fresh TCP connection per
                                    request (as the 5.x client does)
  submissions_per_s_keepalive       4 client processes, one keep-alive connection each
  bare_server                       the same clients against bare standard-library
                                    ThreadingHTTPServers (TCP_NODELAY, one sqlite WAL commit
                                    per POST, no auth, no validation) started by this
                                    script, in rounds alternating with the daemon, and the
                                    daemon's rate as a fraction of each (the median of the
                                    rounds' ratios holds on a noisy machine, where the rates
                                    do not).  "schema": the bare server writes what a
                                    submission writes (the workflow and its event, into our
                                    schema): the cost of our HTTP server, auth, routing,
                                    validation and response (target keep-alive >= 0.85).
                                    "minimal": one row into a table with one index: what
                                    our data model costs on top (9 b-trees a submission).
  list_10000_median_ms / p90        GET /ensembles/E/workflows of a 10,000-workflow ensemble
  rss_mb_with_10000                 daemon resident memory afterwards
  profile_us                        one keep-alive submission taken apart, in this process,
                                    one thread, the median of many: microseconds of CPU
                                    per phase (parsing, auth, routing, the form, validation
                                    and the transaction, the wake, the response)
Run as root (it creates a throwaway user for the daemon): python3 bench/api.py
"""

import argparse
import contextlib
import http.client
import io
import json
import multiprocessing
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
import types
import urllib.parse

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import harness  # noqa: E402

CLIENTS = 4
ROUNDS = 3

# The yardstick: a bare standard-library server answering the same requests, one sqlite
# WAL commit per POST.  argv: db path, "minimal" (one row into a table with one index) or
# "schema" (the rows a submission writes into our own schema: the workflow and its
# "submitted" event, into a database made by pegasus_em.core.db, with its indexes).
BARE_SERVER = r'''
import json, socket, sqlite3, sys, threading, time, urllib.parse
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

db = sqlite3.connect(sys.argv[1], isolation_level=None, check_same_thread=False)
db.execute("PRAGMA journal_mode=WAL")
db.execute("PRAGMA synchronous=NORMAL")
db.execute("PRAGMA foreign_keys=ON")
SCHEMA = sys.argv[2] == "schema"
if not SCHEMA:
    db.execute("CREATE TABLE IF NOT EXISTS workflows (id INTEGER PRIMARY KEY, ensemble TEXT,"
               " name TEXT, priority INTEGER, basedir TEXT, plan_command TEXT,"
               " UNIQUE (ensemble, name))")
lock = threading.Lock()
BODY = json.dumps({"message": "created"}).encode()


def insert(ensemble, form):
    if not SCHEMA:
        db.execute("INSERT INTO workflows (ensemble, name, priority, basedir, plan_command)"
                   " VALUES (?, ?, ?, ?, ?)", (ensemble, form["name"][0], int(form["priority"][0]),
                                               form["basedir"][0], form["plan_command"][0]))
        return
    now = round(time.time(), 5)
    ensemble_id = db.execute("SELECT id FROM ensembles WHERE name = ?", (ensemble,)).fetchone()[0]
    cur = db.execute("INSERT INTO workflows (ensemble_id, name, state, priority, basedir,"
                     " plan_command, created, updated, state_since)"
                     " VALUES (?, ?, 'READY', ?, ?, ?, ?, ?, ?)",
                     (ensemble_id, form["name"][0], int(form["priority"][0]), form["basedir"][0],
                      form["plan_command"][0], now, now, now))
    db.execute("INSERT INTO events (time, ensemble_id, workflow_id, old_state, new_state, reason)"
               " VALUES (?, ?, ?, NULL, 'READY', 'submitted')", (now, ensemble_id, cur.lastrowid))


class Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"

    def setup(self):
        super().setup()
        self.connection.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)

    def log_message(self, *args):
        pass

    def do_POST(self):
        form = urllib.parse.parse_qs(self.rfile.read(int(self.headers["Content-Length"])).decode())
        with lock:
            db.execute("BEGIN IMMEDIATE")
            insert(self.path.split("/")[2], form)
            db.execute("COMMIT")
        self.send_response(201)
        self.send_header("Content-Type", "application/json")
        self.send_header("Location", self.path + "/" + form["name"][0])
        self.send_header("Content-Length", str(len(BODY)))
        self.end_headers()
        self.wfile.write(BODY)


server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
print(server.server_address[1], flush=True)
server.serve_forever()
'''
BARE_KINDS = ("minimal", "schema")


def _client(args):
    host, port, auth, ensemble, prefix, count, keepalive, start_at = args
    headers = {"Authorization": auth, "Content-Type": "application/x-www-form-urlencoded",
               "Accept": "application/json"}
    conn = None
    while time.time() < start_at:
        time.sleep(0.001)
    t0 = time.perf_counter()
    for i in range(count):
        if conn is None:
            conn = http.client.HTTPConnection(host, port, timeout=30)
        body = urllib.parse.urlencode({"name": "%s%d" % (prefix, i), "priority": "0",
                                       "basedir": "/tmp", "plan_command": '"/bin/true"'})
        conn.request("POST", "/ensembles/%s/workflows" % ensemble, body, headers)
        resp = conn.getresponse()
        resp.read()
        if resp.status != 201:
            raise SystemExit("submission failed: %d" % resp.status)
        if not keepalive:
            conn.close()
            conn = None
    return time.perf_counter() - t0


def submissions_per_s(target, ensemble, keepalive, per_client, tag=""):
    start_at = time.time() + 0.5
    jobs = [(target.host, target.port, target.auth, ensemble,
             "%s%s%d_" % (tag, "k" if keepalive else "n", c), per_client, keepalive, start_at)
            for c in range(CLIENTS)]
    with multiprocessing.Pool(CLIENTS) as pool:
        durations = pool.map(_client, jobs)
    return CLIENTS * per_client / max(durations)


@contextlib.contextmanager
def bare_server(kind):
    """The yardstick server in a process of its own; -> an object like harness.Target."""
    base = tempfile.mkdtemp(prefix="pembare-")
    path = os.path.join(base, "bare.db")
    if kind == "schema":  # our schema and the ensemble the clients submit into
        subprocess.run([sys.executable, "-c", SCHEMA_DB, harness.REPO, path], check=True)
    proc = subprocess.Popen([sys.executable, "-c", BARE_SERVER, path, kind],
                            stdout=subprocess.PIPE)
    try:
        port = int(proc.stdout.readline())
        yield types.SimpleNamespace(host="127.0.0.1", port=port, auth="Basic eDp5")
    finally:
        proc.kill()
        proc.wait()
        shutil.rmtree(base, ignore_errors=True)


SCHEMA_DB = """
import sys
sys.path.insert(0, sys.argv[1])
from pegasus_em.core import db, ops
database = db.open_database(sys.argv[2])
ops.Ops(database, "/nonexistent").create_ensemble("throughput")
database.close()
"""


def side_by_side(target, bares, per_client, rounds):
    """Rates of the daemon and of each bare server, in rounds, one after the other, and
    the median of each round's ratio (rates measured a few seconds apart see the same
    load, which on a shared machine changes from one minute to the next)."""
    servers = [("ours", target)] + list(bares.items())
    rates = {(who, k): [] for who, _ in servers for k in (False, True)}
    for r in range(rounds):
        for keepalive in (False, True):
            for who, server in servers:
                rates[who, keepalive].append(submissions_per_s(
                    server, "throughput", keepalive, per_client, "r%d" % r))
    out = {}
    for keepalive, label in ((False, "new_connection"), (True, "keepalive")):
        ours = rates["ours", keepalive]
        out[label] = {"ours_per_s": [round(x) for x in ours]}
        for kind in bares:
            theirs = rates[kind, keepalive]
            out[label]["bare_%s_per_s" % kind] = [round(x) for x in theirs]
            out[label]["ratio_to_bare_%s" % kind] = round(statistics.median(
                a / b for a, b in zip(ours, theirs)), 3)
    out["keepalive"]["target_ratio"] = 0.85
    return out


# ---- one submission taken apart ---------------------------------------------------

def profile_submission(samples=2000):
    """Microseconds per phase of a keep-alive form POST, each phase timed on its own
    over `samples` fresh requests (median); `sum` beside what the whole path costs."""
    sys.path.insert(0, harness.REPO)
    from pegasus_em.core import db as dbmod, manager
    from pegasus_em.web import httpd  # noqa: E402 (the checkout's)
    from pegasus_em.em.api import App, created
    from pegasus_em.web.auth import BasicAuth
    from pegasus_em.core.ops import Ops
    base = tempfile.mkdtemp(prefix="pemprof-")
    try:
        db = dbmod.open_database(os.path.join(base, "em.db"))
        engine = manager.Manager(db, base)
        ops = Ops(db, base)
        ops.create_ensemble("p")
        ops.update_ensemble("p", state="PAUSED")
        app = App(ops, BasicAuth("u", "pw").authenticate, base_url="http://127.0.0.1:1")
        out = _phases(app, ops, engine, httpd, created, samples)
        engine.stop()
        db.close()
        return out
    finally:
        shutil.rmtree(base, ignore_errors=True)


def _phases(app, ops, engine, httpd, created, samples):
    auth = "Basic dTpwdw=="  # u:pw
    times = {k: [] for k in ("parse", "auth", "route", "form", "transaction", "wake",
                             "response", "whole")}
    for i in range(samples):
        handler, env = _timed(times["parse"], _parse, httpd, app, _raw_request("x%d" % i, auth))
        _timed(times["auth"], app.authenticate, auth)
        _timed(times["route"], app.routes.find, "POST", env["PATH_INFO"])
        form = _timed(times["form"], app.read_form, env)
        w = _timed(times["transaction"], ops.submit, "p", form["name"], form["basedir"],
                   form["plan_command"], form["priority"])
        _timed(times["wake"], engine.wake)
        _timed(times["response"], _respond, handler, created, w)
        _timed(times["whole"], _whole, httpd, app, _raw_request("y%d" % i, auth))
    out = {k: round(statistics.median(v) * 1e6, 1) for k, v in times.items()}
    out["sum"] = round(sum(v for k, v in out.items() if k != "whole"), 1)
    return out


def _raw_request(name, auth):
    body = urllib.parse.urlencode({"name": name, "priority": "0", "basedir": "/tmp",
                                   "plan_command": '"/bin/true"'})
    return ("POST /ensembles/p/workflows HTTP/1.1\r\nHost: 127.0.0.1:1\r\n"
            "Accept-Encoding: identity\r\nContent-Length: %d\r\n"
            "Content-Type: application/x-www-form-urlencoded\r\nAuthorization: %s\r\n"
            "Accept: application/json\r\n\r\n%s" % (len(body), auth, body)).encode()


class _FakeServer:
    """What Handler needs of its server when no socket is involved."""
    server_name, server_port, ssl_context = "127.0.0.1", 1, None

    def __init__(self, app):
        self.app = app


def _handler(httpd, app, raw):
    """A keep-alive worker's handler reading `raw`, its request line parsed."""
    handler = httpd.Handler.__new__(httpd.Handler)
    handler.rfile, handler.wfile = io.BufferedReader(io.BytesIO(raw)), io.BytesIO()
    handler.client_address, handler.server = ("127.0.0.1", 1), _FakeServer(app)
    handler.connection, handler.close_connection = None, False
    handler.parse(handler.rfile.readline())
    return handler


def _parse(httpd, app, raw):
    """Request line, headers, body and environ, as a keep-alive worker does them."""
    handler = _handler(httpd, app, raw)
    return handler, handler.environ(handler.read_body())


def _whole(httpd, app, raw):
    """The whole path but the socket: parsing, the app, the response."""
    handler = _handler(httpd, app, raw)
    handler.run_app(handler.read_body())


def _respond(handler, created, w):
    response = created("/ensembles/%s/workflows/%s" % (w.ensemble, w.name))
    handler._send("201 Created", response.headers + [
        ("Content-Length", str(len(response.body)))], response.body)


def _timed(into, fn, *args):
    t0 = time.perf_counter()
    result = fn(*args)
    into.append(time.perf_counter() - t0)
    return result


def request(target, method, path, form=None, conn=None):
    own = conn is None
    conn = conn or http.client.HTTPConnection(target.host, target.port, timeout=60)
    body = urllib.parse.urlencode(form) if form else None
    headers = {"Authorization": target.auth, "Accept": "application/json"}
    if body:
        headers["Content-Type"] = "application/x-www-form-urlencoded"
    conn.request(method, path, body, headers)
    resp = conn.getresponse()
    data = resp.read()
    if own:
        conn.close()
    return resp.status, data


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--per-client", type=int, default=1500)
    ap.add_argument("--rounds", type=int, default=ROUNDS)
    ap.add_argument("--workflows", type=int, default=10000)
    ap.add_argument("--profile-only", action="store_true",
                    help="only take one submission apart (no daemon, no root needed)")
    args = ap.parse_args()
    out = {}
    if args.profile_only:
        print(json.dumps({"profile_us": profile_submission()}, indent=2))
        return
    with harness.daemon() as target, bare_server("minimal") as minimal, \
            bare_server("schema") as same_rows:
        for ens in ("throughput", "big"):  # paused: nothing is planned while measuring
            request(target, "POST", "/ensembles", {"name": ens})
            request(target, "POST", "/ensembles/%s" % ens, {"state": "PAUSED"})
        out["bare_server"] = side_by_side(target, {"minimal": minimal, "schema": same_rows},
                                          args.per_client, args.rounds)
        for label in ("new_connection", "keepalive"):
            out["submissions_per_s_" + label] = round(statistics.median(
                out["bare_server"][label]["ours_per_s"]))
        conn = http.client.HTTPConnection(target.host, target.port, timeout=60)
        for i in range(args.workflows):
            request(target, "POST", "/ensembles/big/workflows",
                    {"name": "w%d" % i, "priority": str(i % 7), "basedir": "/tmp",
                     "plan_command": '"/bin/true" "--flag"'}, conn)
        timings = []
        for _ in range(30):
            t0 = time.perf_counter()
            status, data = request(target, "GET", "/ensembles/big/workflows", conn=conn)
            timings.append((time.perf_counter() - t0) * 1000)
            assert status == 200 and len(json.loads(data)) == args.workflows
        conn.close()
        out["list_%d_median_ms" % args.workflows] = round(statistics.median(timings), 1)
        out["list_%d_p90_ms" % args.workflows] = round(sorted(timings)[int(len(timings) * 0.9)], 1)
        out["rss_mb_with_%d" % args.workflows] = round(target.rss_mb(), 1)
    out["profile_us"] = profile_submission()
    print(json.dumps(out, indent=2))


if __name__ == "__main__":
    main()
