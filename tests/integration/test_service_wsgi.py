"""The Apache mod_wsgi entry point, served by wsgiref on loopback (the shipped files
themselves: tests/unit/test_shipped_files.py)."""

import base64
import http.client
import json
import logging
import os
import re
import runpy
import subprocess
import threading
import wsgiref.simple_server

import pytest

from conftest import REPO
from service_fixtures import chown_tree, make_pegasus_dbs

WSGI_FILE = os.path.join(REPO, "share", "pegasus", "service", "pegasus-service.wsgi")


class QuietHandler(wsgiref.simple_server.WSGIRequestHandler):
    def log_message(self, *args):
        pass


@pytest.fixture(autouse=True)
def keep_logging():
    """wsgi_application sets up logging, as it must under mod_wsgi; undo it here."""
    logger = logging.getLogger("pegasus_em")
    handlers, level = list(logger.handlers), logger.level
    yield
    logger.handlers[:] = handlers
    logger.setLevel(level)


def load_wsgi(tmp_path, monkeypatch, **settings):
    """The .wsgi file as an admin would edit it, loaded the way mod_wsgi does."""
    text = open(WSGI_FILE).read()
    for name, value in settings.items():
        text, n = re.subn(r"^%s = .*$" % name, "%s = %r" % (name, value), text, flags=re.M)
        assert n == 1, name
    text = text.replace("PEGASUS_EM_PATH = None", "PEGASUS_EM_PATH = %r" % REPO)
    path = tmp_path / "pegasus-service.wsgi"
    path.write_text(text)
    empty = tmp_path / "service.py"
    empty.write_text("")
    monkeypatch.setenv("PEGASUS_ENV", str(empty))
    return runpy.run_path(str(path))["application"]


@pytest.fixture
def wsgi_server():
    servers = []

    def serve(app):
        server = wsgiref.simple_server.make_server("127.0.0.1", 0, app,
                                                   handler_class=QuietHandler)
        threading.Thread(target=server.serve_forever, daemon=True).start()
        servers.append(server)
        return server.server_port

    yield serve
    for server in servers:
        server.shutdown()
        server.server_close()


def get(port, path, auth=None):
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
    headers = {"Accept": "application/json"}
    if auth:
        headers["Authorization"] = "Basic " + base64.b64encode(auth.encode()).decode()
    conn.request("GET", path, headers=headers)
    resp = conn.getresponse()
    data = resp.read()
    conn.close()
    return resp.status, json.loads(data) if data and resp.getheader(
        "Content-Type", "").startswith("application/json") else data


def test_wsgi_file_with_the_shipped_settings(tmp_path, monkeypatch, wsgi_server, user):
    """PAMAuthentication and process switching, as shipped (we run as root here)."""
    make_pegasus_dbs(user.pegasus_dir)
    chown_tree(user.pegasus_dir, user.uid, user.gid)
    subprocess.run(["chpasswd"], input="%s:Wsgi-pass-1\n" % user.name, text=True, check=True)
    app = load_wsgi(tmp_path, monkeypatch)
    port = wsgi_server(app)
    try:
        status, body = get(port, "/api/v1/user/%s/root" % user.name, user.name + ":Wsgi-pass-1")
        assert status == 200 and body["_meta"]["records_total"] == 2
        assert get(port, "/api/v1/user/%s/root" % user.name, user.name + ":wrong")[0] == 401
        assert get(port, "/api/v1/user/%s/root" % user.name)[0] == 401
    finally:
        app.backend.close()


def test_wsgi_file_without_authentication_or_switching(tmp_path, monkeypatch, wsgi_server,
                                                       user):
    make_pegasus_dbs(user.pegasus_dir)
    app = load_wsgi(tmp_path, monkeypatch, AUTHENTICATION="NoAuthentication",
                    PROCESS_SWITCHING=False, ADMIN_USERS="*")
    port = wsgi_server(app)
    status, body = get(port, "/api/v1/user/%s/root/1/workflow/1/job/failed" % user.name)
    assert status == 200 and body["records"][0]["exec_job_id"] == "bad_ID1"
    status, body = get(port, "/u/%s/" % user.name)  # the dashboard's JSON twin (Accept: JSON)
    assert status == 200 and sorted(w["dax_label"] for w in body["workflows"]) == [
        "diamond", "diamond-2"]
