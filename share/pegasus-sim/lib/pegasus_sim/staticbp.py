"""`<dag stem>.static.bp`: the planner's netlogger description of a workflow.

pegasus-monitord loads it before anything else (the tasks, jobs, their edges and
the task-to-job map), and refuses a submit dir without it.  Lines are netlogger
BP: `ts=<ISO Z> event=<name> xwf.id=<uuid> key="value" ...`, as in the real
5.0.5 samples.  The simulator's own monitord reads the same file back, so both
writers load one description of the workflow.
"""

import os
import re
import time

# Pegasus's job type numbers (type_desc -> type), as the planner writes them.
JOB_TYPES = {"compute": 1, "stage-in-tx": 2, "stage-out-tx": 3, "registration": 4, "inter-site-tx": 5,
             "create-dir": 6, "staged-compute": 7, "cleanup": 8, "chmod": 9, "dax": 10, "dag": 11}
FIELD = re.compile(r'([\w.]+)=(?:"((?:[^"\\]|\\.)*)"|(\S+))')


def path_for(submit_dir, dag):
    """monitord's rule: the DAG file name without its extension, plus .static.bp."""
    return os.path.join(submit_dir, os.path.splitext(dag)[0] + ".static.bp")


def _line(event, wf_uuid, **fields):
    now = time.time()
    stamp = time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(now)) + ".%06dZ" % (int(now * 1e6) % 1000000)
    values = "".join(' %s="%s"' % (k.replace("__", "."), str(v).replace('"', '\\"'))
                     for k, v in fields.items() if v is not None)
    return "ts=%s event=%s xwf.id=%s%s\n" % (stamp, event, wf_uuid, values)


def text(wf_uuid, jobs):
    """The file for `jobs` (stampede.Job, in DAG order, run as a chain)."""
    tasks = [j for j in jobs if j.task_id]
    lines = [_line("task.info", wf_uuid, task__id=j.task_id, type=JOB_TYPES[j.type_desc],
                   type_desc=j.type_desc, transformation=j.transformation, argv=j.argv) for j in tasks]
    lines += [_line("task.edge", wf_uuid, parent__task__id=a.task_id, child__task__id=b.task_id)
              for a, b in zip(tasks, tasks[1:])]
    lines += [_line("static.meta.start", wf_uuid), _line("xwf.meta", wf_uuid, key="wf.api", value="python"),
              _line("static.meta.end", wf_uuid)]
    lines += [_line("job.info", wf_uuid, job__id=j.name, submit_file="00/00/%s.sub" % j.name,
                    type=JOB_TYPES[j.type_desc], type_desc=j.type_desc, clustered=0,
                    max_retries=j.max_retries, executable=j.executable, argv=j.argv,
                    task_count=1 if j.task_id else 0) for j in jobs]
    lines += [_line("wf.map.task_job", wf_uuid, job__id=j.name, task__id=j.task_id) for j in tasks]
    lines += [_line("job.edge", wf_uuid, parent__job__id=a.name, child__job__id=b.name)
              for a, b in zip(jobs, jobs[1:])]
    return "".join(lines)


def parse(content):
    """[(event, {key: value})] of a static.bp text (keys as written, e.g. job.id)."""
    events = []
    for line in content.splitlines():
        fields = {m.group(1): m.group(2).replace('\\"', '"') if m.group(2) is not None else m.group(3)
                  for m in FIELD.finditer(line)}
        if "event" in fields:
            events.append((fields.pop("event"), fields))
    return events
