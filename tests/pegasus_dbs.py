"""Pegasus databases made with Pegasus's own schema, for the monitoring API tests.

`PEGASUS_DDL` is the schema Pegasus 5.1.3 creates (`pegasus-db-admin create`, SQLAlchemy
1.3.24; pegasus-facts §3.1-3.2): every Pegasus database, master or STAMPEDE, gets all of
it.  `make_home(home)` writes ~/.pegasus/workflow.db and one STAMPEDE database holding
what the tests need: a root workflow with a sub-workflow, jobs in every state (one
retried to success, one failing after two failed tries, a clustered one, a sub-workflow
job, an unsubmitted one), hosts, tasks, invocations, metadata and files with several
PFNs; an archived root workflow whose STAMPEDE database is gone; one never started.
Times carry fractions so that NUMERIC columns show as monitord leaves them.
"""

import os
import sqlite3

PEGASUS_DDL = """
CREATE TABLE dbversion (
  id INTEGER NOT NULL PRIMARY KEY AUTOINCREMENT,
  version_number INTEGER,
  version VARCHAR(50) NOT NULL,
  version_timestamp INTEGER NOT NULL
);
CREATE TABLE workflow (
  wf_id INTEGER NOT NULL,
  wf_uuid VARCHAR(255) NOT NULL,
  dag_file_name VARCHAR(255),
  timestamp NUMERIC(16, 6),
  submit_hostname VARCHAR(255),
  submit_dir TEXT,
  planner_arguments TEXT,
  user VARCHAR(255),
  grid_dn VARCHAR(255),
  planner_version VARCHAR(255),
  dax_label VARCHAR(255),
  dax_version VARCHAR(255),
  dax_file VARCHAR(255),
  db_url TEXT,
  parent_wf_id INTEGER,
  root_wf_id INTEGER,
  PRIMARY KEY (wf_id),
  FOREIGN KEY(parent_wf_id) REFERENCES workflow (wf_id) ON DELETE CASCADE,
  CONSTRAINT "UNIQUE_WF_UUID" UNIQUE (wf_uuid)
);
CREATE TABLE rc_lfn (
  lfn_id INTEGER NOT NULL,
  lfn VARCHAR(245) NOT NULL,
  PRIMARY KEY (lfn_id),
  CONSTRAINT "UNIQUE_LFN" UNIQUE (lfn)
);
CREATE TABLE master_workflow (
  wf_id INTEGER NOT NULL,
  wf_uuid VARCHAR(255) NOT NULL,
  dax_label VARCHAR(255),
  dax_version VARCHAR(255),
  dax_file VARCHAR(255),
  dag_file_name VARCHAR(255),
  timestamp NUMERIC(16, 6),
  submit_hostname VARCHAR(255),
  submit_dir TEXT,
  planner_arguments TEXT,
  user VARCHAR(255),
  grid_dn VARCHAR(255),
  planner_version VARCHAR(255),
  db_url TEXT,
  archived BOOLEAN NOT NULL,
  PRIMARY KEY (wf_id),
  CHECK (archived IN (0, 1)),
  CONSTRAINT "UNIQUE_MASTER_WF_UUID" UNIQUE (wf_uuid)
);
CREATE TABLE ensemble (
  id INTEGER NOT NULL,
  name VARCHAR(100) NOT NULL,
  created DATETIME NOT NULL,
  updated DATETIME NOT NULL,
  state VARCHAR(6) NOT NULL,
  max_running INTEGER NOT NULL,
  max_planning INTEGER NOT NULL,
  username VARCHAR(100) NOT NULL,
  PRIMARY KEY (id),
  CONSTRAINT ensemble_state CHECK (state IN ('HELD', 'ACTIVE', 'PAUSED')),
  CONSTRAINT "UNIQUE_ENSEMBLE" UNIQUE (name, username)
);
CREATE TABLE workflowstate (
  wf_id INTEGER NOT NULL,
  state VARCHAR(19) NOT NULL,
  timestamp NUMERIC(16, 6) NOT NULL,
  restart_count INTEGER NOT NULL,
  status INTEGER,
  reason TEXT,
  PRIMARY KEY (wf_id, state, timestamp),
  FOREIGN KEY(wf_id) REFERENCES workflow (wf_id) ON DELETE CASCADE,
  CONSTRAINT workflow_state CHECK (state IN ('WORKFLOW_STARTED', 'WORKFLOW_TERMINATED'))
);
CREATE INDEX "workflowstate_timestamp_COL" ON workflowstate (timestamp);
CREATE TABLE workflow_meta (
  wf_id INTEGER NOT NULL,
  "key" VARCHAR(255) NOT NULL,
  value VARCHAR(255) NOT NULL,
  PRIMARY KEY (wf_id, "key"),
  FOREIGN KEY(wf_id) REFERENCES workflow (wf_id) ON DELETE CASCADE
);
CREATE TABLE host (
  host_id INTEGER NOT NULL,
  wf_id INTEGER NOT NULL,
  site VARCHAR(255) NOT NULL,
  hostname VARCHAR(255) NOT NULL,
  ip VARCHAR(255) NOT NULL,
  uname VARCHAR(255),
  total_memory INTEGER,
  PRIMARY KEY (host_id),
  FOREIGN KEY(wf_id) REFERENCES workflow (wf_id) ON DELETE CASCADE,
  CONSTRAINT "UNIQUE_HOST" UNIQUE (wf_id, site, hostname, ip)
);
CREATE TABLE job (
  job_id INTEGER NOT NULL,
  wf_id INTEGER NOT NULL,
  exec_job_id VARCHAR(255) NOT NULL,
  submit_file VARCHAR(255) NOT NULL,
  type_desc VARCHAR(14) NOT NULL,
  clustered BOOLEAN NOT NULL,
  max_retries INTEGER NOT NULL,
  executable TEXT NOT NULL,
  argv TEXT,
  task_count INTEGER NOT NULL,
  PRIMARY KEY (job_id),
  FOREIGN KEY(wf_id) REFERENCES workflow (wf_id) ON DELETE CASCADE,
  CONSTRAINT job_type_desc CHECK (type_desc IN ('unknown', 'compute', 'stage-in-tx',
    'stage-out-tx', 'registration', 'inter-site-tx', 'create-dir', 'staged-compute', 'cleanup',
    'chmod', 'dax', 'dag')),
  CHECK (clustered IN (0, 1)),
  CONSTRAINT "UNIQUE_JOB" UNIQUE (wf_id, exec_job_id)
);
CREATE INDEX "job_exec_job_id_COL" ON job (exec_job_id);
CREATE INDEX "job_type_desc_COL" ON job (type_desc);
CREATE TABLE job_edge (
  wf_id INTEGER NOT NULL,
  parent_exec_job_id VARCHAR(255) NOT NULL,
  child_exec_job_id VARCHAR(255) NOT NULL,
  PRIMARY KEY (wf_id, parent_exec_job_id, child_exec_job_id),
  FOREIGN KEY(wf_id) REFERENCES workflow (wf_id) ON DELETE CASCADE
);
CREATE TABLE task_edge (
  wf_id INTEGER NOT NULL,
  parent_abs_task_id VARCHAR(255) NOT NULL,
  child_abs_task_id VARCHAR(255) NOT NULL,
  PRIMARY KEY (wf_id, parent_abs_task_id, child_abs_task_id),
  FOREIGN KEY(wf_id) REFERENCES workflow (wf_id) ON DELETE CASCADE
);
CREATE TABLE rc_pfn (
  pfn_id INTEGER NOT NULL,
  lfn_id INTEGER NOT NULL,
  pfn VARCHAR(245) NOT NULL,
  site VARCHAR(245),
  PRIMARY KEY (pfn_id),
  FOREIGN KEY(lfn_id) REFERENCES rc_lfn (lfn_id) ON DELETE CASCADE,
  CONSTRAINT "UNIQUE_PFN" UNIQUE (lfn_id, pfn, site)
);
CREATE TABLE rc_meta (
  lfn_id INTEGER NOT NULL,
  "key" VARCHAR(245) NOT NULL,
  value VARCHAR(245) NOT NULL,
  PRIMARY KEY (lfn_id, "key"),
  FOREIGN KEY(lfn_id) REFERENCES rc_lfn (lfn_id) ON DELETE CASCADE
);
CREATE TABLE master_workflowstate (
  wf_id INTEGER NOT NULL,
  state VARCHAR(19) NOT NULL,
  timestamp NUMERIC(16, 6) NOT NULL,
  restart_count INTEGER NOT NULL,
  status INTEGER,
  reason TEXT,
  PRIMARY KEY (wf_id, state, timestamp),
  FOREIGN KEY(wf_id) REFERENCES master_workflow (wf_id) ON DELETE CASCADE,
  CONSTRAINT master_workflow_state CHECK (state IN ('WORKFLOW_STARTED', 'WORKFLOW_TERMINATED'))
);
CREATE TABLE ensemble_workflow (
  id INTEGER NOT NULL,
  ensemble_id INTEGER NOT NULL,
  name VARCHAR(100) NOT NULL,
  basedir VARCHAR(512) NOT NULL,
  created DATETIME NOT NULL,
  updated DATETIME NOT NULL,
  state VARCHAR(11) NOT NULL,
  priority INTEGER NOT NULL,
  wf_uuid VARCHAR(36),
  submitdir VARCHAR(512),
  plan_command VARCHAR(1024) NOT NULL,
  PRIMARY KEY (id),
  FOREIGN KEY(ensemble_id) REFERENCES ensemble (id),
  CONSTRAINT ensemble_wf_state CHECK (state IN ('SUCCESSFUL', 'FAILED', 'RUN_FAILED',
    'PLAN_FAILED', 'QUEUED', 'READY', 'RUNNING', 'ABORTED', 'PLANNING')),
  CONSTRAINT "UNIQUE_ENSEMBLE_WORKFLOW" UNIQUE (ensemble_id, name)
);
CREATE TABLE IF NOT EXISTS "trigger" (
  id INTEGER NOT NULL,
  ensemble_id INTEGER NOT NULL,
  name VARCHAR(100) NOT NULL,
  state VARCHAR(7) NOT NULL,
  workflow TEXT NOT NULL,
  args TEXT,
  type VARCHAR(12) NOT NULL,
  PRIMARY KEY (id),
  FOREIGN KEY(ensemble_id) REFERENCES ensemble (id),
  CONSTRAINT trigger_state CHECK (state IN ('FAILED', 'RUNNING', 'READY', 'STOPPED')),
  CONSTRAINT trigger_type CHECK (type IN ('CRON', 'FILE_PATTERN')),
  CONSTRAINT "UNIQUE_TRIGGER" UNIQUE (ensemble_id, name)
);
CREATE TABLE job_instance (
  job_instance_id INTEGER NOT NULL,
  job_id INTEGER NOT NULL,
  host_id INTEGER,
  job_submit_seq INTEGER NOT NULL,
  sched_id VARCHAR(255),
  site VARCHAR(255),
  user VARCHAR(255),
  work_dir TEXT,
  cluster_start NUMERIC(16, 6),
  cluster_duration NUMERIC(10, 3),
  local_duration NUMERIC(10, 3),
  subwf_id INTEGER,
  stdout_file VARCHAR(255),
  stdout_text TEXT,
  stderr_file VARCHAR(255),
  stderr_text TEXT,
  stdin_file VARCHAR(255),
  multiplier_factor INTEGER NOT NULL,
  exitcode INTEGER,
  PRIMARY KEY (job_instance_id),
  FOREIGN KEY(job_id) REFERENCES job (job_id) ON DELETE CASCADE,
  FOREIGN KEY(host_id) REFERENCES host (host_id) ON DELETE SET NULL,
  FOREIGN KEY(subwf_id) REFERENCES workflow (wf_id) ON DELETE SET NULL,
  CONSTRAINT "UNIQUE_JOB_INSTANCE" UNIQUE (job_id, job_submit_seq)
);
CREATE TABLE task (
  task_id INTEGER NOT NULL,
  wf_id INTEGER NOT NULL,
  job_id INTEGER,
  abs_task_id VARCHAR(255) NOT NULL,
  transformation TEXT NOT NULL,
  argv TEXT,
  type_desc VARCHAR(255) NOT NULL,
  PRIMARY KEY (task_id),
  FOREIGN KEY(wf_id) REFERENCES workflow (wf_id) ON DELETE CASCADE,
  FOREIGN KEY(job_id) REFERENCES job (job_id) ON DELETE SET NULL,
  CONSTRAINT "UNIQUE_TASK" UNIQUE (wf_id, abs_task_id)
);
CREATE INDEX "task_abs_task_id_COL" ON task (abs_task_id);
CREATE INDEX "task_wf_id_COL" ON task (wf_id);
CREATE TABLE jobstate (
  job_instance_id INTEGER NOT NULL,
  state VARCHAR(255) NOT NULL,
  timestamp NUMERIC(16, 6) NOT NULL,
  jobstate_submit_seq INTEGER NOT NULL,
  reason TEXT,
  PRIMARY KEY (job_instance_id, state, timestamp, jobstate_submit_seq),
  FOREIGN KEY(job_instance_id) REFERENCES job_instance (job_instance_id) ON DELETE CASCADE
);
CREATE INDEX "jobstate_jobstate_submit_seq_COL" ON jobstate (jobstate_submit_seq);
CREATE TABLE tag (
  tag_id INTEGER NOT NULL,
  wf_id INTEGER NOT NULL,
  job_instance_id INTEGER NOT NULL,
  name VARCHAR(255) NOT NULL,
  count INTEGER NOT NULL,
  PRIMARY KEY (tag_id),
  FOREIGN KEY(wf_id) REFERENCES workflow (wf_id) ON DELETE CASCADE,
  FOREIGN KEY(job_instance_id) REFERENCES job_instance (job_instance_id) ON DELETE CASCADE,
  CONSTRAINT "UNIQUE_TAG" UNIQUE (wf_id, job_instance_id)
);
CREATE TABLE task_meta (
  task_id INTEGER NOT NULL,
  "key" VARCHAR(255) NOT NULL,
  value VARCHAR(255) NOT NULL,
  PRIMARY KEY (task_id, "key"),
  FOREIGN KEY(task_id) REFERENCES task (task_id) ON DELETE CASCADE
);
CREATE TABLE invocation (
  invocation_id INTEGER NOT NULL,
  wf_id INTEGER NOT NULL,
  job_instance_id INTEGER NOT NULL,
  task_submit_seq INTEGER NOT NULL,
  start_time NUMERIC(16, 6) NOT NULL,
  remote_duration NUMERIC(10, 3) NOT NULL,
  remote_cpu_time NUMERIC(10, 3),
  exitcode INTEGER NOT NULL,
  transformation TEXT NOT NULL,
  executable TEXT NOT NULL,
  argv TEXT,
  abs_task_id VARCHAR(255),
  maxrss INTEGER,
  avg_cpu NUMERIC(16, 6),
  PRIMARY KEY (invocation_id),
  FOREIGN KEY(wf_id) REFERENCES workflow (wf_id) ON DELETE CASCADE,
  FOREIGN KEY(job_instance_id) REFERENCES job_instance (job_instance_id) ON DELETE CASCADE,
  CONSTRAINT "UNIQUE_INVOCATION" UNIQUE (job_instance_id, task_submit_seq)
);
CREATE INDEX "invoc_abs_task_id_COL" ON invocation (abs_task_id);
CREATE INDEX "invoc_wf_id_COL" ON invocation (wf_id);
CREATE TABLE integrity (
  integrity_id INTEGER NOT NULL,
  wf_id INTEGER NOT NULL,
  job_instance_id INTEGER NOT NULL,
  type VARCHAR(7) NOT NULL,
  file_type VARCHAR(6),
  count INTEGER NOT NULL,
  duration NUMERIC(10, 3) NOT NULL,
  PRIMARY KEY (integrity_id),
  FOREIGN KEY(wf_id) REFERENCES workflow (wf_id) ON DELETE CASCADE,
  FOREIGN KEY(job_instance_id) REFERENCES job_instance (job_instance_id) ON DELETE CASCADE,
  CONSTRAINT integrity_type_desc CHECK (type IN ('check', 'compute')),
  CONSTRAINT integrity_file_type_desc CHECK (file_type IN ('input', 'output')),
  CONSTRAINT "UNIQUE_INTEGRITY" UNIQUE (job_instance_id, type, file_type)
);
CREATE TABLE workflow_files (
  wf_id INTEGER NOT NULL,
  task_id INTEGER NOT NULL,
  lfn_id INTEGER NOT NULL,
  file_type VARCHAR(255),
  PRIMARY KEY (wf_id, task_id, lfn_id),
  FOREIGN KEY(wf_id) REFERENCES workflow (wf_id) ON DELETE CASCADE,
  FOREIGN KEY(task_id) REFERENCES task (task_id) ON DELETE CASCADE,
  FOREIGN KEY(lfn_id) REFERENCES rc_lfn (lfn_id) ON DELETE CASCADE
);
"""

ROOT_UUID = "0f4a3d52-0000-4000-8000-00000000000a"
ARCHIVED_UUID = "0f4a3d52-0000-4000-8000-00000000000b"
NEVER_STARTED_UUID = "0f4a3d52-0000-4000-8000-00000000000c"
SUB_UUID = "0f4a3d52-0000-4000-8000-00000000000d"
T0 = 1700000000.5
PRECISE = 1700000500.123456  # more digits than SQLite's JSON keeps of a REAL (15)


def create(path):
    """An empty Pegasus database at `path`, as `pegasus-db-admin create` leaves it."""
    with sqlite3.connect(path) as db:
        db.executescript(PEGASUS_DDL)
        db.execute("INSERT INTO dbversion (version_number, version, version_timestamp) "
                   "VALUES (14, '14', 1677911024)")
    return path


def insert(db, table, columns, rows):
    marks = ", ".join("?" * len(columns.split(",")))
    db.executemany('INSERT INTO "%s" (%s) VALUES (%s)' % (table, columns, marks), rows)


def make_home(home):
    """~/.pegasus/workflow.db and the root workflow's STAMPEDE DB; returns its path."""
    pegasus = os.path.join(home, ".pegasus")
    submit = os.path.join(home, "submit", "run0001")
    os.makedirs(pegasus, exist_ok=True)
    os.makedirs(submit, exist_ok=True)
    stampede = os.path.join(submit, "diamond-0.stampede.db")
    with sqlite3.connect(create(os.path.join(pegasus, "workflow.db"))) as db:
        fill_master(db, submit, stampede)
    with sqlite3.connect(create(stampede)) as db:
        fill_stampede(db, submit)
    return stampede


def fill_master(db, submit, stampede):
    gone = os.path.join(submit + "-old", "blackdiamond-0.stampede.db")
    insert(db, "master_workflow", "wf_id, wf_uuid, dax_label, dax_version, dax_file, "
           "dag_file_name, timestamp, submit_hostname, submit_dir, planner_arguments, user, "
           "grid_dn, planner_version, db_url, archived", [
               (1, ROOT_UUID, "diamond", "4.0", "/home/u/diamond.yml", "diamond-0.dag", T0,
                "submit.example", submit, None, "u", None, "5.1.3", "sqlite:///" + stampede, 0),
               (2, ARCHIVED_UUID, "blackdiamond", "4.0", "/home/u/bd.yml",
                "blackdiamond-0.dag", T0 - 86400, "submit.example", submit + "-old", None, "u",
                None, "5.1.3", "sqlite:///" + gone, 1),
               (3, NEVER_STARTED_UUID, "split", "4.0", "/home/u/split.yml", "split-0.dag",
                PRECISE, "submit.example", submit + "-split", None, "u", None, "5.1.3",
                "sqlite:///" + submit + "-split/split-0.stampede.db", 0)])
    insert(db, "master_workflowstate", "wf_id, state, timestamp, restart_count, status, "
           "reason", MASTER_STATES)


# The root ran, failed, and runs again (a rescue DAG); the archived one succeeded.
MASTER_STATES = [
    (1, "WORKFLOW_STARTED", T0 + 1, 0, None, None),
    (1, "WORKFLOW_TERMINATED", T0 + 60.25, 0, 1, None),
    (1, "WORKFLOW_STARTED", T0 + 100, 1, None, None),
    (2, "WORKFLOW_STARTED", T0 - 86399, 0, None, None),
    (2, "WORKFLOW_TERMINATED", T0 - 86000, 0, 0, None),
]

# (job_id, wf_id, exec_job_id, type_desc, clustered, task_count, [(seq, exitcode)...])
JOBS = [
    (1, 1, "ok_ID1", "compute", 0, 1, [(1, 0)]),
    (2, 1, "bad_ID1", "compute", 0, 1, [(1, 1)]),
    (3, 1, "busy_ID1", "compute", 0, 1, [(1, None)]),
    (4, 1, "retry_ID1", "compute", 0, 1, [(1, 1), (2, None)]),
    (5, 1, "again_ID1", "compute", 0, 1, [(1, 2), (2, 0)]),
    (6, 1, "merged_ID1", "compute", 1, 2, [(1, 0)]),
    (7, 1, "subdax_ID1", "dax", 0, 0, [(1, 0)]),
    (8, 1, "waiting_ID1", "compute", 0, 1, []),
    (9, 1, "thrice_ID1", "compute", 0, 1, [(1, 1), (2, 3), (3, None)]),
    (10, 2, "inner_ID1", "compute", 0, 1, [(1, 0)]),
]


def fill_stampede(db, submit):
    insert(db, "workflow", "wf_id, wf_uuid, dag_file_name, timestamp, submit_hostname, "
           "submit_dir, planner_arguments, user, grid_dn, planner_version, dax_label, "
           "dax_version, dax_file, db_url, parent_wf_id, root_wf_id", [
               (1, ROOT_UUID, "diamond-0.dag", T0, "submit.example", submit, None, "u", None,
                "5.1.3", "diamond", "4.0", "/home/u/diamond.yml", None, None, 1),
               (2, SUB_UUID, "inner-0.dag", T0 + 30.5, "submit.example", submit + "/inner",
                None, "u", None, "5.1.3", "inner", "4.0", "inner.yml", None, 1, 1)])
    insert(db, "workflowstate", "wf_id, state, timestamp, restart_count, status, reason",
           [row for row in MASTER_STATES if row[0] == 1] + [
               (2, "WORKFLOW_STARTED", T0 + 31, 0, None, None),
               (2, "WORKFLOW_TERMINATED", T0 + 50, 0, 0, None)])
    insert(db, "workflow_meta", "wf_id, key, value",
           [(1, "project", "diamond"), (1, "owner", "alice"), (2, "level", "inner")])
    insert(db, "host", "host_id, wf_id, site, hostname, ip, uname, total_memory",
           [(1, 1, "local", "node1", "10.0.0.1", "linux-x86_64", 16384),
            (2, 1, "condorpool", "node2", "10.0.0.2", "linux-x86_64", 32768),
            (3, 2, "local", "node1", "10.0.0.1", "linux-x86_64", 16384)])
    fill_jobs(db, submit)
    fill_files(db)


def fill_jobs(db, submit):
    ji = 0
    for job_id, wf_id, name, type_desc, clustered, tasks, tries in JOBS:
        insert(db, "job", "job_id, wf_id, exec_job_id, submit_file, type_desc, clustered, "
               "max_retries, executable, argv, task_count",
               [(job_id, wf_id, name, name + ".sub", type_desc, clustered, 3,
                 "/usr/bin/pegasus-kickstart", "-n tr::%s" % name, tasks)])
        insert(db, "task", "task_id, wf_id, job_id, abs_task_id, transformation, argv, "
               "type_desc", [(job_id, wf_id, job_id, "ID%d" % job_id, "tr::" + name,
                              "-i f.a", "compute")])
        for seq, code in tries:
            ji += 1
            add_try(db, ji, job_id, wf_id, seq, code, submit)
    insert(db, "task_meta", "task_id, key, value", [(1, "size", "3"), (1, "color", "blue")])


def add_try(db, ji, job_id, wf_id, seq, code, submit):
    """Job instance `ji`, its states and (once it ended) its invocation."""
    t = T0 + 10 * ji
    insert(db, "job_instance", "job_instance_id, job_id, host_id, job_submit_seq, sched_id, "
           "site, user, work_dir, cluster_start, cluster_duration, local_duration, subwf_id, "
           "stdout_file, stdout_text, stderr_file, stderr_text, stdin_file, "
           "multiplier_factor, exitcode",
           [(ji, job_id, 1 + ji % 2, seq, "%d.0" % (100 + ji), "local", "u", submit,
             t + 0.5, None if code is None else 2.125, None if code is None else 3.5,
             2 if job_id == 7 else None, "job%d.out.%03d" % (ji, seq),
             "hello%0Aworld%0A", "job%d.err.%03d" % (ji, seq), "", None, 1, code)])
    states = ["SUBMIT", "EXECUTE"] + ([] if code is None else
                                      ["JOB_SUCCESS" if code == 0 else "JOB_FAILURE"])
    insert(db, "jobstate", "job_instance_id, state, timestamp, jobstate_submit_seq, reason",
           [(ji, s, t + n, n + 1, None) for n, s in enumerate(states)])
    if code is not None:
        insert(db, "invocation", "invocation_id, wf_id, job_instance_id, task_submit_seq, "
               "start_time, remote_duration, remote_cpu_time, exitcode, transformation, "
               "executable, argv, abs_task_id, maxrss, avg_cpu",
               [(ji, wf_id, ji, 1, t + 1.25, 1.5, 0.75, code, "tr::job%d" % job_id,
                 "/bin/tr", "-i f.a", "ID%d" % job_id, 2048, 0.5)])


def fill_files(db):
    insert(db, "rc_lfn", "lfn_id, lfn", [(1, "f.a"), (2, "f.b"), (3, "f.c")])
    insert(db, "rc_pfn", "pfn_id, lfn_id, pfn, site",
           [(1, 1, "file:///data/f.a", "local"), (2, 1, "gsiftp://remote/f.a", "remote"),
            (3, 2, "file:///data/f.b", "local")])
    insert(db, "rc_meta", "lfn_id, key, value",
           [(1, "checksum.type", "sha256"), (1, "checksum.value", "abc123"),
            (2, "size", "12")])
    insert(db, "workflow_files", "wf_id, task_id, lfn_id, file_type",
           [(1, 1, 1, "output"), (1, 2, 2, "input"), (1, 6, 3, "output"),
            (2, 10, 1, "input")])
