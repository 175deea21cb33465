"""The REST API over real HTTP against a real daemon: 5.x request shapes and bad input."""

import base64
import http.client
import json
import socket
import urllib.parse

import pytest

from conftest import unique


@pytest.fixture
def ens(shared_daemon):
    """A PAUSED ensemble: its workflows stay READY while the API is under test."""
    name = unique("ens")
    st, _, body = shared_daemon.request("POST", "/ensembles",
                                        {"name": name, "max_planning": 2, "max_running": 3})
    assert st == 201, body
    assert shared_daemon.request("POST", "/ensembles/" + name, {"state": "PAUSED"})[0] == 200
    return name


def submit(d, ensemble, name, priority="0", basedir="/tmp", command='"/bin/true" "a b"'):
    return d.request("POST", "/ensembles/%s/workflows" % ensemble,
                     {"name": name, "priority": priority, "basedir": basedir,
                      "plan_command": command})


# ---- the 5.x client's requests, replayed byte for byte -----------------------

def test_create_ensemble_answers_201_with_location_and_shows_in_list(shared_daemon):
    name = unique("ens")
    st, headers, body = shared_daemon.request("POST", "/ensembles",
                                              {"name": name, "max_planning": "1",
                                               "max_running": "1"})
    assert st == 201
    assert body == {"message": "created"}
    assert headers["Location"] == "%s/ensembles/%s" % (shared_daemon.url, name)
    st, _, listing = shared_daemon.request("GET", "/ensembles")
    (e,) = [x for x in listing if x["name"] == name]
    assert set(e) == {"id", "name", "created", "updated", "state", "max_running",
                      "max_planning", "workflows", "href"}
    assert e["state"] == "ACTIVE" and e["max_planning"] == 1 and e["max_running"] == 1
    assert isinstance(e["created"], float) and e["created"] == e["updated"]
    assert e["href"] == headers["Location"]
    assert e["workflows"] == headers["Location"] + "/workflows"


def test_ensemble_defaults_throttles_to_one(shared_daemon):
    name = unique("ens")
    assert shared_daemon.request("POST", "/ensembles", {"name": name})[0] == 201
    st, _, e = shared_daemon.request("GET", "/ensembles/" + name)
    assert (st, e["max_planning"], e["max_running"]) == (200, 1, 1)


@pytest.mark.parametrize("state", ["HELD", "ACTIVE", "paused"])
def test_state_change_of_ensemble(shared_daemon, ens, state):
    st, _, e = shared_daemon.request("POST", "/ensembles/" + ens, {"state": state})
    assert st == 200 and e["state"] == state.upper()
    assert shared_daemon.request("GET", "/ensembles/" + ens)[2]["state"] == state.upper()


def test_config_changes_throttles_with_put_or_post(shared_daemon, ens):
    st, _, e = shared_daemon.request("POST", "/ensembles/" + ens, {"max_planning": "4"})
    assert (st, e["max_planning"], e["max_running"]) == (200, 4, 3)
    st, _, e = shared_daemon.request("PUT", "/ensembles/" + ens, {"max_running": "7"})
    assert (st, e["max_planning"], e["max_running"]) == (200, 4, 7)
    assert e["updated"] > e["created"]


def test_submit_then_list_and_detail(shared_daemon, ens):
    st, headers, body = submit(shared_daemon, ens, "run1", priority="5")
    assert st == 201 and body == {"message": "created"}
    href = "%s/ensembles/%s/workflows/run1" % (shared_daemon.url, ens)
    assert headers["Location"] == href
    st, _, listing = shared_daemon.request("GET", "/ensembles/%s/workflows" % ens)
    assert st == 200 and len(listing) == 1
    w = listing[0]
    assert set(w) == {"id", "name", "created", "updated", "state", "priority", "wf_uuid", "href"}
    assert (w["name"], w["state"], w["priority"], w["wf_uuid"], w["href"]) == \
        ("run1", "READY", 5, None, href)
    st, _, detail = shared_daemon.request("GET", "/ensembles/%s/workflows/run1" % ens)
    assert st == 200
    assert {"basedir", "plan_command", "log", "submitdir"} <= set(detail)
    assert detail["basedir"] == "/tmp" and detail["plan_command"] == '"/bin/true" "a b"'
    assert detail["submitdir"] is None
    assert detail["log"] == "%s/ensembles/%s/run1.log" % (shared_daemon.user.pegasus_dir, ens)


def test_workflows_listed_in_submission_order(shared_daemon, ens):
    for name in ("c", "a", "b"):
        assert submit(shared_daemon, ens, name)[0] == 201
    names = [w["name"] for w in shared_daemon.request("GET", "/ensembles/%s/workflows" % ens)[2]]
    assert names == ["c", "a", "b"]


def test_priority_change(shared_daemon, ens):
    submit(shared_daemon, ens, "w")
    st, _, w = shared_daemon.request("POST", "/ensembles/%s/workflows/w" % ens, {"priority": "-3"})
    assert st == 200 and w["priority"] == -3


def test_abort_of_ready_workflow_is_immediate_and_replan_brings_it_back(shared_daemon, ens):
    submit(shared_daemon, ens, "w")
    st, _, w = shared_daemon.request("POST", "/ensembles/%s/workflows/w" % ens,
                                     {"state": "ABORTED"})
    assert (st, w["state"]) == (200, "ABORTED")
    st, _, w = shared_daemon.request("POST", "/ensembles/%s/workflows/w" % ens, {"state": "READY"})
    assert (st, w["state"]) == (200, "READY")


def test_analyze_is_plain_text_in_5x_layout(shared_daemon, ens):
    submit(shared_daemon, ens, "w")
    st, headers, text = shared_daemon.request("GET", "/ensembles/%s/workflows/w/analyze" % ens)
    assert st == 200 and headers["Content-Type"].startswith("text/plain")
    assert text.splitlines()[:2] == ["Workflow state is READY",
                                     'Plan command is: "/bin/true" "a b"']
    assert "No workflow log available" in text and "No submit directory available" in text


def test_json_bodies_are_accepted_too(shared_daemon):
    name = unique("ens")
    st, _, _ = shared_daemon.request("POST", "/ensembles",
                                     raw_body=json.dumps({"name": name, "max_running": 2}).encode(),
                                     headers={"Content-Type": "application/json"})
    assert st == 201
    assert shared_daemon.request("GET", "/ensembles/" + name)[2]["max_running"] == 2


CRON = {"trigger": "t1", "workflow_script": "/bin/echo", "workflow_args": '["a", "b"]',
        "interval": "30s", "type": "CRON"}


def test_cron_trigger_create_get_list_delete(shared_daemon, ens):
    st, headers, body = shared_daemon.request("POST", "/ensembles/%s/triggers/cron" % ens, CRON)
    assert (st, body) == (201, {"message": "created"})
    assert headers["Location"].endswith("/ensembles/%s/triggers/t1" % ens)
    st, _, t = shared_daemon.request("GET", "/ensembles/%s/triggers/t1" % ens)
    assert st == 200
    assert {k: t[k] for k in ("name", "workflow", "args", "type")} == {
        "name": "t1", "workflow": {"script": "/bin/echo", "args": ["a", "b"]},
        "args": {"interval": 30, "timeout": None}, "type": "CRON"}
    assert t["state"] in ("READY", "RUNNING")  # it fires as soon as it is created
    assert isinstance(t["id"], int) and isinstance(t["ensemble_id"], int)
    st, _, listing = shared_daemon.request("GET", "/ensembles/%s/triggers" % ens)
    assert [x["name"] for x in listing] == ["t1"]
    st, _, body = shared_daemon.request("DELETE", "/ensembles/%s/triggers/t1" % ens)
    assert st == 202 and "t1" in body["message"]
    assert shared_daemon.request("GET", "/ensembles/%s/triggers/t1" % ens)[2]["state"] == "STOPPED"
    st, _, _ = shared_daemon.request("DELETE", "/ensembles/%s/triggers/t1?purge=1" % ens)
    assert st == 202
    assert shared_daemon.request("GET", "/ensembles/%s/triggers/t1" % ens)[0] == 404


def test_file_pattern_trigger_keeps_its_patterns(shared_daemon, ens):
    form = dict(CRON, trigger="fp", type="FILE_PATTERN", timeout="2h",
                file_patterns='["/data/*.txt", "/data/*.csv"]')
    st, _, _ = shared_daemon.request("POST", "/ensembles/%s/triggers/file_pattern" % ens, form)
    assert st == 201
    t = shared_daemon.request("GET", "/ensembles/%s/triggers/fp" % ens)[2]
    assert t["type"] == "FILE_PATTERN"
    assert t["args"] == {"interval": 30, "timeout": 7200,
                         "file_patterns": ["/data/*.txt", "/data/*.csv"]}


def test_older_client_trigger_route_with_type_field(shared_daemon, ens):
    form = {"workflow_script": "/bin/echo", "workflow_args": "[]", "interval": "10", "type": "CRON"}
    st, _, _ = shared_daemon.request("POST", "/ensembles/%s/triggers/old" % ens, form)
    assert st == 201
    assert shared_daemon.request("GET", "/ensembles/%s/triggers/old" % ens)[2]["args"][
        "interval"] == 10


def test_events_record_every_change(shared_daemon, ens):
    submit(shared_daemon, ens, "w")
    shared_daemon.request("POST", "/ensembles/%s/workflows/w" % ens, {"state": "ABORTED"})
    st, _, events = shared_daemon.request("GET", "/ensembles/%s/workflows/w/events" % ens)
    assert st == 200
    assert [(e["old_state"], e["new_state"]) for e in events] == [(None, "READY"),
                                                                  ("READY", "ABORTED")]
    assert all(isinstance(e["time"], float) and e["reason"] for e in events)


# ---- bad input: a clear message, the right 4xx, nothing changed ---------------

BAD_ENSEMBLE_CREATES = [
    ({}, 400, "Specify ensemble name"),
    ({"name": ""}, 400, "Specify ensemble name"),
    ({"name": "a.b"}, 400, "Invalid ensemble name"),
    ({"name": "a b"}, 400, "Invalid ensemble name"),
    ({"name": "x" * 100}, 400, "too long"),
    ({"name": "ok", "max_planning": "zero"}, 400, "max_planning"),
    ({"name": "ok", "max_running": "0"}, 400, "max_running must be >= 1"),
    ({"name": "ok", "max_running": "-1"}, 400, "max_running"),
    ({"name": "ok", "max_running": "99999999999"}, 400, "out of range"),
]


@pytest.mark.parametrize("form,status,message", BAD_ENSEMBLE_CREATES)
def test_bad_ensemble_creation(shared_daemon, form, status, message):
    before = shared_daemon.request("GET", "/ensembles")[2]
    if form.get("name") == "ok":
        form = dict(form, name=unique("ok"))
    st, _, body = shared_daemon.request("POST", "/ensembles", form)
    assert st == status and message in body["message"]
    assert shared_daemon.request("GET", "/ensembles")[2] == before


def test_duplicate_ensemble_is_409(shared_daemon, ens):
    st, _, body = shared_daemon.request("POST", "/ensembles", {"name": ens})
    assert st == 409 and "already exists" in body["message"]


@pytest.mark.parametrize("form,status,message", [
    ({"state": "RUNNING"}, 400, "Invalid ensemble state"),
    ({"max_planning": "x"}, 400, "max_planning"),
    ({"max_running": "2", "state": "BOGUS"}, 400, "Invalid ensemble state"),
    ({"max_planning": "3", "max_running": "0"}, 400, "max_running"),
])
def test_bad_ensemble_update_changes_nothing(shared_daemon, ens, form, status, message):
    shared_daemon.request("POST", "/ensembles/" + ens, {"state": "ACTIVE"})
    before = shared_daemon.request("GET", "/ensembles/" + ens)[2]
    st, _, body = shared_daemon.request("POST", "/ensembles/" + ens, form)
    assert st == status and message in body["message"]
    assert shared_daemon.request("GET", "/ensembles/" + ens)[2] == before


BAD_SUBMITS = [
    ({"priority": "0", "basedir": "/tmp", "plan_command": "x"}, 400, "Specify ensemble workflow 'name'"),
    ({"name": "w", "priority": "0", "plan_command": "x"}, 400, "Specify 'basedir'"),
    ({"name": "w", "priority": "0", "basedir": "/tmp"}, 400, "Specify 'plan_command'"),
    ({"name": "w", "priority": "high", "basedir": "/tmp", "plan_command": "x"}, 400, "priority"),
    ({"name": "w.x", "basedir": "/tmp", "plan_command": "x"}, 400, "Invalid ensemble workflow name"),
    ({"name": "w", "basedir": "relative", "plan_command": "x"}, 400, "absolute"),
    ({"name": "w", "basedir": "/tmp", "plan_command": "a\x00b"}, 400, "NUL"),
]


@pytest.mark.parametrize("form,status,message", BAD_SUBMITS)
def test_bad_submission_changes_nothing(shared_daemon, ens, form, status, message):
    st, _, body = shared_daemon.request("POST", "/ensembles/%s/workflows" % ens, form)
    assert st == status and message in body["message"]
    assert shared_daemon.request("GET", "/ensembles/%s/workflows" % ens)[2] == []


def test_duplicate_workflow_is_409(shared_daemon, ens):
    submit(shared_daemon, ens, "w")
    st, _, body = submit(shared_daemon, ens, "w")
    assert st == 409 and "already exists" in body["message"]


@pytest.mark.parametrize("form,status,message", [
    ({"state": "RUNNING"}, 409, "it is READY"),
    ({"state": "SUCCESSFUL"}, 409, "it is READY"),
    ({"state": "READY"}, 409, "it is READY"),
    ({"state": "QUEUED"}, 409, "never planned"),
    ({"state": "NOPE"}, 400, "Invalid ensemble workflow state"),
    ({"priority": "1.5"}, 400, "priority"),
    ({"priority": "7", "state": "NOPE"}, 400, "Invalid"),
])
def test_forbidden_workflow_changes(shared_daemon, ens, form, status, message):
    submit(shared_daemon, ens, "w", priority="1")
    before = shared_daemon.request("GET", "/ensembles/%s/workflows/w" % ens)[2]
    st, _, body = shared_daemon.request("POST", "/ensembles/%s/workflows/w" % ens, form)
    assert st == status and message in body["message"]
    assert shared_daemon.request("GET", "/ensembles/%s/workflows/w" % ens)[2] == before


def test_aborted_workflow_cannot_be_aborted_again(shared_daemon, ens):
    submit(shared_daemon, ens, "w")
    shared_daemon.request("POST", "/ensembles/%s/workflows/w" % ens, {"state": "ABORTED"})
    st, _, body = shared_daemon.request("POST", "/ensembles/%s/workflows/w" % ens,
                                        {"state": "ABORTED"})
    assert st == 409 and "it is ABORTED" in body["message"]


@pytest.mark.parametrize("method,path", [
    ("GET", "/ensembles/nope"),
    ("POST", "/ensembles/nope"),
    ("GET", "/ensembles/nope/workflows"),
    ("POST", "/ensembles/nope/workflows"),
    ("GET", "/ensembles/nope/workflows/w"),
    ("GET", "/ensembles/nope/triggers"),
    ("GET", "/nothing/here"),
])
def test_unknown_things_are_404(shared_daemon, method, path):
    data = {"name": "w", "basedir": "/tmp", "plan_command": "x"} if method == "POST" else None
    st, _, body = shared_daemon.request(method, path, data)
    assert st == 404 and body["message"]


def test_unknown_workflow_and_trigger_are_404(shared_daemon, ens):
    for path in ("/ensembles/%s/workflows/none" % ens, "/ensembles/%s/workflows/none/analyze" % ens,
                 "/ensembles/%s/triggers/none" % ens):
        st, _, body = shared_daemon.request("GET", path)
        assert st == 404 and "No such" in body["message"]
    st, _, body = shared_daemon.request("DELETE", "/ensembles/%s/triggers/none" % ens)
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
    ({"trigger": "bad name"}, "Invalid trigger name"),
]


@pytest.mark.parametrize("change,message", BAD_TRIGGERS)
def test_bad_cron_trigger_changes_nothing(shared_daemon, ens, change, message):
    st, _, body = shared_daemon.request("POST", "/ensembles/%s/triggers/cron" % ens,
                                        dict(CRON, **change))
    assert st == 400 and message in body["message"]
    assert shared_daemon.request("GET", "/ensembles/%s/triggers" % ens)[2] == []


@pytest.mark.parametrize("patterns,message", [
    ("[]", "at least one file pattern"),
    ('["relative/*.txt"]', "absolute path"),
    ("nope", "file_patterns must be given as a list"),
])
def test_bad_file_pattern_trigger(shared_daemon, ens, patterns, message):
    form = dict(CRON, type="FILE_PATTERN", file_patterns=patterns)
    st, _, body = shared_daemon.request("POST", "/ensembles/%s/triggers/file_pattern" % ens, form)
    assert st == 400 and message in body["message"]
    assert shared_daemon.request("GET", "/ensembles/%s/triggers" % ens)[2] == []


def test_trigger_for_unknown_ensemble_is_404_and_duplicate_409(shared_daemon, ens):
    assert shared_daemon.request("POST", "/ensembles/nope/triggers/cron", CRON)[0] == 404
    assert shared_daemon.request("POST", "/ensembles/%s/triggers/cron" % ens, CRON)[0] == 201
    st, _, body = shared_daemon.request("POST", "/ensembles/%s/triggers/cron" % ens,
                                        dict(CRON, interval="5s", workflow_script="/bin/true"))
    assert st == 409 and "already exists" in body["message"]
    (t,) = shared_daemon.request("GET", "/ensembles/%s/triggers" % ens)[2]
    assert (t["args"]["interval"], t["workflow"]["script"]) == (30, "/bin/echo")


@pytest.mark.parametrize("method", ["HEAD", "OPTIONS", "PATCH", "BREW", "DELETE"])
def test_wrong_methods_are_405_with_allow(shared_daemon, method):
    st, headers, _ = shared_daemon.request(method, "/ensembles")
    assert st == 405 and headers["Allow"] == "GET, POST"


def test_missing_or_wrong_credentials_are_401(shared_daemon):
    st, headers, body = shared_daemon.request("GET", "/ensembles", auth=False)
    assert st == 401 and headers["WWW-Authenticate"].startswith("Basic")
    wrong = "Basic " + base64.b64encode(b"someone:else").decode()
    st, headers, body = shared_daemon.request("GET", "/ensembles",
                                              headers={"Authorization": wrong})
    assert st == 401 and "Invalid username or password" in body["message"]
    st, _, body = shared_daemon.request("POST", "/ensembles", {"name": unique("x")}, auth=False)
    assert st == 401


@pytest.mark.parametrize("header,status", [
    ("Basic !!!notbase64", 400),
    ("Basic " + base64.b64encode(b"nocolon").decode(), 400),
    ("Bearer abc", 401),
])
def test_malformed_authorization(shared_daemon, header, status):
    st, _, body = shared_daemon.request("GET", "/ensembles", headers={"Authorization": header})
    assert st == status and body["message"]


def test_oversized_body_is_413(shared_daemon):
    body = b"name=" + b"x" * (2 << 20)
    st, _, reply = shared_daemon.request("POST", "/ensembles", raw_body=body,
                                         headers={"Content-Type":
                                                  "application/x-www-form-urlencoded"})
    assert st == 413 and "too large" in reply["message"]


@pytest.mark.parametrize("body,ctype,message", [
    (b"{not json", "application/json", "Invalid JSON"),
    (b"[1, 2]", "application/json", "JSON body must be an object"),
    (b"name=\xff\xfe", "application/x-www-form-urlencoded", "UTF-8"),
])
def test_malformed_bodies_are_400(shared_daemon, body, ctype, message):
    st, _, reply = shared_daemon.request("POST", "/ensembles", raw_body=body,
                                         headers={"Content-Type": ctype})
    assert st == 400 and message in reply["message"]


def test_cross_site_browser_posts_are_refused(shared_daemon):
    """A page elsewhere making the owner's browser post to the daemon (it may hold cached
    Basic credentials for it) changes nothing; the CLI and scripts send no Origin."""
    names = []
    attacks = [{"Origin": "https://evil.example"}, {"Origin": "null"},
               {"Sec-Fetch-Site": "cross-site"}, {"Sec-Fetch-Site": "same-site"},
               {"Sec-Fetch-Mode": "navigate", "Sec-Fetch-Site": "same-origin"}]
    for headers in attacks:
        names.append(unique("csrf"))
        st, _, reply = shared_daemon.request("POST", "/ensembles", {"name": names[-1]},
                                             headers=headers)
        assert st == 403 and ("refused" in reply["message"] or "form" in reply["message"]), \
            headers
    names.append(unique("plain"))
    st, _, reply = shared_daemon.request("POST", "/ensembles", raw_body=b"name=" +
                                         names[-1].encode(), headers={"Content-Type": "text/plain"})
    assert st == 415 and "x-www-form-urlencoded" in reply["message"]
    listed = {e["name"] for e in shared_daemon.request("GET", "/ensembles")[2]}
    assert not listed & set(names)
    own = "http://" + urllib.parse.urlsplit(shared_daemon.url).netloc
    assert shared_daemon.request("POST", "/ensembles", {"name": unique("same")},
                                 headers={"Origin": own})[0] == 201


def test_the_host_header_does_not_reach_links(shared_daemon):
    name = unique("host")
    st, headers, _ = shared_daemon.request("POST", "/ensembles", {"name": name},
                                           headers={"Host": "evil.example.com"})
    assert st == 201 and headers["Location"] == "%s/ensembles/%s" % (shared_daemon.url, name)
    _, _, e = shared_daemon.request("GET", "/ensembles/" + name, headers={"Host": "evil.example"})
    assert e["href"].startswith(shared_daemon.url + "/")


def _raw(d, data):
    host, port = urllib.parse.urlsplit(d.url).netloc.rsplit(":", 1)
    with socket.create_connection((host, int(port)), timeout=10) as s:
        s.sendall(data)
        chunks = []
        while True:
            chunk = s.recv(65536)
            if not chunk:
                break
            chunks.append(chunk)
    return b"".join(chunks)


def test_garbage_request_line_gets_json_400_not_html(shared_daemon):
    reply = _raw(shared_daemon, b"THIS IS NOT HTTP\r\n\r\n")
    assert reply.startswith(b"HTTP/1.1 400")
    assert b'{"message"' in reply and b"<html" not in reply.lower()


def test_keep_alive_serves_many_requests_on_one_connection(shared_daemon):
    host, port = urllib.parse.urlsplit(shared_daemon.url).netloc.rsplit(":", 1)
    conn = http.client.HTTPConnection(host, int(port), timeout=10)
    token = base64.b64encode(("%s:%s" % (shared_daemon.user.name,
                                         shared_daemon.user.password)).encode()).decode()
    for _ in range(20):
        conn.request("GET", "/ensembles", headers={"Authorization": "Basic " + token})
        resp = conn.getresponse()
        assert resp.status == 200
        json.loads(resp.read())
    # A 401 that never read the body must not poison the connection.
    conn.request("POST", "/ensembles", body="name=zz", headers={
        "Content-Type": "application/x-www-form-urlencoded"})
    resp = conn.getresponse()
    assert resp.status == 401
    resp.read()
    conn.request("GET", "/ensembles", headers={"Authorization": "Basic " + token})
    assert conn.getresponse().status == 200
    conn.close()


def test_listing_made_in_sql_equals_the_python_rendering(shared_daemon, ens):
    """The list is rendered by SQLite for speed; it must say what the detail says."""
    for i in range(5):
        submit(shared_daemon, ens, "w%d" % i, priority=str(i - 2))
    listing = shared_daemon.request("GET", "/ensembles/%s/workflows" % ens)[2]
    for item in listing:
        detail = shared_daemon.request("GET", "/ensembles/%s/workflows/%s" % (ens, item["name"]))[2]
        assert item == {k: detail[k] for k in item}


def test_empty_listing_is_an_empty_list(shared_daemon, ens):
    st, headers, body = shared_daemon.request("GET", "/ensembles/%s/workflows" % ens)
    assert (st, body) == (200, []) and headers["Content-Type"] == "application/json"
