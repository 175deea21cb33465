"""What another user's file or process is trusted with: an endpoint file others may
write or own, or naming another user's pid, finds no daemon; the EM password of a
service.py the user does not own logs nobody in.  Root only: files are given to
other users, processes started as them."""

import base64
import json
import os
import socket
import subprocess

import pytest

from pegasus_em.em import client
from pegasus_em.web import auth
from pegasus_em.errors import Unauthorized


@pytest.fixture
def endpoint(tmp_path):
    """write(pid, mode) -> an endpoint file naming a listening socket of ours."""
    if os.geteuid() != 0:
        pytest.skip("gives files to other users: run as root")
    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    sock.listen()
    path = tmp_path / "em-server.json"

    def write(pid=None, mode=0o600):
        path.write_text(json.dumps({"url": "http://127.0.0.1:%d" % sock.getsockname()[1],
                                    "pid": pid or os.getpid(), "token": "run-token"}))
        path.chmod(mode)
        return str(path)
    yield write
    sock.close()


def test_discovery_ignores_a_file_others_may_write_or_own(endpoint):
    assert client.read_endpoint(endpoint(mode=0o622)) is None
    path = endpoint()
    os.chown(path, 65534, -1)
    assert client.read_endpoint(path) is None


def test_discovery_ignores_a_pid_of_another_user(endpoint):
    other = subprocess.Popen(["sleep", "60"], user=65534, group=65534, extra_groups=[])
    try:
        assert client.read_endpoint(endpoint(pid=other.pid)) is None
    finally:
        other.kill()
        other.wait()


class Accounts:
    """PAM that knows no password; account management says `ok`."""
    ok = True

    def authenticate(self, user, password, rhost=None):
        return False

    def account_ok(self, name):
        return self.ok


def test_the_em_password_is_a_login_only_when_allowed_and_never_runs_user_code(tmp_path, user):
    conf = tmp_path / ".pegasus" / "service.py"
    conf.parent.mkdir()
    marker = tmp_path / "ran"
    conf.write_text("USERNAME = %r\nPASSWORD = 'em-token'\nopen(%r, 'w')\n"
                    % (user.name, str(marker)))
    os.chown(str(conf), user.uid, -1)
    pam_ = Accounts()
    shadow = tmp_path / "shadow"
    shadow.write_text("%s:$6$x:19000:0:99999:7:::\n" % user.name)
    login = auth.EmPasswordLogin(pam_, lambda name: str(tmp_path), shadow=str(shadow))
    a = auth.PamAuthentication(pam_, sleep=lambda s: None, fallback=login)

    def basic(password):
        return "Basic " + base64.b64encode(("%s:%s" % (user.name, password)).encode()).decode()
    assert a.authenticate(basic("em-token")) == user.name
    assert not marker.exists()                            # read, never executed
    with pytest.raises(Unauthorized):
        a.authenticate(basic("nope"))
    pam_.ok = False                                       # expired: account management says no
    assert not login(user.name, "em-token")
    pam_.ok = True
    shadow.write_text("%s:!$6$x:19000:0:99999:7:::\n" % user.name)   # usermod -L
    assert not login(user.name, "em-token")
    shadow.write_text("%s:$6$x:19000:0:99999:7:::\n" % user.name)
    assert login(user.name, "em-token")
    os.chown(str(conf), user.uid + 1, -1)                 # not the user's own file
    assert not login(user.name, "em-token")
