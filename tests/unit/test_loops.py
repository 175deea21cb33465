"""The supervised loop (loops.py): a failing turn is logged and retried with growing
pauses, stop ends a waiting loop, a thread that dies is logged.
"""

import logging
import threading
import time

from conftest import wait_until
from pegasus_em import loops


def test_a_failing_turn_is_logged_and_retried_with_growing_pauses(caplog):
    stop = threading.Event()
    calls = []

    def tick():
        calls.append(time.monotonic())
        if len(calls) >= 6:
            stop.set()
        raise OSError(24, "Too many open files")

    caplog.set_level(logging.ERROR, logger="pegasus_em.loops")
    thread = loops.start("test-loop", tick, None, stop)
    thread.join(10)
    assert not thread.is_alive() and len(calls) == 6
    gaps = [b - a for a, b in zip(calls, calls[1:])]
    assert all(gap >= 0.9 * loops.FIRST_PAUSE * 2 ** i for i, gap in enumerate(gaps)), gaps
    failures = [r for r in caplog.records if "test-loop failed" in r.getMessage()]
    assert len(failures) == 6 and all(r.exc_info for r in failures)


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
