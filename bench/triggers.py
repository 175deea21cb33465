#!/usr/bin/env python3
"""Trigger benchmarks against a real `pegasus-em server`.

Prints one JSON object:
  idle          1,000 cron triggers (interval 1 h) after their firing at creation:
                daemon CPU over 10 s in % of one core (target < 1 %).
  file_scans    1,000 file-pattern triggers (interval 10 s) over empty folders, i.e.
                100 scans a second: daemon CPU over 10 s, and per scan.
  firing_lag    20 cron triggers (interval 1 s) for 10 s beside the 1,000 idle ones:
                each workflow's creation time minus its due time (trigger created +
                k intervals), p50 / p99 / max (target p99 <= 100 ms).
  files         10,000 files move into the inbox of a file-pattern trigger (interval
                5 s) just after one of its scans: from the due time of the next firing
                to the creation of the last of its workflows (target <= 1 s), how many
                workflows they were split into, and when the last original was gone.
All times are the daemon's own (workflow `created`, the ledger's `updated`).
Run as root (it creates a throwaway user for the daemon): python3 bench/triggers.py
"""

import argparse
import json
import os
import shlex
import sqlite3
import statistics
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import harness  # noqa: E402


def ms(seconds):
    return round(seconds * 1000.0, 1)


def pct(values, q):
    values = sorted(values)
    return values[min(len(values) - 1, int(len(values) * q))]


def paused_ensemble(target, name):
    assert target.request("POST", "/ensembles", {"name": name})[0] == 201
    assert target.request("POST", "/ensembles/" + name, {"state": "PAUSED"})[0] == 200


def create(target, ensemble, kind, name, interval, script, patterns=None):
    form = {"trigger": name, "workflow_script": script, "workflow_args": "[]",
            "interval": interval}
    if patterns:
        form["file_patterns"] = json.dumps(patterns)
    status, body = target.request("POST", "/ensembles/%s/triggers/%s" % (ensemble, kind), form)
    if status != 201:
        raise SystemExit("cannot create trigger %s: %s %s" % (name, status, body))


def triggers(target, ensemble):
    return target.request("GET", "/ensembles/%s/triggers" % ensemble)[1]


def wait_for(predicate, timeout, what):
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            raise SystemExit("timed out waiting for " + what)
        time.sleep(0.05)


def cpu_percent(target, seconds):
    cpu0, t0 = target.cpu_seconds(), time.monotonic()
    time.sleep(seconds)
    return round(100.0 * (target.cpu_seconds() - cpu0) / (time.monotonic() - t0), 2)


def user_dir(target, rel):
    path = os.path.join(target.home, rel)
    os.makedirs(path, exist_ok=True)
    os.chown(path, target.pw.pw_uid, target.pw.pw_gid)
    return path


def user_file(target, path, text="", mode=0o644):
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, mode)
    try:
        os.write(fd, text.encode())
        os.fchown(fd, target.pw.pw_uid, target.pw.pw_gid)
    finally:
        os.close(fd)
    return path


def idle(target, script, n, seconds):
    """CPU of n cron triggers waiting for their next firing, an hour away."""
    paused_ensemble(target, "idle")
    for i in range(n):
        create(target, "idle", "cron", "cron%04d" % i, "1h", script)
    wait_for(lambda: all(t["state"] == "RUNNING" for t in triggers(target, "idle")), 120,
             "the idle triggers' first firings")
    return cpu_percent(target, seconds)


def scans(target, script, n, seconds, interval):
    """CPU of n file-pattern triggers scanning empty folders every `interval` s."""
    paused_ensemble(target, "scan")
    for i in range(n):
        folder = user_dir(target, "empty/%04d" % i)
        create(target, "scan", "file_pattern", "f%04d" % i, "%ds" % interval, script,
               [folder + "/*.dat"])
    wait_for(lambda: all(t["state"] == "RUNNING" for t in triggers(target, "scan")), 120,
             "the file triggers' first firings")
    cpu = cpu_percent(target, seconds)
    for i in range(n):
        target.request("DELETE", "/ensembles/scan/triggers/f%04d?purge=1" % i)
    per_second = float(n) / interval
    return {"file_triggers": n, "interval_s": interval, "scans_per_s": per_second,
            "cpu_percent": cpu, "cpu_ms_per_scan": round(10.0 * cpu / per_second, 3)}


def firing_lag(target, script, n, seconds):
    paused_ensemble(target, "lag")
    for i in range(n):
        create(target, "lag", "cron", "t%02d" % i, "1s", script)
    time.sleep(seconds)
    for i in range(n):
        target.request("DELETE", "/ensembles/lag/triggers/t%02d" % i)
    created = {t["name"]: t["created"] for t in triggers(target, "lag")}
    lags = []
    for w in target.request("GET", "/ensembles/lag/workflows")[1]:
        start = created[w["name"].split("_")[0]]
        lags.append(w["created"] - (start + round(w["created"] - start)))
    return {"firings": len(lags), "p50_ms": ms(statistics.median(lags)),
            "p99_ms": ms(pct(lags, 0.99)), "max_ms": ms(max(lags))}


def ledger(target, what, where):
    conn = sqlite3.connect(target.db_path)
    try:
        return conn.execute("SELECT %s FROM trigger_files WHERE %s" % (what, where)).fetchone()[0]
    finally:
        conn.close()


def files(target, script, n, interval):
    """n files moved into the inbox just after a scan: all are found by the next one."""
    paused_ensemble(target, "files")
    inbox = user_dir(target, "inbox")
    staging = user_dir(target, "staging")
    create(target, "files", "file_pattern", "f", "%ds" % interval, script, [inbox + "/*.dat"])
    names = ["input-file-%05d.dat" % i for i in range(n)]
    for name in names:
        user_file(target, os.path.join(staging, name), name + "\n")
    scanned = triggers(target, "files")[0]["next_fire"]
    wait_for(lambda: triggers(target, "files")[0]["next_fire"] != scanned, interval + 5,
             "a scan of the empty inbox")
    due = triggers(target, "files")[0]["next_fire"]
    t0 = time.time()
    for name in names:
        os.rename(os.path.join(staging, name), os.path.join(inbox, name))
    arrived = time.time() - t0
    wait_for(lambda: triggers(target, "files")[0]["fire_count"] >= 1, interval + 30,
             "the firing that finds the files")
    ws = target.request("GET", "/ensembles/files/workflows")[1]
    handed = []
    for w in ws:
        detail = target.request("GET", "/ensembles/files/workflows/" + w["name"])[1]
        words = shlex.split(detail["plan_command"])
        handed.extend(words[words.index("--inputs") + 1:])
    wait_for(lambda: ledger(target, "count(*)", "state = 'done'") == n, 30,
             "every file to be done")
    assert os.listdir(inbox) == ["processed"]
    moved = ledger(target, "max(updated)", "state = 'done'")
    return {"files": n, "arrived_within_s": round(arrived, 2), "interval_s": interval,
            "workflows": len(ws), "handed_out": len(handed), "distinct": len(set(handed)),
            "submitted_after_due_s": round(max(w["created"] for w in ws) - due, 3),
            "originals_removed_after_due_s": round(moved - due, 3)}


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--quick", action="store_true", help="fewer triggers, shorter runs")
    args = parser.parse_args(argv)
    n_idle, seconds, n_files = (100, 3, 1000) if args.quick else (1000, 10, 10000)
    with harness.daemon() as target:
        script = user_file(target, os.path.join(user_dir(target, "wf"), "plan.sh"),
                           "#!/bin/sh\n", 0o755)
        results = {
            "idle": {"cron_triggers": n_idle, "interval": "1h",
                     "cpu_percent": idle(target, script, n_idle, seconds)},
            "file_scans": scans(target, script, n_idle, seconds, 10),
            "firing_lag": firing_lag(target, script, 20, seconds),
            "files": files(target, script, n_files, 5),
            "cpu_count": os.cpu_count(),
        }
    print(json.dumps(results, indent=2))


if __name__ == "__main__":
    main()
