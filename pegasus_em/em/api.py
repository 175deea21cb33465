"""WSGI application of the ensemble-manager REST API (Pegasus 5.x wire format).

Thin by design: a route table, request parsing, one call into `ops`, and
`wire` rendering.  Every expected failure is an EMError rendered as
{"message": ...} with its 4xx status; anything else is logged and answered
with a bare 500, never a traceback.
"""

import json
import logging
import urllib.parse

from . import wire
from ..web import web
from ..errors import BadRequest, EMError, MethodNotAllowed
from ..core.states import TriggerType

log = logging.getLogger(__name__)

MAX_BODY = 1 << 20
MAX_IMPORT_BODY = 64 << 20  # POST /import carries a whole Pegasus 5.x workflow.db
_JSON = [("Content-Type", "application/json")]
_NAME = r"([^/]+)"


class Streamed:
    """A body sent as it is made (a listing of 100,000 workflows is never held whole):
    its length, known up front, and its pieces; closing it ends what makes them."""

    __slots__ = ("length", "pieces")

    def __init__(self, length, pieces):
        self.length = length
        self.pieces = pieces

    def __len__(self):
        return self.length

    def __iter__(self):
        return iter(self.pieces)

    def close(self):
        self.pieces.close()


def json_response(obj, status=200, headers=()):
    return web.Response(status, _JSON + list(headers), wire.encode(obj))


_CREATED = wire.encode(wire.message("created"))


def created(location, warning=None):
    """201 + Location, as 5.x; `warning` (ours) says what will not work as it is."""
    if not warning:
        return web.Response(201, _JSON + [("Location", location)], _CREATED)
    body = wire.message("created")
    body["warning"] = warning
    return json_response(body, 201, [("Location", location)])


class App:
    """The API as a WSGI callable; `authenticate(header) -> user` raises Unauthorized.

    `base_url` (the daemon's own address, set once it is bound) starts every `href`
    and `Location`: the Host header a client sent never reaches an answer."""

    def __init__(self, ops, authenticate, max_body=MAX_BODY, base_url=""):
        self.ops = ops
        self.authenticate = authenticate
        self.max_body = max_body
        self.base_url = base_url.rstrip("/")
        self.routes = self._routes()

    def __call__(self, environ, start_response):
        try:
            response = self.handle(environ)
        except EMError as e:
            response = self.error(e)
        except Exception:
            log.exception("internal error in %s %s", environ.get("REQUEST_METHOD"),
                          environ.get("PATH_INFO"))
            response = json_response(wire.message("Internal server error"), 500)
        start_response(web.status_line(response.status),
                       response.headers + [("Content-Length", str(len(response.body)))])
        return response.body if isinstance(response.body, Streamed) else [response.body]

    def error(self, e):
        headers = []
        if e.status == 401:
            headers.append(("WWW-Authenticate", 'Basic realm="pegasus-em"'))
        if isinstance(e, MethodNotAllowed):
            headers.append(("Allow", ", ".join(e.allowed)))
        return json_response(wire.message(e.message), e.status, headers)

    def handle(self, environ):
        web.check_same_origin(environ)
        web.check_not_a_form_post(environ)
        user = self.authenticate(environ.get("HTTP_AUTHORIZATION"))
        method = environ["REQUEST_METHOD"]
        path = environ.get("PATH_INFO") or "/"
        handler, args = self.routes.find(method, path)
        form = self.read_form(environ, MAX_IMPORT_BODY if path.rstrip("/") == "/import"
                              else self.max_body)
        base = self.base_url + environ.get("SCRIPT_NAME", "").rstrip("/")
        return handler(web.Request(method, path, environ.get("QUERY_STRING", ""), None, base,
                                   user, form), *args)

    def read_form(self, environ, max_body=None):
        body = web.read_body(environ, self.max_body if max_body is None else max_body)
        if not body:
            return {}
        web.check_body_type(environ, body)
        return parse_body(body, environ.get("CONTENT_TYPE", ""))

    # ---- routes -----------------------------------------------------------

    def _routes(self):
        table = [
            (r"/ensembles", {"GET": self.list_ensembles, "POST": self.create_ensemble}),
            (r"/ensembles/%s" % _NAME, {"GET": self.get_ensemble, "PUT": self.update_ensemble,
                                        "POST": self.update_ensemble}),
            (r"/ensembles/%s/workflows" % _NAME, {"GET": self.list_workflows,
                                                  "POST": self.submit}),
            (r"/ensembles/%s/workflows/%s" % (_NAME, _NAME),
             {"GET": self.get_workflow, "PUT": self.update_workflow,
              "POST": self.update_workflow}),
            (r"/ensembles/%s/workflows/%s/analyze" % (_NAME, _NAME), {"GET": self.analyze}),
            (r"/ensembles/%s/workflows/%s/events" % (_NAME, _NAME),
             {"GET": self.workflow_events}),
            (r"/ensembles/%s/events" % _NAME, {"GET": self.ensemble_events}),
            (r"/ensembles/%s/workflows/%s/why" % (_NAME, _NAME), {"GET": self.why}),
            (r"/events", {"GET": self.all_events}),
            (r"/metrics", {"GET": self.metrics}),
            (r"/import", {"POST": self.import_pegasus}),
            (r"/ensembles/%s/triggers" % _NAME, {"GET": self.list_triggers}),
            (r"/ensembles/%s/triggers/cron" % _NAME, {"POST": self.create_cron_trigger}),
            (r"/ensembles/%s/triggers/file_pattern" % _NAME,
             {"POST": self.create_file_pattern_trigger}),
            (r"/ensembles/%s/triggers/%s" % (_NAME, _NAME),
             {"GET": self.get_trigger, "DELETE": self.delete_trigger,
              "POST": self.create_named_trigger}),
            (r"/ensembles/%s/triggers/%s/start" % (_NAME, _NAME), {"POST": self.start_trigger}),
        ]
        return web.Routes(table)

    def list_ensembles(self, req):
        ensembles = self.ops.list_ensembles()
        if _flag(req.args.get("detail")):  # ours: throttles, auto-hold and counts too
            counts = self.ops.ensemble_counts()
            return json_response([wire.ensemble_detail(e, req.base, counts.get(e.id, {}))
                                  for e in ensembles])
        return json_response([wire.ensemble(e, req.base) for e in ensembles])

    def create_ensemble(self, req):
        f = req.form
        e = self.ops.create_ensemble(f.get("name"), f.get("max_planning", 1),
                                     f.get("max_running", 1), f.get("max_failures"))
        return created(wire.ensemble_url(req.base, e.name))

    def _ensemble(self, req, e):
        counts = self.ops.ensemble_counts(e.name).get(e.id, {})
        return json_response(wire.ensemble_detail(e, req.base, counts))

    def get_ensemble(self, req, name):
        return self._ensemble(req, self.ops.get_ensemble(name))

    def update_ensemble(self, req, name):
        f = req.form
        e = self.ops.update_ensemble(name, f.get("state"), f.get("max_planning"),
                                     f.get("max_running"), f.get("max_failures"))
        return self._ensemble(req, e)

    def list_workflows(self, req, ensemble):
        fields = wire.WORKFLOW_LIST_FIELDS
        if _flag(req.args.get("detail")):  # ours: reason, run-after, time in the state
            fields = fields + wire.WORKFLOW_DETAIL_FIELDS
        found = self.ops.list_workflows_stream(ensemble, fields,
                                               wire.workflow_list_prefix(req.base, ensemble))
        if found is not None:
            return web.Response(200, _JSON, Streamed(*found))
        rows = self.ops.list_workflow_rows(ensemble)
        return json_response(wire.workflow_rows(rows, req.base, _flag(req.args.get("detail"))))

    def submit(self, req, ensemble):
        f = req.form
        if f.get("name") is None:  # an empty one is an invalid name, as in 5.x
            raise BadRequest("Specify ensemble workflow 'name'")
        if f.get("basedir") in (None, ""):
            raise BadRequest("Specify 'basedir' where plan command should be executed")
        if f.get("plan_command") in (None, ""):
            raise BadRequest("Specify 'plan_command' that should be executed to plan workflow")
        w = self.ops.submit(ensemble, f["name"], f["basedir"], f["plan_command"],
                            f.get("priority", 0), f.get("after"), f.get("run_after"))
        return created(wire.workflow_url(req.base, w.ensemble, w.name))

    def _workflow(self, req, w):
        return json_response(wire.workflow(w, req.base, self.ops.log_path(w.ensemble, w.name),
                                           self.ops.dependencies(w)))

    def get_workflow(self, req, ensemble, workflow):
        return self._workflow(req, self.ops.get_workflow(ensemble, workflow))

    def update_workflow(self, req, ensemble, workflow):
        f = req.form
        w = self.ops.update_workflow(ensemble, workflow, f.get("state"), f.get("priority"))
        return self._workflow(req, w)

    def analyze(self, req, ensemble, workflow):
        text = self.ops.analyze(ensemble, workflow)
        return web.Response(200, [("Content-Type", "text/plain; charset=utf-8")],
                            text.encode("utf-8"))

    def _events(self, req, ensemble, workflow=None):
        q = req.args
        rows = self.ops.history(ensemble, workflow, q.get("after", 0), q.get("limit", 100),
                                q.get("before"))
        return json_response([wire.event(r) for r in rows])

    def all_events(self, req):
        return self._events(req, None)

    def why(self, req, ensemble, workflow):
        return json_response(self.ops.why(ensemble, workflow))

    def metrics(self, req):
        return web.Response(200, [("Content-Type", "text/plain; version=0.0.4; charset=utf-8")],
                            self.ops.metrics().encode("utf-8"))

    def import_pegasus(self, req):
        f = req.form
        rows = {"source": f.get("source"), "ensembles": f.get("ensembles"),
                "workflows": f.get("workflows"), "triggers": f.get("triggers")}
        for key in ("ensembles", "workflows", "triggers"):
            if rows[key] is not None and not isinstance(rows[key], list):
                raise BadRequest("'%s' must be a JSON list of rows" % key)
        return json_response(self.ops.import_pegasus(rows))

    def workflow_events(self, req, ensemble, workflow):
        return self._events(req, ensemble, workflow)

    def ensemble_events(self, req, ensemble):
        return self._events(req, ensemble)

    def list_triggers(self, req, ensemble):
        return json_response([wire.trigger(t, req.base, names, count)
                              for t, names, count in self.ops.trigger_views(ensemble)])

    def get_trigger(self, req, ensemble, name):
        (t, names, count), = self.ops.trigger_views(ensemble, name)
        return json_response(wire.trigger(t, req.base, names, count))

    def delete_trigger(self, req, ensemble, name):
        purge = _flag(req.args.get("purge"))
        return json_response(wire.message(self.ops.stop_trigger(ensemble, name, purge)), 202)

    def start_trigger(self, req, ensemble, name):
        return json_response(wire.message(self.ops.start_trigger(ensemble, name,
                                                                 req.form.get("timeout"))))

    def create_cron_trigger(self, req, ensemble):
        return self._create_trigger(req, ensemble, req.form.get("trigger"), TriggerType.CRON)

    def create_file_pattern_trigger(self, req, ensemble):
        return self._create_trigger(req, ensemble, req.form.get("trigger"),
                                    TriggerType.FILE_PATTERN)

    def create_named_trigger(self, req, ensemble, name):
        """The older 5.x client posts to /triggers/<name> with a `type` field, and
        its interval and timeout in seconds (the newer routes want a unit)."""
        type_ = str(req.form.get("type") or "").upper()
        if type_ == "CHRON":  # spelled so by an early 5.x release
            type_ = TriggerType.CRON
        seconds = {k: _seconds(req.form.get(k)) for k in ("interval", "timeout")}
        return self._create_trigger(req, ensemble, name, type_, **seconds)

    def _create_trigger(self, req, ensemble, name, type_, **durations):
        f = dict(req.form, **durations)
        t = self.ops.create_trigger(
            ensemble, name, type_, f.get("workflow_script"),
            _json_list(f.get("workflow_args", "[]"), "workflow_args"),
            f.get("interval"), f.get("timeout"),
            _json_list(f.get("file_patterns", "[]"), "file_patterns"), f.get("basedir"))
        return created(wire.trigger_url(req.base, t.ensemble, t.name),
                       self.ops.script_warning(t.script))


# ---- request parsing ------------------------------------------------------

def parse_body(body, content_type):
    """Form-encoded (what the 5.x client sends) or a JSON object."""
    try:
        text = body.decode("utf-8")
    except UnicodeDecodeError:
        raise BadRequest("Request body is not valid UTF-8")
    if content_type.split(";")[0].strip().lower() == "application/json":
        try:
            obj = json.loads(text)
        except ValueError as e:
            raise BadRequest("Invalid JSON body: %s" % e)
        if not isinstance(obj, dict):
            raise BadRequest("JSON body must be an object")
        return {k: (v if isinstance(v, (list, str)) or v is None else
                    json.dumps(v) if isinstance(v, (dict, bool)) else str(v))
                for k, v in obj.items()}
    form = {}
    try:
        for pair in text.split("&"):
            if pair:
                key, _, value = pair.partition("=")
                form.setdefault(_unquote(key), _unquote(value))  # the first wins, as in Flask
    except (ValueError, UnicodeDecodeError):
        raise BadRequest("Malformed form body")
    return form


def _unquote(text):
    """urllib's unquote_plus with errors="strict", skipped when there is nothing to
    undo (most names and values): parse_qsl cost more than routing and auth together."""
    if "%" not in text and "+" not in text:
        return text
    return urllib.parse.unquote(text.replace("+", " "), errors="strict")


def _flag(value):
    return str(value or "").lower() in ("1", "true", "yes")


def _seconds(value):
    """`10` (seconds, from the older client) as `10s`; anything else as it came."""
    text = str(value or "").strip()
    return text + "s" if text.isdigit() else value


def _json_list(value, field):
    """A list, sent either as JSON text (5.x form field) or as a JSON array."""
    if isinstance(value, list):
        return value
    if value is None or value == "":
        return []
    try:
        obj = json.loads(value)
    except ValueError:
        raise BadRequest("%s must be given as a list serialized to json" % field)
    if obj is None:
        return []
    if not isinstance(obj, list):
        raise BadRequest("%s must be given as a list serialized to json" % field)
    return obj
