"""Helpers for the pegasus-service tests: Pegasus databases as monitord leaves
them (pegasus-facts §3.2, §3.5), a real `pegasus-service` process, and an
HTTPS client that trusts its certificate."""

import base64
import http.client
import json
import os
import re
import sqlite3
import ssl
import subprocess
import sys
import tempfile

from conftest import wait_until

MASTER_DDL = """
CREATE TABLE dbversion (id INTEGER NOT NULL PRIMARY KEY AUTOINCREMENT, version_number INTEGER,
  version VARCHAR(50) NOT NULL, version_timestamp INTEGER NOT NULL);
CREATE TABLE master_workflow (wf_id INTEGER NOT NULL, wf_uuid VARCHAR(255) NOT NULL,
  dax_label VARCHAR(255), dax_version VARCHAR(255), dax_file VARCHAR(255),
  dag_file_name VARCHAR(255), timestamp NUMERIC(16, 6), submit_hostname VARCHAR(255),
  submit_dir TEXT, planner_arguments TEXT, user VARCHAR(255), grid_dn VARCHAR(255),
  planner_version VARCHAR(255), db_url TEXT, archived BOOLEAN NOT NULL,
  PRIMARY KEY (wf_id), CONSTRAINT "UNIQUE_MASTER_WF_UUID" UNIQUE (wf_uuid));
CREATE TABLE master_workflowstate (wf_id INTEGER NOT NULL, state VARCHAR(19) NOT NULL,
  timestamp NUMERIC(16, 6) NOT NULL, restart_count INTEGER NOT NULL, status INTEGER, reason TEXT,
  PRIMARY KEY (wf_id, state, timestamp),
  FOREIGN KEY(wf_id) REFERENCES master_workflow (wf_id) ON DELETE CASCADE);
"""

STAMPEDE_DDL = """
CREATE TABLE workflow (wf_id INTEGER NOT NULL PRIMARY KEY, wf_uuid VARCHAR(255) NOT NULL UNIQUE,
  dag_file_name VARCHAR(255), timestamp NUMERIC(16, 6), submit_hostname VARCHAR(255),
  submit_dir TEXT, planner_arguments TEXT, user VARCHAR(255), grid_dn VARCHAR(255),
  planner_version VARCHAR(255), dax_label VARCHAR(255), dax_version VARCHAR(255),
  dax_file VARCHAR(255), db_url TEXT, parent_wf_id INTEGER, root_wf_id INTEGER);
CREATE TABLE workflowstate (wf_id INTEGER NOT NULL, state VARCHAR(255) NOT NULL,
  timestamp NUMERIC(16, 6) NOT NULL, restart_count INTEGER NOT NULL, status INTEGER,
  reason TEXT, PRIMARY KEY (wf_id, state, timestamp));
CREATE TABLE workflow_meta (wf_id INTEGER NOT NULL, key VARCHAR(255) NOT NULL,
  value VARCHAR(255) NOT NULL, PRIMARY KEY (wf_id, key));
CREATE TABLE host (host_id INTEGER NOT NULL PRIMARY KEY, wf_id INTEGER NOT NULL,
  site VARCHAR(255) NOT NULL, hostname VARCHAR(255) NOT NULL, ip VARCHAR(255) NOT NULL,
  uname VARCHAR(255), total_memory INTEGER);
CREATE TABLE job (job_id INTEGER NOT NULL PRIMARY KEY, wf_id INTEGER NOT NULL,
  exec_job_id VARCHAR(255) NOT NULL, submit_file VARCHAR(255) NOT NULL,
  type_desc VARCHAR(255) NOT NULL, clustered BOOLEAN NOT NULL, max_retries INTEGER NOT NULL,
  executable TEXT NOT NULL, argv TEXT, task_count INTEGER NOT NULL);
CREATE TABLE job_instance (job_instance_id INTEGER NOT NULL PRIMARY KEY,
  job_id INTEGER NOT NULL, host_id INTEGER, job_submit_seq INTEGER NOT NULL,
  sched_id VARCHAR(255), site VARCHAR(255), user VARCHAR(255), work_dir TEXT,
  cluster_start NUMERIC(16, 6), cluster_duration NUMERIC(10, 3),
  local_duration NUMERIC(10, 3), subwf_id INTEGER, stdout_file VARCHAR(255),
  stdout_text TEXT, stderr_file VARCHAR(255), stderr_text TEXT, stdin_file VARCHAR(255),
  multiplier_factor INTEGER NOT NULL, exitcode INTEGER);
CREATE TABLE jobstate (job_instance_id INTEGER NOT NULL, state VARCHAR(255) NOT NULL,
  timestamp NUMERIC(16, 6) NOT NULL, jobstate_submit_seq INTEGER NOT NULL, reason TEXT,
  PRIMARY KEY (job_instance_id, state, timestamp));
CREATE TABLE task (task_id INTEGER NOT NULL PRIMARY KEY, job_id INTEGER, wf_id INTEGER NOT NULL,
  abs_task_id VARCHAR(255), transformation TEXT NOT NULL, argv TEXT, type_desc VARCHAR(255));
CREATE TABLE task_meta (task_id INTEGER NOT NULL, key VARCHAR(255) NOT NULL,
  value VARCHAR(255) NOT NULL, PRIMARY KEY (task_id, key));
CREATE TABLE invocation (invocation_id INTEGER NOT NULL PRIMARY KEY, wf_id INTEGER NOT NULL,
  job_instance_id INTEGER NOT NULL, task_submit_seq INTEGER NOT NULL,
  start_time NUMERIC(16, 6) NOT NULL, remote_duration NUMERIC(10, 3),
  remote_cpu_time NUMERIC(10, 3), exitcode INTEGER NOT NULL, transformation TEXT NOT NULL,
  executable TEXT NOT NULL, argv TEXT, abs_task_id VARCHAR(255), maxrss INTEGER,
  avg_cpu NUMERIC(16, 6));
"""

ROOT_UUID = "6f5e1e0a-0000-4000-8000-000000000001"
NEVER_STARTED_UUID = "6f5e1e0a-0000-4000-8000-000000000002"
SUB_UUID = "6f5e1e0a-0000-4000-8000-000000000003"
T0 = 1700000000.0


def make_pegasus_dbs(pegasus_dir, label="diamond", wal=False):
    """A master DB with two root workflows (one run with jobs in every state, one
    never started) and the STAMPEDE DB of the first.  Returns the stampede path."""
    os.makedirs(pegasus_dir, exist_ok=True)
    submit = os.path.join(os.path.dirname(pegasus_dir), "submit", "run0001")
    stampede = os.path.join(pegasus_dir, "%s.stampede.db" % label)
    with sqlite3.connect(os.path.join(pegasus_dir, "workflow.db")) as db:
        if wal:
            db.execute("PRAGMA journal_mode=WAL")
        db.executescript(MASTER_DDL)
        db.execute("INSERT INTO dbversion VALUES (1, 14, '14', 1677911024)")
        rows = [(1, ROOT_UUID, label, T0, submit, "sqlite:///" + stampede),
                (2, NEVER_STARTED_UUID, label + "-2", T0 + 5, submit + "-2",
                 "sqlite:///" + stampede + ".missing")]
        for wf_id, uuid, dax, ts, sdir, url in rows:
            db.execute("INSERT INTO master_workflow (wf_id, wf_uuid, dax_label, dag_file_name, "
                       "timestamp, submit_hostname, submit_dir, user, planner_version, db_url, "
                       "archived) VALUES (?, ?, ?, ?, ?, 'submit.example', ?, 'u', '5.0.5', ?, 0)",
                       (wf_id, uuid, dax, dax + "-0.dag", ts, sdir, url))
        db.execute("INSERT INTO master_workflowstate VALUES (1, 'WORKFLOW_STARTED', ?, 0, NULL, "
                   "NULL)", (T0 + 1,))
        db.execute("INSERT INTO master_workflowstate VALUES (1, 'WORKFLOW_TERMINATED', ?, 0, 1, "
                   "NULL)", (T0 + 60,))
    with sqlite3.connect(stampede) as db:
        db.executescript(STAMPEDE_DDL)
        db.execute("INSERT INTO workflow (wf_id, wf_uuid, dag_file_name, timestamp, submit_dir, "
                   "dax_label, root_wf_id) VALUES (1, ?, ?, ?, ?, ?, 1)",
                   (ROOT_UUID, label + "-0.dag", T0, submit, label))
        db.execute("INSERT INTO workflow (wf_id, wf_uuid, dag_file_name, timestamp, submit_dir, "
                   "dax_label, parent_wf_id, root_wf_id) VALUES (2, ?, 'sub-0.dag', ?, ?, "
                   "'sub', 1, 1)", (SUB_UUID, T0 + 2, submit + "/sub"))
        db.execute("INSERT INTO workflowstate VALUES (1, 'WORKFLOW_STARTED', ?, 0, NULL, NULL)",
                   (T0 + 1,))
        db.execute("INSERT INTO workflowstate VALUES (1, 'WORKFLOW_TERMINATED', ?, 0, 1, NULL)",
                   (T0 + 60,))
        db.execute("INSERT INTO workflow_meta VALUES (1, 'project', 'test')")
        db.execute("INSERT INTO host VALUES (1, 1, 'local', 'node1', '10.0.0.1', 'linux', 1024)")
        # job 1 succeeded, 2 failed, 3 running, 4 failing (failed once, running again)
        for job_id, name in ((1, "ok"), (2, "bad"), (3, "busy"), (4, "retry")):
            db.execute("INSERT INTO job VALUES (?, 1, ?, ?, 'compute', 0, 3, '/bin/true', '', 1)",
                       (job_id, name + "_ID1", name + ".sub"))
            db.execute("INSERT INTO task VALUES (?, ?, 1, ?, 'tr::%s', '', 'compute')" % name,
                       (job_id, job_id, "ID%d" % job_id))
        instances = [(1, 1, 1, 0), (2, 2, 1, 1), (3, 3, 1, None), (4, 4, 1, 1), (5, 4, 2, None)]
        for ji, job_id, seq, code in instances:
            db.execute("INSERT INTO job_instance (job_instance_id, job_id, host_id, "
                       "job_submit_seq, site, stdout_text, stderr_text, multiplier_factor, "
                       "exitcode) VALUES (?, ?, 1, ?, 'local', 'out', 'err', 1, ?)",
                       (ji, job_id, seq, code))
            db.execute("INSERT INTO jobstate VALUES (?, 'SUBMIT', ?, 1, NULL)", (ji, T0 + ji))
            if code is not None:
                db.execute("INSERT INTO invocation (wf_id, job_instance_id, task_submit_seq, "
                           "start_time, remote_duration, exitcode, transformation, executable) "
                           "VALUES (1, ?, 1, ?, 1.5, ?, 'tr', '/bin/true')", (ji, T0 + ji, code))
    return stampede


def chown_tree(path, uid, gid):
    for root, dirs, files in os.walk(path):
        os.chown(root, uid, gid)
        for name in files:
            os.chown(os.path.join(root, name), uid, gid)


def make_certificate(directory):
    """A throwaway self-signed pair for services that are not testing generation."""
    cert, key = os.path.join(directory, "cert.pem"), os.path.join(directory, "key.pem")
    subprocess.run(["openssl", "req", "-x509", "-newkey", "ec", "-pkeyopt",
                    "ec_paramgen_curve:prime256v1", "-nodes", "-keyout", key, "-out", cert,
                    "-days", "2", "-subj", "/CN=localhost",
                    "-addext", "subjectAltName=DNS:localhost,IP:127.0.0.1"],
                   check=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    return cert, key


class Service:
    """A real `pegasus-service` process; `run_as` None means root (the caller)."""

    def __init__(self, sandbox, settings, run_as=None, args=(), env=None, python=None):
        self.sandbox = sandbox
        self.dir = tempfile.mkdtemp(prefix="svc-", dir=sandbox.base)
        os.chmod(self.dir, 0o755)
        self.config = os.path.join(self.dir, "service.py")
        with open(self.config, "w") as f:
            f.write(settings)
        self.run_as = run_as
        self.python = python or (run_as.python if run_as else sys.executable)
        self.args = list(args)
        self.env = env
        self.proc = None
        self.url = None
        self.cafile = None
        if run_as is not None:
            os.chown(self.dir, run_as.uid, run_as.gid)
            os.chown(self.config, run_as.uid, run_as.gid)

    def command(self):
        return [self.python, "-c", "import sys; from pegasus_em.service.pservice import main; "
                              "sys.exit(main())", "--port", "0"] + self.args

    def environment(self):
        env = {"PATH": "/usr/local/bin:/usr/bin:/bin", "PYTHONPATH": self.sandbox.code,
               "LANG": "C.UTF-8", "PEGASUS_ENV": self.config, "PYTHONDONTWRITEBYTECODE": "1"}
        env.update(self.env or {})
        return env

    def start(self, timeout=20):
        self.out = tempfile.TemporaryFile()
        self.err = tempfile.TemporaryFile()
        kwargs = dict(stdout=self.out, stderr=self.err, env=self.environment(), cwd=self.dir)
        if self.run_as is not None:
            kwargs.update(user=self.run_as.uid, group=self.run_as.gid, extra_groups=[])
        self.proc = subprocess.Popen(self.command(), **kwargs)
        wait_until(lambda: self._announced() or self.proc.poll() is not None, timeout,
                   message="pegasus-service to announce its URL")
        if self.proc.poll() is not None:
            raise AssertionError("pegasus-service exited %s: %s"
                                 % (self.proc.returncode, self.errors()))
        return self

    def _announced(self):
        self.out.seek(0)
        match = re.search(rb"serving (https://\S+)/ \(certificate (.+)\)", self.out.read())
        if not match:
            return False
        self.url = match.group(1).decode()
        self.cafile = match.group(2).decode()
        return True

    def errors(self):
        self.err.seek(0)
        return self.err.read().decode("utf-8", "replace")

    def stop(self, timeout=15):
        if self.proc and self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(timeout)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        return self.proc.returncode

    def client(self):
        return Client(self.url, self.cafile)


class Client:
    """HTTPS requests that trust the service's certificate; one connection per call
    unless `keep` is used."""

    def __init__(self, url, cafile):
        scheme, rest = url.split("://", 1)
        hostport, _, prefix = rest.partition("/")
        self.host, _, port = hostport.rpartition(":")
        self.port = int(port)
        self.prefix = "/" + prefix if prefix else ""
        self.context = ssl.create_default_context(cafile=cafile)

    def connection(self):
        return http.client.HTTPSConnection(self.host, self.port, context=self.context,
                                           timeout=30)

    def request(self, method, path, user=None, password=None, form=None, headers=None,
                body=None, conn=None, prefix=True):
        """(status, headers, JSON or text body); `path` is below the prefix."""
        hdrs = {"Accept": "application/json"}
        if user is not None:
            token = base64.b64encode(("%s:%s" % (user, password)).encode()).decode()
            hdrs["Authorization"] = "Basic " + token
        if form is not None:
            body = "&".join("%s=%s" % kv for kv in form.items()).encode()
            hdrs["Content-Type"] = "application/x-www-form-urlencoded"
        hdrs.update(headers or {})
        own = conn is None
        conn = conn or self.connection()
        try:
            conn.request(method, (self.prefix if prefix else "") + path, body=body,
                         headers=hdrs)
            resp = conn.getresponse()
            data = resp.read()
        finally:
            if own:
                conn.close()
        if resp.getheader("Content-Type", "").startswith("application/json") and data:
            return resp.status, resp, json.loads(data)
        return resp.status, resp, data.decode("utf-8", "replace")


def proc_credentials(pid):
    """(real, effective, saved uids), (gids) and supplementary groups of a process."""
    with open("/proc/%d/status" % pid) as f:
        text = f.read()
    uids = tuple(int(x) for x in re.search(r"^Uid:\s+(.*)$", text, re.M).group(1).split()[:3])
    gids = tuple(int(x) for x in re.search(r"^Gid:\s+(.*)$", text, re.M).group(1).split()[:3])
    groups = sorted(int(x) for x in re.search(r"^Groups:[ \t]*(.*)$", text, re.M).group(1).split())
    return uids, gids, groups


def children_of(pid):
    out = []
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            with open("/proc/%s/stat" % entry) as f:
                fields = f.read().rsplit(")", 1)[1].split()
        except OSError:
            continue
        if int(fields[1]) == pid and fields[0] != "Z":
            out.append(int(entry))
    return out


def wait_gone(pid, timeout=10):
    wait_until(lambda: not os.path.exists("/proc/%d" % pid) or _zombie(pid), timeout,
               message="process %d to end" % pid)


def _zombie(pid):
    try:
        with open("/proc/%d/stat" % pid) as f:
            return f.read().rsplit(")", 1)[1].split()[0] == "Z"
    except OSError:
        return True
