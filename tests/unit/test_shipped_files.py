"""The shipped httpd configuration, .wsgi file and systemd units: the placeholders,
settings and options they must hold.  The .wsgi file served:
tests/integration/test_service_wsgi.py."""

import os
import re
import shutil
import subprocess

from conftest import REPO

WSGI_FILE = os.path.join(REPO, "share", "pegasus", "service", "pegasus-service.wsgi")
HTTPD_CONF = os.path.join(REPO, "share", "pegasus", "service", "pegasus-service-httpd.conf")
UNITS = os.path.join(REPO, "share", "systemd")
PLACEHOLDERS = {"PEGASUS_PYTHON_EXTERNALS", "HOSTNAME", "DOCUMENT_ROOT", "USER_NAME",
                "GROUP_NAME", "PATH_TO_PEGASUS_SERVICE_WSGI_FILE", "PATH_TO_SSL_CERT",
                "PATH_TO_SSL_KEY"}


def test_httpd_conf_has_exactly_the_documented_placeholders():
    lines = [line for line in open(HTTPD_CONF) if not line.lstrip().startswith("#")]
    found = set(re.findall(r"(?<![\w%{])[A-Z][A-Z_]{2,}(?![\w}])", "".join(lines)))
    assert found == PLACEHOLDERS
    text = "".join(lines)
    assert "WSGIPassAuthorization On" in text
    assert re.search(r"SSLProtocol\s+-all \+TLSv1\.2 \+TLSv1\.3", text)


def test_wsgi_file_exposes_the_documented_settings():
    text = open(WSGI_FILE).read()
    for name in ("AUTHENTICATION", "PROCESS_SWITCHING", "ADMIN_USERS"):
        assert re.search(r"^%s = " % name, text, re.M), name
    assert re.search(r"^application = ", text, re.M)


def test_systemd_units():
    service = open(os.path.join(UNITS, "pegasus-service.service")).read()
    for option in ("ExecStart=/usr/local/bin/pegasus-service", "NoNewPrivileges=yes",
                   "ProtectSystem=", "CapabilityBoundingSet=CAP_SETUID CAP_SETGID",
                   "RestrictNamespaces=yes", "SystemCallFilter=", "WantedBy=multi-user.target"):
        assert option in service, option
    em = open(os.path.join(UNITS, "pegasus-em.service")).read()
    for option in ("ExecStart=/usr/local/bin/pegasus-em server", "KillMode=process",
                   "NoNewPrivileges=yes", "WantedBy=default.target"):
        assert option in em, option
    if shutil.which("systemd-analyze") is None:
        return
    for name, flags in (("pegasus-service.service", []), ("pegasus-em.service", ["--user"])):
        result = subprocess.run(["systemd-analyze"] + flags + ["verify",
                                                              os.path.join(UNITS, name)],
                                stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                                timeout=60)
        problems = [line for line in result.stdout.splitlines()
                    if name in line and "is not executable" not in line
                    and "Command 'man" not in line]
        assert not problems, problems
