"""Shared by the benchmarks: a real `pegasus-em server` owned by a throwaway user.

The daemon refuses to run as root, so when the benchmark runs as root it
creates a temporary local user (removed afterwards); otherwise it refuses,
because it would use the caller's own ~/.pegasus.
"""

import base64
import contextlib
import json
import os
import pwd
import secrets
import shutil
import subprocess
import sys
import tempfile
import time

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
    proc = None
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
        proc = subprocess.Popen([python, "-m", "pegasus_em", "server", "--port", "0"],
                                user=pw.pw_uid, group=pw.pw_gid, extra_groups=[], cwd=home,
                                env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        endpoint = os.path.join(home, ".pegasus", "em-server.json")
        deadline = time.monotonic() + 30
        while True:
            try:
                with open(endpoint) as f:
                    url = json.load(f)["url"]
                break
            except (OSError, ValueError, KeyError):
                if proc.poll() is not None or time.monotonic() > deadline:
                    raise SystemExit("daemon did not start")
                time.sleep(0.02)
        auth = "Basic " + base64.b64encode(("%s:%s" % (name, password)).encode()).decode()
        yield Target(url, auth, proc, home, python, env, pw)
    finally:
        if proc is not None:
            proc.kill()
            proc.wait()
        subprocess.run(["pkill", "-KILL", "-u", name], stderr=subprocess.DEVNULL)
        subprocess.run(["userdel", name], stderr=subprocess.DEVNULL)
        shutil.rmtree(base, ignore_errors=True)


class Target:
    def __init__(self, url, auth, proc, home, python, env, pw):
        self.url = url
        self.auth = auth
        self.proc = proc
        self.home = home
        self.python = python
        self.env = env
        self.pw = pw
        hostport = url.split("//", 1)[1]
        self.host, port = hostport.rsplit(":", 1)
        self.port = int(port)

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
