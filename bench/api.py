#!/usr/bin/env python3
"""REST API throughput and latency against a real `pegasus-em server`.

Prints one JSON object:
  submissions_per_s_new_connection  4 client processes, a fresh TCP connection per
                                    request (as the 5.x client does)
  submissions_per_s_keepalive       4 client processes, one keep-alive connection each
  list_10000_median_ms / p90        GET /ensembles/E/workflows of a 10,000-workflow ensemble
  rss_mb_with_10000                 daemon resident memory afterwards
Run as root (it creates a throwaway user for the daemon): python3 bench/api.py
"""

import argparse
import http.client
import json
import multiprocessing
import os
import statistics
import sys
import time
import urllib.parse

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import harness  # noqa: E402

CLIENTS = 4


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


def submissions_per_s(target, ensemble, keepalive, per_client):
    start_at = time.time() + 0.5
    jobs = [(target.host, target.port, target.auth, ensemble,
             "%s%d_" % ("k" if keepalive else "n", c), per_client, keepalive, start_at)
            for c in range(CLIENTS)]
    with multiprocessing.Pool(CLIENTS) as pool:
        t0 = time.time()
        durations = pool.map(_client, jobs)
        wall = max(durations)
    del t0
    return CLIENTS * per_client / wall


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
    ap.add_argument("--workflows", type=int, default=10000)
    args = ap.parse_args()
    out = {}
    with harness.daemon() as target:
        for ens in ("throughput", "big"):
            request(target, "POST", "/ensembles", {"name": ens})
        out["submissions_per_s_new_connection"] = round(
            submissions_per_s(target, "throughput", False, args.per_client))
        out["submissions_per_s_keepalive"] = round(
            submissions_per_s(target, "throughput", True, args.per_client))
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
    print(json.dumps(out, indent=2))


if __name__ == "__main__":
    main()
