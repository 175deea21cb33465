"""What pegasus-service does for one user, in a process running as that user.

The listening process authenticates and authorizes; it hands each request to
`UserApp.handle(call)` as a `web.Request` (plain data, the same whether the app
runs in a per-user worker process or, without process switching, in the
listener itself) and sends back the `web.Response`.

Routes (after PEGASUS_SERVICE_URL_PREFIX):
  /api/v1/user/<user>/root...         monitoring REST API (read-only, masterdb)
  /api/v1/user/<user>/ensembles...    that user's ensemble manager (emproxy)
  /ensembles...                       the signed-in user's ensemble manager
  /u/<user>/...                       the dashboard's pages (dashboard.py)
"""

import json
import logging
import pwd
import time
import urllib.parse

from ..web import web
from ..dashboard.dashboard import Dashboard
from ..em.emproxy import EMProxy
from ..errors import BadRequest, EMError, Forbidden, MethodNotAllowed, NotFound
from .monitoring import Monitoring, error_result

log = logging.getLogger(__name__)

_JSON = "application/json"


def api_base(call):
    """Where API answers' `href`s start: absolute when the service knows its public
    URL (5.x clients expect absolute links), else root-relative; never the Host."""
    return call.public or call.base


def user_base(call):
    """Where this user's API lives, for links."""
    return "%s/api/v1/user/%s" % (api_base(call), urllib.parse.quote(call.user, safe=""))


def json_reply(status, obj, headers=()):
    body = json.dumps(obj, ensure_ascii=False).encode("utf-8")
    return web.Response(status, [("Content-Type", _JSON)] + list(headers), body)


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
        self.routes = web.Routes([
            (r"/api/v1/user/[^/]+(/root(?:/.*)?)", {"GET": self.monitoring_api,
                                                     "HEAD": self.monitoring_api}),
            (r"/api/v1/user/[^/]+(/ensembles(?:/.*)?)", _any(self.user_ensembles)),
            (r"(/ensembles(?:/.*)?)", _any(self.own_ensembles)),
            (r"/u/[^/]+(?:/.*)?", _any(self.pages))], end=r"\Z")

    def handle(self, call):
        try:
            handler, groups = self.routes.find(call.method, call.path)
            return handler(call, *groups)
        except EMError as e:
            return error_reply(e)
        except Exception:
            log.exception("internal error in %s %s for %s", call.method, call.path, call.user)
            return json_reply(500, {"message": "Internal server error"})

    # ---- handlers ----------------------------------------------------------

    def monitoring_api(self, call, rest):
        """Every answer, errors too, in 5.x's shape; `pretty-print` with any value (even
        `false`, as 5.x reads it) indents the JSON."""
        args = call.args
        try:
            result = self.monitoring.handle(home_of(call.user), rest, args)
        except EMError as e:
            result = error_result(e)
        except Exception:
            log.exception("internal error in %s %s for %s", call.method, call.path, call.user)
            result = error_result(None)
        pretty = args.get("pretty-print", "") != ""
        return web.Response(result.status, [("Content-Type", _JSON)], result.body(pretty))

    def user_ensembles(self, call, em_path):
        return self._ensembles(call, em_path, user_base(call))

    def own_ensembles(self, call, em_path):
        if call.user != call.remote_user:
            raise Forbidden("/ensembles acts for the signed-in user only")
        return self._ensembles(call, em_path, api_base(call))

    def _ensembles(self, call, em_path, public_base):
        if len(call.body) > 0 and call.method in ("GET", "HEAD", "DELETE"):
            raise BadRequest("%s requests take no body" % call.method)
        status, headers, body = self.em.forward(home_of(call.user), call.user, call.method,
                                                em_path, call.query, call.headers, call.body,
                                                public_base)
        return web.Response(status, headers, body)

    def pages(self, call):
        """The dashboard (it answers 405 itself for methods a page does not take)."""
        return self.dashboard.call(call)


def _any(handler):
    return {m: handler for m in ("GET", "HEAD", "POST", "PUT", "DELETE")}


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

