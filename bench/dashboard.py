#!/usr/bin/env python3
"""Dashboard rendering time, server side (JSON on stdout).

Builds, in a temporary home, a master DB of 10,000 root workflows (successful,
failed, running with a live dagman.out, never started) and a STAMPEDE DB of
one workflow with 20,000 jobs (each with its jobstates, an invocation and a
task; some retried, some failed, some running), then times
`Dashboard.handle` (routing, queries, HTML or JSON, no socket) for the pages
a user opens: the workflow list and the 20,000-job workflow.
Target: each page <= 200 ms.

    python3 bench/dashboard.py [--workflows 10000] [--jobs 20000] [--runs 15]
"""

import argparse
import json
import os
import shutil
import sqlite3
import statistics
import sys
import tempfile
import time
import uuid

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, REPO)
sys.path.insert(0, os.path.join(REPO, "share", "pegasus-sim", "lib"))

from pegasus_em.dashboard import dashboard  # noqa: E402
from pegasus_sim import masterdb as sim_master  # noqa: E402
from pegasus_sim import stampede as sim_stampede  # noqa: E402

TARGET_MS = 200.0
T0 = time.time() - 30 * 86400


def build_master(home, n, big_db):
    """n root workflows: 70% successful, 18% failed, 2% running, 10% never started."""
    path = os.path.join(home, ".pegasus", "workflow.db")
    conn = sim_master.connect(path)
    conn.execute("BEGIN")
    rows, states = [], []
    for i in range(1, n + 1):
        ts = T0 + i * 60
        sdir = os.path.join(home, "submit", "run%05d" % i)
        url = "sqlite:///%s" % (big_db if i == 1 else os.path.join(sdir, "w-0.stampede.db"))
        rows.append((i, str(uuid.uuid4()), "workflow-%d" % (i % 97), "5.0.4", "/x/workflow.yml", "w-0.dag", ts,
                     "submit.example.org", sdir, None, "bench", None, "5.0.5", url, 0))
        kind = i % 50
        if kind < 5:            # never started
            continue
        states.append((i, "WORKFLOW_STARTED", ts + 5, 0, None, None))
        if kind == 5:           # running: a dagman.out whose DAGMan (this process) is alive
            make_running_dir(sdir)
            continue
        states.append((i, "WORKFLOW_TERMINATED", ts + 50, 0, 1 if kind < 14 else 0, None))
    conn.executemany("INSERT INTO master_workflow VALUES (%s)" % ",".join("?" * 15), rows)
    conn.executemany("INSERT INTO master_workflowstate VALUES (?, ?, ?, ?, ?, ?)", states)
    conn.execute("COMMIT")
    conn.close()


def make_running_dir(sdir):
    os.makedirs(sdir, exist_ok=True)
    with open(os.path.join(sdir, "w-0.dag.dagman.out"), "w") as f:
        f.write("01/01/24 00:00:00 ** condor_scheduniv_exec.7.0 (CONDOR_DAGMAN) STARTING UP\n"
                "01/01/24 00:00:00 ** PID = %d\n" % os.getpid())


def build_stampede(path, jobs):
    st = sim_stampede.Stampede(path)
    st._connect()
    conn = st.conn
    conn.execute("BEGIN")
    wf_uuid = str(uuid.uuid4())
    conn.execute("INSERT INTO workflow (wf_id, wf_uuid, dag_file_name, timestamp, submit_hostname, submit_dir, "
                 "user, planner_version, dax_label, root_wf_id) VALUES (1, ?, 'big-0.dag', ?, 'h', ?, 'bench', "
                 "'5.0.5', 'big', 1)", (wf_uuid, T0, os.path.dirname(path)))
    conn.execute("INSERT INTO workflowstate VALUES (1, 'WORKFLOW_STARTED', ?, 0, NULL, NULL)", (T0 + 5,))
    conn.execute("INSERT INTO host VALUES (1, 1, 'condorpool', 'node1', '10.0.0.1', 'linux', 1048576)")
    job_rows, task_rows, ji_rows, js_rows, inv_rows = [], [], [], [], []
    ji_id = 0
    xforms = ("sim::preprocess", "sim::findrange", "sim::analyze", "sim::merge")
    for j in range(1, jobs + 1):
        job_rows.append((j, 1, "job_ID%07d" % j, "00/00/job_ID%07d.sub" % j, "compute", 0, 1, "/bin/true",
                         "-i a -o b", 1))
        task_rows.append((j, 1, j, "ID%07d" % j, xforms[j % 4], "-i a -o b", "compute"))  # task_id, wf_id, job_id
        tries = 2 if j % 25 == 0 else 1
        for t in range(tries):
            ji_id += 1
            start = T0 + 10 + j * 0.5 + t
            if j > jobs - 200:
                code = None            # still running
            elif t < tries - 1 or j % 101 == 0:
                code = 1               # failed try
            else:
                code = 0
            ji_rows.append((ji_id, j, 1, ji_id, "%d.0" % ji_id, "condorpool", "bench", "/scratch", None, None,
                            2.5, None, "00/00/job.out.%03d" % t, "stdout of job %d\n" % j, "00/00/job.err.%03d" % t,
                            "" if code != 1 else "error\n", None, 1, code))
            names = ["SUBMIT", "EXECUTE"]
            if code is not None:
                names += ["JOB_TERMINATED", "JOB_SUCCESS" if code == 0 else "JOB_FAILURE", "POST_SCRIPT_STARTED",
                          "POST_SCRIPT_TERMINATED", "POST_SCRIPT_SUCCESS" if code == 0 else "POST_SCRIPT_FAILURE"]
                inv_rows.append((ji_id, 1, ji_id, 1, start + 1, 2.0, 1.6, 0 if code == 0 else 2, xforms[j % 4],
                                 "/bin/true", "-i a -o b", "ID%07d" % j, 4096, 0.8))
            for k, name in enumerate(names):
                js_rows.append((ji_id, name, start + k * 0.5, k + 1, None))
    conn.executemany("INSERT INTO job VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)", job_rows)
    conn.executemany("INSERT INTO task VALUES (?, ?, ?, ?, ?, ?, ?)", task_rows)
    conn.executemany("INSERT INTO job_instance VALUES (%s)" % ",".join("?" * 19), ji_rows)
    conn.executemany("INSERT INTO jobstate VALUES (?, ?, ?, ?, ?)", js_rows)
    conn.executemany("INSERT INTO invocation VALUES (%s)" % ",".join("?" * 14), inv_rows)
    conn.execute("COMMIT")
    st.close()
    return wf_uuid, len(ji_rows), len(js_rows)


def fix_big_uuid(home, wf_uuid):
    conn = sqlite3.connect(os.path.join(home, ".pegasus", "workflow.db"))
    conn.execute("UPDATE master_workflow SET wf_uuid = ? WHERE wf_id = 1", (wf_uuid,))
    conn.execute("DELETE FROM master_workflowstate WHERE wf_id = 1")
    conn.execute("INSERT INTO master_workflowstate VALUES (1, 'WORKFLOW_STARTED', ?, 0, NULL, NULL)", (T0 + 5,))
    conn.commit()
    conn.close()
    make_running_dir(os.path.join(home, "submit", "run00001"))


def measure(dash, path, query="", json_twin=False, runs=15):
    headers = {"accept": "application/json"} if json_twin else {"accept": "text/html"}
    t0 = time.perf_counter()
    first = dash.handle("GET", path, query, headers, b"", "bench", "bench", "", "http://localhost")
    cold = (time.perf_counter() - t0) * 1000
    assert first.status == 200, (path, first.status, first.body[:500])
    times = []
    for _ in range(runs):
        t0 = time.perf_counter()
        r = dash.handle("GET", path, query, headers, b"", "bench", "bench", "", "http://localhost")
        times.append((time.perf_counter() - t0) * 1000)
        assert r.status == 200
    times.sort()
    return {"page": path + ("?" + query if query else ""), "format": "json" if json_twin else "html",
            "bytes": len(r.body), "cold_ms": round(cold, 1), "median_ms": round(statistics.median(times), 1),
            "p90_ms": round(times[int(len(times) * 0.9) - 1], 1), "max_ms": round(times[-1], 1),
            "ok": statistics.median(times) <= TARGET_MS}


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--workflows", type=int, default=10000)
    p.add_argument("--jobs", type=int, default=20000)
    p.add_argument("--runs", type=int, default=15)
    args = p.parse_args(argv)
    base = tempfile.mkdtemp(prefix="dashbench-")
    try:
        home = os.path.join(base, "home")
        os.makedirs(os.path.join(home, ".pegasus"))
        big = os.path.join(home, "submit", "run00001", "big-0.stampede.db")
        os.makedirs(os.path.dirname(big))
        t0 = time.perf_counter()
        build_master(home, args.workflows, big)
        wf_uuid, instances, jobstates = build_stampede(big, args.jobs)
        fix_big_uuid(home, wf_uuid)
        build_s = time.perf_counter() - t0
        dash = dashboard.Dashboard(home_of=lambda user: home, file_owner=lambda user: None)
        pages = [("/", "", False), ("/", "limit=10000", False), ("/", "", True),
                 ("/", "q=workflow-1&window=year", False), ("/r/1", "", False), ("/r/1", "", True),
                 ("/r/1", "tab=successful&offset=15000", False), ("/r/1", "tab=failed", False),
                 ("/r/1/w/1/statistics", "", False), ("/r/1/w/1/charts", "", False),
                 ("/r/1/w/1/j/20000", "", False),
                 # Pegasus 5.x's feeds (the first pages of its DataTables)
                 ("/", "draw=1&start=0&length=25", True),
                 ("/r/1/w/1/j/successful/", "draw=1&start=0&length=25", True),
                 ("/r/1/w/1/j/failed/", "draw=1&start=0&length=25", True)]
        results = [measure(dash, path, q, j, args.runs) for path, q, j in pages]
        out = {"benchmark": "dashboard", "target_ms": TARGET_MS, "workflows": args.workflows,
               "jobs": args.jobs, "job_instances": instances, "jobstates": jobstates,
               "build_seconds": round(build_s, 1), "python": sys.version.split()[0],
               "sqlite": sqlite3.sqlite_version, "results": results,
               "ok": all(r["ok"] for r in results)}
        print(json.dumps(out, indent=2))
        return 0 if out["ok"] else 1
    finally:
        shutil.rmtree(base, ignore_errors=True)


if __name__ == "__main__":
    sys.exit(main())
