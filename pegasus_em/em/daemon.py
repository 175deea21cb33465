"""`pegasus-em server`: wiring, single-instance lock, signals, ordered shutdown."""

import fcntl
import ipaddress
import json
import logging
import logging.handlers
import os
import secrets
import signal
import socket
import sys
import threading
import time

from .. import __version__, config, loops
from ..core import notify, runner, store
from ..web import httpd
from ..core.retention import Retention
from .api import App
from ..web.auth import BasicAuth
from ..core.db import open_database
from ..errors import ConfigError, DiskFull, EMError
from ..core.manager import Manager, Settings
from ..core.ops import Ops
from ..core.triggers import Triggers

log = logging.getLogger("pegasus_em")

DB_NAME = "em.db"
LOCK_NAME = "em-server.lock"
ENDPOINT_NAME = "em-server.json"
LOG_NAME = "em-server.log"


class Paths:
    """Where one user's daemon keeps its files, all under ~/.pegasus."""

    def __init__(self, pegasus_dir):
        self.root = pegasus_dir
        self.ensembles = os.path.join(pegasus_dir, "ensembles")
        self.db = os.path.join(pegasus_dir, DB_NAME)
        self.lock = os.path.join(pegasus_dir, LOCK_NAME)
        self.endpoint = os.path.join(pegasus_dir, ENDPOINT_NAME)
        self.log = os.path.join(pegasus_dir, LOG_NAME)

    def create(self):
        for d in (self.root, self.ensembles):
            try:
                os.makedirs(d, mode=0o700, exist_ok=True)
            except OSError as e:
                raise ConfigError("Cannot create %s: %s" % (d, e.strerror))
            if not os.access(d, os.W_OK | os.X_OK):
                raise ConfigError("Cannot write in %s: the daemon keeps its database, log and "
                                  "lock there. Run: chmod 700 %s" % (d, d))


def serve(host=None, port=None, debug=False, allow_remote=False):
    """Run the daemon in the foreground until SIGTERM/SIGINT; returns an exit code."""
    stop = threading.Event()
    for sig in (signal.SIGTERM, signal.SIGINT):
        # The main thread acts, not the handler; set before start, since a client may
        # find us (and a supervisor stop us) as soon as the endpoint file exists.
        signal.signal(sig, lambda *_: stop.set())
    try:
        daemon = Daemon.start(host, port, debug, allow_remote)
    except EMError as e:  # ConfigError, or DiskFull while setting up
        print("ERROR: %s" % e.message, file=sys.stderr)
        return e.exit_code
    try:
        while not stop.wait(3600):
            pass
    finally:
        daemon.stop()
    return 0


class Daemon:
    def __init__(self, paths, cfg, db, server, lock_fd, manager, triggers, notifier):
        self.paths = paths
        self.config = cfg
        self.db = db
        self.server = server
        self.manager = manager
        self.triggers = triggers
        self.notifier = notifier
        self.retention = Retention(db, paths.ensembles, cfg["RETAIN_DAYS"],
                                   cfg["RETAIN_SENT_DAYS"])
        self._lock_fd = lock_fd
        self._thread = None

    @classmethod
    def start(cls, host=None, port=None, debug=False, allow_remote=False):
        if os.geteuid() == 0:
            raise ConfigError("pegasus-em server must not run as root: it runs plan commands "
                              "as the user who owns the ensembles. Start it as that user.")
        host = host or "127.0.0.1"
        exposed = check_host(host, allow_remote)
        cfg = config.load()
        paths = Paths(config.pegasus_dir())
        paths.create()
        check_settings(cfg)
        setup_logging(paths.log, debug or cfg["DEBUG"], cfg["LOG_MAX_BYTES"], cfg["LOG_BACKUPS"])
        loops.log_thread_deaths(log)
        for warning in cfg.warnings:
            log.warning("%s", warning)
        if exposed:
            print("WARNING: %s" % exposed, file=sys.stderr)
            log.warning("%s", exposed)
        httpd.raise_descriptor_limit()
        server_limits = httpd.limits(cfg)
        if not cfg["USERNAME"] or not cfg["PASSWORD"]:
            raise ConfigError("Specify USERNAME and PASSWORD in %s: the ensemble manager "
                              "refuses to serve without authentication"
                              % (cfg.path or config.config_path()))
        limits = (cfg["MAX_PLANNING_TOTAL"], cfg["MAX_RUNNING_TOTAL"])
        lock_fd = acquire_lock(paths.lock)
        db = open_database(paths.db)
        env = child_environment(cfg)
        with db.write() as conn:  # notifications are queued in the store for these
            store.set_notify_targets(conn, notify.targets(cfg))
        notifier = notify.Notifier(db, cfg["SMTP_HOST"], cfg["SMTP_PORT"], cfg["NOTIFY_FROM"])
        manager = Manager(db, paths.ensembles, Settings(
            interval=cfg["EM_INTERVAL"], plan_timeout=cfg["EM_PLAN_TIMEOUT"], env=env,
            max_planning_total=limits[0], max_running_total=limits[1]))
        manager.notify_wake = notifier.wake
        ops = Ops(db, paths.ensembles, analyzer=lambda submitdir: analyze(submitdir, env),
                  limits=limits)
        triggers = Triggers(ops, engine_wake=manager.wake,
                            max_failures=cfg["TRIGGER_MAX_FAILURES"], env=env,
                            failure_timeout=cfg["TRIGGER_FAILURE_TIMEOUT"])
        triggers.notify_wake = notifier.wake
        ops.wake = manager.wake
        ops.wake_triggers = triggers.wake
        ops.wake_notifier = notifier.wake
        token = secrets.token_urlsafe(32)  # new at each start: a stale one opens nothing
        app = App(ops, BasicAuth(cfg["USERNAME"], cfg["PASSWORD"], token).authenticate)
        port = _port(port, cfg)
        try:
            server = httpd.Server((host, port), app, **server_limits)
        except OSError as e:
            db.close()
            raise ConfigError("Cannot listen on %s:%s: %s" % (host, port, e.strerror or e))
        app.base_url = server.url
        daemon = cls(paths, cfg, db, server, lock_fd, manager, triggers, notifier)
        daemon._run(token)
        return daemon

    def _run(self, token):
        try:
            # Before the engine starts: no planner may see a workflow whose input
            # files a crash left half moved.
            self.triggers.recover()
        except Exception:
            log.exception("cannot recover the triggers' files; trying again later")
        # Before any thread starts, so a failure here leaves nothing running; clients
        # that come at once wait in the listen backlog.
        write_endpoint(self.paths.endpoint, self.server.url, token)
        self._thread = loops.spawn("http", self.server.serve_forever)
        self.manager.start()
        self.triggers.start()
        self.notifier.start()
        self.retention.start()
        log.info("pegasus-em %s serving %s (pid %d)", __version__, self.server.url, os.getpid())
        say("pegasus-em %s serving %s (pid %d); log: %s"
            % (__version__, self.server.url, os.getpid(), self.paths.log))

    def stop(self):
        log.info("shutting down")
        self.server.shutdown()
        self.server.server_close()
        self.triggers.stop()
        self.manager.stop()  # planners and DAGMans go on; a restart picks them up
        self.notifier.stop()  # what is not sent yet stays queued in the store
        self.retention.stop()  # between two batches: each is a transaction of its own
        self.db.close()
        try:
            os.unlink(self.paths.endpoint)
        except FileNotFoundError:
            pass
        os.close(self._lock_fd)


def say(line):
    """One line on stdout for whoever started us; a closed stdout must not stop us."""
    try:
        print(line, flush=True)
    except (OSError, ValueError):  # a closed pipe or file
        pass



# Settings that must be at least this (None allowed: no limit, or for ever).
_AT_LEAST = (("TRIGGER_MAX_FAILURES", 1), ("MAX_PLANNING_TOTAL", 1), ("MAX_RUNNING_TOTAL", 1),
             ("LOG_MAX_BYTES", 0), ("LOG_BACKUPS", 1))
_POSITIVE = ("TRIGGER_FAILURE_TIMEOUT", "RETAIN_DAYS", "RETAIN_SENT_DAYS")


def check_settings(cfg):
    """Numbers out of range stop the daemon at start, naming the setting."""
    for key, least in _AT_LEAST:
        if cfg[key] is not None and cfg[key] < least:
            raise ConfigError("%s must be at least %d (or None), not %r" % (key, least, cfg[key]))
    for key in _POSITIVE:
        if cfg[key] is not None and cfg[key] <= 0:
            raise ConfigError("%s must be more than 0 (or None), not %r" % (key, cfg[key]))


def child_environment(cfg):
    """What plan commands and Pegasus tools run with: ours, plus the configured bin dirs."""
    env = dict(os.environ)
    extra = [os.path.join(cfg[k], "bin") for k in ("PEGASUS_HOME", "CONDOR_HOME") if cfg[k]]
    if extra:
        env["PATH"] = os.pathsep.join(extra + [env.get("PATH", os.defpath)])
    return env


def analyze(submitdir, env):
    result = runner.run(["pegasus-analyzer", submitdir], timeout=300, env=env)
    return result.rc, result.output


def _port(port, cfg):
    if port is not None:
        return int(port)
    if cfg["EM_PORT"] is not None:
        return cfg["EM_PORT"]
    return config.em_port()


def check_host(host, allow_remote):
    """Plain HTTP with Basic auth leaves the machine only on request (--allow-remote);
    -> the warning to give when it does, else None."""
    if all(ip.is_loopback for ip in _resolve(host)):
        return None
    if not allow_remote:
        raise ConfigError("Refusing to listen on %s: it is not a loopback address, and "
                          "pegasus-em speaks plain HTTP, so USERNAME and PASSWORD would cross "
                          "the network in clear text. Give --allow-remote to do it anyway "
                          "(or serve remote users with pegasus-service, over HTTPS)." % host)
    return ("listening on %s, which is not a loopback address: HTTP Basic credentials "
            "cross the network in clear text" % host)


def _resolve(host):
    """Every address `host` stands for; [unspecified] when it resolves to nothing."""
    try:
        return [ipaddress.ip_address(host)]
    except ValueError:
        pass
    try:
        infos = socket.getaddrinfo(host, None, proto=socket.IPPROTO_TCP)
    except OSError:
        return [ipaddress.ip_address("0.0.0.0")]
    return [ipaddress.ip_address(info[4][0].split("%")[0]) for info in infos]


def acquire_lock(path):
    """One daemon per user: an flock held for the daemon's life (freed by the kernel on crash)."""
    fd = _open_private(path, os.O_RDWR, "the lock file")
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except OSError:
        holder = os.read(fd, 64).decode("ascii", "replace").strip()
        os.close(fd)
        raise ConfigError("Another pegasus-em server is already running for this user%s"
                          % (" (pid %s)" % holder if holder else ""))
    os.ftruncate(fd, 0)
    os.pwrite(fd, str(os.getpid()).encode("ascii"), 0)
    return fd


def write_endpoint(path, url, token):
    """Tell our clients where we listen (matters with --port 0) and this run's token
    (which they send instead of PASSWORD); atomic, 0600."""
    tmp = "%s.%d.tmp" % (path, os.getpid())
    doc = {"url": url, "pid": os.getpid(), "version": __version__, "token": token}
    try:
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_CLOEXEC, 0o600)
        with os.fdopen(fd, "w") as f:
            json.dump(doc, f)
        os.replace(tmp, path)
    except OSError as e:
        _unlink(tmp)
        raise ConfigError("Cannot write %s: %s" % (path, e.strerror))


def _unlink(path):
    try:
        os.unlink(path)
    except OSError:
        pass


def _open_private(path, flags, what):
    """Open (creating 0600) one of the daemon's files; a failure names it and the fix."""
    try:
        return os.open(path, flags | os.O_CREAT | os.O_CLOEXEC, 0o600)
    except OSError as e:
        raise ConfigError("Cannot open %s %s: %s. It must be a file you can write "
                          "(chmod 600 %s), or remove it." % (what, path, e.strerror, path))


def setup_logging(path, debug, max_bytes=0, backups=0):
    root = logging.getLogger("pegasus_em")
    root.setLevel(logging.DEBUG if debug else logging.INFO)
    fmt = logging.Formatter("%(asctime)s %(levelname)s %(threadName)s %(name)s: %(message)s")
    os.close(_open_private(path, os.O_WRONLY | os.O_APPEND, "the log file"))
    handler = LogFile(path, max_bytes, backups)
    handlers = [handler] + ([logging.StreamHandler(sys.stderr)] if debug else [])
    full = DiskFullFilter()
    for h in handlers:
        h.setFormatter(fmt)
        h.addFilter(full)
        root.addHandler(h)


class DiskFullFilter(logging.Filter):
    """On a full disk every write of every loop fails the same way: one line a minute
    for all of them, without the traceback."""

    every = 60.0

    def __init__(self, clock=time.monotonic):
        super().__init__()
        self._clock = clock
        self._quiet_until = None

    def filter(self, record):
        error = record.exc_info[1] if record.exc_info else None
        if not isinstance(error, DiskFull):
            return True
        now = self._clock()
        if self._quiet_until is not None and now < self._quiet_until:
            return False
        self._quiet_until = now + self.every
        record.msg, record.args = "%s: %s", (record.getMessage(), error.message)
        record.exc_info = record.exc_text = None
        return True


class LogFile(logging.handlers.RotatingFileHandler):
    """The daemon's log, rotated at `max_bytes` (LOG_MAX_BYTES) keeping `backups`
    older files, each 0600.  A write that fails (full disk) is one line on stderr a
    minute, not logging's traceback for every record."""

    every = 60.0
    _quiet_until = 0.0

    def __init__(self, path, max_bytes=0, backups=0):
        super().__init__(path, maxBytes=max_bytes, backupCount=backups)

    def _open(self):
        fd = os.open(self.baseFilename, os.O_WRONLY | os.O_APPEND | os.O_CREAT | os.O_CLOEXEC,
                     0o600)
        return open(fd, "a", encoding=self.encoding, errors=self.errors)

    def handleError(self, record):
        now = time.monotonic()
        if now >= self._quiet_until:
            self._quiet_until = now + self.every
            error = sys.exc_info()[1]
            print("pegasus-em: cannot write the log %s: %s" % (
                self.baseFilename, getattr(error, "strerror", None) or error), file=sys.stderr)
