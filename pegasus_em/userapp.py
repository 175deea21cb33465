"""What pegasus-service does for one user, in a process running as that user.

The listening process authenticates and authorizes; it hands each request to
`UserApp.handle(call)` as a `Call` (plain data, the same whether the app runs
in a per-user worker process or, without process switching, in the listener
itself) and sends back the `Reply`.

Routes (after PEGASUS_SERVICE_URL_PREFIX):
  /api/v1/user/<user>/root...         monitoring REST API (read-only, masterdb)
  /api/v1/user/<user>/ensembles...    that user's ensemble manager (emproxy)
  /ensembles...                       the signed-in user's ensemble manager
  /u/<user>/...                       the dashboard's pages (dashboard.py)
"""

import json
import logging
import pwd
import re
import time
import urllib.parse

from .dashboard import Dashboard
from .emproxy import EMProxy
from .errors import BadRequest, EMError, Forbidden, MethodNotAllowed, NotFound
from .monitoring import Monitoring, error_result

log = logging.getLogger(__name__)

_JSON = "application/json"


class Call:
    """One authorized request, as plain data (it crosses a process boundary)."""

    FIELDS = ("method", "path", "query", "headers", "base", "user", "remote_user", "admin",
              "public", "write")
    __slots__ = FIELDS + ("body",)

    def __init__(self, method, path, query="", headers=None, base="", user="",
                 remote_user="", admin=False, body=b"", public="", write=True):
        self.method = method
        self.path = path              # below the URL prefix, starting with "/"
        self.query = query            # raw query string
        self.headers = headers or {}  # lower-case names; never Authorization
        self.base = base              # mount point + prefix: every (root-relative) link
        self.user = user              # whose data
        self.remote_user = remote_user  # who asks
        self.admin = admin
        self.body = body
        self.public = public          # configured absolute URL of the service, or ""
        self.write = write            # whether the one who asks may act (pages show forms)

    def meta(self):
        return {name: getattr(self, name) for name in self.FIELDS}

    @classmethod
    def from_meta(cls, meta, body):
        return cls(body=body, **{name: meta[name] for name in cls.FIELDS})

    def args(self):
        return dict(urllib.parse.parse_qsl(self.query, keep_blank_values=True))

    def api_base(self):
        """Where API answers' `href`s start: absolute when the service knows its public
        URL (5.x clients expect absolute links), else root-relative; never the Host."""
        return self.public or self.base

    def user_base(self):
        """Where this user's API lives, for links."""
        return "%s/api/v1/user/%s" % (self.api_base(), urllib.parse.quote(self.user, safe=""))


class Reply:
    __slots__ = ("status", "headers", "body", "sandbox")

    def __init__(self, status, headers, body):
        self.status = status
        self.headers = headers
        self.body = body
        self.sandbox = False  # set by the listener: serve under a sandboxing policy


def json_reply(status, obj, headers=()):
    body = json.dumps(obj, ensure_ascii=False).encode("utf-8")
    return Reply(status, [("Content-Type", _JSON)] + list(headers), body)


def error_reply(e):
    headers = []
    if isinstance(e, MethodNotAllowed):
        headers.append(("Allow", ", ".join(e.allowed)))
    return json_reply(e.status, {"message": e.message}, headers)


class UserApp:
    """Route table over the user's data; `handle(call)` never raises."""

    def __init__(self, em_proxy=None, monitoring=None, dashboard=None):
        self.em = em_proxy or EMProxy()
        self.monitoring = monitoring or Monitoring()
        self.dashboard = dashboard or Dashboard(home_of=home_of, em=self.em,
                                                conns=self.monitoring.conns)
        self.routes = []
        self.add_route(r"/api/v1/user/[^/]+(/root(?:/.*)?)", {"GET": self.monitoring_api,
                                                               "HEAD": self.monitoring_api})
        self.add_route(r"/api/v1/user/[^/]+(/ensembles(?:/.*)?)", _ANY, self.user_ensembles)
        self.add_route(r"(/ensembles(?:/.*)?)", _ANY, self.own_ensembles)
        self.add_route(r"/u/[^/]+(?:/.*)?", _ANY, self.pages)

    def add_route(self, pattern, methods, handler=None):
        """`methods` maps a method to handler(call, *groups) -> Reply; or give a method
        list and one handler.  Later routes are tried after earlier ones."""
        if handler is not None:
            methods = {m: handler for m in methods}
        self.routes.append((re.compile(pattern + r"\Z"), methods))

    def handle(self, call):
        try:
            handler, groups = self.route(call.method, call.path)
            return handler(call, *groups)
        except EMError as e:
            return error_reply(e)
        except Exception:
            log.exception("internal error in %s %s for %s", call.method, call.path, call.user)
            return json_reply(500, {"message": "Internal server error"})

    def route(self, method, path):
        allowed = set()
        for pattern, methods in self.routes:
            match = pattern.match(path)
            if match:
                if method in methods:
                    return methods[method], match.groups()
                allowed.update(methods)
        if allowed:
            raise MethodNotAllowed("Method %s not allowed on %s" % (method, path),
                                   sorted(allowed))
        raise NotFound("No such resource: %s" % path)

    # ---- handlers ----------------------------------------------------------

    def monitoring_api(self, call, rest):
        """Every answer, errors too, in 5.x's shape; `pretty-print` with any value (even
        `false`, as 5.x reads it) indents the JSON."""
        args = call.args()
        try:
            result = self.monitoring.handle(home_of(call.user), rest, args)
        except EMError as e:
            result = error_result(e)
        except Exception:
            log.exception("internal error in %s %s for %s", call.method, call.path, call.user)
            result = error_result(None)
        pretty = args.get("pretty-print", "") != ""
        return Reply(result.status, [("Content-Type", _JSON)], result.body(pretty))

    def user_ensembles(self, call, em_path):
        return self._ensembles(call, em_path, call.user_base())

    def own_ensembles(self, call, em_path):
        if call.user != call.remote_user:
            raise Forbidden("/ensembles acts for the signed-in user only")
        return self._ensembles(call, em_path, call.api_base())

    def _ensembles(self, call, em_path, public_base):
        if len(call.body) > 0 and call.method in ("GET", "HEAD", "DELETE"):
            raise BadRequest("%s requests take no body" % call.method)
        status, headers, body = self.em.forward(home_of(call.user), call.user, call.method,
                                                em_path, call.query, call.headers, call.body,
                                                public_base)
        return Reply(status, headers, body)

    def pages(self, call):
        """The dashboard (it answers 405 itself for methods a page does not take)."""
        return Reply(*self.dashboard.call(call))


_ANY = ("GET", "HEAD", "POST", "PUT", "DELETE")


_PASSWD_TTL = 30.0  # seconds a password-database entry is reused
_passwd_cache = {}


def passwd(user, clock=time.monotonic):
    """pwd.getpwnam(user), remembered briefly (NSS lookups cost more than a request);
    KeyError for an unknown user."""
    now = clock()
    found = _passwd_cache.get(user)
    if found is not None and found[0] > now:
        return found[1]
    entry = pwd.getpwnam(user)
    if len(_passwd_cache) > 1024:
        _passwd_cache.clear()
    _passwd_cache[user] = (now + _PASSWD_TTL, entry)
    return entry


def home_of(user):
    try:
        return passwd(user).pw_dir
    except KeyError:
        raise NotFound("No such user: %s" % user)

