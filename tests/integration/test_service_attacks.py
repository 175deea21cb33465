"""pegasus-service attacked the ways the security review did (issue 10): a page on
another site, a user whose worker turns hostile, wrong passwords for system
accounts.  A real root service with PAM and process switching, real users, real
HTTPS, and a headless Chromium where a browser is the victim.
"""

import base64
import contextlib
import http.server
import os
import re
import subprocess
import tempfile
import threading

import pytest

import cdp
from conftest import Daemon, throwaway_user, unique, wait_until
from service_fixtures import (Service, children_of, chown_tree, make_certificate,
                              make_pegasus_dbs, proc_credentials)

# mallory's service.py: it runs inside mallory's own worker whenever that process reads
# mallory's settings, and from then on the worker answers what mallory wants.
HOSTILE = r'''
import sys as _sys
_ua, _sw = _sys.modules.get("pegasus_em.service.userapp"), _sys.modules.get("pegasus_em.service.switch")
if _ua is not None and _sw is not None and not getattr(_ua, "_PWNED", False):
    _ua._PWNED = True
    _sys.stderr.write("forged\r2030-01-01 ERROR pegasus_em: root says hello\n")
    _sys.stderr.flush()
    _handle = _ua.UserApp.handle

    def _evil(self, call, _handle=_handle, _ua=_ua):
        if call.path.endswith("/evil.js"):
            return _ua.web.Response(200, [("Content-Type", "text/javascript")],
                                    b"window.pwned = 'external'; document.title = 'pwned';")
        if call.path.endswith("/page"):
            return _ua.web.Response(200, [("Content-Type", "text/html; charset=utf-8"),
                                          ("Content-Security-Policy", "script-src * 'unsafe-inline'"),
                                          ("X-Frame-Options", "ALLOWALL")],
                                    b"<!DOCTYPE html><title>hello</title><body>"
                                    b"<script>window.pwned = 'inline'; document.title = 'pwned';</script>"
                                    b"<script src='evil.js'></script><p id=p>hello</p></body>")
        if call.path.endswith("/giant"):
            return _ua.web.Response(299, [], b"")
        return _handle(self, call)

    def _giant(sock, meta, *rest, _send=_sw.send_frame, _sw=_sw):
        if meta.get("status") != 299:
            return _send(sock, meta, *rest)
        sock.sendall(_sw.HEADER.pack(2, 1 << 30) + b"{}" + b"x" * 65536)
        sock.close()

    _ua.UserApp.handle = _evil
    _sw.send_frame = _giant   # every reply starts with a frame carrying its status
'''


def set_password(user, password):
    subprocess.run(["chpasswd"], input="%s:%s\n" % (user.name, password), text=True, check=True)
    user.login = password


@pytest.fixture(scope="module")
def site(sandbox):
    with contextlib.ExitStack() as stack:
        victim, mallory, admin = [stack.enter_context(throwaway_user(sandbox)) for _ in range(3)]
        for u in (victim, mallory, admin):
            set_password(u, "Pw-%s-2y" % u.name)
        victim.configure()
        mallory.configure(extra=HOSTILE)
        daemon = Daemon(victim).start()
        stack.callback(daemon.kill)
        cert, key = make_certificate(sandbox.base)
        service = Service(sandbox, "CERTIFICATE = %r\nPRIVATE_KEY = %r\nADMIN_USERS = {%r}\n"
                          % (cert, key, admin.name), python=victim.python).start()
        stack.callback(service.stop)
        yield Site(service, victim, mallory, admin, daemon)


class Site:
    def __init__(self, service, victim, mallory, admin, daemon):
        self.service, self.victim, self.mallory, self.admin = service, victim, mallory, admin
        self.daemon = daemon
        self.client = service.client()

    def as_user(self, user, method, path, **kwargs):
        return self.client.request(method, path, user.name, user.login, **kwargs)

    def workers(self):
        return {proc_credentials(pid)[0][0]: pid for pid in children_of(self.service.proc.pid)}

    def signed_in_url(self, user, path):
        """A URL carrying the user's credentials: the browser signs in and caches them."""
        host, port = self.client.host, self.client.port
        return "https://%s:%s@%s:%d%s" % (user.name, user.login, host, port, path)


@contextlib.contextmanager
def browser_for(tmp_path):
    chromium = cdp.find_chromium()
    if chromium is None:
        pytest.skip("chromium is not installed (Debian: apt-get install -y chromium); .ci/run "
                    "installs it")
    profile = tempfile.mkdtemp(prefix="chromium-", dir=str(tmp_path))
    browser = cdp.Browser(profile, chromium, flags=["--ignore-certificate-errors"])
    try:
        yield browser
    finally:
        browser.close()


@contextlib.contextmanager
def other_site(pages):
    """An attacker's web site on another origin (http://127.0.0.1:<other port>)."""

    class Handler(http.server.BaseHTTPRequestHandler):
        def do_GET(self):
            body = pages.get(self.path, "").encode()
            self.send_response(200 if body else 404)
            self.send_header("Content-Type", "text/html; charset=utf-8")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, *args):
            pass

    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        yield "http://127.0.0.1:%d" % server.server_address[1]
    finally:
        server.shutdown()
        server.server_close()


def workflow_names(site, ensemble):
    status, _, body = site.daemon.request("GET", "/ensembles/%s/workflows" % ensemble)
    assert status == 200, body
    return {w["name"] for w in body}


def test_a_page_on_another_site_cannot_submit_a_plan_command(site, tmp_path):
    """Defect 1: a signed-in user visits a page elsewhere; it posts a plan command to
    the service (form-encoded, text/plain and fetch), with the browser's cached Basic
    credentials.  Nothing reaches the user's ensemble manager."""
    v = site.victim
    ensemble = unique("csrf")
    assert site.as_user(v, "POST", "/ensembles", form={"name": ensemble})[0] == 201
    target = "%s/ensembles/%s/workflows" % (site.service.url, ensemble)
    fields = '<input name="name" value="%s"><input name="basedir" value="/tmp">' \
             '<input name="plan_command" value="touch /tmp/pwned-by-csrf">'
    pages = {
        "/form": '<form id="f" method="post" action="%s">%s</form>'
                 '<script>document.getElementById("f").submit()</script>'
                 % (target, fields % "viaform"),
        "/plain": '<form id="f" method="post" enctype="text/plain" action="%s">'
                  '<input name="name=viaplain&amp;basedir=/tmp&amp;plan_command=touch /tmp/p&amp;x"'
                  ' value="y"></form><script>document.getElementById("f").submit()</script>'
                  % target,
        "/fetch": '<script>fetch("%s", {method: "POST", mode: "no-cors", credentials: "include",'
                  ' body: new URLSearchParams({name: "viafetch", basedir: "/tmp",'
                  ' plan_command: "touch /tmp/p"})}).finally(function () {'
                  ' document.title = "sent"; })</script>' % target,
    }
    with other_site(pages) as elsewhere, browser_for(tmp_path) as browser:
        browser.load(site.signed_in_url(v, "/u/%s/ensembles" % v.name))
        assert browser.evaluate("document.title").endswith("Pegasus")   # signed in
        for page in ("/form", "/plain"):
            browser.load(elsewhere + page)
            wait_until(lambda: browser.evaluate("location.href").startswith(site.service.url),
                       message="the form post to arrive")
        browser.load(elsewhere + "/fetch")
        wait_until(lambda: browser.evaluate("document.title") == "sent", message="the fetch")
    assert workflow_names(site, ensemble) == set()
    # the same request from a client that is not a browser still works
    status, _, body = site.as_user(v, "POST", "/ensembles/%s/workflows" % ensemble,
                                   form={"name": "byclient", "basedir": "/tmp",
                                         "plan_command": "true"})
    assert status == 201, body
    assert workflow_names(site, ensemble) == {"byclient"}


def test_a_users_worker_cannot_run_script_in_an_admins_browser(site, tmp_path):
    """Defect 2: mallory's worker runs mallory's service.py and answers with a page of
    its own (inline script, a script file, its own lax CSP).  The admin who looks at
    mallory's pages runs none of it."""
    m, a = site.mallory, site.admin
    base = "/u/%s" % m.name
    # the admin's first request makes mallory's worker read mallory's settings
    site.as_user(a, "GET", "/api/v1/user/%s/ensembles" % m.name)
    status, headers, _ = site.as_user(a, "GET", base + "/page", headers={"Accept": "text/html"})
    assert status == 200 and "script-src 'self'" in headers.getheader("Content-Security-Policy")
    assert "unsafe-inline" not in headers.getheader("Content-Security-Policy")
    assert headers.getheader("X-Frame-Options") == "DENY"
    status, headers, _ = site.as_user(a, "GET", base + "/evil.js")
    assert headers.getheader("Content-Type") == "application/octet-stream"
    assert headers.getheader("X-Content-Type-Options") == "nosniff"
    with browser_for(tmp_path) as browser:
        browser.load(site.signed_in_url(a, base + "/page"))
        assert browser.evaluate("document.getElementById('p').textContent") == "hello"
        assert browser.evaluate("typeof window.pwned") == "undefined"
        assert browser.evaluate("document.title") == "hello"


def test_a_worker_cannot_make_the_listener_take_memory(site):
    """Defect 7: a frame announcing a gigabyte is refused at its header; the listener's
    peak memory does not move."""
    m = site.mallory
    site.as_user(m, "GET", "/api/v1/user/%s/ensembles" % m.name)   # turn the worker hostile
    before = _peak_kib(site.service.proc.pid)
    status, _, body = site.as_user(m, "GET", "/u/%s/giant" % m.name)
    # refused; the GET is then tried once more on a fresh worker, which is not hostile yet
    assert status in (404, 502), body
    assert _peak_kib(site.service.proc.pid) - before < 64 * 1024
    assert "frame too large" in site.service.errors()
    assert site.as_user(site.victim, "GET", "/u/%s/" % site.victim.name)[0] == 200


def test_a_long_reply_is_streamed_not_held(site):
    """Defect 7, the other half: a reply longer than a page (a raw file download) passes
    through the listener as it arrives; the listener never holds it whole."""
    v = site.victim
    submit = os.path.join(v.home, "submit", "run0001")
    os.makedirs(submit, exist_ok=True)
    if not os.path.exists(os.path.join(v.pegasus_dir, "workflow.db")):
        make_pegasus_dbs(v.pegasus_dir, label="big")
    size = 40 << 20
    with open(os.path.join(submit, "big.out"), "wb") as f:
        f.write(os.urandom(1 << 20) * (size >> 20))
    chown_tree(os.path.join(v.home, "submit"), v.uid, v.gid)
    chown_tree(v.pegasus_dir, v.uid, v.gid)
    before = _peak_kib(site.service.proc.pid)
    conn = site.client.connection()
    token = base64.b64encode(("%s:%s" % (v.name, v.login)).encode()).decode()
    conn.request("GET", "/u/%s/r/1/w/root/files/big.out?raw=1" % v.name,
                 headers={"Authorization": "Basic " + token})
    resp = conn.getresponse()
    got = 0
    while True:
        chunk = resp.read(1 << 20)
        if not chunk:
            break
        got += len(chunk)
    conn.close()
    assert resp.status == 200 and got == size and resp.getheader("Content-Length") == str(size)
    assert "sandbox" in resp.getheader("Content-Security-Policy")
    assert _peak_kib(site.service.proc.pid) - before < (size >> 10) // 2


def _peak_kib(pid):
    with open("/proc/%d/status" % pid) as f:
        return int(re.search(r"^VmHWM:\s+(\d+)", f.read(), re.M).group(1))


def test_workers_log_through_a_pipe_as_themselves(site):
    """Defect 8: a worker's stderr is a pipe the listener reads, not the listener's own
    log file; its lines are marked as the user's and cannot pose as the service's."""
    m = site.mallory
    site.as_user(m, "GET", "/api/v1/user/%s/ensembles" % m.name)
    pid = site.workers()[m.uid]
    assert os.readlink("/proc/%d/fd/2" % pid).startswith("pipe:")
    service_err = os.readlink("/proc/%d/fd/2" % site.service.proc.pid)
    assert all(os.readlink("/proc/%d/fd/%s" % (pid, fd)) != service_err
               for fd in os.listdir("/proc/%d/fd" % pid))
    wait_until(lambda: "root says hello" in site.service.errors(), message="the worker's line")
    line = [x for x in site.service.errors().splitlines() if "root says hello" in x][-1]
    assert re.search(r"INFO \[\d+\] pegasus_em.service.switch: worker %s\[\d+\]: forged\\x0d2030" % m.name,
                     line), line


def test_wrong_passwords_start_no_process(site):
    """Defect 5: failed logins for system accounts (or anyone) start nothing."""
    before = set(site.workers())
    for name in ("daemon", "bin", "nobody", site.victim.name):
        status = site.client.request("GET", "/u/%s/" % name, name, "not-the-password")[0]
        assert status == 401
    assert set(site.workers()) <= before


def test_the_host_header_reaches_no_link(site):
    """Defect 10: links and redirects are root-relative."""
    v = site.victim
    status, resp, _ = site.as_user(v, "GET", "/", headers={"Host": "evil.example.com"})
    assert status == 302 and resp.getheader("Location") == "/u/%s/" % v.name
    _, _, page = site.as_user(v, "GET", "/u/%s/" % v.name,
                              headers={"Host": "evil.example.com", "Accept": "text/html"})
    assert "evil.example.com" not in page


def test_admins_may_view_but_not_act_on_others_ensembles(site):
    """Defect 15: ADMIN_USERS view; acting needs ADMIN_WRITE (off here)."""
    v, a = site.victim, site.admin
    ensemble = unique("adm")
    assert site.as_user(v, "POST", "/ensembles", form={"name": ensemble})[0] == 201
    path = "/api/v1/user/%s/ensembles" % v.name
    assert ensemble in {e["name"] for e in site.as_user(a, "GET", path)[2]}
    status, _, body = site.as_user(a, "POST", path + "/" + ensemble + "/workflows",
                                   form={"name": "x", "basedir": "/tmp", "plan_command": "true"})
    assert status == 403 and "ADMIN_WRITE" in body["message"]
    assert site.as_user(a, "POST", path + "/" + ensemble, form={"state": "PAUSED"})[0] == 403
    assert workflow_names(site, ensemble) == set()
    # the dashboard shows admins no forms they could not use; the owner gets them
    page = "/u/%s/ensembles/%s" % (v.name, ensemble)
    assert "<form method=\"post\"" not in site.as_user(a, "GET", page,
                                                        headers={"Accept": "text/html"})[2]
    assert "<form method=\"post\"" in site.as_user(v, "GET", page,
                                                    headers={"Accept": "text/html"})[2]
