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

Two ways in: `Dashboard.call(call)` for pegasus-service's per-user process
(a `userapp.Call`), and `Dashboard.wsgi` (or `make_app()`, or the module's
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

from . import assets, config, ensview, pages, stampede, web
from .emproxy import EMProxy
from .empages import EnsemblePages
from .feeds import STAT_FEEDS, PegasusFeeds
from .statspages import StatsPages
from .errors import BadRequest, ConfigError, EMError, Forbidden, MethodNotAllowed, NotFound
from .masterdb import Connections
from .pages import Markup, link
from .states import EnsembleState, WorkflowState
from .wfpages import WorkflowPages

log = logging.getLogger(__name__)

CSP = web.CSP
RAW_CSP = web.SANDBOX_CSP
HTML = "text/html; charset=utf-8"
JSON = "application/json"
TOKEN_TTL = 12 * 3600          # seconds a CSRF token stays valid
ENSEMBLE_ACTIONS = {"pause": EnsembleState.PAUSED, "activate": EnsembleState.ACTIVE,
                    "hold": EnsembleState.HELD}
WORKFLOW_ACTIONS = {"replan": WorkflowState.READY, "rerun": WorkflowState.QUEUED,
                    "abort": WorkflowState.ABORTED}
_NAME = r"([A-Za-z0-9_-]+)"
_ID = r"([A-Za-z0-9-]+)"
STATIC = assets.STATIC


class Request:
    """One request to the dashboard, below /u/<user>."""

    __slots__ = ("method", "path", "args", "headers", "body", "user", "remote_user", "prefix",
                 "origin", "base", "json", "xhr", "home", "may_act", "_form")

    def __init__(self, method, path, query, headers, body, user, remote_user, prefix, origin,
                 may_act=True):
        self.may_act = may_act  # False: an admin viewing someone else's (no action forms)
        self.method = method
        self.headers = headers
        self.body = body
        self.user = user
        self.remote_user = remote_user or user
        self.prefix = prefix.rstrip("/")
        self.origin = origin
        self.base = "%s%s/u/%s" % (origin, self.prefix, _q(user))  # every link starts here
        self.args = dict(urllib.parse.parse_qsl(query or "", keep_blank_values=True))
        # In the file browser `x.json` is a file name: there only Accept asks for JSON.
        self.json = path.endswith(".json") and not _FILES.match(path)
        if self.json:
            path = path[:-len(".json")]
            if path.endswith("/index"):
                path = path[:-len("index")]
        else:
            accept = headers.get("accept", "")
            self.json = "application/json" in accept and "text/html" not in accept
        self.xhr = headers.get("x-requested-with", "").lower() == "xmlhttprequest"
        self.path = path or "/"
        self.home = None
        self._form = None

    def url(self, *parts, **query):
        """URL of a dashboard page of this user; `parts` are path segments."""
        return pages.query("%s/%s" % (self.base, "/".join(_q(p) for p in parts)), **query)

    def here(self, **query):
        """This page's URL with a new query (None drops a parameter)."""
        params = dict(self.args)
        params.pop("flash", None)
        params.update(query)
        return pages.query(self.base + _quote_path(self.path), **params)

    def static(self, name):
        """Static files live at <mount>/static/, served by whoever answers the browser."""
        return pages.query("%s/static/%s" % (self.prefix, _q(name)), v=assets.version(name))

    def form(self):
        if self._form is None:
            if self.headers.get("content-type", "").split(";")[0].strip() not in (
                    "", "application/x-www-form-urlencoded"):
                raise BadRequest("Send the form as application/x-www-form-urlencoded")
            try:
                text = self.body.decode("utf-8")
                self._form = dict(urllib.parse.parse_qsl(text, keep_blank_values=True,
                                                         errors="strict"))
            except (UnicodeDecodeError, ValueError):
                raise BadRequest("Malformed form body")
        return self._form

    def int_arg(self, name, default=0, minimum=0, maximum=None):
        value = self.args.get(name, "")
        if value == "":
            return default
        try:
            n = int(value)
        except ValueError:
            raise BadRequest("Argument %s must be an integer, not %r" % (name, value))
        if n < minimum or (maximum is not None and n > maximum):
            raise BadRequest("Argument %s out of range: %d" % (name, n))
        return n


_FILES = re.compile(r"/r/[^/]+/w/[^/]+/files?/")


def _q(part):
    return urllib.parse.quote(str(part), safe="")


def _quote_path(path):
    return "/".join(urllib.parse.quote(p, safe="") for p in path.split("/"))


class View:
    """What a page handler returns: JSON data and the HTML body made from it."""

    __slots__ = ("title", "data", "body", "crumbs", "refresh", "status", "section")

    def __init__(self, title, data, body, crumbs=(), refresh=None, status=200,
                 section="workflows"):
        self.title, self.data, self.body, self.crumbs = title, data, body, list(crumbs)
        self.refresh, self.status, self.section = refresh, status, section


class Response:
    __slots__ = ("status", "headers", "body")

    def __init__(self, status, headers, body):
        self.status, self.headers, self.body = status, headers, body


class Dashboard(WorkflowPages, StatsPages, PegasusFeeds, EnsemblePages):
    """`home_of(user) -> home directory`; `em`: an EMProxy (actions, analyze);
    `file_owner(user) -> uid or None`: files the browser may serve must be that uid's
    (default: the user's own uid when this process is root, else no check)."""

    def __init__(self, home_of=None, em=None, conns=None, file_owner=None, only_user=None):
        self.home_of = home_of or _passwd_home
        self.em = em or EMProxy()
        self.conns = conns or Connections()
        self.workflows = stampede.Workflows(self.conns)
        self.ensembles = ensview.Ensembles(self.conns)
        self.file_owner = file_owner or _default_file_owner
        self.only_user = only_user
        self._random_key = secrets.token_bytes(32)
        self._keys = {}
        self._lock = threading.Lock()
        self.routes = self._routes()

    # ---- entry points ----------------------------------------------------------------

    def call(self, call):
        """For pegasus-service's UserApp: a Call below the prefix (/u/<user>/...) -> (status,
        headers, body); `call.base` (scheme://host + mount point + prefix) starts every link."""
        parts = urllib.parse.urlsplit(call.base)
        origin = "%s://%s" % (parts.scheme, parts.netloc) if parts.netloc else ""
        match = re.match(r"/u/[^/]+(/.*)?\Z", call.path)
        rest = match.group(1) if match else call.path
        r = self.handle(call.method, rest or "/", call.query, call.headers, call.body, call.user,
                        call.remote_user, parts.path, origin, call.write)
        return r.status, r.headers, r.body

    def wsgi(self, environ, start_response):
        """Standalone WSGI: PATH_INFO /u/<user>/... and /static/<name>; links are
        root-relative, starting at SCRIPT_NAME."""
        mount = environ.get("SCRIPT_NAME", "").rstrip("/")
        path = environ.get("PATH_INFO") or "/"
        static = re.match(r"/static/(%s)\Z" % assets.NAME, path)
        match = re.match(r"/u/([^/]+)(/.*)?\Z", path)
        if static and assets.serve(static.group(1)):
            r = Response(*assets.serve(static.group(1), environ.get("HTTP_IF_NONE_MATCH")))
        elif match is None:
            r = self.error_response(NotFound("No such page: %s (pages are below /u/<user>/)"
                                             % path), None, mount)
        else:
            r = self._wsgi_page(environ, match.group(1), match.group(2) or "/", mount)
        start_response(web.status_line(r.status),
                       r.headers + [("Content-Length", str(len(r.body)))])
        return [r.body]

    def _wsgi_page(self, environ, user, path, mount):
        headers = {k[5:].lower().replace("_", "-"): v for k, v in environ.items()
                   if k.startswith("HTTP_") and k not in ("HTTP_AUTHORIZATION", "HTTP_COOKIE")}
        if environ.get("CONTENT_TYPE"):
            headers["content-type"] = environ["CONTENT_TYPE"]
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
            req = Request(method, path, query, headers, body, user, remote_user, prefix, origin,
                          may_act)
            if self.only_user is not None and user != self.only_user:
                raise Forbidden("This dashboard serves only %s's workflows" % self.only_user)
            handler, groups = self.route(req)
            req.home = self.home_of(user)
            result = handler(req, *groups)
            if isinstance(result, Response):
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

    def route(self, req):
        allowed = set()
        for pattern, methods in self.routes:
            match = pattern.match(req.path)
            if match:
                handler = methods.get(req.method)
                if handler is not None:
                    return handler, match.groups()
                allowed.update(methods)
        if allowed:
            raise MethodNotAllowed("Method %s not allowed here" % req.method, sorted(allowed))
        raise NotFound("No such page: %s" % req.path)

    def _routes(self):
        wf = r"/r/%s/w/%s" % (_ID, _ID)
        job = wf + r"/j/(\d+)"
        get = lambda h: {"GET": h, "HEAD": h}  # noqa: E731
        ji = job + r"/ji/(\d+)"
        table = [
            (r"/", get(self.workflow_list)),
            (r"/info", get(self.info)),
            (r"/r/%s" % _ID, get(self.root_details)),
            (r"/r/%s/w" % _ID, get(self.root_w)),
            (wf, get(self.workflow_details)),
            (wf + r"/sw", get(self.sub_workflow_feed)),
            (wf + r"/j/(failed|failing|running|successful)", get(self.job_feed)),
            (wf + r"/statistics", get(self.statistics)),
            (wf + r"/statistics/(%s)" % "|".join(STAT_FEEDS), get(self.statistics_feed)),
            (wf + r"/charts", get(self.charts)),
            (wf + r"/charts/(time_chart|gantt_chart)", get(self.chart_feed)),
            (wf + r"/files(/.*)?", get(self.files)),
            (wf + r"/file(/.+)", get(self.file_view)),
            (wf + r"/browser", get(self.browser)),
            (job, get(self.job_details)),
            (ji, get(self.instance_details)),
            (ji + r"/(stdout|stderr)", get(self.job_output)),
            (ji + r"/i", get(self.first_invocation)),
            (ji + r"/i/(successful|failed)", get(self.invocation_feed)),
            (ji + r"/i/(\d+)", get(self.invocation_details)),
            (r"/ensembles", get(self.ensemble_list)),
            (r"/ensembles/%s" % _NAME, dict(get(self.ensemble_page), POST=self.ensemble_action)),
            (r"/ensembles/%s/workflows/%s" % (_NAME, _NAME),
             dict(get(self.em_workflow), POST=self.em_workflow_action)),
            (r"/ensembles/%s/workflows/%s/analyze" % (_NAME, _NAME), get(self.analyze)),
            (r"/ensembles/%s/triggers/%s" % (_NAME, _NAME),
             dict(get(self.trigger_page), POST=self.trigger_action)),
        ]
        return [(re.compile(p + r"/?\Z"), m) for p, m in table]

    # ---- rendering -------------------------------------------------------------------

    @staticmethod
    def view(title, data, body, crumbs=(), refresh=None, status=200, section="workflows"):
        return View(title, data, body, crumbs, refresh, status, section)

    @staticmethod
    def raw_response(data, content_type, filename):
        """File contents or job output: never rendered as a page of this site (sandboxed;
        downloads named)."""
        headers = [("Content-Type", content_type), ("Content-Security-Policy", RAW_CSP),
                   ("X-Content-Type-Options", "nosniff"), ("Cache-Control", "no-store")]
        if filename is not None:
            headers.append(("Content-Disposition", "attachment; filename*=UTF-8''%s"
                            % urllib.parse.quote(filename, safe="")))
        return Response(200, headers, data)

    @staticmethod
    def feed(data):
        """JSON whatever was asked for: Pegasus 5.x's feeds are JSON to every client."""
        body = json.dumps(data, ensure_ascii=False, default=_json_default).encode("utf-8")
        return Response(200, [("Content-Type", JSON), ("Cache-Control", "no-store")], body)

    @staticmethod
    def redirect(req, target, **query):
        """302 to one of our pages (`target` made by req.url: root-relative)."""
        return Response(302, [("Location", pages.query(target, **query) if query else target),
                              ("Content-Type", "text/plain; charset=utf-8"),
                              ("Cache-Control", "no-store")], b"")

    def render(self, req, view):
        if req.json:
            body = json.dumps(view.data, ensure_ascii=False, default=_json_default).encode("utf-8")
            return Response(view.status, [("Content-Type", JSON), ("Cache-Control", "no-store")],
                            body)
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
        return Response(view.status, _html_headers(), html.encode("utf-8"))

    def error_response(self, e, req, prefix, status=None):
        status = status or e.status
        headers = []
        if isinstance(e, MethodNotAllowed):
            headers.append(("Allow", ", ".join(e.allowed)))
        if req is None or req.json:
            body = json.dumps({"message": e.message}, ensure_ascii=False).encode("utf-8")
            return Response(status, headers + [("Content-Type", JSON)], body)
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
        return Response(status, headers + _html_headers(), html.encode("utf-8"))

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
        if not req.may_act:
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
        token = req.form().get("csrf", "")
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
                req.origin + req.prefix + "/api/v1/user/" + _q(req.user))
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
                              ensure_ascii=False, default=_json_default).encode("utf-8")
            return Response(200 if ok else (status if status >= 400 else 502),
                            [("Content-Type", JSON)], body)
        target = pages.query(req.base + _quote_path(req.path),
                             flash=self.flash_query(req, ok, message))
        return Response(303, [("Location", target), ("Content-Type", "text/plain; charset=utf-8"),
                              ("Cache-Control", "no-store")], b"")

    def ensemble_action(self, req, name):
        action = req.form().get("action", "")
        if action not in ENSEMBLE_ACTIONS:
            raise BadRequest("Unknown ensemble action %r (pause, activate or hold)" % action)
        return self.act(req, "POST", "/ensembles/%s" % name, {"state": ENSEMBLE_ACTIONS[action]},
                        lambda r: "Ensemble %s is now %s" % (name, (r or {}).get("state", "?")))

    def em_workflow_action(self, req, ensemble, name):
        form = req.form()
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
        if req.form().get("action") != "stop":
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
    base = req.base + _quote_path(path)
    base = base + ("/index.json" if path == "" else ".json")
    params = {k: v for k, v in req.args.items() if k != "flash"}
    return pages.query(base, **params)


def _json_default(obj):
    if isinstance(obj, bytes):
        return obj.decode("utf-8", "replace")
    if isinstance(obj, (set, tuple)):
        return list(obj)
    return str(obj)


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
