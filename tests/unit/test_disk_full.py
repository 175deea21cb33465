"""A full disk is recognised and logged once a minute, without a traceback.  A real
daemon on a full disk: tests/integration/test_bad_state.py.
"""

import contextlib
import errno
import logging
import sqlite3

import pytest

from pegasus_em.em import daemon as daemon_mod
from pegasus_em.core import db as dbmod
from pegasus_em.errors import DiskFull


def test_disk_full_errors_are_recognised(tmp_path):
    assert dbmod.is_disk_full(OSError(errno.ENOSPC, "No space left on device"))
    assert dbmod.is_disk_full(sqlite3.OperationalError("database or disk is full"))
    assert not dbmod.is_disk_full(OSError(errno.EACCES, "Permission denied"))
    assert not dbmod.is_disk_full(sqlite3.OperationalError("database is locked"))
    db = dbmod.open_database(str(tmp_path / "em.db"))
    try:
        with pytest.raises(DiskFull) as info:
            with db.write():
                raise OSError(errno.ENOSPC, "No space left on device")
        assert info.value.status == 503 and str(tmp_path) in info.value.message
        with db.write() as conn:  # still usable
            conn.execute("PRAGMA user_version")
    finally:
        db.close()


def test_disk_full_log_lines_are_one_a_minute_without_traceback():
    now = [0.0]
    records = []
    handler = logging.Handler()
    handler.emit = records.append
    handler.addFilter(daemon_mod.DiskFullFilter(clock=lambda: now[0]))
    logger = logging.getLogger("test_bad_state.disk")
    logger.addHandler(handler)
    logger.propagate = False
    try:
        for t in (0.0, 1.0, 59.0, 61.0):
            now[0] = t
            try:
                raise DiskFull("The disk holding em.db is full")
            except DiskFull:
                logger.exception("engine tick failed")
        try:
            raise ValueError("other")
        except ValueError:
            logger.exception("something else")
    finally:
        logger.removeHandler(handler)
    assert [r.getMessage() for r in records] == [
        "engine tick failed: The disk holding em.db is full",
        "engine tick failed: The disk holding em.db is full", "something else"]
    assert records[0].exc_info is None and records[2].exc_info is not None


def test_a_log_that_cannot_be_written_is_one_line_a_minute(capsys):
    handler = daemon_mod.LogFile("/dev/full")  # every write: ENOSPC
    logger = logging.getLogger("test_bad_state.full")
    logger.addHandler(handler)
    logger.propagate = False
    try:
        for i in range(3):
            logger.warning("line %d", i)
    finally:
        logger.removeHandler(handler)
        with contextlib.suppress(OSError):  # its buffer cannot be flushed either
            handler.close()
    assert capsys.readouterr().err == \
        "pegasus-em: cannot write the log /dev/full: No space left on device\n"
