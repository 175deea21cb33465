"""Read-only access to a user's Pegasus databases: the master DB
(~/.pegasus/workflow.db) and the STAMPEDE DB of each root workflow.

Never creates or changes anything: files are opened `file:...?mode=ro` with
`query_only`, so a missing database is reported, not made (pegasus-facts §3.1).
Collections take Pegasus's paging and filtering arguments: `start-index`,
`max-results`, `order` (e.g. `-r.timestamp, r.wf_id`) and `query`, a Python-like
expression over `<prefix>.<column>` (e.g. `r.dax_label == "diamond" and
ws.status != 0`), compiled here into SQL with parameters; only real columns
of the tables in play are accepted as identifiers.
"""

import ast
import os
import sqlite3
import threading
import urllib.parse

from . import owned
from .errors import BadRequest, Forbidden, NotFound

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


# --------------------------------------------------------------------------- paging

class Paging:
    """start-index, max-results, query and order from a query string (400 if malformed)."""

    __slots__ = ("start", "limit", "query", "order")

    def __init__(self, start=None, limit=None, query=None, order=None):
        self.start = start
        self.limit = limit
        self.query = query
        self.order = order

    @classmethod
    def from_args(cls, args):
        return cls(_int_arg(args, "start-index"), _int_arg(args, "max-results"),
                   args.get("query") or None, args.get("order") or None)


def _int_arg(args, name):
    value = args.get(name)
    if value is None or value == "":
        return None
    try:
        number = int(value)
    except ValueError:
        raise BadRequest("Expecting integer for argument %s, found %r" % (name, value))
    if number < 0:
        raise BadRequest("Argument %s must not be negative, found %d" % (name, number))
    return number


class Collection:
    """Rows of aliased tables rendered as JSON objects by SQLite itself (json_object);
    `where` is the fixed condition; `query` and `order` may name any column of the
    aliased tables."""

    def __init__(self, aliases, from_sql, where="1", params=(), default_order="",
                 count_from=None):
        self.aliases = aliases              # prefix -> table name
        self.from_sql = from_sql
        self.where = where
        self.params = list(params)
        self.default_order = default_order
        self.count_from = count_from or from_sql  # the joins that cannot change the count

    def fetch(self, db, paging, obj_sql):
        """(JSON text of the page's records, total, filtered); `obj_sql` makes one
        record (see `json_object`)."""
        known = {p: set(db.columns(t)) for p, t in self.aliases.items()}
        total = db.execute("SELECT count(*) FROM %s WHERE (%s)" % (self.count_from, self.where),
                           self.params).fetchone()[0]
        if total == 0:
            return "[]", 0, 0
        base = "FROM %s WHERE (%s)" % (self.from_sql, self.where)
        params = list(self.params)
        filtered = total
        if paging.query:
            clause, extra = compile_query(paging.query, known)
            base += " AND (%s)" % clause
            params += extra
            filtered = db.execute("SELECT count(*) " + base, params).fetchone()[0]
        order = compile_order(paging.order, known) if paging.order else self.default_order
        sql = "SELECT %s %s" % (obj_sql, base)
        if order:
            sql += " ORDER BY " + order
        if paging.limit is not None or paging.start:
            sql += " LIMIT ? OFFSET ?"
            params += [-1 if paging.limit is None else paging.limit, paging.start or 0]
        rows = db.execute(sql, params).fetchall()
        return "[%s]" % ",".join(r[0] for r in rows), total, filtered


def json_object(fields):
    """SQL building one JSON object from (name, expression) pairs."""
    return "json_object(%s)" % ", ".join("'%s', %s" % (name.replace("'", "''"), expr)
                                         for name, expr in fields)


def table_fields(db, table, alias, skip=()):
    """(column, alias."column") for every column of `table`."""
    return [(c, '%s.%s' % (alias, _quote(c))) for c in db.columns(table) if c not in skip]


def table_object(db, table, alias, skip=()):
    """json_object() SQL of every column of `table`, made once per schema."""
    return db.memo(("object", table, alias, skip),
                   lambda: json_object(table_fields(db, table, alias, skip)))


# --------------------------------------------------------------------------- query language

_COMPARE = {ast.Eq: "=", ast.NotEq: "!=", ast.Lt: "<", ast.LtE: "<=", ast.Gt: ">",
            ast.GtE: ">="}
MAX_QUERY = 4096


def compile_query(text, known):
    """(SQL, params) for a Pegasus `query` expression; BadRequest when it is not valid."""
    if len(text) > MAX_QUERY:
        raise BadRequest("query is too long (at most %d characters)" % MAX_QUERY)
    try:
        tree = ast.parse(text.strip(), mode="eval").body
    except SyntaxError as e:
        raise BadRequest("Invalid query %r: %s" % (text, e.msg))
    params = []
    return _QueryCompiler(known, params).expr(tree), params


class _QueryCompiler:
    def __init__(self, known, params):
        self.known = known
        self.params = params

    def expr(self, node):
        if isinstance(node, ast.BoolOp):
            op = " AND " if isinstance(node.op, ast.And) else " OR "
            return "(%s)" % op.join(self.expr(v) for v in node.values)
        if isinstance(node, ast.UnaryOp) and isinstance(node.op, ast.Not):
            return "(NOT %s)" % self.expr(node.operand)
        if isinstance(node, ast.Compare):
            return self.compare(node)
        if isinstance(node, ast.Call):
            return self.call(node)
        raise BadRequest("Invalid query: expected a condition, found %s"
                         % type(node).__name__)

    def compare(self, node):
        parts = []
        left = node.left
        for op, right in zip(node.ops, node.comparators):
            parts.append(self.comparison(left, op, right))
            left = right
        return parts[0] if len(parts) == 1 else "(%s)" % " AND ".join(parts)

    def comparison(self, left, op, right):
        if isinstance(op, (ast.In, ast.NotIn)):
            if not isinstance(right, (ast.Tuple, ast.List, ast.Set)) or not right.elts:
                raise BadRequest("Invalid query: 'in' needs a non-empty list of values")
            values = ", ".join(self.operand(e) for e in right.elts)
            word = "IN" if isinstance(op, ast.In) else "NOT IN"
            return "%s %s (%s)" % (self.operand(left), word, values)
        null_test = _is_none(right) or isinstance(op, (ast.Is, ast.IsNot))
        if null_test:
            if not _is_none(right) or not isinstance(op, (ast.Is, ast.IsNot, ast.Eq, ast.NotEq)):
                raise BadRequest("Invalid query: 'is' compares only with None")
            negate = isinstance(op, (ast.IsNot, ast.NotEq))
            return "%s IS %sNULL" % (self.operand(left), "NOT " if negate else "")
        if type(op) not in _COMPARE:
            raise BadRequest("Invalid query: unsupported comparison %s" % type(op).__name__)
        return "%s %s %s" % (self.operand(left), _COMPARE[type(op)], self.operand(right))

    def call(self, node):
        func = node.func
        if not (isinstance(func, ast.Attribute) and func.attr in ("like", "ilike")
                and len(node.args) == 1 and not node.keywords):
            raise BadRequest("Invalid query: the only functions are <field>.like('pattern') "
                             "and <field>.ilike('pattern')")
        column = self.column(func.value)
        pattern = self.operand(node.args[0])
        if func.attr == "ilike":
            return "lower(%s) LIKE lower(%s) ESCAPE '\\'" % (column, pattern)
        return "%s LIKE %s ESCAPE '\\'" % (column, pattern)

    def operand(self, node):
        if isinstance(node, ast.Constant) and (node.value is None or isinstance(
                node.value, (str, int, float, bool))):
            self.params.append(node.value)
            return "?"
        if isinstance(node, ast.UnaryOp) and isinstance(node.op, ast.USub) and \
                isinstance(node.operand, ast.Constant) and \
                isinstance(node.operand.value, (int, float)):
            self.params.append(-node.operand.value)
            return "?"
        return self.column(node)

    def column(self, node):
        return field(node, self.known)


def _is_none(node):
    return isinstance(node, ast.Constant) and node.value is None


def field(node, known):
    """`prefix.column` (or a bare column of the only table) as quoted SQL."""
    if isinstance(node, ast.Attribute) and isinstance(node.value, ast.Name):
        prefix, name = node.value.id, node.attr
    elif isinstance(node, ast.Name) and len(known) == 1:
        prefix, name = next(iter(known)), node.id
    else:
        raise BadRequest("Invalid field: use <prefix>.<column>, prefixes here: %s"
                         % ", ".join(sorted(known)))
    if prefix not in known:
        raise BadRequest("Invalid field %s.%s: unknown prefix %r (here: %s)"
                         % (prefix, name, prefix, ", ".join(sorted(known))))
    if name not in known[prefix]:
        raise BadRequest("Invalid field %s.%s" % (prefix, name))
    return "%s.%s" % (_quote(prefix), _quote(name))


def compile_order(text, known):
    """`-r.timestamp, r.wf_id` as an ORDER BY clause."""
    if len(text) > MAX_QUERY:
        raise BadRequest("order is too long")
    try:
        tree = ast.parse(text.strip().strip(",") + ",", mode="eval").body
    except SyntaxError as e:
        raise BadRequest("Invalid order %r: %s" % (text, e.msg))
    terms = []
    for node in tree.elts:
        direction = "ASC"
        if isinstance(node, ast.UnaryOp) and isinstance(node.op, (ast.USub, ast.UAdd)):
            direction = "DESC" if isinstance(node.op, ast.USub) else "ASC"
            node = node.operand
        terms.append("%s %s" % (field(node, known), direction))
    return ", ".join(terms)
