"""The WSGI application of pegasus-service, as the listening process runs it.

It does no work on user data.  For each request it: strips
PEGASUS_SERVICE_URL_PREFIX, serves the static files itself, refuses malformed
paths and bodies, authenticates (HTTP Basic + PAM, or NoAuthentication), finds
whose data is asked for, applies the ADMIN_USERS rule (a real 403 for anyone
else's data, and for acting on it unless ADMIN_WRITE; root's data is never
served), refuses cross-site state changes, and hands the request to the backend
that serves that user: a worker process running as the user (process
switching) or, without it, a UserApp in this process.  The reply is untrusted:
it is checked and given our own security headers (`sanitize`).

URL scheme, below the prefix:
  /                               302 to /u/<signed-in user>/
  /u/<user>/...                   pages (the dashboard mounts here)
  /api/v1/user/<user>/root...     monitoring REST API
  /api/v1/user/<user>/ensembles... <user>'s ensembles (admins: anyone's)
  /ensembles...                   the signed-in user's ensembles, so that
                                  `pegasus-em --url https://HOST:5000[/PREFIX]` works
"""

import html
import logging
import os
import pwd
import re

from ..dashboard import assets
from ..web import web
from ..errors import (BadRequest, EMError, Forbidden, MethodNotAllowed, NotFound, TooManyRequests,
                      Unauthorized)
from .userapp import error_reply, json_reply, passwd

log = logging.getLogger(__name__)

MAX_BODY = 1 << 20
_READ_METHODS = ("GET", "HEAD")

# Paths that name whose data they are about; anything else is 404.
USER_ROUTES = [re.compile(r"/u/([^/]+)(?:/.*)?\Z"),
               re.compile(r"/api/v1/user/([^/]+)(?:/.*)?\Z")]
OWN_ROUTES = [re.compile(r"/ensembles(?:/.*)?\Z")]
# The REST APIs (the monitoring API and the ensemble managers'): never form targets.
API_ROUTES = re.compile(r"/ensembles(?:/.*)?\Z|/api/")
STATIC_ROUTE = re.compile(r"/static/(%s)\Z" % assets.NAME)


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

    def close(self):
        if self.pool is not None:
            self.pool.close()


class ServiceApp:
    """The front WSGI callable.

    It trusts only itself and the authenticator: what a backend returns comes from a
    process running as a user (and executing that user's service.py), so its status,
    headers and body are checked and its security headers replaced by ours before
    they reach a browser, which may be another user's (`sanitize`)."""

    def __init__(self, auth, admins, backend, prefix="", service_user=None,
                 max_body=MAX_BODY, public_url=None, admin_write=False):
        self.auth = auth
        self.admins = admins
        self.backend = backend
        self.prefix = normalize_prefix(prefix)
        self.service_user = service_user or pwd.getpwuid(os.geteuid()).pw_name
        self.max_body = max_body
        self.public_url = (public_url or "").rstrip("/")
        self.admin_write = admin_write
        self.trusted_origins = [o for o in [web.origin_of(self.public_url)] if o]

    def __call__(self, environ, start_response):
        try:
            reply = self.handle(environ)
        except EMError as e:
            reply = self.refusal(environ, e)
            if e.status == 401:
                reply.headers.append(("WWW-Authenticate",
                                      'Basic realm="%s", charset="UTF-8"' % self.auth.realm))
            if isinstance(e, TooManyRequests):
                reply.headers.append(("Retry-After", str(e.retry_after)))
        except Exception:
            log.exception("internal error in %s %s", environ.get("REQUEST_METHOD"),
                          environ.get("PATH_INFO"))
            reply = self.refusal(environ, ServerError("Internal server error"))
        headers = list(reply.headers) + [web.csp_header(reply.sandbox)] + \
            list(web.SECURITY_HEADERS) + [("Content-Length", str(len(reply.body)))]
        start_response(web.status_line(reply.status), headers)
        if isinstance(reply.body, bytes):
            return [reply.body]
        return reply.body  # a long reply, streamed from the worker as it is sent

    def refusal(self, environ, e):
        """The listener's own error reply: 5.x's JSON body for the APIs and scripts, a small
        page of its own for a browser (a page asked for with Accept: text/html)."""
        try:
            path = self.local_path(environ.get("PATH_INFO") or "/")
        except EMError:
            path = ""
        accept = environ.get("HTTP_ACCEPT", "")
        if "text/html" not in accept or API_ROUTES.match(path) or path.endswith(".json"):
            return error_reply(e)
        reply = error_page(e.status, e.message, self.mount(environ))
        if isinstance(e, MethodNotAllowed):
            reply.headers.append(("Allow", ", ".join(e.allowed)))
        return reply

    def handle(self, environ):
        path = self.local_path(environ.get("PATH_INFO") or "/")
        static = STATIC_ROUTE.match(path)
        if static and environ["REQUEST_METHOD"] in _READ_METHODS:
            found = assets.serve(static.group(1), environ.get("HTTP_IF_NONE_MATCH"))
            if found is not None:
                return web.Response(*found)
        remote = environ.get("REMOTE_ADDR")
        me = self.auth.authenticate(environ.get("HTTP_AUTHORIZATION"), remote)
        url_user = _url_user(path)
        if me is None:  # NoAuthentication
            me = environ.get("REMOTE_USER") or url_user or self.service_user
        if path == "/":
            if _is_root(me):
                raise Forbidden("root's data is never served; open /u/<user>/")
            return web.Response(302, [("Location", "%s/u/%s/" % (self.mount(environ), me)),
                                      ("Content-Type", "text/plain; charset=utf-8")], b"")
        if url_user is None and not any(p.match(path) for p in OWN_ROUTES):
            raise NotFound("No such resource: %s" % path)
        target = url_user or me
        admin = me in self.admins
        self.authorize(me, target, admin, environ["REQUEST_METHOD"])
        body = self.check_request(environ, path)
        call = web.Request(environ["REQUEST_METHOD"], path, environ.get("QUERY_STRING", ""),
                           web.request_headers(environ), self.mount(environ), target,
                           remote_user=me, admin=admin, body=body, public=self.public_url,
                           write=target == me or self.admin_write)
        reply = sanitize(self.backend.handle(call), self.mount(environ), self.public_url)
        log.debug("%s %s %s %s -> %d", remote, me, call.method, path, reply.status)
        return reply

    def check_request(self, environ, path):
        """The browser-facing rules (web), then the body."""
        web.check_same_origin(environ, self.trusted_origins)
        if API_ROUTES.match(path):
            web.check_not_a_form_post(environ)
        body = web.read_body(environ, self.max_body)
        web.check_body_type(environ, body)
        return body

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

    def authorize(self, me, target, admin, method="GET"):
        if target != me:
            if not admin:
                log.info("%s was refused %s's data (not in ADMIN_USERS)", me, target)
                raise Forbidden("%s may not see %s's data (ADMIN_USERS)" % (me, target))
            if method not in _READ_METHODS and not self.admin_write:
                log.info("%s was refused to act on %s's data (ADMIN_WRITE is off)", me, target)
                raise Forbidden("%s may view %s's data but not act on it (ADMIN_USERS may "
                                "only view; ADMIN_WRITE = True lets them act)" % (me, target))
        try:
            uid = passwd(target).pw_uid
        except (KeyError, ValueError):
            raise NotFound("No such user: %s" % target)
        if uid == 0:
            if target == me:
                raise Unauthorized("root may not use pegasus-service; sign in as a regular "
                                   "user")
            raise Forbidden("root's data is never served")

    def mount(self, environ):
        """Where the service lives on this host (mount point + prefix): every link is
        root-relative and starts here; the Host header never reaches a link."""
        return environ.get("SCRIPT_NAME", "").rstrip("/") + self.prefix


class ServerError(EMError):
    status = 500


_ERROR_PAGE = """<!DOCTYPE html>
<html lang="en">
<head>
<meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>{title} &middot; Pegasus</title>
<link rel="icon" href="{icon}" type="image/svg+xml">
<link rel="stylesheet" href="{css}">
</head>
<body>
<header class="top"><a class="brand" href="{home}">Pegasus</a></header>
<main id="main">
<h1>{title}</h1>
<p class="notice error" role="alert">{message}</p>
<p><a href="{home}">Your workflows</a></p>
</main>
</body>
</html>
"""


def error_page(status, message, mount):
    """A browser's error page, made here rather than by a user's process: every value
    escaped, no script, the dashboard's style sheet (which this process serves)."""
    def static(name):
        return html.escape("%s/static/%s?v=%s" % (mount, name, assets.version(name)))

    page = _ERROR_PAGE.format(
        title=html.escape(web.status_line(status).split(" ", 1)[1]), message=html.escape(message),
        css=static("dashboard.css"), icon=static("favicon.svg"), home=html.escape(mount + "/"))
    return web.Response(status, [("Content-Type", "text/html; charset=utf-8"),
                                 ("Cache-Control", "no-store")], page.encode("utf-8"))


# --------------------------------------------------------------------------- untrusted replies

_PASSED = frozenset(("content-type", "location", "allow", "retry-after", "etag",
                     "cache-control", "content-disposition", "last-modified"))
# What a user's process may answer with: nothing a browser would run as a script.
_SAFE_TYPES = frozenset(("text/html", "text/plain", "application/json", "image/svg+xml",
                         "image/png", "image/gif", "image/jpeg", "application/octet-stream"))
_CHARSET = re.compile(r"\s*charset=\"?([A-Za-z0-9_.:-]{1,40})\"?\s*\Z", re.I)
_DISPOSITION = re.compile(r"attachment; filename\*=UTF-8''[A-Za-z0-9%._~!$&'()*+,;=:@-]{1,1000}\Z")
_BAD_CHARS = re.compile(r"[\x00-\x08\x0a-\x1f\x7f]")


def sanitize(reply, mount, public_url=""):
    """A backend's reply made safe to pass to a browser: a sane status, only the
    headers a page needs (each checked), a content type that cannot run as script,
    redirects only within the service, and a sandbox when the backend asks for one
    (a request to be stricter is the one thing taken from it)."""
    try:
        status, headers, body = int(reply.status), list(reply.headers), reply.body
        headers = [(str(n), str(v)) for n, v in headers]
        if isinstance(body, (bytes, bytearray)):
            body = bytes(body)
        else:
            len(body)  # a streamed body (switch.StreamedBody) knows its length
    except (TypeError, ValueError):
        return _bad_reply("malformed reply")
    if not (200 <= status <= 599):
        return _bad_reply("status %r" % (status,))
    out, sandbox, has_type = [], False, False
    for name, value in headers[:50]:
        lower = name.lower()
        if lower == "content-security-policy" and "sandbox" in value:
            sandbox = True
        if lower not in _PASSED or len(value) > 2048 or _BAD_CHARS.search(value):
            continue
        value = _checked(lower, value, mount, public_url)
        if value is not None:
            out.append((name, value))
            has_type = has_type or lower == "content-type"
    if 300 <= status < 400 and status != 304 and not any(n.lower() == "location"
                                                          for n, _ in out):
        return _bad_reply("redirect outside the service")
    if not has_type:
        out.append(("Content-Type", "application/octet-stream" if body else "text/plain"))
    return web.Response(status, out, body, sandbox)


def _checked(name, value, mount, public_url):
    if name == "content-type":
        return _content_type(value)
    if name == "location":
        inside = value == mount or value.startswith((mount or "") + "/") or \
            (public_url and value.startswith(public_url + "/"))
        ok = inside and not value.startswith("//") and "\\" not in value
        return value if ok else None
    if name == "content-disposition":
        return value if _DISPOSITION.match(value) else None
    return value


def _content_type(value):
    kind, _, params = value.partition(";")
    kind = kind.strip().lower()
    if kind not in _SAFE_TYPES:
        return "application/octet-stream"
    charset = _CHARSET.match(params) if params else None
    return "%s; charset=%s" % (kind, charset.group(1)) if charset else kind


def _bad_reply(why):
    log.warning("refused a reply from a user's process: %s", why)
    return json_reply(502, {"message": "the process serving this user sent an invalid reply"})


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

