"""HTTP transport for the pegasus-em client: urllib, Basic auth, form bodies.

This module knows nothing about verbs or output formats (cli.py and fmt.py do);
it turns a request into `(status, headers, body)` or raises `ClientError`, so
every failure reaches the user as one sentence and never as a traceback.
"""

import base64
import collections
import functools
import http.client
import ipaddress
import json
import os
import socket
import ssl
import struct
import urllib.error
import urllib.parse
import urllib.request

from .. import __version__, config
from ..errors import ClientError

ENDPOINT_FILE = "em-server.json"
DEFAULT_TIMEOUT = 120  # seconds; `analyze` runs pegasus-analyzer on the server


class ReplyError(ClientError):
    """The server answered, but not with 2xx; `message` is its explanation."""

    def __init__(self, message, status, headers=None):
        super().__init__(message)
        self.status = status
        self.headers = headers


class Unreachable(ClientError):
    """No HTTP answer at all: refused, reset, timed out, TLS failure."""


class Client:
    """One ensemble-manager endpoint plus credentials; a fresh connection per call.

    `guard(peer)`, if given, is called on each plain-HTTP connection once it is
    established and before anything is sent, and raises to send nothing."""

    def __init__(self, url, username, password, cafile=None, timeout=DEFAULT_TIMEOUT,
                 guard=None):
        parts = urllib.parse.urlsplit(url)
        if parts.scheme not in ("http", "https") or not parts.netloc:
            raise ClientError("invalid ensemble manager URL: %s (expected http://HOST:PORT)"
                              % url)
        self.url = url.rstrip("/")
        self.timeout = timeout
        token = base64.b64encode(("%s:%s" % (username, password)).encode("utf-8"))
        self._headers = {
            "Accept": "application/json",
            "Authorization": "Basic " + token.decode("ascii"),
            "User-Agent": "pegasus-em/%s" % __version__,
        }
        self._opener = _opener(self.url, cafile, guard)

    def request(self, method, path, fields=None, body=None):
        """Send one request; return (status, headers, body bytes) for any HTTP status.

        `fields` is form-encoded: as the body for POST/PUT, as the query string
        otherwise.  Raises `Unreachable` when no HTTP answer arrives.
        """
        req = self._build(method, path, fields, body)
        try:
            with self._opener.open(req, timeout=self.timeout) as resp:
                return resp.status, resp.headers, resp.read()
        except urllib.error.HTTPError as e:  # non-2xx: still an answer
            try:
                return e.code, e.headers, e.read()
            finally:
                e.close()
        except urllib.error.URLError as e:
            raise self._unreachable(e.reason)
        except (OSError, http.client.HTTPException) as e:
            raise self._unreachable(e)

    def get_json(self, path):
        return _json(self.call("GET", path))

    def get_text(self, path):
        return self.call("GET", path).decode("utf-8", "replace")

    def post_form(self, path, fields):
        return _json(self.call("POST", path, fields))

    def delete(self, path):
        return _json(self.call("DELETE", path))

    def post_json(self, path, body):
        """POST a JSON document (bytes); -> the JSON reply."""
        return _json(self.call("POST", path, body=body))

    def call(self, method, path, fields=None, body=None):
        """Like `request`, but return only the body and raise `ReplyError` on non-2xx."""
        status, headers, body = self.request(method, path, fields, body)
        if not 200 <= status < 300:
            raise ReplyError(error_message(status, body), status, headers)
        return body

    def _build(self, method, path, fields, body=None):
        data = None
        url = self.url + path
        headers = dict(self._headers)
        if body is not None:  # a JSON document
            data = body
            headers["Content-Type"] = "application/json"
        elif fields is not None:
            encoded = urllib.parse.urlencode(fields)
            if method in ("POST", "PUT"):
                data = encoded.encode("ascii")
                headers["Content-Type"] = "application/x-www-form-urlencoded"
            else:
                url += ("&" if "?" in url else "?") + encoded
        elif method in ("POST", "PUT"):
            data = b""
        return urllib.request.Request(url, data=data, headers=headers, method=method)

    def _unreachable(self, reason):
        if isinstance(reason, ConnectionRefusedError):
            why = "it is not running (connection refused). Start it with: pegasus-em server"
        elif isinstance(reason, socket.timeout):
            why = "no answer within %s seconds" % self.timeout
        elif isinstance(reason, ssl.SSLCertVerificationError):
            why = "%s (trust a self-signed certificate with --cafile or " \
                  "PEGASUS_EM_CAFILE)" % (reason.strerror or reason)
        else:
            why = getattr(reason, "strerror", None) or str(reason) or type(reason).__name__
        return Unreachable("cannot reach the ensemble manager at %s: %s" % (self.url, why))


def path(*names):
    """`/ensembles/<e>/…` with each name escaped, so a name can never add a path segment."""
    return "/" + "/".join(urllib.parse.quote(str(n), safe="") for n in names)


def error_message(status, body):
    """The `message` of a JSON error body, else the raw text, as 5.x prints it."""
    text = body.decode("utf-8", "replace").strip()
    try:
        doc = json.loads(text)
    except ValueError:
        doc = None
    if isinstance(doc, dict) and doc.get("message"):
        return str(doc["message"])
    return text or "HTTP %d" % status


def _json(body):
    """2xx bodies are JSON; an empty body (e.g. 201 with a Location) is None."""
    if not body.strip():
        return None
    try:
        return json.loads(body.decode("utf-8"))
    except ValueError:
        raise ClientError("the ensemble manager sent a reply that is not JSON: %r"
                          % body[:80])


class _NoRedirect(urllib.request.HTTPRedirectHandler):
    """The API never redirects; following one would replay a POST as a GET."""

    def redirect_request(self, *args, **kwargs):
        return None


class _GuardedHTTPHandler(urllib.request.HTTPHandler):
    """Plain HTTP through `_GuardedConnection`."""

    def __init__(self, guard):
        super().__init__()
        self._guard = guard

    def http_open(self, req):
        return self.do_open(functools.partial(_GuardedConnection, guard=self._guard), req)


class _GuardedConnection(http.client.HTTPConnection):
    """Vets the peer after connecting: checked before connecting, the port could
    change hands in between."""

    def __init__(self, *args, guard, **kwargs):
        super().__init__(*args, **kwargs)
        self._guard = guard

    def connect(self):
        super().connect()
        try:
            self._guard(self.sock.getpeername())
        except BaseException:
            self.close()
            raise


def _opener(url, cafile, guard=None):
    handlers = [_NoRedirect()]
    if guard is not None and url.startswith("http:"):
        handlers.append(_GuardedHTTPHandler(guard))
    if guard is not None or _is_loopback(urllib.parse.urlsplit(url).hostname):
        # A proxy from http_proxy cannot reach the user's own daemon (and would hide
        # who listens there).
        handlers.append(urllib.request.ProxyHandler({}))
    if url.startswith("https:"):
        handlers.append(urllib.request.HTTPSHandler(context=ssl_context(cafile)))
    return urllib.request.build_opener(*handlers)


def ssl_context(cafile=None):
    """System trust store, plus `cafile` to trust a self-signed daemon certificate."""
    try:
        return ssl.create_default_context(cafile=cafile)
    except (OSError, ssl.SSLError) as e:
        raise ClientError("cannot load CA file %s: %s" % (cafile, e))


def _is_loopback(host):
    if not host or host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


Endpoint = collections.namedtuple("Endpoint", "url token guard")
Endpoint.__doc__ = """Where to send requests; `token` (this daemon run's secret, or None)
replaces PASSWORD, and `guard(peer)` vets the listener before anything is sent."""


def discover(url=None, env=None, cfg=None, endpoint_file=None):
    """--url, $PEGASUS_EM_URL, the live daemon's endpoint file, then
    http://127.0.0.1:<EM_PORT or 7919 + uid % 57616>.

    An address we found ourselves is used only if our own uid listens there (a port
    is anybody's to take once our daemon is gone); one the user chose may be any
    server, except a loopback one of another user."""
    env = os.environ if env is None else env
    chosen = url or env.get("PEGASUS_EM_URL")
    if chosen:
        local = _is_loopback(urllib.parse.urlsplit(chosen).hostname)
        return Endpoint(chosen, None, refuse_other_users if local else None)
    path = endpoint_file or os.path.join(config.pegasus_dir(), ENDPOINT_FILE)
    found = read_endpoint_info(path)
    if found:
        return found
    port = (cfg or {}).get("EM_PORT") or config.em_port()
    return Endpoint("http://127.0.0.1:%d" % port, None, require_own_listener)


def read_endpoint(path):
    """The URL of the live daemon that wrote this endpoint file, or None."""
    found = read_endpoint_info(path)
    return found.url if found else None


def read_endpoint_info(path):
    """The `Endpoint` of the daemon that wrote this file, or None when the file is
    absent, garbled, not ours, writable by others, or its daemon is gone: the pid must be a
    live process of ours and the URL's port held by a socket of ours."""
    doc = _private_json(path)
    if not isinstance(doc, dict):
        return None
    url, pid, token = doc.get("url"), doc.get("pid"), doc.get("token")
    if not (isinstance(url, str) and url.startswith("http://") and own_process(pid)):
        return None
    parts = urllib.parse.urlsplit(url)
    try:
        if listener_owners(parts.hostname, parts.port) != {os.geteuid()}:
            return None
    except (TypeError, ValueError):  # no IP address and port: not what our daemon writes
        return None
    return Endpoint(url, token if isinstance(token, str) and token else None,
                    require_own_listener)


def _private_json(path):
    """A JSON file that belongs to us and that no one else may write, else None."""
    try:
        fd = os.open(path, os.O_RDONLY | os.O_NOFOLLOW | os.O_CLOEXEC)
    except OSError:
        return None
    with os.fdopen(fd, "rb") as f:
        st = os.fstat(f.fileno())
        if st.st_uid != os.geteuid() or st.st_mode & 0o022:
            return None
        try:
            return json.loads(f.read(65536))
        except ValueError:
            return None


def own_process(pid):
    """True if `pid` is a live process of our uid (its /proc entry is ours)."""
    if not isinstance(pid, int) or isinstance(pid, bool) or pid <= 0:
        return False
    try:
        return os.stat("/proc/%d" % pid).st_uid == os.geteuid()
    except OSError:
        return False


# --------------------------------------------------------------------------- who listens

class NotRunning(ClientError):
    """Our daemon is not there; whoever listens in its place got nothing from us."""


def require_own_listener(peer):
    """For an address we discovered: the listening socket we reached must be ours."""
    host, port = peer[0], peer[1]
    owners = listener_owners(host, port)
    if owners == {os.geteuid()}:
        return
    if not owners:
        raise NotRunning("the ensemble manager is not running: cannot tell who listens on "
                         "%s port %d, so nothing was sent. Start it with: pegasus-em server"
                         % (host, port))
    raise NotRunning("the ensemble manager is not running: a process of another user "
                     "(uid %s) listens on %s port %d, so nothing was sent to it. Start "
                     "yours with: pegasus-em server --port 0"
                     % (_uids(owners), host, port))


def refuse_other_users(peer):
    """For an address the user chose: a loopback listener of another user is a
    squatter on a port our daemon left (a remote server is the user's call)."""
    host, port = peer[0], peer[1]
    if not _plain_ip(host).is_loopback:
        return
    others = listener_owners(host, port) - {os.geteuid()}
    if others:
        raise ClientError("refusing to send credentials to %s port %d: it is held by a "
                          "process of another user (uid %s), not by your ensemble manager"
                          % (host, port, _uids(others)))


def _uids(owners):
    return ", ".join(str(u) for u in sorted(owners))


def listener_owners(host, port):
    """uids of the sockets that would take a TCP connection to host:port on this
    machine (a socket bound to the address itself wins over a wildcard one), from
    /proc/net/tcp and tcp6.  Empty when nothing listens there."""
    ip = _plain_ip(host)
    exact, wildcard = set(), set()
    for address, uid in _listening(int(port)):
        if address == ip:
            exact.add(uid)
        elif address.is_unspecified and (address.version == 6 or ip.version == 4):
            wildcard.add(uid)
    return exact or wildcard


def _listening(port):
    """(address, uid) of every TCP socket in LISTEN state on `port`."""
    found = []
    for name in ("tcp", "tcp6"):
        try:
            with open("/proc/net/" + name) as f:
                lines = f.read().splitlines()[1:]
        except OSError:
            continue
        for line in lines:
            fields = line.split()
            address, _, hexport = fields[1].partition(":")
            if fields[3] == "0A" and int(hexport, 16) == port:
                found.append((_proc_address(address), int(fields[7])))
    return found


def _proc_address(text):
    """/proc/net/tcp prints each 32-bit word of the address in host byte order."""
    raw = b"".join(struct.pack("=I", int(text[i:i + 8], 16)) for i in range(0, len(text), 8))
    return _plain_ip(ipaddress.ip_address(raw))


def _plain_ip(host):
    """An IP address, an IPv4-mapped IPv6 one as IPv4 (raises ValueError on a name)."""
    ip = ipaddress.ip_address(host) if isinstance(host, str) else host
    if ip.version == 6 and ip.ipv4_mapped is not None:
        return ip.ipv4_mapped
    return ip
