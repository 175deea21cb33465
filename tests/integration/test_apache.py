"""pegasus-service under Apache HTTPD 2.4 + mod_ssl + mod_wsgi, set up the way Pegasus
documents it (copy pegasus-service.wsgi and set its settings; fill the placeholders of
pegasus-service-httpd.conf), on throwaway Apache instances over HTTPS.

mod_wsgi never runs an application as root, so what each documented configuration
can do depends on the WSGIDaemonProcess user; each scenario checks what the .wsgi
file and `man pegasus-service` (APACHE) say it does:
  shipped   the settings as shipped (PAMAuthentication, PROCESS_SWITCHING = True),
            daemon processes running as alice, a Pegasus user with her own
            `pegasus-em server`: alice is served, and only alice.
  front     AUTHENTICATION = "NoAuthentication" behind Apache's own authentication
            (REMOTE_USER), ADMIN_USERS and PEGASUS_SERVICE_URL_PREFIX.
  account   a service account with PROCESS_SWITCHING = False, reading the databases
            users let it read, PAM through the shadow group, and the service mounted
            below a prefix Pegasus's way (WSGIScriptAlias /pegasus).
Users, databases and the ensemble manager are real (conftest, service_fixtures).
"""

import contextlib
import grp
import logging
import os
import runpy
import subprocess

import pytest

from apache_fixtures import (Apache, find_apache, free_port, install_wsgi, site_conf,
                             start_apache)
from conftest import Daemon, throwaway_user, unique
from service_fixtures import Client, chown_tree, make_certificate, make_pegasus_dbs

PREFIX = "/pegasus"


@pytest.fixture(scope="module")
def world(sandbox):
    find_apache()
    with contextlib.ExitStack() as stack:
        alice, bob, carol, svc = [stack.enter_context(throwaway_user(sandbox))
                                  for _ in range(4)]
        world = World(sandbox, alice, bob, carol, svc)
        for u in (alice, bob, carol):
            subprocess.run(["chpasswd"], input="%s:%s\n" % (u.name, world.passwords[u.name]),
                           text=True, check=True)
        for u in (alice, bob):
            u.configure()
            make_pegasus_dbs(u.pegasus_dir, label="wf-" + u.name)
            chown_tree(u.pegasus_dir, u.uid, u.gid)
        world.daemon = Daemon(alice).start()
        stack.callback(world.daemon.kill)
        world.stack = stack
        yield world


class World:
    def __init__(self, sandbox, alice, bob, carol, svc):
        self.sandbox = sandbox
        self.alice, self.bob, self.carol, self.svc = alice, bob, carol, svc
        self.passwords = {u.name: "Pw-%s-9z" % u.name for u in (alice, bob, carol)}
        self.cert, self.key = make_certificate(sandbox.base)
        self.htpasswd = os.path.join(sandbox.base, "htpasswd-" + alice.name)
        for u in (alice, bob, carol):
            flags = "-bB" if os.path.exists(self.htpasswd) else "-cbB"
            subprocess.run(["htpasswd", flags, self.htpasswd, u.name, self.passwords[u.name]],
                           check=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        os.chmod(self.htpasswd, 0o644)

    def values(self, wsgi, user_name, group_name):
        """The placeholders of the httpd configuration, as the documented steps fill them."""
        return {"PEGASUS_PYTHON_EXTERNALS": self.sandbox.code, "HOSTNAME": "localhost",
                "DOCUMENT_ROOT": os.path.dirname(wsgi), "USER_NAME": user_name,
                "GROUP_NAME": group_name,
                "PATH_TO_PEGASUS_SERVICE_WSGI_FILE": wsgi, "PATH_TO_SSL_CERT": self.cert,
                "PATH_TO_SSL_KEY": self.key, "PATH_TO_HTPASSWD_FILE": self.htpasswd}

    def serve(self, name, account, settings, apache_auth=False, edit=lambda text: text):
        """Apache serving the service as `account` with the .wsgi `settings`; `edit`
        changes the filled site configuration the way its comments tell an admin to."""
        wsgi = install_wsgi(os.path.join(self.sandbox.base, "%s-%s" % (name, account.name)),
                            **settings)
        values = self.values(wsgi, account.name, grp.getgrgid(account.gid).gr_name)
        apache = start_apache(self.sandbox.base,
                              lambda port: edit(site_conf(values, port, apache_auth)))
        self.stack.callback(apache.stop)
        return Site(apache, Client("https://127.0.0.1:%d" % apache.port, self.cert), self)


class Site:
    def __init__(self, apache, client, world):
        self.apache = apache
        self.client = client
        self.world = world
        self.origin = "https://127.0.0.1:%d" % apache.port

    def get(self, user, path, password=None, **kwargs):
        return self.call(user, "GET", path, password, **kwargs)

    def call(self, user, method, path, password=None, **kwargs):
        """(status, response, body) as `user` (a User, or None for no credentials)."""
        if user is None:
            return self.client.request(method, path, **kwargs)
        password = password or self.world.passwords[user.name]
        status, resp, body = self.client.request(method, path, user.name, password, **kwargs)
        if status >= 500:
            print(self.apache.errors())
        return status, resp, body

    def html(self, user, path):
        status, resp, body = self.get(user, path, headers={"Accept": "text/html"})
        assert status == 200, (status, body)
        assert resp.getheader("Content-Type").startswith("text/html")
        return resp, body


# --------------------------------------------------------------------------- shipped


@pytest.fixture(scope="module")
def shipped(world):
    return world.serve("shipped", world.alice, {})


def test_the_shipped_settings_serve_the_daemon_users_dashboard(shipped, world):
    a = world.alice
    status, resp, _ = shipped.get(a, "/")
    assert status == 302 and resp.getheader("Location") == "/u/%s/" % a.name
    resp, page = shipped.html(a, "/u/%s/" % a.name)
    assert "wf-" + a.name in page
    assert 'href="/u/%s/' % a.name in page and "127.0.0.1" not in page
    assert "script-src 'self'" in resp.getheader("Content-Security-Policy")
    status, resp, _ = shipped.get(None, "/static/dashboard.js")
    assert status == 200 and resp.getheader("Content-Type").startswith("text/javascript")


def test_the_shipped_settings_serve_the_monitoring_api(shipped, world):
    base = "/api/v1/user/%s/root" % world.alice.name
    status, _, body = shipped.get(world.alice, base)
    assert status == 200 and body["_meta"]["records_total"] == 2, body
    status, _, body = shipped.get(world.alice, base + "/1/workflow/1/job/failed")
    # 5.x's rule: every job with a failed try (retry_ID1 failed once, then runs again)
    assert status == 200 and [j["exec_job_id"] for j in body["records"]] == \
        ["bad_ID1", "retry_ID1"]


def test_the_shipped_settings_serve_the_ensemble_api(shipped, world):
    a = world.alice
    name = unique("apache")
    status, resp, body = shipped.call(a, "POST", "/ensembles", form={"name": name},
                                      headers={"Origin": shipped.origin})
    assert status == 201, body
    assert resp.getheader("Location") == "/ensembles/" + name
    status, _, listed = shipped.get(a, "/api/v1/user/%s/ensembles" % a.name)
    assert status == 200 and name in {e["name"] for e in listed}
    assert name in {e["name"] for e in world.daemon.request("GET", "/ensembles")[2]}
    # the Origin check sees the scheme Apache terminated (https), and refuses other sites
    status, _, body = shipped.call(a, "POST", "/ensembles", form={"name": unique("evil")},
                                   headers={"Origin": "https://evil.example"})
    assert status == 403 and "Origin" in body["message"]


def test_pam_under_apache_checks_only_the_daemon_users_password(shipped, world):
    """pam_unix, not root, asks its helper, which checks the caller's own password only:
    bob's right password is refused as a wrong one would be."""
    a, b = world.alice, world.bob
    status, resp, _ = shipped.get(a, "/api/v1/user/%s/root" % a.name, password="wrong")
    assert status == 401 and resp.getheader("WWW-Authenticate").startswith("Basic ")
    assert shipped.get(b, "/api/v1/user/%s/root" % b.name)[0] == 401
    assert shipped.get(None, "/api/v1/user/%s/root" % a.name)[0] == 401


def test_the_shipped_settings_refuse_other_users_data(shipped, world):
    status, _, body = shipped.get(world.alice, "/api/v1/user/%s/root" % world.bob.name)
    assert status == 403 and "ADMIN_USERS" in body["message"]


def test_mod_wsgi_refuses_to_run_the_service_as_root(world, sandbox):
    """What keeps PROCESS_SWITCHING from switching under Apache: the daemon processes
    cannot be root, so no process of the service can become another user."""
    wsgi = install_wsgi(os.path.join(sandbox.base, "as-root"))
    port = free_port()
    apache = Apache(sandbox.base, site_conf(world.values(wsgi, "root", "root"), port), port)
    code, output = apache.check()
    assert code != 0 and "blocked from running as root" in output, output


# --------------------------------------------------------------------------- front


@pytest.fixture(scope="module")
def front(world):
    settings = {"AUTHENTICATION": "NoAuthentication", "ADMIN_USERS": {world.carol.name},
                "PEGASUS_SERVICE_URL_PREFIX": PREFIX}
    return world.serve("front", world.alice, settings, apache_auth=True)


def test_apache_authenticates_for_no_authentication(front, world):
    a = world.alice
    status, resp, _ = front.get(None, PREFIX + "/u/%s/" % a.name)
    assert status == 401 and 'realm="Pegasus Service"' in resp.getheader("WWW-Authenticate")
    assert front.get(a, PREFIX + "/api/v1/user/%s/root" % a.name, password="wrong")[0] == 401
    status, resp, _ = front.get(a, PREFIX + "/")
    assert status == 302 and resp.getheader("Location") == PREFIX + "/u/%s/" % a.name


def test_the_url_prefix_under_apache(front, world):
    a = world.alice
    resp, page = front.html(a, PREFIX + "/u/%s/" % a.name)
    assert "wf-" + a.name in page and 'href="%s/u/%s/' % (PREFIX, a.name) in page
    assert 'src="%s/static/' % PREFIX in page
    assert front.get(None, PREFIX + "/static/dashboard.css")[0] == 401  # Apache asks first
    assert front.get(a, PREFIX + "/static/dashboard.css")[0] == 200
    status, _, body = front.get(a, "/u/%s/" % a.name)
    assert status == 404 and PREFIX in body["message"]
    name = unique("front")
    status, resp, body = front.call(a, "POST", PREFIX + "/ensembles", form={"name": name},
                                    headers={"Origin": front.origin})
    assert status == 201 and resp.getheader("Location") == PREFIX + "/ensembles/" + name, body
    status, _, body = front.get(a, PREFIX + "/api/v1/user/%s/root/1/workflow" % a.name)
    assert status == 200 and body["records"][0]["dax_label"] == "wf-" + a.name


def test_remote_user_is_the_caller_and_admin_users_applies(front, world):
    a, b, c = world.alice, world.bob, world.carol
    mine = PREFIX + "/api/v1/user/%s" % a.name
    status, _, body = front.get(c, mine + "/root")
    assert status == 200 and body["records"][0]["dax_label"] == "wf-" + a.name
    status, _, listed = front.get(c, mine + "/ensembles")
    assert status == 200 and listed
    status, _, body = front.call(c, "POST", mine + "/ensembles", form={"name": unique("c")})
    assert status == 403 and "ADMIN_WRITE" in body["message"]
    # bob is no admin; naming alice in a header of his own changes nothing
    for headers in ({}, {"Remote-User": a.name}, {"X-Remote-User": a.name}):
        status, _, body = front.get(b, mine + "/root", headers=headers)
        assert status == 403 and "ADMIN_USERS" in body["message"], (headers, body)


def test_process_switching_under_apache_serves_only_the_daemon_user(front, world):
    status, _, body = front.get(world.bob, PREFIX + "/api/v1/user/%s/root" % world.bob.name)
    assert status == 403 and "PROCESS_SWITCHING needs root" in body["message"]


# --------------------------------------------------------------------------- account


@pytest.fixture(scope="module")
def account(world):
    """svc, a service account: PAM may check everyone's password through the shadow
    group, and alice lets svc's group read her databases; bob does not."""
    a = world.alice
    for path in [a.pegasus_dir] + [os.path.join(a.pegasus_dir, n)
                                   for n in os.listdir(a.pegasus_dir) if n.endswith(".db")]:
        os.chown(path, a.uid, world.svc.gid)
        os.chmod(path, 0o750 if os.path.isdir(path) else 0o640)

    def edit(text):
        text = text.replace("python-path=", "supplementary-groups=shadow python-path=")
        return text.replace("WSGIScriptAlias       / ", "WSGIScriptAlias       %s " % PREFIX)
    settings = {"PROCESS_SWITCHING": False, "ADMIN_USERS": None,
                "PEGASUS_SERVICE_URL_PREFIX": PREFIX}
    return world.serve("account", world.svc, settings, edit=edit)


def test_a_service_account_reads_what_users_let_it_read(account, world):
    a, b = world.alice, world.bob
    status, _, body = account.get(a, PREFIX + "/api/v1/user/%s/root" % a.name)
    assert status == 200 and body["_meta"]["records_total"] == 2, body
    resp, page = account.html(a, PREFIX + "/u/%s/" % a.name)
    assert "wf-" + a.name in page and 'href="%s/u/%s/' % (PREFIX, a.name) in page
    status, _, body = account.get(b, PREFIX + "/api/v1/user/%s/root" % b.name)
    assert status in (403, 404) and "workflow.db cannot be read" in body["message"], body


def test_a_service_account_acts_on_nobodys_ensembles(account, world):
    status, _, body = account.get(world.alice, PREFIX + "/ensembles")
    assert status == 503 and "not %s" % world.alice.name in body["message"], body


def test_pam_with_the_shadow_group_checks_every_users_password(account, world):
    a, b = world.alice, world.bob
    assert account.get(b, PREFIX + "/api/v1/user/%s/root" % b.name,
                       password="wrong")[0] == 401
    assert account.get(b, PREFIX + "/api/v1/user/%s/root" % a.name)[0] == 403


def test_mounted_at_the_prefix_the_wsgi_file_is_not_a_document(account, world):
    status, _, body = account.get(world.alice, "/pegasus-service.wsgi")
    assert status in (403, 404) and "wsgi_application" not in str(body)


# --------------------------------------------------------------------------- the .wsgi file


def test_the_wsgi_file_names_a_setting_it_does_not_know(tmp_path, monkeypatch, caplog):
    """Pegasus's app.config.from_object takes a misspelt name silently; we say so."""
    wsgi = install_wsgi(str(tmp_path), AUTHENTICATION="NoAuthentication",
                        PROCESS_SWITCHING=False, ADMIN_USER="*")
    (tmp_path / "service.py").write_text("")
    monkeypatch.setenv("PEGASUS_ENV", str(tmp_path / "service.py"))
    logger = logging.getLogger("pegasus_em")
    handlers, level = list(logger.handlers), logger.level
    try:
        runpy.run_path(wsgi)
    finally:
        logger.handlers[:] = handlers
        logger.setLevel(level)
    assert "ADMIN_USER: unknown setting in the .wsgi file (ignored)" in caplog.text
