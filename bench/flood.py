#!/usr/bin/env python3
"""A legitimate client during a flood of idle connections, against a real
`pegasus-em server` and a real pegasus-service (HTTPS, PAM, process switching).

An attacker process opens FLOOD idle connections (without waiting for the
server to accept them) and holds them; with --reconnect it also opens a new
one for each the server closes, so FLOOD stay in flight all along.  Meanwhile
the owner's client sends authenticated `GET /ensembles` requests, a new
connection each (as the 5.x client does), and submits a workflow.  Prints one
JSON object; for each server:
  baseline_ms        latency with no flood (p50, p99, max)
  flood_ms           latency during the flood (p50, p99, max)
  failed             requests that got no answer within 10 s
  submit_to_planning_s  a workflow submitted during the flood: READY -> PLANNING
  cpu_percent        the server's CPU during the flood
  shed               attacker connections the server closed
Target: every legitimate request answered within 1 s; the workflow planned.
Run as root (it creates a throwaway user): python3 bench/flood.py
"""

import argparse
import http.client
import json
import multiprocessing
import os
import selectors
import socket
import ssl
import sys
import tempfile
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import harness  # noqa: E402
import service as service_bench  # noqa: E402

FLOOD = 2000


def _attack(host, port, count, reconnect, ready, stop, shed):
    """The attacker: `count` idle connections, reopened when closed if `reconnect`."""
    sel = selectors.DefaultSelector()

    def open_one():
        s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        s.setblocking(False)
        s.connect_ex((host, port))
        sel.register(s, selectors.EVENT_READ)

    for _ in range(count):
        open_one()
    ready.set()
    while not stop.is_set():
        for key, _ in sel.select(0.05):
            try:
                closed = key.fileobj.recv(1) == b""
            except BlockingIOError:
                continue
            except OSError:
                closed = True
            if closed:
                sel.unregister(key.fileobj)
                key.fileobj.close()
                shed.value += 1
                if reconnect:
                    open_one()


class Attacker:
    def __init__(self, host, port, reconnect, count=FLOOD):
        self.stop = multiprocessing.Event()
        ready = multiprocessing.Event()
        self.shed = multiprocessing.Value("i", 0)
        self.proc = multiprocessing.Process(target=_attack, args=(
            host, port, count, reconnect, ready, self.stop, self.shed), daemon=True)
        self.proc.start()
        ready.wait(60)

    def release(self):
        self.stop.set()
        self.proc.join(30)
        return self.shed.value


def percentiles(samples):
    ordered = sorted(samples) or [float("nan")]

    def at(q):
        return round(1000 * ordered[min(len(ordered) - 1, int(q * len(ordered)))], 1)
    return {"p50": at(0.5), "p99": at(0.99), "max": round(1000 * ordered[-1], 1)}


def latencies(request, seconds):
    """Latency of `request()` back to back for `seconds`; (samples, failures)."""
    out, failed = [], 0
    end = time.monotonic() + seconds
    while time.monotonic() < end:
        t0 = time.monotonic()
        try:
            status = request()
        except OSError:
            status = None
        if status == 200:
            out.append(time.monotonic() - t0)
        else:
            failed += 1
        time.sleep(0.02)
    return out, failed


def cpu_seconds(pid):
    with open("/proc/%d/stat" % pid) as f:
        fields = f.read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def planning_delay(target, ensemble, name):
    """Seconds from the workflow's READY event to its PLANNING event."""
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        times = {e["new_state"]: e["time"] for e in target.events(ensemble)
                 if e.get("workflow") == name}
        if "READY" in times and "PLANNING" in times:
            return round(times["PLANNING"] - times["READY"], 3)
        time.sleep(0.05)
    return None


def measure(server_pid, host, port, request, submit, reconnect, seconds):
    """Baseline, then the same during a flood with a workflow submitted in it."""
    request()  # warm up (pegasus-service starts the user's worker process)
    base, _ = latencies(request, 2)
    attacker = Attacker(host, port, reconnect)
    try:
        time.sleep(1)  # the first wave of connections arrives
        cpu0, t0 = cpu_seconds(server_pid), time.monotonic()
        during, failed = latencies(request, seconds)
        cpu = (cpu_seconds(server_pid) - cpu0) / (time.monotonic() - t0)
        planned = submit()
    finally:
        shed = attacker.release()
    return {"baseline_ms": percentiles(base), "flood_ms": percentiles(during),
            "requests": len(during), "failed": failed, "submit_to_planning_s": planned,
            "cpu_percent": round(100 * cpu, 1), "shed": shed}


def status_of(conn, method, path, auth, body=None):
    """One request on a new connection (closed after it); -> the status."""
    headers = {"Authorization": auth, "Accept": "application/json"}
    if body:
        headers["Content-Type"] = "application/x-www-form-urlencoded"
    try:
        conn.request(method, path, body, headers)
        resp = conn.getresponse()
        resp.read()
        return resp.status
    finally:
        conn.close()


def daemon_figures(target, reconnect, seconds):
    def get():
        conn = http.client.HTTPConnection(target.host, target.port, timeout=10)
        return status_of(conn, "GET", "/ensembles", target.auth)

    def submit():
        name = "d%d" % int(time.time() * 1000)
        status, body = target.request("POST", "/ensembles/flood/workflows", {
            "name": name, "basedir": target.example, "plan_command": target.example +
            "/plan.sh -Dpegasus.sim.run.seconds=0.2"})
        assert status == 201, body
        return planning_delay(target, "flood", name)

    return measure(target.proc.pid, target.host, target.port, get, submit, reconnect, seconds)


def service_figures(target, service, auth, reconnect, seconds):
    ctx = ssl.create_default_context(cafile=service.cafile)

    def call(method, path, body=None):
        conn = http.client.HTTPSConnection(service.host, service.port, context=ctx,
                                           timeout=10)
        return status_of(conn, method, path, auth, body)

    def submit():
        name = "s%d" % int(time.time() * 1000)
        body = "name=%s&basedir=%s&plan_command=%s/plan.sh" % (name, target.example,
                                                             target.example)
        assert call("POST", "/ensembles/flood/workflows", body) == 201
        return planning_delay(target, "flood", name)

    return measure(service.proc.pid, service.host, service.port,
                   lambda: call("GET", "/ensembles"), submit, reconnect, seconds)


def start_service(target, workdir):
    cert, key = service_bench.make_certificate(workdir)
    return service_bench.Service(target.python, target.code, "CERTIFICATE = %r\n"
                                 "PRIVATE_KEY = %r\n" % (cert, key), workdir)


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--seconds", type=float, default=5, help="flood duration per measure")
    ap.add_argument("--reconnect", action="store_true",
                    help="the attacker reopens every connection the server closes")
    args = ap.parse_args()
    out = {"flood": FLOOD, "reconnect": args.reconnect}
    with harness.daemon("EM_INTERVAL = 0.5\n") as target:
        auth = target.pam_auth()
        target.example = target.copy_example(os.path.join(target.home, "example"))
        assert target.request("POST", "/ensembles", {"name": "flood", "max_planning": "10",
                                                     "max_running": "10"})[0] == 201
        out["daemon"] = daemon_figures(target, args.reconnect, args.seconds)
        with tempfile.TemporaryDirectory(prefix="pemflood-") as workdir:
            service = start_service(target, workdir)
            try:
                out["service"] = service_figures(target, service, auth, args.reconnect,
                                                 args.seconds)
            finally:
                service.stop()
    print(json.dumps(out, indent=2))


if __name__ == "__main__":
    main()
