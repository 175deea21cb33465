"""Supervised background loops: the one place background threads are started.

A daemon must not lose its engine, trigger scheduler, notification sender or
certificate renewer to one unexpected exception: Pegasus's trigger manager
died of one KeyError, and our engine once died of EMFILE while creating its
selector (outside its try), leaving every workflow READY until a restart.  So
every loop runs its turns through `run_forever`: an exception, wherever it is
raised in a turn (the work or the sleep after it), is logged with its
traceback, and the loop goes on after a pause that doubles with each failure
in a row (FIRST_PAUSE up to MAX_PAUSE).  The pause waits on a
threading.Event, which needs no file descriptor, so a process that ran out of
them slows down instead of spinning.  A thread that dies anyway (it should
not) is logged through `threading.excepthook` (`log_thread_deaths`).
"""

import logging
import threading
import time

log = logging.getLogger(__name__)

FIRST_PAUSE = 0.05   # seconds after a first failure
MAX_PAUSE = 5.0      # never slower than the engine's default look at running workflows


def run_forever(tick, wait, stop, name, logger=None, first_wait=None, first_pause=FIRST_PAUSE,
                max_pause=MAX_PAUSE):
    """Until `stop` is set: `wait(tick())`, where tick does one turn of work and returns
    what wait needs (typically seconds until due) and wait sleeps until woken or due
    (None: tick waits itself).  `first_wait`, if given, is waited before the first turn."""
    logger = logger or log
    pause = 0.0
    if first_wait is not None:
        wait(first_wait)
    while not stop.is_set():
        try:
            due = tick()
            if wait is not None:
                wait(due)
        except Exception:
            pause = min(max_pause, pause * 2) if pause else first_pause
            logger.exception("%s failed; trying again in %.2f s", name, pause)
            stop.wait(pause)
        else:
            pause = 0.0


def spawn(name, target, *args):
    """A daemon thread: dies with the process, never holds up its exit."""
    thread = threading.Thread(target=target, args=args, name=name, daemon=True)
    thread.start()
    return thread


def start(name, tick, wait, stop, logger=None, first_wait=None, first_pause=FIRST_PAUSE,
          max_pause=MAX_PAUSE):
    """run_forever in a thread of its own; -> the thread."""
    return spawn(name, run_forever, tick, wait, stop, name, logger, first_wait, first_pause,
                 max_pause)


def coalesce(stop, started, gap):
    """Sleep what is left of `gap` seconds since `started` (monotonic), so a burst of
    wake-ups costs one turn per gap; returns at once when `stop` is set."""
    left = gap - (time.monotonic() - started)
    if left > 0:
        stop.wait(left)


def log_thread_deaths(logger=None):
    """Route an exception that ends any thread to the log (not just to stderr)."""
    logger = logger or log

    def hook(args):
        if args.exc_type is SystemExit:
            return
        name = args.thread.name if args.thread is not None else "?"
        logger.critical("thread %s died", name,
                        exc_info=(args.exc_type, args.exc_value, args.exc_traceback))

    threading.excepthook = hook
