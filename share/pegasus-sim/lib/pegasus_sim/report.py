"""pegasus-status and pegasus-analyzer: read-only reports on a submit dir.

State rules are the real tools' (pegasus-facts.md 2.8): pegasus-status reads the
last run in dagman.out, pegasus-analyzer the last jobstate.log state per job and,
like Pegasus 5.1's, exits 2 for a failed workflow.
"""

import argparse
import glob
import os
import time

from . import braindump, osutil
from . import dagman_out as out
from .dagman import read_dag
from .monitord import last_states
from .schedd import Schedd

SUCCEEDED = ("POST_SCRIPT_SUCCESS", "JOB_SUCCESS")
FAILED = ("POST_SCRIPT_FAILURE", "JOB_FAILURE")
STAT = {1: "Idle", 2: "Run", 3: "Removed", 4: "Done", 5: "Held"}


def _load(argv, prog, extra=()):
    p = argparse.ArgumentParser(prog=prog)
    for flags, kw in extra:
        p.add_argument(*flags, **kw)
    p.add_argument("-v", "--verbose", action="count", default=0)
    p.add_argument("submit_dir", nargs="?")
    args = p.parse_args(argv)
    path = os.path.abspath(getattr(args, "input_dir", None) or args.submit_dir or ".")
    bd = braindump.read(path)
    if not bd:
        print("Error: %s is not a valid submit-dir" % path)
    return args, path, bd


def dag_state(submit_dir, bd):
    """(state, counts, total) the way pegasus-status decides them from dagman.out."""
    total = len(read_dag(os.path.join(submit_dir, bd["dag"])))
    run = out.last_run(osutil.read_text(os.path.join(submit_dir, bd["dag"] + ".dagman.out")))
    counts = {"Un-Ready": total}
    state = "Running"
    if run:
        counts = run["counts"] or counts
        total = run["total"] or total
        if run["dag_status"]:
            state = "Failure"
        elif total and counts.get("Done", 0) == total:
            state = "Success"
        if run["exit"] is not None:
            state = "Success" if run["exit"] == 0 else "Failure"
    return state, counts, total


def status_main(argv):
    args, path, bd = _load(argv, "pegasus-status", [
        (("-l", "--long"), {"action": "store_true"}), (("-w", "--watch"), {"nargs": "?", "const": 1})])
    if not bd:
        return 1
    jobs = [ad for ad in Schedd().active() if ad.get("pegasus_wf_uuid") == bd.get("wf_uuid")]
    if jobs:
        print("STAT  IN_STATE  JOB")
        for ad in jobs:
            age = int(time.time() - ad.get("EnteredCurrentStatus", time.time()))
            print("%-6s%8s  %s ( %s )" % (STAT.get(ad["JobStatus"], "?"), "%02d:%02d" % divmod(age, 60),
                                          bd.get("pegasus_wf_name"), path))
        print("Summary: %d Condor job%s total" % (len(jobs), "" if len(jobs) == 1 else "s"))
    else:
        print("(no matching jobs found in Condor Q)")
    state, c, total = dag_state(path, bd)
    done = c.get("Done", 0)
    print("UNRDY READY   PRE  IN_Q  POST  DONE  FAIL %DONE STATE   DAGNAME")
    print("%5d %5d %5d %5d %5d %5d %5d %5.1f %-7s *%s" % (
        c.get("Un-Ready", 0) + c.get("Futile", 0), c.get("Ready", 0), c.get("Pre", 0), c.get("Queued", 0),
        c.get("Post", 0), done, c.get("Failed", 0), 100.0 * done / (total or 1), state, bd["dag"]))
    print("Summary: 1 DAG total (%s:1)" % state)
    return 0


def job_outcomes(submit_dir, bd):
    """{node: 'success'|'failed'|'held'|'unsubmitted'|'unknown'} from jobstate.log."""
    states = last_states(submit_dir, bd.get("jsd"))
    outcomes = {}
    for name, _ in read_dag(os.path.join(submit_dir, bd["dag"])):
        state = states.get(name, ("",))[0]
        outcomes[name] = ("success" if state in SUCCEEDED else "failed" if state in FAILED
                          else "held" if state == "JOB_HELD" else "unsubmitted" if not state else "unknown")
    return outcomes


def analyzer_main(argv):
    args, path, bd = _load(argv, "pegasus-analyzer", [
        (("-i", "--input-dir"), {}), (("-f", "--files"), {"action": "store_true"}),
        (("-q", "--quiet"), {"action": "store_true"})])
    if not bd:
        return 1
    outcomes = job_outcomes(path, bd)
    n = {k: sum(1 for v in outcomes.values() if v == k)
         for k in ("success", "failed", "held", "unsubmitted", "unknown")}
    total = len(outcomes)
    status = "success" if n["success"] == total else "failure" if n["failed"] else "running"
    print("\n" + "Summary".center(80, "*") + "\n")
    print(" Submit Directory   : %s" % path)
    print(" Workflow Status    : %s" % status)
    for label, key in (("Total jobs        ", None), ("# jobs succeeded  ", "success"),
                       ("# jobs failed     ", "failed"), ("# jobs held       ", "held"),
                       ("# jobs unsubmitted", "unsubmitted")):
        count = total if key is None else n[key]
        print(" %s : % 6d (%3.2f%%)" % (label, count, 100.0 * count / (total or 1)))
    if n["unknown"]:
        print(" # jobs unknown     : % 6d (%3.2f%%)" % (n["unknown"], 100.0 * n["unknown"] / (total or 1)))
    print()
    failed = [name for name, v in outcomes.items() if v == "failed"]
    if failed:
        print("Failed jobs' details".center(80, "*") + "\n")
        states = last_states(path, bd.get("jsd"))
        for name in failed:
            print_failed_job(path, name, states[name])
    return 2 if status == "failure" else 0  # Pegasus 5.1's analyzer: 2 for a failed workflow


def print_failed_job(submit_dir, name, state):
    base = os.path.join("00", "00", name)
    outs = sorted(glob.glob(os.path.join(submit_dir, glob.escape(base) + ".out.[0-9][0-9][0-9]")))
    suffix = outs[-1][-3:] if outs else "000"
    print(name.center(80, "=") + "\n")
    print(" last state: %s" % state[0])
    print("       site: %s" % state[2])
    print("submit file: %s.sub" % base)
    print("output file: %s.out.%s" % (base, suffix))
    print(" error file: %s.err.%s" % (base, suffix))
    for kind in ("out", "err"):
        title = "Task #1 - %s - %s" % (name, "stdout" if kind == "out" else "stderr")
        print("\n" + title.center(80, "-") + "\n")
        print(osutil.read_text(os.path.join(submit_dir, "%s.%s.%s" % (base, kind, suffix))).rstrip())
    print()
