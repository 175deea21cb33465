"""Our monitoring API against Pegasus 5.x's own, on the same databases (pegasus_dbs.py):
every route and parameter must answer the same status, error code, `_meta` and records
(ours may add fields), except the answers listed in DEVIATIONS, where 5.x is broken.

Needs a Python with pegasus-wms 5.1.3 (pegasus-facts §8): PEGASUS_ORACLE_PYTHON, else the
cached venv of tests/real_pegasus; skipped with the reason without one."""

import json
import os
import subprocess
import urllib.parse

import pytest

from conftest import REPO
from pegasus_em.errors import EMError
from pegasus_em.service.monitoring import Monitoring, error_result
from pegasus_dbs import ROOT_UUID, SUB_UUID, make_home

ORACLE = os.environ.get("PEGASUS_ORACLE_PYTHON", "")
HERE = os.path.join(REPO, "tests")  # where pegasus_oracle.py is
W = "/root/1/workflow/1"

PATHS = [
    "/root", "/root/1", "/root/3", "/root/" + ROOT_UUID, "/root/9",
    "/root?query=ws.status == None", "/root?query=r.wf_id %2B 1 == 2",
    "/root?query=r.archived == True", "/root?order=-r.wf_id", "/root?query=r.nope == 1",
    "/root?order=r.nope", "/root?start-index=x", "/root?max-results=x",
    "/root?start-index=1&max-results=1", "/root?max-results=0", "/root?start-index=9",
    "/root?pretty-print=true", "/root?pretty-print=false",
    "/root/1/workflow", "/root/1/workflow/1", "/root/1/workflow/" + SUB_UUID,
    "/root/1/workflow/nope", "/root/1/workflow?query=w.parent_wf_id == 1",
    W + "/meta", W + "/meta?query=wm.key == 'owner'", W + "/state",
    W + "/state?query=ws.status == 1", W + "/files", W + "/files?query=rm.key == 'size'",
    W + "/files?order=-l.lfn", W + "/files?query=l.lfn == 'f.c'",
    W + "/job", W + "/job?query=j.clustered == True", W + "/job?order=-j.job_id",
    W + "/job?query=j.max_retries * 2 - 6 == 0 and j.task_count / 2 >= 1",
    W + "/job?query=j.exec_job_id in ('ok_ID1', 'bad_ID1')&order=j.job_id",
    W + "/job?start-index=2&max-results=3&order=j.job_id",
    W + "/job/1", W + "/job/99", "/root/1/workflow/2/job",
    W + "/job/successful", W + "/job/failed", W + "/job/failing",
    W + "/job/failed?query=ji.exitcode == 2", W + "/job/failed?order=-ji.exitcode",
    W + "/job/4/job-instance", W + "/job/4/job-instance?recent=true",
    W + "/job/9/job-instance?recent=true", W + "/job/9/job-instance?recent=True",
    W + "/job/9/job-instance?recent=true&query=ji.exitcode == 3",
    W + "/job/9/job-instance?query=ji.exitcode != None",
    W + "/job-instance/5", W + "/job-instance/99", W + "/job/4/job-instance/4/state",
    W + "/job/4/job-instance/4/state?query=js.state == 'SUBMIT'",
    W + "/job/1/job-instance/1/invocation", W + "/host", W + "/host/1",
    W + "/host?query=h.site == 'local'", W + "/task", W + "/task/1", W + "/task/1/meta",
    W + "/job/1/task", W + "/invocation", W + "/invocation/1",
    W + "/invocation?query=i.exitcode != 0",
]

# answers where 5.x is broken, and how
BROKEN_IN_5X = {
    W + "/job/running": "5.x joins each running try to the latest *ended* try: always 204",
    "/root/1/workflow/2/meta": "5.x answers the root workflow's metadata",
    "/root/1/workflow/2/files": "5.x answers the root workflow's files",
    W + "/files?query=p.site == 'remote'": "5.x counts joined PFN x metadata rows",
    "/root?pretty-print=yes": "5.x refuses values other than 1/true/0/false",
    "/root/2/workflow": "5.x answers 500 UNKNOWN for a missing STAMPEDE database",
}


def oracle_python():
    """PEGASUS_ORACLE_PYTHON, else the venv of tests/real_pegasus (which .ci/run builds)."""
    python = ORACLE
    if not python:
        from real_pegasus import pegasus_venv
        venv, why = pegasus_venv.ensure()
        if venv is None:
            pytest.skip("no Pegasus 5.1.3 to compare with (%s); or set PEGASUS_ORACLE_PYTHON"
                        % why)
        python = os.path.join(venv, "bin", "python")
    probe = subprocess.run([python, "-c", "import Pegasus.service.monitoring, flask"],
                           stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    if probe.returncode:
        pytest.fail("%s cannot import Pegasus's service: %s" % (python, probe.stderr))
    return python


def pegasus_answers(home, paths):
    done = subprocess.run([oracle_python(), os.path.join(HERE, "pegasus_oracle.py"), home],
                          input="\n".join(p.replace(" ", "%20") for p in paths),
                          stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True,
                          check=True, timeout=300)
    return [json.loads(line) for line in done.stdout.splitlines()]


def our_answer(mon, home, path):
    rest, _, query = path.partition("?")
    args = dict(urllib.parse.parse_qsl(query, keep_blank_values=True))
    try:
        result = mon.handle(home, rest, args)
    except EMError as e:
        result = error_result(e)
    return result.status, json.loads(result.text) if result.text else None


@pytest.fixture(scope="module")
def home(tmp_path_factory):
    home = str(tmp_path_factory.mktemp("oracle"))
    make_home(home)
    return home


def test_every_route_and_parameter_answers_as_pegasus_does(home):
    mon = Monitoring()
    mismatches = []
    for theirs in pegasus_answers(home, PATHS):
        path = theirs["path"].replace("%20", " ")
        status, body = our_answer(mon, home, path)
        problem = difference(path, theirs["status"], theirs["body"], status, body)
        if problem:
            mismatches.append("%s: %s" % (path, problem))
    assert not mismatches, "\n".join(mismatches)


def test_where_pegasus_is_broken_we_differ_on_purpose(home):
    mon = Monitoring()
    paths = list(BROKEN_IN_5X)
    for theirs in pegasus_answers(home, paths):
        status, body = our_answer(mon, home, theirs["path"].replace("%20", " "))
        assert difference(theirs["path"], theirs["status"], theirs["body"], status, body), \
            "%s: %s" % (theirs["path"], BROKEN_IN_5X[theirs["path"]])


def difference(path, their_status, theirs, status, ours):
    """What differs (None: nothing that matters): records in any order unless the
    path orders them, fields of ours beyond theirs allowed, error messages free."""
    if their_status != status:
        return "status %s, ours %s" % (their_status, status)
    if isinstance(theirs, dict) and "code" in theirs:
        return None if theirs["code"] == ours.get("code") else \
            "code %s, ours %s" % (theirs["code"], ours)
    if isinstance(theirs, dict) and "records" in theirs:
        if theirs.get("_meta") != ours.get("_meta"):
            return "_meta %s, ours %s" % (theirs.get("_meta"), ours.get("_meta"))
        a, b = list(map(_key, theirs["records"])), list(map(_key, ours["records"]))
        if "order=" not in path:
            a, b = sorted(a), sorted(b)
        return None if a == b else "records %s, ours %s" % (theirs["records"], ours["records"])
    if isinstance(theirs, dict):
        return None if trim(ours, theirs) == theirs else "%s, ours %s" % (theirs, ours)
    return None if theirs == ours else "%s, ours %s" % (theirs, ours)


def trim(ours, theirs):
    """`ours` without the fields `theirs` lacks."""
    return {k: v for k, v in ours.items() if k in theirs} if isinstance(ours, dict) else ours


def _key(record):
    return json.dumps(record, sort_keys=True)
