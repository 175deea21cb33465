#!/usr/bin/env python3
"""A year of operation compressed into minutes, on the simulator.

E ensembles, each with a cron trigger (the "hourly" one, every --cron seconds) and a
file-pattern trigger (the "daily" one, every --files seconds, fed a file before each
firing); the cron workflows of one ensemble in ten fail their first run and are rerun;
the daemon is restarted --restarts times, by turns with SIGTERM and SIGKILL; retention
is on, its window (--window seconds) a quarter of the run, as 90 days are of a year.
Whatever retention settings the daemon has (config.SETTINGS, read at run time) are
given that window; without any, the run says so and goes on.

Prints one JSON object: at start, middle and end the daemon's RSS (taken just before a
restart, after it ran a while), em.db (+ WAL) size, the median submit latency (a new
connection per request, as the 5.x client, into a paused ensemble) and the median
`workflows` list latency of a trigger's ensemble; their changes from start to end
(goal: within 20 %, the database bounded by the window); and what was lost: files not
handed out, or handed out twice, and workflows that did not end SUCCESSFUL.
Run as root (it creates a throwaway user for the daemon): python3 bench/soak.py
"""

import argparse
import json
import os
import statistics
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import harness  # noqa: E402

sys.path.insert(0, harness.REPO)
from pegasus_em import config  # noqa: E402

BUSY = ("READY", "PLANNING", "QUEUED", "RUNNING")
DAY = 86400.0


def check(status, body, what):
    if status not in (200, 201, 202):
        raise SystemExit("%s failed: %s %s" % (what, status, body))
    return body


def retention_config(window_s):
    """service.py lines giving every retention setting this checkout has the window."""
    names = [s.name for s in config.SETTINGS if s.name.startswith("RETAIN_")]
    return names, "".join("%s = %r\n" % (n, window_s / DAY) for n in names)


# ---- the setup ----------------------------------------------------------------------

def setup(t, ensembles, cron_s, files_s, run_s):
    """Ensembles e00.. with their two triggers, an inbox each; -> {ensemble: inbox}."""
    inboxes = {}
    for i in range(ensembles):
        ens = "e%02d" % i
        check(*t.request("POST", "/ensembles", {"name": ens, "max_planning": "2",
                                                "max_running": "4"}), "create " + ens)
        basedir = t.copy_example(os.path.join(t.home, "wf", ens))
        knobs = ["-Dpegasus.sim.run.seconds=%g" % run_s]
        failing = knobs + (["-Dpegasus.sim.run.fail.attempts=1"] if i % 10 == 0 else [])
        add_trigger(t, ens, "cron", "hourly", cron_s, basedir, failing)
        inbox = os.path.join(t.home, "inbox", ens)
        t.run_as_user(["mkdir", "-p", inbox])
        add_trigger(t, ens, "file_pattern", "daily", files_s, basedir, knobs,
                    patterns=[os.path.join(inbox, "*.dat")])
        inboxes[ens] = inbox
    check(*t.request("POST", "/ensembles", {"name": "probe"}), "create probe")
    check(*t.request("POST", "/ensembles/probe", {"state": "PAUSED"}), "pause probe")
    return inboxes


def add_trigger(t, ens, kind, name, every_s, basedir, args, patterns=None):
    form = {"trigger": name, "workflow_script": os.path.join(basedir, "plan.sh"),
            "workflow_args": json.dumps(args), "interval": "%ds" % every_s,
            "basedir": basedir}
    if patterns:
        form["file_patterns"] = json.dumps(patterns)
    check(*t.request("POST", "/ensembles/%s/triggers/%s" % (ens, kind), form),
          "trigger %s.%s" % (ens, name))


# ---- what a sample measures ---------------------------------------------------------

def sample(t, label, probes):
    """RSS, database size, submit and list latency, now."""
    submit, listing = [], []
    for k in range(probes):
        t0 = time.perf_counter()
        check(*t.request("POST", "/ensembles/probe/workflows", {
            "name": "%s_%d" % (label, k), "basedir": "/tmp", "plan_command": "true"}),
            "probe submission")
        submit.append(time.perf_counter() - t0)
        t0 = time.perf_counter()
        check(*t.request("GET", "/ensembles/e01/workflows"), "list")
        listing.append(time.perf_counter() - t0)
    size = sum(os.path.getsize(p) for p in (t.db_path, t.db_path + "-wal")
               if os.path.exists(p))
    return {"rss_mb": round(t.rss_mb(), 1), "db_mb": round(size / 1e6, 2),
            "submit_ms": round(statistics.median(submit) * 1000, 2),
            "list_ms": round(statistics.median(listing) * 1000, 2),
            "workflows_kept": sum(sum(e["counts"].values()) for e in check(
                *t.request("GET", "/ensembles?detail=1"), "ensembles") if e["name"] != "probe")}


# ---- the year -------------------------------------------------------------------------

def operate(t, inboxes, seconds, restarts, files_s, probes):
    """Feed the file triggers, rerun failures, restart the daemon; -> (samples, files)."""
    samples, dropped, n = [], {e: 0 for e in inboxes}, 0
    start = time.monotonic()
    next_file = next_rerun = start
    step = seconds / (restarts + 1)
    for r in range(restarts + 1):
        until = start + step * (r + 1)
        while time.monotonic() < until:
            now = time.monotonic()
            if now >= next_file:
                n += 1
                for ens, inbox in inboxes.items():
                    drop_file(t, inbox, "f%05d.dat" % n)
                    dropped[ens] += 1
                next_file = now + files_s
            if now >= next_rerun:
                rerun_failed(t, inboxes)
                next_rerun = now + 5
            time.sleep(0.5)
        samples.append(dict(sample(t, "s%02d" % r, probes), at_s=round(until - start, 1)))
        if r < restarts:
            t.restart(crash=r % 2 == 1)
    return samples, dropped


def drop_file(t, inbox, name):
    """A file written elsewhere and moved in, as a finished transfer arrives."""
    tmp = os.path.join(os.path.dirname(inbox), "." + os.path.basename(inbox) + name)
    t.run_as_user(["sh", "-c", 'echo data >"$1" && mv "$1" "$2"', "sh", tmp,
                   os.path.join(inbox, name)])


def rerun_failed(t, ensembles):
    for ens in ensembles:
        for w in check(*t.request("GET", "/ensembles/%s/workflows" % ens), "list"):
            if w["state"] in ("FAILED", "RUN_FAILED"):
                t.request("POST", "/ensembles/%s/workflows/%s" % (ens, w["name"]),
                          {"state": "QUEUED"})


def wind_down(t, inboxes, files_s, timeout):
    """Let the file triggers take the last files, stop the triggers, rerun what failed,
    wait until nothing is busy; -> states."""
    deadline = time.monotonic() + 3 * files_s
    while any(f.endswith(".dat") for i in inboxes.values() for f in os.listdir(i)) and \
            time.monotonic() < deadline:
        time.sleep(1)
    for ens in inboxes:
        for name in ("hourly", "daily"):
            t.request("DELETE", "/ensembles/%s/triggers/%s" % (ens, name))
    deadline = time.monotonic() + timeout
    while True:
        rerun_failed(t, inboxes)
        states = {}
        for ens in inboxes:
            for w in check(*t.request("GET", "/ensembles/%s/workflows" % ens), "list"):
                states[w["state"]] = states.get(w["state"], 0) + 1
        busy = sum(states.get(s, 0) for s in BUSY + ("FAILED", "RUN_FAILED"))
        if not busy or time.monotonic() > deadline:
            return states
        time.sleep(1)


def lost(inboxes, dropped):
    """Files still waiting where they arrived, and files handed out more than once."""
    waiting = sum(len([f for f in os.listdir(i) if f.endswith(".dat")]) for i in inboxes.values())
    processed = 0
    for inbox in inboxes.values():
        folder = os.path.join(inbox, "processed")
        processed += len(os.listdir(folder)) if os.path.isdir(folder) else 0
    return {"files_dropped": sum(dropped.values()), "files_still_waiting": waiting,
            "files_processed": processed}


def change(samples, key):
    first, last = samples[0][key], samples[-1][key]
    return round(100.0 * (last - first) / first, 1) if first else None


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--minutes", type=float, default=10.0, help="length of the run (10)")
    ap.add_argument("--ensembles", type=int, default=10)
    ap.add_argument("--restarts", type=int, default=20)
    ap.add_argument("--cron", type=int, default=10, help="seconds between cron firings (10)")
    ap.add_argument("--files", type=int, default=60,
                    help="seconds between file-trigger firings, a file each (60)")
    ap.add_argument("--run-seconds", type=float, default=0.2, help="DAGMan run time (0.2)")
    ap.add_argument("--window", type=float, help="retention window in seconds "
                    "(default a quarter of the run)")
    ap.add_argument("--probes", type=int, default=15, help="requests per latency sample")
    args = ap.parse_args()
    seconds = args.minutes * 60
    window = args.window or seconds / 4
    retained, extra = retention_config(window)
    out = {"minutes": args.minutes, "ensembles": args.ensembles, "restarts": args.restarts,
           "cron_every_s": args.cron, "files_every_s": args.files,
           "retention_window_s": window, "retention_settings": retained or
           "none in config.SETTINGS: nothing is trimmed"}
    t0 = time.monotonic()
    with harness.daemon(extra_config=extra + "EM_INTERVAL = 1\n") as t:
        inboxes = setup(t, args.ensembles, args.cron, args.files, args.run_seconds)
        samples, dropped = operate(t, inboxes, seconds, args.restarts, args.files, args.probes)
        out["samples"] = samples
        out["start"], out["middle"], out["end"] = (samples[0], samples[len(samples) // 2],
                                                   samples[-1])
        out["change_percent"] = {k: change(samples, k) for k in ("rss_mb", "db_mb",
                                                                 "submit_ms", "list_ms")}
        out["final_states"] = wind_down(t, inboxes, args.files, timeout=120)
        out["lost"] = lost(inboxes, dropped)
    out["elapsed_s"] = round(time.monotonic() - t0, 1)
    print(json.dumps(out, indent=2))


if __name__ == "__main__":
    main()
