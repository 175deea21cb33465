"""The monitoring API's query language (`query=`, `order=`) compiled to SQL, and
values rendered as JSON of their declared type.  The routes over real databases:
tests/integration/test_monitoring.py.
"""

import json
import sqlite3

import pytest

from pegasus_em.service import apiquery


KNOWN = {"r": {"wf_id": "INTEGER", "dax_label": "VARCHAR(255)", "timestamp": "NUMERIC(16, 6)"},
         "ws": {"state": "VARCHAR(19)", "status": "INTEGER"}}


@pytest.mark.parametrize("text, sql, params", [
    ("r.wf_id == 1", '"r"."wf_id" = ?', [1]),
    ("r.dax_label != 'x' and ws.status is None",
     '("r"."dax_label" != ? AND "ws"."status" IS NULL)', ["x"]),
    ("ws.status == None or not r.wf_id > -2",
     '("ws"."status" IS NULL OR (NOT "r"."wf_id" > ?))', [-2]),
    ("r.wf_id in (1, 2)", '"r"."wf_id" IN (?, ?)', [1, 2]),
    ("r.wf_id not in [3]", '"r"."wf_id" NOT IN (?)', [3]),
    ("1 < r.wf_id <= 5", '(? < "r"."wf_id" AND "r"."wf_id" <= ?)', [1, 5]),
    ("r.dax_label.like('dia%')", '"r"."dax_label" LIKE ? ESCAPE \'\\\'', ["dia%"]),
    ("ws.state is not None", '"ws"."state" IS NOT NULL', []),
    ("r.wf_id * 2 + 1 > r.timestamp / 60", '(("r"."wf_id" * ?) + ?) > ("r"."timestamp" / ?)',
     [2, 1, 60]),
    ("r.dax_label + '-0' == 'a-0'", '("r"."dax_label" || ?) = ?', ["-0", "a-0"]),
    ("not ws.status", '(NOT "ws"."status")', []),
])
def test_query_language(text, sql, params):
    assert apiquery.compile_query(text, KNOWN) == (sql, params)


@pytest.mark.parametrize("text", [
    "r.nope == 1", "x.wf_id == 1", "wf_id == 1", "r.wf_id == (1)(2)",
    "__import__('os')", "r.wf_id == 1; drop", "r.wf_id in ()", "r.wf_id is 3",
    "r.dax_label.upper() == 'X'", "r.wf_id == 1 ==", "'x' * 10", "r.wf_id % 2 == 0",
    "r.wf_id ** 2 == 1", "r.wf_id + 1", "(r.wf_id == 1, r.wf_id == 2)",
])
def test_invalid_queries_are_invalid_query(text):
    with pytest.raises(apiquery.InvalidQuery):
        apiquery.compile_query(text, KNOWN)


def test_order_clause():
    assert apiquery.compile_order("-r.timestamp, +r.wf_id,", KNOWN) == \
        '"r"."timestamp" DESC, "r"."wf_id" ASC'
    for bad in ("r.bogus", "timestamp", "r.wf_id()", "r.wf_id desc", "r.wf_id + 1"):
        with pytest.raises(apiquery.InvalidOrder):
            apiquery.compile_order(bad, KNOWN)


@pytest.mark.parametrize("declared, stored, shown", [
    ("NUMERIC(16, 6)", 1700000000.123456, 1700000000.123456),
    ("NUMERIC(10, 3)", 2, 2.0),
    ("NUMERIC(10, 3)", None, None),
    ("NUMERIC(10, 3)", float("inf"), None),  # SQLite would write `Inf`: not JSON
    ("NUMERIC", "n/a", "n/a"),
    ("BOOLEAN", 1, True),
    ("BOOLEAN", 0, False),
    ("BOOLEAN", None, None),
    ("INTEGER", 7, 7),
])
def test_values_render_as_json_of_their_declared_type(declared, stored, shown):
    db = sqlite3.connect(":memory:")
    db.execute("CREATE TABLE t (x %s)" % declared)
    db.execute("INSERT INTO t VALUES (?)", [stored])
    sql = "SELECT json_object('x', %s) FROM t" % apiquery.json_value("x", declared)
    value = json.loads(db.execute(sql).fetchone()[0])["x"]
    assert value == shown and type(value) is type(shown)
