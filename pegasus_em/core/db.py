"""The daemon's own sqlite file: connections, transactions and the schema.

One writer connection behind a lock (BEGIN IMMEDIATE ... COMMIT) and a pool of
reader connections, so a long listing never blocks a submission.  WAL with
synchronous=NORMAL: a commit survives a daemon crash; only a power loss can
take back the last few.
"""

import contextlib
import errno
import os
import queue
import sqlite3
import threading

from ..errors import ConfigError, DiskFull

SCHEMA = [
    # version 1
    """
    CREATE TABLE ensembles (
        id INTEGER PRIMARY KEY,
        name TEXT NOT NULL UNIQUE,
        state TEXT NOT NULL,
        max_planning INTEGER NOT NULL,
        max_running INTEGER NOT NULL,
        created REAL NOT NULL,
        updated REAL NOT NULL
    );
    CREATE TABLE workflows (
        id INTEGER PRIMARY KEY,
        ensemble_id INTEGER NOT NULL REFERENCES ensembles(id) ON DELETE CASCADE,
        name TEXT NOT NULL,
        state TEXT NOT NULL,
        priority INTEGER NOT NULL,
        basedir TEXT NOT NULL,
        plan_command TEXT NOT NULL,
        wf_uuid TEXT,
        submitdir TEXT,
        reason TEXT,
        abort_requested INTEGER NOT NULL DEFAULT 0,
        created REAL NOT NULL,
        updated REAL NOT NULL,
        UNIQUE (ensemble_id, name)
    );
    -- Listings in submission order without a sort.
    CREATE INDEX workflows_ensemble ON workflows (ensemble_id);
    -- The engine only ever looks at workflows that still need work.
    CREATE INDEX workflows_active ON workflows (ensemble_id, priority DESC, id)
        WHERE state IN ('READY', 'PLANNING', 'QUEUED', 'RUNNING');
    CREATE TABLE triggers (
        id INTEGER PRIMARY KEY,
        ensemble_id INTEGER NOT NULL REFERENCES ensembles(id) ON DELETE CASCADE,
        name TEXT NOT NULL,
        type TEXT NOT NULL,
        state TEXT NOT NULL,
        script TEXT NOT NULL,
        args TEXT NOT NULL,            -- JSON list
        interval INTEGER NOT NULL,     -- seconds
        timeout INTEGER,               -- seconds from creation
        file_patterns TEXT NOT NULL,   -- JSON list
        basedir TEXT,
        created REAL NOT NULL,
        updated REAL NOT NULL,
        next_fire REAL,
        deadline REAL,
        fire_count INTEGER NOT NULL DEFAULT 0,
        failures INTEGER NOT NULL DEFAULT 0,
        last_error TEXT,
        UNIQUE (ensemble_id, name)
    );
    -- Append-only history of every state change.
    CREATE TABLE events (
        id INTEGER PRIMARY KEY,
        time REAL NOT NULL,
        ensemble_id INTEGER NOT NULL,
        workflow_id INTEGER,
        trigger_id INTEGER,
        old_state TEXT,
        new_state TEXT NOT NULL,
        reason TEXT
    );
    CREATE INDEX events_workflow ON events (workflow_id, id) WHERE workflow_id IS NOT NULL;
    CREATE INDEX events_ensemble ON events (ensemble_id, id);
    """,
    # version 2: what the engine records before it acts, to reconcile after a crash
    """
    ALTER TABLE workflows ADD COLUMN plan_pid INTEGER;     -- planner wrapper (own session)
    ALTER TABLE workflows ADD COLUMN plan_start INTEGER;   -- its start time, /proc stat field 22
    ALTER TABLE workflows ADD COLUMN plan_offset INTEGER;  -- log size before this attempt
    ALTER TABLE workflows ADD COLUMN plan_began REAL;
    ALTER TABLE workflows ADD COLUMN run_phase TEXT;       -- submit | follow | remove
    ALTER TABLE workflows ADD COLUMN run_pid INTEGER;      -- pegasus-run / pegasus-remove wrapper
    ALTER TABLE workflows ADD COLUMN run_start INTEGER;
    ALTER TABLE workflows ADD COLUMN run_began REAL;
    ALTER TABLE workflows ADD COLUMN baseline_blocks INTEGER;  -- dagman.out runs before ours
    ALTER TABLE workflows ADD COLUMN baseline_id TEXT;
    ALTER TABLE workflows ADD COLUMN dagman_held INTEGER NOT NULL DEFAULT 0
    """,
    # version 3: triggers fire; file-pattern triggers keep a ledger of the files they hand out
    """
    ALTER TABLE workflows ADD COLUMN trigger_id INTEGER
        REFERENCES triggers(id) ON DELETE SET NULL;         -- the trigger that submitted it
    CREATE INDEX workflows_trigger ON workflows (trigger_id) WHERE trigger_id IS NOT NULL;
    -- The scheduler only ever looks at triggers that may still fire.
    CREATE INDEX triggers_live ON triggers (next_fire) WHERE state IN ('READY', 'RUNNING');
    CREATE INDEX triggers_deadline ON triggers (deadline) WHERE state IN ('READY', 'RUNNING');
    CREATE TABLE trigger_files (
        id INTEGER PRIMARY KEY,
        trigger_id INTEGER NOT NULL REFERENCES triggers(id) ON DELETE CASCADE,
        path TEXT NOT NULL,            -- where the file arrived
        dev INTEGER NOT NULL,          -- identity: path + dev/ino/size/mtime
        ino INTEGER NOT NULL,
        size INTEGER NOT NULL,
        mtime_ns INTEGER NOT NULL,
        dest TEXT NOT NULL,            -- its path in processed/, as --inputs names it
        linked INTEGER NOT NULL DEFAULT 0,  -- 1: dest is a hard link made before submitting
        state TEXT NOT NULL,           -- claimed -> submitted -> done
        workflow TEXT,                 -- the workflow that got it (from submitted on)
        created REAL NOT NULL,
        updated REAL NOT NULL
    );
    -- Files not yet done are few (in flight, or waiting for an overlapping trigger).
    CREATE INDEX trigger_files_open ON trigger_files (trigger_id) WHERE state != 'done';
    CREATE INDEX trigger_files_path ON trigger_files (path, trigger_id)
    """,
    # version 4: beyond Pegasus: dependencies, run-after, auto-hold, latency
    # histograms and the notification outbox
    """
    ALTER TABLE ensembles ADD COLUMN max_failures INTEGER NOT NULL DEFAULT 0;  -- 0: no auto-hold
    ALTER TABLE ensembles ADD COLUMN failure_streak INTEGER NOT NULL DEFAULT 0;  -- failed in a row
    ALTER TABLE workflows ADD COLUMN state_since REAL;      -- when it entered its state
    UPDATE workflows SET state_since = updated;
    ALTER TABLE workflows ADD COLUMN run_after REAL;        -- not planned before (epoch)
    ALTER TABLE workflows ADD COLUMN deferred INTEGER NOT NULL DEFAULT 0;      -- 1 until run_after
    ALTER TABLE workflows ADD COLUMN deps_pending INTEGER NOT NULL DEFAULT 0;  -- not yet SUCCESSFUL
    -- workflow_id is not planned before after_id is SUCCESSFUL (any ensemble).
    CREATE TABLE dependencies (
        workflow_id INTEGER NOT NULL REFERENCES workflows(id) ON DELETE CASCADE,
        after_id INTEGER NOT NULL REFERENCES workflows(id) ON DELETE CASCADE,
        PRIMARY KEY (workflow_id, after_id)
    ) WITHOUT ROWID;
    CREATE INDEX dependencies_after ON dependencies (after_id, workflow_id);
    -- What the engine may plan: READY, no unmet dependency, no run-after time ahead.
    CREATE INDEX workflows_eligible ON workflows (ensemble_id, priority DESC, id)
        WHERE state = 'READY' AND deps_pending = 0 AND deferred = 0;
    CREATE INDEX workflows_deferred ON workflows (run_after) WHERE deferred = 1;
    -- Planned or being planned or run: counted every engine turn without the READY ones.
    CREATE INDEX workflows_busy ON workflows (state, ensemble_id)
        WHERE state IN ('PLANNING', 'QUEUED', 'RUNNING');
    -- Counts per ensemble and state straight from the index (metrics, watch).
    CREATE INDEX workflows_states ON workflows (ensemble_id, state);
    -- Histograms of seconds spent in a state (and trigger lag): one row per bucket.
    CREATE TABLE latency (
        name TEXT NOT NULL,
        le REAL NOT NULL,              -- upper bound of the bucket (not cumulative)
        count INTEGER NOT NULL,
        sum REAL NOT NULL,
        PRIMARY KEY (name, le)
    ) WITHOUT ROWID;
    -- Where notifications go (written by the daemon from its settings at start).
    CREATE TABLE notify_targets (
        channel TEXT NOT NULL,         -- email | webhook
        target TEXT NOT NULL,          -- address or URL
        PRIMARY KEY (channel, target)
    );
    -- Notifications, queued in the transaction of what they report.
    CREATE TABLE outbox (
        id INTEGER PRIMARY KEY,
        channel TEXT NOT NULL,
        target TEXT NOT NULL,
        kind TEXT NOT NULL,            -- workflow.ended | ensemble.held | trigger.failed
        payload TEXT NOT NULL,         -- the JSON event
        state TEXT NOT NULL,           -- pending -> sent | failed
        attempts INTEGER NOT NULL DEFAULT 0,
        next_try REAL NOT NULL,
        last_error TEXT,
        created REAL NOT NULL,
        updated REAL NOT NULL
    );
    CREATE INDEX outbox_due ON outbox (next_try) WHERE state = 'pending'
    """,
    # version 5: triggers that ride out failures, and retention
    """
    ALTER TABLE triggers ADD COLUMN first_error TEXT;     -- the first of the failures in a row
    ALTER TABLE triggers ADD COLUMN first_failure REAL;   -- its time (NULL: not failing)
    ALTER TABLE triggers ADD COLUMN last_failure REAL;    -- time of the last failed firing
    -- The highest id ever given, for tables whose newest row may be deleted (a purged
    -- trigger): ids are never given twice.
    CREATE TABLE sequences (
        name TEXT PRIMARY KEY,
        value INTEGER NOT NULL
    ) WITHOUT ROWID;
    INSERT INTO sequences (name, value) SELECT 'triggers', coalesce(max(id), 0) FROM triggers;
    -- Workflows removed by retention, counted by ensemble and final state (metrics).
    CREATE TABLE removed (
        ensemble_id INTEGER NOT NULL,
        state TEXT NOT NULL,
        count INTEGER NOT NULL,
        PRIMARY KEY (ensemble_id, state)
    ) WITHOUT ROWID;
    -- Retention reads only what may go: finished workflows by when they finished,
    -- events of ensembles and triggers, done ledger rows and delivered notifications.
    CREATE INDEX workflows_finished ON workflows (state_since)
        WHERE state IN ('SUCCESSFUL', 'ABORTED', 'PLAN_FAILED', 'RUN_FAILED', 'FAILED');
    CREATE INDEX events_unattached ON events (time) WHERE workflow_id IS NULL;
    CREATE INDEX events_newest ON events (ensemble_id, trigger_id, id) WHERE workflow_id IS NULL;
    CREATE INDEX trigger_files_done ON trigger_files (id) WHERE state = 'done';
    CREATE INDEX outbox_ended ON outbox (updated) WHERE state != 'pending'
    """,
]


class SchemaTooNew(ConfigError):
    pass


CHECKPOINT_EVERY = 100  # commits between checkpoints of the WAL into the database file


class Database:
    """A sqlite file shared by all threads of one daemon.

    The WAL is copied into the database file by whichever thread's commit is the
    CHECKPOINT_EVERY-th, after it has released the write lock: SQLite's own
    automatic checkpoint runs inside the commit, under the lock, and its two
    fsyncs then stalled every other writer (about one submission in 100 waited
    milliseconds, and every one queued behind it)."""

    def __init__(self, path, readers=8):
        self.path = path
        self._write_lock = threading.Lock()
        self._writer = self._connect()
        self._writer.execute("PRAGMA wal_autocheckpoint=0")
        self._readers = queue.LifoQueue()
        self._max_idle_readers = readers
        self._closed = False
        self._commits = 0
        self._checkpoint_lock = threading.Lock()
        self._checkpointer = None
        migrate(self._writer)
        incremental_vacuum(self._writer)
        self.checkpoint()  # what a migration or a vacuum left in the WAL

    def _connect(self):
        conn = sqlite3.connect(self.path, isolation_level=None, check_same_thread=False,
                               timeout=30)
        conn.execute("PRAGMA auto_vacuum=INCREMENTAL")  # only takes on a new file: before WAL
        conn.execute("PRAGMA journal_mode=WAL")
        conn.execute("PRAGMA synchronous=NORMAL")
        conn.execute("PRAGMA foreign_keys=ON")
        conn.execute("PRAGMA busy_timeout=30000")
        return conn

    @contextlib.contextmanager
    def write(self):
        """One transaction on the writer connection; rolled back on any error.
        A full disk raises DiskFull (503), and the connection stays usable."""
        with self._write_lock:
            conn = self._writer
            try:
                conn.execute("BEGIN IMMEDIATE")
                try:
                    yield conn
                    conn.execute("COMMIT")
                except BaseException:
                    if conn.in_transaction:  # SQLITE_FULL may have rolled back already
                        conn.execute("ROLLBACK")
                    raise
            except (sqlite3.Error, OSError) as e:
                if is_disk_full(e):
                    raise DiskFull("The disk holding %s is full: nothing was changed. Free "
                                   "some space and try again." % self.path) from e
                raise
        self._commits += 1  # under the GIL; a lost count only delays a checkpoint
        if self._commits >= CHECKPOINT_EVERY:
            self.checkpoint()

    def checkpoint(self):
        """Copy what the WAL holds into the database file (PASSIVE: never waits for a
        reader or a writer); one thread at a time, the others go on.  A failure is
        left for the next one."""
        if self._closed or not self._checkpoint_lock.acquire(blocking=False):
            return
        try:
            self._commits = 0
            if self._checkpointer is None:
                self._checkpointer = self._connect()
            self._checkpointer.execute("PRAGMA wal_checkpoint(PASSIVE)").fetchall()
        except sqlite3.Error:
            pass
        finally:
            self._checkpoint_lock.release()

    @contextlib.contextmanager
    def read(self):
        """A consistent snapshot on a pooled reader connection."""
        try:
            conn = self._readers.get_nowait()
        except queue.Empty:
            conn = self._connect()
        conn.execute("BEGIN")
        try:
            yield conn
        finally:
            conn.execute("COMMIT")
            if self._closed or self._readers.qsize() >= self._max_idle_readers:
                conn.close()
            else:
                self._readers.put(conn)

    def give_back(self, pages):
        """Return up to `pages` free pages to the file system (incremental vacuum): one
        short write of its own; -> free pages left."""
        with self._write_lock:
            # executescript steps the pragma to its end (execute frees a single page).
            self._writer.executescript("PRAGMA incremental_vacuum(%d)" % int(pages))
            return self._writer.execute("PRAGMA freelist_count").fetchone()[0]

    def close(self):
        self._closed = True
        with self._checkpoint_lock:
            if self._checkpointer is not None:
                self._checkpointer.close()
        with self._write_lock:
            self._writer.close()
        while True:
            try:
                self._readers.get_nowait().close()
            except queue.Empty:
                break


def migrate(conn):
    """Bring the schema to the newest version, one numbered step at a time."""
    version = conn.execute("PRAGMA user_version").fetchone()[0]
    if version > len(SCHEMA):
        raise SchemaTooNew("%s has schema version %d; this pegasus-em knows only %d"
                           % (conn.execute("PRAGMA database_list").fetchone()[2],
                              version, len(SCHEMA)))
    for number in range(version, len(SCHEMA)):
        conn.execute("BEGIN IMMEDIATE")
        try:
            for statement in SCHEMA[number].split(";"):
                if statement.strip():
                    conn.execute(statement)
            conn.execute("PRAGMA user_version=%d" % (number + 1))
        except BaseException:
            conn.execute("ROLLBACK")
            raise
        conn.execute("COMMIT")


def incremental_vacuum(conn):
    """A file made before version 5 frees no space (auto_vacuum off): rewrite it once
    with incremental vacuum on.  Where that fails (no room for the copy), freed pages
    are still reused by new rows; the next start tries again."""
    if conn.execute("PRAGMA auto_vacuum").fetchone()[0] == 2:
        return
    try:
        conn.executescript("PRAGMA auto_vacuum=INCREMENTAL; VACUUM")
    except sqlite3.Error:
        pass


def is_disk_full(e):
    """ENOSPC or EDQUOT, raw or as sqlite's SQLITE_FULL ("database or disk is full")."""
    if isinstance(e, OSError):
        return e.errno in (errno.ENOSPC, errno.EDQUOT)
    code = getattr(e, "sqlite_errorcode", None)  # Python 3.11+
    return code == SQLITE_FULL or (code is None and "disk is full" in str(e))


SQLITE_FULL = getattr(sqlite3, "SQLITE_FULL", 13)


def open_database(path):
    """Create the file 0600 before sqlite does, so it is never world-readable.

    A file that cannot be used is a ConfigError naming it and what to do."""
    try:
        fd = os.open(path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o600)
    except OSError as e:
        raise ConfigError("Cannot open the database %s: %s. It must be a file you can read "
                          "and write (chmod 600 %s); or move it away to start with an "
                          "empty one." % (path, e.strerror, path))
    os.close(fd)
    try:
        return Database(path)
    except sqlite3.Error as e:
        raise ConfigError(_unusable(path, e))


def _unusable(path, e):
    if is_disk_full(e):
        return "The disk holding %s is full: free some space and start again." % path
    if isinstance(e, sqlite3.OperationalError):  # cannot open, read-only, I/O error
        return ("Cannot use the database %s: %s. You must be able to write it, its "
                "folder and its -wal and -shm files, on a disk with free space." % (path, e))
    return ("%s is not a usable SQLite database (%s). Move it away (mv %s %s.broken) to "
            "start with an empty one, or restore it from a backup." % (path, e, path, path))
