"""pegasus-run, pegasus-remove, pegasus-halt: the submit-dir tools that drive the schedd.

Texts and exit codes follow the real tools (pegasus-facts.md 2.6-2.7).
"""

import argparse
import glob
import json
import os
import shutil
import sys
import time

from . import braindump, knobs, osutil
from . import dagman_out as out
from .monitord import running_pid
from .schedd import Schedd

RED_ERROR = "Error: "


def _parser(prog, dir_default="."):
    p = argparse.ArgumentParser(prog=prog)
    p.add_argument("-D", dest="props", action="append", default=[], metavar="prop=value")
    p.add_argument("-c", "--conf")
    p.add_argument("-v", "--verbose", action="count", default=0)
    p.add_argument("submit_dir", nargs="?", default=dir_default)
    return p


def _load(submit_dir):
    """(absolute dir, braindump) or print the real tools' error and return None."""
    path = os.path.abspath(submit_dir)
    bd = braindump.read(path)
    if not bd:
        print(RED_ERROR + "%s is not a valid submit-dir" % path)
        return None
    return path, bd


def run_main(argv):
    p = _parser("pegasus-run")
    p.add_argument("-j", "--json", action="store_true")
    p.add_argument("--grid", action="store_true")
    p.add_argument("--nogrid", action="store_true")
    args = p.parse_args(argv)
    loaded = _load(args.submit_dir)
    if not loaded:
        return 1
    submit_dir, bd = loaded
    os.chdir(submit_dir)
    dag = bd.get("dag")
    if not dag or not os.path.isfile(dag):
        print(RED_ERROR + "%s not found" % dag)
        return 1
    halt_released = _release_halt(dag)
    if running_pid(submit_dir):
        if halt_released:
            return 0
        sys.stderr.write(RED_ERROR + "It looks like the workflow is already running! If you are sure\n"
                         "       that is not the case, please remove the monitord.pid file and try\n"
                         "       again.\n")
        return 1
    return _submit(submit_dir, bd, dag, args.json)


def _release_halt(dag):
    if not os.path.exists(dag + ".halt"):
        return False
    print("Found a previously halted workflow. Releasing it now.")
    for path in glob.glob("**/*.dag.halt", recursive=True):
        osutil.remove(path)
    return True


def _submit(submit_dir, bd, dag, json_mode):
    sub = dag + ".condor.sub"
    try:
        values = knobs.load(braindump.properties_of(submit_dir, bd))
    except ValueError as e:
        print(RED_ERROR + str(e))
        return 1
    exit_code = values["PEGASUS_RUN_EXIT"]
    _salvage_log(bd.get("condor_log"))
    sys.stderr.write("Submitting to condor %s\n" % sub)
    if exit_code:
        print(RED_ERROR + "Running ('%s', '%s') failed with %d (PEGASUS_SIM_PEGASUS_RUN_EXIT)"
              % (osutil.tool("condor_submit"), sub, exit_code))
        return exit_code
    try:
        # The run time knob counts from this pegasus-run's start (see osutil.process_age),
        # or, as under a real schedd (SCHEDD_DELAY), from the submission: pegasus-run's
        # own start-up is then its own, as a real one's 0.15 s.
        age = 0.0 if values["SCHEDD_DELAY"] else osutil.process_age()
        os.environ["PEGASUS_SIM_T0"] = repr(time.time() - age)
        cluster = Schedd().submit(sub)
    except OSError as e:
        print(RED_ERROR + "Running ('%s', '%s') failed with 1: %s" % (osutil.tool("condor_submit"), sub, e))
        return 1
    sys.stderr.write("Submitting job(s).\n1 job(s) submitted to cluster %d.\n" % cluster)
    if json_mode:
        print(json.dumps(bd))
        return 0
    print("\nYour workflow has been started and is running in the base directory:\n\n%(d)s\n\n"
          "*** To monitor the workflow you can run ***\n\npegasus-status -l %(d)s\n\n"
          "*** To remove your workflow run ***\n\npegasus-remove %(d)s\n\u2728 Success" % {"d": submit_dir})
    return 0


def _salvage_log(condor_log):
    """Keep the previous run's condor log as <log>.NNN, as pegasus-run does."""
    if condor_log and os.path.exists(condor_log):
        for i in range(1000):
            target = "%s.%03d" % (condor_log, i)
            if not os.path.exists(target):
                shutil.copyfile(condor_log, target)
                sys.stderr.write("Rescued %s as %s\n" % (condor_log, target))
                return


def remove_main(argv):
    args = _parser("pegasus-remove").parse_args(argv)
    loaded = _load(args.submit_dir)
    if not loaded:
        return 1
    submit_dir, bd = loaded
    run = out.last_run(osutil.read_text(os.path.join(submit_dir, bd.get("dag", "") + ".dagman.out")))
    schedd = Schedd()
    if run and run["id"]:
        cluster = int(float(run["id"]))
    else:  # not started yet: find the idle DAGMan job by its workflow uuid (sim convenience)
        idle = [ad for ad in schedd.active() if ad.get("pegasus_wf_uuid") == bd.get("wf_uuid")
                and ad.get("pegasus_wf_xformation") == "pegasus::dagman"]
        if not idle:
            print(RED_ERROR + "Unable to determine the DAGMan job id of %s" % submit_dir)
            return 42
        cluster = idle[-1]["ClusterId"]
    if not schedd.remove(cluster):
        print(RED_ERROR + "Couldn't find/remove all jobs in cluster %d" % cluster)
        return 42
    print("All jobs in cluster %d have been marked for removal\n\u2728 Success" % cluster)
    return 0


def halt_main(argv):
    args = _parser("pegasus-halt").parse_args(argv)
    loaded = _load(args.submit_dir)
    if not loaded:
        return 1
    for dag in glob.glob(os.path.join(loaded[0], "**", "*.dag"), recursive=True):
        open(dag + ".halt", "a").close()
    print("The workflow will gracefully exit once all current jobs have finished.")
    return 0

