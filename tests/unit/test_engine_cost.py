"""What the engine's turn and its wakes cost, without its thread or a process."""

import os

import pytest

from stack import Stack
from pegasus_em.core import store
from pegasus_em.core.manager import Manager


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


def test_wakes_while_one_is_pending_write_nothing_and_are_not_lost(ops, tmp_path):
    """Every submission wrote a byte to the engine's pipe (a system call, and the GIL
    handed over once more per request); a wake while one is pending now writes
    nothing, and the next wake after the engine took the pending one writes again."""
    m = Manager(ops.db, str(tmp_path / "ensembles"))
    try:
        for _ in range(3):
            m.wake()
        assert os.read(m._wake_r, 16) == b"x"
        os.write(m._wake_w, b"x")  # as if still unread: the engine's wait takes it
        assert m._wait(0) == "api" and m._wait(0) is None
        m.wake()
        assert m._wait(0) == "api"
    finally:
        m.stop()
