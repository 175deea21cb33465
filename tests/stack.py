"""An in-process ensemble manager for tests that need no daemon process of its own:
a real sqlite file, Ops, the WSGI app (called in this process by `request`), and
optionally the engine, its thread or not (`tick()` from the test).  The real
threaded HTTP server on a loopback port 0 starts only when a test asks for `url`
(for the CLI, which speaks HTTP).

Plan commands run as the test's own user; the simulated toolchain keeps its
schedd and master DB under the stack's directory.
"""

import base64
import json
import os
import threading
import urllib.parse

import wsgi_client
from conftest import REPO, SIM_BIN
from pegasus_em.core import db as dbmod
from pegasus_em.core import store
from pegasus_em.em.api import App
from pegasus_em.web.auth import BasicAuth
from pegasus_em.web.httpd import Server
from pegasus_em.core.manager import Manager, Settings
from pegasus_em.core.notify import Notifier
from pegasus_em.core.ops import Ops

USER, PASSWORD = "alice", "pw-" + os.urandom(4).hex()
EXAMPLE = os.path.join(REPO, "share", "pegasus-sim", "example")


def sim_env(base):
    env = {k: v for k, v in os.environ.items() if not k.startswith("PEGASUS_SIM_")}
    env["PATH"] = SIM_BIN + os.pathsep + env.get("PATH", os.defpath)
    env["PEGASUS_SIM_SCHEDD"] = os.path.join(base, "schedd")
    env["PEGASUS_SIM_MASTER_DB"] = os.path.join(base, "workflow.db")
    return env


class Stack:
    def __init__(self, base, engine=False, limits=(None, None), interval=0.5, clock=None,
                 targets=(), smtp=("localhost", 25)):
        self.base = str(base)
        self.ensembles = os.path.join(self.base, "ensembles")
        os.makedirs(self.ensembles, exist_ok=True)
        self.db = dbmod.open_database(os.path.join(self.base, "em.db"))
        self.env = sim_env(self.base)
        kwargs = {"clock": clock} if clock else {}
        self.manager = None
        if engine:
            self.manager = Manager(self.db, self.ensembles, Settings(
                interval=interval, env=self.env, liveness_every=0.2, pending_timeout=5,
                max_planning_total=limits[0], max_running_total=limits[1]), **kwargs)
        with self.db.write() as conn:
            store.set_notify_targets(conn, targets)
        self.notifier = Notifier(self.db, smtp[0], smtp[1], "em@test", backoff=0.05, timeout=2)
        wakes = [self.notifier.wake] + ([self.manager.wake] if self.manager else [])
        if self.manager:
            self.manager.notify_wake = self.notifier.wake
        self.ops = Ops(self.db, self.ensembles, limits=limits,
                       wake=lambda: [w() for w in wakes], **kwargs)
        self.app = App(self.ops, BasicAuth(USER, PASSWORD).authenticate,
                       base_url=wsgi_client.URL)
        self.server = None

    @property
    def url(self):
        """The base URL of the real HTTP server, started at the first call."""
        if self.server is None:
            self.server = Server(("127.0.0.1", 0), self.app)
            self.app.base_url = self.server.url
            threading.Thread(target=self.server.serve_forever, args=(0.02,),
                             name="stack-http", daemon=True).start()
        return self.server.url

    def start_engine(self):
        self.manager.start()
        return self

    def start_notifier(self):
        self.notifier.start()
        return self

    def close(self):
        if self.server is not None:
            self.server.shutdown()
            self.server.server_close()
        self.notifier.stop()
        if self.manager is not None and self.manager.running:
            self.manager.stop()
        self.db.close()

    # ---- the API, called in process -------------------------------------------

    def request(self, method, path, data=None, json_body=None, auth=True):
        """(status, headers, JSON or text)."""
        headers = {"Accept": "application/json"}
        if auth:
            token = base64.b64encode(("%s:%s" % (USER, PASSWORD)).encode()).decode()
            headers["Authorization"] = "Basic " + token
        body = b""
        if data is not None:
            body = urllib.parse.urlencode(data).encode()
            headers["Content-Type"] = "application/x-www-form-urlencoded"
        elif json_body is not None:
            body = json.dumps(json_body).encode()
            headers["Content-Type"] = "application/json"
        return wsgi_client.answer(self.app, method, path, body, headers, self.app.base_url)

    def get(self, path):
        status, _, body = self.request("GET", path)
        assert status == 200, (path, status, body)
        return body

    def post(self, path, **data):
        status, _, body = self.request("POST", path, data)
        assert status in (200, 201, 202), (path, status, body)
        return body

    def ensemble(self, name, **fields):
        self.post("/ensembles", name=name, **fields)
        return name

    def submit(self, ensemble, name, command='"/bin/true"', basedir=None, **fields):
        return self.request("POST", "/ensembles/%s/workflows" % ensemble, dict(
            name=name, basedir=basedir or self.base, plan_command=command, **fields))

    def plan_command(self, *knobs):
        """The shipped example planner with simulator knobs (-Dpegasus.sim.*)."""
        return " ".join(['"%s/plan.sh"' % EXAMPLE] + ['"-D%s"' % k for k in knobs])

    def workflow(self, ensemble, name):
        return self.get("/ensembles/%s/workflows/%s" % (ensemble, name))

    def state(self, ensemble, name):
        return self.workflow(ensemble, name)["state"]

    def events(self, ensemble, name=None):
        path = "/ensembles/%s" % ensemble + ("/workflows/%s" % name if name else "")
        return self.get(path + "/events?limit=1000")

    def config_file(self):
        """A service.py the CLI can use against this stack (PEGASUS_ENV)."""
        path = os.path.join(self.base, "service.py")
        with open(path, "w") as f:
            f.write("USERNAME = %r\nPASSWORD = %r\n" % (USER, PASSWORD))
        os.chmod(path, 0o600)
        return path

