"""pegasus-service pieces in-process, no root needed: the monitoring API on missing,
changing and foreign databases (test_monitoring.py has its routes), admin rules, the
login cache, PAM wrapping, framing, and the front application under wsgiref's validator."""

import io
import json
import os
import socket
import sqlite3
import wsgiref.util
import wsgiref.validate

import pytest

from pegasus_em.service import pam, service_app, switch
from pegasus_em.web import auth
from pegasus_em.errors import (BadRequest, ConfigError, EMError, NotFound, TooManyRequests,
                               Unauthorized)
from pegasus_em.service.monitoring import Monitoring
from pegasus_em.web.web import Request, Response
from service_fixtures import make_pegasus_dbs


# --------------------------------------------------------------------------- monitoring API

@pytest.fixture
def home(tmp_path):
    make_pegasus_dbs(str(tmp_path / ".pegasus"))
    return str(tmp_path)


def get(mon, home, rest, **args):
    result = mon.handle(home, rest, args)
    return result.status, (json.loads(result.text) if result.text else None)


def test_missing_databases_are_404_and_never_created(tmp_path, home):
    mon = Monitoring()
    with pytest.raises(NotFound) as e:
        get(mon, str(tmp_path / "nobody"), "/root")
    assert "workflow.db" in e.value.message
    assert not os.path.exists(tmp_path / "nobody")
    with pytest.raises(NotFound) as e:
        get(mon, home, "/root/2/workflow")
    assert "STAMPEDE" in e.value.message
    assert not os.path.exists(tmp_path / ".pegasus" / "diamond.stampede.db.missing")


def test_cached_answers_follow_changes(home):
    mon = Monitoring()
    assert get(mon, home, "/root")[1]["_meta"]["records_total"] == 2
    with sqlite3.connect(os.path.join(home, ".pegasus", "workflow.db")) as db:
        db.execute("INSERT INTO master_workflow (wf_id, wf_uuid, archived) VALUES (3, 'u3', 0)")
    assert get(mon, home, "/root")[1]["_meta"]["records_total"] == 3
    os.unlink(os.path.join(home, ".pegasus", "workflow.db"))
    with pytest.raises(NotFound):
        get(mon, home, "/root")


def test_an_empty_master_db_is_204(tmp_path):
    os.makedirs(tmp_path / ".pegasus")
    from service_fixtures import MASTER_DDL
    with sqlite3.connect(str(tmp_path / ".pegasus" / "workflow.db")) as db:
        db.executescript(MASTER_DDL)
    assert get(Monitoring(), str(tmp_path), "/root") == (204, None)


def test_a_database_of_another_kind_is_a_clear_404(tmp_path):
    os.makedirs(tmp_path / ".pegasus")
    sqlite3.connect(str(tmp_path / ".pegasus" / "workflow.db")).execute("CREATE TABLE x (y)")
    with pytest.raises(NotFound) as e:
        get(Monitoring(), str(tmp_path), "/root")
    assert "master_workflow" in e.value.message


# --------------------------------------------------------------------------- auth

@pytest.mark.parametrize("setting, alice, bob", [
    (None, False, False), (False, False, False), ("", False, False), ("*", True, True),
    ({"alice"}, True, False), (["alice", "carol"], True, False), ("alice, carol", True, False),
    (frozenset(), False, False), (("bob",), False, True),
])
def test_admin_users_table(setting, alice, bob):
    admins = auth.AdminUsers(setting)
    assert ("alice" in admins, "bob" in admins) == (alice, bob)


def test_admin_users_true_is_refused():
    with pytest.raises(ConfigError):
        auth.AdminUsers(True)
    with pytest.raises(ConfigError):
        auth.AdminUsers([1, 2])


def test_login_cache_expires_and_keeps_no_password():
    now = [100.0]
    cache = auth.LoginCache(ttl=60, clock=lambda: now[0])
    cache.put("alice", "secret")
    assert cache.get("alice", "secret")
    assert not cache.get("alice", "other") and not cache.get("bob", "secret")
    assert b"secret" not in repr(cache._entries).encode()
    now[0] += 61
    assert not cache.get("alice", "secret")


class FakePam:
    def __init__(self, good):
        self.good = good
        self.calls = []

    def authenticate(self, user, password, rhost=None):
        self.calls.append(user)
        return (user, password) in self.good


def basic(user, password):
    import base64
    return "Basic " + base64.b64encode(("%s:%s" % (user, password)).encode()).decode()


class FakeClock:
    def __init__(self):
        self.now = 1000.0

    def __call__(self):
        return self.now

    def sleep(self, seconds):
        self.now += seconds


class SlowPam(FakePam):
    """PAM that takes `cost` seconds (of the fake clock) for accounts that exist."""

    def __init__(self, good, clock, cost):
        super().__init__(good)
        self.clock, self.cost = clock, cost

    def authenticate(self, user, password, rhost=None):
        self.clock.now += self.cost
        return super().authenticate(user, password, rhost)


def test_pam_authentication_caches_and_slows_failures():
    user = _some_user()
    fake = FakePam({(user, "right")})
    clock = FakeClock()
    slept = []
    a = auth.PamAuthentication(fake, sleep=slept.append, fail_delay=0.7, clock=clock)
    assert a.authenticate(basic(user, "right")) == user
    assert a.authenticate(basic(user, "right")) == user
    assert fake.calls == [user]                      # the second came from the cache
    with pytest.raises(Unauthorized):
        a.authenticate(basic(user, "wrong"))
    assert slept == [0.7]
    with pytest.raises(Unauthorized):
        a.authenticate(basic("root", "anything"))   # never asked of PAM
    with pytest.raises(Unauthorized):
        a.authenticate(None)
    with pytest.raises(BadRequest):
        a.authenticate("Basic !!!")
    with pytest.raises(BadRequest):
        a.authenticate("Basic \xe9\xff")            # 8-bit bytes: 400, not a 500
    assert fake.calls == [user, user]


def test_failed_logins_take_the_same_time_whether_the_account_exists_or_not():
    """An unknown name skips PAM; a known one pays for it: both must answer after
    the same delay, or the time tells which accounts exist."""
    clock = FakeClock()
    a = auth.PamAuthentication(SlowPam(set(), clock, 0.05), sleep=clock.sleep, fail_delay=1.0,
                               clock=clock, budget=auth.FailureBudget(free=100, clock=clock))
    took = []
    for name in (_some_user(), "no-such-account-zz9"):
        start = clock.now
        with pytest.raises(Unauthorized):
            a.authenticate(basic(name, "wrong"), "10.0.0.1")
        took.append(clock.now - start)
    assert took == [1.0, 1.0]


def test_password_guessing_is_slowed_per_user_and_per_address():
    user = _some_user()
    clock = FakeClock()
    pam_ = FakePam({(user, "right")})
    budget = auth.FailureBudget(free=3, window=900, cap=60, clock=clock, free_per_address=3)
    a = auth.PamAuthentication(pam_, sleep=clock.sleep, fail_delay=0, clock=clock, budget=budget)
    for _ in range(4):                                   # 3 free, the 4th closes for 2 s
        with pytest.raises(Unauthorized):
            a.authenticate(basic(user, "guess"), "10.0.0.1")
    asked = len(pam_.calls)
    with pytest.raises(TooManyRequests) as e:             # refused without asking PAM
        a.authenticate(basic(user, "right"), "10.0.0.2")  # (per user: any address)
    assert e.value.status == 429 and e.value.retry_after == 2 and len(pam_.calls) == asked
    with pytest.raises(TooManyRequests):                  # per address: any user
        a.authenticate(basic("no-such-account-zz9", "x"), "10.0.0.1")
    clock.now += 2
    with pytest.raises(Unauthorized):                     # open again, and a failure
        a.authenticate(basic(user, "guess"), "10.0.0.3")  # closes it for longer
    with pytest.raises(TooManyRequests) as e:
        a.authenticate(basic(user, "right"), "10.0.0.3")
    assert e.value.retry_after == 4
    for i in range(20):                                   # growing, but capped
        clock.now += 61
        with pytest.raises(Unauthorized):
            a.authenticate(basic(user, "guess"), "10.0.%d.9" % i)
    with pytest.raises(TooManyRequests) as e:
        a.authenticate(basic(user, "right"), "10.9.9.9")
    assert e.value.retry_after == 60
    clock.now += 61
    assert a.authenticate(basic(user, "right"), "10.9.9.9") == user


def _some_user():
    import pwd
    for entry in pwd.getpwall():
        if entry.pw_uid != 0:
            return entry.pw_name
    pytest.skip("no non-root account in the password database")


def test_missing_libpam_is_a_clear_error(monkeypatch):
    monkeypatch.setattr(pam, "LIBRARY_NAMES", ("libpam-does-not-exist.so.9",))
    monkeypatch.setattr(pam.ctypes.util, "find_library", lambda name: None)
    with pytest.raises(ConfigError) as e:
        pam.load()
    assert "libpam" in e.value.message and "NoAuthentication" in e.value.message


def test_real_pam_rejects_a_wrong_password():
    try:
        lib = pam.load()
    except ConfigError as e:
        pytest.skip(e.message)
    assert lib.authenticate("nobody-such-user-x", "x") is False
    assert lib.authenticate(_some_user(), "surely-not-the-password") is False


# --------------------------------------------------------------------------- framing

def test_frames_round_trip_and_refuse_giants():
    a, b = socket.socketpair()
    with a, b:
        switch.send_frame(a, {"status": 200, "x": "é"}, b"body" * 30000)
        assert switch.recv_frame(b) == ({"status": 200, "x": "é"}, b"body" * 30000)
        switch.send_frame(a, {"k": 1})
        assert switch.recv_frame(b) == ({"k": 1}, b"")
        a.sendall(switch.HEADER.pack(switch.MAX_META + 1, 0))
        with pytest.raises(ValueError):
            switch.recv_frame(b)
        a.close()
        assert switch.recv_frame(b) is None


def test_call_meta_cannot_carry_internal_operations():
    call = Request("GET", "/u/x/", user="x", remote_user="x")
    assert "op" not in call.meta()
    assert Request.from_meta(call.meta(), b"").meta() == call.meta()


# --------------------------------------------------------------------------- front app

class FakeBackend:
    def __init__(self):
        self.calls = []

    def handle(self, call):
        self.calls.append(call)
        return Response(200, [("Content-Type", "application/json")],
                     json.dumps({"user": call.user, "path": call.path}).encode())


class FakeAuth:
    realm = "Pegasus Service"

    def __init__(self, users):
        self.users = users

    def authenticate(self, header, remote_addr=None):
        if header is None:
            raise Unauthorized("Authentication required")
        if header not in self.users:
            raise Unauthorized("Invalid username or password")
        return self.users[header]


@pytest.fixture
def front():
    import pwd
    others = [e.pw_name for e in pwd.getpwall() if e.pw_uid != 0][:2]
    if len(others) < 2:
        pytest.skip("needs two non-root accounts in the password database")
    alice, bob = others
    backend = FakeBackend()
    app = service_app.ServiceApp(FakeAuth({"A": alice, "B": bob, "R": "root"}),
                                 auth.AdminUsers({bob}), backend, prefix="/pfx/",
                                 service_user=alice)
    return app, backend, alice, bob


def call_app(app, path, auth_header=None, method="GET", body=b"", extra=None, query="",
             validate=True):
    env = {"REQUEST_METHOD": method, "SCRIPT_NAME": "", "PATH_INFO": path,
           "QUERY_STRING": query,
           "SERVER_NAME": "svc.example", "SERVER_PORT": "5000", "HTTP_HOST": "svc.example:5000",
           "wsgi.url_scheme": "https", "wsgi.input": io.BytesIO(body),
           "CONTENT_LENGTH": str(len(body)) if body else ""}
    if auth_header:
        env["HTTP_AUTHORIZATION"] = auth_header
    env.update(extra or {})
    wsgiref.util.setup_testing_defaults(env)
    out = {}

    def start_response(status, headers, exc_info=None):
        out["status"] = int(status.split()[0])
        out["headers"] = dict(headers)
        return lambda data: None

    chunks = (wsgiref.validate.validator(app) if validate else app)(env, start_response)
    data = b"".join(chunks)
    if hasattr(chunks, "close"):
        chunks.close()
    body = json.loads(data) if data and out["headers"].get("Content-Type", "").startswith(
        "application/json") else data
    return out["status"], out["headers"], body


def test_front_routes_and_rules(front):
    app, backend, alice, bob = front
    assert call_app(app, "/api/v1/user/%s/root" % alice, "A")[0] == 404  # outside the prefix
    status, _, body = call_app(app, "/pfx/api/v1/user/%s/root" % alice, "A")
    assert status == 200 and body == {"user": alice, "path": "/api/v1/user/%s/root" % alice}
    call = backend.calls[-1]
    assert call.base == "/pfx" and call.remote_user == alice
    assert "authorization" not in call.headers
    status, headers, _ = call_app(app, "/pfx/", "A")
    assert status == 302 and headers["Location"] == "/pfx/u/%s/" % alice
    assert call_app(app, "/pfx/api/v1/user/%s/root" % bob, "A")[0] == 403   # not an admin
    assert call_app(app, "/pfx/u/%s/" % alice, "B")[0] == 200               # bob is
    assert call_app(app, "/pfx/u/nosuchuser-zz/", "B")[0] == 404
    assert call_app(app, "/pfx/u/nosuchuser-zz/", "A")[0] == 403
    assert call_app(app, "/pfx/u/root/", "B")[0] == 403
    assert call_app(app, "/pfx/ensembles", "R")[0] == 401
    assert call_app(app, "/pfx/ensembles", "A")[2]["user"] == alice
    assert call_app(app, "/pfx/other", "A")[0] == 404
    status, headers, _ = call_app(app, "/pfx/ensembles")
    assert status == 401 and headers["WWW-Authenticate"].startswith("Basic realm=")


def test_front_refuses_bad_input_before_the_backend(front):
    app, backend, alice, _ = front
    n = len(backend.calls)
    for path in ("/pfx/u/%s/../x" % alice, "/pfx/u/%s/./x" % alice, "/pfx/u/a\\b/"):
        assert call_app(app, path, "A")[0] == 400, path
    assert call_app(app, "/pfx/ensembles", "A", "POST", b"x" * (2 << 20))[0] == 413
    assert call_app(app, "/pfx/ensembles", "A", "POST", b"name=x",
                    {"HTTP_TRANSFER_ENCODING": "chunked"})[0] == 411
    assert call_app(app, "/pfx/ensembles", "A", "POST", b"", {"CONTENT_LENGTH": "-3"},
                    validate=False)[0] == 400
    assert len(backend.calls) == n


def test_a_forged_host_header_does_not_reach_links(front):
    app, backend, alice, _ = front
    for host in ('evil"><script>', "evil.example.com"):
        call_app(app, "/pfx/u/%s/" % alice, "A", extra={"HTTP_HOST": host})
        assert backend.calls[-1].base == "/pfx" and backend.calls[-1].public == ""
        status, headers, _ = call_app(app, "/pfx/", "A", extra={"HTTP_HOST": host})
        assert headers["Location"] == "/pfx/u/%s/" % alice


def test_cross_site_state_changes_are_refused_and_clients_without_origin_work(front):
    """A page elsewhere can make a signed-in browser post a form with its cached Basic
    credentials (defect 1): Origin, Sec-Fetch-Site, form navigations to the API and
    text/plain bodies are refused before the backend sees anything."""
    app, backend, alice, _ = front
    form = b"name=x&basedir=/tmp&plan_command=touch+/tmp/pwned"
    post = {"CONTENT_TYPE": "application/x-www-form-urlencoded"}
    n = len(backend.calls)
    attacks = [
        dict(post, HTTP_ORIGIN="https://evil.example"),
        dict(post, HTTP_ORIGIN="null"),
        dict(post, HTTP_SEC_FETCH_SITE="cross-site"),
        dict(post, HTTP_SEC_FETCH_SITE="same-site"),
        dict(post, HTTP_ORIGIN="https://svc.example:5000", HTTP_SEC_FETCH_SITE="same-origin",
             HTTP_SEC_FETCH_MODE="navigate"),                # a form aimed at the API
    ]
    for extra in attacks:
        for path in ("/pfx/ensembles/e/workflows", "/pfx/api/v1/user/%s/ensembles/e/workflows"
                     % alice):
            assert call_app(app, path, "A", "POST", form, extra)[0] == 403, (path, extra)
    status, _, body = call_app(app, "/pfx/ensembles/e/workflows", "A", "POST", form,
                               {"CONTENT_TYPE": "text/plain"})
    assert status == 415 and "x-www-form-urlencoded" in body["message"]
    assert len(backend.calls) == n
    # the CLI, curl and scripts send no Origin; a same-origin fetch sends ours
    assert call_app(app, "/pfx/ensembles/e/workflows", "A", "POST", form, post)[0] == 200
    assert call_app(app, "/pfx/ensembles/e/workflows", "A", "POST", form,
                    dict(post, HTTP_ORIGIN="https://svc.example:5000",
                         HTTP_SEC_FETCH_SITE="same-origin", HTTP_SEC_FETCH_MODE="cors"))[0] == 200
    assert call_app(app, "/pfx/ensembles/e/workflows", "A", "POST",
                    b'{"name": "x"}', {"CONTENT_TYPE": "application/json"})[0] == 200
    # the dashboard's own forms (same origin, navigating) still work
    assert call_app(app, "/pfx/u/%s/ensembles/e" % alice, "A", "POST", b"action=pause",
                    dict(post, HTTP_ORIGIN="https://svc.example:5000",
                         HTTP_SEC_FETCH_SITE="same-origin", HTTP_SEC_FETCH_MODE="navigate"))[0] \
        == 200
    assert call_app(app, "/pfx/ensembles", "A", "GET", extra={
        "HTTP_ORIGIN": "https://evil.example", "HTTP_SEC_FETCH_SITE": "cross-site"})[0] == 200


def test_admins_view_but_act_only_with_admin_write(front):
    app, backend, alice, bob = front          # bob is an admin
    form = b"state=PAUSED"
    post = {"CONTENT_TYPE": "application/x-www-form-urlencoded"}
    n = len(backend.calls)
    for path in ("/pfx/api/v1/user/%s/ensembles/e" % alice, "/pfx/u/%s/ensembles/e" % alice):
        status, _, body = call_app(app, path, "B", "POST", form, post)
        assert status == 403 and "ADMIN_WRITE" in body["message"]
    assert len(backend.calls) == n
    assert call_app(app, "/pfx/api/v1/user/%s/ensembles/e" % alice, "B")[0] == 200
    app.admin_write = True
    assert call_app(app, "/pfx/api/v1/user/%s/ensembles/e" % alice, "B", "POST", form,
                    post)[0] == 200


class ScriptedBackend:
    """A user's worker turned hostile: it answers whatever the test says."""

    def __init__(self):
        self.reply = None

    def handle(self, call):
        return self.reply


@pytest.fixture
def hostile(front):
    _, _, alice, _ = front
    backend = ScriptedBackend()
    app = service_app.ServiceApp(FakeAuth({"A": alice}), auth.AdminUsers(None), backend,
                                 prefix="/pfx", service_user=alice)
    return app, backend, alice


def test_a_workers_reply_cannot_weaken_the_page_or_serve_script(hostile):
    app, backend, alice = hostile
    page = "/pfx/u/%s/" % alice
    backend.reply = Response(200, [("Content-Type", "text/html"), ("Content-Security-Policy",
                                                                "script-src *"),
                                ("X-Frame-Options", "ALLOWALL"), ("Set-Cookie", "a=b"),
                                ("Refresh", "0; url=https://evil.example"),
                                ("X-Content-Type-Options", "sniff")],
                          b"<script>alert(1)</script>")
    status, headers, _ = call_app(app, page, "A")
    assert status == 200
    assert headers["Content-Security-Policy"].startswith("default-src 'none'; script-src 'self';")
    assert headers["X-Frame-Options"] == "DENY" and headers["X-Content-Type-Options"] == "nosniff"
    assert "Set-Cookie" not in headers and "Refresh" not in headers
    for kind in ("text/javascript", "application/javascript; charset=utf-8", "text/css",
                 "application/ecmascript", "text/xml", "application/xhtml+xml"):
        backend.reply = Response(200, [("Content-Type", kind)], b"alert(1)")
        assert call_app(app, page, "A")[1]["Content-Type"] == "application/octet-stream", kind
    backend.reply = Response(200, [("Content-Type", "text/plain; charset=utf-8"),
                                ("Content-Security-Policy", "sandbox")], b"raw file")
    headers = call_app(app, page, "A")[1]
    assert "sandbox" in headers["Content-Security-Policy"]
    assert headers["Content-Type"] == "text/plain; charset=utf-8"
    for location in ("https://evil.example/", "//evil.example/x", "/elsewhere/", "/\\evil"):
        backend.reply = Response(303, [("Location", location)], b"")
        assert call_app(app, page, "A")[0] == 502, location
    backend.reply = Response(303, [("Location", "/pfx/u/%s/ensembles" % alice)], b"")
    assert call_app(app, page, "A")[1]["Location"] == "/pfx/u/%s/ensembles" % alice
    for bad in (Response(101, [], b""), Response("x", [], b""), Response(200, None, b""),
                Response(200, [("Content-Type", "text/html\r\nX: y")], b"")):
        backend.reply = bad
        status, headers, _ = call_app(app, page, "A", validate=False)
        assert status in (200, 502) and "X" not in headers


def test_static_files_come_from_the_listener_before_authentication(hostile):
    app, backend, _ = hostile
    backend.reply = Response(200, [("Content-Type", "text/javascript")], b"alert('worker')")
    status, headers, body = call_app(app, "/pfx/static/dashboard.js")
    assert status == 200 and headers["Content-Type"].startswith("text/javascript")
    assert body.startswith(b"// Pegasus dashboard")
    assert call_app(app, "/pfx/static/nope.js")[0] == 401    # not ours: not served


def test_no_authentication_identity(front):
    _, backend, alice, bob = front
    app = service_app.ServiceApp(auth.NoAuthentication(), auth.AdminUsers(None), backend,
                                 service_user=alice)
    assert call_app(app, "/ensembles")[2]["user"] == alice             # the service's user
    assert call_app(app, "/u/%s/" % bob)[2]["user"] == bob             # the URL's (Pegasus)
    status, _, _ = call_app(app, "/u/%s/" % bob, extra={"REMOTE_USER": alice})
    assert status == 403                                               # a front end's user
    assert backend.calls[-1].user == bob                               # (from the call above)


@pytest.mark.parametrize("prefix, expected", [
    (None, ""), ("", ""), ("/", ""), ("pegasus", "/pegasus"), ("/a/b/", "/a/b")])
def test_prefix_normalization(prefix, expected):
    assert service_app.normalize_prefix(prefix) == expected


def test_backend_only_user_is_403():
    backend = service_app.Backend(local=FakeBackend(), only_user="alice")
    with pytest.raises(EMError) as e:
        backend.handle(Request("GET", "/u/bob/", user="bob", remote_user="bob"))
    assert e.value.status == 403


@pytest.mark.parametrize("host, origin, ok", [
    ("svc.example", "https://svc.example", True),
    ("svc.example:443", "https://svc.example", True),
    ("SVC.example:5000", "https://svc.example:5000", True),
    ("svc.example:5000", "https://svc.example:5001", False),
    ("svc.example:5000", "http://svc.example:5000", False),
    ("svc.example", "https://svc.example.evil.example", False),
    (None, "https://svc.example", False),
])
def test_same_origin_compares_as_browsers_write_origins(host, origin, ok):
    from pegasus_em.web import web
    env = {"REQUEST_METHOD": "POST", "wsgi.url_scheme": "https", "HTTP_ORIGIN": origin}
    if host:
        env["HTTP_HOST"] = host
    if ok:
        web.check_same_origin(env)
    else:
        with pytest.raises(EMError) as e:
            web.check_same_origin(env)
        assert e.value.status == 403
    web.check_same_origin(dict(env, HTTP_ORIGIN="https://proxy.example"),
                          [web.origin_of("https://proxy.example:443/pegasus")])
