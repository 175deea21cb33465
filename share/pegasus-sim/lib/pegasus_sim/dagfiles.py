"""The files a planner leaves for HTCondor: <wf>.dag, <wf>.dag.condor.sub, 00/00/<job>.sub.

Shapes follow the real 5.0.5 samples (pegasus-facts.md 2.2).
"""

import os

from . import staticbp

TRANSFORMATIONS = ("sim::preprocess", "sim::findrange", "sim::analyze")
DAGMAN_XFORMATION = "condor::dagman"


def node_names(label, count, site, subworkflows=0):
    """[(node, site)]: create-dir, compute jobs, sub-workflow (dag) jobs, cleanup, like a small real plan."""
    count = max(1, count)
    compute = ["sim_ID%07d" % i for i in range(1, count + 1)]
    if count >= 2:
        compute = ["create_dir_%s_0_local" % label] + compute[:count - 1]
    subs = ["pegasus-plan_ID%07d" % (count + i) for i in range(1, subworkflows + 1)]
    if count >= 3:
        compute, cleanup = compute[:-1], ["cleanup_%s_0_local" % label]
    else:
        cleanup = []
    return [(n, "local" if n.endswith("_local") or n in subs else site) for n in compute + subs + cleanup]


def job_type(name):
    """(STAMPEDE type_desc, transformation, task id or None) of a node the planner named."""
    if name.startswith("create_dir_"):
        return "create-dir", "pegasus::dirmanager", None
    if name.startswith("cleanup_"):
        return "cleanup", "pegasus::cleanup", None
    if name.startswith("pegasus-plan_"):
        return "dag", DAGMAN_XFORMATION, None
    task = name.rsplit("_", 1)[-1]
    digits = task[2:]
    index = int(digits) if digits.isdigit() else 0
    return "compute", TRANSFORMATIONS[(index - 1) % len(TRANSFORMATIONS)], task


class Job:
    """One DAG node as the planner describes it in static.bp (and the sim's own monitord reads it back)."""

    __slots__ = ("name", "type_desc", "transformation", "task_id", "executable", "argv", "max_retries")

    def __init__(self, name, type_desc, transformation, task_id, executable, argv, max_retries=0):
        self.name, self.type_desc, self.transformation = name, type_desc, transformation
        self.task_id, self.executable, self.argv, self.max_retries = task_id, executable, argv, max_retries


def jobs_of(nodes, bindir, retries=0):
    """[Job] of the planned nodes: compute jobs run /bin/true on one task, sub-workflow jobs a DAGMan."""
    jobs = []
    for name, _ in nodes:
        type_desc, xformation, task = job_type(name)
        executable = "%s/pegasus-sim-dagman" % bindir if type_desc == "dag" else "/bin/true"
        argv = dag_arguments(name) if type_desc == "dag" else ("-i f.a -o f.%s" % task[-1].lower() if task else None)
        jobs.append(Job(name, type_desc, xformation, task, executable, argv, retries))
    return jobs


def dag_arguments(name):
    return "-p 0 -f -l . -Dag %s-0.dag" % subworkflow_label(name)


def subworkflow_label(name):
    """sub-workflow node pegasus-plan_ID0000005 -> the label of the workflow it runs (sub5)."""
    return "sub%d" % int(name.rsplit("ID", 1)[-1])


def dag_text(label, nodes, bindir, retries=0):
    lines = ["######################################################################",
             "# PEGASUS WMS GENERATED DAG FILE", "# DAG %s" % label, "# Index = 0, Count = null",
             "######################################################################",
             "MAXJOBS cleanup 4", ""]
    for name, _ in nodes:
        lines += ["JOB %s 00/00/%s.sub" % (name, name),
                  "SCRIPT POST %s %s/pegasus-exitcode  -r $RETURN -l %s-0.exitcode.log -M %s-0.cache.meta"
                  " -N    .//00/00/%s.out" % (name, bindir, label, label, name),
                  "PRIORITY %s %d" % (name, 10),
                  "RETRY %s %d" % (name, retries),
                  'VARS %s +DAGNodeRetry="$(RETRY)"' % name, ""]
    lines += ["PARENT  %s CHILD %s" % (a[0], b[0]) for a, b in zip(nodes, nodes[1:])]
    lines += ["######################################################################", "# End of DAG",
              "######################################################################"]
    return "\n".join(lines) + "\n"


def job_sub_text(bd, name, site):
    submit_dir = bd["submit_dir"]
    type_desc, xformation, task = job_type(name)
    attrs = [("pegasus_generator", '"Pegasus"'), ("pegasus_root_wf_uuid", '"%s"' % bd["root_wf_uuid"]),
             ("pegasus_wf_uuid", '"%s"' % bd["wf_uuid"]), ("pegasus_version", '"%s"' % bd["planner_version"]),
             ("pegasus_wf_name", '"%s"' % bd["pegasus_wf_name"]), ("pegasus_wf_time", '"%s"' % bd["timestamp"]),
             ("pegasus_wf_xformation", '"%s"' % xformation),
             ("pegasus_wf_dag_job_id", '"%s"' % name), ("pegasus_wf_dax_job_id", '"%s"' % (task or "null")),
             ("pegasus_job_class", "11" if type_desc == "dag" else "1"), ("pegasus_site", '"%s"' % site)]
    lines = ["######################################################################",
             "# PEGASUS WMS GENERATED SUBMIT FILE",
             "# DAG : %s, Index = 0, Count = null" % bd["dax_label"],
             "# SUBMIT FILE NAME : %s.sub" % name,
             "######################################################################",
             "error = %s//00/00/%s.err" % (submit_dir, name)]
    if type_desc == "dag":
        sub_dir = "%s/00/00/%s_%s" % (submit_dir, subworkflow_label(name), name.rsplit("_", 1)[-1])
        lines += ["executable = %s/pegasus-sim-dagman" % bd["bindir"],
                  'arguments = "%s"' % dag_arguments(name),
                  "initialdir = %s" % sub_dir,
                  'environment = "_CONDOR_DAGMAN_LOG=%s/%s-0.dag.dagman.out"' % (sub_dir, subworkflow_label(name))]
    else:
        lines += ["executable = /bin/true"]
    lines += ["log = %s/%s" % (submit_dir, bd["condor_log"]),
              "notification = NEVER",
              "output = %s//00/00/%s.out" % (submit_dir, name),
              "universe = %s" % ("local" if site == "local" else "vanilla")]
    lines += ["+%s = %s" % kv for kv in attrs]
    lines += ["queue", "######################################################################",
              "# END OF SUBMIT FILE", "######################################################################"]
    return "\n".join(lines) + "\n"


def dagman_sub_text(dag, bindir, appended=""):
    """What `condor_submit_dag -no_submit [-append ...] <dag>` writes; runs the simulated DAGMan."""
    return "".join(line + "\n" for line in [
        "# Filename: %s.condor.sub" % dag,
        "# Generated by condor_submit_dag %s" % dag,
        "universe\t= scheduler",
        "executable\t= %s/pegasus-sim-dagman" % bindir,
        "getenv\t\t= True",
        "output\t\t= %s.lib.out" % dag,
        "error\t\t= %s.lib.err" % dag,
        "log\t\t= %s.dagman.log" % dag,
        "remove_kill_sig\t= SIGUSR1",
        '+OtherJobRemoveRequirements\t= "DAGManJobId =?= $(cluster)"',
        "# Note: default on_exit_remove expression:",
        "# ( ExitSignal =?= 11 || (ExitCode =!= UNDEFINED && ExitCode >=0 && ExitCode <= 2))",
        "# attempts to ensure that DAGMan is automatically",
        "# requeued by the schedd if it exits abnormally or",
        "# is killed (e.g., during a reboot).",
        "on_exit_remove\t= (ExitSignal =?= 11 || (ExitCode =!= UNDEFINED && ExitCode >=0 && ExitCode <= 2))",
        "copy_to_spool\t= False",
        'arguments\t= "-p 0 -f -l . -Lockfile %s.lock -AutoRescue 1 -DoRescueFrom 0 -Dag %s -MaxPost 20'
        ' -Suppress_notification -Dagman %s/pegasus-sim-dagman"' % (dag, dag, bindir),
        'environment\t= "_CONDOR_MAX_DAGMAN_LOG=0 _CONDOR_DAGMAN_LOG=%s.dagman.out"' % dag]) + appended + "queue\n"


def pegasus_appended(bd, sites, bindir):
    """The `-append` lines pegasus-plan adds to the DAGMan submit file."""
    dag = bd["dag"]
    return "".join(line + "\n" for line in [
        "executable=%s/pegasus-sim-dagman" % bindir,
        '+pegasus_wf_uuid="%s"' % bd["wf_uuid"],
        '+pegasus_root_wf_uuid="%s"' % bd["root_wf_uuid"],
        '+pegasus_wf_name="%s"' % bd["pegasus_wf_name"],
        '+pegasus_wf_time="%s"' % bd["timestamp"],
        '+pegasus_version="%s"' % bd["planner_version"],
        "+pegasus_job_class=11",
        "+pegasus_cluster_size=1",
        '+pegasus_site="local"',
        '+pegasus_execution_sites="%s"' % sites,
        '+pegasus_wf_xformation="pegasus::dagman"',
        'environment\t= "_CONDOR_MAX_DAGMAN_LOG=0 _CONDOR_DAGMAN_LOG=%s.dagman.out PEGASUS_METRICS=false "' % dag])


def write_plan(submit_dir, bd, nodes, sites, bindir, retries=0):
    """All planner outputs except braindump.yml (written last, as the 'plan done' mark), static.bp included."""
    os.makedirs(os.path.join(submit_dir, "00", "00"), exist_ok=True)
    for name, site in nodes:
        with open(os.path.join(submit_dir, "00", "00", name + ".sub"), "w") as f:
            f.write(job_sub_text(bd, name, site))
    with open(os.path.join(submit_dir, bd["dag"]), "w") as f:
        f.write(dag_text(bd["dax_label"], nodes, bindir, retries))
    with open(os.path.join(submit_dir, bd["dag"] + ".condor.sub"), "w") as f:
        f.write(dagman_sub_text(bd["dag"], bindir, pegasus_appended(bd, sites, bindir)))
    open(os.path.join(submit_dir, bd["notify"]), "a").close()
    with open(staticbp.path_for(submit_dir, bd["dag"]), "w") as f:
        f.write(staticbp.text(bd["wf_uuid"], jobs_of(nodes, bindir, retries)))
