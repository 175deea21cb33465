"""Shared by the benchmarks: a real `pegasus-em server` owned by a throwaway user.

The daemon refuses to run as root, so when the benchmark runs as root it
creates a temporary local user (removed afterwards); otherwise it refuses,
because it would use the caller's own ~/.pegasus.
"""

import base64
import contextlib
import http.client
import json
import os
import pwd
import secrets
import shutil
import subprocess
import sys
import tempfile
import time
import urllib.parse

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def _python_for(uid, gid):
    for candidate in (sys.executable, "/usr/local/bin/python3", "/usr/bin/python3"):
        try:
            if subprocess.run([candidate, "-c", "import sys; assert sys.version_info >= (3, 9)"],
                              user=uid, group=gid, extra_groups=[], cwd="/",
                              stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL).returncode == 0:
                return candidate
        except OSError:
            continue
    raise SystemExit("no Python >= 3.9 runnable by an unprivileged user")


@contextlib.contextmanager
def daemon(extra_config="", env_extra=None):
    if os.geteuid() != 0:
        raise SystemExit("benchmarks create a throwaway user for the daemon: run them as root")
    base = tempfile.mkdtemp(prefix="pembench-")
    os.chmod(base, 0o755)
    code = os.path.join(base, "code")
    ignore = shutil.ignore_patterns("__pycache__", "*.pyc")
    shutil.copytree(os.path.join(REPO, "pegasus_em"), os.path.join(code, "pegasus_em"),
                    ignore=ignore)
    shutil.copytree(os.path.join(REPO, "share"), os.path.join(code, "share"), ignore=ignore)
    subprocess.run(["chmod", "-R", "a+rX", base], check=True)
    name = "pemb" + secrets.token_hex(4)
    home = os.path.join(base, "home")
    subprocess.run(["useradd", "-M", "-d", home, "-s", "/bin/sh", name], check=True)
    target = None
    try:
        pw = pwd.getpwnam(name)
        os.makedirs(os.path.join(home, ".pegasus"), mode=0o700)
        password = secrets.token_hex(8)
        with open(os.path.join(home, ".pegasus", "service.py"), "w") as f:
            f.write("USERNAME = %r\nPASSWORD = %r\n%s" % (name, password, extra_config))
        os.chmod(os.path.join(home, ".pegasus", "service.py"), 0o600)
        subprocess.run(["chown", "-R", "%s:%s" % (pw.pw_uid, pw.pw_gid), home], check=True)
        env = {"PATH": os.pathsep.join([os.path.join(code, "share", "pegasus-sim", "bin"),
                                        "/usr/local/bin", "/usr/bin", "/bin"]),
               "PYTHONPATH": code, "LANG": "C.UTF-8", "HOME": home}
        env.update(env_extra or {})
        python = _python_for(pw.pw_uid, pw.pw_gid)
        auth = "Basic " + base64.b64encode(("%s:%s" % (name, password)).encode()).decode()
        target = Target(None, auth, None, home, python, env, pw, code=code)
        target.start()
        yield target
    finally:
        if target is not None and target.proc is not None:
            target.proc.kill()
            target.proc.wait()
        subprocess.run(["pkill", "-KILL", "-u", name], stderr=subprocess.DEVNULL)
        subprocess.run(["userdel", name], stderr=subprocess.DEVNULL)
        shutil.rmtree(base, ignore_errors=True)


class Target:
    """The daemon of the throwaway user, and what a benchmark needs to drive it.

    `start()` / `stop()` (SIGTERM, clean) / `kill()` (SIGKILL, a crash) / `restart()`
    manage the daemon process; a restart keeps the port when it can.  `request()` is a
    small JSON client; `run_as_user()` runs a command as the daemon's user.
    """

    def __init__(self, url, auth, proc, home, python, env, pw, code=None):
        self.url = url
        self.auth = auth
        self.proc = proc
        self.home = home
        self.python = python
        self.env = env
        self.pw = pw
        self.code = code
        self.host = self.port = None
        if url:
            self._parse_url(url)

    def _parse_url(self, url):
        self.url = url
        hostport = url.split("//", 1)[1]
        self.host, port = hostport.rsplit(":", 1)
        self.port = int(port)

    # ---- paths -------------------------------------------------------------

    @property
    def pegasus_dir(self):
        return os.path.join(self.home, ".pegasus")

    @property
    def db_path(self):
        return os.path.join(self.pegasus_dir, "em.db")

    @property
    def sim_bin(self):
        return os.path.join(self.code, "share", "pegasus-sim", "bin")

    @property
    def example_dir(self):
        return os.path.join(self.code, "share", "pegasus-sim", "example")

    # ---- the daemon process ------------------------------------------------

    def start(self, port=None, timeout=30):
        """Start `pegasus-em server` (port 0 = any free one); wait until it serves."""
        endpoint = os.path.join(self.pegasus_dir, "em-server.json")
        proc = subprocess.Popen([self.python, "-m", "pegasus_em", "server", "--port",
                                 str(port or 0)],
                                user=self.pw.pw_uid, group=self.pw.pw_gid, extra_groups=[],
                                cwd=self.home, env=self.env, stdout=subprocess.DEVNULL,
                                stderr=subprocess.DEVNULL)
        self.proc = proc
        deadline = time.monotonic() + timeout
        while True:
            try:
                with open(endpoint) as f:
                    info = json.load(f)
                if info.get("pid") == proc.pid:  # not the file a killed daemon left
                    self._parse_url(info["url"])
                    return self
            except (OSError, ValueError, KeyError):
                pass
            if proc.poll() is not None or time.monotonic() > deadline:
                if proc.poll() is None:
                    proc.kill()
                    proc.wait()
                self.proc = None
                raise DaemonDidNotStart("daemon did not start (exit code %s)" % proc.returncode)
            time.sleep(0.01)

    def stop(self, timeout=30):
        """SIGTERM and wait: the daemon's clean shutdown."""
        if self.proc is None:
            return None
        self.proc.terminate()
        try:
            rc = self.proc.wait(timeout)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            rc = self.proc.wait()
        self.proc = None
        return rc

    def kill(self):
        """SIGKILL: a crash at whatever moment the daemon is in."""
        if self.proc is None:
            return None
        self.proc.kill()
        rc = self.proc.wait()
        self.proc = None
        return rc

    def restart(self, crash=False, timeout=30):
        """Stop (or kill) and start again, on the same port if it is free."""
        port = self.port
        (self.kill if crash else self.stop)()
        try:
            return self.start(port, timeout)
        except DaemonDidNotStart:
            return self.start(0, timeout)  # the old port was not free yet

    # ---- driving it --------------------------------------------------------

    def request(self, method, path, form=None, timeout=60):
        """-> (status, parsed JSON body or text).  A new connection per request."""
        conn = http.client.HTTPConnection(self.host, self.port, timeout=timeout)
        try:
            body = urllib.parse.urlencode(form) if form else None
            headers = {"Authorization": self.auth, "Accept": "application/json"}
            if body:
                headers["Content-Type"] = "application/x-www-form-urlencoded"
            conn.request(method, path, body, headers)
            resp = conn.getresponse()
            data = resp.read().decode("utf-8", "replace")
        finally:
            conn.close()
        try:
            return resp.status, json.loads(data)
        except ValueError:
            return resp.status, data

    def events(self, ensemble, after=0, page=1000):
        """Every event of an ensemble with id > after, paging through ?after=&limit=."""
        out = []
        while True:
            status, rows = self.request("GET", "/ensembles/%s/events?after=%d&limit=%d"
                                        % (ensemble, after, page))
            if status != 200:
                raise RuntimeError("events of %s: %s %s" % (ensemble, status, rows))
            out.extend(rows)
            if len(rows) < page:
                return out
            after = rows[-1]["id"]

    def run_as_user(self, argv, cwd=None, env=None, timeout=120, input=None):
        """Run argv as the daemon's user with its environment -> CompletedProcess."""
        return subprocess.run(argv, user=self.pw.pw_uid, group=self.pw.pw_gid, extra_groups=[],
                              cwd=cwd or self.home, env=env or self.env, input=input,
                              stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                              timeout=timeout)

    def pam_auth(self):
        """Give the user a random login password (for pegasus-service's PAM); -> the
        Basic authorization header with it."""
        password = "Bench-%s-1x" % os.urandom(4).hex()
        subprocess.run(["chpasswd"], input="%s:%s\n" % (self.pw.pw_name, password), text=True,
                       check=True)
        token = base64.b64encode(("%s:%s" % (self.pw.pw_name, password)).encode()).decode()
        return "Basic " + token

    def copy_example(self, dest):
        """A copy of the simulator's example (plan.sh + workflow.yml) owned by the user."""
        os.makedirs(dest, exist_ok=True)
        for name in os.listdir(self.example_dir):
            shutil.copy2(os.path.join(self.example_dir, name), os.path.join(dest, name))
        for root, _dirs, files in os.walk(dest):
            os.chown(root, self.pw.pw_uid, self.pw.pw_gid)
            for name in files:
                os.chown(os.path.join(root, name), self.pw.pw_uid, self.pw.pw_gid)
        top = dest
        while os.path.dirname(top).startswith(self.home) and os.path.dirname(top) != self.home:
            top = os.path.dirname(top)
            os.chown(top, self.pw.pw_uid, self.pw.pw_gid)
        return dest

    # ---- measuring it ------------------------------------------------------

    def rss_mb(self):
        with open("/proc/%d/status" % self.proc.pid) as f:
            for line in f:
                if line.startswith("VmRSS:"):
                    return int(line.split()[1]) / 1024.0
        return None

    def cpu_seconds(self):
        with open("/proc/%d/stat" % self.proc.pid) as f:
            fields = f.read().rsplit(")", 1)[1].split()
        return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


class DaemonDidNotStart(SystemExit):
    pass
