"""pegasus-service as root with process switching and PAM, three real users.

alice and bob each run their own `pegasus-em server` and have Pegasus
databases; carol is an admin (ADMIN_USERS) with neither.  Everything goes over
real HTTPS to a real `pegasus-service` process.
"""

import contextlib
import grp
import os
import pwd
import shutil
import signal
import sqlite3
import subprocess
import threading
import time

import pytest

from conftest import Daemon, throwaway_user, unique, wait_until
from service_fixtures import (ROOT_UUID, Service, chown_tree, children_of, make_certificate,
                              make_pegasus_dbs, proc_credentials, wait_gone)

PASSWORDS = {}


def set_password(user, password):
    subprocess.run(["chpasswd"], input="%s:%s\n" % (user.name, password), text=True,
                   check=True)
    PASSWORDS[user.name] = password


@pytest.fixture(scope="module")
def world(sandbox):
    with contextlib.ExitStack() as stack:
        users = [stack.enter_context(throwaway_user(sandbox)) for _ in range(3)]
        alice, bob, carol = users
        for u in users:
            set_password(u, "Pw-%s-1x" % u.name)
        group = "pemg" + alice.name[3:]
        subprocess.run(["groupadd", group], check=True)
        stack.callback(subprocess.run, ["groupdel", group], stderr=subprocess.DEVNULL)
        subprocess.run(["usermod", "-aG", group, alice.name], check=True)
        daemons = {}
        for u in (alice, bob):
            u.configure()
            make_pegasus_dbs(u.pegasus_dir, label="wf-" + u.name, wal=(u is alice))
            chown_tree(u.pegasus_dir, u.uid, u.gid)
            daemons[u.name] = Daemon(u).start()
            stack.callback(daemons[u.name].kill)
        cert, key = make_certificate(sandbox.base)
        service = Service(sandbox, "CERTIFICATE = %r\nPRIVATE_KEY = %r\nADMIN_USERS = {%r}\n"
                          "EM_PASSWORD_LOGIN = True\n"
                          % (cert, key, carol.name), python=alice.python).start()
        stack.callback(service.stop)
        yield World(service, alice, bob, carol, daemons, group)


class World:
    def __init__(self, service, alice, bob, carol, daemons, group):
        self.service = service
        self.client = service.client()
        self.alice, self.bob, self.carol = alice, bob, carol
        self.daemons = daemons
        self.group = group

    def as_user(self, user, method, path, **kwargs):
        return self.client.request(method, path, user.name, PASSWORDS[user.name], **kwargs)

    def workers(self):
        """user name -> pid of the service's live workers (of users that still exist)."""
        names = {u.pw_uid: u.pw_name for u in pwd.getpwall()}
        found = {}
        for pid in children_of(self.service.proc.pid):
            uid = proc_credentials(pid)[0][0]
            if uid in names:
                found[names[uid]] = pid
        return found


def ensemble_names(world, user, path):
    status, _, body = world.as_user(user, "GET", path)
    assert status == 200, body
    return {e["name"] for e in body}


def test_users_see_their_own_ensembles_through_the_service(world):
    a, b = world.alice, world.bob
    name = unique("mine")
    status, resp, body = world.as_user(a, "POST", "/ensembles", form={"name": name})
    assert status == 201, body
    assert resp.getheader("Location") == world.service.url + "/ensembles/" + name
    assert name in ensemble_names(world, a, "/ensembles")
    assert name in ensemble_names(world, a, "/api/v1/user/%s/ensembles" % a.name)
    assert name not in ensemble_names(world, b, "/ensembles")
    status, _, body = world.as_user(a, "GET", "/api/v1/user/%s/ensembles/%s" % (a.name, name))
    assert status == 200
    assert body["href"] == "%s/api/v1/user/%s/ensembles/%s" % (world.service.url, a.name, name)
    # the daemon itself has it: the service acted on alice's own store
    status, _, listed = world.daemons[a.name].request("GET", "/ensembles")
    assert name in {e["name"] for e in listed}


def test_a_user_cannot_read_or_change_another_users_data(world):
    a, b = world.alice, world.bob
    theirs = unique("theirs")
    assert world.as_user(b, "POST", "/ensembles", form={"name": theirs})[0] == 201
    before = ensemble_names(world, b, "/ensembles")
    base = "/api/v1/user/%s" % b.name
    for method, path, form in (("GET", base + "/ensembles", None),
                               ("GET", base + "/ensembles/" + theirs, None),
                               ("POST", base + "/ensembles", {"name": unique("evil")}),
                               ("POST", base + "/ensembles/" + theirs, {"state": "PAUSED"}),
                               ("GET", base + "/root", None),
                               ("GET", base + "/root/1/workflow", None),
                               ("GET", "/u/%s/" % b.name, None)):
        status, _, body = world.as_user(a, method, path, form=form)
        assert status == 403, (method, path, status, body)
        assert "ADMIN_USERS" in body["message"]
    assert ensemble_names(world, b, "/ensembles") == before
    status, _, e = world.as_user(b, "GET", "/ensembles/" + theirs)
    assert e["state"] == "ACTIVE"


def test_an_admin_reads_everyone(world):
    a, b, c = world.alice, world.bob, world.carol
    for owner in (a, b):
        status, _, body = world.as_user(c, "GET", "/api/v1/user/%s/root" % owner.name)
        assert status == 200, body
        assert body["records"][0]["dax_label"] == "wf-" + owner.name
        assert ensemble_names(world, c, "/api/v1/user/%s/ensembles" % owner.name) == \
            ensemble_names(world, owner, "/ensembles")
    # carol runs no ensemble manager and has no master DB: clear answers, not errors
    status, _, body = world.as_user(c, "GET", "/ensembles")
    assert status == 503 and "pegasus-em" in body["message"]
    status, _, body = world.as_user(c, "GET", "/api/v1/user/%s/root" % c.name)
    assert status == 404 and "workflow.db" in body["message"]
    assert not os.path.exists(os.path.join(c.home, ".pegasus", "workflow.db"))


def test_root_is_never_served(world):
    c = world.carol
    status, _, body = world.as_user(c, "GET", "/api/v1/user/root/root")
    assert status == 403 and "root" in body["message"]
    status, _, body = world.client.request("GET", "/ensembles", "root", "anything")
    assert status == 401


def test_each_user_is_served_by_a_process_of_that_user(world):
    users = (world.alice, world.bob, world.carol)
    for u in users:  # second and third user after the first (Pegasus 5.1.3 breaks here)
        assert world.as_user(u, "GET", "/u/%s/" % u.name)[0] == 200
    workers = world.workers()
    for u in users:
        uids, gids, groups = proc_credentials(workers[u.name])
        assert uids == (u.uid,) * 3 and gids == (u.gid,) * 3
        assert groups == sorted(os.getgrouplist(u.name, u.gid))
    assert pwd.getpwnam(world.alice.name).pw_gid in proc_credentials(workers[world.alice.name])[2]
    assert grp.getgrnam(world.group).gr_gid in proc_credentials(workers[world.alice.name])[2]
    assert world.as_user(world.alice, "GET", "/u/%s/" % world.alice.name)[0] == 200


def test_files_a_request_creates_belong_to_its_user(world):
    """Reading a WAL database creates its -shm file: it must be the reader's."""
    a = world.alice
    db = os.path.join(a.pegasus_dir, "workflow.db")
    with sqlite3.connect(db) as conn:  # checkpoint, then a copy (new inode) without -shm
        conn.execute("PRAGMA wal_checkpoint(TRUNCATE)")
    shutil.copyfile(db, db + ".new")
    for suffix in ("-shm", "-wal"):
        if os.path.exists(db + suffix):
            os.unlink(db + suffix)
    os.chown(db + ".new", a.uid, a.gid)
    os.replace(db + ".new", db)
    status, _, body = world.as_user(a, "GET", "/api/v1/user/%s/root" % a.name)
    assert status == 200, body
    shm = os.path.join(a.pegasus_dir, "workflow.db-shm")
    assert os.path.exists(shm)
    assert os.stat(shm).st_uid == a.uid


def test_the_ensemble_manager_password_signs_in_too(world):
    a = world.alice
    status, _, body = world.client.request("GET", "/ensembles", a.name, a.password)
    assert status == 200, body


def test_locked_and_expired_accounts_cannot_sign_in(world, sandbox):
    """Every login passes account management, the em PASSWORD too (EM_PASSWORD_LOGIN
    is on here): `usermod -L` and an expired account keep the door shut."""
    with throwaway_user(sandbox) as u:
        u.configure()
        set_password(u, "Pw-%s-3z" % u.name)
        for password in (PASSWORDS[u.name], u.password):
            assert world.client.request("GET", "/ensembles", u.name, password)[0] in (200, 503)
        set_password(u, "Pw-%s-4z" % u.name)  # a new one: no cached login helps
        subprocess.run(["usermod", "-L", u.name], check=True)
        u.configure(password="em-%s-5z" % u.name)
        for password in (PASSWORDS[u.name], u.password):
            assert world.client.request("GET", "/ensembles", u.name, password)[0] == 401
        subprocess.run(["usermod", "-U", u.name], check=True)
        subprocess.run(["chage", "-E", "0", u.name], check=True)
        u.configure(password="em-%s-6z" % u.name)
        for password in (PASSWORDS[u.name], u.password):
            assert world.client.request("GET", "/ensembles", u.name, password)[0] == 401
        subprocess.run(["chage", "-E", "-1", u.name], check=True)
        assert world.client.request("GET", "/ensembles", u.name, u.password)[0] in (200, 503)


def test_failed_logins_start_no_process_even_with_em_password_login(world):
    """A wrong password for daemon, bin, nobody (or anyone) starts nothing as them."""
    before = set(world.workers())
    for name in ("daemon", "bin", "nobody", world.bob.name):
        assert world.client.request("GET", "/u/%s/" % name, name, "not-it-9")[0] == 401
    assert set(world.workers()) <= before


def test_pegasus_em_cli_over_https(world):
    a = world.alice
    name = unique("cli")
    d = world.daemons[a.name]
    base = ["--url", world.service.url, "--cafile", world.service.cafile]
    result = d.cli(*(base + ["create", name]))
    assert result.returncode == 0, result.stderr
    result = d.cli(*(base + ["ensembles"]))
    assert result.returncode == 0, result.stderr
    assert name in result.stdout


def test_wrong_password_is_refused_slowly_without_holding_up_others(world):
    result = {}

    def wrong():
        t0 = time.monotonic()
        result["answer"] = world.client.request("GET", "/ensembles", world.bob.name,
                                                "wrong-Pw-9")
        result["seconds"] = time.monotonic() - t0

    thread = threading.Thread(target=wrong)
    thread.start()
    time.sleep(0.1)
    t0 = time.monotonic()
    assert world.as_user(world.alice, "GET", "/u/%s/" % world.alice.name)[0] == 200
    assert time.monotonic() - t0 < 0.5           # not queued behind the failing login
    thread.join()
    status, resp, _ = result["answer"]
    assert status == 401 and result["seconds"] >= 0.9
    assert resp.getheader("WWW-Authenticate").startswith("Basic ")
    status, _, _ = world.client.request("GET", "/ensembles")
    assert status == 401


def test_credentials_are_never_logged(world):
    log = world.service.errors()
    for secret in list(PASSWORDS.values()) + ["wrong-Pw-9", world.alice.password]:
        assert secret not in log
    assert "Basic " not in log


def test_bad_input_gets_4xx_and_changes_nothing(world):
    a, c = world.alice, world.carol
    before = ensemble_names(world, a, "/ensembles")
    assert world.as_user(c, "GET", "/api/v1/user/nosuchuser9/root")[0] == 404
    assert world.as_user(a, "GET", "/api/v1/user/nosuchuser9/root")[0] == 403
    assert world.client.request("GET", "/ensembles",
                                headers={"Authorization": "Basic !!!"})[0] == 400
    assert world.client.request("GET", "/ensembles",
                                headers={"Authorization": "Basic"})[0] == 401
    for path in ("/api/v1/user/%s/../%s/root" % (a.name, world.bob.name),
                 "/api/v1/user/%s/%%2e%%2e/%s/root" % (a.name, world.bob.name),
                 "/u/%s/./x" % a.name):
        assert world.as_user(a, "GET", path)[0] == 400, path
    status, _, body = world.as_user(a, "POST", "/ensembles", body=b"name=x" + b"&" * (2 << 20),
                                    headers={"Content-Type": "application/x-www-form-urlencoded"})
    assert status == 413
    assert world.as_user(a, "GET", "/nothing/here")[0] == 404
    assert world.as_user(a, "POST", "/ensembles", form={"name": "bad name!"})[0] == 400
    assert ensemble_names(world, a, "/ensembles") == before


def test_monitoring_api(world):
    a = world.alice
    base = "/api/v1/user/%s/root" % a.name
    status, _, body = world.as_user(a, "GET", base)
    assert status == 200
    assert body["_meta"] == {"records_total": 2, "records_filtered": 2}
    assert body["records"][0]["workflow_state"]["state"] == "WORKFLOW_TERMINATED"
    assert body["records"][1]["workflow_state"] is None
    status, _, one = world.as_user(a, "GET", base + "/" + ROOT_UUID)
    assert one["wf_id"] == 1
    w = base + "/1/workflow/1"
    # as 5.x: `failed` holds every job with a failed try, retry_ID1 (failing) too
    for path, count in (("/job", 4), ("/job/running", 2), ("/job/successful", 1),
                        ("/job/failed", 2), ("/job/failing", 1), ("/host", 1), ("/task", 4),
                        ("/invocation", 3), ("/state", 2)):
        status, _, body = world.as_user(a, "GET", w + path)
        assert status == 200 and body["_meta"]["records_filtered"] == count, (path, body)
    status, _, body = world.as_user(a, "GET", base + "/1/workflow")
    assert [r["wf_uuid"] for r in body["records"]][0] == ROOT_UUID
    status, _, body = world.as_user(a, "GET", base + "/2/workflow")
    assert status == 404 and "STAMPEDE" in body["message"] and body["code"] == "NOT_FOUND"
    status, _, body = world.as_user(a, "GET", base + "?query=r.bogus%3D%3D1")
    assert (status, body["code"]) == (400, "INVALID_QUERY")
    assert one["archived"] is False


def test_a_dead_worker_is_replaced(world):
    b = world.bob
    assert world.as_user(b, "GET", "/u/%s/" % b.name)[0] == 200
    pid = world.workers()[b.name]
    os.kill(pid, signal.SIGKILL)
    wait_gone(pid)
    status, _, body = world.as_user(b, "GET", "/api/v1/user/%s/root" % b.name)
    assert status == 200, body
    assert world.workers()[b.name] != pid
    wait_until(lambda: pid not in children_of(world.service.proc.pid), 5,
               message="the dead worker to be reaped")
