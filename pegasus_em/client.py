"""HTTP transport for the pegasus-em client: urllib, Basic auth, form bodies.

This module knows nothing about verbs or output formats (cli.py and fmt.py do);
it turns a request into `(status, headers, body)` or raises `ClientError`, so
every failure reaches the user as one sentence and never as a traceback.
"""

import base64
import http.client
import ipaddress
import json
import os
import socket
import ssl
import urllib.error
import urllib.parse
import urllib.request

from . import __version__, config
from .errors import ClientError

ENDPOINT_FILE = "em-server.json"
DEFAULT_TIMEOUT = 120  # seconds; `analyze` runs pegasus-analyzer on the server


class ReplyError(ClientError):
    """The server answered, but not with 2xx; `message` is its explanation."""

    def __init__(self, message, status):
        super().__init__(message)
        self.status = status


class Unreachable(ClientError):
    """No HTTP answer at all: refused, reset, timed out, TLS failure."""


class Client:
    """One ensemble-manager endpoint plus credentials; a fresh connection per call."""

    def __init__(self, url, username, password, cafile=None, timeout=DEFAULT_TIMEOUT):
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
        self._opener = _opener(self.url, cafile)

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
        status, _headers, body = self.request(method, path, fields, body)
        if not 200 <= status < 300:
            raise ReplyError(error_message(status, body), status)
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
            why = "is it running? Start it with: pegasus-em server"
        elif isinstance(reason, socket.timeout):
            why = "no answer within %s seconds" % self.timeout
        elif isinstance(reason, ssl.SSLCertVerificationError):
            why = "%s (trust a self-signed certificate with --cafile or " \
                  "PEGASUS_EM_CAFILE)" % (reason.strerror or reason)
        else:
            why = getattr(reason, "strerror", None) or str(reason) or type(reason).__name__
        return Unreachable("cannot reach the ensemble manager at %s: %s" % (self.url, why))


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


def _opener(url, cafile):
    handlers = [_NoRedirect()]
    if _is_loopback(urllib.parse.urlsplit(url).hostname):
        # A proxy from http_proxy cannot reach the user's own 127.0.0.1.
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


def discover_url(url=None, env=None, cfg=None, endpoint_file=None):
    """Where the daemon listens: --url, $PEGASUS_EM_URL, the live daemon's endpoint
    file, then http://127.0.0.1:<EM_PORT or 7919 + uid % 57616>."""
    env = os.environ if env is None else env
    if url:
        return url
    if env.get("PEGASUS_EM_URL"):
        return env["PEGASUS_EM_URL"]
    path = endpoint_file or os.path.join(config.pegasus_dir(), ENDPOINT_FILE)
    found = read_endpoint(path)
    if found:
        return found
    port = (cfg or {}).get("EM_PORT") or config.em_port()
    return "http://127.0.0.1:%d" % port


def read_endpoint(path):
    """The URL in a daemon's endpoint file, or None when absent, garbled or stale."""
    try:
        with open(path) as f:
            doc = json.load(f)
        url, pid = doc["url"], doc["pid"]
    except (OSError, ValueError, KeyError, TypeError):
        return None
    if isinstance(url, str) and url and pid_alive(pid):
        return url
    return None


def pid_alive(pid):
    """True if a process with this pid exists (it may belong to another user)."""
    if not isinstance(pid, int) or isinstance(pid, bool) or pid <= 0:
        return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True
