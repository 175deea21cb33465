"""Retention: what the daemon keeps, and for how long, so months of operation
take bounded space.

A background loop makes a pass soon after start and then every hour.  Each
kind of row goes in batches of BATCH, one short transaction each with a pause
between them, so a pass never holds the write lock for long:

- finished workflows (SUCCESSFUL, ABORTED, PLAN_FAILED, RUN_FAILED, FAILED for
  RETAIN_DAYS), with their events, their logs and result files under
  ~/.pegasus/ensembles/; never an unfinished one, nor an event of a kept one;
- events of ensembles and triggers older than RETAIN_DAYS, except the newest of
  each (they say why it is in its state);
- done ledger rows of file triggers, once their workflow ended (or is gone) and
  the file no longer sits where it arrived;
- delivered notifications after RETAIN_SENT_DAYS, given-up ones after RETAIN_DAYS.

Ids are never given twice: the newest workflow and event are always kept (SQLite
gives max(id) + 1), triggers draw theirs from a sequence.  The histograms and the
event counter of /metrics are kept apart from the rows (table latency, max(id)),
and the workflows removed are counted by ensemble and state.  Freed pages beyond
a reserve go back to the file system by incremental vacuum, a step at a time.
"""

import logging
import os
import threading
import time

from .. import loops
from . import store
from .manager import PLAN_RESULT, REMOVE_RESULT, RUN_RESULT

log = logging.getLogger(__name__)

DAY = 86400.0
BATCH = 500           # rows per transaction
PAUSE = 0.02          # seconds between two batches: other writers get the lock
EVERY = 3600.0        # seconds between passes
FIRST = 2.0           # the first pass, this long after start
RESERVE_PAGES = 2048  # free pages kept for new rows; beyond them the file shrinks
VACUUM_STEP = 1024    # pages given back per transaction
WORKFLOW_FILES = (".log", PLAN_RESULT, RUN_RESULT, REMOVE_RESULT)


class Retention:
    def __init__(self, db, ensembles_dir, keep_days=90, keep_sent_days=7, clock=time.time,
                 batch=BATCH, pause=PAUSE, reserve_pages=RESERVE_PAGES):
        self.db = db
        self.ensembles_dir = ensembles_dir
        self.keep = None if keep_days is None else keep_days * DAY
        self.keep_sent = None if keep_sent_days is None else keep_sent_days * DAY
        self.clock = clock
        self.batch = batch
        self.pause = pause
        self.reserve_pages = reserve_pages
        self._stop = threading.Event()
        self._thread = None

    def start(self):
        self._thread = loops.start("retention", self.tick, self._stop.wait, self._stop, log,
                                   first_wait=FIRST)

    def stop(self, timeout=10):
        self._stop.set()
        if self._thread:
            self._thread.join(timeout)

    def tick(self, now=None):
        """One pass; -> seconds until the next."""
        report = self.run(self.clock() if now is None else now)
        if any(report.values()):
            log.info("retention removed %s", ", ".join(
                "%d %s" % (n, what) for what, n in report.items() if n))
        return EVERY

    def run(self, now):
        """Remove what is past its time; -> {what: how many}."""
        report = {}
        if self.keep is not None:
            before = now - self.keep
            report["workflows"] = self._repeat(lambda conn: self._workflows(conn, before))
            report["events"] = self._repeat(
                lambda conn: _full(store.remove_old_events(conn, before, self.batch), self.batch))
        cursor = [0]
        report["ledger rows"] = self._repeat(lambda conn: self._ledger(conn, cursor))
        report["notifications"] = self._repeat(lambda conn: _full(store.remove_notifications(
            conn, _minus(now, self.keep_sent), _minus(now, self.keep), self.batch), self.batch))
        report["free pages given back"] = self._give_back()
        return report

    def _repeat(self, step):
        """step(conn) -> (removed, more) in its own transaction, until nothing more."""
        total = 0
        while not self._stop.is_set():
            with self.db.write() as conn:
                removed, more = step(conn)
            total += removed
            if not more:
                break
            self._stop.wait(self.pause)
        return total

    def _workflows(self, conn, before):
        """A batch of finished workflows; their files go inside the transaction, while no
        new workflow of the same name can be submitted."""
        gone = store.remove_finished_workflows(conn, before, self.batch)
        for ensemble, name in gone:
            for suffix in WORKFLOW_FILES:
                _unlink(os.path.join(self.ensembles_dir, ensemble, name + suffix))
        return len(gone), len(gone) == self.batch

    def _ledger(self, conn, cursor):
        rows = store.done_files(conn, cursor[0], self.batch)
        if rows:
            cursor[0] = rows[-1][0]
        gone = [i for i, path, dev, ino in rows if not _still_there(path, dev, ino)]
        store.remove_files(conn, gone)
        return len(gone), len(rows) == self.batch

    def _give_back(self):
        """Free pages beyond the reserve back to the file system, a step at a time."""
        with self.db.read() as conn:
            free = conn.execute("PRAGMA freelist_count").fetchone()[0]
        given = 0
        while free > self.reserve_pages and not self._stop.is_set():
            left = self.db.give_back(min(VACUUM_STEP, free - self.reserve_pages))
            if left >= free:
                break  # a file without incremental vacuum (its conversion failed)
            given, free = given + free - left, left
            self._stop.wait(self.pause)
        return given


def _full(removed, batch):
    return removed, removed == batch


def _minus(now, seconds):
    return None if seconds is None else now - seconds


def _still_there(path, dev, ino):
    """The file a ledger row names is back (or still) where it arrived."""
    try:
        st = os.lstat(path)
    except OSError:
        return False
    return (st.st_dev, st.st_ino) == (dev, ino)


def _unlink(path):
    try:
        os.unlink(path)
    except FileNotFoundError:
        pass
    except OSError as e:
        log.warning("cannot remove %s: %s", path, e.strerror or e)
