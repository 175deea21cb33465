"""Fixtures: throwaway users, real daemon processes, polling with deadlines.

pegasus-em refuses to run as root, and finds its files through the password
database, so every daemon test gets a fresh local user with its own home.
That needs root (CI and the development machines run as root); elsewhere the
daemon tests are skipped with that reason.
"""

import base64
import contextlib
import json
import os
import pwd
import secrets
import shutil
import signal
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.parse
import urllib.request

import pytest

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
SIM_BIN = os.path.join(REPO, "share", "pegasus-sim", "bin")
PASSWORD = "s3cret-" + secrets.token_hex(4)


def wait_until(predicate, timeout=10.0, interval=0.01, message="condition"):
    """Poll `predicate` until it returns a true value; fail after `timeout` seconds."""
    deadline = time.monotonic() + timeout
    while True:
        value = predicate()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError("timed out after %.1fs waiting for %s" % (timeout, message))
        time.sleep(interval)


class Clock:
    """A wall clock the test sets (`clock.t = ...`)."""

    def __init__(self, t):
        self.t = t

    def __call__(self):
        return self.t


@pytest.fixture(scope="session")
def sandbox():
    """A world-traversable directory with a copy of the code the test users run."""
    if os.geteuid() != 0:
        pytest.skip("daemon tests create throwaway local users: run them as root")
    base = tempfile.mkdtemp(prefix="pemtest-")
    os.chmod(base, 0o755)
    code = os.path.join(base, "code")
    ignore = shutil.ignore_patterns("__pycache__", "*.pyc")
    shutil.copytree(os.path.join(REPO, "pegasus_em"), os.path.join(code, "pegasus_em"),
                    ignore=ignore)
    if os.path.isdir(os.path.join(REPO, "share")):
        shutil.copytree(os.path.join(REPO, "share"), os.path.join(code, "share"), ignore=ignore)
    for root, dirs, files in os.walk(base):
        for name in dirs:
            os.chmod(os.path.join(root, name), 0o755)
        for name in files:
            path = os.path.join(root, name)
            os.chmod(path, 0o755 if os.access(path, os.X_OK) else 0o644)
    yield Sandbox(base, code)
    shutil.rmtree(base, ignore_errors=True)


class Sandbox:
    def __init__(self, base, code):
        self.base = base
        self.code = code
        self.sim_bin = os.path.join(code, "share", "pegasus-sim", "bin")
        self._python = None

    def python_for(self, user):
        """The first Python >= 3.9 that an unprivileged user can execute."""
        if self._python is None:
            for candidate in (sys.executable, "/usr/local/bin/python3", "/usr/bin/python3"):
                if candidate and _runs_as(user, [candidate, "-c",
                                                 "import sys; assert sys.version_info >= (3, 9)"]):
                    self._python = candidate
                    break
            else:
                pytest.skip("no Python >= 3.9 executable by an unprivileged user")
        return self._python


def _runs_as(user, argv):
    try:
        return subprocess.run(argv, user=user.uid, group=user.gid, extra_groups=[],
                              stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                              cwd="/", timeout=30).returncode == 0
    except OSError:
        return False


class User:
    def __init__(self, name, home, sandbox):
        pw = pwd.getpwnam(name)
        self.name = name
        self.uid = pw.pw_uid
        self.gid = pw.pw_gid
        self.home = home
        self.pegasus_dir = os.path.join(home, ".pegasus")
        self.sandbox = sandbox
        self.python = sandbox.python_for(self)

    def env(self, **extra):
        path = os.pathsep.join([self.sandbox.sim_bin, "/usr/local/bin", "/usr/bin", "/bin"])
        env = {"PATH": path, "PYTHONPATH": self.sandbox.code, "LANG": "C.UTF-8",
               "HOME": self.home, "USER": self.name, "LOGNAME": self.name,
               "PYTHONDONTWRITEBYTECODE": "1"}
        env.update(extra)
        return env

    def popen(self, argv, cwd=None, env=None, **kwargs):
        return subprocess.Popen(argv, user=self.uid, group=self.gid, extra_groups=[],
                                cwd=cwd or self.home, env=env or self.env(), **kwargs)

    def run(self, argv, cwd=None, env=None, input=None, timeout=60):
        return subprocess.run(argv, user=self.uid, group=self.gid, extra_groups=[],
                              cwd=cwd or self.home, env=env or self.env(), input=input,
                              stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                              timeout=timeout)

    def write(self, relpath, text, mode=0o600):
        path = os.path.join(self.home, relpath)
        os.makedirs(os.path.dirname(path), exist_ok=True)
        with open(path, "w") as f:
            f.write(text)
        os.chmod(path, mode)
        for p in _parents(path, self.home):
            os.chown(p, self.uid, self.gid)
        return path

    def configure(self, password=PASSWORD, extra=""):
        self.password = password
        os.makedirs(self.pegasus_dir, mode=0o700, exist_ok=True)
        os.chown(self.pegasus_dir, self.uid, self.gid)
        return self.write(".pegasus/service.py", "USERNAME = %r\nPASSWORD = %r\n%s"
                          % (self.name, password, extra))


def _parents(path, top):
    out = [path]
    while path != top:
        path = os.path.dirname(path)
        out.append(path)
    return out


@contextlib.contextmanager
def throwaway_user(sandbox):
    name = "pem" + secrets.token_hex(5)
    home = os.path.join(sandbox.base, "home-" + name)
    subprocess.run(["useradd", "-M", "-d", home, "-s", "/bin/sh", name], check=True,
                   stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    try:
        os.makedirs(home, mode=0o755)
        u = User(name, home, sandbox)
        os.chown(home, u.uid, u.gid)
        yield u
    finally:
        subprocess.run(["pkill", "-KILL", "-u", name], stdout=subprocess.DEVNULL,
                       stderr=subprocess.DEVNULL)
        subprocess.run(["userdel", name], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        shutil.rmtree(home, ignore_errors=True)


@pytest.fixture
def user(sandbox):
    with throwaway_user(sandbox) as u:
        yield u


@pytest.fixture(scope="module")
def module_user(sandbox):
    with throwaway_user(sandbox) as u:
        yield u


class Daemon:
    """A real `pegasus-em server` process owned by a test user."""

    def __init__(self, user, args=(), env=None, prefix=()):
        self.user = user
        self.args = list(args)
        self.env = env
        self.prefix = list(prefix)  # e.g. prlimit: run the daemon under it
        self.proc = None
        self.url = None
        self.endpoint = os.path.join(user.pegasus_dir, "em-server.json")

    def start(self, timeout=15):
        if os.path.exists(self.endpoint):
            os.unlink(self.endpoint)
        self.stderr = tempfile.TemporaryFile()
        self.proc = self.user.popen(self.prefix + [self.user.python, "-m", "pegasus_em",
                                                   "server", "--port", "0"] + self.args,
                                    env=self.env,
                                    stdout=subprocess.DEVNULL, stderr=self.stderr)
        wait_until(lambda: self._published() or self.proc.poll() is not None, timeout,
                   message="daemon to publish its endpoint")
        if self.proc.poll() is not None:
            raise AssertionError("daemon exited with %s: %s" % (self.proc.returncode,
                                                                 self.errors()))
        return self

    def _published(self):
        try:
            with open(self.endpoint) as f:
                info = json.load(f)
        except (OSError, ValueError):
            return False
        if info.get("pid") != self.proc.pid:
            return False
        self.url = info["url"]
        return True

    def errors(self):
        self.stderr.seek(0)
        return self.stderr.read().decode("utf-8", "replace")

    def stop(self, sig=signal.SIGTERM, timeout=15):
        if self.proc and self.proc.poll() is None:
            self.proc.send_signal(sig)
            self.proc.wait(timeout)
        return self.proc.returncode

    def kill(self):
        return self.stop(signal.SIGKILL)

    def request(self, method, path, data=None, headers=None, auth=True, raw_body=None):
        """(status, headers, parsed JSON or text) over a fresh connection."""
        hdrs = {"Accept": "application/json"}
        if auth:
            token = base64.b64encode(("%s:%s" % (self.user.name, self.user.password)).encode())
            hdrs["Authorization"] = "Basic " + token.decode()
        hdrs.update(headers or {})
        body = raw_body
        if data is not None:
            body = urllib.parse.urlencode(data).encode()
            hdrs.setdefault("Content-Type", "application/x-www-form-urlencoded")
        req = urllib.request.Request(self.url + path, data=body, method=method, headers=hdrs)
        try:
            with urllib.request.urlopen(req, timeout=30) as resp:
                return resp.status, resp.headers, _decode(resp)
        except urllib.error.HTTPError as e:
            return e.code, e.headers, _decode(e)

    def cli(self, *args, cwd=None, env=None, input=None):
        return self.user.run([self.user.python, "-m", "pegasus_em"] + list(args), cwd=cwd,
                             env=env, input=input)


def _decode(resp):
    data = resp.read()
    if resp.headers.get("Content-Type", "").startswith("application/json") and data:
        return json.loads(data)
    return data.decode("utf-8", "replace")


@pytest.fixture
def daemon(user):
    user.configure()
    d = Daemon(user).start()
    yield d
    d.kill()


@pytest.fixture(scope="module")
def shared_daemon(module_user):
    """One daemon for a whole module of tests that only add uniquely named things."""
    module_user.configure()
    d = Daemon(module_user).start()
    yield d
    d.kill()


_counter = [0]


def unique(prefix="e"):
    _counter[0] += 1
    return "%s%d_%s" % (prefix, _counter[0], secrets.token_hex(3))
