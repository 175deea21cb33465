"""The monitoring REST API, route by route and parameter by parameter, over databases
made with Pegasus 5.1.3's own schema (pegasus_dbs.py): field names, record counts,
`_meta` totals and values are those Pegasus 5.x's queries give on the same data
(checked against Pegasus itself by test_monitoring_oracle.py), except where 5.x is
broken (monitoring.py's docstring).  Requests go through UserApp as pegasus-service
without process switching serves them: as root, for a real local user."""

import json
import urllib.parse

import pytest

from pegasus_em.service.monitoring import Monitoring
from pegasus_em.service.userapp import UserApp
from pegasus_em.web.web import Request
from pegasus_dbs import (ARCHIVED_UUID, NEVER_STARTED_UUID, PRECISE, ROOT_UUID, SUB_UUID, T0,
                         make_home)
from service_fixtures import chown_tree

ROOT_FIELDS = {"wf_id", "wf_uuid", "dax_label", "dax_version", "dax_file", "dag_file_name",
               "timestamp", "submit_hostname", "submit_dir", "planner_arguments", "user",
               "grid_dn", "planner_version", "db_url", "archived"}
STATE_FIELDS = {"wf_id", "state", "timestamp", "restart_count", "status", "reason"}
WORKFLOW_FIELDS = {"wf_id", "wf_uuid", "dag_file_name", "timestamp", "submit_hostname",
                   "submit_dir", "planner_arguments", "user", "grid_dn", "planner_version",
                   "dax_label", "dax_version", "dax_file", "db_url", "parent_wf_id",
                   "root_wf_id"}
JOB_FIELDS = {"job_id", "wf_id", "exec_job_id", "submit_file", "type_desc", "clustered",
              "max_retries", "executable", "argv", "task_count"}
TRY_FIELDS = {"job_instance_id", "job_id", "host_id", "job_submit_seq", "sched_id", "site",
              "user", "work_dir", "cluster_start", "cluster_duration", "local_duration",
              "subwf_id", "stdout_file", "stdout_text", "stderr_file", "stderr_text",
              "stdin_file", "multiplier_factor", "exitcode"}
INVOCATION_FIELDS = {"invocation_id", "wf_id", "job_instance_id", "task_submit_seq",
                     "start_time", "remote_duration", "remote_cpu_time", "exitcode",
                     "transformation", "executable", "argv", "abs_task_id", "maxrss",
                     "avg_cpu"}
TASK_FIELDS = {"task_id", "wf_id", "job_id", "abs_task_id", "transformation", "argv",
               "type_desc"}
HOST_FIELDS = {"host_id", "wf_id", "site", "hostname", "ip", "uname", "total_memory"}
FILE_FIELDS = {"wf_id", "task_id", "lfn_id", "file_type", "lfn", "pfns", "meta"}
W1 = "/root/1/workflow/1"


@pytest.fixture(scope="module")
def api(module_user):
    """GET a monitoring path of a user whose home holds pegasus_dbs' databases."""
    make_home(module_user.home)
    chown_tree(module_user.home, module_user.uid, module_user.gid)
    app = UserApp()
    return Api(app, module_user.name)


class Api:
    def __init__(self, app, user):
        self.app = app
        self.user = user

    def raw(self, rest, query=""):
        call = Request("GET", "/api/v1/user/%s%s" % (self.user, rest), query=query,
                    user=self.user, remote_user=self.user)
        return self.app.handle(call)

    def __call__(self, rest, **args):
        """(status, decoded body or None)."""
        reply = self.raw(rest, "&".join("%s=%s" % (k.replace("_", "-"), _quote(v))
                                        for k, v in args.items()))
        assert dict(reply.headers)["Content-Type"] == "application/json"
        return reply.status, json.loads(reply.body) if reply.body else None

    def records(self, rest, **args):
        status, body = self(rest, **args)
        assert status == 200, body
        return body["records"]

    def meta(self, rest, **args):
        return self(rest, **args)[1]["_meta"]


def _quote(value):
    return urllib.parse.quote(str(value), safe="")


def ids(records, key):
    return [r[key] for r in records]


# --------------------------------------------------------------------------- master DB

def test_root_workflows_with_their_latest_state(api):
    status, body = api("/root")
    assert status == 200 and body["_meta"] == {"records_total": 3, "records_filtered": 3}
    first, archived, never = body["records"]
    assert set(first) == ROOT_FIELDS | {"workflow_state"}
    assert (first["wf_uuid"], archived["wf_uuid"], never["wf_uuid"]) == \
        (ROOT_UUID, ARCHIVED_UUID, NEVER_STARTED_UUID)
    assert set(first["workflow_state"]) == STATE_FIELDS
    assert first["workflow_state"] == {"wf_id": 1, "state": "WORKFLOW_STARTED",
                                       "timestamp": T0 + 100, "restart_count": 1,
                                       "status": None, "reason": None}
    assert (archived["workflow_state"]["state"], archived["workflow_state"]["status"]) == \
        ("WORKFLOW_TERMINATED", 0)
    assert never["workflow_state"] is None


def test_booleans_are_json_booleans_and_numerics_keep_their_digits(api):
    roots = api.records("/root")
    assert [r["archived"] for r in roots] == [False, True, False]
    assert roots[2]["timestamp"] == PRECISE
    assert isinstance(roots[0]["timestamp"], float) and roots[0]["timestamp"] == T0
    jobs = {j["exec_job_id"]: j for j in api.records(W1 + "/job")}
    assert jobs["merged_ID1"]["clustered"] is True and jobs["ok_ID1"]["clustered"] is False
    sub = api("/root/1/workflow/2")[1]
    assert sub["timestamp"] == 1700000031.0 and isinstance(sub["timestamp"], float)


def test_one_root_workflow_by_id_or_uuid(api):
    by_id = api("/root/2")[1]
    assert by_id == api("/root/" + ARCHIVED_UUID)[1]
    assert ROOT_FIELDS <= set(by_id) and by_id["archived"] is True
    assert api("/root/3")[1]["wf_uuid"] == NEVER_STARTED_UUID


# --------------------------------------------------------------------------- workflows

def test_the_workflows_of_a_root_workflow(api):
    status, body = api("/root/1/workflow")
    assert body["_meta"] == {"records_total": 2, "records_filtered": 2}
    root, sub = body["records"]
    assert set(root) == WORKFLOW_FIELDS
    assert (root["wf_uuid"], root["parent_wf_id"], sub["wf_uuid"], sub["parent_wf_id"]) == \
        (ROOT_UUID, None, SUB_UUID, 1)
    assert api("/root/%s/workflow/%s" % (ROOT_UUID, SUB_UUID))[1] == sub
    assert api("/root/1/workflow/2")[1] == sub


def test_workflow_metadata_and_states(api):
    assert api.records(W1 + "/meta") == [{"wf_id": 1, "key": "owner", "value": "alice"},
                                         {"wf_id": 1, "key": "project", "value": "diamond"}]
    # the named workflow's, where 5.x answers the root's
    assert api.records("/root/1/workflow/2/meta") == [
        {"wf_id": 2, "key": "level", "value": "inner"}]
    states = api.records(W1 + "/state")
    assert all(set(s) == STATE_FIELDS for s in states)
    assert [(s["state"], s["timestamp"], s["status"]) for s in states] == [
        ("WORKFLOW_STARTED", T0 + 1, None), ("WORKFLOW_TERMINATED", T0 + 60.25, 1),
        ("WORKFLOW_STARTED", T0 + 100, None)]


def test_workflow_files_with_their_pfns_and_metadata(api):
    status, body = api(W1 + "/files")
    assert body["_meta"] == {"records_total": 3, "records_filtered": 3}
    fa, fb, fc = body["records"]
    assert set(fa) == FILE_FIELDS
    assert fa == {"wf_id": 1, "task_id": 1, "lfn_id": 1, "file_type": "output", "lfn": "f.a",
                  "pfns": [{"pfn_id": 1, "lfn_id": 1, "pfn": "file:///data/f.a",
                            "site": "local"},
                           {"pfn_id": 2, "lfn_id": 1, "pfn": "gsiftp://remote/f.a",
                            "site": "remote"}],
                  "meta": [{"lfn_id": 1, "key": "checksum.type", "value": "sha256"},
                           {"lfn_id": 1, "key": "checksum.value", "value": "abc123"}]}
    assert (fb["lfn"], len(fb["pfns"]), fb["meta"]) == \
        ("f.b", 1, [{"lfn_id": 2, "key": "size", "value": "12"}])
    assert (fc["lfn"], fc["pfns"], fc["meta"]) == ("f.c", [], [])
    inner = api.records("/root/1/workflow/2/files")
    assert [(f["wf_id"], f["lfn"], f["file_type"]) for f in inner] == [(2, "f.a", "input")]


@pytest.mark.parametrize("args, lfns, filtered", [
    ({"query": "p.site == 'remote'"}, ["f.a"], 1),
    ({"query": "rm.key == 'size'"}, ["f.b"], 1),
    ({"query": "l.lfn.like('f.%')"}, ["f.a", "f.b", "f.c"], 3),  # each file counts once
    ({"query": "p.pfn is None"}, ["f.c"], 1),
    ({"order": "-l.lfn"}, ["f.c", "f.b", "f.a"], 3),
    ({"order": "-p.pfn"}, ["f.a", "f.b", "f.c"], 3),
    ({"start_index": 1, "max_results": 1}, ["f.b"], 3),
])
def test_files_query_and_order_take_lfn_pfn_and_meta_prefixes(api, args, lfns, filtered):
    status, body = api(W1 + "/files", **args)
    assert ids(body["records"], "lfn") == lfns
    assert body["_meta"] == {"records_total": 3, "records_filtered": filtered}


# --------------------------------------------------------------------------- jobs

def test_jobs_and_one_job(api):
    jobs = api.records(W1 + "/job")
    assert len(jobs) == 9 and all(set(j) == JOB_FIELDS for j in jobs)
    assert ids(jobs, "job_id") == list(range(1, 10))
    job = api(W1 + "/job/6")[1]
    assert (job["exec_job_id"], job["clustered"], job["task_count"]) == ("merged_ID1", True, 2)
    assert api.records("/root/1/workflow/%s/job" % SUB_UUID)[0]["exec_job_id"] == "inner_ID1"
    assert api(W1 + "/job/10")[0] == 404  # a job of the sub-workflow


@pytest.mark.parametrize("state, expected", [
    # (job, embedded try) per 5.x's queries: `failed` holds every job with a failed try
    # (again_ID1 succeeded on its second), `failing` the failed ones still running, with
    # their latest failed try; `running` the jobs with a running try (5.x: always 204)
    ("successful", [("ok_ID1", 1), ("again_ID1", 7), ("merged_ID1", 8), ("subdax_ID1", 9)]),
    ("failed", [("bad_ID1", 2), ("retry_ID1", 4), ("again_ID1", 6), ("thrice_ID1", 11)]),
    ("failing", [("retry_ID1", 4), ("thrice_ID1", 11)]),
    ("running", [("busy_ID1", 3), ("retry_ID1", 5), ("thrice_ID1", 12)]),
])
def test_jobs_by_state_embed_the_try_in_that_state(api, state, expected):
    status, body = api(W1 + "/job/" + state)
    got = [(j["exec_job_id"], j["job_instance"]["job_instance_id"]) for j in body["records"]]
    assert got == expected
    assert body["_meta"] == {"records_total": len(expected), "records_filtered": len(expected)}
    job = body["records"][0]
    assert set(job) == JOB_FIELDS | {"job_instance"}
    assert set(job["job_instance"]) == TRY_FIELDS - {"stdout_text", "stderr_text"}


def test_jobs_by_state_filter_and_order_on_the_embedded_try(api):
    status, body = api(W1 + "/job/failed", query="ji.exitcode == 2")
    assert ids(body["records"], "exec_job_id") == ["again_ID1"]
    assert body["_meta"] == {"records_total": 4, "records_filtered": 1}
    failed = api.records(W1 + "/job/failed", order="-ji.exitcode, j.job_id")
    assert ids(failed, "exec_job_id") == ["thrice_ID1", "again_ID1", "bad_ID1", "retry_ID1"]


def test_a_jobs_tries_and_recent(api):
    tries = api.records(W1 + "/job/9/job-instance")
    assert [(t["job_instance_id"], t["exitcode"]) for t in tries] == [(10, 1), (11, 3),
                                                                      (12, None)]
    assert set(tries[0]) == TRY_FIELDS and tries[0]["stdout_text"] == "hello%0Aworld%0A"
    status, body = api(W1 + "/job/9/job-instance", recent="true")
    assert ids(body["records"], "job_instance_id") == [12]
    assert body["_meta"] == {"records_total": 3, "records_filtered": 1}
    assert len(api.records(W1 + "/job/9/job-instance", recent="True")) == 3  # 5.x: exactly
    status, body = api(W1 + "/job/9/job-instance", recent="true", query="ji.exitcode == 3")
    assert body == {"records": [], "_meta": {"records_total": 3, "records_filtered": 0}}
    assert api(W1 + "/job/8/job-instance") == (204, None)


def test_one_try_under_the_workflow_and_under_its_job(api):
    status, one = api(W1 + "/job-instance/5")
    assert status == 200 and set(one) == TRY_FIELDS
    assert (one["job_id"], one["job_submit_seq"], one["exitcode"]) == (4, 2, None)
    assert api(W1 + "/job/4/job-instance/5")[1] == one
    assert one["cluster_start"] == T0 + 50.5 and one["cluster_duration"] is None
    assert api(W1 + "/job-instance/13")[0] == 404  # the sub-workflow's
    assert api("/root/1/workflow/2/job-instance/13")[1]["job_id"] == 10
    assert api(W1 + "/job/3/job-instance/5")[0] == 404  # not that job's


def test_states_and_invocations_of_a_try(api):
    states = api.records(W1 + "/job/4/job-instance/4/state")
    assert [(s["state"], s["jobstate_submit_seq"]) for s in states] == [
        ("SUBMIT", 1), ("EXECUTE", 2), ("JOB_FAILURE", 3)]
    assert set(states[0]) == {"job_instance_id", "state", "timestamp", "jobstate_submit_seq",
                              "reason"}
    status, body = api(W1 + "/job/1/job-instance/1/invocation")
    inv = body["records"][0]
    assert set(inv) == INVOCATION_FIELDS and body["_meta"]["records_total"] == 1
    assert (inv["start_time"], inv["remote_duration"], inv["remote_cpu_time"], inv["avg_cpu"],
            inv["maxrss"]) == (T0 + 11.25, 1.5, 0.75, 0.5, 2048)
    assert api(W1 + "/job/3/job-instance/3/invocation") == (204, None)  # still running


# --------------------------------------------------------------------------- the rest

def test_hosts_tasks_task_metadata_and_invocations(api):
    hosts = api.records(W1 + "/host")
    assert ids(hosts, "hostname") == ["node1", "node2"] and set(hosts[0]) == HOST_FIELDS
    assert api(W1 + "/host/2")[1]["site"] == "condorpool"
    assert api(W1 + "/host/3")[0] == 404  # the sub-workflow's
    tasks = api.records(W1 + "/task")
    assert len(tasks) == 9 and set(tasks[0]) == TASK_FIELDS
    assert api(W1 + "/task/6")[1]["transformation"] == "tr::merged_ID1"
    assert ids(api.records(W1 + "/job/2/task"), "task_id") == [2]
    assert api.records(W1 + "/task/1/meta") == [{"task_id": 1, "key": "color", "value": "blue"},
                                               {"task_id": 1, "key": "size", "value": "3"}]
    assert api(W1 + "/task/2/meta") == (204, None)
    invocations = api.records(W1 + "/invocation")
    assert ids(invocations, "invocation_id") == [1, 2, 4, 6, 7, 8, 9, 10, 11]
    assert api(W1 + "/invocation/7")[1]["exitcode"] == 0


# --------------------------------------------------------------------------- parameters

@pytest.mark.parametrize("args, job_ids", [
    ({"start_index": 7}, [8, 9]),
    ({"max_results": 2}, [1, 2]),
    ({"start_index": 2, "max_results": 2}, [3, 4]),
    ({"max_results": 0}, list(range(1, 10))),  # 0: no limit, as 5.x
    ({"start_index": 20}, []),
    ({"order": "-j.job_id", "max_results": 3}, [9, 8, 7]),
    ({"order": "j.type_desc, -j.exec_job_id", "max_results": 2}, [8, 9]),
])
def test_paging_and_order(api, args, job_ids):
    status, body = api(W1 + "/job", **args)
    assert status == 200 and ids(body["records"], "job_id") == job_ids
    assert body["_meta"] == {"records_total": 9, "records_filtered": 9}


@pytest.mark.parametrize("rest, query, expected", [
    ("/root", "r.wf_id + 1 == 2", [1]),
    ("/root", "ws.status == None", [1, 3]),
    ("/root", "not r.archived", [1, 3]),
    ("/root", "r.timestamp + 86400 < %r" % (T0 + 1), [2]),
    ("/root", "r.dax_label.ilike('%DIAMOND')", [1, 2]),
    (W1 + "/job", "j.max_retries * 2 - 6 == 0 and j.task_count / 2 >= 1", [6]),
    (W1 + "/job", "j.task_count / 2 == 0 and j.type_desc != 'dax'", [1, 2, 3, 4, 5, 8, 9]),
    (W1 + "/job", "j.clustered", [6]),
    (W1 + "/job", "j.exec_job_id + '.sub' == j.submit_file and j.job_id < 3", [1, 2]),
    (W1 + "/job", "j.exec_job_id in ('ok_ID1', 'bad_ID1') or j.job_id >= 9", [1, 2, 9]),
    (W1 + "/job", "j.job_id == 1,", [1]),
])
def test_query_expressions(api, rest, query, expected):
    status, body = api(rest, query=query)
    key = "wf_id" if rest == "/root" else "job_id"
    assert status == 200 and ids(body["records"], key) == expected, body
    assert body["_meta"]["records_filtered"] == len(expected)


@pytest.mark.parametrize("rest, args, status, code", [
    ("/root/9", {}, 404, "NOT_FOUND"),
    ("/root/2/workflow", {}, 404, "NOT_FOUND"),  # its STAMPEDE DB is gone
    (W1 + "/job/99", {}, 404, "NOT_FOUND"),
    (W1 + "/job-instance/99", {}, 404, "NOT_FOUND"),
    (W1 + "/nothing", {}, 404, "NOT_FOUND"),
    ("/root", {"query": "r.nope == 1"}, 400, "INVALID_QUERY"),
    ("/root", {"query": "r.wf_id =="}, 400, "INVALID_QUERY"),
    ("/root", {"query": "r.wf_id == 1, r.wf_id == 2"}, 400, "INVALID_QUERY"),
    (W1 + "/files", {"query": "j.job_id == 1"}, 400, "INVALID_QUERY"),
    ("/root", {"order": "r.nope"}, 400, "INVALID_ORDER"),
    ("/root", {"order": "r.wf_id desc"}, 400, "INVALID_ORDER"),
    ("/root", {"start_index": "x"}, 400, "INVALID_QUERY_ARGUMENT"),
    ("/root", {"max_results": "-1"}, 400, "INVALID_QUERY_ARGUMENT"),
])
def test_errors_carry_5x_codes(api, rest, args, status, code):
    got, body = api(rest, **args)
    assert (got, body["code"]) == (status, code)
    assert body["message"]


def test_an_unknown_user_and_an_internal_error_carry_codes(module_user):
    reply = UserApp().handle(Request("GET", "/api/v1/user/nosuchuser9/root", user="nosuchuser9"))
    assert (reply.status, json.loads(reply.body)["code"]) == (404, "NOT_FOUND")

    class Broken(Monitoring):
        def roots(self, ctx):
            raise RuntimeError("boom")
    app = UserApp(monitoring=Broken())
    reply = app.handle(Request("GET", "/api/v1/user/%s/root" % module_user.name,
                            user=module_user.name))
    assert reply.status == 500
    assert json.loads(reply.body) == {"code": "UNKNOWN", "message": "Internal server error"}


@pytest.mark.parametrize("value, pretty", [
    ("1", True), ("true", True), ("false", True), ("0", True), ("yes", True), ("", False),
    (None, False)])
def test_pretty_print_is_on_for_any_value(api, value, pretty):
    reply = api.raw("/root", "" if value is None else "pretty-print=" + value)
    text = reply.body.decode()
    assert reply.status == 200 and json.loads(text) == json.loads(api.raw("/root").body)
    assert text.startswith('{\n  "records"') == pretty and ("\n" in text) == pretty


def test_errors_are_pretty_printed_too(api):
    reply = api.raw("/root/9", "pretty-print=true")
    assert reply.status == 404 and reply.body.decode().startswith('{\n  "code": "NOT_FOUND"')
