"""The simulator's databases have Pegasus's own schema, as `pegasus-db-admin create` makes it."""

import os
import re
import sqlite3
import sys

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
sys.path.insert(0, os.path.join(ROOT, "share", "pegasus-sim", "lib"))

from pegasus_sim import masterdb, stampede  # noqa: E402


def ddl(path):
    """{name: CREATE statement} of every table and index, whitespace normalized.  The values of a
    CHECK (x IN (...)) are sorted: db-admin lists them in Python's set order, which varies by run."""
    conn = sqlite3.connect(path)
    try:
        return {name: _sorted_in(" ".join(sql.split())) for name, sql in conn.execute(
            "SELECT name, sql FROM sqlite_master WHERE sql IS NOT NULL AND name != 'sqlite_sequence'")}
    finally:
        conn.close()


def _sorted_in(sql):
    return re.sub(r"IN \(([^)]*)\)", lambda m: "IN (%s)" % ", ".join(sorted(m.group(1).split(", "))), sql)


def versions(path):
    conn = sqlite3.connect(path)
    try:
        return conn.execute("SELECT id, version_number, version FROM dbversion").fetchall()
    finally:
        conn.close()


def test_the_real_tools_run_as_a_test_user_with_their_home(pegasus, module_user):
    proc = pegasus.run(module_user, "db-admin", "create")
    assert proc.returncode == 0, proc.stdout + proc.stderr
    db = os.path.join(module_user.home, ".pegasus", "workflow.db")
    assert os.stat(db).st_uid == module_user.uid
    assert versions(db) == [(1, 14, "14")]


def test_master_and_stampede_dbs_have_db_admins_schema_and_version_row(pegasus, module_user):
    real = os.path.join(module_user.home, "real.db")
    proc = pegasus.run(module_user, "db-admin", "create", "sqlite:///" + real)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    master = os.path.join(module_user.home, "master.db")
    masterdb.connect(master).close()
    writer = stampede.Stampede(os.path.join(module_user.home, "run-0.stampede.db"))
    assert writer.prepare()
    writer.close()
    for path in (master, writer.path):
        assert ddl(path) == ddl(real)
        assert versions(path) == versions(real)
        os.chown(path, module_user.uid, module_user.gid)
        proc = pegasus.run(module_user, "db-admin", "check", "sqlite:///" + path)
        assert proc.returncode == 0 and not proc.stdout + proc.stderr, proc.stdout + proc.stderr


def test_a_db_from_an_older_simulator_gets_the_missing_tables_and_keeps_its_rows(pegasus, module_user):
    path = os.path.join(module_user.home, "old.db")
    conn = sqlite3.connect(path)
    conn.execute("CREATE TABLE dbversion (id INTEGER NOT NULL PRIMARY KEY AUTOINCREMENT, version_number INTEGER,"
                 " version VARCHAR(50) NOT NULL, version_timestamp INTEGER NOT NULL)")
    conn.execute("INSERT INTO dbversion VALUES (1, 14, '14', 1)")
    conn.commit()
    conn.close()
    os.chown(path, module_user.uid, module_user.gid)
    refused = pegasus.run(module_user, "db-admin", "check", "sqlite:///" + path)
    assert refused.returncode == 1 and "Missing database tables" in refused.stderr
    masterdb.connect(path).close()
    assert pegasus.run(module_user, "db-admin", "check", "sqlite:///" + path).returncode == 0
    assert versions(path) == [(1, 14, "14")]
    assert {"master_workflow", "ensemble", "rc_lfn", "integrity", "workflow_files"} <= set(ddl(path))
