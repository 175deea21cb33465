#!/usr/bin/env python3
"""Benchmarks of the features beyond Pegasus 5.x, against real `pegasus-em server`s.

Prints one JSON object:
  why          GET …/workflows/W/why of the last of 10,000 READY workflows queued behind a
               full planning throttle (two planners that sleep), over HTTP, keep-alive, on
               a quiet daemon; median and p90 of 50 requests (target <= 50 ms).
  metrics      GET /metrics with those 10,000 workflows (and a second ensemble), over HTTP;
               median and p90 of 50 requests (target <= 20 ms).
  scheduler    slot refill with max_planning 1 and N failing planners queued: the
               PLAN_FAILED event of one workflow -> the PLANNING event of the next, every
               end queueing a notification; without notifications, and with NOTIFY_WEBHOOK
               and NOTIFY_EMAIL pointing at servers that take 0.5 s to answer (target: no
               measurable difference).
All event times are the daemon's own (`GET /ensembles/E/events`).
Run as root (it creates throwaway users for the daemons): python3 bench/beyond.py [--quick]
"""

import argparse
import http.client
import http.server
import json
import os
import socket
import statistics
import sys
import threading
import time
import urllib.parse

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import harness  # noqa: E402


def ms(seconds):
    return round(seconds * 1000, 2)


def summary(values):
    values = sorted(values)
    return {"median_ms": ms(statistics.median(values)),
            "p90_ms": ms(values[min(len(values) - 1, int(len(values) * 0.9))]),
            "max_ms": ms(values[-1]), "n": len(values)}


def check(status, body, what):
    if status not in (200, 201, 202):
        raise SystemExit("%s failed: %s %s" % (what, status, body))
    return body


class Keepalive:
    """One HTTP/1.1 connection for many requests (the fastest way to fill the queue)."""

    def __init__(self, t):
        self.t = t
        self.conn = http.client.HTTPConnection(t.host, t.port, timeout=60)

    def request(self, method, path, form=None):
        body = urllib.parse.urlencode(form) if form else None
        headers = {"Authorization": self.t.auth, "Accept": "application/json"}
        if body:
            headers["Content-Type"] = "application/x-www-form-urlencoded"
        self.conn.request(method, path, body, headers)
        resp = self.conn.getresponse()
        return resp.status, resp.read()

    def timed_get(self, path):
        started = time.perf_counter()
        status, body = self.request("GET", path)
        took = time.perf_counter() - started
        if status != 200:
            raise SystemExit("GET %s: %s %s" % (path, status, body[:200]))
        return took, body


def fill(t, ensemble, n, blockers=0):
    """n READY workflows behind `blockers` planners that sleep (a full throttle)."""
    check(*t.request("POST", "/ensembles", {"name": ensemble, "max_planning": "2"}), "create")
    k = Keepalive(t)
    for i in range(blockers):
        check(*k.request("POST", "/ensembles/%s/workflows" % ensemble, {
            "name": "sleeper%d" % i, "priority": "100", "basedir": "/tmp",
            "plan_command": '"/bin/sleep" "3600"'}), "submit")
    wait_for(t, ensemble, lambda rows: sum(w["state"] == "PLANNING" for w in rows) == blockers)
    for i in range(n):
        status, body = k.request("POST", "/ensembles/%s/workflows" % ensemble, {
            "name": "w%05d" % i, "priority": str(i % 7), "basedir": "/tmp",
            "plan_command": '"/bin/true"'})
        if status != 201:
            raise SystemExit("submit: %s %s" % (status, body))
    return k


def wait_for(t, ensemble, done, timeout=120):
    deadline = time.monotonic() + timeout
    while not done(t.request("GET", "/ensembles/%s/workflows" % ensemble)[1]):
        if time.monotonic() > deadline:
            raise SystemExit("%s did not settle" % ensemble)
        time.sleep(0.2)


def bench_why_and_metrics(t, n, samples):
    fill(t, "other", n // 10)  # planned (and failed: /bin/true plans nothing) first
    wait_for(t, "other", lambda rows: all(w["state"] == "PLAN_FAILED" for w in rows))
    k = fill(t, "big", n, blockers=2)
    path = "/ensembles/big/workflows/w%05d/why" % (n - 1)
    k.timed_get(path)
    _, body = k.timed_get(path)
    reply = json.loads(body)
    why_times = [k.timed_get(path)[0] for _ in range(samples)]
    k.timed_get("/metrics")
    metric_times, size = [], 0
    for _ in range(samples):
        took, body = k.timed_get("/metrics")
        metric_times.append(took)
        size = len(body)
    return (dict(summary(why_times), target_ms=50, workflows=n, position=reply.get("position"),
                 explanation=reply.get("explanation")[:160] + "..."),
            dict(summary(metric_times), target_ms=20, workflows=n + n // 10, bytes=size))


# ---- the scheduler with and without notifications -------------------------------------

class SlowServers:
    """A webhook and an SMTP server that take `delay` seconds to answer anything."""

    def __init__(self, delay):
        self.delay, self.posts, self.mails = delay, 0, 0
        servers = self

        class Hook(http.server.BaseHTTPRequestHandler):
            def do_POST(self):
                self.rfile.read(int(self.headers["Content-Length"]))
                time.sleep(servers.delay)
                servers.posts += 1
                self.send_response(200)
                self.send_header("Content-Length", "0")
                self.end_headers()

            def log_message(self, *args):
                pass

        self.httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Hook)
        self.httpd.daemon_threads = True
        self.url = "http://127.0.0.1:%d/" % self.httpd.server_address[1]
        threading.Thread(target=self.httpd.serve_forever, daemon=True).start()
        self.smtp = socket.socket()
        self.smtp.bind(("127.0.0.1", 0))
        self.smtp.listen(16)
        self.smtp_port = self.smtp.getsockname()[1]
        threading.Thread(target=self._smtp, daemon=True).start()

    def _smtp(self):
        while True:
            try:
                conn, _ = self.smtp.accept()
            except OSError:
                return
            threading.Thread(target=self._session, args=(conn,), daemon=True).start()

    def _session(self, conn):
        with conn, conn.makefile("rb") as f:
            time.sleep(self.delay)
            conn.sendall(b"220 slow\r\n")
            while True:
                line = f.readline()
                if not line:
                    return
                verb = line[:4].upper()
                if verb == b"DATA":
                    conn.sendall(b"354 go\r\n")
                    while f.readline() not in (b".\r\n", b""):
                        pass
                    self.mails += 1
                    conn.sendall(b"250 ok\r\n")
                elif verb == b"QUIT":
                    conn.sendall(b"221 bye\r\n")
                    return
                else:
                    conn.sendall(b"250 ok\r\n")

    def close(self):
        self.httpd.shutdown()
        self.smtp.close()


def bench_refill(t, n):
    check(*t.request("POST", "/ensembles", {"name": "chain", "max_planning": "1"}), "create")
    check(*t.request("POST", "/ensembles/chain", {"state": "PAUSED"}), "pause")
    for i in range(n):
        check(*t.request("POST", "/ensembles/chain/workflows", {
            "name": "f%04d" % i, "basedir": "/tmp", "plan_command": '"/bin/false"'}), "submit")
    check(*t.request("POST", "/ensembles/chain", {"state": "ACTIVE"}), "activate")
    deadline = time.monotonic() + 120
    while True:
        status, rows = t.request("GET", "/ensembles/chain/workflows")
        if all(w["state"] == "PLAN_FAILED" for w in rows):
            break
        if time.monotonic() > deadline:
            raise SystemExit("the chain did not finish")
        time.sleep(0.2)
    events, after = [], 0
    while True:
        status, page = t.request("GET", "/ensembles/chain/events?after=%d&limit=1000" % after)
        events += page
        if len(page) < 1000:
            break
        after = page[-1]["id"]
    ends = {e["workflow"]: e["time"] for e in events if e["new_state"] == "PLAN_FAILED"}
    starts = {e["workflow"]: e["time"] for e in events if e["new_state"] == "PLANNING"}
    names = sorted(ends)
    gaps = [starts[b] - ends[a] for a, b in zip(names, names[1:])]
    return summary(gaps)


def bench_scheduler(n, delay):
    out = {}
    with harness.daemon(extra_config="EM_INTERVAL = 5\n") as t:
        out["without_notifications"] = bench_refill(t, n)
    slow = SlowServers(delay)
    try:
        extra = ("EM_INTERVAL = 5\nNOTIFY_WEBHOOK = %r\nNOTIFY_EMAIL = 'ops@example.org'\n"
                 "SMTP_HOST = '127.0.0.1'\nSMTP_PORT = %d\n" % (slow.url, slow.smtp_port))
        with harness.daemon(extra_config=extra) as t:
            with_ = bench_refill(t, n)
            status, text = t.request("GET", "/metrics")
            pending = [line for line in text.splitlines()
                       if line.startswith("pegasus_em_notifications")]
        with_.update(notifications_queued=2 * n, delivered_during_run={
            "webhook": slow.posts, "email": slow.mails}, outbox_at_end=pending,
            server_delay_s=delay)
        out["with_notifications"] = with_
    finally:
        slow.close()
    a, b = out["without_notifications"], out["with_notifications"]
    out["difference_median_ms"] = round(b["median_ms"] - a["median_ms"], 2)
    return out


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--quick", action="store_true", help="fewer samples")
    args = parser.parse_args()
    n = 10000
    samples = 20 if args.quick else 50
    result = {}
    with harness.daemon() as t:
        result["why"], result["metrics"] = bench_why_and_metrics(t, n, samples)
    result["scheduler"] = bench_scheduler(50 if args.quick else 200, 0.5)
    print(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
