"""`pegasus-em server`: wiring, single-instance lock, signals, ordered shutdown."""

import fcntl
import json
import logging
import logging.handlers
import os
import signal
import sys
import threading

from . import __version__, config, httpd, loops, notify, runner, store
from .api import App
from .auth import BasicAuth
from .db import SchemaTooNew, open_database
from .errors import ConfigError
from .manager import Manager, Settings
from .ops import Ops
from .triggers import Triggers

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
            os.makedirs(d, mode=0o700, exist_ok=True)


def serve(host=None, port=None, debug=False):
    """Run the daemon in the foreground until SIGTERM/SIGINT; returns an exit code."""
    try:
        daemon = Daemon.start(host, port, debug)
    except ConfigError as e:
        print("ERROR: %s" % e.message, file=sys.stderr)
        return e.exit_code
    stop = threading.Event()
    for sig in (signal.SIGTERM, signal.SIGINT):
        signal.signal(sig, lambda *_: stop.set())  # the main thread acts, not the handler
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
        self._lock_fd = lock_fd
        self._thread = None

    @classmethod
    def start(cls, host=None, port=None, debug=False):
        if os.geteuid() == 0:
            raise ConfigError("pegasus-em server must not run as root: it runs plan commands "
                              "as the user who owns the ensembles. Start it as that user.")
        cfg = config.load()
        paths = Paths(config.pegasus_dir())
        paths.create()
        setup_logging(paths.log, debug or cfg["DEBUG"])
        loops.log_thread_deaths(log)
        for warning in cfg.warnings:
            log.warning("%s", warning)
        httpd.raise_descriptor_limit()
        server_limits = httpd.limits(cfg)
        if not cfg["USERNAME"] or not cfg["PASSWORD"]:
            raise ConfigError("Specify USERNAME and PASSWORD in %s: the ensemble manager "
                              "refuses to serve without authentication"
                              % (cfg.path or config.config_path()))
        if cfg["TRIGGER_MAX_FAILURES"] < 1:
            raise ConfigError("TRIGGER_MAX_FAILURES must be at least 1, not %d"
                              % cfg["TRIGGER_MAX_FAILURES"])
        for key in ("MAX_PLANNING_TOTAL", "MAX_RUNNING_TOTAL"):
            if cfg[key] is not None and cfg[key] < 1:
                raise ConfigError("%s must be at least 1 (or None), not %d" % (key, cfg[key]))
        limits = (cfg["MAX_PLANNING_TOTAL"], cfg["MAX_RUNNING_TOTAL"])
        lock_fd = acquire_lock(paths.lock)
        try:
            db = open_database(paths.db)
        except SchemaTooNew as e:
            raise ConfigError(str(e))
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
                            max_failures=cfg["TRIGGER_MAX_FAILURES"], env=env)
        triggers.notify_wake = notifier.wake
        ops.wake = manager.wake
        ops.wake_triggers = triggers.wake
        ops.wake_notifier = notifier.wake
        app = App(ops, BasicAuth(cfg["USERNAME"], cfg["PASSWORD"]).authenticate)
        host = host or "127.0.0.1"
        port = _port(port, cfg)
        try:
            server = httpd.Server((host, port), app, **server_limits)
        except OSError as e:
            db.close()
            raise ConfigError("Cannot listen on %s:%s: %s" % (host, port, e.strerror or e))
        daemon = cls(paths, cfg, db, server, lock_fd, manager, triggers, notifier)
        daemon._run()
        return daemon

    def _run(self):
        try:
            # Before the engine starts: no planner may see a workflow whose input
            # files a crash left half moved.
            self.triggers.recover()
        except Exception:
            log.exception("cannot recover the triggers' files; trying again later")
        self._thread = loops.spawn("http", self.server.serve_forever)
        self.manager.start()
        self.triggers.start()
        self.notifier.start()
        write_endpoint(self.paths.endpoint, self.server.url)
        log.info("pegasus-em %s serving %s (pid %d)", __version__, self.server.url, os.getpid())

    def stop(self):
        log.info("shutting down")
        self.server.shutdown()
        self.server.server_close()
        self.triggers.stop()
        self.manager.stop()  # planners and DAGMans go on; a restart picks them up
        self.notifier.stop()  # what is not sent yet stays queued in the store
        self.db.close()
        try:
            os.unlink(self.paths.endpoint)
        except FileNotFoundError:
            pass
        os.close(self._lock_fd)


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


def acquire_lock(path):
    """One daemon per user: an flock held for the daemon's life (freed by the kernel on crash)."""
    fd = os.open(path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o600)
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


def write_endpoint(path, url):
    """Tell clients where we listen (matters with --port 0); atomic, 0600."""
    tmp = "%s.%d.tmp" % (path, os.getpid())
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as f:
        json.dump({"url": url, "pid": os.getpid(), "version": __version__}, f)
    os.replace(tmp, path)


def setup_logging(path, debug):
    root = logging.getLogger("pegasus_em")
    root.setLevel(logging.DEBUG if debug else logging.INFO)
    fmt = logging.Formatter("%(asctime)s %(levelname)s %(threadName)s %(name)s: %(message)s")
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o600)
    os.close(fd)
    handler = logging.handlers.WatchedFileHandler(path)
    handler.setFormatter(fmt)
    root.addHandler(handler)
    if debug:
        stream = logging.StreamHandler(sys.stderr)
        stream.setFormatter(fmt)
        root.addHandler(stream)
