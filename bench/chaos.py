#!/usr/bin/env python3
"""Crash safety: SIGKILL a busy `pegasus-em server` at random moments and restart it.

A busy ensemble (-P 3 -R 4; plans 0.2-0.8 s and runs 0.3-1.5 s at random, each
workflow in its own basedir) is kept supplied with new workflows while the daemon
is killed `--kills` times, each at a random 0.05-1.5 s after its restart.  Then
everything is let finish, and the files are checked.

Prints one JSON object:
  kills, workflows, elapsed_s
  lost              workflows not SUCCESSFUL at the end (failed, or stuck: not finished
                    within --drain-timeout); names and reasons are listed
  duplicated_plans  basedirs holding more than one submit/*/pegasus/*/run* (planned twice)
  duplicated_runs   dagman.out files with more than one STARTING UP block (run twice)
  plus diagnostics: final states, re-plans the engine did, processes of the user left
  running, ERROR lines of the daemon log.
Run as root (it creates a throwaway user for the daemon):
  python3 bench/chaos.py [--kills 100] [--seed N]
"""

import argparse
import glob
import json
import os
import random
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import harness  # noqa: E402

TERMINAL = ("SUCCESSFUL", "FAILED", "PLAN_FAILED", "RUN_FAILED", "ABORTED")
ENSEMBLE = "chaos"


class Chaos:
    def __init__(self, t, rng, args):
        self.t, self.rng, self.args = t, rng, args
        self.basedirs = {}
        self.knobs = {}

    def submit(self):
        name = "c%04d" % len(self.basedirs)
        basedir = self.t.copy_example(os.path.join(self.t.home, "wf", ENSEMBLE, name))
        plan_s = round(self.rng.uniform(0.2, 0.8), 2)
        run_s = round(self.rng.uniform(0.3, 1.5), 2)
        command = ('"%s/plan.sh" "-Dpegasus.sim.plan.seconds=%g" "-Dpegasus.sim.run.seconds=%g"'
                   % (basedir, plan_s, run_s))
        status, body = self.t.request("POST", "/ensembles/%s/workflows" % ENSEMBLE, {
            "name": name, "priority": str(self.rng.randint(0, 3)), "basedir": basedir,
            "plan_command": command})
        if status != 201:
            raise SystemExit("submit %s: %s %s" % (name, status, body))
        self.basedirs[name] = basedir
        self.knobs[name] = (plan_s, run_s)

    def listing(self):
        status, body = self.t.request("GET", "/ensembles/%s/workflows" % ENSEMBLE)
        if status != 200:
            raise SystemExit("list: %s %s" % (status, body))
        return body

    def top_up(self):
        """Keep at least --in-flight unfinished workflows, so every kill hits work."""
        wfs = self.listing()
        busy = sum(1 for w in wfs if w["state"] not in TERMINAL)
        for _ in range(max(0, self.args.in_flight - busy)):
            self.submit()


def scan_files(basedirs):
    dup_plans, dup_runs, never_planned = {}, {}, []
    for name, basedir in sorted(basedirs.items()):
        runs = glob.glob(os.path.join(basedir, "submit", "*", "pegasus", "*", "run*"))
        if len(runs) > 1:
            dup_plans[name] = len(runs)
        if not runs:
            never_planned.append(name)
        for out in glob.glob(os.path.join(basedir, "submit", "*", "pegasus", "*", "run*",
                                          "*.dag.dagman.out")):
            with open(out, errors="replace") as f:
                starts = sum(1 for line in f if "(CONDOR_DAGMAN) STARTING UP" in line)
            if starts > 1:
                dup_runs[name] = starts
    return dup_plans, dup_runs, never_planned


def user_processes(uid, exclude):
    """Live (non-zombie) processes of the user other than `exclude`: what was left running;
    and how many zombies of the user there are (wrappers of killed daemons that init has
    not reaped)."""
    found, zombies = [], 0
    for entry in os.listdir("/proc"):
        if not entry.isdigit() or int(entry) == exclude:
            continue
        try:
            if os.stat("/proc/" + entry).st_uid != uid:
                continue
            with open("/proc/%s/stat" % entry) as f:
                state = f.read().rsplit(")", 1)[1].split()[0]
            if state in ("Z", "X"):
                zombies += 1
                continue
            with open("/proc/%s/cmdline" % entry, "rb") as f:
                cmd = f.read().replace(b"\0", b" ").decode("utf-8", "replace").strip()
        except (OSError, IndexError):
            continue
        found.append("%s %s" % (entry, cmd[:160]))
    return found, zombies


def log_errors(path):
    lines = []
    try:
        with open(path, errors="replace") as f:
            for line in f:
                if " ERROR " in line or " WARNING " in line or "Traceback" in line:
                    lines.append(line.rstrip()[:300])
    except OSError:
        pass
    return lines


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--kills", type=int, default=100)
    ap.add_argument("--seed", type=int, default=None)
    ap.add_argument("--initial", type=int, default=30, help="workflows submitted at the start")
    ap.add_argument("--in-flight", type=int, default=12,
                    help="top up to this many unfinished workflows after each restart")
    ap.add_argument("--drain-timeout", type=float, default=240.0,
                    help="seconds to let everything finish after the last kill")
    ap.add_argument("--interval", type=float, help="EM_INTERVAL for the daemon")
    ap.add_argument("--min-delay", type=float, default=0.05,
                    help="shortest time between a restart and the next kill (s)")
    ap.add_argument("--max-delay", type=float, default=1.5,
                    help="longest time between a restart and the next kill (s)")
    args = ap.parse_args()
    seed = args.seed if args.seed is not None else random.randrange(1 << 30)
    rng = random.Random(seed)
    extra = "EM_INTERVAL = %r\n" % args.interval if args.interval else ""
    t_all = time.monotonic()
    out = {"seed": seed, "delay_s": [args.min_delay, args.max_delay]}
    with harness.daemon(extra_config=extra) as t:
        c = Chaos(t, rng, args)
        status, body = t.request("POST", "/ensembles", {"name": ENSEMBLE, "max_planning": "3",
                                                          "max_running": "4"})
        if status != 201:
            raise SystemExit("create: %s %s" % (status, body))
        for _ in range(args.initial):
            c.submit()
        kills, restart_times = 0, []
        for _ in range(args.kills):
            time.sleep(rng.uniform(args.min_delay, args.max_delay))
            t.kill()
            kills += 1
            t0 = time.monotonic()
            t.start(t.port)
            restart_times.append(time.monotonic() - t0)
            c.top_up()
        kill_phase = time.monotonic() - t_all
        # Let everything finish (no more kills).
        deadline = time.monotonic() + args.drain_timeout
        while True:
            wfs = c.listing()
            if all(w["state"] in TERMINAL for w in wfs) or time.monotonic() > deadline:
                break
            time.sleep(0.5)
        drain = time.monotonic() - t_all - kill_phase
        states, lost, stuck = {}, {}, []
        for w in wfs:
            states[w["state"]] = states.get(w["state"], 0) + 1
            if w["state"] != "SUCCESSFUL":
                _, full = t.request("GET", "/ensembles/%s/workflows/%s" % (ENSEMBLE, w["name"]))
                lost[w["name"]] = "%s: %s" % (w["state"], full.get("reason"))
                if w["state"] not in TERMINAL:
                    stuck.append(w["name"])
        dup_plans, dup_runs, never_planned = scan_files(c.basedirs)
        events = t.events(ENSEMBLE)
        names = {w["id"]: w["name"] for w in wfs}
        replans, reasons = {}, {}
        for e in events:
            if e["workflow_id"] is None or e["old_state"] == e["new_state"]:
                continue
            if e["new_state"] == "READY" and e["old_state"] is not None:
                replans[names.get(e["workflow_id"])] = e["reason"]
            key = "%s->%s" % (e["old_state"], e["new_state"])
            reasons[key] = reasons.get(key, 0) + 1
        leftover, zombies = user_processes(t.pw.pw_uid, t.proc.pid if t.proc else -1)
        errors = log_errors(os.path.join(t.pegasus_dir, "em-server.log"))
        out.update({
            "kills": kills,
            "workflows": len(wfs),
            "lost": len(lost),
            "stuck": len(stuck),
            "duplicated_plans": len(dup_plans),
            "duplicated_runs": len(dup_runs),
            "elapsed_s": round(time.monotonic() - t_all, 1),
            "kill_phase_s": round(kill_phase, 1),
            "drain_s": round(drain, 1),
            "final_states": states,
            "restart_median_ms": round(1000 * sorted(restart_times)[len(restart_times) // 2], 1)
            if restart_times else None,
            "transitions": reasons,
            "replanned_by_engine": replans,
            "processes_left_running": leftover[:20],
            "zombies_of_user": zombies,
            "daemon_log_warnings_errors": len(errors),
            "daemon_log_first": errors[:10],
        })
        if lost:
            out["lost_workflows"] = lost
        if stuck:
            out["stuck_workflows"] = stuck
        if dup_plans:
            out["duplicated_plan_workflows"] = dup_plans
        if dup_runs:
            out["duplicated_run_workflows"] = dup_runs
        if never_planned:
            out["never_planned_dirs"] = [n for n in never_planned if n not in lost][:20]
    print(json.dumps(out, indent=2))
    return 0 if not (lost or dup_plans or dup_runs) else 1


if __name__ == "__main__":
    sys.exit(main())
