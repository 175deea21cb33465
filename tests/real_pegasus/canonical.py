"""A database's rows with surrogate ids replaced by natural keys, for comparing two writers.

Two monitords fill the same tables in different orders (the real one interleaves
a root workflow with its sub-workflows as it reads them), so ids differ while the
content is the same: a job_instance is (wf_uuid, job name, try), a task
(wf_uuid, abs_task_id), and so on.  dbversion's creation time is left out.
"""

import sqlite3

# column -> (table whose rows define the key, key columns); read in this order (later keys use earlier ones)
KEYS = [
    ("wf_id", "workflow", ("wf_uuid",)),
    ("job_id", "job", ("wf_id", "exec_job_id")),
    ("job_instance_id", "job_instance", ("job_id", "job_submit_seq")),
    ("task_id", "task", ("wf_id", "abs_task_id")),
    ("host_id", "host", ("wf_id", "site", "hostname", "ip")),
]
ALIASES = {"parent_wf_id": "wf_id", "root_wf_id": "wf_id", "subwf_id": "wf_id"}
DROPPED = {("dbversion", "version_timestamp"), ("invocation", "invocation_id")}


def rows(path, ignore=()):
    """{table: sorted rows of {column: value}} with natural keys; `ignore`: (table, column) to leave out."""
    conn = sqlite3.connect("file:%s?mode=ro" % path, uri=True)
    conn.row_factory = sqlite3.Row
    try:
        maps = _key_maps(conn)
        tables = [r[0] for r in conn.execute("SELECT name FROM sqlite_master WHERE type = 'table'"
                                             " AND name NOT LIKE 'sqlite%'")]
        return {t: sorted((_translate(t, dict(r), maps, set(ignore) | DROPPED)
                           for r in conn.execute('SELECT * FROM "%s"' % t)), key=repr) for t in tables}
    finally:
        conn.close()


def _key_maps(conn):
    maps = {}
    for column, table, key in KEYS:
        maps[column] = {}
        for r in conn.execute('SELECT * FROM "%s"' % table):
            r = dict(r)
            maps[column][r[column]] = tuple(_value(k, r[k], maps) for k in key)
    return maps


def _value(column, value, maps):
    kind = ALIASES.get(column, column)
    if kind in maps and value is not None:
        return maps[kind].get(value, ("unknown", value))
    return value


def _translate(table, row, maps, dropped):
    return sorted((k, _value(k, v, maps)) for k, v in row.items() if (table, k) not in dropped)


def master_rows(path, wf_uuid, ignore=("wf_id",)):
    """(master_workflow row, its master_workflowstate rows) of one workflow, without the ids."""
    conn = sqlite3.connect("file:%s?mode=ro" % path, uri=True)
    conn.row_factory = sqlite3.Row
    try:
        wf = [{k: v for k, v in dict(r).items() if k not in ignore} for r in conn.execute(
            "SELECT * FROM master_workflow WHERE wf_uuid = ?", (wf_uuid,))]
        states = [tuple(r)[1:] for r in conn.execute(
            "SELECT s.* FROM master_workflowstate s JOIN master_workflow w USING (wf_id) WHERE w.wf_uuid = ?"
            " ORDER BY s.timestamp, s.state", (wf_uuid,))]
        return wf, states
    finally:
        conn.close()
