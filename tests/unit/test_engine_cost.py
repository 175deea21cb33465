"""What the engine's turn costs, without its thread or a process (what its wakes
cost: tests/unit/test_loops.py)."""

import pytest

from stack import Stack
from pegasus_em.core import store


@pytest.fixture
def ops(tmp_path):
    s = Stack(tmp_path)
    yield s.ops
    s.close()


def test_a_paused_ensembles_queue_costs_the_engine_nothing(ops):
    """Each turn counted every READY workflow of every ensemble: 36,000 queued in a
    paused one (bench/api.py's) cost 2.5 ms a turn, at up to 100 turns a second while
    submissions arrived.  Only ACTIVE ensembles plan, so only theirs are counted."""
    ops.create_ensemble("paused")
    ops.update_ensemble("paused", state="PAUSED")
    ops.create_ensemble("active")
    for i in range(500):
        ops.submit("paused", "w%d" % i, "/tmp", "true")
    ops.submit("active", "a", "/tmp", "true")
    ops.submit("active", "b", "/tmp", "true")
    with ops.db.read() as conn:
        loads = {load.id: load for load in store.ensemble_loads(conn)}
        ids = {e.name: e.id for e in store.list_ensembles(conn)}
    assert ids["paused"] not in loads and loads[ids["active"]].ready == 2

