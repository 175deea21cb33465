"""Read a Pegasus 5.x ensemble manager's tables for `pegasus-em import`.

The client side of the import: it opens the user's workflow.db read-only
(Pegasus's own tools migrate that file; we never write it) and returns its
`ensemble`, `ensemble_workflow` and `trigger` rows as plain JSON-able dicts,
which the daemon then takes over (importer.py).
"""

import os
import sqlite3
import urllib.parse

from ..errors import ClientError

TABLES = (("ensembles", "ensemble"), ("workflows", "ensemble_workflow"),
          ("triggers", "trigger"))


def read(path):
    """-> {"source": path, "ensembles": [...], "workflows": [...], "triggers": [...]}."""
    path = os.path.abspath(path)
    if not os.path.isfile(path):
        raise ClientError("No Pegasus database at %s (give another with --db)" % path)
    uri = "file:%s?mode=ro" % urllib.parse.quote(path)
    try:
        conn = sqlite3.connect(uri, uri=True, timeout=10)
    except sqlite3.Error as e:
        raise ClientError("cannot open %s: %s" % (path, e))
    try:
        names = {r[0] for r in conn.execute("SELECT name FROM sqlite_master WHERE type='table'")}
        if "ensemble" not in names or "ensemble_workflow" not in names:
            raise ClientError("%s has no ensemble tables: not a Pegasus 5.x workflow.db" % path)
        out = {"source": path}
        for key, table in TABLES:
            out[key] = _rows(conn, table) if table in names else []
        return out
    except sqlite3.Error as e:
        raise ClientError("cannot read %s: %s" % (path, e))
    finally:
        conn.close()


def _rows(conn, table):
    cur = conn.execute('SELECT * FROM "%s" ORDER BY id' % table)
    columns = [d[0] for d in cur.description]
    return [dict(zip(columns, (_plain(v) for v in row))) for row in cur]


def _plain(value):
    if isinstance(value, bytes):
        return value.decode("utf-8", "replace")
    return value
