"""The HTTP rules every WSGI application of ours applies, written once.

The daemon's REST API (`api`), pegasus-service's listener (`service_app`) and
the standalone dashboard read bodies, check where a state-changing request
comes from and answer with security headers through these functions, so a
rule fixed here holds everywhere.  (Connection-level rules, such as caps and
timeouts, live in `httpd`.)

Browsers are the threat these rules meet: a page on another site can make a
signed-in user's browser send a form post with cached Basic credentials.  A
browser says where a request comes from (`Origin`, `Sec-Fetch-Site`); a
non-browser client (the CLI, curl, gateway scripts) says nothing and is let
through.
"""

import http
import re

from .errors import BadRequest, Forbidden, LengthRequired, TooLarge, UnsupportedMediaType

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


def status_line(code):
    try:
        return "%d %s" % (code, http.HTTPStatus(code).phrase)
    except ValueError:
        return "%d Unknown" % code


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
