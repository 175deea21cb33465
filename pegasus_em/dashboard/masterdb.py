"""Read-only access to a user's Pegasus databases: the master DB
(~/.pegasus/workflow.db) and the STAMPEDE DB of each root workflow.

Never creates or changes anything: files are opened `file:...?mode=ro` with
`query_only`, so a missing database is reported, not made (pegasus-facts §3.1).
"""

import os
import sqlite3
import threading
import urllib.parse

from .. import owned
from ..errors import Forbidden, NotFound

MASTER_DB = "workflow.db"
BUSY_TIMEOUT_MS = 5000


class Unavailable(NotFound):
    """A database that should be there is not (404 with an explanation)."""


class Refused(Unavailable):
    """A database this process may not read for the user (see owned.py)."""
    status = 403


# --------------------------------------------------------------------------- connections

class Connections:
    """One read-only connection per (thread, file, owner), reopened when the file is
    replaced; each with its tables' column lists, dropped when the schema changes.
    `owner`: the uid whose files these must be (owned.reader_uid), None: no check."""

    def __init__(self):
        self._local = threading.local()

    def get(self, path, what, owner=None):
        with owned.as_user(owner):  # stat and open see what the user would see
            identity = _identity(path, what)
            cache = self._local.__dict__.setdefault("conns", {})
            found = cache.get((path, owner))
            if found and found.identity == identity:
                found.check_schema()
                return found
            if found:
                cache.pop((path, owner)).close()
            conn, identity = open_checked(path, what, owner, identity)
            handle = cache[(path, owner)] = Handle(conn, identity, owner)
            return handle

    def close(self):
        for handle in getattr(self._local, "conns", {}).values():
            handle.close()
        self._local.conns = {}


def _identity(path, what):
    try:
        st = os.stat(path)
    except FileNotFoundError:
        raise Unavailable("%s %s does not exist" % (what, path))
    except OSError as e:
        raise Unavailable("%s %s cannot be read: %s" % (what, path, e.strerror))
    return _ident(st)


class Handle:
    """A read-only connection and what it knows of the schema.  For another user's
    database each statement runs with that user's filesystem identity: SQLite opens
    journal and WAL files when a read begins, and those must not be root's opens."""

    def __init__(self, conn, identity, owner=None):
        self.conn = conn
        self.identity = identity
        self.owner = owner
        if not owned.switches_for(owner):
            self.execute = conn.execute
        self._schema = None
        self._columns = {}
        self._memo = {}
        self.check_schema()

    def execute(self, sql, params=()):
        with owned.as_user(self.owner):
            return self.conn.execute(sql, params)

    def check_schema(self):
        version = self.execute("PRAGMA schema_version").fetchone()[0]
        if version != self._schema:
            self._schema = version
            self._columns = {}
            self._memo = {}

    def data_version(self):
        """Changes whenever another connection commits (monitord, pegasus-db-admin)."""
        return self.execute("PRAGMA data_version").fetchone()[0]

    def memo(self, key, make):
        """`make()` once per schema: SQL text derived from the column lists."""
        value = self._memo.get(key)
        if value is None:
            value = self._memo[key] = make()
        return value

    def columns(self, table):
        cols = self._columns.get(table)
        if cols is None:
            cols = [r[1] for r in self.execute("PRAGMA table_info(%s)" % _quote(table))]
            if not cols:
                raise Unavailable("the database has no table %s; was it written by Pegasus?"
                                  % table)
            self._columns[table] = cols
        return cols

    def close(self):
        self.conn.close()


def open_checked(path, what, owner, identity):
    """(read-only connection, (st_dev, st_ino)) of `path`; with an `owner`, only when the
    resolved file passes owned.check_path and is still that file once SQLite has it
    open (and SQLite followed no link of its own).  Call within as_user(owner)."""
    if owner is None:
        return open_readonly(path, what), identity
    shown = "%s %s" % (what, path)
    real = os.path.realpath(path)
    try:
        before = _ident(owned.check_path(real, owner, shown))
    except FileNotFoundError:
        raise Unavailable("%s does not exist" % shown)
    except OSError as e:
        raise Unavailable("%s cannot be read: %s" % (shown, e.strerror))
    except Forbidden as e:
        raise Refused(e.message)
    conn = open_readonly(real, what, shown)
    try:
        opened = conn.execute("PRAGMA database_list").fetchone()[2]
        after = _ident(os.lstat(real))
    except (sqlite3.Error, OSError):
        opened = after = None
    if opened != real or after != before:
        conn.close()
        raise Refused("%s changed while it was being opened" % shown)
    return conn, before


def _ident(st):
    return st.st_dev, st.st_ino


def open_readonly(path, what="database", shown=None):
    uri = "file:%s?mode=ro" % urllib.parse.quote(os.path.abspath(path))
    conn = None
    try:
        conn = sqlite3.connect(uri, uri=True, timeout=BUSY_TIMEOUT_MS / 1000,
                               check_same_thread=False, isolation_level=None)
        conn.execute("PRAGMA query_only = ON")
        conn.execute("SELECT count(*) FROM sqlite_master").fetchone()
    except sqlite3.Error as e:
        if conn is not None:
            conn.close()
        raise Unavailable("%s cannot be opened: %s" % (shown or "%s %s" % (what, path), e))
    return conn


def stampede_path(db_url):
    """The file of a `sqlite:///...` STAMPEDE URL; other databases are not supported."""
    if not db_url:
        raise Unavailable("the workflow has no STAMPEDE database URL in the master database")
    if not db_url.startswith("sqlite:///"):
        raise Unavailable("STAMPEDE database %s is not SQLite; only SQLite is supported"
                          % db_url.split("@")[-1])
    path = db_url[len("sqlite:///"):].split("?", 1)[0]
    return urllib.parse.unquote(path)


def _quote(identifier):
    return '"%s"' % identifier.replace('"', '""')
