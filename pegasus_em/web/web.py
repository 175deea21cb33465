"""The web layer every WSGI application of ours shares, written once: the route
table, the request and response types, status lines, body reading and the
rules for where a request may come from.

The daemon's REST API (`api`), the monitoring API (`monitoring`), the dashboard
and pegasus-service (`userapp`, `service_app`) route, read bodies, check where a
state-changing request comes from and answer with security headers through
this module, so a rule fixed here holds everywhere.  (Connection-level rules,
such as caps and timeouts, live in `httpd`.)

Browsers are the threat these rules meet: a page on another site can make a
signed-in user's browser send a form post with cached Basic credentials.  A
browser says where a request comes from (`Origin`, `Sec-Fetch-Site`); a
non-browser client (the CLI, curl, gateway scripts) says nothing and is let
through.
"""

import functools
import http
import re
import urllib.parse

from ..errors import (BadRequest, Forbidden, LengthRequired, MethodNotAllowed, NotFound, TooLarge,
                      UnsupportedMediaType)

STATE_CHANGING = frozenset(("POST", "PUT", "DELETE", "PATCH"))
BODY_TYPES = ("application/x-www-form-urlencoded", "application/json")
_DIGITS = re.compile(r"[0-9]{1,18}\Z")

# Every page of ours: scripts only from our own origin (and pegasus-service makes sure
# nothing but its own static files is served there with a script MIME type), no
# inline script, no framing, forms only back to us.
CSP = ("default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' data:; "
       "connect-src 'self'; form-action 'self'; frame-ancestors 'none'; base-uri 'none'")
SANDBOX_CSP = "default-src 'none'; style-src 'self'; img-src 'self' data:; sandbox"
SECURITY_HEADERS = (("X-Content-Type-Options", "nosniff"), ("X-Frame-Options", "DENY"),
                    ("Referrer-Policy", "same-origin"),
                    ("Cross-Origin-Resource-Policy", "same-origin"),
                    ("Cross-Origin-Opener-Policy", "same-origin"))
SECURITY_HEADER_NAMES = frozenset(n.lower() for n, _ in SECURITY_HEADERS) | {
    "content-security-policy", "content-security-policy-report-only"}


@functools.lru_cache(maxsize=None)  # a handful of codes: each line is made once
def status_line(code):
    """`404 Not Found`: the phrase is http.HTTPStatus's (`Unknown` for a code it lacks)."""
    phrase = http.HTTPStatus(code).phrase if code in _KNOWN else "Unknown"
    return "%d %s" % (code, phrase)


_KNOWN = frozenset(s.value for s in http.HTTPStatus)


class Routes:
    """The route table: (pattern, {method: handler}) pairs, tried in order.  `find`
    gives the handler and the pattern's groups; a path that a pattern matches without
    the method is 405 with the methods allowed, any other 404, each with its message
    (`{method}` and `{path}` are filled in)."""

    def __init__(self, table, end=r"/?\Z", missing="No such resource: {path}",
                 not_allowed="Method {method} not allowed on {path}"):
        self.table = [(re.compile(p + end), m) for p, m in table]
        self.missing = missing
        self.not_allowed = not_allowed

    def find(self, method, path):
        allowed = set()
        for pattern, methods in self.table:
            match = pattern.match(path)
            if match:
                handler = methods.get(method)
                if handler is not None:
                    return handler, match.groups()
                allowed.update(methods)
        if allowed:
            raise MethodNotAllowed(self.not_allowed.format(method=method, path=path),
                                   sorted(allowed))
        raise NotFound(self.missing.format(path=path))


class Request:
    """One request as plain data, what every handler of ours takes; pegasus-service's
    listener sends it to a user's process as `meta()` and the body."""

    FIELDS = ("method", "path", "query", "headers", "base", "user", "remote_user", "admin",
              "public", "write")
    __slots__ = FIELDS + ("body", "form", "_args")

    def __init__(self, method, path, query="", headers=None, base="", user="", form=None,
                 remote_user="", admin=False, body=b"", public="", write=True):
        self.method = method
        self.path = path              # below the application's mount point, starting with "/"
        self.query = query            # the raw query string
        self.headers = headers or {}  # lower-case names; never credentials
        self.base = base              # where every link of an answer starts
        self.user = user              # whose data
        self.remote_user = remote_user  # who asks
        self.admin = admin
        self.body = body
        self.public = public          # configured absolute URL of the service, or ""
        self.write = write            # whether the one who asks may act (pages show forms)
        self.form = form              # the body's fields, once read
        self._args = None

    @property
    def args(self):
        """The query's parameters (the last of a repeated name wins)."""
        if self._args is None:
            self._args = parse_query(self.query)
        return self._args

    def meta(self):
        return {name: getattr(self, name) for name in self.FIELDS}

    @classmethod
    def from_meta(cls, meta, body):
        return cls(body=body, **{name: meta[name] for name in cls.FIELDS})


def parse_query(text):
    if not text:
        return {}
    return dict(urllib.parse.parse_qsl(text, keep_blank_values=True))


class Response:
    """What a handler answers: a status, headers (a list of pairs) and a body (bytes,
    or an iterable that knows its length); `sandbox`: serve it under SANDBOX_CSP."""

    __slots__ = ("status", "headers", "body", "sandbox")

    def __init__(self, status, headers, body, sandbox=False):
        self.status = status
        self.headers = headers
        self.body = body
        self.sandbox = sandbox


def request_headers(environ):
    """A request's headers as a dict of lower-case names, without credentials."""
    out = {}
    for key, value in environ.items():
        if key.startswith("HTTP_") and key not in _CREDENTIALS:
            out[key[5:].lower().replace("_", "-")] = value
    if environ.get("CONTENT_TYPE"):
        out["content-type"] = environ["CONTENT_TYPE"]
    return out


_CREDENTIALS = ("HTTP_AUTHORIZATION", "HTTP_PROXY_AUTHORIZATION", "HTTP_COOKIE")


def content_length(environ):
    """The body length: digits only (`+10`, `1_0` and ` 10` are what int() takes and a
    front end may read differently: a smuggling hazard)."""
    raw = environ.get("CONTENT_LENGTH") or ""
    if raw == "":
        return 0
    if not _DIGITS.match(raw):
        raise BadRequest("Invalid Content-Length")
    return int(raw)


def read_body(environ, max_body):
    """The whole request body, at most `max_body` bytes."""
    if environ.get("HTTP_TRANSFER_ENCODING"):
        raise LengthRequired("Chunked request bodies are not supported; send Content-Length")
    length = content_length(environ)
    if length > max_body:
        raise TooLarge("Request body too large: %d bytes (at most %d)" % (length, max_body))
    if not length:
        return b""
    body = environ["wsgi.input"].read(length)
    if len(body) != length:
        raise BadRequest("Request body shorter than its Content-Length")
    return body


def media_type(environ):
    return (environ.get("CONTENT_TYPE") or "").split(";")[0].strip().lower()


def check_body_type(environ, body):
    """Only form or JSON bodies: a `text/plain` form post is how a page elsewhere sends
    a request that skips the browser's preflight."""
    if body and media_type(environ) not in BODY_TYPES:
        raise UnsupportedMediaType("Send the body as application/x-www-form-urlencoded or "
                                   "application/json, not %r"
                                   % (media_type(environ) or "no Content-Type"))


def check_same_origin(environ, trusted_origins=()):
    """Refuse a state-changing request that a browser sent from another site."""
    if environ.get("REQUEST_METHOD") not in STATE_CHANGING:
        return
    site = (environ.get("HTTP_SEC_FETCH_SITE") or "").lower()
    if site in ("cross-site", "same-site"):
        raise Forbidden("Cross-site request refused (Sec-Fetch-Site: %s)" % site)
    origin = environ.get("HTTP_ORIGIN")
    if origin is None:
        return
    allowed = [own_origin(environ)] + [_normal(o) for o in trusted_origins]
    if _normal(origin) not in allowed:
        raise Forbidden("Cross-site request refused (Origin %s)" % origin[:200])


def check_not_a_form_post(environ):
    """A REST API is never the target of an HTML form: a form post navigates, a script
    or a client does not.  Refuse it even from our own origin, where a page of one user
    could hold a form aimed at another user's data."""
    if environ.get("REQUEST_METHOD") in STATE_CHANGING and \
            (environ.get("HTTP_SEC_FETCH_MODE") or "").lower() == "navigate":
        raise Forbidden("The REST API does not take HTML form submissions")


def own_origin(environ):
    """scheme://host[:port] as the browser addressed us; used only to compare with the
    Origin the same browser sent, never to build a link."""
    host = environ.get("HTTP_HOST")
    if not host:
        return None
    return _normal("%s://%s" % (environ.get("wsgi.url_scheme", "http"), host))


def origin_of(url):
    """scheme://host[:port] of an absolute URL (a configured public URL), or None."""
    match = re.match(r"(https?://[^/?#]+)", url or "")
    return _normal(match.group(1)) if match else None


def _normal(origin):
    """Lower case, without the scheme's default port: how browsers write an Origin."""
    origin = origin.strip().lower()
    for scheme, port in (("https://", ":443"), ("http://", ":80")):
        if origin.startswith(scheme) and origin.endswith(port):
            return origin[:-len(port)]
    return origin


def csp_header(sandbox=False):
    return ("Content-Security-Policy", SANDBOX_CSP if sandbox else CSP)
