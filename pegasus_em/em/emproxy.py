"""Ensemble-manager requests of pegasus-service, passed to the user's own
`pegasus-em server`.

Why forward rather than open the user's em.db here: the daemon is the one
process that plans and runs that user's workflows; going through it keeps one
writer, wakes its engine at once (a freed slot is used immediately, a new
workflow is planned without waiting for EM_INTERVAL) and reuses every rule of
its API unchanged.  Its address (~/.pegasus/em-server.json) and credentials
(USERNAME/PASSWORD in ~/.pegasus/service.py) are readable only by the user, so
this runs in a process of that user.  With no daemon running the answer is
503, saying how to start one.

The daemon's links start with its own address (never the Host it was asked
for); we put the service's public base URL in its place in the answer.
"""

import base64
import http.client
import json
import logging
import os
import threading
import urllib.parse

from .. import config
from .client import read_endpoint, require_own_listener
from ..errors import ClientError, ConfigError, EMError

log = logging.getLogger(__name__)

TIMEOUT = 330  # seconds; `analyze` runs pegasus-analyzer, which the daemon allows 300
_PASSED_HEADERS = ("content-type", "location", "allow", "retry-after")


class Unavailable(EMError):
    status = 503


class BadGateway(EMError):
    status = 502


class EMProxy:
    def __init__(self, timeout=TIMEOUT):
        self.timeout = timeout
        self._local = threading.local()
        self._credentials = {}  # service.py path -> ((mtime, size), header)
        self._lock = threading.Lock()

    def forward(self, home, user, method, em_path, query, headers, body, public_base):
        """(status, headers, body) of the daemon's answer, links rewritten to `public_base`."""
        pegasus_dir = os.path.join(home, ".pegasus")
        auth = self.credentials(os.path.join(pegasus_dir, "service.py"), user)
        url = read_endpoint(os.path.join(pegasus_dir, "em-server.json"))
        if not url:
            raise Unavailable("%s's ensemble manager is not running; %s can start it with: "
                              "pegasus-em server" % (user, user))
        target = em_path + ("?" + query if query else "")
        send = {"Authorization": auth,
                "Accept": headers.get("accept") or "application/json"}
        if body or method in ("POST", "PUT"):
            send["Content-Type"] = headers.get("content-type") or \
                "application/x-www-form-urlencoded"
        status, answer_headers, data = self._exchange(url, method, target, body, send)
        if status == 401:
            raise BadGateway("%s's pegasus-em server refused the USERNAME and PASSWORD of "
                             "%s/service.py; restart it after changing them" % (user, pegasus_dir))
        return (status, self._headers(answer_headers, url, public_base),
                _rewrite(data, url, public_base))

    @staticmethod
    def running(home):
        """Whether the user's daemon is up: True, False, or None when this process cannot
        tell (the endpoint file belongs to someone else: only its owner can check it)."""
        path = os.path.join(home, ".pegasus", "em-server.json")
        try:
            if os.stat(path).st_uid != os.geteuid():
                return None
        except FileNotFoundError:
            return False
        except OSError:
            return None
        return read_endpoint(path) is not None

    def credentials(self, path, user):
        """The Basic header for the user's daemon, from their service.py (re-read on change).

        The file is Python; it is executed only when it belongs to the user this
        process runs as, so a service running as someone else never runs it."""
        try:
            st = os.stat(path)
        except FileNotFoundError:
            raise Unavailable("%s has no %s; %s can create it with: pegasus-em init"
                              % (user, path, user))
        except OSError as e:
            raise Unavailable("cannot read %s: %s" % (path, e.strerror))
        if st.st_uid != os.geteuid():
            raise Unavailable("cannot act on %s's ensembles from a process that is not %s: "
                              "enable PROCESS_SWITCHING (and run pegasus-service as root)"
                              % (user, user))
        stamp = (st.st_mtime_ns, st.st_size)
        with self._lock:
            cached = self._credentials.get(path)
        if cached and cached[0] == stamp:
            return cached[1]
        try:
            cfg = config.load(path)
        except ConfigError as e:
            raise Unavailable("%s's configuration cannot be used: %s" % (user, e.message))
        if not cfg["USERNAME"] or not cfg["PASSWORD"]:
            raise Unavailable("%s sets no USERNAME and PASSWORD for the ensemble manager"
                              % path)
        token = base64.b64encode(("%s:%s" % (cfg["USERNAME"], cfg["PASSWORD"])).encode("utf-8"))
        header = "Basic " + token.decode("ascii")
        with self._lock:
            self._credentials[path] = (stamp, header)
        return header

    def _exchange(self, url, method, target, body, headers):
        """One request on this thread's keep-alive connection; a connection the daemon
        closed while idle is replaced once (nothing was sent on it, so nothing repeats)."""
        for attempt in (0, 1):
            conn, reused = self._connection(url)
            try:
                conn.request(method, target, body=body or None, headers=headers)
                resp = conn.getresponse()
                data = resp.read()
                if resp.will_close:
                    self._drop(url)
                return resp.status, resp.getheaders(), data
            except (http.client.RemoteDisconnected, BrokenPipeError, ConnectionResetError):
                self._drop(url)
                if attempt or not reused:
                    raise BadGateway("the ensemble manager at %s closed the connection" % url)
            except (OSError, http.client.HTTPException) as e:
                self._drop(url)
                raise Unavailable("cannot reach the ensemble manager at %s: %s"
                                  % (url, getattr(e, "strerror", None) or e))
        raise AssertionError("unreachable")

    def _connection(self, url):
        conns = self._local.__dict__.setdefault("conns", {})
        if url in conns:
            return conns[url], True
        parts = urllib.parse.urlsplit(url)
        if parts.scheme != "http":
            raise Unavailable("the ensemble manager at %s is not plain HTTP on this host" % url)
        conn = http.client.HTTPConnection(parts.hostname, parts.port or 80, timeout=self.timeout)
        try:
            conn.connect()
            # The endpoint file was checked when read; the port may have changed hands
            # since: the socket we reached must be the user's own before anything is sent.
            require_own_listener(conn.sock.getpeername())
        except (OSError, ClientError) as e:
            conn.close()
            raise Unavailable("cannot reach the ensemble manager at %s: %s"
                              % (url, getattr(e, "message", None) or e.strerror or e))
        conns[url] = conn
        return conn, False

    def _drop(self, url):
        conn = self._local.__dict__.get("conns", {}).pop(url, None)
        if conn is not None:
            conn.close()

    @staticmethod
    def _headers(headers, daemon_url, public_base):
        out = []
        for name, value in headers:
            lower = name.lower()
            if lower not in _PASSED_HEADERS:
                continue
            if lower == "location" and value.startswith(daemon_url):
                value = public_base + value[len(daemon_url):]
            out.append((name, value))
        return out


def _rewrite(data, daemon_url, public_base):
    """The daemon's links (JSON strings that start with its own address) made to start
    at `public_base`; a string that merely contains the address is left alone."""
    old = ('"%s/' % daemon_url).encode("ascii")
    if old not in data:
        return data
    new = ('"' + json.dumps(public_base, ensure_ascii=False)[1:-1] + "/").encode("utf-8")
    return data.replace(old, new)
