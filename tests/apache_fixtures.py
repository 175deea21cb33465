"""A throwaway Apache HTTPD (mod_ssl + mod_wsgi) that serves pegasus-service the way
Pegasus documents it: the shipped .wsgi file copied to a directory of its own with
its settings set, and the shipped httpd site configuration with its placeholders
replaced.  The instance has its own main configuration (what a distribution's
apache2.conf, ports.conf and mods-enabled/ give), ServerRoot, run directory, pid
file and loopback port, so the system's Apache is never touched."""

import grp
import os
import pwd
import re
import shutil
import socket
import subprocess
import tempfile

import pytest

from conftest import REPO, wait_until
from service_fixtures import Service

SERVICE_DIR = os.path.join(REPO, "share", "pegasus", "service")
WSGI_FILE = os.path.join(SERVICE_DIR, "pegasus-service.wsgi")
HTTPD_CONF = os.path.join(SERVICE_DIR, "pegasus-service-httpd.conf")
MODULE_DIR = "/usr/lib/apache2/modules"  # Debian's layout, which the test knows
MODULES = ("mpm_event", "authn_core", "authz_core", "authz_user", "auth_basic", "authn_file",
           "ssl", "wsgi")
INSTALL = "apt-get install apache2 libapache2-mod-wsgi-py3 (.ci/run tries this)"


def find_apache():
    """(httpd binary, module directory); skips the test, naming what is missing."""
    path = os.pathsep.join([os.environ.get("PATH", ""), "/usr/sbin", "/sbin"])
    binary = shutil.which("apache2", path=path)
    if binary is None:
        pytest.skip("Debian's Apache HTTPD (apache2) is not installed: " + INSTALL)
    missing = [m for m in MODULES if not os.path.exists(os.path.join(MODULE_DIR, "mod_%s.so" % m))]
    if missing:
        pytest.skip("Apache HTTPD lacks mod_%s: %s" % (", mod_".join(missing), INSTALL))
    return binary, MODULE_DIR


def install_wsgi(directory, **settings):
    """Step 1: copy pegasus-service.wsgi to a directory of its own and set its settings
    (a setting the file does not list is added, as Pegasus lets one)."""
    os.makedirs(directory, mode=0o755, exist_ok=True)
    text = open(WSGI_FILE).read()
    for name, value in settings.items():
        line = "%s = %r" % (name, value)
        text, found = re.subn(r"^%s = .*$" % name, line, text, flags=re.M)
        if not found:
            text = text.replace("\n#\n# Start Pegasus Service", "\n%s\n\n#\n# Start Pegasus "
                                "Service" % line, 1)
    path = os.path.join(directory, "pegasus-service.wsgi")
    with open(path, "w") as f:
        f.write(text)
    os.chmod(path, 0o644)
    return path


def site_conf(values, port, apache_auth=False):
    """Step 2: the httpd site configuration with each placeholder replaced by `values`;
    the one other change is the port (443 is the system's).  `apache_auth` turns on
    the documented <Location /> block (Apache authenticates)."""
    text = open(HTTPD_CONF).read()
    for name, value in values.items():
        text = re.sub(r"(?<![\w%%{])%s(?![\w}])" % name, lambda _: value, text)
    text, found = re.subn(r"<VirtualHost \*:443>", "<VirtualHost *:%d>" % port, text)
    assert found == 1
    if apache_auth:
        block = re.search(r"^ *#<Location />\n(?: *#.*\n)*? *#</Location>\n", text, re.M)
        text = text.replace(block.group(0), re.sub(r"^( *)#", r"\1", block.group(0),
                                                   flags=re.M))
    assert not re.search(r"^[^#]*\b(USER_NAME|GROUP_NAME|HOSTNAME|DOCUMENT_ROOT|PATH_TO_\w+|"
                         r"PEGASUS_PYTHON_EXTERNALS)\b", text, re.M), "placeholder left"
    return text


class Apache:
    """One Apache instance in `base`, serving `site` (a site_conf text)."""

    def __init__(self, base, site_text, port):
        self.binary, self.modules = find_apache()
        self.dir = tempfile.mkdtemp(prefix="apache-", dir=base)
        os.chmod(self.dir, 0o755)
        self.port = port
        self.site = os.path.join(self.dir, "pegasus-service.conf")
        with open(self.site, "w") as f:
            f.write(site_text)
        self.conf = os.path.join(self.dir, "httpd.conf")
        self.log = os.path.join(self.dir, "error.log")
        with open(self.conf, "w") as f:
            f.write(self.main_conf())
        self.proc = None

    def main_conf(self):
        """What the distribution's own files would hold, then the site; the socket prefix
        is set again after it (the last one wins) so that the sockets of this instance
        stay in its run directory."""
        nobody = pwd.getpwnam("nobody")
        lines = ["ServerRoot %s" % self.dir, "DefaultRuntimeDir %s" % self.dir,
                 "PidFile %s/httpd.pid" % self.dir, "Mutex file:%s default" % self.dir,
                 "ErrorLog %s" % self.log, "Listen 127.0.0.1:%d" % self.port,
                 "User nobody", "Group %s" % grp.getgrgid(nobody.pw_gid).gr_name,
                 "ServerName localhost", "Timeout 60"]
        lines += ["LoadModule %s_module %s/mod_%s.so" % (m, self.modules, m) for m in MODULES]
        lines += ["Include %s" % self.site, "WSGISocketPrefix %s/wsgi" % self.dir]
        return "\n".join(lines) + "\n"

    def check(self):
        """`httpd -t`: (exit code, output)."""
        result = subprocess.run([self.binary, "-f", self.conf, "-t"], env=_env(),
                                stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                                timeout=60)
        return result.returncode, result.stdout

    def start(self, timeout=30):
        self.out = tempfile.TemporaryFile()
        self.proc = subprocess.Popen([self.binary, "-f", self.conf, "-DFOREGROUND"], env=_env(),
                                     stdout=self.out, stderr=subprocess.STDOUT)
        wait_until(lambda: self.proc.poll() is not None or _accepts(self.port), timeout,
                   message="Apache to listen on port %d" % self.port)
        if self.proc.poll() is not None:
            raise AssertionError("Apache exited %s: %s" % (self.proc.returncode, self.errors()))
        return self

    stop = Service.stop  # TERM (Apache's own stop), then KILL after a while

    def errors(self):
        self.out.seek(0)
        text = self.out.read().decode("utf-8", "replace")
        if os.path.exists(self.log):
            with open(self.log, errors="replace") as f:
                text += f.read()
        return text[-6000:]


def start_apache(base, make_site, attempts=5):
    """An Apache started on a free loopback port: `make_site(port)` gives its site text.
    A port taken between choosing and binding is replaced by another."""
    for attempt in range(attempts):
        port = free_port()
        apache = Apache(base, make_site(port), port)
        try:
            return apache.start()
        except AssertionError:
            if attempt == attempts - 1 or "in use" not in apache.errors():
                raise


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _accepts(port):
    try:
        socket.create_connection(("127.0.0.1", port), timeout=1).close()
        return True
    except OSError:
        return False


def _env():
    """Apache's environment: nothing of the test's (no PEGASUS_ENV, no PYTHONPATH)."""
    return {"PATH": "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin",
            "LANG": "C.UTF-8"}
