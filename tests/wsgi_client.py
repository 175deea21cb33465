"""The ensemble manager's REST API called in this process, as the daemon's HTTP server
calls it: a WSGI environ built from a request, the app called, its answer collected.

For tests about what the API answers; what only a real daemon shows (sockets, the
HTTP server, the process, its settings) is tested against one in tests/integration.
"""

import base64
import http.client
import io
import json
import os
import sys
import urllib.parse

from pegasus_em.core import db as dbmod
from pegasus_em.em.api import App
from pegasus_em.web.auth import BasicAuth
from pegasus_em.core.ops import Ops

URL = "http://127.0.0.1:7919"  # what the daemon would set as the app's base_url


def call(app, method, path, body=b"", headers=None, url=URL):
    """(status, headers, body bytes) of one request to the WSGI `app`."""
    path, _, query = path.partition("?")
    parsed = urllib.parse.urlsplit(url)
    environ = {
        "REQUEST_METHOD": method, "SCRIPT_NAME": "",
        "PATH_INFO": urllib.parse.unquote(path, "latin-1"), "QUERY_STRING": query,
        "SERVER_NAME": parsed.hostname, "SERVER_PORT": str(parsed.port),
        "SERVER_PROTOCOL": "HTTP/1.1", "REMOTE_ADDR": "127.0.0.1",
        "CONTENT_TYPE": "", "CONTENT_LENGTH": str(len(body)) if body else "",
        "HTTP_HOST": parsed.netloc, "wsgi.version": (1, 0), "wsgi.url_scheme": parsed.scheme,
        "wsgi.input": io.BytesIO(body), "wsgi.errors": sys.stderr,
        "wsgi.multithread": True, "wsgi.multiprocess": False, "wsgi.run_once": False,
    }
    for key, value in (headers or {}).items():
        key = key.upper().replace("-", "_")
        environ[key if key in ("CONTENT_TYPE", "CONTENT_LENGTH") else "HTTP_" + key] = value
    started = []
    chunks = app(environ, lambda status, hdrs, exc_info=None: started.append((status, hdrs)))
    try:
        data = b"".join(chunks)
    finally:
        if hasattr(chunks, "close"):
            chunks.close()
    status, hdrs = started[0]
    message = http.client.HTTPMessage()
    for key, value in hdrs:
        message[key] = value
    return int(status.split()[0]), message, data


def answer(app, method, path, body=b"", headers=None, url=URL):
    """(status, headers, parsed JSON or text) of one request to the WSGI `app`."""
    status, headers, body = call(app, method, path, body, headers, url)
    if headers.get("Content-Type", "").startswith("application/json") and body:
        return status, headers, json.loads(body)
    return status, headers, body.decode("utf-8", "replace")


class InProcessAPI:
    """The daemon's App and Ops over a real em.db in `base`; `request` answers as
    `conftest.Daemon.request` does."""

    def __init__(self, base, user="alice", password="pw-" + os.urandom(4).hex(), **ops):
        self.base = str(base)
        self.ensembles = os.path.join(self.base, "ensembles")
        os.makedirs(self.ensembles, exist_ok=True)
        self.db = dbmod.open_database(os.path.join(self.base, "em.db"))
        self.ops = Ops(self.db, self.ensembles, **ops)
        self.user, self.password = user, password
        self.url = URL
        self.app = App(self.ops, BasicAuth(user, password).authenticate, base_url=URL)

    def close(self):
        self.db.close()

    def request(self, method, path, data=None, headers=None, auth=True, raw_body=None):
        """(status, headers, parsed JSON or text)."""
        hdrs = {"Accept": "application/json"}
        if auth:
            token = base64.b64encode(("%s:%s" % (self.user, self.password)).encode())
            hdrs["Authorization"] = "Basic " + token.decode()
        hdrs.update(headers or {})
        body = raw_body or b""
        if data is not None:
            body = urllib.parse.urlencode(data).encode()
        if body:  # as urllib, which the daemon's tests use
            hdrs.setdefault("Content-Type", "application/x-www-form-urlencoded")
        return answer(self.app, method, path, body, hdrs)
