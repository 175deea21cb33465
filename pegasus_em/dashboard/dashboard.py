"""The dashboard: server-rendered pages over a user's Pegasus databases and
ensemble manager, under `<prefix>/u/<user>/`.

Every page works without JavaScript (static/dashboard.js only refreshes live
pages and sorts tables) and has a JSON twin: the same URL with `.json`
appended (`index.json` for the workflow list) or `Accept: application/json`.
Values are escaped by `pages`; responses carry a Content-Security-Policy that
allows only this package's own script and style.  Links are built from the
mount point (the WSGI SCRIPT_NAME, plus pegasus-service's URL prefix), so the
pages work under any prefix.

Data: the master DB and STAMPEDE DBs through `stampede` (read-only), the
user's em.db through `ensview` (read-only).  Actions (pause, activate, hold,
replan, rerun, abort, priority, stop trigger) are POST forms carrying a CSRF
token; they are sent to the user's own `pegasus-em` daemon through `emproxy`,
so its engine acts on them at once, and the page they return to says what
happened.

The pages are classes handed what they read: `wfpages.WorkflowPages` (the
workflow list, a workflow, its jobs and files), `statspages.StatsPages`,
`feeds.PegasusFeeds` (5.x's own URLs) and `empages.EnsemblePages`; `Dashboard`
routes to their methods, renders what they return and does the actions.

Two ways in: `Dashboard.call(request)` for pegasus-service's per-user process
(a `web.Request`), and `Dashboard.wsgi` (or `make_app()`, or the module's
`application`) as a plain WSGI application.  Neither authenticates: mount it
behind something that does (pegasus-service does).
"""

import base64
import hashlib
import hmac
import json
import logging
import os
import pwd
import re
import secrets
import sqlite3
import threading
import time
import urllib.parse

from .. import config
from . import assets, dashpage, ensview, pages, stampede
from ..web import web
from .dashpage import JSON, quote_part, quote_path
from ..em.emproxy import EMProxy
from .empages import EnsemblePages
from ..errors import BadRequest, ConfigError, EMError, Forbidden, MethodNotAllowed, NotFound
from .feeds import STAT_FEEDS, PegasusFeeds
from .masterdb import Connections
from .pages import Markup, link
from ..core.states import EnsembleState, WorkflowState
from .statspages import StatsPages
from .wfpages import WorkflowPages

log = logging.getLogger(__name__)

CSP = web.CSP
HTML = "text/html; charset=utf-8"
TOKEN_TTL = 12 * 3600          # seconds a CSRF token stays valid
ENSEMBLE_ACTIONS = {"pause": EnsembleState.PAUSED, "activate": EnsembleState.ACTIVE,
                    "hold": EnsembleState.HELD}
WORKFLOW_ACTIONS = {"replan": WorkflowState.READY, "rerun": WorkflowState.QUEUED,
                    "abort": WorkflowState.ABORTED}
_NAME = r"([A-Za-z0-9_-]+)"
_ID = r"([A-Za-z0-9-]+)"
STATIC = assets.STATIC


class Dashboard:
    """The page classes composed: it routes to their methods, renders their views and
    does the actions (forms checked, then sent to the user's daemon).

    `home_of(user) -> home directory`; `em`: an EMProxy (actions, analyze);
    `file_owner(user) -> uid or None`: files the browser may serve must be that uid's
    (default: the user's own uid when this process is root, else no check)."""

    def __init__(self, home_of=None, em=None, conns=None, file_owner=None, only_user=None):
        self.home_of = home_of or _passwd_home
        self.em = em or EMProxy()
        conns = conns or Connections()
        workflows = stampede.Workflows(conns)
        ensembles = ensview.Ensembles(conns)
        self.only_user = only_user
        self._random_key = secrets.token_bytes(32)
        self._keys = {}
        self._lock = threading.Lock()
        self.wf = WorkflowPages(workflows, ensembles, file_owner or _default_file_owner)
        self.stats = StatsPages(workflows, self.wf)
        self.feeds = PegasusFeeds(workflows, self.wf)
        self.ems = EnsemblePages(ensembles, workflows, self.em, self.csrf)
        self.routes = self._routes()

    # ---- entry points ----------------------------------------------------------------

    def call(self, call):
        """For pegasus-service's UserApp: a web.Request below the prefix (/u/<user>/...) ->
        web.Response; `call.base` (scheme://host + mount point + prefix) starts every link."""
        parts = urllib.parse.urlsplit(call.base)
        origin = "%s://%s" % (parts.scheme, parts.netloc) if parts.netloc else ""
        match = re.match(r"/u/[^/]+(/.*)?\Z", call.path)
        rest = match.group(1) if match else call.path
        return self.handle(call.method, rest or "/", call.query, call.headers, call.body,
                           call.user, call.remote_user, parts.path, origin, call.write)

    def wsgi(self, environ, start_response):
        """Standalone WSGI: PATH_INFO /u/<user>/... and /static/<name>; links are
        root-relative, starting at SCRIPT_NAME."""
        mount = environ.get("SCRIPT_NAME", "").rstrip("/")
        path = environ.get("PATH_INFO") or "/"
        static = re.match(r"/static/(%s)\Z" % assets.NAME, path)
        match = re.match(r"/u/([^/]+)(/.*)?\Z", path)
        if static and assets.serve(static.group(1)):
            r = web.Response(*assets.serve(static.group(1), environ.get("HTTP_IF_NONE_MATCH")))
        elif match is None:
            r = self.error_response(NotFound("No such page: %s (pages are below /u/<user>/)"
                                             % path), None, mount)
        else:
            r = self._wsgi_page(environ, match.group(1), match.group(2) or "/", mount)
        start_response(web.status_line(r.status),
                       r.headers + [("Content-Length", str(len(r.body)))])
        return [r.body]

    def _wsgi_page(self, environ, user, path, mount):
        headers = web.request_headers(environ)
        try:
            web.check_same_origin(environ)
            body = web.read_body(environ, 1 << 20)
        except EMError as e:
            return self.error_response(e, None, mount)
        return self.handle(environ["REQUEST_METHOD"], path, environ.get("QUERY_STRING", ""),
                           headers, body, user, environ.get("REMOTE_USER") or user, mount, "")

    __call__ = wsgi

    def handle(self, method, path, query, headers, body, user, remote_user, prefix, origin,
               may_act=True):
        """`path` is the part after /u/<user> ("/" for the workflow list)."""
        req = None
        try:
            req = dashpage.Request(method, path, query, headers, body, user, remote_user, prefix,
                                   origin, may_act)
            if self.only_user is not None and user != self.only_user:
                raise Forbidden("This dashboard serves only %s's workflows" % self.only_user)
            handler, groups = self.routes.find(req.method, req.path)
            req.home = self.home_of(user)
            result = handler(req, *groups)
            if isinstance(result, web.Response):
                return result
            return self.render(req, result)
        except EMError as e:
            return self.error_response(e, req, prefix)
        except sqlite3.Error as e:
            return self.error_response(_db_error(e), req, prefix)
        except Exception:
            log.exception("dashboard error in %s %s for %s", method, path, user)
            return self.error_response(EMError("Internal error; it has been logged"), req,
                                       prefix, 500)

    def _routes(self):
        wf = r"/r/%s/w/%s" % (_ID, _ID)
        job = wf + r"/j/(\d+)"
        get = lambda h: {"GET": h, "HEAD": h}  # noqa: E731
        ji = job + r"/ji/(\d+)"
        w, s, f, e = self.wf, self.stats, self.feeds, self.ems
        table = [
            (r"/", get(self.workflow_list)),
            (r"/info", get(f.info)),
            (r"/r/%s" % _ID, get(w.root_details)),
            (r"/r/%s/w" % _ID, get(f.root_w)),
            (wf, get(w.workflow_details)),
            (wf + r"/sw", get(f.sub_workflow_feed)),
            (wf + r"/j/(failed|failing|running|successful)", get(f.job_feed)),
            (wf + r"/statistics", get(s.statistics)),
            (wf + r"/statistics/(%s)" % "|".join(STAT_FEEDS), get(f.statistics_feed)),
            (wf + r"/charts", get(s.charts)),
            (wf + r"/charts/(time_chart|gantt_chart)", get(f.chart_feed)),
            (wf + r"/files(/.*)?", get(w.files)),
            (wf + r"/file(/.+)", get(f.file_view)),
            (wf + r"/browser", get(f.browser)),
            (job, get(w.job_details)),
            (ji, get(w.instance_details)),
            (ji + r"/(stdout|stderr)", get(w.job_output)),
            (ji + r"/i", get(f.first_invocation)),
            (ji + r"/i/(successful|failed)", get(f.invocation_feed)),
            (ji + r"/i/(\d+)", get(w.invocation_details)),
            (r"/ensembles", get(e.ensemble_list)),
            (r"/ensembles/%s" % _NAME, dict(get(e.ensemble_page), POST=self.ensemble_action)),
            (r"/ensembles/%s/workflows/%s" % (_NAME, _NAME),
             dict(get(e.em_workflow), POST=self.em_workflow_action)),
            (r"/ensembles/%s/workflows/%s/analyze" % (_NAME, _NAME), get(e.analyze)),
            (r"/ensembles/%s/triggers/%s" % (_NAME, _NAME),
             dict(get(e.trigger_page), POST=self.trigger_action)),
        ]
        return web.Routes(table, missing="No such page: {path}",
                          not_allowed="Method {method} not allowed here")

    def workflow_list(self, req):
        """Our list of root workflows, or, to a script, Pegasus 5.x's DataTables feed."""
        if req.xhr or "draw" in req.args:
            return self.feeds.workflow_table(req)
        return self.wf.workflow_list(req)

    # ---- rendering -------------------------------------------------------------------

    def render(self, req, view):
        if req.json:
            return dashpage.json_response(view.data, view.status)
        flash = self.read_flash(req)
        nav = [("Workflows", req.url(), view.section == "workflows"),
               ("Ensembles", req.url("ensembles"), view.section == "ensembles")]
        who = ("%s, viewing %s" % (req.remote_user, req.user) if req.remote_user != req.user
               else req.user)
        crumbs = [(req.user, req.url(), False)] + view.crumbs
        html = pages.page(view.title, view.body, crumbs=crumbs, nav=nav, who=who,
                          css=req.static("dashboard.css"), js=req.static("dashboard.js"),
                          home=req.url(), icon=req.static("favicon.svg"), flash=flash,
                          refresh=view.refresh,
                          footer=Markup("JSON: %s" % link(_json_url(req), "this page as JSON")))
        return web.Response(view.status, _html_headers(), html.encode("utf-8"))

    def error_response(self, e, req, prefix, status=None):
        status = status or e.status
        headers = []
        if isinstance(e, MethodNotAllowed):
            headers.append(("Allow", ", ".join(e.allowed)))
        if req is None or req.json:
            body = json.dumps({"message": e.message}, ensure_ascii=False).encode("utf-8")
            return web.Response(status, headers + [("Content-Type", JSON)], body)
        title = {400: "Bad request", 403: "Forbidden", 404: "Not found", 405: "Method not allowed",
                 409: "Conflict", 413: "Too large", 503: "Unavailable"}.get(status, "Error")
        body = pages.notice(e.message, "error") + Markup("<p>%s</p>"
                                                         % link(req.url(), "All workflows"))
        html = pages.page(title, body, crumbs=[(req.user, req.url(), False)],
                          nav=[("Workflows", req.url(), False),
                               ("Ensembles", req.url("ensembles"), False)],
                          who=req.remote_user, css=req.static("dashboard.css"),
                          js=req.static("dashboard.js"), icon=req.static("favicon.svg"),
                          home=req.url())
        return web.Response(status, headers + _html_headers(), html.encode("utf-8"))

    # ---- CSRF and confirmation messages ----------------------------------------------

    def key(self, req):
        """The user's signing key: from SECRET_KEY or else PASSWORD of their service.py
        (the same in every process serving them), or a random one for this process."""
        path = os.path.join(req.home, ".pegasus", "service.py")
        try:
            st = os.stat(path)
            stamp = (st.st_mtime_ns, st.st_size, st.st_uid)
        except OSError:
            return self._random_key
        with self._lock:
            found = self._keys.get(path)
        if found and found[0] == stamp:
            return found[1]
        key = self._random_key
        if stamp[2] == os.geteuid():  # never run another user's Python
            try:
                cfg = config.load(path)
                secret = cfg["SECRET_KEY"] or cfg["PASSWORD"]
            except (ConfigError, KeyError):
                secret = None
            if secret:
                key = hmac.new(b"pegasus-dashboard", str(secret).encode("utf-8"),
                               hashlib.sha256).digest()
        with self._lock:
            self._keys[path] = (stamp, key)
        return key

    def csrf(self, req, now=None):
        """A form token; None when the viewer may not act here (forms are then left out)."""
        if not req.write:
            return None
        ts = int(now if now is not None else time.time())
        return "%d.%s" % (ts, self._sign(req, "csrf", str(ts)))

    def _sign(self, req, *parts):
        msg = "\0".join((req.remote_user, req.user) + parts).encode("utf-8")
        return hmac.new(self.key(req), msg, hashlib.sha256).hexdigest()[:32]

    def check_csrf(self, req, now=None):
        origin = req.headers.get("origin")
        if origin and origin != "null" and req.origin and origin != req.origin:
            raise Forbidden("Cross-site request refused (Origin %s)" % origin)
        site = req.headers.get("sec-fetch-site")
        if site and site not in ("same-origin", "none"):
            raise Forbidden("Cross-site request refused (Sec-Fetch-Site: %s)" % site)
        token = req.fields().get("csrf", "")
        ts, _, mac = token.partition(".")
        now = time.time() if now is None else now
        if not ts.isdigit() or not hmac.compare_digest(mac, self._sign(req, "csrf", ts)):
            raise Forbidden("Missing or invalid form token: reload the page and try again")
        if not -300 <= now - int(ts) <= TOKEN_TTL:
            raise Forbidden("The form has expired: reload the page and try again")

    def flash_query(self, req, ok, text):
        payload = base64.urlsafe_b64encode(json.dumps([bool(ok), text]).encode("utf-8"))
        payload = payload.decode("ascii")
        return "%s.%s" % (payload.rstrip("="), self._sign(req, "flash", payload.rstrip("=")))

    def read_flash(self, req):
        value = req.args.get("flash")
        if not value:
            return None
        payload, _, mac = value.rpartition(".")
        if not payload or not hmac.compare_digest(mac, self._sign(req, "flash", payload)):
            return None
        try:
            ok, text = json.loads(base64.urlsafe_b64decode(payload + "=" * (-len(payload) % 4)))
        except (ValueError, TypeError):
            return None
        return bool(ok), str(text)

    # ---- actions through the user's daemon -------------------------------------------

    def act(self, req, method, em_path, fields, describe):
        """Check the form, send the request to the user's pegasus-em, and answer with
        303 back to the page (and a signed message) or, for JSON, the outcome."""
        self.check_csrf(req)
        body = urllib.parse.urlencode(fields).encode("utf-8") if fields else b""
        try:
            status, _headers, data = self.em.forward(
                req.home, req.user, method, em_path, "",
                {"accept": JSON, "content-type": "application/x-www-form-urlencoded"}, body,
                req.origin + req.prefix + "/api/v1/user/" + quote_part(req.user))
            result = _parse_json(data)
            ok = 200 <= status < 300
            message = describe(result) if ok else (result or {}).get("message") or \
                "pegasus-em answered %d" % status
        except EMError as e:
            status, result, ok, message = e.status, None, False, e.message
        log.info("dashboard action by %s for %s: %s %s -> %s", req.remote_user, req.user, method,
                 em_path, status)
        if req.json:
            body = json.dumps({"ok": ok, "status": status, "message": message, "result": result},
                              ensure_ascii=False, default=dashpage.json_default).encode("utf-8")
            return web.Response(200 if ok else (status if status >= 400 else 502),
                                [("Content-Type", JSON)], body)
        return dashpage.redirect(req.base + quote_path(req.path),
                                 {"flash": self.flash_query(req, ok, message)}, 303)

    def ensemble_action(self, req, name):
        action = req.fields().get("action", "")
        if action not in ENSEMBLE_ACTIONS:
            raise BadRequest("Unknown ensemble action %r (pause, activate or hold)" % action)
        return self.act(req, "POST", "/ensembles/%s" % name, {"state": ENSEMBLE_ACTIONS[action]},
                        lambda r: "Ensemble %s is now %s" % (name, (r or {}).get("state", "?")))

    def em_workflow_action(self, req, ensemble, name):
        form = req.fields()
        action = form.get("action", "")
        if action == "priority":
            priority = form.get("priority", "").strip()
            return self.act(req, "POST", "/ensembles/%s/workflows/%s" % (ensemble, name),
                            {"priority": priority},
                            lambda r: "Priority of %s.%s is now %s"
                            % (ensemble, name, (r or {}).get("priority", "?")))
        if action not in WORKFLOW_ACTIONS:
            raise BadRequest("Unknown workflow action %r (replan, rerun, abort or priority)"
                             % action)
        return self.act(req, "POST", "/ensembles/%s/workflows/%s" % (ensemble, name),
                        {"state": WORKFLOW_ACTIONS[action]},
                        lambda r: "%s requested for %s.%s: it is now %s%s" % (
                            action.capitalize(), ensemble, name, (r or {}).get("state", "?"),
                            " (stopping)" if action == "abort" and (r or {}).get("state") in
                            (WorkflowState.PLANNING, WorkflowState.RUNNING) else ""))

    def trigger_action(self, req, ensemble, name):
        if req.fields().get("action") != "stop":
            raise BadRequest("Unknown trigger action (stop)")
        return self.act(req, "DELETE", "/ensembles/%s/triggers/%s" % (ensemble, name), None,
                        lambda r: "Trigger %s of %s stopped" % (name, ensemble))


# ---- helpers ------------------------------------------------------------------------------

def _html_headers():
    return [("Content-Type", HTML), ("Content-Security-Policy", CSP), ("X-Frame-Options", "DENY"),
            ("Referrer-Policy", "same-origin"), ("Cache-Control", "no-store"),
            ("X-Content-Type-Options", "nosniff")]


def _json_url(req):
    path = req.path.rstrip("/")
    base = req.base + quote_path(path)
    base = base + ("/index.json" if path == "" else ".json")
    params = {k: v for k, v in req.args.items() if k != "flash"}
    return pages.query(base, **params)


def _parse_json(data):
    try:
        return json.loads(data.decode("utf-8")) if data else None
    except (ValueError, UnicodeDecodeError):
        return None


def _db_error(e):
    text = str(e)
    if "no such" in text:
        return stampede.SchemaProblem("The database lacks what this page needs (%s): an older or "
                                      "foreign schema; pegasus-db-admin update upgrades it" % text)
    err = EMError("The database cannot be read right now (%s); try again" % text)
    err.status = 503
    return err


def _passwd_home(user):
    try:
        return pwd.getpwnam(user).pw_dir
    except KeyError:
        raise NotFound("No such user: %s" % user)


def _default_file_owner(user):
    if os.geteuid() != 0:
        return None
    try:
        return pwd.getpwnam(user).pw_uid
    except KeyError:
        raise Forbidden("No such user: %s" % user)


def make_app(**kwargs):
    """A WSGI application (see Dashboard for the arguments)."""
    return Dashboard(**kwargs).wsgi


_default = []


def application(environ, start_response):
    """WSGI entry point serving only the user this process runs as (mount it behind
    authentication)."""
    if not _default:
        _default.append(Dashboard(only_user=pwd.getpwuid(os.geteuid()).pw_name))
    return _default[0].wsgi(environ, start_response)
