"""condor_submit, condor_q, condor_rm, condor_hold, condor_release, condor_submit_dag
against the fake schedd (schedd.py), with the real tools' messages."""

import argparse
import json
import os
import sys
import time

from . import dagfiles, osutil
from .schedd import Schedd, matches

ST = {1: "I", 2: "R", 3: "X", 4: "C", 5: "H"}


def submit_main(argv):
    p = argparse.ArgumentParser(prog="condor_submit")
    p.add_argument("-terse", action="store_true")
    p.add_argument("subfile")
    args, _ = p.parse_known_args(argv)
    try:
        cluster = Schedd().submit(args.subfile)
    except OSError as e:
        sys.stderr.write("\nERROR: %s\n" % e)
        return 1
    print("%d.0 - %d.0" % (cluster, cluster) if args.terse
          else "Submitting job(s).\n1 job(s) submitted to cluster %d." % cluster)
    return 0


def q_main(argv):
    p = argparse.ArgumentParser(prog="condor_q")
    p.add_argument("-json", action="store_true")
    p.add_argument("-constraint", "-const", dest="constraint")
    p.add_argument("-af", "-autoformat", dest="af", nargs="+")
    p.add_argument("-nobatch", action="store_true")
    p.add_argument("ids", nargs="*")
    args = p.parse_args(argv)
    try:
        ads = [ad for ad in Schedd().active() if _selected(ad, args.ids) and matches(ad, args.constraint)]
    except ValueError as e:
        sys.stderr.write("Error: %s\n" % e)
        return 1
    if args.af:
        for ad in ads:
            lowered = {k.lower(): v for k, v in ad.items()}
            print(" ".join(str(lowered.get(a.lower(), "undefined")) for a in args.af))
    elif args.json:
        if ads:  # like condor_q, print nothing at all when nothing matches
            print(json.dumps(ads, indent=2, sort_keys=True))
    else:
        print(_table(ads))
    return 0


def _selected(ad, ids):
    return not ids or any(str(ad["ClusterId"]) == i.split(".")[0] for i in ids)


def _table(ads):
    lines = ["", "-- Schedd: pegasus-sim@%s : <127.0.0.1:9618?sim> @ %s" % (
        osutil.hostname(), time.strftime("%m/%d/%y %H:%M:%S")),
        " ID      OWNER            SUBMITTED     RUN_TIME ST PRI SIZE CMD"]
    for ad in ads:
        run = int(time.time() - ad.get("QDate", time.time()))
        lines.append("%4d.0   %-14s %s %3d+%02d:%02d:%02d %s  0    0.0 %s %s" % (
            ad["ClusterId"], ad.get("Owner", ""), time.strftime("%m/%d %H:%M", time.localtime(ad.get("QDate"))),
            run // 86400, run % 86400 // 3600, run % 3600 // 60, run % 60, ST.get(ad["JobStatus"], "?"),
            os.path.basename(ad.get("Cmd", "")), ad.get("Args", "")[:40]))
    count = {s: sum(1 for ad in ads if ad["JobStatus"] == s) for s in ST}
    lines += ["", "Total for query: %d jobs; 0 completed, 0 removed, %d idle, %d running, %d held, 0 suspended"
              % (len(ads), count[1], count[2], count[5])]
    return "\n".join(lines)


def _act(argv, prog, action, done_text):
    """condor_rm / condor_hold / condor_release: one verb applied to cluster ids."""
    p = argparse.ArgumentParser(prog=prog)
    p.add_argument("ids", nargs="+")
    args = p.parse_args(argv)
    schedd, rc = Schedd(), 0
    for job in args.ids:
        try:
            cluster = int(job.split(".")[0])
        except ValueError:
            sys.stderr.write("%s: bad job id %r\n" % (prog, job))
            return 1
        if getattr(schedd, action)(cluster):
            print("All jobs in cluster %d have been %s" % (cluster, done_text))
        else:
            print("Couldn't find/%s all jobs in cluster %d" % (prog.split("_")[1], cluster))
            rc = 1
    return rc


def rm_main(argv):
    return _act(argv, "condor_rm", "remove", "marked for removal")


def hold_main(argv):
    return _act(argv, "condor_hold", "hold", "held")


def release_main(argv):
    return _act(argv, "condor_release", "release", "released")


def submit_dag_main(argv):
    p = argparse.ArgumentParser(prog="condor_submit_dag")
    p.add_argument("-no_submit", action="store_true")
    p.add_argument("-f", "-force", dest="force", action="store_true")
    p.add_argument("-append", action="append", default=[])
    p.add_argument("dag")
    args, _ = p.parse_known_args(argv)
    sub = args.dag + ".condor.sub"
    if os.path.exists(sub) and not args.force:
        print("ERROR: \"%s\" already exists.\nSubmit file not written; use -f to overwrite." % sub)
        return 1
    appended = "".join(line + "\n" for line in args.append)
    with open(sub, "w") as f:
        f.write(dagfiles.dagman_sub_text(args.dag, osutil.BINDIR, appended))
    print("\n-----------------------------------------------------------------------")
    for what, suffix in (("File for submitting this DAG to HTCondor          ", ".condor.sub"),
                         ("Log of DAGMan debugging messages                ", ".dagman.out"),
                         ("Log of HTCondor library output                    ", ".lib.out"),
                         ("Log of HTCondor library error messages            ", ".lib.err"),
                         ("Log of the life of condor_dagman itself         ", ".dagman.log")):
        print("%s : %s%s" % (what, args.dag, suffix))
    print()
    if args.no_submit:
        print("-no_submit given, not submitting DAG to HTCondor.  You can do this with:\n"
              "\"condor_submit %s\"" % sub)
        rc = 0
    else:
        rc = submit_main([sub])
    print("-----------------------------------------------------------------------")
    return rc
