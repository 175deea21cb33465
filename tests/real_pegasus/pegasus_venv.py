"""Pegasus's own Python tools (pegasus-wms 5.1.3) in a cached throwaway venv: the test oracle.

`python3 tests/real_pegasus/pegasus_venv.py` builds it (CI runs this before the
tests); the test fixtures call `ensure()`, which builds it on first use.  The venv
is made from /usr/bin/python3 with `--no-deps` and a minimal pinned set
(pegasus-facts.md §8), into a cache directory keyed by those pins, and made
readable by every user so that throwaway test users can run the tools.
The wheel ships no console scripts: a tool runs as `python .../Pegasus/cli/pegasus-<tool>.py`.
"""

import fcntl
import hashlib
import os
import shutil
import subprocess
import sys

REQUIREMENTS = ("pegasus-wms==5.1.3", "pegasus-wms.common==5.1.3", "Flask==2.2.5", "Werkzeug==3.0.6",
                "Jinja2==3.1.6", "itsdangerous==2.2.0", "click==8.5.1", "MarkupSafe==3.0.4",
                "Flask-Caching==2.4.1", "cachelib==0.17.0", "requests==2.34.2", "urllib3==2.8.0",
                "idna==3.20", "charset-normalizer==3.5.3", "certifi==2026.10.19.post1", "SQLAlchemy==1.3.24",
                "pamela==1.0.0", "PyYAML==6.0.4")
BASE_PYTHON = "/usr/bin/python3"
DONE = "pegasus-em-venv-ready"


def cache_root():
    """$PEGASUS_EM_TEST_CACHE, else /var/cache/pegasus-em-tests for root, else ~/.cache/pegasus-em-tests."""
    if os.environ.get("PEGASUS_EM_TEST_CACHE"):
        return os.environ["PEGASUS_EM_TEST_CACHE"]
    if os.geteuid() == 0:
        return "/var/cache/pegasus-em-tests"
    return os.path.join(os.path.expanduser("~"), ".cache", "pegasus-em-tests")


def venv_dir():
    key = hashlib.sha256("\n".join(REQUIREMENTS + (BASE_PYTHON,)).encode()).hexdigest()[:12]
    return os.path.join(cache_root(), "pegasus-wms-5.1.3-" + key)


def site_packages(venv):
    """The venv's site-packages (the one holding Pegasus/), or None."""
    lib = os.path.join(venv, "lib")
    for name in sorted(os.listdir(lib)) if os.path.isdir(lib) else ():
        path = os.path.join(lib, name, "site-packages")
        if os.path.isdir(os.path.join(path, "Pegasus", "cli")):
            return path
    return None


def ready(venv):
    return os.path.exists(os.path.join(venv, DONE)) and site_packages(venv) is not None


def ensure():
    """(venv path, None) when the tools are installed, else (None, why not)."""
    venv = venv_dir()
    if ready(venv):
        return venv, None
    if not os.access(BASE_PYTHON, os.X_OK):
        return None, "%s is missing: the venv must be readable and runnable by every test user" % BASE_PYTHON
    os.makedirs(cache_root(), mode=0o755, exist_ok=True)
    with open(os.path.join(cache_root(), ".lock"), "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)  # other test runs on this machine build the same venv
        if ready(venv):
            return venv, None
        return _build(venv)


def _build(venv):
    tmp = "%s.tmp.%d" % (venv, os.getpid())
    shutil.rmtree(tmp, ignore_errors=True)
    try:
        subprocess.run([BASE_PYTHON, "-m", "venv", tmp], check=True, stdout=subprocess.PIPE,
                       stderr=subprocess.STDOUT)
        pip = subprocess.run([os.path.join(tmp, "bin", "python"), "-m", "pip", "install", "--quiet",
                              "--no-deps", "--disable-pip-version-check", "--timeout", "30", "--retries", "2"]
                             + list(REQUIREMENTS), stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                             universal_newlines=True)
    except (OSError, subprocess.CalledProcessError) as e:
        shutil.rmtree(tmp, ignore_errors=True)
        return None, "could not create a venv with %s -m venv: %s" % (BASE_PYTHON, e)
    if pip.returncode != 0:
        shutil.rmtree(tmp, ignore_errors=True)
        tail = " | ".join(l for l in pip.stdout.splitlines()[-4:] if l.strip())
        return None, "pip could not install %s from the package index: %s" % (REQUIREMENTS[0], tail)
    _write_tools(tmp, venv)
    _open_to_all(tmp)
    with open(os.path.join(tmp, DONE), "w") as f:
        f.write("\n".join(REQUIREMENTS) + "\n")
    os.chmod(os.path.join(tmp, DONE), 0o644)
    os.rename(tmp, venv)  # a venv runs from anywhere through bin/python; pip's own shebangs are not used
    return venv, None


def tools_dir(venv):
    """Where the venv keeps one `pegasus-<tool>` command per CLI, like a Pegasus bin dir."""
    return os.path.join(venv, "pegasus-bin")


def _write_tools(tmp, venv):
    """`pegasus-bin/pegasus-<tool>` wrappers, naming the venv's final path (it is renamed there)."""
    site = site_packages(tmp)
    final_site = os.path.join(venv, os.path.relpath(site, tmp))
    os.mkdir(tools_dir(tmp))
    for name in os.listdir(os.path.join(site, "Pegasus", "cli")):
        if name.startswith("pegasus-") and name.endswith(".py"):
            path = os.path.join(tools_dir(tmp), name[:-3])
            with open(path, "w") as f:
                f.write('#!/bin/sh\nexec %s %s "$@"\n' % (os.path.join(venv, "bin", "python"),
                                                         os.path.join(final_site, "Pegasus", "cli", name)))
            os.chmod(path, 0o755)


def _open_to_all(top):
    """Throwaway test users run these files: directories a+rx, files a+r."""
    for root, dirs, files in os.walk(top):
        os.chmod(root, 0o755)
        for name in files:
            path = os.path.join(root, name)
            if not os.path.islink(path):
                os.chmod(path, os.stat(path).st_mode | 0o444)


if __name__ == "__main__":
    path, why = ensure()
    print(path if path else "pegasus-wms not installed: %s" % why)
    sys.exit(0 if path else 1)
