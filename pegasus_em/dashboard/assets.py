"""The dashboard's own static files (CSS, JavaScript, icon), read once.

They are served by the process that answers the browser (pegasus-service's
listener, or the standalone dashboard), never by a process running as a user:
the page's Content-Security-Policy lets scripts come only from this origin, so
whatever serves `/static/` decides what runs in everybody's browser.
"""

import hashlib
import os

STATIC_DIR = os.path.join(os.path.dirname(os.path.abspath(__file__)), "static")
TYPES = {".css": "text/css; charset=utf-8", ".js": "text/javascript; charset=utf-8",
         ".svg": "image/svg+xml"}
NAME = r"[A-Za-z0-9_-]+\.[a-z]+"


def _load():
    files = {}
    try:
        names = os.listdir(STATIC_DIR)
    except OSError:
        return files
    for name in names:
        ext = os.path.splitext(name)[1]
        if ext in TYPES:
            with open(os.path.join(STATIC_DIR, name), "rb") as f:
                data = f.read()
            files[name] = (data, TYPES[ext], hashlib.sha256(data).hexdigest()[:16])
    return files


STATIC = _load()


def version(name):
    """A tag that changes with the file's contents, for cache-busting URLs."""
    found = STATIC.get(name)
    return found[2] if found else None


def serve(name, if_none_match=""):
    """(status, headers, body) for one static file; None when there is no such file."""
    found = STATIC.get(name)
    if found is None:
        return None
    data, ctype, etag = found
    headers = [("Content-Type", ctype), ("ETag", '"%s"' % etag),
               ("Cache-Control", "private, max-age=31536000, immutable")]
    if (if_none_match or "").strip('"') == etag:
        return 304, headers, b""
    return 200, headers, data
