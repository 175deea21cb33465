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
import os
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


class Loop:
    """Base of a supervised loop in a thread of its own that sleeps until `wake()` (from
    any thread) or due.  A subclass defines `tick()`: one turn, -> seconds until due,
    counted from when the turn began.  Turns begin at least `gap` seconds apart, so a
    burst of wakes costs one turn."""

    def __init__(self, name, logger=None, gap=0.0):
        self.stopping = threading.Event()
        self._name, self._logger, self._gap = name, logger, gap
        self._wake = threading.Event()
        self._thread = None

    def wake(self):
        self._wake.set()

    def start(self):
        self._thread = start(self._name, self._turn, self._sleep, self.stopping, self._logger)

    def stop(self, timeout=10):
        self.stopping.set()
        self._wake.set()
        if self._thread:
            self._thread.join(timeout)

    @property
    def running(self):
        return self._thread is not None and self._thread.is_alive()

    def tick(self):
        raise NotImplementedError

    def _turn(self):
        started = time.monotonic()
        self._wake.clear()  # before the tick, so no wake is lost
        return started, self.tick()

    def _sleep(self, turn):
        started, wait = turn
        self._wake.wait(max(0.0, wait - (time.monotonic() - started)))
        coalesce(self.stopping, started, self._gap)


class WakePipe:
    """A wake-up that a selector waits on beside other descriptors (the engine also
    waits on its children's pidfds, which a threading.Event cannot).

    While a wake is pending, another one writes nothing: the waiter clears the flag
    in `take()` before draining, so the turn that follows sees every change committed
    before the flag was seen set, and a burst of wakes costs one system call, not one
    each (nor a hand-over of the GIL each)."""

    def __init__(self):
        self._read, self._write = os.pipe2(os.O_NONBLOCK | os.O_CLOEXEC)
        self._pending = False

    def fileno(self):
        return self._read

    def wake(self):
        """From any thread: make fileno() readable, unless a wake is already pending."""
        if self._pending:
            return
        self._pending = True
        try:
            os.write(self._write, b"x")
        except BlockingIOError:
            pass  # the pipe is full: a wake is already pending

    def take(self):
        """By the waiter, once fileno() is readable."""
        self._pending = False
        try:
            while os.read(self._read, 4096):
                pass
        except BlockingIOError:
            pass

    def close(self):
        os.close(self._read)
        os.close(self._write)


def coalesce(stop, started, gap, monotonic=time.monotonic):
    """Sleep what is left of `gap` seconds since `started` (by `monotonic`), so a burst
    of wake-ups costs one turn per gap; returns at once when `stop` is set."""
    left = gap - (monotonic() - started)
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
