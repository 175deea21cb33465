"""Collections of the monitoring REST API: paging, `query` and `order`, and records.

Pegasus's paging and filtering arguments: `start-index`, `max-results` (0: no
limit, as in 5.x), `order` (e.g. `-r.timestamp, r.wf_id`) and `query`, a
Python-like expression over `<prefix>.<column>` (e.g. `r.dax_label == "diamond"
and ws.status != 0`, `j.max_retries * 2 > 4`), compiled here into SQL with
parameters; only real columns of the tables in play are accepted as identifiers.

Records are rendered as JSON by SQLite (json_object), which costs a fraction of
building dicts in Python, with the types Pegasus 5.x gives them through
SQLAlchemy: a BOOLEAN column is true/false, a NUMERIC(p, s) one a number rounded
to its scale s (SQLAlchemy reads it as a Decimal of that scale).
"""

import ast
import re

from ..errors import BadRequest


class InvalidQuery(BadRequest):
    api_code = "INVALID_QUERY"


class InvalidOrder(BadRequest):
    api_code = "INVALID_ORDER"


class InvalidArgument(BadRequest):
    api_code = "INVALID_QUERY_ARGUMENT"


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
        return cls(_int_arg(args, "start-index"), _int_arg(args, "max-results") or None,
                   args.get("query") or None, args.get("order") or None)


def _int_arg(args, name):
    value = args.get(name)
    if value is None or value == "":
        return None
    try:
        number = int(value)
    except ValueError:
        raise InvalidArgument("Expecting integer for argument %s, found %r" % (name, value))
    if number < 0:
        raise InvalidArgument("Argument %s must not be negative, found %d" % (name, number))
    return number


class Collection:
    """Rows of aliased tables rendered as JSON objects by SQLite itself (json_object).
    `where` is the fixed condition (it makes `records_total`); `narrow` and the
    `query` argument filter (`records_filtered`); `group` makes one record of the
    rows a join multiplied; `query` and `order` may name any column of `aliases`."""

    def __init__(self, aliases, from_sql, where="1", params=(), default_order="",
                 count_from=None, narrow=None, group=None):
        self.aliases = aliases              # prefix -> table name
        self.from_sql = from_sql
        self.where = where
        self.params = list(params)
        self.default_order = default_order
        self.count_from = count_from or from_sql  # the joins that cannot change the count
        self.narrow = narrow
        self.group = group

    def fetch(self, db, paging, obj_sql):
        """(JSON text of the page's records, total, filtered); `obj_sql` makes one
        record (see `json_object`)."""
        total = db.execute("SELECT count(*) FROM %s WHERE (%s)" % (self.count_from, self.where),
                           self.params).fetchone()[0]
        if total == 0:
            return "[]", 0, 0
        known = {p: column_types(db, t) for p, t in self.aliases.items()}
        base, params, filtered = self._filtered(db, paging, known)
        sql = "SELECT %s %s%s" % (obj_sql, base, self._order_by(paging, known))
        if paging.limit is not None or paging.start:
            sql += " LIMIT ? OFFSET ?"
            params += [-1 if paging.limit is None else paging.limit, paging.start or 0]
        rows = db.execute(sql, params).fetchall()
        return ("[%s]" % ",".join(r[0] for r in rows), total,
                total if filtered is None else filtered)

    def _order_by(self, paging, known):
        order = compile_order(paging.order, known, bool(self.group)) if paging.order \
            else self.default_order
        return " ORDER BY " + order if order else ""

    def _filtered(self, db, paging, known):
        """(FROM ... clause, its parameters, records_filtered or None when unfiltered)."""
        conditions = [self.where] + ([self.narrow] if self.narrow else [])
        params = list(self.params)
        if paging.query:
            clause, extra = compile_query(paging.query, known)
            conditions.append(clause)
            params += extra
        base = "FROM %s WHERE %s" % (self.from_sql, " AND ".join("(%s)" % c for c in conditions))
        if self.group:
            base += " GROUP BY " + self.group
        if len(conditions) == 1:
            return base, params, None
        counted = "SELECT count(*) FROM (SELECT 1 %s)" if self.group else "SELECT count(*) %s"
        return base, params, db.execute(counted % base, params).fetchone()[0]


# --------------------------------------------------------------------------- records

_SCALE = re.compile(r"(?:NUMERIC|DECIMAL)\s*\(\s*\d+\s*,\s*(\d+)\s*\)")
DEFAULT_SCALE = 10  # SQLAlchemy's, for a NUMERIC declared without one


def column_types(db, table):
    """{column: declared type, upper case} of `table`, once per schema."""
    def make():
        db.columns(table)  # a clear error when the table is missing
        rows = db.execute('PRAGMA table_info("%s")' % table.replace('"', '""'))
        return {r[1]: (r[2] or "").upper() for r in rows}
    return db.memo(("types", table), make)


def json_object(fields):
    """SQL building one JSON object from (name, expression) pairs."""
    return "json_object(%s)" % ", ".join("'%s', %s" % (name.replace("'", "''"), expr)
                                         for name, expr in fields)


def json_value(column, declared):
    """SQL of one column's value as 5.x shows it: BOOLEAN as true/false, NUMERIC at its
    scale (SQLite's own JSON would round a REAL to 15 digits, and write infinity as
    `Inf`, which is not JSON: that becomes null)."""
    if declared.startswith("BOOL"):
        return ("json(CASE WHEN {0} IS NULL THEN 'null' WHEN {0} THEN 'true' "
                "ELSE 'false' END)".format(column))
    if declared.startswith(("NUMERIC", "DECIMAL")):
        match = _SCALE.match(declared)
        scale = int(match.group(1)) if match else DEFAULT_SCALE
        return ("json(CASE WHEN typeof({0}) IN ('integer', 'real') AND abs({0}) < 1e300 "
                "THEN printf('%.{1}f', {0}) WHEN typeof({0}) = 'real' THEN 'null' "
                "ELSE json_quote({0}) END)".format(column, scale))
    return column


def table_fields(db, table, alias, skip=()):
    """(column, JSON value SQL) for every column of `table`."""
    return [(c, json_value('%s.%s' % (alias, _quote(c)), t))
            for c, t in column_types(db, table).items() if c not in skip]


def table_object(db, table, alias, skip=()):
    """json_object() SQL of every column of `table`, made once per schema."""
    return db.memo(("object", table, alias, skip),
                   lambda: json_object(table_fields(db, table, alias, skip)))


def _quote(identifier):
    return '"%s"' % identifier.replace('"', '""')


# --------------------------------------------------------------------------- query language

_COMPARE = {ast.Eq: "=", ast.NotEq: "!=", ast.Lt: "<", ast.LtE: "<=", ast.Gt: ">",
            ast.GtE: ">="}
_ARITHMETIC = {ast.Add: "+", ast.Sub: "-", ast.Mult: "*", ast.Div: "/"}
_TEXT_TYPES = ("CHAR", "VARCHAR", "TEXT", "CLOB", "STRING")
MAX_QUERY = 4096


def compile_query(text, known):
    """(SQL, params) for a Pegasus `query` expression; `known` maps each prefix to its
    {column: declared type}.  InvalidQuery when it is not valid."""
    if len(text) > MAX_QUERY:
        raise InvalidQuery("query is too long (at most %d characters)" % MAX_QUERY)
    try:
        tree = ast.parse(text.strip().strip(","), mode="eval").body
    except SyntaxError as e:
        raise InvalidQuery("Invalid query %r: %s" % (text, e.msg))
    if isinstance(tree, ast.Tuple):
        raise InvalidQuery("Invalid query %r: one condition only; join conditions with "
                           "'and' or 'or'" % text)
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
        if isinstance(node, (ast.Attribute, ast.Name)):
            return self.column(node)  # a column's truth, as SQL has it: `not r.archived`
        raise InvalidQuery("Invalid query: expected a condition, found %s"
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
                raise InvalidQuery("Invalid query: 'in' needs a non-empty list of values")
            values = ", ".join(self.operand(e) for e in right.elts)
            word = "IN" if isinstance(op, ast.In) else "NOT IN"
            return "%s %s (%s)" % (self.operand(left), word, values)
        null_test = _is_none(right) or isinstance(op, (ast.Is, ast.IsNot))
        if null_test:
            if not _is_none(right) or not isinstance(op, (ast.Is, ast.IsNot, ast.Eq, ast.NotEq)):
                raise InvalidQuery("Invalid query: 'is' compares only with None")
            negate = isinstance(op, (ast.IsNot, ast.NotEq))
            return "%s IS %sNULL" % (self.operand(left), "NOT " if negate else "")
        if type(op) not in _COMPARE:
            raise InvalidQuery("Invalid query: unsupported comparison %s" % type(op).__name__)
        return "%s %s %s" % (self.operand(left), _COMPARE[type(op)], self.operand(right))

    def call(self, node):
        func = node.func
        if not (isinstance(func, ast.Attribute) and func.attr in ("like", "ilike")
                and len(node.args) == 1 and not node.keywords):
            raise InvalidQuery("Invalid query: the only functions are <field>.like('pattern') "
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
        if isinstance(node, ast.BinOp) and type(node.op) in _ARITHMETIC:
            return self.arithmetic(node)
        return self.column(node)

    def arithmetic(self, node):
        """`+ - * /` as SQL has them (`/` of integers is an integer, as in 5.x);
        `+` after a text column or string joins strings, as SQLAlchemy's `+` does."""
        op = _ARITHMETIC[type(node.op)]
        if op == "+" and self.is_text(node.left):
            op = "||"
        return "(%s %s %s)" % (self.operand(node.left), op, self.operand(node.right))

    def is_text(self, node):
        if isinstance(node, ast.Constant):
            return isinstance(node.value, str)
        if isinstance(node, ast.BinOp):
            return isinstance(node.op, ast.Add) and self.is_text(node.left)
        prefix, name = _prefix_name(node, self.known, InvalidQuery)
        return self.known.get(prefix, {}).get(name, "").startswith(_TEXT_TYPES)

    def column(self, node):
        return field(node, self.known, InvalidQuery)


def _is_none(node):
    return isinstance(node, ast.Constant) and node.value is None


def _prefix_name(node, known, error):
    if isinstance(node, ast.Attribute) and isinstance(node.value, ast.Name):
        return node.value.id, node.attr
    if isinstance(node, ast.Name) and len(known) == 1:
        return next(iter(known)), node.id
    raise error("Invalid field: use <prefix>.<column>, prefixes here: %s"
                % ", ".join(sorted(known)))


def field(node, known, error):
    """`prefix.column` (or a bare column of the only table) as quoted SQL; `error`
    (InvalidQuery or InvalidOrder) when there is no such column."""
    prefix, name = _prefix_name(node, known, error)
    if prefix not in known:
        raise error("Invalid field %s.%s: unknown prefix %r (here: %s)"
                    % (prefix, name, prefix, ", ".join(sorted(known))))
    if name not in known[prefix]:
        raise error("Invalid field %s.%s" % (prefix, name))
    return "%s.%s" % (_quote(prefix), _quote(name))


def compile_order(text, known, grouped=False):
    """`-r.timestamp, r.wf_id` as an ORDER BY clause; `grouped`: of records that stand
    for several rows, each placed by its greatest value when descending, else its least."""
    if len(text) > MAX_QUERY:
        raise InvalidOrder("order is too long")
    try:
        tree = ast.parse(text.strip().strip(",") + ",", mode="eval").body
    except SyntaxError as e:
        raise InvalidOrder("Invalid order %r: %s" % (text, e.msg))
    terms = []
    for node in tree.elts:
        direction = "ASC"
        if isinstance(node, ast.UnaryOp) and isinstance(node.op, (ast.USub, ast.UAdd)):
            direction = "DESC" if isinstance(node.op, ast.USub) else "ASC"
            node = node.operand
        column = field(node, known, InvalidOrder)
        if grouped:
            column = "%s(%s)" % ("max" if direction == "DESC" else "min", column)
        terms.append("%s %s" % (column, direction))
    return ", ".join(terms)
