"""The simulator's knobs: one table, read from -D properties and the environment.

Precedence, highest first: a property given to pegasus-plan with -D (recorded in
the submit dir's pegasus.<n>.properties, so pegasus-run and the DAGMan see it
too), then a property from the --conf file, then the environment variable, then
the default.  A property may be spelled as the variable (PEGASUS_SIM_RUN_FAIL)
or dotted (pegasus.sim.run.fail).
"""

import os
from collections import namedtuple

Knob = namedtuple("Knob", "name kind default help")

PREFIX = "PEGASUS_SIM_"

KNOBS = [
    Knob("PLAN_SECONDS", float, 0.0, "seconds pegasus-plan takes before it prints its result"),
    Knob("PLAN_FAIL", bool, False, "pegasus-plan fails with [FATAL ERROR] and no braindump.yml"),
    Knob("PLAN_EXIT", int, 1, "exit code of a failed pegasus-plan"),
    Knob("JOBS", int, 4, "number of jobs (DAG nodes, a chain) the planner generates"),
    Knob("RUN_SECONDS", float, 1.0, "seconds one DAGMan run takes for the whole DAG"),
    Knob("RUN_FAIL", bool, False, "every DAGMan run fails a job (DAG exit 1)"),
    Knob("RUN_FAIL_ATTEMPTS", int, 0, "the first N DAGMan runs fail a job, later (rescue) runs succeed"),
    Knob("PEGASUS_RUN_EXIT", int, 0, "pegasus-run exits with this code without submitting, if not 0"),
    Knob("DAGMAN_DIE", bool, False, "every DAGMan run dies abruptly after starting (sudden death)"),
    Knob("DAGMAN_DIE_ATTEMPTS", int, 0, "the first N DAGMan runs die abruptly after starting"),
    Knob("START_DELAY", float, 0.0, "seconds the DAGMan job sits idle in the schedd before STARTING UP"),
    Knob("SCHEDD_DELAY", float, 0.0, "seconds before the schedd starts the DAGMan job, counted in RUN_SECONDS,"
                                     " which the run then keeps by the clock (a real schedd: about 0.5)"),
    Knob("JOB_FAILURES", int, 0, "the failing-node slot's job fails its first N tries in a run, each retried"
                                 " by DAGMan (RETRY N); it then succeeds unless RUN_FAIL"),
    Knob("STALL_AT", int, 0, "the Nth job submission of a DAGMan run never ends (the run stays RUNNING until"
                             " condor_rm); 0: off"),
    Knob("SUBWORKFLOWS", int, 0, "number of sub-workflow (dag) nodes the planner adds before cleanup; each"
                                 " runs a 2-job workflow of its own"),
]

TRUE = ("1", "true", "yes", "on")
FALSE = ("", "0", "false", "no", "off")


def env_name(knob):
    return PREFIX + knob.name


def prop_name(knob):
    return "pegasus.sim." + knob.name.lower().replace("_", ".")


def convert(knob, text):
    """Parse one value; a malformed value is an error naming the knob."""
    text = str(text).strip()
    if knob.kind is bool:
        if text.lower() in TRUE:
            return True
        if text.lower() in FALSE:
            return False
        raise ValueError("%s: expected a boolean, got %r" % (env_name(knob), text))
    try:
        value = knob.kind(text)
    except ValueError:
        raise ValueError("%s: expected %s, got %r" % (env_name(knob), knob.kind.__name__, text))
    if value < 0:
        raise ValueError("%s: must not be negative, got %r" % (env_name(knob), text))
    return value


def load(props=None, environ=None):
    """All knob values as {NAME: value}; `props` are properties, highest precedence."""
    props = props or {}
    environ = os.environ if environ is None else environ
    values = {}
    for knob in KNOBS:
        raw = knob.default
        for source, key in ((props, prop_name(knob)), (props, env_name(knob)),
                            (environ, env_name(knob))):
            if key in source:
                raw = source[key]
                break
        values[knob.name] = convert(knob, raw)
    return values


def attempt_fails(values, attempt, what):
    """Does DAGMan run number `attempt` (1-based) trip RUN_FAIL or DAGMAN_DIE?"""
    return values[what] or attempt <= values[what + "_ATTEMPTS"]
