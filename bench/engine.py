#!/usr/bin/env python3
"""Engine benchmarks against a real `pegasus-em server` and the simulated toolchain.

Prints one JSON object:
  makespan     N workflows (1 s plans, 2 s runs, each in its own basedir) in one ensemble
               with -P 4 -R 8, submitted while PAUSED, timed from the activation event to
               the last SUCCESSFUL event; against the ideal greedy schedule (zero overhead,
               computed exactly by an event simulation; target ratio <= 1.08) and against an
               "achievable" ideal that adds the simulator tools' own measured wall time.
               By default the simulator runs as under a real schedd (SCHEDD_DELAY 0.5:
               pegasus-run returns, a separate DAGMan starts 0.5 s later, and the run keeps
               its 2 s by the clock, counted from the submission, so pegasus-run's own
               start-up comes on top, as a real one's); --schedd-delay 0 is the older mode,
               where the 2 s count from pegasus-run's start and the DAGMan's own writes
               stretch the run.
               `phases` says where the time went, per workflow: planner exit -> QUEUED,
               RUNNING (the claim) -> the DAGMan submitted by pegasus-run (its start-up
               included), DAGMan's EXITING line -> SUCCESSFUL.
  scale        (--only scale) N workflows over E ensembles at P planning and R running at once
               overall (MAX_PLANNING_TOTAL / MAX_RUNNING_TOTAL, each ensemble -P P -R R), in
               a daemon of its own: ratio to the ideal, phases, daemon and machine CPU.
               Default 2,000 over 20 at P=50, R=200 with 10 s plans and 40 s runs: shorter
               ones would need more CPU for the simulator's own processes (three Python
               start-ups per workflow) than the 2 cores have.
  submit_to_planning  READY ("submitted") event -> PLANNING event of single submissions
               into an idle ACTIVE ensemble (target median <= 50 ms).
  slot_refill  -R 1 with QUEUED workflows waiting: SUCCESSFUL event of one workflow ->
               RUNNING event of the next (target median <= 50 ms).
  idle         the daemon restarted over K finished workflows (inserted with sqlite3 into
               ~/.pegasus/em.db while it was stopped): CPU over 10 s in % of one core
               (target < 1 %).
All event times are the daemon's own (`GET /ensembles/E/events`).
Run as root (it creates a throwaway user for the daemon): python3 bench/engine.py [--quick]
"""

import argparse
import contextlib
import glob
import heapq
import json
import os
import statistics
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import harness  # noqa: E402

TERMINAL = ("SUCCESSFUL", "FAILED", "PLAN_FAILED", "RUN_FAILED", "ABORTED")
EPS = 1e-9


# ---- the ideal schedule ------------------------------------------------------------

def ideal_makespan(n, max_planning, max_running, plan_s, run_s):
    """Greedy schedule with zero overhead: plan whenever a planning slot is free, run
    whenever a workflow is planned and a running slot is free.  -> seconds."""
    now, to_plan, queued, done = 0.0, n, 0, 0
    planning, running = [], []  # heaps of end times
    while done < n:
        while queued and len(running) < max_running:
            queued -= 1
            heapq.heappush(running, now + run_s)
        while to_plan and len(planning) < max_planning:
            to_plan -= 1
            heapq.heappush(planning, now + plan_s)
        now = min(planning[0] if planning else float("inf"),
                  running[0] if running else float("inf"))
        while planning and planning[0] <= now + EPS:
            heapq.heappop(planning)
            queued += 1
        while running and running[0] <= now + EPS:
            heapq.heappop(running)
            done += 1
    return now


# ---- helpers --------------------------------------------------------------------------

def ms(seconds):
    return round(seconds * 1000.0, 1)


def pct(values, q):
    values = sorted(values)
    if not values:
        return None
    return values[min(len(values) - 1, int(len(values) * q))]


def summary_ms(values):
    if not values:
        return {"n": 0}
    return {"n": len(values), "median_ms": ms(statistics.median(values)),
            "p90_ms": ms(pct(values, 0.9)), "max_ms": ms(max(values))}


def check(status, body, what):
    if status not in (200, 201):
        raise SystemExit("%s failed: %s %s" % (what, status, body))
    return body


def create_ensemble(t, name, max_planning, max_running, paused=False):
    check(*t.request("POST", "/ensembles", {"name": name, "max_planning": str(max_planning),
                                            "max_running": str(max_running)}), "create " + name)
    if paused:
        set_state(t, name, "PAUSED")


def set_state(t, ensemble, state):
    check(*t.request("POST", "/ensembles/%s" % ensemble, {"state": state}),
          "%s %s" % (state, ensemble))


def plan_command(basedir, plan_s, run_s, schedd_delay=0.0):
    command = '"%s/plan.sh" "-Dpegasus.sim.plan.seconds=%g" "-Dpegasus.sim.run.seconds=%g"' % (
        basedir, plan_s, run_s)
    if schedd_delay:
        command += ' "-Dpegasus.sim.schedd.delay=%g"' % schedd_delay
    return command


def submit(t, ensemble, name, plan_s, run_s, schedd_delay=0.0):
    basedir = t.copy_example(os.path.join(t.home, "wf", ensemble, name))
    check(*t.request("POST", "/ensembles/%s/workflows" % ensemble, {
        "name": name, "priority": "0", "basedir": basedir,
        "plan_command": plan_command(basedir, plan_s, run_s, schedd_delay)}),
        "submit %s.%s" % (ensemble, name))
    return basedir


def workflows(t, ensemble):
    return check(*t.request("GET", "/ensembles/%s/workflows" % ensemble), "list " + ensemble)


def wait_all_terminal(t, ensemble, timeout, poll=0.5):
    deadline = time.monotonic() + timeout
    while True:
        wfs = workflows(t, ensemble)
        if all(w["state"] in TERMINAL for w in wfs):
            return wfs
        if time.monotonic() > deadline:
            return wfs
        time.sleep(poll)


def by_workflow(events):
    out = {}
    for e in events:
        if e["workflow_id"] is not None:
            out.setdefault(e["workflow_id"], []).append(e)
    return out


def first(evs, state, reason_prefix=None):
    for e in evs:
        if e["new_state"] == state and e["old_state"] != state and (
                reason_prefix is None or (e["reason"] or "").startswith(reason_prefix)):
            return e
    return None


def last(evs, state):
    found = None
    for e in evs:
        if e["new_state"] == state and e["old_state"] != state:
            found = e
    return found


def mtime(path):
    try:
        return os.stat(path).st_mtime
    except OSError:
        return None


def refill_gaps(events, slot_free_states, refill_state, waiting_state):
    """For every event that frees a slot while another workflow waits (it reached
    `waiting_state` earlier and has not been started yet): the time to the next
    `refill_state` event.  -> list of seconds."""
    gaps = []
    per_wf = by_workflow(events)
    waiting_since = {}
    started = {}
    for wf_id, evs in per_wf.items():
        w = last(evs, waiting_state)
        s = last(evs, refill_state)
        if w is not None:
            waiting_since[wf_id] = w["time"]
        if s is not None:
            started[wf_id] = s["time"]
    refills = sorted((e["time"], e["id"]) for e in events
                     if e["new_state"] == refill_state and e["old_state"] != refill_state)
    for e in events:
        if e["new_state"] not in slot_free_states or e["old_state"] == e["new_state"]:
            continue
        t0 = e["time"]
        waiting = [wf for wf, since in waiting_since.items()
                   if since <= t0 and started.get(wf, float("inf")) >= t0
                   and wf != e["workflow_id"]]
        if not waiting:
            continue
        nxt = next((t for t, i in refills if t >= t0 and i > e["id"]), None)
        if nxt is not None:
            gaps.append(nxt - t0)
    return gaps


# ---- 0: the simulator's own fixed costs -------------------------------------------

def tool_overheads(t, samples, run_s, schedd_delay):
    """The simulator's own costs, as the daemon's user, one at a time: the median wall
    time of plan.sh with 0 s planning, and how much longer than `run_s` a run of `run_s`
    takes from `pegasus-run` to the EXITING line in dagman.out."""
    plans, runs = [], []
    for i in range(samples):
        basedir = t.copy_example(os.path.join(t.home, "wf", "_overhead", "o%d" % i))
        cmd = ["/bin/sh", "-c", plan_command(basedir, 0, run_s, schedd_delay)]
        t0 = time.monotonic()
        res = t.run_as_user(cmd, cwd=basedir)
        plans.append(time.monotonic() - t0)
        if res.returncode != 0:
            raise SystemExit("plan.sh failed: %s" % res.stdout.decode()[-500:])
        submitdir = [line.split()[-1] for line in res.stdout.decode().splitlines()
                     if line.startswith("pegasus-run ")][-1]
        runs.append(_timed_run(t, basedir, submitdir) - run_s)
    return statistics.median(plans), max(0.0, statistics.median(runs))


def _timed_run(t, basedir, submitdir):
    """Seconds from starting pegasus-run to the EXITING line of its DAGMan run."""
    dagman_out = glob.glob(os.path.join(submitdir, "*.dag"))[0] + ".dagman.out"
    t0 = time.time()
    res = t.run_as_user(["pegasus-run", submitdir], cwd=basedir)
    if res.returncode != 0:
        raise SystemExit("pegasus-run failed: %s" % res.stdout.decode()[-500:])
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        try:
            with open(dagman_out) as f:
                if "EXITING WITH STATUS" in f.read():
                    return os.stat(dagman_out).st_mtime - t0
        except OSError:
            pass
        time.sleep(0.005)
    raise SystemExit("the DAGMan of %s did not end within 60 s" % submitdir)


# ---- 1: makespan -------------------------------------------------------------------

def bench_makespan(t, n, max_planning, max_running, plan_s, run_s, overheads,
                   schedd_delay=0.0):
    ens = "makespan"
    create_ensemble(t, ens, max_planning, max_running, paused=True)
    basedirs = {}
    for i in range(n):
        name = "w%03d" % i
        basedirs[name] = submit(t, ens, name, plan_s, run_s, schedd_delay)
    ideal = ideal_makespan(n, max_planning, max_running, plan_s, run_s)
    c0, w0, sw0 = t.cpu_seconds(), time.monotonic(), wakeups(t.proc.pid)
    set_state(t, ens, "ACTIVE")
    wfs = wait_all_terminal(t, ens, timeout=ideal * 4 + 60)
    daemon_cpu = t.cpu_seconds() - c0
    wall, sw = time.monotonic() - w0, wakeups(t.proc.pid) - sw0
    events = t.events(ens)
    activated = [e for e in events if e["workflow_id"] is None and e["new_state"] == "ACTIVE"][-1]
    per_wf = by_workflow(events)
    ends = [last(evs, "SUCCESSFUL")["time"] for evs in per_wf.values() if last(evs, "SUCCESSFUL")]
    out = {"workflows": n, "max_planning": max_planning, "max_running": max_running,
           "plan_seconds": plan_s, "run_seconds": run_s, "schedd_delay": schedd_delay,
           "final_states": count_states(wfs)}
    if len(ends) != n:
        out["not_successful"] = sorted(w["name"] for w in wfs if w["state"] != "SUCCESSFUL")[:20]
    if not ends:
        return out
    measured = max(ends) - activated["time"]
    out.update(measured_s=round(measured, 3), ideal_s=round(ideal, 3),
               ratio=round(measured / ideal, 3), target_ratio=1.08)
    if overheads:
        out["achievable"] = achievable(n, max_planning, max_running, plan_s, run_s, overheads,
                                       measured)
    out["daemon_cpu_percent_of_one_core"] = round(100.0 * daemon_cpu / wall, 1)
    out["daemon_wakeups_per_s"] = round(sw / wall, 1)
    names = {w["id"]: w["name"] for w in wfs}
    files = {wf_id: workflow_files(t, ens, names[wf_id], basedirs[names[wf_id]])
             for wf_id in per_wf if wf_id in names}
    out["phases"] = phases(per_wf, files, run_s if schedd_delay else None)
    first_planning = min((first(evs, "PLANNING")["time"] for evs in per_wf.values()
                          if first(evs, "PLANNING")), default=activated["time"])
    out["phases"]["activation_to_first_planning"] = summary_ms(
        [first_planning - activated["time"]])
    out["phases"]["planning_slot_refill"] = summary_ms(
        refill_gaps(events, ("QUEUED", "PLAN_FAILED"), "PLANNING", "READY"))
    out["phases"]["running_slot_refill"] = summary_ms(
        refill_gaps(events, ("SUCCESSFUL", "FAILED", "RUN_FAILED"), "RUNNING", "QUEUED"))
    # Slot use: mean number of workflows planning / running between activation and the end.
    out["mean_busy_slots"] = busy_slots(events, activated["time"], max(ends))
    return out


def count_states(wfs):
    states = {}
    for w in wfs:
        states[w["state"]] = states.get(w["state"], 0) + 1
    return states


def achievable(n, max_planning, max_running, plan_s, run_s, overheads, measured):
    """The ideal schedule again, with the simulator's own measured costs added."""
    plan_oh, run_oh = overheads
    ideal = ideal_makespan(n, max_planning, max_running, plan_s + plan_oh, run_s + run_oh)
    return {"note": "ideal greedy schedule with plan time = %g s + median wall time of one 0 s "
                    "plan.sh/pegasus-plan, run time = %g s + the median time a %g s run took "
                    "beyond %g s from pegasus-run to its DAGMan's EXITING line (both measured "
                    "one at a time before the run)" % (plan_s, run_s, run_s, run_s),
            "plan_overhead_ms": ms(plan_oh), "run_overhead_ms": ms(run_oh),
            "ideal_s": round(ideal, 3), "ratio": round(measured / ideal, 3)}


def workflow_files(t, ens, name, basedir):
    """Times the files of one workflow say: planner exit, pegasus-run exit, DAGMan's end."""
    ens_dir = os.path.join(t.pegasus_dir, "ensembles", ens)
    outs = glob.glob(os.path.join(basedir, "submit", "*", "pegasus", "*", "run*",
                                  "*.dag.dagman.out"))
    return {"plan_done": mtime(os.path.join(ens_dir, name + ".plan.result")),
            "run_done": mtime(os.path.join(ens_dir, name + ".run.result")),
            "exiting": mtime(outs[0]) if outs else None}


def phases(per_wf, files, paced_run_s):
    """Where the time went, per workflow, from the daemon's events and the files' times.

    With a paced simulator (SCHEDD_DELAY) a run's EXITING line comes `run_s` after its
    pegasus-run submitted the DAGMan, which dates that submission."""
    phase = {"planning_to_queued": [], "planner_exit_to_queued": [],
             "running_to_successful": [], "running_to_dagman_submitted": [],
             "pegasus_run_wall": [], "dagman_exiting_to_successful": []}
    for wf_id, evs in per_wf.items():
        p, q, r, s = (last(evs, "PLANNING"), last(evs, "QUEUED"), last(evs, "RUNNING"),
                      last(evs, "SUCCESSFUL"))
        f = files.get(wf_id, {})
        if p and q:
            phase["planning_to_queued"].append(q["time"] - p["time"])
            if f.get("plan_done"):
                phase["planner_exit_to_queued"].append(q["time"] - f["plan_done"])
        if r and s:
            phase["running_to_successful"].append(s["time"] - r["time"])
            if f.get("run_done"):
                phase["pegasus_run_wall"].append(f["run_done"] - r["time"])
            if f.get("exiting"):
                phase["dagman_exiting_to_successful"].append(s["time"] - f["exiting"])
                if paced_run_s is not None:
                    phase["running_to_dagman_submitted"].append(
                        f["exiting"] - paced_run_s - r["time"])
    return {k: summary_ms(v) for k, v in phase.items() if v}


def busy_slots(events, start, end):
    level = {"PLANNING": 0, "RUNNING": 0}
    area = {"PLANNING": 0.0, "RUNNING": 0.0}
    prev = start
    for e in sorted(events, key=lambda e: e["id"]):
        if e["workflow_id"] is None or e["old_state"] == e["new_state"]:
            continue
        tm = min(max(e["time"], start), end)
        for k in level:
            area[k] += level[k] * (tm - prev)
        prev = tm
        if e["old_state"] in level:
            level[e["old_state"]] -= 1
        if e["new_state"] in level:
            level[e["new_state"]] += 1
    span = max(end - start, EPS)
    return {"planning": round(area["PLANNING"] / span, 2),
            "running": round(area["RUNNING"] / span, 2)}


# ---- 1b: scale -------------------------------------------------------------------

SCALE_DOC = ("N workflows spread over E ensembles (each -P P -R R), with MAX_PLANNING_TOTAL = P "
             "and MAX_RUNNING_TOTAL = R: at most P planning and R running at once overall")


def bench_scale(n, ensembles, max_planning, max_running, plan_s, run_s, schedd_delay):
    """The makespan at scale, in a daemon of its own with the global caps."""
    extra = "MAX_PLANNING_TOTAL = %d\nMAX_RUNNING_TOTAL = %d\n" % (max_planning, max_running)
    with harness.daemon(extra_config=extra) as t:
        names = ["s%02d" % i for i in range(ensembles)]
        basedirs = {}
        for ens in names:
            create_ensemble(t, ens, max_planning, max_running, paused=True)
        for i in range(n):
            ens = names[i % ensembles]
            basedirs[ens, "w%04d" % i] = submit(t, ens, "w%04d" % i, plan_s, run_s, schedd_delay)
        ideal = ideal_makespan(n, max_planning, max_running, plan_s, run_s)
        c0, w0, busy0 = t.cpu_seconds(), time.monotonic(), machine_busy()
        for ens in names:
            set_state(t, ens, "ACTIVE")
        done = wait_ensembles_done(t, names, timeout=ideal * 6 + 120)
        wall = time.monotonic() - w0
        cpu, busy = t.cpu_seconds() - c0, machine_busy()
        out = {"doc": SCALE_DOC, "workflows": n, "ensembles": ensembles,
               "max_planning_total": max_planning, "max_running_total": max_running,
               "plan_seconds": plan_s, "run_seconds": run_s, "schedd_delay": schedd_delay,
               "final_states": done, "ideal_s": round(ideal, 3),
               "daemon_cpu_percent_of_one_core": round(100.0 * cpu / wall, 1),
               "machine_cpu_busy_percent": round(100.0 * (busy[0] - busy0[0]) /
                                                 max(1, busy[1] - busy0[1]), 1),
               "daemon_rss_mb": round(t.rss_mb(), 1)}
        out.update(scale_timing(t, names, basedirs, ideal, run_s if schedd_delay else None))
    return out


def scale_timing(t, names, basedirs, ideal, paced_run_s):
    """Makespan (first activation to last end), ratio and phases over all ensembles."""
    per_wf, files, starts, ends = {}, {}, [], []
    for ens in names:
        events = t.events(ens)
        starts += [e["time"] for e in events if e["workflow_id"] is None
                   and e["new_state"] == "ACTIVE"]
        ids = {w["id"]: w["name"] for w in workflows(t, ens)}
        for wf_id, evs in by_workflow(events).items():
            per_wf[wf_id] = evs
            files[wf_id] = workflow_files(t, ens, ids[wf_id], basedirs[ens, ids[wf_id]])
            end = last(evs, "SUCCESSFUL")
            if end:
                ends.append(end["time"])
    if not ends or not starts:
        return {}
    measured = max(ends) - min(starts)
    return {"measured_s": round(measured, 3), "ratio": round(measured / ideal, 3),
            "phases": phases(per_wf, files, paced_run_s)}


def wait_ensembles_done(t, names, timeout, poll=1.0):
    """Until no workflow of these ensembles is busy or waiting; -> counts per state."""
    deadline = time.monotonic() + timeout
    wanted = set(names)
    while True:
        listing = check(*t.request("GET", "/ensembles?detail=1"), "list ensembles")
        counts = {}
        for e in listing:
            if e["name"] in wanted:
                for state, k in e["counts"].items():
                    counts[state] = counts.get(state, 0) + k
        if not any(counts.get(s) for s in ("READY", "PLANNING", "QUEUED", "RUNNING")) or \
                time.monotonic() > deadline:
            return counts
        time.sleep(poll)


def machine_busy():
    """(busy, total) jiffies of all CPUs from /proc/stat."""
    with open("/proc/stat") as f:
        fields = [int(x) for x in f.readline().split()[1:]]
    idle = fields[3] + (fields[4] if len(fields) > 4 else 0)
    return sum(fields) - idle, sum(fields)


# ---- 2: submit -> planner started ----------------------------------------------------

def bench_submit_latency(t, samples):
    ens = "latency"
    create_ensemble(t, ens, 1, 1)
    rtt = []
    for i in range(samples):
        name = "s%02d" % i
        basedir = t.copy_example(os.path.join(t.home, "wf", ens, name))
        time.sleep(0.1)  # let the engine settle into its idle wait
        t0 = time.monotonic()
        check(*t.request("POST", "/ensembles/%s/workflows" % ens, {
            "name": name, "priority": "0", "basedir": basedir,
            "plan_command": plan_command(basedir, 0, 0)}), "submit")
        rtt.append(time.monotonic() - t0)
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:  # idle again: nothing planning or running
            status, w = t.request("GET", "/ensembles/%s/workflows/%s" % (ens, name))
            if w["state"] in TERMINAL:
                break
            time.sleep(0.02)
    events = t.events(ens)
    lat, states = [], {}
    for evs in by_workflow(events).values():
        sub = first(evs, "READY", "submitted")
        pl = first(evs, "PLANNING")
        if sub and pl:
            lat.append(pl["time"] - sub["time"])
        st = evs[-1]["new_state"]
        states[st] = states.get(st, 0) + 1
    out = summary_ms(lat)
    out.update(target_median_ms=50, submit_request_median_ms=ms(statistics.median(rtt)),
               final_states=states)
    return out


# ---- 3: a freed running slot refilled -------------------------------------------------

def bench_refill(t, n, run_s):
    ens = "refill"
    create_ensemble(t, ens, n, 1, paused=True)
    basedirs = {}
    for i in range(n):
        name = "r%02d" % i
        basedirs[name] = submit(t, ens, name, 0, run_s)
    set_state(t, ens, "ACTIVE")
    wfs = wait_all_terminal(t, ens, timeout=n * (run_s + 5) + 30, poll=0.2)
    events = t.events(ens)
    gaps = refill_gaps(events, ("SUCCESSFUL", "FAILED", "RUN_FAILED"), "RUNNING", "QUEUED")
    out = summary_ms(gaps)
    out["target_median_ms"] = 50
    # The whole hand-over as a user sees it: DAGMan's EXITING line -> next RUNNING event.
    names = {w["id"]: w["name"] for w in wfs}
    runs = sorted(e["time"] for e in events if e["new_state"] == "RUNNING"
                  and e["old_state"] != "RUNNING")
    detect, handover = [], []
    for wf_id, evs in by_workflow(events).items():
        s = last(evs, "SUCCESSFUL")
        outs = glob.glob(os.path.join(basedirs[names[wf_id]], "submit", "*", "pegasus", "*",
                                      "run*", "*.dag.dagman.out"))
        if s and outs:
            ended = mtime(outs[0])
            detect.append(s["time"] - ended)
            nxt = next((x for x in runs if x >= s["time"]), None)
            if nxt is not None:
                handover.append(nxt - ended)
    out["dagman_exiting_to_successful"] = summary_ms(detect)
    out["dagman_exiting_to_next_running"] = summary_ms(handover)
    out["final_states"] = {}
    for w in wfs:
        out["final_states"][w["state"]] = out["final_states"].get(w["state"], 0) + 1
    return out


# ---- 4: idle CPU over many finished workflows -----------------------------------------

INSERT = r'''
import os, sqlite3, sys, time, uuid
path, ensemble_id, count, base = sys.argv[1], int(sys.argv[2]), int(sys.argv[3]), sys.argv[4]
conn = sqlite3.connect(path, isolation_level=None, timeout=60)
conn.execute("PRAGMA journal_mode=WAL")
conn.execute("BEGIN IMMEDIATE")
start = conn.execute("SELECT coalesce(max(id), 0) FROM workflows").fetchone()[0] + 1
t0 = time.time() - 86400 * 30
wf_rows, ev_rows = [], []
for k in range(count):
    i = start + k
    c = t0 + k * 0.01
    wf_rows.append((i, ensemble_id, "old%06d" % k, "SUCCESSFUL", k % 7, base,
                    '"%s/plan.sh"' % base, str(uuid.UUID(int=i)),
                    "%s/submit/u/pegasus/workflow/run%04d" % (base, k % 10000 + 1),
                    "DAGMan finished: DAGMan exited with status 0", c, c + 4))
    for j, (old, new, why) in enumerate(((None, "READY", "submitted"),
                                         ("READY", "PLANNING", "planning"),
                                         ("PLANNING", "QUEUED", "planned"),
                                         ("QUEUED", "RUNNING", "starting pegasus-run"),
                                         ("RUNNING", "SUCCESSFUL", "DAGMan finished"))):
        ev_rows.append((round(c + j, 5), ensemble_id, i, old, new, why))
conn.executemany("INSERT INTO workflows (id, ensemble_id, name, state, priority, basedir,"
                 " plan_command, wf_uuid, submitdir, reason, created, updated)"
                 " VALUES (?,?,?,?,?,?,?,?,?,?,?,?)", wf_rows)
conn.executemany("INSERT INTO events (time, ensemble_id, workflow_id, old_state, new_state,"
                 " reason) VALUES (?,?,?,?,?,?)", ev_rows)
conn.execute("COMMIT")
conn.execute("PRAGMA wal_checkpoint(TRUNCATE)")
conn.close()
print(count)
'''


def bench_idle(t, count, seconds):
    ens = "archive"
    create_ensemble(t, ens, 1, 1)
    ensemble_id = check(*t.request("GET", "/ensembles/%s" % ens), "get")["id"]
    before = os.stat(t.db_path)
    t.stop()
    t0 = time.monotonic()
    res = t.run_as_user([t.python, "-c", INSERT, t.db_path, str(ensemble_id), str(count),
                         os.path.join(t.home, "wf", ens)], timeout=600)
    if res.returncode != 0:
        raise SystemExit("insert failed: %s" % res.stdout.decode()[-1000:])
    insert_s = time.monotonic() - t0
    files = {}
    for p in glob.glob(t.db_path + "*"):
        st = os.stat(p)
        files[os.path.basename(p)] = "%d:%d %o" % (st.st_uid, st.st_gid, st.st_mode & 0o777)
    after = os.stat(t.db_path)
    kept = (after.st_uid, after.st_gid, after.st_mode) == (before.st_uid, before.st_gid,
                                                          before.st_mode)
    t0 = time.monotonic()
    t.start(t.port)
    start_s = time.monotonic() - t0
    rss_restart = round(t.rss_mb(), 1)
    t0 = time.monotonic()
    status, wfs = t.request("GET", "/ensembles/%s/workflows" % ens)
    list_ms = ms(time.monotonic() - t0)
    listed = len(wfs) if status == 200 else status
    # Wait until idle: a 1 s window with less than 10 ms of CPU (at most 30 s).
    settle_t0 = time.monotonic()
    while time.monotonic() - settle_t0 < 30:
        c0 = t.cpu_seconds()
        time.sleep(1.0)
        if t.cpu_seconds() - c0 < 0.01:
            break
    settle_s = time.monotonic() - settle_t0
    c0, w0, ns0, sw0 = t.cpu_seconds(), time.monotonic(), on_cpu_ns(t.proc.pid), \
        wakeups(t.proc.pid)
    time.sleep(seconds)
    cpu, wall = t.cpu_seconds() - c0, time.monotonic() - w0
    ns, sw = on_cpu_ns(t.proc.pid) - ns0, wakeups(t.proc.pid) - sw0
    return {"finished_workflows": count, "insert_s": round(insert_s, 2),
            "db_owner_mode_kept": kept, "db_files": files,
            "db_mb": round(os.path.getsize(t.db_path) / 1e6, 1),
            "restart_s": round(start_s, 3), "listed_after_restart": listed,
            "list_ms": list_ms,
            "settle_s": round(settle_s, 1), "measured_s": round(wall, 1),
            "cpu_percent_of_one_core": round(100.0 * cpu / wall, 3), "target_percent": 1.0,
            "cpu_percent_schedstat": round(100.0 * ns / 1e9 / wall, 4),
            "wakeups_per_s": round(sw / wall, 2),
            "rss_mb_after_restart": rss_restart, "rss_mb_after_listing": round(t.rss_mb(), 1)}


def _tasks(pid):
    try:
        return os.listdir("/proc/%d/task" % pid)
    except OSError:
        return []


def on_cpu_ns(pid):
    """Time on CPU of all threads in ns (/proc/<pid>/task/*/schedstat), finer than stat's
    clock ticks."""
    total = 0
    for tid in _tasks(pid):
        try:
            with open("/proc/%d/task/%s/schedstat" % (pid, tid)) as f:
                total += int(f.read().split()[0])
        except (OSError, ValueError, IndexError):
            pass
    return total


def wakeups(pid):
    """Voluntary context switches of all threads: how often the daemon wakes up."""
    total = 0
    for tid in _tasks(pid):
        try:
            with open("/proc/%d/task/%s/status" % (pid, tid)) as f:
                for line in f:
                    if line.startswith("voluntary_ctxt_switches:"):
                        total += int(line.split()[1])
        except (OSError, ValueError):
            pass
    return total


@contextlib.contextmanager
def _nothing():
    yield None


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--quick", action="store_true", help="a smaller run for sanity checks")
    ap.add_argument("--workflows", type=int, help="makespan workflows (default 200, quick 40)")
    ap.add_argument("--latency-samples", type=int, help="default 30, quick 10")
    ap.add_argument("--refill", type=int, help="workflows in the refill test (default 10)")
    ap.add_argument("--finished", type=int, help="finished workflows for the idle test "
                    "(default 100000, quick 10000)")
    ap.add_argument("--idle-seconds", type=float, help="default 10, quick 5")
    ap.add_argument("--interval", type=float, help="EM_INTERVAL for the daemon "
                    "(default: the daemon's own default)")
    ap.add_argument("--schedd-delay", type=float, default=0.5,
                    help="the simulator's SCHEDD_DELAY for the makespan run (default 0.5: "
                    "DAGMan as under a real schedd; 0: the older mode)")
    ap.add_argument("--scale", default=None, metavar="N,E,P,R,PLAN_S,RUN_S",
                    help="the scale run: N workflows over E ensembles, P planning and R "
                    "running at once overall (default 2000,20,50,200,10,40; quick "
                    "200,4,10,40,2,8)")
    ap.add_argument("--only", default="makespan,latency,refill,idle",
                    help="comma-separated subset of makespan,latency,refill,idle,scale")
    args = ap.parse_args()
    q = args.quick
    n = args.workflows or (40 if q else 200)
    samples = args.latency_samples or (10 if q else 30)
    refill = args.refill or (6 if q else 10)
    finished = args.finished if args.finished is not None else (10000 if q else 100000)
    idle_s = args.idle_seconds or (5.0 if q else 10.0)
    only = set(args.only.split(","))
    extra = "EM_INTERVAL = %r\n" % args.interval if args.interval else ""
    out = {"quick": q}
    t_all = time.monotonic()
    with harness.daemon(extra_config=extra) if only - {"scale"} else _nothing() as t:
        if "makespan" in only:
            sd = args.schedd_delay
            overheads = tool_overheads(t, 3 if q else 5, 2.0, sd)
            out["makespan"] = bench_makespan(t, n, 4, 8, 1.0, 2.0, overheads, sd)
        if "latency" in only:
            out["submit_to_planning"] = bench_submit_latency(t, samples)
        if "refill" in only:
            out["slot_refill"] = bench_refill(t, refill, 0.5)
        if "idle" in only:
            out["idle"] = bench_idle(t, finished, idle_s)
    if "scale" in only:
        spec = args.scale or ("200,4,10,40,2,8" if q else "2000,20,50,200,10,40")
        n_, e_, p_, r_, ps_, rs_ = [float(x) for x in spec.split(",")]
        out["scale"] = bench_scale(int(n_), int(e_), int(p_), int(r_), ps_, rs_,
                                   args.schedd_delay)
    out["elapsed_s"] = round(time.monotonic() - t_all, 1)
    print(json.dumps(out, indent=2))


if __name__ == "__main__":
    main()
