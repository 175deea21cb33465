"""pegasus-service under PEGASUS_SERVICE_URL_PREFIX with MAX_PROCESSES listeners and
NoAuthentication; per-user workers stopped when idle.  Needs root."""

import os
import re
import signal

import pytest

from conftest import Daemon, unique, wait_until
from pegasus_em.service.switch import WorkerPool
from pegasus_em.web.web import Request
from service_fixtures import (Service, chown_tree, children_of, make_certificate,
                              make_pegasus_dbs, proc_credentials, wait_gone)

PREFIX = "/pegasus/svc"


@pytest.fixture(scope="module")
def prefixed(sandbox, module_user):
    module_user.configure()
    make_pegasus_dbs(module_user.pegasus_dir)
    chown_tree(module_user.pegasus_dir, module_user.uid, module_user.gid)
    daemon = Daemon(module_user).start()
    cert, key = make_certificate(sandbox.base)
    svc = Service(sandbox, "CERTIFICATE = %r\nPRIVATE_KEY = %r\nAUTHENTICATION = "
                  "'NoAuthentication'\nMAX_PROCESSES = 2\nPEGASUS_SERVICE_URL_PREFIX = %r\n"
                  % (cert, key, PREFIX + "/"), python=module_user.python).start()
    yield svc, module_user
    svc.stop()
    daemon.kill()


def test_every_route_is_under_the_prefix(prefixed):
    svc, u = prefixed
    assert svc.url.endswith(PREFIX)
    client = svc.client()
    routes = ["/u/%s/" % u.name, "/api/v1/user/%s/root" % u.name,
              "/api/v1/user/%s/root/1/workflow/1/job" % u.name,
              "/api/v1/user/%s/ensembles" % u.name]
    for path in routes:
        assert client.request("GET", path)[0] == 200, path
        assert client.request("GET", path, prefix=False)[0] == 404, path
    status, _, page = client.request("GET", "/u/%s/" % u.name, headers={"Accept": "text/html"})
    links = re.findall(r'href="([^"]+)"', page)
    assert links and all(link.startswith(PREFIX + "/") for link in links), links  # root-relative
    for link in links:
        assert client.request("GET", link, prefix=False)[0] == 200, link
    name = unique("pre")
    status, resp, _ = client.request("POST", "/api/v1/user/%s/ensembles" % u.name,
                                     form={"name": name})
    assert status == 201
    assert resp.getheader("Location") == "%s/api/v1/user/%s/ensembles/%s" % (svc.url, u.name,
                                                                            name)
    status, _, body = client.request("GET", "/api/v1/user/%s/ensembles/%s" % (u.name, name))
    assert body["href"].startswith(svc.url + "/api/v1/user/") and \
        body["workflows"].startswith(svc.url + "/")


def test_no_authentication_as_root_serves_the_user_the_url_names(prefixed):
    svc, u = prefixed
    client = svc.client()
    assert client.request("GET", "/api/v1/user/%s/root" % u.name)[0] == 200
    status, _, body = client.request("GET", "/ensembles")      # the service's user: root
    assert status == 401 and "root" in body["message"]
    assert client.request("GET", "/api/v1/user/root/root")[0] == 401


def test_listeners_are_replaced_when_they_die(prefixed):
    svc, u = prefixed
    listeners = [p for p in children_of(svc.proc.pid) if proc_credentials(p)[0][0] == 0]
    assert len(listeners) == 2
    os.kill(listeners[0], signal.SIGKILL)
    wait_until(lambda: len([p for p in children_of(svc.proc.pid)
                            if proc_credentials(p)[0][0] == 0 and p != listeners[0]]) == 2,
               10, message="a new listener")
    client = svc.client()
    for _ in range(6):  # whichever listener accepts, it answers
        assert client.request("GET", "/api/v1/user/%s/root" % u.name)[0] == 200


def test_idle_workers_are_stopped(module_user):
    pool = WorkerPool(idle_timeout=0.5, python=module_user.python)
    try:
        reply = pool.handle(Request("GET", "/u/%s/" % module_user.name, user=module_user.name,
                                 remote_user=module_user.name, base="https://x"))
        assert reply.status == 200
        pid = pool.pids()[module_user.name]
        assert proc_credentials(pid)[0] == (module_user.uid,) * 3
        wait_gone(pid, 15)
        assert module_user.name not in pool.pids()
        reply = pool.handle(Request("GET", "/u/%s/" % module_user.name, user=module_user.name,
                                 remote_user=module_user.name, base="https://x"))
        assert reply.status == 200 and pool.pids()[module_user.name] != pid
    finally:
        pool.close()


def test_workers_refuse_other_users_calls(module_user):
    pool = WorkerPool(python=module_user.python)
    try:
        worker = pool._worker(module_user.name)
        reply = worker.call(Request("GET", "/u/daemon/", user="daemon", remote_user="daemon"))
        assert reply.status == 403
    finally:
        pool.close()


def test_refuses_to_start_where_users_cannot_run_it(sandbox, tmp_path):
    """Installed where only root can read it (under root's home, say), the service would
    start and then answer every page with a worker that cannot start: it refuses at once,
    in one line that says where to install instead."""
    import shutil
    import subprocess
    private = tmp_path / "root-only"
    private.mkdir(mode=0o700)
    shutil.copytree(os.path.join(sandbox.code, "pegasus_em"), str(private / "pegasus_em"))
    cert, key = make_certificate(str(tmp_path))
    svc = Service(sandbox, "CERTIFICATE = %r\nPRIVATE_KEY = %r\n" % (cert, key),
                  env={"PYTHONPATH": str(private)})
    proc = subprocess.run(svc.command(), env=svc.environment(), cwd=svc.dir, timeout=60,
                          stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    assert proc.returncode != 0 and "serving" not in proc.stdout
    errors = [line for line in proc.stderr.splitlines() if line.startswith("ERROR")]
    assert len(errors) == 1 and "where every user can read it" in errors[0], proc.stderr
    assert "Traceback" not in proc.stderr
