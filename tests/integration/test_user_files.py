"""A process that does not run as the user reads only the user's own databases.

pegasus-service with PROCESS_SWITCHING = False runs as root and opens, for user
U, ~/.pegasus/workflow.db, em.db and whatever STAMPEDE database the master DB's
db_url names: all paths U controls.  U points them at V's 0600 databases (a
symlink, a db_url) and must get none of V's rows.  Real users, a real service."""

import os
import sqlite3
import tempfile
import threading

import pytest

from conftest import throwaway_user
from pegasus_em.core import db as emdb
from pegasus_em import owned
from pegasus_em.dashboard import masterdb
from pegasus_em.core.ops import Ops
from service_fixtures import Service, chown_tree, make_certificate, make_pegasus_dbs

SECRET = "vsecret"  # V's workflows' label and ensemble name (its file names hold it too)


def leaked(body):
    """Does an answer hold a row of V's (not merely a path U wrote itself)?"""
    return any(s in body for s in ("'%s'" % SECRET, SECRET + "-0.dag", SECRET + "-2",
                                   "'%sens'" % SECRET))


def _private(user):
    """0600 files of `user`'s own below its .pegasus (directories stay searchable, so
    only the ownership rule stands between U and them)."""
    chown_tree(user.pegasus_dir, user.uid, user.gid)
    for name in os.listdir(user.pegasus_dir):
        os.chmod(os.path.join(user.pegasus_dir, name), 0o600)


def _em_db(user, ensemble):
    """`user`'s em.db holding one ensemble."""
    path = os.path.join(user.pegasus_dir, "em.db")
    database = emdb.open_database(path)
    try:
        Ops(database, os.path.join(user.home, "ensembles")).create_ensemble(ensemble)
    finally:
        database.close()
    return path


@pytest.fixture(scope="module")
def users(sandbox):
    with throwaway_user(sandbox) as u, throwaway_user(sandbox) as v:
        v_stampede = make_pegasus_dbs(v.pegasus_dir, label=SECRET)
        _em_db(v, SECRET + "ens")
        _private(v)
        yield u, v, v_stampede


@pytest.fixture(scope="module")
def service(sandbox, users):
    cert, key = make_certificate(sandbox.base)
    svc = Service(sandbox, "CERTIFICATE = %r\nPRIVATE_KEY = %r\nAUTHENTICATION = "
                  "'NoAuthentication'\nPROCESS_SWITCHING = False\n" % (cert, key)).start()
    yield svc
    svc.stop()


def _get(svc, path):
    status, _, body = svc.client().request("GET", path)
    return status, str(body)


def _reset(u):
    if os.path.lexists(u.pegasus_dir):
        for name in os.listdir(u.pegasus_dir):
            os.unlink(os.path.join(u.pegasus_dir, name))
    else:
        os.makedirs(u.pegasus_dir)
    os.chown(u.pegasus_dir, u.uid, u.gid)


def test_v_reads_its_own_databases_through_the_root_service(service, users):
    """The control: the service can and does serve these rows, to V."""
    _, v, _ = users
    status, body = _get(service, "/api/v1/user/%s/root/1/workflow" % v.name)
    assert status == 200 and leaked(body)
    status, body = _get(service, "/u/%s/ensembles" % v.name)
    assert status == 200 and leaked(body)


def test_a_symlinked_master_db_or_em_db_gives_none_of_v_s_rows(service, users):
    u, v, _ = users
    _reset(u)
    for name in ("workflow.db", "em.db"):
        os.symlink(os.path.join(v.pegasus_dir, name), os.path.join(u.pegasus_dir, name))
        os.lchown(os.path.join(u.pegasus_dir, name), u.uid, u.gid)
    for path in ("/api/v1/user/%s/root" % u.name, "/api/v1/user/%s/root/1/workflow" % u.name,
                 "/u/%s/" % u.name, "/u/%s/r/1" % u.name, "/u/%s/ensembles" % u.name):
        status, body = _get(service, path)
        assert not leaked(body), path
        assert status in (200, 403, 404), (path, body)
    status, body = _get(service, "/api/v1/user/%s/root" % u.name)
    assert status == 403 and "workflow.db" in body and "another user" in body
    status, body = _get(service, "/u/%s/" % u.name)
    assert "belongs to another user" in body


def test_a_db_url_naming_v_s_stampede_db_gives_none_of_its_rows(service, users):
    u, _, v_stampede = users
    _reset(u)
    make_pegasus_dbs(u.pegasus_dir, label="umine")
    with sqlite3.connect(os.path.join(u.pegasus_dir, "workflow.db")) as db:
        db.execute("UPDATE master_workflow SET db_url = ? WHERE wf_id = 1",
                   ("sqlite:///" + v_stampede,))
    _private(u)
    status, body = _get(service, "/api/v1/user/%s/root" % u.name)
    assert status == 200 and "umine" in body          # U's own master DB is served
    for path in ("/api/v1/user/%s/root/1/workflow" % u.name,
                 "/api/v1/user/%s/root/1/workflow/1/job" % u.name):
        status, body = _get(service, path)
        assert status == 403 and not leaked(body) and "STAMPEDE database" in body, path
    status, body = _get(service, "/u/%s/r/1/w/1" % u.name)
    assert status == 403 and not leaked(body)
    status, body = _get(service, "/u/%s/r/1" % u.name)  # the page, without STAMPEDE data
    assert status == 200 and not leaked(body)


def test_as_user_limits_this_thread_to_what_the_user_may_open(users):
    u, v, _ = users
    secret = os.path.join(v.pegasus_dir, "workflow.db")
    seen, go = [], threading.Event()

    def read_when_told():  # started before: a thread made inside would inherit the fsuid
        go.wait(10)
        seen.append(open(secret, "rb").read(6))
    other = threading.Thread(target=read_when_told)
    other.start()
    with owned.as_user(u.uid):
        with pytest.raises(PermissionError):
            open(secret, "rb")
        go.set()
        other.join()
    assert seen == [b"SQLite"]                        # other threads keep root's access
    with open(secret, "rb") as f:                     # and so does this one, afterwards
        assert f.read(6) == b"SQLite"


def test_a_swap_while_sqlite_opens_the_file_is_caught(users, monkeypatch):
    """U replaces its own database by a link to V's just as it is opened, and puts it
    back at once: the open runs as U (the kernel refuses V's 0600 file), and SQLite's
    view of what it opened must be the file that was checked."""
    u, v, _ = users
    _reset(u)
    make_pegasus_dbs(u.pegasus_dir, label="umine")
    _private(u)
    mine = os.path.join(u.pegasus_dir, "workflow.db")
    aside = mine + ".aside"
    real_connect = sqlite3.connect

    def swapping_connect(*args, **kwargs):
        os.rename(mine, aside)
        os.symlink(os.path.join(v.pegasus_dir, "workflow.db"), mine)
        try:
            return real_connect(*args, **kwargs)
        finally:
            os.unlink(mine)
            os.rename(aside, mine)
    monkeypatch.setattr(masterdb.sqlite3, "connect", swapping_connect)
    with pytest.raises(masterdb.Unavailable) as caught:
        masterdb.Connections().get(mine, "Master database", u.uid)
    assert not leaked(caught.value.message)
    monkeypatch.setattr(owned, "_LIBC", None)         # without setfsuid: the second check
    with pytest.raises(masterdb.Refused):
        masterdb.Connections().get(mine, "Master database", u.uid)


@pytest.mark.parametrize("mode, sticky_owner, accepted", [
    (0o755, None, True),
    (0o775, None, False),          # group-writable: someone else could swap the file
    (0o777, None, False),
    (0o1777, "user", True),        # /tmp-like, with the user's own entry in it
    (0o1777, "other", False),      # ... with another user's entry on the way
], ids=["0755", "0775", "0777", "1777-own-entry", "1777-other-entry"])
def test_directories_on_the_way_must_be_the_users_and_closed_to_others(
        sandbox, users, mode, sticky_owner, accepted):
    u, v, _ = users
    top = tempfile.mkdtemp(dir=sandbox.base)
    os.makedirs(os.path.join(top, "sub"))
    db = os.path.join(top, "sub", "x.db")
    sqlite3.connect(db).close()
    chown_tree(top, u.uid, u.gid)
    if sticky_owner == "other":
        os.chown(os.path.join(top, "sub"), v.uid, v.gid)
    os.chmod(top, mode)
    if accepted:
        masterdb.Connections().get(db, "Test database", u.uid).close()
    else:
        with pytest.raises(masterdb.Refused):
            masterdb.Connections().get(db, "Test database", u.uid)


def test_only_a_process_running_as_the_owner_skips_the_checks(users):
    """PROCESS_SWITCHING = True: the worker runs as the user and the OS does the rest."""
    u, v, _ = users
    code = "import sys; from pegasus_em.owned import reader_uid; print(reader_uid(sys.argv[1]))"
    for home, expected in ((u.home, "None"), (v.home, str(v.uid))):
        out = u.run([u.python, "-c", code, home])
        assert out.stdout.strip() == expected, out.stderr
    assert owned.reader_uid(u.home) == u.uid          # root checks every user, even so


def test_the_dashboard_reads_a_submit_directory_as_its_user(users):
    """U's master DB may name V's submit directory as its own: whether V's DAGMan
    finished (and how) is read there with U's file-system identity, so U learns
    nothing of V's run."""
    u, v, _ = users
    from pegasus_em.dashboard import stampede
    submit = os.path.join(v.home, "private-run")
    os.makedirs(submit, exist_ok=True)
    with open(os.path.join(submit, "w-0.dag.dagman.out"), "w") as f:
        f.write("12/04/26 10:00:00 ** condor_scheduniv_exec.7.0 (CONDOR_DAGMAN) STARTING UP\n"
                "12/04/26 10:00:00 ** PID = 4242\n"
                "12/04/26 10:00:09 **** condor_scheduniv_exec.7.0 (condor_DAGMAN) pid 4242 "
                "EXITING WITH STATUS 0\n")
    chown_tree(submit, v.uid, v.gid)
    os.chmod(submit, 0o700)
    row = {"submit_dir": submit, "dag_file_name": "w-0.dag", "state_ts": 1.0, "wf_uuid": "x"}
    liveness = stampede.Liveness()
    assert liveness.check(dict(row), owner=None)[0] == stampede.SUCCESSFUL  # root sees it
    state, reason = liveness.check(dict(row), owner=u.uid)
    assert state != stampede.SUCCESSFUL and "4242" not in reason
