#!/usr/bin/env python3
"""pegasus-service throughput over HTTPS, with and without process switching.

Prints one JSON object.  For each configuration (AUTHENTICATION x process
switching), 4 client processes send authenticated JSON requests
(`GET /api/v1/user/<u>/root`: the monitoring API over the user's master DB)
  <config>_keepalive_per_s        one keep-alive TLS connection per client
  <config>_new_connection_per_s   a new TCP connection and TLS handshake per request
plus `em_list_keepalive_per_s` (`GET /ensembles`, passed on to the user's own
`pegasus-em server`, PAM, process switching).
"in_process" is PROCESS_SWITCHING = False (the listener reads the data itself);
"switching" is PROCESS_SWITCHING = True as root (a worker process of the user).
Run as root (it creates a throwaway user): python3 bench/service.py
"""

import argparse
import http.client
import json
import multiprocessing
import os
import re
import sqlite3
import ssl
import subprocess
import sys
import tempfile
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import harness  # noqa: E402

CLIENTS = 4


def _client(args):
    host, port, cafile, path, auth, count, keepalive, start_at = args
    ctx = ssl.create_default_context(cafile=cafile)
    headers = {"Authorization": auth, "Accept": "application/json"}
    conn = None
    while time.time() < start_at:
        time.sleep(0.001)
    t0 = time.perf_counter()
    for _ in range(count):
        if conn is None:
            conn = http.client.HTTPSConnection(host, port, context=ctx, timeout=60)
        conn.request("GET", path, headers=headers)
        resp = conn.getresponse()
        resp.read()
        if resp.status != 200:
            raise SystemExit("request failed: %d" % resp.status)
        if not keepalive:
            conn.close()
            conn = None
    if conn is not None:
        conn.close()
    return time.perf_counter() - t0


def per_second(service, path, auth, keepalive, per_client):
    jobs = [(service.host, service.port, service.cafile, path, auth, per_client, keepalive,
             time.time() + 0.3) for _ in range(CLIENTS)]
    with multiprocessing.Pool(CLIENTS) as pool:
        pool.map(_client, [job[:5] + (20, keepalive, 0) for job in jobs])  # warm up
        durations = pool.map(_client, jobs)
    return CLIENTS * per_client / max(durations)


class Service:
    def __init__(self, python, code, settings, workdir):
        self.config = os.path.join(workdir, "service-%d.py" % id(self))
        with open(self.config, "w") as f:
            f.write(settings)
        env = {"PATH": "/usr/local/bin:/usr/bin:/bin", "PYTHONPATH": code, "LANG": "C.UTF-8",
               "PEGASUS_ENV": self.config}
        self.out = tempfile.TemporaryFile()
        self.proc = subprocess.Popen([python, "-c", "import sys; from pegasus_em.service.pservice "
                                      "import main; sys.exit(main())", "--port", "0"],
                                     env=env, stdout=self.out, stderr=subprocess.DEVNULL,
                                     cwd=workdir)
        deadline = time.monotonic() + 30
        while True:
            self.out.seek(0)
            m = re.search(rb"serving https://([^:]+):(\d+)\S*/ \(certificate (.+)\)",
                          self.out.read())
            if m:
                self.host, self.port = m.group(1).decode(), int(m.group(2))
                self.cafile = m.group(3).decode()
                return
            if self.proc.poll() is not None or time.monotonic() > deadline:
                raise SystemExit("pegasus-service did not start")
            time.sleep(0.02)

    def stop(self):
        self.proc.terminate()
        self.proc.wait(30)


def make_certificate(workdir):
    """A throwaway self-signed pair for localhost; -> (cert, key)."""
    cert, key = os.path.join(workdir, "c.pem"), os.path.join(workdir, "k.pem")
    subprocess.run(["openssl", "req", "-x509", "-newkey", "ec", "-pkeyopt",
                    "ec_paramgen_curve:prime256v1", "-nodes", "-keyout", key, "-out", cert,
                    "-days", "2", "-subj", "/CN=localhost", "-addext",
                    "subjectAltName=DNS:localhost,IP:127.0.0.1"], check=True,
                   stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    return cert, key


def make_master_db(pegasus_dir, uid, gid, rows=20):
    path = os.path.join(pegasus_dir, "workflow.db")
    with sqlite3.connect(path) as db:
        db.executescript("""
            CREATE TABLE master_workflow (wf_id INTEGER PRIMARY KEY, wf_uuid VARCHAR(255) NOT NULL
              UNIQUE, dax_label VARCHAR(255), dax_version VARCHAR(255), dax_file VARCHAR(255),
              dag_file_name VARCHAR(255), timestamp NUMERIC(16, 6), submit_hostname VARCHAR(255),
              submit_dir TEXT, planner_arguments TEXT, user VARCHAR(255), grid_dn VARCHAR(255),
              planner_version VARCHAR(255), db_url TEXT, archived BOOLEAN NOT NULL);
            CREATE TABLE master_workflowstate (wf_id INTEGER NOT NULL, state VARCHAR(19) NOT NULL,
              timestamp NUMERIC(16, 6) NOT NULL, restart_count INTEGER NOT NULL, status INTEGER,
              reason TEXT, PRIMARY KEY (wf_id, state, timestamp));""")
        for i in range(1, rows + 1):
            db.execute("INSERT INTO master_workflow (wf_id, wf_uuid, dax_label, timestamp, "
                       "submit_dir, db_url, archived) VALUES (?, ?, ?, ?, ?, ?, 0)",
                       (i, "uuid-%d" % i, "wf%d" % i, 1.7e9 + i, "/submit/%d" % i,
                        "sqlite:////submit/%d/wf.stampede.db" % i))
            db.execute("INSERT INTO master_workflowstate VALUES (?, 'WORKFLOW_STARTED', ?, 0, "
                       "NULL, NULL)", (i, 1.7e9 + i))
    os.chown(path, uid, gid)


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--per-client", type=int, default=1500,
                    help="requests per client for keep-alive runs")
    ap.add_argument("--per-client-new", type=int, default=300,
                    help="requests per client for new-connection runs")
    ap.add_argument("--max-processes", default="None",
                    help="MAX_PROCESSES for the service (default None: one process)")
    args = ap.parse_args()
    out = {"clients": CLIENTS, "max_processes": args.max_processes}
    with harness.daemon() as target:
        pw = target.pw
        auth = target.pam_auth()
        make_master_db(target.pegasus_dir, pw.pw_uid, pw.pw_gid)
        workdir = tempfile.mkdtemp(prefix="pemsvc-")
        cert, key = make_certificate(workdir)
        path = "/api/v1/user/%s/root" % pw.pw_name
        for auth_name in ("NoAuthentication", "PAMAuthentication"):
            for mode, switching in (("in_process", False), ("switching", True)):
                settings = ("CERTIFICATE = %r\nPRIVATE_KEY = %r\nAUTHENTICATION = %r\n"
                            "PROCESS_SWITCHING = %r\nMAX_PROCESSES = %s\n"
                            % (cert, key, auth_name, switching, args.max_processes))
                service = Service(target.python, target.code, settings, workdir)
                try:
                    name = "%s_%s" % ("noauth" if auth_name == "NoAuthentication" else "pam",
                                      mode)
                    out[name + "_keepalive_per_s"] = round(
                        per_second(service, path, auth, True, args.per_client))
                    out[name + "_new_connection_per_s"] = round(
                        per_second(service, path, auth, False, args.per_client_new))
                    if auth_name == "PAMAuthentication" and switching:
                        out["em_list_keepalive_per_s"] = round(
                            per_second(service, "/ensembles", auth, True, args.per_client // 3))
                finally:
                    service.stop()
        subprocess.run(["rm", "-rf", workdir])
    print(json.dumps(out, indent=2))


if __name__ == "__main__":
    main()
