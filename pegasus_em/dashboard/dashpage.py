"""What the dashboard's page classes share: the request they are given (one
below /u/<user>) and the responses they return (a `View`, whose JSON data and
HTML body `dashboard.Dashboard.render` makes a page of, or a raw response).
"""

import json
import re
import urllib.parse

from . import assets, pages
from ..web import web
from ..errors import BadRequest

JSON = "application/json"


class Request(web.Request):
    """One request to the dashboard, below /u/<user>: `path` is what follows /u/<user>,
    `base` (origin + prefix + /u/<user>) starts every link, `write` is False for an
    admin viewing someone else's (no action forms), `home` is the user's home."""

    __slots__ = ("prefix", "origin", "json", "xhr", "home")

    def __init__(self, method, path, query, headers, body, user, remote_user, prefix, origin,
                 may_act=True):
        prefix = prefix.rstrip("/")
        # In the file browser `x.json` is a file name: there only Accept asks for JSON.
        self.json = path.endswith(".json") and not _FILES.match(path)
        if self.json:
            path = path[:-len(".json")]
            if path.endswith("/index"):
                path = path[:-len("index")]
        else:
            accept = headers.get("accept", "")
            self.json = "application/json" in accept and "text/html" not in accept
        super().__init__(method, path or "/", query or "", headers,
                         "%s%s/u/%s" % (origin, prefix, quote_part(user)), user,
                         remote_user=remote_user or user, body=body, write=may_act)
        self.prefix = prefix
        self.origin = origin
        self.xhr = headers.get("x-requested-with", "").lower() == "xmlhttprequest"
        self.home = None

    def navigating(self):
        """A browser loading a page (not a script, not 5.x's own XMLHttpRequests)."""
        return not self.xhr and "text/html" in self.headers.get("accept", "")

    def url(self, *parts, **query):
        """URL of a dashboard page of this user; `parts` are path segments."""
        return pages.query("%s/%s" % (self.base, "/".join(quote_part(p) for p in parts)), **query)

    def here(self, **query):
        """This page's URL with a new query (None drops a parameter)."""
        params = dict(self.args)
        params.pop("flash", None)
        params.update(query)
        return pages.query(self.base + quote_path(self.path), **params)

    def static(self, name):
        """Static files live at <mount>/static/, served by whoever answers the browser."""
        return pages.query("%s/static/%s" % (self.prefix, quote_part(name)), v=assets.version(name))

    def fields(self):
        """The posted form's fields."""
        if self.form is None:
            if self.headers.get("content-type", "").split(";")[0].strip() not in (
                    "", "application/x-www-form-urlencoded"):
                raise BadRequest("Send the form as application/x-www-form-urlencoded")
            try:
                text = self.body.decode("utf-8")
                self.form = dict(urllib.parse.parse_qsl(text, keep_blank_values=True,
                                                        errors="strict"))
            except (UnicodeDecodeError, ValueError):
                raise BadRequest("Malformed form body")
        return self.form

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


def quote_part(part):
    return urllib.parse.quote(str(part), safe="")


def quote_path(path):
    return "/".join(urllib.parse.quote(p, safe="") for p in path.split("/"))


class View:
    """What a page handler returns: JSON data and the HTML body made from it."""

    __slots__ = ("title", "data", "body", "crumbs", "refresh", "status", "section")

    def __init__(self, title, data, body, crumbs=(), refresh=None, status=200,
                 section="workflows"):
        self.title, self.data, self.body, self.crumbs = title, data, body, list(crumbs)
        self.refresh, self.status, self.section = refresh, status, section


def raw_response(data, content_type, filename):
    """File contents or job output: never rendered as a page of this site (sandboxed;
    downloads named)."""
    headers = [("Content-Type", content_type), ("Content-Security-Policy", web.SANDBOX_CSP),
               ("X-Content-Type-Options", "nosniff"), ("Cache-Control", "no-store")]
    if filename is not None:
        headers.append(("Content-Disposition", "attachment; filename*=UTF-8''%s"
                        % urllib.parse.quote(filename, safe="")))
    return web.Response(200, headers, data)


def json_response(data, status=200):
    body = json.dumps(data, ensure_ascii=False, default=json_default).encode("utf-8")
    return web.Response(status, [("Content-Type", JSON), ("Cache-Control", "no-store")], body)


def redirect(target, query=None, status=302):
    """To one of our pages (`target` made by req.url: root-relative)."""
    return web.Response(status, [("Location", pages.query(target, **query) if query else target),
                                 ("Content-Type", "text/plain; charset=utf-8"),
                                 ("Cache-Control", "no-store")], b"")


def json_default(obj):
    if isinstance(obj, bytes):
        return obj.decode("utf-8", "replace")
    if isinstance(obj, (set, tuple)):
        return list(obj)
    return str(obj)
