"""The REST API in process (tests/wsgi_client.py): 5.x request shapes and bad input.
What only a real daemon shows (its sockets and HTTP server) is in
tests/integration/test_api_daemon.py."""

import base64
import json
import re
import urllib.parse

import pytest

from beyond_fixtures import move
from conftest import unique
from pegasus_em.core.states import WorkflowState as W
from wsgi_client import InProcessAPI


@pytest.fixture(scope="module")
def api(tmp_path_factory):
    """One API over one em.db for a whole module of tests that add uniquely named things."""
    a = InProcessAPI(tmp_path_factory.mktemp("api"))
    yield a
    a.close()


@pytest.fixture
def ens(api):
    """A PAUSED ensemble: its workflows stay READY while the API is under test."""
    name = unique("ens")
    st, _, body = api.request("POST", "/ensembles",
                                        {"name": name, "max_planning": 2, "max_running": 3})
    assert st == 201, body
    assert api.request("POST", "/ensembles/" + name, {"state": "PAUSED"})[0] == 200
    return name


def submit(d, ensemble, name, priority="0", basedir="/tmp", command='"/bin/true" "a b"'):
    return d.request("POST", "/ensembles/%s/workflows" % ensemble,
                     {"name": name, "priority": priority, "basedir": basedir,
                      "plan_command": command})


def test_ensemble_defaults_throttles_to_one(api):
    name = unique("ens")
    assert api.request("POST", "/ensembles", {"name": name})[0] == 201
    st, _, e = api.request("GET", "/ensembles/" + name)
    assert (st, e["max_planning"], e["max_running"]) == (200, 1, 1)


@pytest.mark.parametrize("state", ["HELD", "ACTIVE", "paused"])
def test_state_change_of_ensemble(api, ens, state):
    st, _, e = api.request("POST", "/ensembles/" + ens, {"state": state})
    assert st == 200 and e["state"] == state.upper()
    assert api.request("GET", "/ensembles/" + ens)[2]["state"] == state.upper()


def test_config_changes_throttles_with_put_or_post(api, ens):
    st, _, e = api.request("POST", "/ensembles/" + ens, {"max_planning": "4"})
    assert (st, e["max_planning"], e["max_running"]) == (200, 4, 3)
    st, _, e = api.request("PUT", "/ensembles/" + ens, {"max_running": "7"})
    assert (st, e["max_planning"], e["max_running"]) == (200, 4, 7)
    assert e["updated"] > e["created"]


def test_submit_then_list_and_detail(api, ens):
    st, headers, body = submit(api, ens, "run1", priority="5")
    assert st == 201 and body == {"message": "created"}
    href = "%s/ensembles/%s/workflows/run1" % (api.url, ens)
    assert headers["Location"] == href
    st, _, listing = api.request("GET", "/ensembles/%s/workflows" % ens)
    assert st == 200 and len(listing) == 1
    w = listing[0]
    assert set(w) == {"id", "name", "created", "updated", "state", "priority", "wf_uuid", "href"}
    assert (w["name"], w["state"], w["priority"], w["wf_uuid"], w["href"]) == \
        ("run1", "READY", 5, None, href)
    st, _, detail = api.request("GET", "/ensembles/%s/workflows/run1" % ens)
    assert st == 200
    assert {"basedir", "plan_command", "log", "submitdir"} <= set(detail)
    assert detail["basedir"] == "/tmp" and detail["plan_command"] == '"/bin/true" "a b"'
    assert detail["submitdir"] is None
    assert detail["log"] == "%s/%s/run1.log" % (api.ensembles, ens)


def test_workflows_listed_in_submission_order(api, ens):
    for name in ("c", "a", "b"):
        assert submit(api, ens, name)[0] == 201
    names = [w["name"] for w in api.request("GET", "/ensembles/%s/workflows" % ens)[2]]
    assert names == ["c", "a", "b"]


def test_priority_change(api, ens):
    submit(api, ens, "w")
    st, _, w = api.request("POST", "/ensembles/%s/workflows/w" % ens, {"priority": "-3"})
    assert st == 200 and w["priority"] == -3


def test_abort_of_ready_workflow_is_immediate_and_replan_brings_it_back(api, ens):
    submit(api, ens, "w")
    st, _, w = api.request("POST", "/ensembles/%s/workflows/w" % ens,
                                     {"state": "ABORTED"})
    assert (st, w["state"]) == (200, "ABORTED")
    st, _, w = api.request("POST", "/ensembles/%s/workflows/w" % ens, {"state": "READY"})
    assert (st, w["state"]) == (200, "READY")


def test_analyze_is_plain_text_in_5x_layout(api, ens):
    submit(api, ens, "w")
    st, headers, text = api.request("GET", "/ensembles/%s/workflows/w/analyze" % ens)
    assert st == 200 and headers["Content-Type"].startswith("text/plain")
    assert text.splitlines()[:2] == ["Workflow state is READY",
                                     'Plan command is: "/bin/true" "a b"']
    assert "No workflow log available" in text and "No submit directory available" in text


def test_json_bodies_are_accepted_too(api):
    name = unique("ens")
    st, _, _ = api.request("POST", "/ensembles",
                                     raw_body=json.dumps({"name": name, "max_running": 2}).encode(),
                                     headers={"Content-Type": "application/json"})
    assert st == 201
    assert api.request("GET", "/ensembles/" + name)[2]["max_running"] == 2


CRON = {"trigger": "t1", "workflow_script": "/bin/echo", "workflow_args": '["a", "b"]',
        "interval": "30s", "type": "CRON"}


def test_cron_trigger_create_get_list_delete(api, ens):
    st, headers, body = api.request("POST", "/ensembles/%s/triggers/cron" % ens, CRON)
    assert (st, body) == (201, {"message": "created"})
    assert headers["Location"].endswith("/ensembles/%s/triggers/t1" % ens)
    st, _, t = api.request("GET", "/ensembles/%s/triggers/t1" % ens)
    assert st == 200
    assert {k: t[k] for k in ("name", "workflow", "args", "type")} == {
        "name": "t1", "workflow": {"script": "/bin/echo", "args": ["a", "b"]},
        "args": {"interval": 30, "timeout": None}, "type": "CRON"}
    assert t["state"] in ("READY", "RUNNING")  # it fires as soon as it is created
    assert isinstance(t["id"], int) and isinstance(t["ensemble_id"], int)
    st, _, listing = api.request("GET", "/ensembles/%s/triggers" % ens)
    assert [x["name"] for x in listing] == ["t1"]
    st, _, body = api.request("DELETE", "/ensembles/%s/triggers/t1" % ens)
    assert st == 202 and "t1" in body["message"]
    assert api.request("GET", "/ensembles/%s/triggers/t1" % ens)[2]["state"] == "STOPPED"
    st, _, _ = api.request("DELETE", "/ensembles/%s/triggers/t1?purge=1" % ens)
    assert st == 202
    assert api.request("GET", "/ensembles/%s/triggers/t1" % ens)[0] == 404


def test_file_pattern_trigger_keeps_its_patterns(api, ens):
    form = dict(CRON, trigger="fp", type="FILE_PATTERN", timeout="2h",
                file_patterns='["/data/*.txt", "/data/*.csv"]')
    st, _, _ = api.request("POST", "/ensembles/%s/triggers/file_pattern" % ens, form)
    assert st == 201
    t = api.request("GET", "/ensembles/%s/triggers/fp" % ens)[2]
    assert t["type"] == "FILE_PATTERN"
    assert t["args"] == {"interval": 30, "timeout": 7200,
                         "file_patterns": ["/data/*.txt", "/data/*.csv"]}


def test_older_client_trigger_route_with_type_field(api, ens):
    """That client sends seconds without a unit; the 5.1 routes refuse them (below)."""
    form = {"workflow_script": "/bin/echo", "workflow_args": "[]", "interval": "10",
            "timeout": "20", "type": "CRON"}
    st, _, _ = api.request("POST", "/ensembles/%s/triggers/old" % ens, form)
    assert st == 201
    assert api.request("GET", "/ensembles/%s/triggers/old" % ens)[2]["args"] == {
        "interval": 10, "timeout": 20}


def test_events_record_every_change(api, ens):
    submit(api, ens, "w")
    api.request("POST", "/ensembles/%s/workflows/w" % ens, {"state": "ABORTED"})
    st, _, events = api.request("GET", "/ensembles/%s/workflows/w/events" % ens)
    assert st == 200
    assert [(e["old_state"], e["new_state"]) for e in events] == [(None, "READY"),
                                                                  ("READY", "ABORTED")]
    assert all(isinstance(e["time"], float) and e["reason"] for e in events)


# ---- bad input: a clear message, the right 4xx, nothing changed ---------------

BAD_ENSEMBLE_CREATES = [
    ({}, 400, "Specify ensemble name"),
    ({"name": ""}, 400, "Invalid ensemble name: "),
    ({"name": "a.b"}, 400, "Invalid ensemble name"),
    ({"name": "a b"}, 400, "Invalid ensemble name"),
    ({"name": "x" * 100}, 400, "Ensemble name too long: 100"),
    ({"name": "ok", "max_planning": "zero"}, 400, "max_planning"),
    ({"name": "ok", "max_running": "0"}, 400, "max_running must be >= 1"),
    ({"name": "ok", "max_running": "-1"}, 400, "max_running"),
    ({"name": "ok", "max_running": "99999999999"}, 400,
     "Invalid value for max_running: 99999999999 (out of range)"),
]


@pytest.mark.parametrize("form,status,message", BAD_ENSEMBLE_CREATES)
def test_bad_ensemble_creation(api, form, status, message):
    before = api.request("GET", "/ensembles")[2]
    if form.get("name") == "ok":
        form = dict(form, name=unique("ok"))
    st, _, body = api.request("POST", "/ensembles", form)
    assert st == status and message in body["message"]
    assert api.request("GET", "/ensembles")[2] == before


def test_duplicate_ensemble_is_409(api, ens):
    st, _, body = api.request("POST", "/ensembles", {"name": ens})
    assert st == 409 and "already exists" in body["message"]


@pytest.mark.parametrize("form,status,message", [
    ({"state": "RUNNING"}, 400, "Invalid ensemble state"),
    ({"max_planning": "x"}, 400, "max_planning"),
    ({"max_running": "2", "state": "BOGUS"}, 400, "Invalid ensemble state"),
    ({"max_planning": "3", "max_running": "0"}, 400, "max_running"),
])
def test_bad_ensemble_update_changes_nothing(api, ens, form, status, message):
    api.request("POST", "/ensembles/" + ens, {"state": "ACTIVE"})
    before = api.request("GET", "/ensembles/" + ens)[2]
    st, _, body = api.request("POST", "/ensembles/" + ens, form)
    assert st == status and message in body["message"]
    assert api.request("GET", "/ensembles/" + ens)[2] == before


BAD_SUBMITS = [
    ({"priority": "0", "basedir": "/tmp", "plan_command": "x"}, 400, "Specify ensemble workflow 'name'"),
    ({"name": "w", "priority": "0", "plan_command": "x"}, 400, "Specify 'basedir'"),
    ({"name": "w", "priority": "0", "basedir": "/tmp"}, 400, "Specify 'plan_command'"),
    ({"name": "w", "priority": "high", "basedir": "/tmp", "plan_command": "x"}, 400, "priority"),
    ({"name": "w.x", "basedir": "/tmp", "plan_command": "x"}, 400, "Invalid ensemble name: w.x"),
    ({"name": "w", "basedir": "relative", "plan_command": "x"}, 400, "absolute"),
    ({"name": "w", "basedir": "/tmp", "plan_command": "a\x00b"}, 400, "NUL"),
]


@pytest.mark.parametrize("form,status,message", BAD_SUBMITS)
def test_bad_submission_changes_nothing(api, ens, form, status, message):
    st, _, body = api.request("POST", "/ensembles/%s/workflows" % ens, form)
    assert st == status and message in body["message"]
    assert api.request("GET", "/ensembles/%s/workflows" % ens)[2] == []


def test_duplicate_workflow_is_409(api, ens):
    submit(api, ens, "w")
    st, _, body = submit(api, ens, "w")
    assert st == 409 and "already exists" in body["message"]


@pytest.mark.parametrize("form,status,message", [
    ({"state": "RUNNING"}, 409, "Invalid state change: READY -> RUNNING"),
    ({"state": "SUCCESSFUL"}, 409, "Invalid state change: READY -> SUCCESSFUL"),
    ({"state": "READY"}, 409, "Invalid state change: READY -> READY"),
    ({"state": "QUEUED"}, 409, "Invalid state change: READY -> QUEUED"),
    ({"state": "NOPE"}, 400, "Invalid ensemble workflow state"),
    ({"priority": "1.5"}, 400, "priority"),
    ({"priority": "7", "state": "NOPE"}, 400, "Invalid"),
])
def test_forbidden_workflow_changes(api, ens, form, status, message):
    submit(api, ens, "w", priority="1")
    before = api.request("GET", "/ensembles/%s/workflows/w" % ens)[2]
    st, _, body = api.request("POST", "/ensembles/%s/workflows/w" % ens, form)
    assert st == status and message in body["message"]
    assert api.request("GET", "/ensembles/%s/workflows/w" % ens)[2] == before


def test_aborted_workflow_cannot_be_aborted_again(api, ens):
    submit(api, ens, "w")
    api.request("POST", "/ensembles/%s/workflows/w" % ens, {"state": "ABORTED"})
    st, _, body = api.request("POST", "/ensembles/%s/workflows/w" % ens,
                                        {"state": "ABORTED"})
    assert st == 409 and body["message"].startswith("Invalid state change: ABORTED -> ABORTED")


def test_rerun_of_a_workflow_never_planned_says_so(api, ens):
    submit(api, ens, "w")
    api.request("POST", "/ensembles/%s/workflows/w" % ens, {"state": "ABORTED"})
    st, _, body = api.request("POST", "/ensembles/%s/workflows/w" % ens,
                                        {"state": "QUEUED"})
    assert st == 409 and body["message"] == ("Invalid state change: ABORTED -> QUEUED "
                                             "(it was never planned: replan it)")


@pytest.mark.parametrize("method,path", [
    ("GET", "/ensembles/nope"),
    ("POST", "/ensembles/nope"),
    ("GET", "/ensembles/nope/workflows"),
    ("POST", "/ensembles/nope/workflows"),
    ("GET", "/ensembles/nope/workflows/w"),
    ("GET", "/ensembles/nope/triggers"),
    ("GET", "/nothing/here"),
])
def test_unknown_things_are_404(api, method, path):
    data = {"name": "w", "basedir": "/tmp", "plan_command": "x"} if method == "POST" else None
    st, _, body = api.request(method, path, data)
    assert st == 404 and body["message"]


def test_unknown_workflow_and_trigger_are_404(api, ens):
    for path in ("/ensembles/%s/workflows/none" % ens, "/ensembles/%s/workflows/none/analyze" % ens,
                 "/ensembles/%s/triggers/none" % ens):
        st, _, body = api.request("GET", path)
        assert st == 404 and "No such" in body["message"]
    st, _, body = api.request("DELETE", "/ensembles/%s/triggers/none" % ens)
    assert st == 404


BAD_TRIGGERS = [
    ({"trigger": ""}, "trigger name must be a non-empty string"),
    ({"workflow_script": ""}, "workflow_script"),
    ({"workflow_script": "relative/script.sh"}, "workflow_script must be given as an absolute path"),
    ({"workflow_args": "not json"}, "workflow_args must be given as a list serialized to json"),
    ({"workflow_args": '{"a": 1}'}, "workflow_args must be given as a list"),
    ({"workflow_args": "[1, 2]"}, "workflow_args"),
    ({"interval": "0s"}, "interval must be given as `<int> <s|m|h|d>`"),
    ({"interval": "5 weeks"}, "interval must be given"),
    ({"interval": "-3s"}, "interval must be given"),
    ({"timeout": "soon"}, "timeout must be given"),
    ({"timeout": "0s"}, "timeout must be given"),
    ({"basedir": "relative/dir"}, "basedir must be an absolute path"),
    ({"trigger": "bad name"}, "Invalid trigger name: bad name"),
]


@pytest.mark.parametrize("change,message", BAD_TRIGGERS)
def test_bad_cron_trigger_changes_nothing(api, ens, change, message):
    st, _, body = api.request("POST", "/ensembles/%s/triggers/cron" % ens,
                                        dict(CRON, **change))
    assert st == 400 and message in body["message"]
    assert api.request("GET", "/ensembles/%s/triggers" % ens)[2] == []


@pytest.mark.parametrize("patterns,message", [
    ("[]", "at least one file pattern"),
    ('["relative/*.txt"]', "absolute path"),
    ("nope", "file_patterns must be given as a list"),
])
def test_bad_file_pattern_trigger(api, ens, patterns, message):
    form = dict(CRON, type="FILE_PATTERN", file_patterns=patterns)
    st, _, body = api.request("POST", "/ensembles/%s/triggers/file_pattern" % ens, form)
    assert st == 400 and message in body["message"]
    assert api.request("GET", "/ensembles/%s/triggers" % ens)[2] == []


def test_trigger_for_unknown_ensemble_is_404_and_duplicate_409(api, ens):
    assert api.request("POST", "/ensembles/nope/triggers/cron", CRON)[0] == 404
    assert api.request("POST", "/ensembles/%s/triggers/cron" % ens, CRON)[0] == 201
    st, _, body = api.request("POST", "/ensembles/%s/triggers/cron" % ens,
                                        dict(CRON, interval="5s", workflow_script="/bin/true"))
    assert st == 409 and "already exists" in body["message"]
    (t,) = api.request("GET", "/ensembles/%s/triggers" % ens)[2]
    assert (t["args"]["interval"], t["workflow"]["script"]) == (30, "/bin/echo")


@pytest.mark.parametrize("method", ["HEAD", "OPTIONS", "PATCH", "BREW", "DELETE"])
def test_wrong_methods_are_405_with_allow(api, method):
    st, headers, _ = api.request(method, "/ensembles")
    assert st == 405 and headers["Allow"] == "GET, POST"


@pytest.mark.parametrize("header,status", [
    ("Basic !!!notbase64", 400),
    ("Basic " + base64.b64encode(b"nocolon").decode(), 400),
    ("Bearer abc", 401),
])
def test_malformed_authorization(api, header, status):
    st, _, body = api.request("GET", "/ensembles", headers={"Authorization": header})
    assert st == status and body["message"]


@pytest.mark.parametrize("body,ctype,message", [
    (b"{not json", "application/json", "Invalid JSON"),
    (b"[1, 2]", "application/json", "JSON body must be an object"),
    (b"name=\xff\xfe", "application/x-www-form-urlencoded", "UTF-8"),
])
def test_malformed_bodies_are_400(api, body, ctype, message):
    st, _, reply = api.request("POST", "/ensembles", raw_body=body,
                                         headers={"Content-Type": ctype})
    assert st == 400 and message in reply["message"]


def test_cross_site_browser_posts_are_refused(api):
    """A page elsewhere making the owner's browser post to the daemon (it may hold cached
    Basic credentials for it) changes nothing; the CLI and scripts send no Origin."""
    names = []
    attacks = [{"Origin": "https://evil.example"}, {"Origin": "null"},
               {"Sec-Fetch-Site": "cross-site"}, {"Sec-Fetch-Site": "same-site"},
               {"Sec-Fetch-Mode": "navigate", "Sec-Fetch-Site": "same-origin"}]
    for headers in attacks:
        names.append(unique("csrf"))
        st, _, reply = api.request("POST", "/ensembles", {"name": names[-1]},
                                             headers=headers)
        assert st == 403 and ("refused" in reply["message"] or "form" in reply["message"]), \
            headers
    names.append(unique("plain"))
    st, _, reply = api.request("POST", "/ensembles", raw_body=b"name=" +
                                         names[-1].encode(), headers={"Content-Type": "text/plain"})
    assert st == 415 and "x-www-form-urlencoded" in reply["message"]
    listed = {e["name"] for e in api.request("GET", "/ensembles")[2]}
    assert not listed & set(names)
    own = "http://" + urllib.parse.urlsplit(api.url).netloc
    assert api.request("POST", "/ensembles", {"name": unique("same")},
                                 headers={"Origin": own})[0] == 201


def test_listing_made_in_sql_equals_the_python_rendering(api, ens):
    """The list is rendered by SQLite for speed; it must say what the detail says."""
    for i in range(5):
        submit(api, ens, "w%d" % i, priority=str(i - 2))
    listing = api.request("GET", "/ensembles/%s/workflows" % ens)[2]
    for item in listing:
        detail = api.request("GET", "/ensembles/%s/workflows/%s" % (ens, item["name"]))[2]
        assert item == {k: detail[k] for k in item}


def test_empty_listing_is_an_empty_list(api, ens):
    st, headers, body = api.request("GET", "/ensembles/%s/workflows" % ens)
    assert (st, body) == (200, []) and headers["Content-Type"] == "application/json"


# ---- every 5.x error text (pegasus-facts §7), word for word ---------------------

FILE_PATTERN = dict(CRON, type="FILE_PATTERN", file_patterns='["/in/*.txt"]')
FRESH = "fresh_never_created"

# (the 5.x text, method, path, form, our status).  {P}: a PAUSED ensemble with a READY
# workflow w, an ABORTED never-planned workflow ab and a trigger t1; {F}: an ensemble
# whose workflows pf, rf, f and ok ended PLAN_FAILED, RUN_FAILED, FAILED, SUCCESSFUL.
MESSAGES_5X = [
    ("Specify ensemble name", "POST", "/ensembles", {}, 400),
    ("Invalid ensemble name: ", "POST", "/ensembles", {"name": ""}, 400),
    ("Ensemble name too long: 100", "POST", "/ensembles", {"name": "x" * 100}, 400),
    ("Invalid ensemble name: bad.name", "POST", "/ensembles", {"name": "bad.name"}, 400),
    ("Invalid value for max_running: zero", "POST", "/ensembles",
     {"name": FRESH, "max_running": "zero"}, 400),
    ("Value for max_running must be >= 1: 0", "POST", "/ensembles",
     {"name": FRESH, "max_running": "0"}, 400),
    ("Invalid value for max_planning: 1.5", "POST", "/ensembles",
     {"name": FRESH, "max_planning": "1.5"}, 400),
    ("Value for max_planning must be >= 1: -2", "POST", "/ensembles",
     {"name": FRESH, "max_planning": "-2"}, 400),
    ("Ensemble {P} already exists", "POST", "/ensembles", {"name": "{P}"}, 409),
    ("No such ensemble: nope", "GET", "/ensembles/nope", None, 404),
    ("No such ensemble: nope", "POST", "/ensembles/nope", {"state": "PAUSED"}, 404),
    ("No such ensemble: nope", "GET", "/ensembles/nope/workflows", None, 404),
    ("No such ensemble: nope", "POST", "/ensembles/nope/triggers/cron", CRON, 404),
    ("Invalid ensemble state: BOGUS", "POST", "/ensembles/{P}", {"state": "bogus"}, 400),
    ("Value for max_running must be >= 1: 0", "POST", "/ensembles/{P}",
     {"max_running": "0", "state": "BOGUS"}, 400),
    ("Invalid value for max_planning: x", "POST", "/ensembles/{P}", {"max_planning": "x"}, 400),
    ("Specify ensemble workflow 'name'", "POST", "/ensembles/{P}/workflows",
     {"basedir": "/tmp", "plan_command": "x"}, 400),
    ("Specify 'basedir' where plan command should be executed", "POST",
     "/ensembles/{P}/workflows", {"name": "n", "plan_command": "x"}, 400),
    ("Specify 'plan_command' that should be executed to plan workflow", "POST",
     "/ensembles/{P}/workflows", {"name": "n", "basedir": "/tmp"}, 400),
    ("Invalid ensemble name: w.x", "POST", "/ensembles/{P}/workflows",
     {"name": "w.x", "basedir": "/tmp", "plan_command": "x"}, 400),
    ("Ensemble name too long: 120", "POST", "/ensembles/{P}/workflows",
     {"name": "w" * 120, "basedir": "/tmp", "plan_command": "x"}, 400),
    ("Invalid priority: abc", "POST", "/ensembles/{P}/workflows",
     {"name": "n", "basedir": "/tmp", "plan_command": "x", "priority": "abc"}, 400),
    ("Ensemble workflow w already exists", "POST", "/ensembles/{P}/workflows",
     {"name": "w", "basedir": "/tmp", "plan_command": "x"}, 409),
    ("No such ensemble workflow: nope", "GET", "/ensembles/{P}/workflows/nope", None, 404),
    ("No such ensemble workflow: nope", "POST", "/ensembles/{P}/workflows/nope",
     {"state": "READY"}, 404),
    ("No such ensemble workflow: nope", "GET", "/ensembles/{P}/workflows/nope/analyze", None,
     404),
    ("Invalid priority: 1.5", "POST", "/ensembles/{P}/workflows/w", {"priority": "1.5"}, 400),
    ("Invalid ensemble workflow state: NOPE", "POST", "/ensembles/{P}/workflows/w",
     {"state": "nope"}, 400),
    ("Invalid state change: READY -> QUEUED", "POST", "/ensembles/{P}/workflows/w",
     {"state": "QUEUED"}, 409),
    ("Invalid state change: READY -> READY", "POST", "/ensembles/{P}/workflows/w",
     {"state": "READY"}, 409),
    ("Invalid state change: READY -> RUNNING", "POST", "/ensembles/{P}/workflows/w",
     {"state": "RUNNING"}, 409),
    ("Invalid state change: ABORTED -> QUEUED", "POST", "/ensembles/{P}/workflows/ab",
     {"state": "QUEUED"}, 409),
    ("Invalid state change: ABORTED -> ABORTED", "POST", "/ensembles/{P}/workflows/ab",
     {"state": "ABORTED"}, 409),
    ("Invalid state change: SUCCESSFUL -> QUEUED", "POST", "/ensembles/{F}/workflows/ok",
     {"state": "QUEUED"}, 409),
    ("Invalid state change: SUCCESSFUL -> READY", "POST", "/ensembles/{F}/workflows/ok",
     {"state": "READY"}, 409),
    ("Can only replan workflows in PLAN_FAILED state", "POST", "/ensembles/{F}/workflows/pf",
     {"state": "QUEUED"}, 409),
    ("Can only replan or rerun workflows in RUN_FAILED state", "POST",
     "/ensembles/{F}/workflows/rf", {"state": "SUCCESSFUL"}, 409),
    ("Can only replan or rerun workflows in FAILED state", "POST", "/ensembles/{F}/workflows/f",
     {"state": "RUNNING"}, 409),
    ("trigger name must be a non-empty string", "POST", "/ensembles/{P}/triggers/cron",
     dict(CRON, trigger=""), 400),
    ("workflow_script name must be a non-empty string", "POST", "/ensembles/{P}/triggers/cron",
     dict(CRON, workflow_script=""), 400),
    ("workflow_script must be given as an absolute path", "POST", "/ensembles/{P}/triggers/cron",
     dict(CRON, workflow_script="wf.py"), 400),
    ("workflow_args must be given as a list serialized to json", "POST",
     "/ensembles/{P}/triggers/cron", dict(CRON, workflow_args="badjson"), 400),
    ("workflow_args must be given as a list serialized to json", "POST",
     "/ensembles/{P}/triggers/cron", dict(CRON, workflow_args='{"a": 1}'), 400),
    ("interval must be given as `<int> <s|m|h|d>` and be greater than 0 seconds", "POST",
     "/ensembles/{P}/triggers/cron", dict(CRON, interval="10"), 400),
    ("interval must be given as `<int> <s|m|h|d>` and be greater than 0 seconds", "POST",
     "/ensembles/{P}/triggers/file_pattern", dict(FILE_PATTERN, interval="0s"), 400),
    ("timeout must be given as `<int> <s|m|h|d>` and be greater than 0 seconds", "POST",
     "/ensembles/{P}/triggers/cron", dict(CRON, timeout="20"), 400),
    ("file_patterns must be given as a list serialized to json", "POST",
     "/ensembles/{P}/triggers/file_pattern", dict(FILE_PATTERN, file_patterns="abc123"), 400),
    ("file_patterns must contain at least one file pattern", "POST",
     "/ensembles/{P}/triggers/file_pattern", dict(FILE_PATTERN, file_patterns="[]"), 400),
    # 5.x's own text goes on "(e.g. '/inputs/*.txt" (sic): ours starts with that too.
    ("each file pattern must be given as an absolute path", "POST",
     "/ensembles/{P}/triggers/file_pattern", dict(FILE_PATTERN, file_patterns='["x.txt"]'),
     400),
    ("No such trigger: nope assigned to ensemble id: {P_id}", "GET",
     "/ensembles/{P}/triggers/nope", None, 404),
    ("No such trigger: nope assigned to ensemble id: {P_id}", "DELETE",
     "/ensembles/{P}/triggers/nope", None, 404),
    ("ensemble: {P}, trigger: t1 marked for deletion", "DELETE", "/ensembles/{P}/triggers/t1",
     None, 202),
]


def _ended(api, ensemble, paths):
    """Submit one workflow per name and walk it to its end in the store (no engine)."""
    for name, path in paths.items():
        assert submit(api, ensemble, name)[0] == 201
        move(api, ensemble, name, *path)
    return {n: api.request("GET", "/ensembles/%s/workflows/%s" % (ensemble, n))[2]["state"]
            for n in paths}


@pytest.fixture(scope="module")
def world(api):
    d = api
    paused, ended = unique("p"), unique("f")
    assert d.request("POST", "/ensembles", {"name": paused})[0] == 201
    d.request("POST", "/ensembles/" + paused, {"state": "PAUSED"})
    submit(d, paused, "w")
    submit(d, paused, "ab")
    d.request("POST", "/ensembles/%s/workflows/ab" % paused, {"state": "ABORTED"})
    assert d.request("POST", "/ensembles/%s/triggers/cron" % paused, CRON)[0] == 201
    assert d.request("POST", "/ensembles", {"name": ended, "max_planning": "4",
                                            "max_running": "4"})[0] == 201
    run = (W.PLANNING, W.QUEUED, W.RUNNING)
    states = _ended(d, ended, {"pf": (W.PLANNING, W.PLAN_FAILED),
                               "rf": (W.PLANNING, W.QUEUED, W.RUN_FAILED),
                               "f": run + (W.FAILED,), "ok": run + (W.SUCCESSFUL,)})
    assert states == {"pf": "PLAN_FAILED", "rf": "RUN_FAILED", "f": "FAILED", "ok": "SUCCESSFUL"}
    return {"P": paused, "F": ended, "P_id": d.request("GET", "/ensembles/" + paused)[2]["id"]}


def _fill(value, names):
    """{P}, {F} and {P_id} replaced by the world's names (JSON braces left alone)."""
    if isinstance(value, dict):
        return {k: _fill(v, names) for k, v in value.items()}
    if isinstance(value, str):
        return re.sub(r"\{(P|F|P_id)\}", lambda m: str(names[m.group(1)]), value)
    return value


@pytest.mark.parametrize("text,method,path,form,status", MESSAGES_5X,
                         ids=["%d %s" % (i, m[0][:40]) for i, m in enumerate(MESSAGES_5X)])
def test_every_5x_message_starts_ours_word_for_word(api, world, text, method, path,
                                                     form, status):
    """The request the 5.x client sends gets 5.x's text, then at most a hint in
    parentheses: gateway scripts grep these texts."""
    text = _fill(text, world)
    st, _, body = api.request(method, _fill(path, world), _fill(form, world))
    assert st == status, body
    message = body["message"]
    assert message.startswith(text), (text, message)
    assert re.fullmatch(r"( \(.+\))?", message[len(text):], re.S), message


def test_the_table_holds_every_5x_text():
    """Every text of pegasus-facts §7 has a row (a value stands where §7 has <...>)."""
    texts = {row[0] for row in MESSAGES_5X}
    for prefix in ("Specify ensemble name", "Ensemble name too long: ", "Invalid ensemble name: ",
                   "Invalid priority: ", "Invalid ensemble state: ",
                   "Value for max_running must be >= 1: ", "Invalid value for max_running: ",
                   "Value for max_planning must be >= 1: ", "Invalid value for max_planning: ",
                   "Invalid ensemble workflow state: ", "Invalid state change: ",
                   "Can only replan workflows in PLAN_FAILED state",
                   "Can only replan or rerun workflows in RUN_FAILED state",
                   "Can only replan or rerun workflows in FAILED state", "No such ensemble: ",
                   "Ensemble {P} already exists", "No such ensemble workflow: ",
                   "Ensemble workflow w already exists", "Specify ensemble workflow 'name'",
                   "Specify 'basedir' where plan command should be executed",
                   "Specify 'plan_command' that should be executed to plan workflow",
                   "trigger name must be a non-empty string",
                   "workflow_script name must be a non-empty string",
                   "workflow_script must be given as an absolute path",
                   "workflow_args must be given as a list serialized to json",
                   "file_patterns must be given as a list serialized to json",
                   "file_patterns must contain at least one file pattern",
                   "interval must be given as `<int> <s|m|h|d>` and be greater than 0 seconds",
                   "timeout must be given as `<int> <s|m|h|d>` and be greater than 0 seconds",
                   "No such trigger: nope assigned to ensemble id: ",
                   "ensemble: {P}, trigger: t1 marked for deletion"):
        assert any(t.startswith(prefix) for t in texts), prefix


@pytest.mark.parametrize("value,shown", [("a\x1b[2Jb", "a\\x1b[2Jb"), ("x" * 300, "x" * 200 + "...")],
                         ids=["control", "long"])
def test_values_are_shown_bare_but_never_raw_control_characters(api, value, shown):
    st, _, body = api.request("POST", "/ensembles", {"name": value})
    assert st == 400
    assert body["message"].split(" (")[0] in ("Invalid ensemble name: " + shown,
                                              "Ensemble name too long: %d" % len(value))
