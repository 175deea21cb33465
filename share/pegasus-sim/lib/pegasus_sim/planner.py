"""pegasus-plan: allocate runNNNN, write the plan, print what the real planner prints.

Output formats: pegasus-facts.md section 1 (logger lines, SUCCESS_MESSAGE,
`pegasus-run  <dir>` with two spaces, --json object, --submit, exit codes).
"""

import json
import os
import random
import re
import subprocess
import sys
import time
import uuid

from . import PEGASUS_BUILD, PEGASUS_VERSION, braindump, dagfiles, knobs, osutil

SUCCESS_MESSAGE = ("\n\n\nI have concretized your abstract workflow. The workflow has been entered \n"
                   "into the workflow database with a state of \"planned\". The next step is \n"
                   "to start or execute your workflow. The invocation required is\n\n\n")

# Options of the real pegasus-plan that take a value; any other option is a flag.
VALUE_OPTIONS = {"--basename", "-b", "--bundle", "-B", "--cache", "-c", "--cluster", "-C", "--conf",
                 "--cleanup", "--dir", "-d", "--dax", "--forward", "-F", "--inherited-rc-files",
                 "--input-dir", "-I", "--output-dir", "-O", "--output-sites", "--output-site", "-o",
                 "--relative-dir", "-r", "--relative-submit-dir", "--sites", "-s", "--staging-site",
                 "--transformations-dir", "-t", "--job-prefix", "-g", "--group", "-X"}


class Usage(Exception):
    pass


def parse(argv):
    """(options {long name: value}, -D properties, workflow file or None)."""
    opts, props, positionals = {}, {}, []
    args = list(argv)
    while args:
        arg = args.pop(0)
        if arg.startswith("-D"):
            text = arg[2:] or (args.pop(0) if args else "")
            key, sep, value = text.partition("=")
            if not sep:
                raise Usage("-D expects key=value, got %r" % text)
            props[key.strip()] = value.strip()
        elif arg.startswith("-") and arg != "-":
            name, sep, value = arg.partition("=")
            if name in VALUE_OPTIONS and not sep:
                if not args:
                    raise Usage("option %s needs a value" % name)
                value = args.pop(0)
            opts[_long(name)] = value if (sep or name in VALUE_OPTIONS) else True
        else:
            positionals.append(arg)
    workflow = positionals[-1] if positionals else opts.get("--dax")
    return opts, props, workflow


def _long(name):
    return {"-d": "--dir", "-s": "--sites", "-o": "--output-sites", "-j": "--json", "-c": "--cache"}.get(name, name)


class Logger:
    """Pegasus's Java logger: `yyyy.MM.dd HH:mm:ss.SSS zzz: <prefix> <message>`."""

    def __init__(self, json_mode):
        self.out = sys.stderr if json_mode else sys.stdout

    @staticmethod
    def stamp():
        now = time.time()
        return "%s.%03d %s:" % (time.strftime("%Y.%m.%d %H:%M:%S", time.localtime(now)),
                                int(now * 1000) % 1000, time.strftime("%Z"))

    def console(self, message):
        self.out.write("%s  %s\n" % (self.stamp(), message))
        self.out.flush()

    def fatal(self, message):
        sys.stderr.write("%s [FATAL ERROR]  %s\n" % (self.stamp(), message))
        sys.stderr.flush()


def main(argv):
    started = time.time()
    try:
        opts, props, workflow = parse(argv)
    except Usage as e:
        Logger(False).fatal(str(e))
        return 1
    log = Logger(bool(opts.get("--json")))
    if opts.get("--conf") and os.path.isfile(opts["--conf"]):
        props = dict(braindump.read_properties(opts["--conf"]), **props)
    try:
        values = knobs.load(props)
    except ValueError as e:
        log.fatal(str(e))
        return 1
    if not workflow or not os.path.isfile(workflow):
        log.fatal("\n [1] java.lang.RuntimeException: Unable to read the workflow file %s "
                  "(does it exist?)" % (workflow or "(none given)"))
        return 1
    label = re.sub(r"[^A-Za-z0-9_-]", "_", os.path.splitext(os.path.basename(workflow))[0]) or "workflow"
    basedir = os.path.abspath(opts.get("--dir") or ".")
    submit_dir = allocate_run_dir(os.path.join(basedir, osutil.user(), "pegasus", label))
    time.sleep(max(0.0, values["PLAN_SECONDS"] - osutil.process_age()))
    if values["PLAN_FAIL"]:
        log.fatal("\n [1] java.lang.RuntimeException: simulated planner failure (PEGASUS_SIM_PLAN_FAIL) "
                  "for %s" % workflow)
        return values["PLAN_EXIT"]
    bd = write_submit_dir(submit_dir, basedir, os.path.abspath(workflow), label, props, opts, argv, values)
    return report(log, bd, opts, started)


def allocate_run_dir(parent):
    """mkdir is atomic, so concurrent planners of one label get distinct runNNNN."""
    os.makedirs(parent, exist_ok=True)
    taken = [int(n[3:]) for n in os.listdir(parent) if re.match(r"^run\d{4,}$", n)]
    n = max(taken, default=0) + 1
    while True:
        path = os.path.join(parent, "run%04d" % n)
        try:
            os.mkdir(path)
            return path
        except FileExistsError:
            n += 1


def write_submit_dir(submit_dir, basedir, workflow, label, props, opts, argv, values):
    sites = (opts.get("--sites") or "condorpool").split(",")[0]
    wf_uuid = str(uuid.uuid4())
    prop_file = "pegasus.%d.properties" % random.randrange(10 ** 18, 10 ** 19)
    bd = {
        "user": osutil.user(), "grid_dn": None, "submit_hostname": osutil.hostname(),
        "root_wf_uuid": wf_uuid, "wf_uuid": wf_uuid, "dax": workflow, "dax_label": label,
        "dax_index": "0", "dax_version": "5.0.4", "pegasus_wf_name": "%s-0" % label,
        "timestamp": time.strftime("%Y%m%dT%H%M%S%z"), "basedir": basedir, "submit_dir": submit_dir,
        "planner": osutil.tool("pegasus-plan"), "planner_version": PEGASUS_VERSION,
        "pegasus_build": PEGASUS_BUILD, "planner_arguments": '"%s "' % " ".join(argv),
        "jsd": "jobstate.log", "rundir": os.path.basename(submit_dir), "bindir": osutil.BINDIR,
        "vogroup": "pegasus", "uses_pmc": "false", "properties": prop_file,
        "condor_log": "%s-0.log" % label, "dag": "%s-0.dag" % label, "type": "dag",
        "notify": "%s-0.notify" % label,
    }
    braindump.write_properties(os.path.join(submit_dir, prop_file), props)
    nodes = dagfiles.node_names(label, values["JOBS"], sites, values["SUBWORKFLOWS"])
    dagfiles.write_plan(submit_dir, bd, nodes, sites, osutil.BINDIR, values["JOB_FAILURES"])
    braindump.write(submit_dir, bd)
    return bd


def report(log, bd, opts, started):
    """Success output: --json object, --submit relay of pegasus-run, or the pegasus-run line."""
    submit_dir = bd["submit_dir"]
    invocation = "pegasus-run " + ("--json " if opts.get("--json") else "") + " " + submit_dir
    code = 0
    if opts.get("--submit"):
        code = submit(log, submit_dir, bool(opts.get("--json")))
    elif not opts.get("--json"):
        log.console(SUCCESS_MESSAGE + invocation + "\n\n")
    if opts.get("--json"):
        sys.stdout.write(json.dumps(dict(bd, message=SUCCESS_MESSAGE, **{"pegasus-run": invocation}),
                                    indent=2) + "\n")
    log.console("Time taken to execute is %.3f seconds" % (time.time() - started))
    return code


def submit(log, submit_dir, json_mode):
    """--submit: run pegasus-run ourselves and re-log its output with timestamps."""
    argv = [sys.executable, osutil.tool("pegasus-run")] + (["--json"] if json_mode else []) + [submit_dir]
    proc = subprocess.run(argv, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, universal_newlines=True)
    for line in proc.stdout.splitlines():
        if not (json_mode and line.startswith("{")):
            log.console(line)
    if proc.returncode != 0:
        log.fatal("\n [1] java.lang.RuntimeException: Unable to submit the workflow using pegasus-run")
        return 1
    return 0
