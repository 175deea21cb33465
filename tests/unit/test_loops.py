"""The supervised loop (loops.py): stop ends a waiting loop, a thread that dies is
logged, wakes through a pipe coalesce.  A failing turn retried with growing pauses (real ones, seconds in all):
tests/integration/test_flood.py."""

import logging
import os
import select
import threading

from conftest import wait_until
from pegasus_em import loops


def test_stop_ends_a_loop_that_waits():
    stop = threading.Event()
    ticks = []
    thread = loops.start("test-wait", lambda: ticks.append(1) or 3600, stop.wait, stop)
    wait_until(lambda: ticks, message="the first turn")
    stop.set()
    thread.join(5)
    assert not thread.is_alive() and ticks == [1]


def test_a_thread_that_dies_is_logged(caplog):
    old = threading.excepthook
    try:
        loops.log_thread_deaths(logging.getLogger("pegasus_em.test"))
        caplog.set_level(logging.CRITICAL, logger="pegasus_em.test")
        thread = threading.Thread(target=lambda: 1 / 0, name="doomed")
        thread.start()
        thread.join()
    finally:
        threading.excepthook = old
    [record] = [r for r in caplog.records if "doomed" in r.getMessage()]
    assert record.exc_info[0] is ZeroDivisionError


def test_wakes_while_one_is_pending_write_nothing_and_are_not_lost():
    """Every submission wrote a byte to the engine's pipe (a system call, and the GIL
    handed over once more per request); a wake while one is pending now writes
    nothing, and the next wake after the waiter took the pending one writes again."""
    wakeup = loops.WakePipe()
    readable = lambda: bool(select.select([wakeup], [], [], 0)[0])
    try:
        for _ in range(3):
            wakeup.wake()
        assert os.read(wakeup.fileno(), 16) == b"x"  # one byte for three wakes
        wakeup.wake()
        assert not readable()  # still pending: nothing written
        wakeup.take()
        wakeup.wake()
        assert readable()
        wakeup.take()
        assert not readable()
    finally:
        wakeup.close()
