"""Pegasus 5.x's dashboard, as its users know it, served by ours: every URL shape of
5.x's dashboard (pegasus-facts §7) answers with the right content, job output that
pegasus-monitord stored URL-quoted is shown decoded, the tabs and statistics of 5.x
(metadata, files, task metadata, integrity, job distribution by time, time chart by
invocations, Gantt spans, archived marker) are there, and databases of older schema
versions open.  The expected values come from the tests' own queries of the databases
(the simulator's, enriched here with the rows of 5.x's tables it does not write)."""

import html
import json
import os
import re
import shutil
import sqlite3
import tempfile
import urllib.parse

import pytest

import cdp
from dashboard_fixtures import Served, World, look_at

from pegasus_em.dashboard import dashboard

# Pegasus 5.x's DDL for tables older simulators left out (PY/db/schema.py)
EXTRA_DDL = """
CREATE TABLE rc_lfn (lfn_id INTEGER NOT NULL, lfn VARCHAR(245) NOT NULL, PRIMARY KEY (lfn_id),
  CONSTRAINT "UNIQUE_LFN" UNIQUE (lfn));
CREATE TABLE rc_pfn (pfn_id INTEGER NOT NULL, lfn_id INTEGER NOT NULL, pfn VARCHAR(245) NOT NULL,
  site VARCHAR(245), PRIMARY KEY (pfn_id), CONSTRAINT "UNIQUE_PFN" UNIQUE (lfn_id, pfn, site),
  FOREIGN KEY(lfn_id) REFERENCES rc_lfn (lfn_id) ON DELETE CASCADE);
CREATE TABLE rc_meta (lfn_id INTEGER NOT NULL, "key" VARCHAR(245) NOT NULL, value VARCHAR(245) NOT NULL,
  PRIMARY KEY (lfn_id, "key"), FOREIGN KEY(lfn_id) REFERENCES rc_lfn (lfn_id) ON DELETE CASCADE);
CREATE TABLE workflow_files (wf_id INTEGER NOT NULL, task_id INTEGER NOT NULL, lfn_id INTEGER NOT NULL,
  file_type VARCHAR(255), PRIMARY KEY (wf_id, task_id, lfn_id));
CREATE TABLE integrity (integrity_id INTEGER NOT NULL, wf_id INTEGER NOT NULL, job_instance_id INTEGER NOT NULL,
  type VARCHAR(7) NOT NULL, file_type VARCHAR(6), count INTEGER NOT NULL, duration NUMERIC(10, 3) NOT NULL,
  PRIMARY KEY (integrity_id), CONSTRAINT "UNIQUE_INTEGRITY" UNIQUE (job_instance_id, type, file_type));
"""
# what pegasus-monitord stores for a job's output (Pegasus.tools.utils.quote)
QUOTED = "#@ 1 stdout%0Ahello %27world%27 caf%C3%A9%0A100%25 done%0A<b>bold</b>%0A"
DECODED = "#@ 1 stdout\nhello 'world' caf\u00e9\n100% done\n<b>bold</b>\n"
LEGACY = "an old unquoted line\nwith 50% and %41 kept as written\n"
XHR = {"X-Requested-With": "XMLHttpRequest", "Accept": "application/json, text/javascript, */*; q=0.01"}


def quote(text):
    """Pegasus's utils.quote, written here for the test."""
    out = []
    for byte in text.encode("utf-8"):
        c = chr(byte)
        out.append("%%%02X" % byte if byte < 0x20 or byte >= 0x7F or c in "%'\"" else c)
    return "".join(out)


@pytest.fixture(scope="module")
def world(tmp_path_factory):
    w = World(str(tmp_path_factory.mktemp("dash5x")))
    try:
        w.build()
        enrich(w)
        yield w
    finally:
        w.stop()


def enrich(world):
    """What real 5.x runs record and the simulator does not: metadata, files, integrity,
    quoted output, an archived flag."""
    db = world.stampede("ok")
    db.executescript(EXTRA_DDL.replace("CREATE TABLE ", "CREATE TABLE IF NOT EXISTS "))
    db.executemany('INSERT INTO workflow_meta VALUES (1, ?, ?)', [("creator", "<i>alice</i>"), ("run", "7")])
    task_id = db.execute("SELECT task_id FROM task WHERE abs_task_id = 'ID0000001'").fetchone()[0]
    db.executemany('INSERT INTO task_meta VALUES (?, ?, ?)', [(task_id, "size", "42"), (task_id, "kind", "pre")])
    db.executemany("INSERT INTO rc_lfn VALUES (?, ?)", [(1, "f.a"), (2, "f.out")])
    db.executemany("INSERT INTO rc_pfn VALUES (?, ?, ?, ?)",
                   [(1, 1, "file:///data/f.a", "local"), (2, 2, "gsiftp://x/f.out", "remote"),
                    (3, 2, "file:///out/f.out", "local")])
    db.executemany('INSERT INTO rc_meta VALUES (?, ?, ?)', [(2, "checksum.value", "abc123"), (2, "owner", "bob")])
    db.executemany("INSERT INTO workflow_files VALUES (1, ?, ?, ?)", [(task_id, 1, "input"), (task_id, 2, "output")])
    ji = db.execute("SELECT min(job_instance_id) FROM job_instance").fetchone()[0]
    db.executemany("INSERT INTO integrity VALUES (?, 1, ?, ?, ?, ?, ?)",
                   [(1, ji, "check", "input", 3, 1.5), (2, ji + 1, "check", "input", 2, 0.5),
                    (3, ji, "compute", "output", 1, 0.25)])
    db.execute("UPDATE job_instance SET stdout_text = ?, stderr_text = ? WHERE job_instance_id = ?",
               (QUOTED, LEGACY, ji + 1))
    db.commit()
    db.close()
    master = sqlite3.connect(world.master)
    master.execute("UPDATE master_workflow SET archived = 1 WHERE wf_id = ?", (world.master_id("ok"),))
    master.commit()
    master.close()


@pytest.fixture(scope="module")
def app(world):
    d = dashboard.Dashboard(home_of=lambda user: world.home, file_owner=lambda user: None)
    served = Served(d.wsgi)
    yield served
    served.close()


def feed(app, path, headers=None):
    """A 5.x feed as 5.x's own pages (or a script: curl sends Accept: */*) fetch it."""
    status, hdrs, body = app.request(path, headers=headers or {"Accept": "*/*"})
    assert status == 200 and hdrs["Content-Type"] == "application/json", (path, status, body[:300])
    return json.loads(body)


def query(world, name, sql, *args):
    db = world.stampede(name)
    try:
        return db.execute(sql, args).fetchall()
    finally:
        db.close()


def base(world, name, wf=1):
    return "/u/alice/r/%d/w/%d" % (world.master_id(name), wf)


# ---- job output ------------------------------------------------------------------------

def test_quoted_job_output_is_shown_decoded_and_legacy_text_as_written(world, app):
    ji, job = query(world, "ok", "SELECT job_instance_id, job_id FROM job_instance WHERE stdout_text = ?", QUOTED)[0]
    page_url = base(world, "ok") + "/j/%d/ji/%d" % (job, ji)
    status, _, text = app.request(page_url + "/stdout")
    assert status == 200 and text == DECODED
    assert app.request(page_url + "/stderr")[2] == LEGACY
    _, data = app.json(page_url)
    assert data["instance"]["stdout_text"] == DECODED and data["instance"]["stderr_text"] == LEGACY
    _, _, page = app.request(page_url)
    assert html.escape(DECODED) in page and "%0A" not in page and "<b>bold" not in page
    assert quote(DECODED) == QUOTED  # the fixture really is what monitord writes


def test_decoding_matches_pegasus_unquote_on_every_byte():
    text = "".join(chr(c) for c in range(1, 0x250)) + "\u2603 snow\n"
    assert dashboard.stampede.decode_output(quote(text)) == text
    for legacy in ("50% done", "tab\there", 'say "hi"', "100%", "%zz"):
        assert dashboard.stampede.decode_output(legacy) == legacy


# ---- every 5.x URL -----------------------------------------------------------------------

def test_root_workflow_urls_of_5x(world, app):
    m = world.master_id("hier")
    status, _, page = app.request("/u/alice/r/%d/w" % m)
    assert status == 200 and "<h1>hier</h1>" in page
    sub_uuid = query(world, "hier", "SELECT wf_uuid FROM workflow WHERE dax_label = 'sub6'")[0][0]
    status, data = app.json("/u/alice/r/%d/w?wf_uuid=%s" % (m, sub_uuid))
    assert status == 200 and data["workflow"]["dax_label"] == "sub6" and data["type"] == "sub-wf"
    _, _, page = app.request("/u/alice/r/%d/w?wf_uuid=%s" % (m, sub_uuid))
    assert "<h1>sub6</h1>" in page and "wf_uuid=%s" % sub_uuid in page  # tab links keep the query
    assert app.request("/u/alice/r/%d/w?wf_uuid=nope" % m)[0] == 404


def test_workflow_list_answers_datatables_requests(world, app):
    data = feed(app, "/u/alice/?draw=7&start=1&length=3&order[0][column]=0&order[0][dir]=asc", XHR)
    assert data["draw"] == 7 and data["recordsTotal"] == 9 and data["recordsFiltered"] == 9
    labels = sorted(r[0] for r in sqlite3.connect(world.master).execute("SELECT dax_label FROM master_workflow"))
    assert [r["dax_label"] for r in data["data"]] == labels[1:4]
    row = data["data"][0]
    assert set(row) >= {"dax_label", "wf_id", "wf_uuid", "state", "reason", "archived", "submit_hostname",
                        "submit_dir", "timestamp"}
    data = feed(app, "/u/alice/?search[value]=Failed", XHR)
    assert sorted(r["dax_label"] for r in data["data"]) == ["died", "failed", "hierfail"]
    assert data["recordsTotal"] == 9 and data["recordsFiltered"] == 3
    data = feed(app, "/u/alice/", XHR)  # no arguments: newest first, all of them
    assert [r["timestamp"] for r in data["data"]] == sorted((r["timestamp"] for r in data["data"]), reverse=True)
    assert {r["dax_label"]: r["archived"] for r in data["data"]}["ok"] is True
    assert app.request("/u/alice/?draw=1&order[0][column]=9", headers=XHR)[0] == 400


def test_job_tab_feeds(world, app):
    want = dict(query(world, "retried", "SELECT j.exec_job_id, ji.job_instance_id FROM job j JOIN job_instance ji"
                                        " USING (job_id) WHERE ji.exitcode = 0"))
    data = feed(app, base(world, "retried") + "/j/successful/", XHR)
    assert {r["exec_job_id"]: r["job_instance_id"] for r in data["data"]} == want
    assert [r["exec_job_id"] for r in data["data"]] == sorted(want, reverse=True)  # 5.x: by name, descending
    # the simulator's jobs take what the machine gives them: well under a minute
    assert all(re.fullmatch(r"0 secs|1 sec|[0-9]{1,2} secs", r["duration_formatted"])
               and r["root_wf_id"] == str(world.master_id("retried")) for r in data["data"])
    assert feed(app, base(world, "retried") + "/j/failed/")["data"] == []
    data = feed(app, base(world, "failed") + "/j/failed/?search[value]=ID0000002")
    assert [(r["exec_job_id"], r["exitcode"]) for r in data["data"]] == [("sim_ID0000002", 256)]  # raw wait status, as monitord
    assert feed(app, base(world, "failed") + "/j/failed/?search[value]=ID0000001")["data"] == []
    failing = feed(app, base(world, "failing") + "/j/failing/")["data"]
    failed_try = query(world, "failing", "SELECT ji.job_instance_id, ji.exitcode FROM job_instance ji JOIN job j"
                                         " USING (job_id) WHERE j.exec_job_id = 'sim_ID0000002' AND ji.exitcode != 0")
    assert [(r["exec_job_id"], r["job_instance_id"], r["exitcode"]) for r in failing] == \
        [("sim_ID0000002",) + failed_try[0]]  # the failed try of the job that runs again
    running = feed(app, base(world, "running") + "/j/running/")["data"]
    assert [r["exec_job_id"] for r in running] == ["sim_ID0000001"]
    subs = feed(app, base(world, "hier") + "/sw/", XHR)["data"]
    assert [(s["dax_label"], s["state"]) for s in subs] == [("sub5", "Successful"), ("sub6", "Successful")]


def test_job_instance_and_invocation_urls(world, app):
    m = world.master_id("retried")
    (job, first, second), = query(world, "retried", "SELECT j.job_id, min(ji.job_instance_id), max(ji.job_instance_id)"
                                                     " FROM job j JOIN job_instance ji USING (job_id)"
                                                     " WHERE exec_job_id = 'sim_ID0000002'")
    ji = "/u/alice/r/%d/w/1/j/%d/ji/%d" % (m, job, first)
    status, _, page = app.request(ji)
    assert status == 200 and "sim_ID0000002" in page and "POST_SCRIPT_FAILED" in page
    assert "simulated failure" in app.request(ji + "/stderr")[2]
    failed = feed(app, ji + "/i/failed", XHR)["data"]
    # 5.x's query: failed invocations of the job's tasks (a dagman::post one has no task)
    inv = query(world, "retried", "SELECT invocation_id, exitcode FROM invocation WHERE job_instance_id = ?"
                " AND exitcode != 0 AND (abs_task_id IS NOT NULL OR task_submit_seq = 1)", first)
    assert [(i["invocation_id"], i["exitcode"]) for i in failed] == inv
    assert feed(app, ji + "/i/successful", XHR)["data"] == []
    ok = "/u/alice/r/%d/w/1/j/%d/ji/%d" % (m, job, second)
    assert [i["abs_task_id"] for i in feed(app, ok + "/i/successful")["data"]] == ["ID0000002"]
    status, headers, _ = app.request(ok + "/i/successful")  # a browser: our job page
    assert status == 302 and headers["Location"] == ok + "#invocations"
    status, data = app.json(ji + "/i/")
    assert status == 200 and data["invocation"]["invocation_id"] == inv[0][0]


def test_task_metadata_and_working_directory_on_the_invocation_page(world, app):
    (job, ji, inv, work_dir), = query(world, "ok", "SELECT j.job_id, ji.job_instance_id, i.invocation_id, ji.work_dir"
                                                   " FROM invocation i JOIN job_instance ji USING (job_instance_id)"
                                                   " JOIN job j USING (job_id) WHERE i.abs_task_id = 'ID0000001'")
    url = base(world, "ok") + "/j/%d/ji/%d/i/%d" % (job, ji, inv)
    _, data = app.json(url)
    assert data["task_metadata"] == [{"key": "kind", "value": "pre"}, {"key": "size", "value": "42"}]
    assert data["work_dir"] == work_dir
    _, _, page = app.request(url)
    assert "Task metadata" in page and "<td>size</td><td>42</td>" in page and work_dir in page


def test_metadata_and_files_tabs(world, app):
    url = "/u/alice/r/%d" % world.master_id("ok")
    _, data = app.json(url + "?tab=metadata")
    mine = [m for m in data["metadata"] if m["key"] in ("creator", "run")]  # beside the planner's
    assert mine == [{"key": "creator", "value": "<i>alice</i>"}, {"key": "run", "value": "7"}]
    assert data["metadata_count"] == len(data["metadata"]) == 3 and data["file_count"] == 2
    _, _, page = app.request(url + "?tab=metadata")
    assert "&lt;i&gt;alice&lt;/i&gt;" in page and "<i>alice" not in page
    assert 'Metadata <span class="count">3</span>' in page and 'Files <span class="count">2</span>' in page
    _, data = app.json(url + "?tab=files")
    files = {f["lfn"]: f for f in data["files"]}
    assert files["f.out"]["pfns"] == [{"pfn": "file:///out/f.out", "site": "local"},
                                      {"pfn": "gsiftp://x/f.out", "site": "remote"}]
    assert files["f.out"]["meta"] == [{"key": "checksum.value", "value": "abc123"}, {"key": "owner", "value": "bob"}]
    assert files["f.a"]["file_type"] == "input" and files["f.a"]["meta"] == []
    _, _, page = app.request(url + "?tab=files")
    assert "gsiftp://x/f.out" in page and "abc123" in page
    _, data = app.json("/u/alice/r/%d?tab=files" % world.master_id("retried"))  # no files table at all
    assert data["files"] == [] and data["file_count"] == 0


def test_archived_workflows_are_marked(world, app):
    _, data = app.json("/u/alice/")
    assert {w["dax_label"]: w["archived"] for w in data["workflows"] if w["wf_id"]}["ok"] is True
    _, _, page = app.request("/u/alice/")
    assert page.count("s-archived") == 1
    _, _, page = app.request("/u/alice/r/%d" % world.master_id("ok"))
    assert "s-archived" in page


def test_statistics_feeds(world, app):
    url = base(world, "hier") + "/statistics/"
    summary = feed(app, url + "summary")
    assert set(summary) == {"wall-time", "cum-time", "cum-badput-time", "job-cum-time", "job-cum-badput-time",
                            "retry-count"}
    stats = feed(app, url + "workflow")
    tasks, jobs, subs = stats["individual"]
    assert jobs["total_jobs"] == 4 and subs["total_sub_wfs"] == 2 and tasks["total_tasks"] == 2
    assert stats["all"][1]["total_jobs"] == 8
    breakdown = feed(app, base(world, "retried") + "/statistics/job_breakdown")
    want = query(world, "retried", "SELECT transformation, count(*), total(exitcode = 0), total(exitcode != 0)"
                                   " FROM invocation WHERE wf_id = 1 GROUP BY transformation, exitcode = 0"
                                   " ORDER BY transformation, exitcode = 0")
    assert [(r[0], r[1], r[2], r[3]) for r in breakdown] == [(t, n, int(s), int(f)) for t, n, s, f in want]
    jobs = feed(app, base(world, "retried") + "/statistics/job")
    names = [r[0] for r in query(world, "retried", "SELECT exec_job_id FROM job j JOIN job_instance ji USING"
                                                   " (job_id) ORDER BY job_submit_seq, job_instance_id")]
    assert [r[0] for r in jobs] == names and all(len(r) == 15 for r in jobs)
    assert [r[1] for r in jobs if r[0] == "sim_ID0000002"] == [1, 2]  # the try number
    integrity = feed(app, base(world, "ok") + "/statistics/integrity")
    assert integrity["individual"] == [{"type": "check", "file_type": "input", "count": 5, "duration": 2.0},
                                       {"type": "compute", "file_type": "output", "count": 1, "duration": 0.25}]
    assert feed(app, url + "time") == {}


def test_chart_feeds(world, app):
    gantt = feed(app, base(world, "retried") + "/charts/gantt_chart")
    n = query(world, "retried", "SELECT count(*) FROM job_instance")[0][0]
    assert len(gantt) == n
    for row in gantt:
        assert set(row) >= {"job_name", "jobS", "jobDuration", "pre_start", "pre_duration", "condor_start",
                            "condor_duration", "grid_start", "grid_duration", "exec_start", "exec_duration",
                            "kickstart_start", "kickstart_duration", "post_start", "post_duration"} - {"job_name"}
        assert row["condor_duration"] >= row["exec_duration"] >= 0 and row["post_duration"] >= 0
    chart = feed(app, base(world, "hier") + "/charts/time_chart")
    jobs = query(world, "hier", "SELECT count(*) FROM jobstate js JOIN job_instance ji USING (job_instance_id)"
                                " JOIN job j USING (job_id) WHERE js.state = 'EXECUTE' AND j.type_desc NOT IN"
                                " ('dag', 'dax') AND ji.local_duration IS NOT NULL")[0][0]
    invs = query(world, "hier", "SELECT count(*) FROM invocation WHERE transformation != 'condor::dagman'")[0][0]
    assert sum(b["count"]["job"] for b in chart) == jobs and sum(b["count"]["invocation"] for b in chart) == invs
    assert all(isinstance(b["date_format"], int) and set(b["total_runtime"]) == {"job", "invocation"}
               for b in chart)


def test_file_browser_urls_of_5x(world, app):
    url = base(world, "ok")
    listing = feed(app, url + "/files/")
    names = set(os.listdir(world.dirs["ok"]))
    dirs = {n for n in names if os.path.isdir(os.path.join(world.dirs["ok"], n))}
    assert set(listing["dirs"]) >= {d for d in dirs if not os.path.islink(os.path.join(world.dirs["ok"], d))}
    assert "braindump.yml" in listing["files"] and set(listing["dirs"]) | set(listing["files"]) == names
    sub = feed(app, url + "/files/00", XHR)
    assert sub["dirs"] + sub["files"] and all(p.startswith("00/") for p in sub["dirs"] + sub["files"])
    status, headers, text = app.request(url + "/file/braindump.yml")
    assert status == 200 and headers["Content-Type"].startswith("text/plain") and "Content-Disposition" not in headers
    assert "sandbox" in headers["Content-Security-Policy"]
    assert text == open(os.path.join(world.dirs["ok"], "braindump.yml")).read()
    assert app.request(url + "/file/../../../../etc/passwd")[0] == 400
    status, headers, _ = app.request(url + "/browser")
    assert status == 302 and headers["Location"] == url + "/files/"
    status, headers, _ = app.request(url + "/browser?init_file=00/x.sub&keep=1")
    assert status == 302 and headers["Location"] == url + "/files/00/x.sub?keep=1"
    for bad in ("../../../../api/v1/user/alice/root", "00/../..", "./x"):
        status, headers, _ = app.request(url + "/browser?" + urllib.parse.urlencode({"init_file": bad}))
        assert status == 400 and "Location" not in headers, bad


def test_info_page(world, app):
    status, _, page = app.request("/u/alice/info")
    assert status == 200 and "About this dashboard" in page and "/api/v1/user/alice" in page


# ---- older databases ------------------------------------------------------------------

def old_copy(world, tmp_path, version, drop=()):
    """A home whose workflows' databases say they were written by an older Pegasus."""
    home = tmp_path / ("home%d" % version)
    shutil.copytree(world.home, str(home))
    src = world.dirs["retried"]
    dst = str(tmp_path / ("run%d" % version))
    shutil.copytree(src, dst, symlinks=True)
    db = sqlite3.connect(os.path.join(dst, "retried-0.stampede.db"))
    db.execute("INSERT INTO dbversion (version_number, version, version_timestamp) VALUES (?, ?, 0)",
               (version, str(version)))
    for table, column in drop:
        db.execute("ALTER TABLE %s DROP COLUMN %s" % (table, column))
    db.commit()
    db.close()
    master = sqlite3.connect(str(home / ".pegasus" / "workflow.db"))
    master.execute("UPDATE master_workflow SET db_url = ?, submit_dir = ? WHERE wf_id = ?",
                   ("sqlite:///" + os.path.join(dst, "retried-0.stampede.db"), dst, world.master_id("retried")))
    master.commit()
    master.close()
    d = dashboard.Dashboard(home_of=lambda user: str(home), file_owner=lambda user: None)
    return Served(d.wsgi)


@pytest.mark.parametrize("version,drop", [(13, ()), (11, [("invocation", "maxrss"), ("invocation", "avg_cpu")])])
def test_databases_of_pegasus_49_and_50_open(world, tmp_path, version, drop):
    served = old_copy(world, tmp_path, version, drop)
    try:
        m = world.master_id("retried")
        for path in ("", "/w/1/statistics", "/w/1/charts", "/w/1/statistics/job_breakdown", "/w/1/j/successful/",
                     "/w/1/charts/gantt_chart", "?tab=files", "?tab=metadata", "/w/1/j/3/ji/3", "/w/1/statistics/job"):
            status, _, body = served.request("/u/alice/r/%d%s" % (m, path))
            assert status == 200 and "lacks" not in body, (path, body[:500])
        _, data = served.json("/u/alice/r/%d/w/1/statistics" % m)
        assert {r["transformation"] for r in data["breakdown"]} >= {"sim::findrange"}
    finally:
        served.close()


def test_a_too_old_database_gets_a_page_naming_its_version(world, tmp_path):
    served = old_copy(world, tmp_path, 4, [("job_instance", "exitcode")])
    try:
        status, _, page = served.request("/u/alice/r/%d" % world.master_id("retried"))
        assert status == 200 and "schema version 4 (Pegasus 4.5)" in page and "exitcode" in page
        assert "pegasus-db-admin update" in page
    finally:
        served.close()


# ---- in a browser -----------------------------------------------------------------------

def shapes(world):
    """(5.x URL, what the page must show): one per URL shape of 5.x's dashboard."""
    ok, ret, hier = base(world, "ok"), base(world, "retried"), base(world, "hier")
    (job, ji, inv), = query(world, "ok", "SELECT j.job_id, ji.job_instance_id, i.invocation_id FROM invocation i JOIN"
                                         " job_instance ji USING (job_instance_id) JOIN job j USING (job_id)"
                                         " WHERE i.abs_task_id = 'ID0000001'")
    out_ji = query(world, "ok", "SELECT job_id, job_instance_id FROM job_instance WHERE stdout_text = ?", QUOTED)[0]
    m = world.master_id("ok")
    uuid = query(world, "ok", "SELECT wf_uuid FROM workflow WHERE wf_id = 1")[0][0]
    j = "%s/j/%d/ji/%d" % (ok, job, ji)
    jobs = query(world, "ok", "SELECT count(*) FROM job")[0][0]
    tries = query(world, "ok", "SELECT count(*) FROM job_instance")[0][0]
    return [
        ("/u/alice/", ("h1", "Workflows")),
        ("/u/alice/r/%d/w" % m, ("h1", "ok")),
        ("/u/alice/r/%d/w?wf_uuid=%s" % (m, uuid), ("h1", "ok")),
        (ok, ("h1", "ok")),
        (hier + "/sw/", ("path", hier + "?tab=sub")),  # 5.x's HTML for browsers: our tab
        (ok + "/j/failed/", ("json", lambda d: d["data"] == [])),
        (ok + "/j/running/", ("json", lambda d: d["recordsTotal"] == 0)),
        (ok + "/j/successful/", ("json", lambda d: d["recordsTotal"] == jobs)),
        (ok + "/j/failing/", ("json", lambda d: d["data"] == [])),
        (j, ("h1", "sim_ID0000001")),
        ("%s/j/%d/ji/%d/stdout" % ((ok,) + out_ji), ("text", DECODED)),
        ("%s/j/%d/ji/%d/stderr" % ((ok,) + out_ji), ("text", LEGACY)),
        (j + "/i/", ("h1", "sim_ID0000001: ID0000001")),
        (j + "/i/%d" % inv, ("h1", "sim_ID0000001: ID0000001")),
        (j + "/i/successful", ("path", j + "#invocations")),
        (j + "/i/failed", ("path", j + "#invocations")),
        (ok + "/charts", ("h1", "Charts")),
        (ok + "/charts/time_chart", ("json", lambda d: sum(b["count"]["job"] for b in d) > 0)),
        (ok + "/charts/gantt_chart", ("json", lambda d: len(d) == tries)),
        (ok + "/statistics", ("h1", "Statistics")),
        (ok + "/statistics/summary", ("json", lambda d: "wall-time" in d)),
        (ok + "/statistics/workflow", ("json", lambda d: d["individual"][1]["total_jobs"] == jobs)),
        (ok + "/statistics/job_breakdown", ("json", lambda d: "sim::preprocess" in [r[0] for r in d])),
        (ok + "/statistics/job", ("json", lambda d: len(d) == tries)),
        (ok + "/statistics/integrity", ("json", lambda d: len(d["individual"]) == 2)),
        (ok + "/browser", ("path", ok + "/files/")),
        (ok + "/files/", ("h1", "Files")),
        (ok + "/file/braindump.yml", ("text", open(os.path.join(world.dirs["ok"], "braindump.yml")).read())),
        ("/u/alice/info", ("h1", "About this dashboard")),
        (ret + "/statistics/job", ("json", lambda d: [r[1] for r in d if r[0] == "sim_ID0000002"] == [1, 2])),
    ]


def test_a_browser_opens_every_pegasus_5x_url_and_finds_the_right_content(world, app, tmp_path):
    chromium = cdp.find_chromium()
    if chromium is None:
        pytest.skip("chromium is not installed (Debian: apt-get install -y chromium); .ci/run installs it")
    browser = cdp.Browser(tempfile.mkdtemp(prefix="chromium-", dir=str(tmp_path)), chromium)
    try:
        for path, (kind, want) in shapes(world):
            browser.load(app.url + path)
            if kind == "h1":
                assert browser.evaluate("document.querySelector('h1').textContent") == want, path
                assert browser.evaluate("document.title").endswith("Pegasus"), path
            elif kind == "json":
                assert want(json.loads(browser.evaluate("document.querySelector('pre').textContent"))), path
            elif kind == "text":
                assert browser.evaluate("document.querySelector('pre').textContent") == want, path
            else:
                where = browser.evaluate("location.pathname + location.search + location.hash")
                assert urllib.parse.unquote(where) == want, path
        # a JSON or text document has no <link rel=icon>: Chromium then asks for /favicon.ico
        assert [p for p in browser.problems if "favicon.ico" not in p and "ERR_BLOCKED_BY_ORB" not in p] == []
    finally:
        browser.close()


def test_every_page_reads_well_at_1400_and_800_pixels(world, app, tmp_path):
    """A screenshot of each page at both widths (in tmp_path, to look at); no job, file or
    transformation name broken, no table wider than the page (but the per-job statistics)."""
    chromium = cdp.find_chromium()
    if chromium is None:
        pytest.skip("chromium is not installed (Debian: apt-get install -y chromium); .ci/run installs it")
    browser = cdp.Browser(tempfile.mkdtemp(prefix="chromium-", dir=str(tmp_path)), chromium)
    shots = tmp_path / "screenshots"
    shots.mkdir()
    ok, hier = base(world, "ok"), base(world, "hier")
    paths = [p for p, (kind, _) in shapes(world) if kind == "h1"] + [
        hier + "?tab=sub", base(world, "failing"), base(world, "died"), ok + "?tab=files", ok + "?tab=metadata"]
    try:
        problems = []
        for i, path in enumerate(paths):
            problems += [(path,) + p for p in look_at(browser, app.url + path, str(shots), "page%02d" % i)]
        assert problems == []
        assert len(os.listdir(str(shots))) == 2 * len(paths)
    finally:
        browser.close()
