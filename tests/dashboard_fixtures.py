"""Pegasus data for the dashboard tests, made by the simulated toolchain
(share/pegasus-sim): a home with a master DB and one submit dir (with its
STAMPEDE DB) per kind of workflow the dashboard must show right, and a small
in-process server for the dashboard (pegasus_em.web.httpd on 127.0.0.1:0).
"""

import json
import os
import re
import signal
import sqlite3
import subprocess
import sys
import threading
import urllib.error
import urllib.request

from conftest import REPO, wait_until

SIM = os.path.join(REPO, "share", "pegasus-sim")
SIM_BIN = os.path.join(SIM, "bin")

# name -> (pegasus-plan -D properties, run it?, the list state the dashboard must show)
KINDS = {
    "ok": (["-Dpegasus.sim.jobs=4"], True, "successful"),
    "failed": (["-Dpegasus.sim.run.fail=true"], True, "failed"),
    "retried": (["-Dpegasus.sim.job.failures=1"], True, "successful"),
    "failing": (["-Dpegasus.sim.job.failures=1", "-Dpegasus.sim.stall.at=4"], True, "running"),
    "running": (["-Dpegasus.sim.stall.at=2"], True, "running"),
    "hier": (["-Dpegasus.sim.subworkflows=2"], True, "successful"),
    "hierfail": (["-Dpegasus.sim.jobs=1", "-Dpegasus.sim.subworkflows=1", "-Dpegasus.sim.run.fail=true"],
                 True, "failed"),
    "died": (["-Dpegasus.sim.dagman.die=true"], True, "died"),
    "idle": ([], False, "not-started"),
}
XSS = '<script>alert("x")</script>&<b>'


class World:
    """A home (~/.pegasus/workflow.db) and the submit dirs of KINDS, by name."""

    def __init__(self, base):
        self.base = base
        self.home = os.path.join(base, "home")
        self.master = os.path.join(self.home, ".pegasus", "workflow.db")
        os.makedirs(os.path.join(self.home, ".pegasus"))
        self.env = dict(os.environ, HOME=self.home, PATH=SIM_BIN + os.pathsep + os.environ.get("PATH", ""),
                        PEGASUS_SIM_MASTER_DB=self.master, PEGASUS_SIM_SCHEDD=os.path.join(base, "schedd"),
                        PEGASUS_SIM_RUN_SECONDS="0")
        for name in list(self.env):
            if name.startswith("PEGASUS_SIM_") and name not in ("PEGASUS_SIM_MASTER_DB", "PEGASUS_SIM_SCHEDD",
                                                                "PEGASUS_SIM_RUN_SECONDS"):
                del self.env[name]
        self.dirs = {}

    def tool(self, name, *args):
        return subprocess.run([os.path.join(SIM_BIN, name)] + list(args), cwd=self.base, env=self.env,
                              stdout=subprocess.PIPE, stderr=subprocess.PIPE, universal_newlines=True, timeout=60)

    def build(self):
        """Plan and run every kind at once, then wait until each is where it must be."""
        procs = {}
        for name, (props, _, _) in KINDS.items():
            wf = os.path.join(self.base, "%s.yml" % name)
            with open(wf, "w") as f:
                f.write("pegasus: 5.0.4\nname: %s\n" % name)
            procs[name] = subprocess.Popen([os.path.join(SIM_BIN, "pegasus-plan"), "--dir", "submit"] + props + [wf],
                                           cwd=self.base, env=self.env, stdout=subprocess.PIPE,
                                           stderr=subprocess.PIPE, universal_newlines=True)
        for name, proc in procs.items():
            out, err = proc.communicate(timeout=60)
            assert proc.returncode == 0, err
            self.dirs[name] = re.findall(r"^pegasus-run\s+(\S+)$", out, re.M)[-1]
        runs = {name: subprocess.Popen([os.path.join(SIM_BIN, "pegasus-run"), self.dirs[name]], cwd=self.base,
                                       env=self.env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
                for name, (_, run, _) in KINDS.items() if run}
        for name, proc in runs.items():
            assert proc.wait(timeout=60) == 0, proc.stderr.read()
        self._planned_row("idle")  # monitord's first pass, before DAGMan parsed the DAG
        self.wait()
        return self

    def _planned_row(self, name):
        sys.path.insert(0, os.path.join(SIM, "lib"))
        try:
            from pegasus_sim import braindump, masterdb
        finally:
            sys.path.pop(0)
        masterdb.workflow_planned(self.master, braindump.read(self.dirs[name]))

    def wait(self):
        def ended(name):
            text = _read(os.path.join(self.dirs[name], "%s-0.dag.dagman.out" % name))
            return "EXITING WITH STATUS" in text and not os.path.exists(os.path.join(self.dirs[name], "monitord.pid"))
        for name in ("ok", "failed", "retried", "hier", "hierfail"):
            wait_until(lambda: ended(name), 20, message="%s to finish" % name)
        wait_until(lambda: self.instances("failing", "sim_ID0000002") == [256, None], 20,
                   message="the failing job's retry")
        wait_until(lambda: self.instances("running", "sim_ID0000001") == [None], 20, message="a running job")
        wait_until(lambda: self.died(), 20, message="the DAGMan to die")

    def died(self):
        text = _read(os.path.join(self.dirs["died"], "died-0.dag.dagman.out"))
        m = re.search(r"\*\* PID = (\d+)$", text, re.M)
        if not m or not os.path.exists(os.path.join(self.dirs["died"], "died-0.stampede.db")):
            return False
        stat = _read("/proc/%s/stat" % m.group(1))
        return not stat or stat.rpartition(")")[2].split()[0] == "Z"

    def stampede(self, name):
        return sqlite3.connect(os.path.join(self.dirs[name], "%s-0.stampede.db" % name))

    def instances(self, name, job):
        path = os.path.join(self.dirs[name], "%s-0.stampede.db" % name)
        if not os.path.exists(path):
            return None
        db = sqlite3.connect(path)
        try:
            return [r[0] for r in db.execute("SELECT ji.exitcode FROM job_instance ji JOIN job j USING (job_id)"
                                             " WHERE j.exec_job_id = ? ORDER BY job_submit_seq", (job,))]
        except sqlite3.Error:
            return None
        finally:
            db.close()

    def master_id(self, name):
        db = sqlite3.connect(self.master)
        try:
            return db.execute("SELECT wf_id FROM master_workflow WHERE submit_dir = ?", (self.dirs[name],)).fetchone()[0]
        finally:
            db.close()

    def stop(self):
        """condor_rm what still runs (the stalled DAGMans)."""
        schedd = self.env["PEGASUS_SIM_SCHEDD"]
        if not os.path.isdir(schedd):
            return
        for entry in os.listdir(schedd):
            if entry.endswith(".json"):
                try:
                    pid = json.load(open(os.path.join(schedd, entry))).get("pid")
                    os.kill(pid, signal.SIGKILL)
                except (OSError, ValueError, TypeError):
                    pass


def _read(path):
    try:
        with open(path, errors="replace") as f:
            return f.read()
    except OSError:
        return ""


class Served:
    """A WSGI app on 127.0.0.1:0 in this process; get/post return (status, headers, body)."""

    def __init__(self, app, script_name=""):
        sys.path.insert(0, REPO)
        from pegasus_em.web import httpd
        self.script_name = script_name
        wrapped = app if not script_name else _mount(app, script_name)
        self.server = httpd.Server(("127.0.0.1", 0), wrapped)
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()
        self.url = self.server.url

    def request(self, path, method="GET", data=None, headers=None):
        url = path if path.startswith("http") else self.url + path
        headers = dict({"Accept": "text/html,application/xhtml+xml,*/*;q=0.8"}, **(headers or {}))
        req = urllib.request.Request(url, data=data, method=method, headers=headers)  # as a browser
        opener = urllib.request.build_opener(_NoRedirect)
        try:
            with opener.open(req, timeout=30) as r:
                return r.status, r.headers, r.read().decode("utf-8", "replace")
        except urllib.error.HTTPError as e:
            return e.code, e.headers, e.read().decode("utf-8", "replace")

    def json(self, path, **kw):
        status, headers, body = self.request(path, headers={"Accept": "application/json"}, **kw)
        assert headers["Content-Type"].startswith("application/json"), (path, status, body[:300])
        return status, json.loads(body)

    def close(self):
        self.server.shutdown()
        self.server.server_close()


class _NoRedirect(urllib.request.HTTPRedirectHandler):
    def redirect_request(self, *args, **kwargs):
        return None


def _mount(app, script_name):
    """The app below `script_name`, as a front server (or mod_wsgi) would mount it."""
    def mounted(environ, start_response):
        path = environ.get("PATH_INFO", "")
        if not path.startswith(script_name + "/"):
            start_response("404 Not Found", [("Content-Type", "text/plain")])
            return [b"outside the mount point"]
        environ = dict(environ, SCRIPT_NAME=script_name, PATH_INFO=path[len(script_name):])
        return app(environ, start_response)
    return mounted


# ---- how a page reads in a browser ----------------------------------------------------------

WIDTHS = (1400, 800)

# What reads badly, measured in the page: a word of a name, a button's label or a badge that
# wraps onto two lines (prose, reasons and times may wrap; paths wrap after a slash, names at
# a hyphen), a button wider than its label, a page wider than the window, a table that does
# not fit its box (it then scrolls sideways).
LAYOUT_JS = r"""(() => {
  const bad = [];
  const lines = r => new Set(Array.from(r.getClientRects()).filter(x => x.width > 0)
                                  .map(x => Math.round(x.top))).size;
  const names = "main a, main button, main .state, main h1, nav.crumbs a, nav.crumbs span, main dt";
  for (const el of document.querySelectorAll(names)) {
    if (el.closest(".prose, .why, pre")) { continue; }
    const walker = document.createTreeWalker(el, NodeFilter.SHOW_TEXT);
    for (let node = walker.nextNode(); node; node = walker.nextNode()) {
      for (const m of node.data.matchAll(/[A-Za-z0-9_.:]+/g)) {
        const r = document.createRange();
        r.setStart(node, m.index);
        r.setEnd(node, m.index + m[0].length);
        if (lines(r) > 1) { bad.push("word broken: " + m[0]); }
      }
    }
  }
  for (const b of document.querySelectorAll("main button")) {
    const r = document.createRange();
    r.selectNodeContents(b);
    const s = getComputedStyle(b);
    const room = ["paddingLeft", "paddingRight", "borderLeftWidth", "borderRightWidth"]
      .reduce((sum, k) => sum + parseFloat(s[k]), 0);
    if (lines(r) > 1 || b.getBoundingClientRect().width > r.getBoundingClientRect().width + room + 2) {
      bad.push("button not the size of its label: " + b.textContent);
    }
  }
  if (document.documentElement.scrollWidth > window.innerWidth) {
    bad.push("page wider than the window: " + document.documentElement.scrollWidth);
  }
  for (const d of document.querySelectorAll("div.scroll")) {
    if (d.scrollWidth > d.clientWidth && !d.querySelector("table.stats")) {
      bad.push("table wider than the page: " + (d.closest("section") || d).textContent.slice(0, 40));
    }
  }
  return bad;
})()"""


def look_at(browser, url, directory, name):
    """Load `url` at each of WIDTHS, save a screenshot (name-WIDTH.png in `directory`, to
    look at) and return what reads badly, as (width, problem) pairs."""
    problems = []
    for width in WIDTHS:
        browser.set_width(width)
        browser.load(url)
        browser.screenshot(os.path.join(directory, "%s-%d.png" % (name, width)))
        problems += [(width, p) for p in browser.evaluate(LAYOUT_JS)]
    return problems
