"""Retention wired into a real daemon: it runs soon after start, with the settings
of service.py, on a database whose rows are months old.  The rules themselves:
tests/unit/test_retention.py.
"""

import os
import stat
import time

from conftest import Daemon, wait_until
from pegasus_em.core.retention import DAY


SEED = """
import os, sys
from pegasus_em.core import db, store, transitions
from pegasus_em.core.ops import Ops
home = sys.argv[1]
d = db.open_database(os.path.join(home, ".pegasus", "em.db"))
for name, at in (("old", %r), ("recent", %r)):
    ops = Ops(d, os.path.join(home, ".pegasus", "ensembles"), clock=lambda: at)
    if name == "old":
        ops.create_ensemble("e")
    ops.submit("e", name, home, "./plan.sh")
    with d.write() as conn:
        w = store.get_workflow(conn, store.get_ensemble(conn, "e"), name)
        transitions.change_workflow_state(conn, w, "ABORTED", at, "seeded")
    os.makedirs(os.path.join(home, ".pegasus", "ensembles", "e"), exist_ok=True)
    open(os.path.join(home, ".pegasus", "ensembles", "e", name + ".log"), "w").close()
d.close()
"""


def test_a_daemon_removes_what_is_past_its_time_and_rotates_its_log(user):
    """Wiring: the retention loop runs in a real daemon soon after start, with the
    settings of service.py."""
    now = time.time()
    user.configure(extra="RETAIN_DAYS = 30\nLOG_MAX_BYTES = 300\nLOG_BACKUPS = 2\n")
    run = user.run([user.python, "-c", SEED % (now - 40 * DAY, now - DAY), user.home])
    assert run.returncode == 0, run.stderr
    d = Daemon(user).start()
    try:
        names = lambda: [w["name"] for w in d.request("GET", "/ensembles/e/workflows")[2]]
        wait_until(lambda: names() == ["recent"], 15, interval=0.1,
                   message="the old workflow to go")
        assert os.listdir(os.path.join(user.pegasus_dir, "ensembles", "e")) == ["recent.log"]
        wait_until(lambda: os.path.exists(os.path.join(user.pegasus_dir, "em-server.log.1")),
                   5, message="the log to rotate")
        for name in os.listdir(user.pegasus_dir):
            if name.startswith("em-server.log"):
                path = os.path.join(user.pegasus_dir, name)
                assert stat.S_IMODE(os.stat(path).st_mode) == 0o600, name
    finally:
        d.kill()
