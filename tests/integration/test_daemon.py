"""`pegasus-em server` as a real process: start-up checks, lock, signals, files."""

import json
import os
import signal
import stat
import subprocess
import sys

import pytest

from conftest import REPO, Daemon, wait_until


def start_fails(user, *args, env=None):
    proc = user.run([user.python, "-m", "pegasus_em", "server", "--port", "0"] + list(args),
                    env=env)
    assert proc.returncode != 0
    return proc


def test_refuses_to_run_as_root(tmp_path):
    cfg = tmp_path / "service.py"
    cfg.write_text("USERNAME = 'root'\nPASSWORD = 'x'\n")
    cfg.chmod(0o600)
    env = dict(os.environ, PEGASUS_ENV=str(cfg), PYTHONPATH=REPO)
    proc = subprocess.run([sys.executable, "-m", "pegasus_em", "server", "--port", "0"],
                          env=env, capture_output=True, text=True, timeout=60)
    assert proc.returncode != 0
    assert "must not run as root" in proc.stderr
    assert "Traceback" not in proc.stderr


def test_refuses_to_start_without_credentials(user):
    proc = start_fails(user)
    assert "USERNAME and PASSWORD" in proc.stderr and "service.py" in proc.stderr
    assert "Traceback" not in proc.stderr


def test_config_syntax_error_names_file_and_line(user):
    user.configure(extra="\nEM_INTERVAL = = 3\n")
    proc = start_fails(user)
    assert "service.py, line 4" in proc.stderr and "Traceback" not in proc.stderr


def test_unknown_setting_and_readable_password_are_warned_about(user):
    path = user.configure(extra="NOT_A_SETTING = 1\n")
    os.chmod(path, 0o644)
    d = Daemon(user, ["-d"]).start()
    try:
        wait_until(lambda: "NOT_A_SETTING" in d.errors(), message="warning on stderr")
        assert "other users can read it" in d.errors()
        with open(os.path.join(user.pegasus_dir, "em-server.log")) as f:
            assert "unknown setting NOT_A_SETTING" in f.read()
    finally:
        d.kill()


def test_second_daemon_for_the_same_user_is_refused(daemon):
    proc = start_fails(daemon.user)
    assert "already running" in proc.stderr and str(daemon.proc.pid) in proc.stderr
    assert daemon.request("GET", "/ensembles")[0] == 200


def test_sigterm_shuts_down_cleanly(daemon):
    assert daemon.request("POST", "/ensembles", {"name": "keep"})[0] == 201
    assert daemon.stop(signal.SIGTERM) == 0
    assert not os.path.exists(daemon.endpoint)
    with open(os.path.join(daemon.user.pegasus_dir, "em-server.log")) as f:
        assert "shutting down" in f.read()


def test_state_survives_sigkill_and_restart(daemon):
    assert daemon.request("POST", "/ensembles", {"name": "keep", "max_running": "4"})[0] == 201
    assert daemon.request("POST", "/ensembles/keep", {"state": "PAUSED"})[0] == 200
    assert daemon.request("POST", "/ensembles/keep/workflows", {
        "name": "w", "basedir": "/tmp", "plan_command": "x", "priority": "3"})[0] == 201
    daemon.kill()
    restarted = Daemon(daemon.user).start()
    try:
        e = restarted.request("GET", "/ensembles/keep")[2]
        assert e["max_running"] == 4
        w = restarted.request("GET", "/ensembles/keep/workflows/w")[2]
        assert (w["state"], w["priority"]) == ("READY", 3)
    finally:
        restarted.kill()


def test_files_are_private(daemon):
    pdir = daemon.user.pegasus_dir
    assert stat.S_IMODE(os.stat(pdir).st_mode) == 0o700
    for name in ("em.db", "em-server.json", "em-server.log", "em-server.lock"):
        st = os.stat(os.path.join(pdir, name))
        assert stat.S_IMODE(st.st_mode) == 0o600, name
        assert st.st_uid == daemon.user.uid
    with open(daemon.endpoint) as f:
        info = json.load(f)
    assert info["pid"] == daemon.proc.pid and info["url"] == daemon.url


def test_default_port_is_7919_plus_uid(user):
    user.configure()
    d = Daemon(user)
    d.args = []
    proc = user.popen([user.python, "-m", "pegasus_em", "server"], stdout=subprocess.DEVNULL,
                      stderr=subprocess.DEVNULL)
    d.proc = proc
    try:
        wait_until(d._published, 15, message="endpoint file")
        assert d.url == "http://127.0.0.1:%d" % (7919 + user.uid % (65535 - 7919))
    finally:
        proc.kill()
        proc.wait()


def test_listening_socket_is_not_inherited(daemon):
    """Children (planners) must not keep the port bound after a crash."""
    pid = daemon.proc.pid
    for fd in os.listdir("/proc/%d/fd" % pid):
        try:
            target = os.readlink("/proc/%d/fd/%s" % (pid, fd))
        except OSError:
            continue
        if target.startswith("socket:"):
            with open("/proc/%d/fdinfo/%s" % (pid, fd)) as f:
                flags = int(f.read().split("flags:")[1].split()[0], 8)
            assert flags & os.O_CLOEXEC, "fd %s of the daemon is inheritable" % fd


@pytest.mark.parametrize("host", ["0.0.0.0", "::"])
def test_server_refuses_every_interface_without_allow_remote(user, host):
    user.configure()
    proc = start_fails(user, "--host", host)
    assert proc.returncode == 2 and "Traceback" not in proc.stderr
    assert proc.stderr.startswith("ERROR: Refusing to listen on %s" % host)
    assert "--allow-remote" in proc.stderr and len(proc.stderr.splitlines()) == 1
    assert not os.path.exists(os.path.join(user.pegasus_dir, "em-server.json"))


def test_allow_remote_listens_and_warns(user):
    user.configure()
    d = Daemon(user, ["--host", "0.0.0.0", "--allow-remote"]).start()
    try:
        assert d.url.startswith("http://0.0.0.0:")
        wait_until(lambda: "clear text" in d.errors(), message="the warning on stderr")
        assert d.errors().startswith("WARNING: listening on 0.0.0.0")
        with open(os.path.join(user.pegasus_dir, "em-server.log")) as f:
            assert "clear text" in f.read()
        assert d.cli("ensembles").returncode == 0  # found through em-server.json
    finally:
        d.kill()


def test_localhost_is_loopback(user):
    user.configure()
    d = Daemon(user, ["--host", "localhost"]).start()
    try:
        assert d.request("GET", "/ensembles")[0] == 200 and d.errors() == ""
    finally:
        d.kill()
