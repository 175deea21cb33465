"""The simulator's databases have Pegasus's own schema, as `pegasus-db-admin create` makes it."""

import os
import sqlite3


def test_the_real_tools_run_as_a_test_user_with_their_home(pegasus, module_user):
    proc = pegasus.run(module_user, "db-admin", "create")
    assert proc.returncode == 0, proc.stdout + proc.stderr
    db = os.path.join(module_user.home, ".pegasus", "workflow.db")
    assert os.stat(db).st_uid == module_user.uid
    conn = sqlite3.connect(db)
    assert conn.execute("SELECT version_number, version FROM dbversion").fetchall() == [(14, "14")]
    conn.close()
