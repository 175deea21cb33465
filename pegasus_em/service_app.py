"""The WSGI application of pegasus-service, as the listening process runs it.

It does no work on user data.  For each request it: strips
PEGASUS_SERVICE_URL_PREFIX, refuses malformed paths and bodies, authenticates
(HTTP Basic + PAM, or NoAuthentication), finds whose data is asked for, applies
the ADMIN_USERS rule (a real 403 for anyone else's data; root's data is never
served), and hands the request to the backend that serves that user: a worker
process running as the user (process switching) or, without it, a UserApp in
this process.

URL scheme, below the prefix:
  /                               302 to /u/<signed-in user>/
  /u/<user>/...                   pages (the dashboard mounts here)
  /api/v1/user/<user>/root...     monitoring REST API
  /api/v1/user/<user>/ensembles... <user>'s ensembles (admins: anyone's)
  /ensembles...                   the signed-in user's ensembles, so that
                                  `pegasus-em --url https://HOST:5000[/PREFIX]` works
"""

import logging
import os
import pwd
import re

from .errors import BadRequest, EMError, Forbidden, NotFound, TooLarge, Unauthorized
from .userapp import Call, Reply, error_reply, json_reply, passwd

log = logging.getLogger(__name__)

MAX_BODY = 1 << 20
_HOST = re.compile(r"[A-Za-z0-9.\-]+(:\d+)?\Z|\[[0-9A-Fa-f:.]+\](:\d+)?\Z")
_REASONS = {200: "OK", 201: "Created", 202: "Accepted", 204: "No Content", 302: "Found",
            304: "Not Modified", 400: "Bad Request", 401: "Unauthorized", 403: "Forbidden",
            404: "Not Found", 405: "Method Not Allowed", 409: "Conflict",
            411: "Length Required", 413: "Payload Too Large", 500: "Internal Server Error",
            502: "Bad Gateway", 503: "Service Unavailable"}
_DROPPED_HEADERS = ("HTTP_AUTHORIZATION", "HTTP_PROXY_AUTHORIZATION", "HTTP_COOKIE")

# Paths that name whose data they are about; anything else is 404.
USER_ROUTES = [re.compile(r"/u/([^/]+)(?:/.*)?\Z"),
               re.compile(r"/api/v1/user/([^/]+)(?:/.*)?\Z")]
OWN_ROUTES = [re.compile(r"/ensembles(?:/.*)?\Z")]


class LengthRequired(EMError):
    status = 411


def normalize_prefix(prefix):
    """'/pegasus/' -> '/pegasus'; None, '' and '/' -> ''."""
    prefix = (prefix or "").strip()
    if not prefix or prefix == "/":
        return ""
    if "?" in prefix or "#" in prefix or "//" in prefix:
        raise ValueError("PEGASUS_SERVICE_URL_PREFIX must be a plain path, not %r" % prefix)
    return "/" + prefix.strip("/")


class Backend:
    """Where an authorized request goes: `pool` (a WorkerPool, one process per user)
    or `local` (a UserApp in this process); `only_user` limits who may be served."""

    def __init__(self, pool=None, local=None, only_user=None):
        self.pool = pool
        self.local = local
        self.only_user = only_user

    def handle(self, call):
        if self.only_user is not None and call.user != self.only_user:
            raise Forbidden("pegasus-service runs as %s, not as root, so it serves only %s's "
                            "data (PROCESS_SWITCHING needs root)"
                            % (self.only_user, self.only_user))
        if self.pool is not None:
            return self.pool.handle(call)
        return self.local.handle(call)

    def check_em_password(self, user, password):
        """True if `password` is `user`'s ensemble-manager PASSWORD (service.py), checked
        by a process of that user."""
        if self.only_user is not None and user != self.only_user:
            return False
        if self.pool is not None:
            return self.pool.check_em_password(user, password)
        return self.local.em.accepts(pwd.getpwnam(user).pw_dir, user, password)

    def close(self):
        if self.pool is not None:
            self.pool.close()


class ServiceApp:
    """The front WSGI callable.  `static_routes` (regex -> handler(environ) -> Reply)
    are served before authentication, for assets that hold no user data."""

    def __init__(self, auth, admins, backend, prefix="", service_user=None,
                 max_body=MAX_BODY):
        self.auth = auth
        self.admins = admins
        self.backend = backend
        self.prefix = normalize_prefix(prefix)
        self.service_user = service_user or pwd.getpwuid(os.geteuid()).pw_name
        self.max_body = max_body
        self.static_routes = []

    def __call__(self, environ, start_response):
        try:
            reply = self.handle(environ)
        except EMError as e:
            reply = error_reply(e)
            if e.status == 401:
                reply.headers.append(("WWW-Authenticate",
                                      'Basic realm="%s", charset="UTF-8"' % self.auth.realm))
        except Exception:
            log.exception("internal error in %s %s", environ.get("REQUEST_METHOD"),
                          environ.get("PATH_INFO"))
            reply = json_reply(500, {"message": "Internal server error"})
        headers = list(reply.headers) + [("Content-Length", str(len(reply.body))),
                                         ("X-Content-Type-Options", "nosniff")]
        start_response("%d %s" % (reply.status, _REASONS.get(reply.status, "Unknown")),
                       headers)
        return [reply.body]

    def handle(self, environ):
        path = self.local_path(environ.get("PATH_INFO") or "/")
        for pattern, handler in self.static_routes:
            if pattern.match(path):
                return handler(environ)
        remote = environ.get("REMOTE_ADDR")
        me = self.auth.authenticate(environ.get("HTTP_AUTHORIZATION"), remote)
        url_user = _url_user(path)
        if me is None:  # NoAuthentication
            me = environ.get("REMOTE_USER") or url_user or self.service_user
        if path == "/":
            if _is_root(me):
                raise Forbidden("root's data is never served; open /u/<user>/")
            return Reply(302, [("Location", "%s/u/%s/" % (self.base_url(environ), me)),
                               ("Content-Type", "text/plain; charset=utf-8")], b"")
        if url_user is None and not any(p.match(path) for p in OWN_ROUTES):
            raise NotFound("No such resource: %s" % path)
        target = url_user or me
        admin = me in self.admins
        self.authorize(me, target, admin)
        call = Call(environ["REQUEST_METHOD"], path, environ.get("QUERY_STRING", ""),
                    _headers(environ), self.base_url(environ), target, me, admin,
                    self.read_body(environ))
        reply = self.backend.handle(call)
        log.debug("%s %s %s %s -> %d", remote, me, call.method, path, reply.status)
        return reply

    def local_path(self, path):
        """The path below the prefix; 404 outside it, 400 for traversal or NUL."""
        if self.prefix:
            if path != self.prefix and not path.startswith(self.prefix + "/"):
                raise NotFound("No such resource: %s (everything is below %s/)"
                               % (path, self.prefix))
            path = path[len(self.prefix):] or "/"
        if "\0" in path or "\\" in path or any(seg in (".", "..")
                                                for seg in path.split("/")):
            raise BadRequest("Invalid path")
        return path

    def authorize(self, me, target, admin):
        if target != me and not admin:
            log.info("%s was refused %s's data (not in ADMIN_USERS)", me, target)
            raise Forbidden("%s may not see %s's data (ADMIN_USERS)" % (me, target))
        try:
            uid = passwd(target).pw_uid
        except (KeyError, ValueError):
            raise NotFound("No such user: %s" % target)
        if uid == 0:
            if target == me:
                raise Unauthorized("root may not use pegasus-service; sign in as a regular "
                                   "user")
            raise Forbidden("root's data is never served")

    def read_body(self, environ):
        if environ.get("HTTP_TRANSFER_ENCODING"):
            raise LengthRequired("Chunked request bodies are not supported; send "
                                 "Content-Length")
        try:
            length = int(environ.get("CONTENT_LENGTH") or 0)
        except ValueError:
            raise BadRequest("Invalid Content-Length")
        if length < 0:
            raise BadRequest("Invalid Content-Length")
        if length > self.max_body:
            raise TooLarge("Request body too large: %d bytes (at most %d)"
                           % (length, self.max_body))
        if not length:
            return b""
        body = environ["wsgi.input"].read(length)
        if len(body) != length:
            raise BadRequest("Request body shorter than its Content-Length")
        return body

    def base_url(self, environ):
        """scheme://host + mount point + prefix; a Host header that is not a plain
        host[:port] is ignored (it would end up in every link)."""
        scheme = environ.get("wsgi.url_scheme", "https")
        host = environ.get("HTTP_HOST", "")
        if not _HOST.match(host):
            host = environ.get("SERVER_NAME", "localhost")
            port = environ.get("SERVER_PORT")
            if port and port != {"http": "80", "https": "443"}.get(scheme):
                host = "%s:%s" % (host, port)
        return "%s://%s%s%s" % (scheme, host, environ.get("SCRIPT_NAME", "").rstrip("/"),
                                self.prefix)


def _url_user(path):
    for pattern in USER_ROUTES:
        match = pattern.match(path)
        if match:
            return match.group(1)
    return None


def _is_root(user):
    try:
        return passwd(user).pw_uid == 0
    except (KeyError, ValueError):
        return False


def _headers(environ):
    """Request headers for the user side: lower-case names, never credentials."""
    out = {}
    for key, value in environ.items():
        if key.startswith("HTTP_") and key not in _DROPPED_HEADERS:
            out[key[5:].lower().replace("_", "-")] = value
    if environ.get("CONTENT_TYPE"):
        out["content-type"] = environ["CONTENT_TYPE"]
    return out
