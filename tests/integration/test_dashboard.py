"""The dashboard's workflow pages over real HTTP, against master and STAMPEDE DBs
the simulator wrote: successful, failed, retried, failing, running, never
started, dead DAGMan and hierarchical workflows.  The numbers on the pages are
checked against the databases with queries of the tests' own."""

import html
import json
import os
import re
import shutil
import sqlite3
import time

import pytest

from dashboard_fixtures import KINDS, XSS, Served, World

from pegasus_em.dashboard import dashboard


@pytest.fixture(scope="module")
def world(tmp_path_factory):
    w = World(str(tmp_path_factory.mktemp("dash")))
    try:
        yield w.build()
    finally:
        w.stop()


@pytest.fixture(scope="module")
def app(world):
    d = dashboard.Dashboard(home_of=lambda user: world.home, file_owner=lambda user: None)
    served = Served(d.wsgi)
    yield served
    served.close()


def expected_counts(db, wf_id):
    """Counts by each job's latest instance (pegasus-facts §3.6), written independently."""
    out = {"total": 0, "successful": 0, "failed": 0, "running": 0, "failing": 0, "unsubmitted": 0}
    for job_id, in db.execute("SELECT job_id FROM job WHERE wf_id = ?", (wf_id,)):
        codes = [r[0] for r in db.execute("SELECT exitcode FROM job_instance WHERE job_id = ? ORDER BY job_submit_seq",
                                          (job_id,))]
        out["total"] += 1
        if not codes:
            out["unsubmitted"] += 1
        elif codes[-1] is None:
            out["running"] += 1
            if any(c not in (None, 0) for c in codes[:-1]):
                out["failing"] += 1
        elif codes[-1] == 0:
            out["successful"] += 1
        else:
            out["failed"] += 1
    return out


def test_list_shows_every_root_workflow_with_its_real_state(world, app):
    status, data = app.json("/u/alice/")
    assert status == 200
    by_dir = {w["submit_dir"]: w for w in data["workflows"]}
    for name, (_, _, state) in KINDS.items():
        assert by_dir[world.dirs[name]]["state"] == state, name
    assert "died" in by_dir[world.dirs["died"]]["reason"]
    wanted = {s: sum(1 for k in KINDS.values() if k[2] == s) for s in dashboard.stampede.LIST_STATES}
    assert data["counts"] == dict(wanted, total=len(KINDS))
    status, _, page = app.request("/u/alice/")
    assert status == 200
    cards = dict((label, int(n)) for n, label in re.findall(r'<span class="n">(\d+)</span><span class="l">([^<]+)',
                                                            page))
    assert cards == {"All": 9, "Running": 2, "Successful": 3, "Failed": 2, "DAGMan died": 1, "Not started": 1}
    assert page.count("<tr><td>") == len(KINDS)
    assert 'data-refresh="10"' in page  # running workflows: the page refreshes itself


def test_list_filters_by_text_state_and_time(world, app):
    _, data = app.json("/u/alice/?q=hier")
    assert sorted(w["dax_label"] for w in data["workflows"]) == ["hier", "hierfail"]
    _, data = app.json("/u/alice/?state=running")
    assert sorted(w["dax_label"] for w in data["workflows"]) == ["failing", "running"]
    assert data["counts"]["total"] == len(KINDS)  # the cards still count everything matched by q/window
    _, data = app.json("/u/alice/?window=day&sort=label")
    assert [w["dax_label"] for w in data["workflows"]] == sorted(KINDS)
    db = sqlite3.connect(world.master)
    db.execute("UPDATE master_workflow SET timestamp = timestamp - 10 * 86400 WHERE dax_label = 'ok'")
    db.commit()
    db.close()
    _, data = app.json("/u/alice/?window=week")
    assert "ok" not in [w["dax_label"] for w in data["workflows"]] and data["total"] == len(KINDS) - 1
    assert app.request("/u/alice/?window=fortnight")[0] == 400
    status, _, page = app.request("/u/alice/?q=%3Cnothing%3E")
    assert status == 200 and "No workflows match." in page and "&lt;nothing&gt;" in page


@pytest.mark.parametrize("name", ["ok", "failed", "retried", "failing", "running", "hier", "hierfail", "died"])
def test_workflow_details_counts_match_the_stampede_db(world, app, name):
    m = world.master_id(name)
    db = world.stampede(name)
    want = expected_counts(db, 1)
    status, data = app.json("/u/alice/r/%d" % m)
    assert status == 200 and data["state"] == KINDS[name][2]
    got = {k: v["all"] for k, v in data["job_counts"].items() if k in want}
    assert got == want
    tab = data["tab"]
    listed = data.get("jobs", data.get("sub_workflows"))
    if tab != "sub":
        assert data["total"] == want[tab] == len(listed)
    _, _, page = app.request("/u/alice/r/%d" % m)
    for label, key in (("Successful", "successful"), ("Failed", "failed"), ("Unsubmitted", "unsubmitted")):
        assert "%s: %d" % (label, want[key]) in page
    states = db.execute("SELECT state, status FROM workflowstate WHERE wf_id = 1 ORDER BY timestamp, state").fetchall()
    assert [(s["state"], s["status"]) for s in data["states"]] == states
    db.close()


def test_failing_job_tab_and_retries(world, app):
    m = world.master_id("failing")
    _, data = app.json("/u/alice/r/%d?tab=failing" % m)
    assert [j["exec_job_id"] for j in data["jobs"]] == ["sim_ID0000002"]
    assert data["jobs"][0]["tries"] == 2 and data["jobs"][0]["exitcode"] is None
    assert data["job_counts"]["failing"]["all"] == 1 and data["job_counts"]["running"]["all"] == 1
    m = world.master_id("retried")
    _, data = app.json("/u/alice/r/%d?tab=successful" % m)
    retried = [j for j in data["jobs"] if j["exec_job_id"] == "sim_ID0000002"][0]
    assert retried["tries"] == 2 and data["job_counts"]["retries"]["all"] == 1
    status, job = app.json(retried["href"])
    assert status == 200 and [i["exitcode"] for i in job["instances"]] == [256, 0]  # raw wait status, as monitord
    first = job["instances"][0]["href"]
    _, one = app.json(first)
    assert "simulated failure of sim_ID0000002" in one["instance"]["stderr_text"]
    assert [s["state"] for s in one["states"]][-1] == "POST_SCRIPT_FAILED"  # monitord's name in the DB
    status, headers, text = app.request(first + "/stderr")
    assert status == 200 and headers["Content-Type"].startswith("text/plain")
    assert "sandbox" in headers["Content-Security-Policy"] and "simulated failure" in text
    out_file = os.path.join(world.dirs["retried"], one["instance"]["stdout_file"])
    # monitord stores kickstart's section header with the text; both shown decoded
    assert app.request(first + "/stdout")[2] == "#@ 1 stdout\n" + open(out_file).read()
    _, _, page = app.request(first)
    assert "POST_SCRIPT_FAILED" in page and "Tries" in page and "simulated failure" in page


def test_invocation_details(world, app):
    m = world.master_id("ok")
    _, data = app.json("/u/alice/r/%d?tab=successful" % m)
    job = [j for j in data["jobs"] if j["exec_job_id"] == "sim_ID0000001"][0]
    _, detail = app.json(job["href"])
    inv = [i for i in detail["invocations"] if i["transformation"] != "dagman::post"][0]  # monitord adds the POST
    assert inv["transformation"] == "sim::preprocess"
    status, data = app.json(inv["href"])
    assert status == 200 and data["invocation"]["exitcode"] == 0 and data["task"]["abs_task_id"] == "ID0000001"
    status, _, page = app.request(inv["href"])
    assert status == 200 and "sim::preprocess" in page and "Remote duration" in page


def test_sub_workflows_tab_and_pages(world, app):
    m = world.master_id("hier")
    _, data = app.json("/u/alice/r/%d?tab=sub" % m)
    subs = data["sub_workflows"]
    assert [(s["dax_label"], s["state"]) for s in subs] == [("sub5", "successful"), ("sub6", "successful")]
    status, sub = app.json(subs[0]["href"])
    assert status == 200 and sub["type"] == "sub-wf" and sub["job_counts"]["successful"]["all"] == 2
    assert sub["job_counts"]["total"]["all"] == 2
    _, root = app.json("/u/alice/r/%d" % m)
    assert root["job_counts"]["total"]["sub"] == 2 and root["job_counts"]["successful"]["all"] == 6
    m = world.master_id("hierfail")
    _, data = app.json("/u/alice/r/%d?tab=sub" % m)
    assert [s["state"] for s in data["sub_workflows"]] == ["failed"]
    _, failed = app.json("/u/alice/r/%d?tab=failed" % m)
    assert [(j["exec_job_id"], j["type_desc"]) for j in failed["jobs"]] == [("pegasus-plan_ID0000002", "dag")]
    assert failed["jobs"][0]["sub_workflow_href"] == data["sub_workflows"][0]["href"]


def test_statistics_and_charts(world, app):
    m = world.master_id("hier")
    db = world.stampede("hier")
    status, data = app.json("/u/alice/r/%d/w/1/statistics" % m)
    assert status == 200
    jobs = {r["type"]: r for r in data["summary"]}
    assert jobs["Jobs"]["total"] == 4 and jobs["Jobs"]["succeeded"] == 4 and jobs["Sub-workflows"]["total"] == 2
    tree = {r["type"]: r for r in data["tree_summary"]}
    assert tree["Jobs"]["total"] == 8 and tree["Tasks"]["total"] == 2 + 2 * 2
    want = dict(db.execute("SELECT transformation, count(*) FROM invocation WHERE wf_id = 1 GROUP BY 1"))
    assert {r["transformation"]: r["count"] for r in data["breakdown"]} == want
    assert data["jobs_total"] == db.execute("SELECT count(*) FROM job_instance ji JOIN job j USING (job_id)"
                                            " WHERE j.wf_id = 1").fetchone()[0]
    db.close()
    status, _, page = app.request("/u/alice/r/%d/w/1/charts" % m)
    assert status == 200 and page.count("<svg") == 3 and "condor::dagman" in page
    _, data = app.json("/u/alice/r/%d/w/1/charts" % m)
    assert sum(b["jobs"] for b in data["jobs_over_time"]) == 6 and len(data["gantt"]) == 6


def test_file_browser_stays_inside_the_submit_dir(world, app):
    sdir = world.dirs["ok"]
    m = world.master_id("ok")
    base = "/u/alice/r/%d/w/1/files" % m
    os.symlink("/etc", os.path.join(sdir, "etc-link"))
    os.symlink("/etc/passwd", os.path.join(sdir, "passwd-link"))
    os.symlink("00", os.path.join(sdir, "inside-link"))
    _, data = app.json(base + "/")
    names = {e["name"]: e for e in data["entries"]}
    assert "braindump.yml" in names and names["00"]["dir"]
    assert names["etc-link"]["outside"] and names["etc-link"]["href"] is None
    assert names["inside-link"]["dir"] and not names["inside-link"]["outside"]
    _, _, page = app.request(base + "/")
    assert "(outside the submit directory)" in page and "etc-link/" not in page
    for bad in ("/etc-link/passwd", "/passwd-link", "/etc-link"):
        assert app.request(base + bad)[0] == 403, bad
    for bad in ("/../../../../etc/passwd", "/%2e%2e/%2e%2e/etc/passwd", "/00/..", "/./braindump.yml"):
        status, _, body = app.request(base + bad)
        assert status == 400 and "root:" not in body, bad
    status, _, page = app.request(base + "/inside-link/00")
    assert status == 200 and "sim_ID0000001.sub" in page
    status, _, page = app.request(base + "/braindump.yml")
    assert status == 200 and html.escape('wf_uuid: "') in page
    status, headers, raw = app.request(base + "/braindump.yml?raw=1")
    assert status == 200 and raw.startswith("user: ") and "attachment" in headers["Content-Disposition"]
    assert "sandbox" in headers["Content-Security-Policy"]
    _, data = app.json(base + "/ok-0.dag")  # Accept asks for JSON; a .json suffix would be a file name
    assert data["text"].startswith("####") and not data["truncated"]


def test_markup_in_labels_and_file_names_is_text(world, app):
    m = world.master_id("failed")
    db = sqlite3.connect(world.master)
    db.execute("UPDATE master_workflow SET dax_label = ? WHERE wf_id = ?", (XSS, m))
    db.commit()
    db.close()
    st = world.stampede("failed")
    st.execute("UPDATE workflow SET dax_label = ? WHERE wf_id = 1", (XSS,))
    st.execute("UPDATE job_instance SET stderr_text = ? WHERE exitcode = 256", (XSS,))
    st.commit()
    st.close()
    evil = os.path.join(world.dirs["failed"], '<img src=x onerror="alert(1)">.txt')
    with open(evil, "w") as f:
        f.write(XSS)
    pages = [app.request("/u/alice/")[2], app.request("/u/alice/r/%d" % m)[2],
             app.request("/u/alice/r/%d/w/1/files/" % m)[2]]
    _, data = app.json("/u/alice/r/%d?tab=failed" % m)
    pages.append(app.request(data["jobs"][0]["instance_href"])[2])
    pages.append(app.request("/u/alice/r/%d/w/1/files/%s" % (m, "%3Cimg%20src=x%20onerror=%22alert(1)%22%3E.txt"))[2])
    for page in pages:
        assert "<script>alert" not in page and "<img src=x" not in page and "<b>" not in page
    assert html.escape(XSS) in pages[0] and html.escape(XSS) in pages[1] and html.escape(XSS) in pages[3]
    assert html.escape('<img src=x onerror="alert(1)">.txt') in pages[2]
    assert html.escape(XSS) in pages[4]


def test_pages_are_safe_html_with_a_content_security_policy(world, app):
    m = world.master_id("hier")
    for path in ("/u/alice/", "/u/alice/r/%d" % m, "/u/alice/r/%d/w/1/statistics" % m,
                 "/u/alice/r/%d/w/1/charts" % m, "/u/alice/r/%d/w/1/files/" % m, "/u/alice/ensembles",
                 "/u/alice/r/%d/w/1/j/1" % m, "/u/alice/nowhere"):
        status, headers, page = app.request(path)
        assert status in (200, 404), path
        csp = headers["Content-Security-Policy"]
        assert "script-src 'self'" in csp and "'unsafe-inline'" not in csp and "frame-ancestors 'none'" in csp
        assert not re.search(r"<[^>]*\son\w+\s*=", page), path  # no inline event handlers
        assert not re.search(r"<[^>]*\sstyle\s*=", page), path  # no inline styles
        assert all(re.search(r"\bsrc=", s) for s in re.findall(r"<script[^>]*>", page)), path
        elsewhere = page.replace("http://www.w3.org/2000/svg", "")
        assert "http://" not in elsewhere and "https://" not in elsewhere, path  # links are root-relative
    status, headers, css = app.request("/static/dashboard.css")
    assert status == 200 and headers["Content-Type"].startswith("text/css") and "immutable" in headers["Cache-Control"]
    assert app.request("/static/dashboard.js", headers={"If-None-Match": headers["ETag"]})[0] == 200
    assert app.request("/static/dashboard.css", headers={"If-None-Match": headers["ETag"]})[0] == 304
    assert app.request("/static/../dashboard.py")[0] == 404
    assert app.request("/u/alice/static/dashboard.js")[0] == 404  # never from a user's pages


def test_json_twins(world, app):
    m = world.master_id("retried")
    for path in ("/u/alice/", "/u/alice/r/%d" % m, "/u/alice/r/%d/w/1" % m, "/u/alice/r/%d/w/1/statistics" % m,
                 "/u/alice/r/%d/w/1/charts" % m, "/u/alice/r/%d/w/1/j/2" % m, "/u/alice/ensembles"):
        twin = path + ("index.json" if path.endswith("/") else ".json")
        status, headers, body = app.request(twin)
        assert status == 200 and headers["Content-Type"] == "application/json", twin
        by_accept = app.json(path)[1]
        assert json.loads(body).keys() == by_accept.keys(), path
        _, _, page = app.request(path)
        assert 'href="%s"' % html.escape(twin) in page, path
    status, data = app.json("/u/alice/r/424242")
    assert status == 404 and "No root workflow 424242" in data["message"]
    status, data = app.json("/u/alice/", method="POST", data=b"")
    assert status == 405


def test_url_prefix_is_in_every_link(world):
    d = dashboard.Dashboard(home_of=lambda user: world.home, file_owner=lambda user: None)
    served = Served(d.wsgi, script_name="/mount/pegasus")
    try:
        m = world.master_id("hier")
        for path in ("/u/alice/", "/u/alice/r/%d" % m, "/u/alice/r/%d/w/1/statistics" % m,
                     "/u/alice/r/%d/w/1/files/" % m, "/u/alice/r/%d/w/1/j/1" % m, "/u/alice/ensembles"):
            status, _, page = served.request("/mount/pegasus" + path)
            assert status == 200, path
            links = re.findall(r'(?:href|src|action)="([^"]*)"', page)
            assert links, path
            for target in links:
                target = html.unescape(target)
                assert target.startswith(("/mount/pegasus/u/alice/", "/mount/pegasus/static/")), \
                    (path, target)
                if "/static/" in target or "raw=1" in target:
                    continue
                assert served.request(target)[0] in (200, 303), (path, target)
    finally:
        served.close()


def test_missing_and_old_databases_get_a_clear_page(tmp_path, world):
    home = tmp_path / "home"
    (home / ".pegasus").mkdir(parents=True)
    d = dashboard.Dashboard(home_of=lambda user: str(home), file_owner=lambda user: None)
    served = Served(d.wsgi)
    try:
        status, _, page = served.request("/u/bob/")           # an empty account
        assert status == 200 and "does not exist" in page and "No workflows yet." in page
        status, _, page = served.request("/u/bob/ensembles")
        assert status == 200 and "No ensembles yet" in page
        master = home / ".pegasus" / "workflow.db"
        master.write_bytes(b"this is not a database" * 100)  # garbage
        status, _, page = served.request("/u/bob/")
        assert status == 200 and "cannot be" in page
        master.unlink()
        db = sqlite3.connect(str(master))                     # an old schema: no db_url, no status column
        db.executescript("CREATE TABLE dbversion (id INTEGER PRIMARY KEY, version_number INTEGER, version TEXT,"
                         " version_timestamp INTEGER); INSERT INTO dbversion VALUES (1, 4, '4', 0);"
                         "CREATE TABLE master_workflow (wf_id INTEGER PRIMARY KEY, wf_uuid TEXT, dax_label TEXT,"
                         " submit_dir TEXT, timestamp NUMERIC);"
                         "CREATE TABLE master_workflowstate (wf_id INTEGER, state TEXT, timestamp NUMERIC);"
                         "INSERT INTO master_workflow VALUES (1, 'u-1', 'old', '/nowhere', 1);"
                         "INSERT INTO master_workflowstate VALUES (1, 'WORKFLOW_TERMINATED', 2);")
        db.close()
        status, data = served.json("/u/bob/")
        assert status == 200 and [(w["dax_label"], w["state"]) for w in data["workflows"]] == [("old", "failed")]
        status, _, page = served.request("/u/bob/r/1")
        assert status == 200 and "STAMPEDE" in page
        master.unlink()
        db = sqlite3.connect(str(master))                     # not a Pegasus DB at all
        db.execute("CREATE TABLE something (x)")
        db.close()
        status, _, page = served.request("/u/bob/")
        assert status == 200 and "master_workflow" in page
        # a root whose STAMPEDE DB went away: what the master DB knows, with a notice
        shutil.copy(world.master, str(master))
        m = world.master_id("ok")
        db = sqlite3.connect(str(master))
        db.execute("UPDATE master_workflow SET db_url = 'sqlite:////nonexistent/x.stampede.db' WHERE wf_id = ?", (m,))
        db.commit()
        db.close()
        status, data = served.json("/u/bob/r/%d" % m)
        assert status == 200 and "does not exist" in data["notice"] and data["state"] == "successful"
        assert served.request("/u/bob/r/%d/w/1" % m)[0] == 404
        status, _, page = served.request("/u/bob/r/%d/w/root/files/" % m)
        assert status == 200 and "braindump.yml" in page
    finally:
        served.close()


def test_dead_dagman_is_not_running_forever(world, app):
    m = world.master_id("died")
    _, data = app.json("/u/alice/r/%d" % m)
    assert data["state"] == "died" and data["root"]["last_state"] == "WORKFLOW_STARTED"
    assert "DAGMan died" in data["reason"]
    page = app.request("/u/alice/r/%d" % m)[2]
    assert "running since" not in page and "its DAGMan died" in page  # its wall time is not counting on
    _, data = app.json("/u/alice/?state=died")
    assert [w["dax_label"] for w in data["workflows"]] == ["died"]


def test_listing_is_fast_enough_to_poll(world, app):
    t0 = time.monotonic()
    for _ in range(20):
        assert app.request("/u/alice/")[0] == 200
    assert (time.monotonic() - t0) / 20 < 0.2
