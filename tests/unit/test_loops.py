"""The supervised loop (loops.py): stop ends a waiting loop, a thread that dies is
logged.  A failing turn retried with growing pauses (real ones, seconds in all):
tests/integration/test_flood.py."""

import logging
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
