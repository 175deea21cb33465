"""The dashboard's ensemble pages and actions, end to end: a throwaway user's
real `pegasus-em server` runs simulated workflows, and the dashboard runs as
that user (as pegasus-service's per-user process does), reading em.db
read-only and sending actions to the daemon through emproxy.  Then a headless
Chromium loads the main pages and clicks an action through."""

import base64
import html
import json
import os
import re
import subprocess
import tempfile
import time
import urllib.error
import urllib.parse
import urllib.request

import pytest

import cdp
from conftest import Daemon, wait_until
from dashboard_fixtures import look_at
from pegasus_em.web import web
from service_fixtures import Service, make_certificate

SERVE = """
import os, sys
from pegasus_em.dashboard import dashboard; from pegasus_em.web import httpd
srv = httpd.Server(("127.0.0.1", 0), dashboard.application)
with open(sys.argv[1] + ".tmp", "w") as f:
    f.write(srv.url)
os.rename(sys.argv[1] + ".tmp", sys.argv[1])
srv.serve_forever()
"""
TERMINAL = ("SUCCESSFUL", "FAILED", "PLAN_FAILED", "RUN_FAILED", "ABORTED")


class World:
    def __init__(self, user):
        user.configure(extra="EM_INTERVAL = 0.5\n")
        self.user = user
        self.em = Daemon(user).start()
        self.example = self._example()
        self.proc = None

    def _example(self):
        src = os.path.join(self.user.sandbox.code, "share", "pegasus-sim", "example")
        for name in os.listdir(src):
            with open(os.path.join(src, name)) as f:
                self.user.write(os.path.join("example", name), f.read(), mode=0o755)
        return os.path.join(self.user.home, "example")

    def api(self, method, path, data=None):
        status, _, body = self.em.request(method, path, data)
        assert status < 400, (method, path, status, body)
        return body

    def submit(self, name, *knobs, priority=0, ensemble="e1"):
        command = " ".join(['"%s/plan.sh"' % self.example] + ['"-D%s"' % k for k in knobs])
        self.api("POST", "/ensembles/%s/workflows" % ensemble, {
            "name": name, "priority": str(priority), "basedir": self.example, "plan_command": command})

    def wait(self, name, *states, ensemble="e1"):
        return wait_until(lambda: self.api("GET", "/ensembles/%s/workflows/%s" % (ensemble, name))["state"]
                          in states, 30, interval=0.05, message="%s to reach %s" % (name, states))

    def build(self):
        self.api("POST", "/ensembles", {"name": "e1", "max_planning": "1", "max_running": "1"})
        self.api("POST", "/ensembles", {"name": "e2"})
        self.submit("done", "pegasus.sim.run.seconds=0")
        self.submit("idle", "pegasus.sim.start.delay=600", ensemble="e2")  # DAGMan idle in the queue
        self.wait("done", *TERMINAL)
        self.submit("stuck", "pegasus.sim.stall.at=1", priority=10)
        self.wait("stuck", "RUNNING")
        self.submit("waiting", priority=5)
        self.submit("later", priority=1)
        self.submit("broken", "pegasus.sim.plan.fail=true", priority=7)
        for name in ("waiting", "later"):
            self.wait(name, "QUEUED")
        self.wait("broken", "PLAN_FAILED")
        self.wait("idle", "RUNNING", ensemble="e2")
        self.api("POST", "/ensembles/e1/triggers/cron", {
            "trigger": "nightly", "workflow_script": os.path.join(self.example, "plan.sh"),
            "workflow_args": json.dumps(["-Dpegasus.sim.run.seconds=0"]), "interval": "1h", "type": "CRON"})
        fired = wait_until(lambda: self.api("GET", "/ensembles/e1/triggers/nightly")["workflows"], 30)
        self.wait(fired[0], "QUEUED")  # planned, then waits behind "stuck" for the run slot
        return self

    def serve(self):
        endpoint = os.path.join(self.user.home, "dashboard.url")
        self.proc = self.user.popen([self.user.python, "-c", SERVE, endpoint], stdout=subprocess.DEVNULL,
                                    stderr=subprocess.PIPE)
        wait_until(lambda: os.path.exists(endpoint) or self.proc.poll() is not None, 20)
        assert self.proc.poll() is None, self.proc.stderr.read()
        self.url = open(endpoint).read()
        self.base = "/u/%s" % self.user.name
        return self

    def request(self, path, method="GET", form=None, headers=None):
        data = urllib.parse.urlencode(form).encode() if form is not None else None
        hdrs = dict(headers or {})
        if data is not None:
            hdrs.setdefault("Content-Type", "application/x-www-form-urlencoded")
        url = path if path.startswith("http") else self.url + path
        req = urllib.request.Request(url, data=data, method=method, headers=hdrs)
        opener = urllib.request.build_opener(NoRedirect)
        try:
            with opener.open(req, timeout=30) as r:
                return r.status, r.headers, r.read().decode("utf-8", "replace")
        except urllib.error.HTTPError as e:
            return e.code, e.headers, e.read().decode("utf-8", "replace")

    def json(self, path, **kw):
        status, headers, body = self.request(path, headers={"Accept": "application/json"}, **kw)
        return status, json.loads(body)

    def token(self, path):
        _, _, page = self.request(path)
        return re.search(r'name="csrf" value="([^"]+)"', page).group(1)

    def close(self):
        if self.proc and self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait(10)
        self.em.kill()


class NoRedirect(urllib.request.HTTPRedirectHandler):
    def redirect_request(self, *args, **kwargs):
        return None


@pytest.fixture(scope="module")
def world(module_user):
    w = World(module_user)
    try:
        yield w.build().serve()
    finally:
        w.close()


def test_ensembles_page_shows_states_throttles_and_counts(world):
    status, data = world.json(world.base + "/ensembles")
    assert status == 200
    e1 = {e["name"]: e for e in data["ensembles"]}["e1"]
    api = world.api("GET", "/ensembles/e1/workflows")
    for state in ("SUCCESSFUL", "RUNNING", "QUEUED", "PLAN_FAILED"):
        assert e1["counts"][state] == sum(1 for w in api if w["state"] == state), state
    assert e1["workflows"] == len(api) and e1["running"] == 1 and e1["max_running"] == 1
    assert e1["planning"] == 0 and e1["live_triggers"] == 1
    _, _, page = world.request(world.base + "/ensembles")
    assert '<progress max="1" value="1">' in page and 'href="%s/ensembles/e1"' % world.base in page


def test_ensemble_lists_workflows_in_queue_order_with_why_they_wait(world):
    status, data = world.json(world.base + "/ensembles/e1")
    assert status == 200
    names = [w["name"] for w in data["workflows"]]
    queued = [w for w in data["workflows"] if w["state"] == "QUEUED"]
    assert names[0] == "stuck" and [w["name"] for w in queued][:2] == ["waiting", "later"]
    assert queued[0]["position"] == 1 and queued[0]["waiting"] == "all 1 running slots in use"
    assert queued[1]["waiting"] == "all 1 running slots in use; 1 workflow(s) ahead of it"
    for w in data["workflows"]:
        events = world.api("GET", "/ensembles/e1/workflows/%s/events" % w["name"])
        assert w["last_event"]["new_state"] == events[-1]["new_state"], w["name"]
    broken = [w for w in data["workflows"] if w["name"] == "broken"][0]
    assert broken["waiting"] is None and "planner exited" in broken["reason"]
    trigger, = data["triggers"]
    assert trigger["name"] == "nightly" and trigger["state"] == "RUNNING" and trigger["fire_count"] >= 1
    assert trigger["workflow_count"] == world.api("GET", "/ensembles/e1/triggers/nightly")["workflow_count"]
    _, _, page = world.request(world.base + "/ensembles/e1")
    assert page.count('name="csrf"') > 5 and "all 1 running slots in use" in page


def test_workflow_history_and_analyze(world):
    status, data = world.json(world.base + "/ensembles/e1/workflows/done")
    assert status == 200
    api = world.api("GET", "/ensembles/e1/workflows/done/events")
    assert [e["new_state"] for e in data["events"]] == [e["new_state"] for e in api] == [
        "READY", "PLANNING", "QUEUED", "RUNNING", "SUCCESSFUL"]
    root = data["root_href"]
    status, details = world.json(root)
    assert status == 200 and details["state"] == "successful"
    status, analyze = world.json(data["analyze_href"])
    assert status == 200 and analyze["text"].startswith("Workflow state is SUCCESSFUL")
    status, _, page = world.request(data["analyze_href"])
    assert status == 200 and "pegasus-analyzer output is:" in page
    status, trigger = world.json(world.base + "/ensembles/e1/triggers/nightly")
    assert status == 200 and trigger["trigger"]["workflow_count"] == len(trigger["trigger"]["workflows"]) >= 1


def test_workflow_list_has_planned_workflows_that_never_started(world):
    status, data = world.json(world.base + "/")
    assert status == 200
    by_uuid = {w["wf_uuid"]: w for w in data["workflows"]}
    wanted = {"done": "successful", "stuck": "running", "waiting": "not-started", "later": "not-started"}
    for name, state in wanted.items():
        assert by_uuid[world.api("GET", "/ensembles/e1/workflows/" + name)["wf_uuid"]]["state"] == state, name
    idle = by_uuid[world.api("GET", "/ensembles/e2/workflows/idle")["wf_uuid"]]
    assert idle["state"] == "not-started" and idle["dax_label"] == "e2.idle" and "RUNNING" in idle["reason"]
    assert world.request(idle["href"])[0] == 200
    # waiting, later, e2.idle and the trigger's first workflow (queued behind stuck)
    assert data["counts"]["not-started"] == 4 and data["counts"]["running"] == 1


def test_workflow_list_names_runs_by_their_ensemble_workflow(world):
    """Every run of one DAX has Pegasus's label ("workflow"): the list names each run the
    ensemble manager started by its ensemble workflow (matched by wf_uuid), linked to its page,
    and the filter finds it by that name."""
    _, data = world.json(world.base + "/")
    by_uuid = {w["wf_uuid"]: w for w in data["workflows"]}
    for name in ("done", "stuck"):
        row = by_uuid[world.api("GET", "/ensembles/e1/workflows/" + name)["wf_uuid"]]
        assert row["wf_id"] and row["dax_label"] == "workflow" and row["href"].endswith("/r/%d" % row["wf_id"])
        assert row["em_workflow"] == "e1." + name and row["ensemble"] == "e1"
        assert row["em_href"] == world.base + "/ensembles/e1/workflows/" + name
    _, _, page = world.request(world.base + "/")
    assert '<a href="%s/ensembles/e1/workflows/done">e1.done</a>' % world.base in page
    _, found = world.json(world.base + "/?q=E1.DONE")
    assert [w["em_workflow"] for w in found["workflows"]] == ["e1.done"] and found["workflows"][0]["wf_id"]
    _, details = world.json(found["workflows"][0]["href"])  # and the run's own page names it too
    assert details["em_workflow"] == "e1.done" and details["em_href"] == world.base + "/ensembles/e1/workflows/done"
    assert 'started by the ensemble manager as <a href="%s">e1.done</a>' % details["em_href"] in \
        world.request(found["workflows"][0]["href"])[2]


def queue_rows(world, ensemble):
    """workflow name -> its row of the ensemble page's queue (HTML)."""
    _, _, page = world.request(world.base + "/ensembles/" + ensemble)
    queue = page.split("Workflows, in queue order")[1].split("<h2>")[0]
    return {re.search(r'/workflows/(\w+)">', row).group(1): row for row in queue.split("<tr>")[2:]}


def test_ensemble_page_shows_each_reason_once_and_priorities_only_where_they_count(world):
    rows = queue_rows(world, "e1")
    assert rows["stuck"].count("starting pegasus-run") == 1  # the reason, not again in the last event
    assert "QUEUED \u2192 RUNNING" in rows["stuck"]
    for name in ("waiting", "later"):
        assert 'name="priority"' in rows[name], name
    for name in ("stuck", "broken", "done"):  # running or finished: the priority decides nothing
        assert 'name="priority"' not in rows[name] and 'name="action" value="priority"' not in rows[name], name
    _, _, page = world.request(world.base + "/ensembles/e1/workflows/done")
    assert 'name="priority"' not in page and "Waiting for" not in page
    _, _, page = world.request(world.base + "/ensembles/e1/workflows/later")
    assert 'name="priority"' in page and "Waiting for" in page


def test_actions_need_a_valid_token_from_this_site(world):
    path = world.base + "/ensembles/e1"
    assert world.request(path, "POST", {"action": "pause"})[0] == 403
    assert world.request(path, "POST", {"action": "pause", "csrf": "1.abc"})[0] == 403
    token = world.token(path)
    status, _, body = world.request(path, "POST", {"action": "pause", "csrf": token},
                                    headers={"Origin": "https://evil.example"})
    assert status == 403 and "Cross-site" in body
    assert world.request(path, "POST", {"action": "pause", "csrf": token},
                         headers={"Sec-Fetch-Site": "cross-site"})[0] == 403
    assert world.request(path, "POST", {"action": "explode", "csrf": token})[0] == 400
    assert world.api("GET", "/ensembles/e1")["state"] == "ACTIVE"


def test_actions_go_through_the_daemon_and_say_what_happened(world):
    path = world.base + "/ensembles/e1"
    token = world.token(path)
    status, headers, _ = world.request(path, "POST", {"action": "pause", "csrf": token})
    assert status == 303 and "flash=" in headers["Location"]
    assert world.api("GET", "/ensembles/e1")["state"] == "PAUSED"
    _, _, page = world.request(headers["Location"].replace(world.url, ""))
    assert "Ensemble e1 is now PAUSED" in page
    _, data = world.json(path)
    assert [w["waiting"] for w in data["workflows"] if w["name"] == "waiting"] == [
        "ensemble e1 is PAUSED: nothing new starts (activate it)"]
    status, result = world.json(path, method="POST", form={"action": "activate", "csrf": token})
    assert status == 200 and result["ok"] and result["message"] == "Ensemble e1 is now ACTIVE"
    wf = world.base + "/ensembles/e1/workflows/later"
    status, headers, _ = world.request(wf, "POST", {"action": "priority", "priority": "50", "csrf": token})
    assert status == 303 and world.api("GET", "/ensembles/e1/workflows/later")["priority"] == 50
    _, data = world.json(path)
    assert [w["name"] for w in data["workflows"] if w["state"] == "QUEUED"][:2] == ["later", "waiting"]
    status, result = world.json(world.base + "/ensembles/e1/workflows/stuck", method="POST",
                                form={"action": "replan", "csrf": token})
    assert status == 409 and not result["ok"] and \
        result["message"].startswith("Invalid state change: RUNNING -> READY")
    status, headers, _ = world.request(world.base + "/ensembles/e1/workflows/stuck", "POST",
                                       {"action": "rerun", "csrf": token})
    _, _, page = world.request(headers["Location"].replace(world.url, ""))
    assert "Invalid state change: RUNNING -&gt; QUEUED" in page and 'class="notice error"' in page
    status, result = world.json(world.base + "/ensembles/e1/workflows/waiting", method="POST",
                                form={"action": "abort", "csrf": token})
    assert result["ok"] and world.api("GET", "/ensembles/e1/workflows/waiting")["state"] == "ABORTED"
    status, result = world.json(world.base + "/ensembles/e1/triggers/nightly", method="POST",
                                form={"action": "stop", "csrf": token})
    assert result["ok"] and world.api("GET", "/ensembles/e1/triggers/nightly")["state"] == "STOPPED"
    forged = world.request(world.base + "/ensembles/e1?flash=" + urllib.parse.quote("WyJ0cnVlIiwiaGkiXQ.x"))[2]
    assert 'class="notice' not in forged  # an unsigned message is not shown


def test_a_headless_browser_loads_the_pages_and_clicks_an_action(world, tmp_path):
    """Each page at 1,400 and 800 px wide, with a screenshot (in tmp_path, to look at): no
    name or button label broken, no button wider than its label, every table fits."""
    chromium = cdp.find_chromium()
    if chromium is None:
        pytest.skip("chromium is not installed (Debian: apt-get install -y chromium); .ci/run installs it")
    profile = tempfile.mkdtemp(prefix="chromium-", dir=str(tmp_path))
    browser = cdp.Browser(profile, chromium)
    shots = tmp_path / "screenshots"
    shots.mkdir()
    try:
        _, listing = world.json(world.base + "/")
        root = [w for w in listing["workflows"] if w["wf_id"]][0]["href"]
        problems = []
        for path in ("/", root, root + "/w/1/statistics", root + "/w/1/charts", root + "/w/1/files/",
                     "/ensembles", "/ensembles/e1", "/ensembles/e1/workflows/done",
                     "/ensembles/e1/workflows/waiting", "/ensembles/e1/triggers/nightly"):
            url = world.url + (path if path.startswith("/u/") else world.base + path)
            name = re.sub(r"\W+", "_", path.replace(world.base, "")).strip("_") or "workflows"
            problems += [(path,) + p for p in look_at(browser, url, str(shots), name)]
            assert browser.evaluate("document.title").endswith("Pegasus"), url
            assert browser.evaluate("document.querySelectorAll('table.sortable th[tabindex]').length"
                                    " === document.querySelectorAll('table.sortable th').length"), url
        assert problems == []
        assert len(os.listdir(str(shots))) == 20
        browser.load(world.url + world.base + "/ensembles/e1")
        assert browser.evaluate("!!document.querySelector('header .live input')")  # auto-refresh is on
        browser.evaluate("document.querySelector('table.sortable th').click()")
        assert browser.evaluate("document.querySelector('table.sortable th').getAttribute('aria-sort')") == \
            "ascending"
        browser.click_and_wait("form.act input[value=hold] ~ button")
        assert browser.evaluate("document.querySelector('.notice.ok').textContent") == "Ensemble e1 is now HELD"
        assert world.api("GET", "/ensembles/e1")["state"] == "HELD"
        assert "flash=" in browser.evaluate("location.search")
        browser.click_and_wait("form.act input[value=activate] ~ button")
        assert world.api("GET", "/ensembles/e1")["state"] == "ACTIVE"
        assert browser.problems == []
    finally:
        browser.close()


def test_a_failing_trigger_page_says_since_when_with_its_first_and_last_error(world):
    world.api("POST", "/ensembles/e2/triggers/cron", {
        "trigger": "flaky", "workflow_script": "/no/such/plan.sh", "interval": "1s",
        "type": "CRON"})
    wait_until(lambda: world.api("GET", "/ensembles/e2/triggers/flaky")["failures"] >= 2, 10)
    status, data = world.json(world.base + "/ensembles/e2/triggers/flaky")
    t = data["trigger"]
    assert status == 200 and t["failing"] and t["state"] == "RUNNING"
    assert "/no/such/plan.sh does not exist" in t["first_error"] and t["first_failure"]
    status, _, page = world.request(world.base + "/ensembles/e2/triggers/flaky")
    assert status == 200 and "yes, since" in page
    world.api("DELETE", "/ensembles/e2/triggers/flaky")


@pytest.fixture(scope="module")
def service(world, sandbox):
    """A real pegasus-service (root, process switching, PAM) where the world's user signs in."""
    subprocess.run(["chpasswd"], input="%s:%s\n" % (world.user.name, LOGIN), text=True, check=True)
    cert, key = make_certificate(sandbox.base)
    svc = Service(sandbox, "CERTIFICATE = %r\nPRIVATE_KEY = %r\n" % (cert, key), python=world.user.python).start()
    yield svc
    svc.stop()


LOGIN = "Pw-dash-1x"
BROWSER_ACCEPT = "text/html,application/xhtml+xml,application/xml;q=0.9,*/*;q=0.8"


def test_the_service_refuses_a_browser_with_a_page_and_scripts_with_json(world, service):
    """The listener answers 401/403/404 itself: a browser gets a small page of the service's
    own (escaped, the service's CSP and style sheet), API clients keep 5.x's JSON body."""
    client, u = service.client(), world.user
    evil = urllib.parse.quote("<img src=x onerror=alert(1)>", safe="")
    status, resp, page = client.request("GET", "/u/%s/" % evil, u.name, LOGIN,
                                        headers={"Accept": BROWSER_ACCEPT})
    assert status == 403 and resp.getheader("Content-Type") == "text/html; charset=utf-8"
    assert page.startswith("<!DOCTYPE html>") and "<h1>Forbidden</h1>" in page
    assert "<img" not in page and "<script" not in page and "&lt;img src=x onerror=alert(1)&gt;&#x27;s data" in page
    assert resp.getheader("Content-Security-Policy") == web.CSP and resp.getheader("X-Frame-Options") == "DENY"
    css = re.search(r'<link rel="stylesheet" href="([^"]+)">', page).group(1)
    assert css.startswith("/static/dashboard.css?v=") and client.request("GET", css)[0] == 200
    status, resp, body = client.request("GET", "/u/root/", u.name, LOGIN)  # Accept: application/json
    assert status == 403 and body == {"message": "%s may not see root's data (ADMIN_USERS)" % u.name}
    for path in ("/api/v1/user/root/root", "/api/v1/user/root/ensembles"):  # the APIs: 5.x's JSON, always
        status, resp, body = client.request("GET", path, u.name, LOGIN, headers={"Accept": BROWSER_ACCEPT})
        assert status == 403 and body["message"].endswith("(ADMIN_USERS)"), path
    status, resp, page = client.request("GET", "/u/%s/" % u.name, headers={"Accept": BROWSER_ACCEPT})
    assert status == 401 and resp.getheader("WWW-Authenticate").startswith("Basic realm=")
    assert "<h1>Unauthorized</h1>" in page and "Authentication required" in page
    status, resp, page = client.request("GET", "/nothing-here", u.name, LOGIN,
                                        headers={"Accept": BROWSER_ACCEPT})
    assert status == 404 and "<h1>Not Found</h1>" in page and "No such resource: /nothing-here" in page
    assert client.request("GET", "/u/%s/" % u.name, u.name, LOGIN, headers={"Accept": BROWSER_ACCEPT})[0] == 200


def test_a_browser_shows_the_refusal_page_styled(world, service, tmp_path):
    chromium = cdp.find_chromium()
    if chromium is None:
        pytest.skip("chromium is not installed (Debian: apt-get install -y chromium); .ci/run installs it")
    browser = cdp.Browser(tempfile.mkdtemp(prefix="chromium-", dir=str(tmp_path)), chromium,
                          flags=["--ignore-certificate-errors"])
    try:
        token = base64.b64encode(("%s:%s" % (world.user.name, LOGIN)).encode()).decode()
        browser.call("Network.setExtraHTTPHeaders", headers={"Authorization": "Basic " + token})
        problems = look_at(browser, service.url + "/u/root/", str(tmp_path), "forbidden")
        assert problems == []
        assert browser.evaluate("document.querySelector('h1').textContent") == "Forbidden"
        assert browser.evaluate("document.querySelector('.notice.error').textContent") == \
            "%s may not see root's data (ADMIN_USERS)" % world.user.name
        # the service's own style sheet applies (the page's CSP lets it): the header is dark
        assert browser.evaluate("getComputedStyle(document.querySelector('header.top')).backgroundColor") == \
            "rgb(23, 50, 79)"
        assert [p for p in browser.problems if not p.endswith("/u/root/")] == []  # but the 403 itself
    finally:
        browser.close()


def test_ensemble_pages_say_when_the_ensemble_manager_is_not_running(world):
    """With the daemon stopped the pages would show its last state as if live: they say at
    the top that it is not running and how to start it, and stop refreshing themselves."""
    paths = ["/ensembles", "/ensembles/e1", "/ensembles/e1/workflows/stuck", "/ensembles/e1/triggers/nightly"]
    for path in paths:
        _, data = world.json(world.base + path)
        assert data["manager_running"] is True and "manager_notice" not in data, path
    assert "data-refresh" in world.request(world.base + "/ensembles/e1")[2]
    world.em.stop()
    try:
        for path in paths:
            _, data = world.json(world.base + path)
            assert data["manager_running"] is False and "pegasus-em server" in data["manager_notice"], path
            _, _, page = world.request(world.base + path)
            below_title = page.split("</h1>")[1].lstrip()
            assert below_title.startswith('<p class="notice error"') and "data-refresh" not in page, path
            assert "ensemble manager is not running" in page and "Start it (as %s)" % world.user.name in page
    finally:
        world.em.start()
    _, data = world.json(world.base + "/ensembles/e1")
    assert data["manager_running"] is True and "data-refresh" in world.request(world.base + "/ensembles/e1")[2]
