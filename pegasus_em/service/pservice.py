"""`pegasus-service`: the multi-user HTTPS service (monitoring API, ensemble
manager API and, later, the dashboard), and the mod_wsgi `application`.

Process model.  The main process reads the settings, loads libpam, prepares
TLS and binds the socket, then either serves itself (threads: TLS handshake,
parsing and authentication per connection, never in the accept loop) or, with
MAX_PROCESSES = N, forks N listener processes that share the socket and
replaces any that dies (gunicorn's sync-worker arbiter: it forks before it
starts any thread).  Requests for a user run in that user's worker process
(`switch`), or in the listener when process switching is off.
"""

import argparse
import dataclasses
import logging
import os
import pwd
import re
import signal
import socket
import sys
import threading
import time

from .. import __version__, config, loops
from . import pam, tls
from ..web import httpd
from ..web.auth import AdminUsers, EmPasswordLogin, NoAuthentication, PamAuthentication
from ..errors import ConfigError
from .service_app import Backend, ServiceApp, normalize_prefix
from . import switch
from .switch import WorkerPool
from .userapp import UserApp, home_of

log = logging.getLogger("pegasus_em")

AUTHENTICATIONS = ("PAMAuthentication", "NoAuthentication")
RESTART_BACKOFF = 1.0  # seconds before replacing a listener that died young


def build_parser():
    p = argparse.ArgumentParser(prog="pegasus-service",
                                description="Pegasus Service: dashboard, monitoring API and "
                                            "ensemble manager API over HTTPS")
    p.add_argument("--version", action="version", version="pegasus-service " + __version__)
    p.add_argument("--host", metavar="HOST",
                   help="address to listen on (default: SERVER_HOST, 127.0.0.1)")
    p.add_argument("-p", "--port", type=int, metavar="N",
                   help="port to listen on (default: SERVER_PORT, 5000; 0 picks a free one)")
    p.add_argument("-d", "--debug", action="store_true", help="log debugging output to stderr")
    p.add_argument("-nd", "--no-debug", dest="debug", action="store_false",
                   help="no debugging output (the default; accepted as Pegasus accepts it)")
    p.add_argument("-v", "--verbose", action="count", default=0,
                   help="more logging, repeatable as in Pegasus (-vv: as --debug)")
    p.set_defaults(debug=False)
    return p


def main(argv=None):
    args = build_parser().parse_args(argv)
    try:
        cfg = config.load()
        setup_logging(args.debug or args.verbose >= 2 or cfg["DEBUG"])
        loops.log_thread_deaths(log)
        for warning in cfg.warnings:
            log.warning("%s", warning)
        service = Service.prepare(cfg, args.host, args.port)
    except ConfigError as e:
        print("ERROR: %s" % e.message, file=sys.stderr)
        return e.exit_code
    return service.run()


class Settings:
    """The pegasus-service settings, checked before anything starts."""

    def __init__(self, cfg, overrides=None):
        cfg = dict(cfg, **(overrides or {}))
        self.authentication = cfg["AUTHENTICATION"]
        if self.authentication not in AUTHENTICATIONS:
            raise ConfigError("AUTHENTICATION must be %s, not %r"
                              % (" or ".join(AUTHENTICATIONS), self.authentication))
        self.admins = AdminUsers(cfg["ADMIN_USERS"])
        self.admin_write = bool(cfg["ADMIN_WRITE"])
        self.em_password_login = bool(cfg["EM_PASSWORD_LOGIN"])
        self.public_url = cfg["PUBLIC_URL"]
        if self.public_url is not None and not re.match(r"https?://[^/?#]+(/[^?#]*)?\Z",
                                                       self.public_url):
            raise ConfigError("PUBLIC_URL must be an absolute http(s) URL without query, "
                              "not %r" % self.public_url)
        self.process_switching = bool(cfg["PROCESS_SWITCHING"])
        self.max_processes = cfg["MAX_PROCESSES"]
        if self.max_processes is not None and not (isinstance(self.max_processes, int)
                                                   and self.max_processes >= 1):
            raise ConfigError("MAX_PROCESSES must be None or a number >= 1, not %r"
                              % (self.max_processes,))
        try:
            self.prefix = normalize_prefix(cfg["PEGASUS_SERVICE_URL_PREFIX"])
        except ValueError as e:
            raise ConfigError(str(e))
        self.server_limits = httpd.limits(cfg)


def build_app(settings, pam_lib=None):
    """(ServiceApp, Backend) for this process; call it after any fork."""
    euid = os.geteuid()
    me = pwd.getpwuid(euid).pw_name
    if settings.process_switching and euid == 0:
        backend = Backend(pool=WorkerPool())
    elif settings.process_switching:
        backend = Backend(local=UserApp(), only_user=me)
    else:
        backend = Backend(local=UserApp())
    if settings.authentication == "NoAuthentication":
        auth = NoAuthentication()
    else:
        pam_lib = pam_lib or pam.load()
        fallback = EmPasswordLogin(pam_lib, home_of) if settings.em_password_login else None
        auth = PamAuthentication(pam_lib, fallback=fallback)
    return ServiceApp(auth, settings.admins, backend, settings.prefix, me,
                      public_url=settings.public_url, admin_write=settings.admin_write), backend


def warn_about(settings):
    euid = os.geteuid()
    me = pwd.getpwuid(euid).pw_name
    if settings.process_switching and euid != 0:
        log.warning("PROCESS_SWITCHING is True but pegasus-service is not running as root: "
                    "it serves only %s's data; other users get 403", me)
    if not settings.process_switching and euid == 0:
        log.warning("PROCESS_SWITCHING is False and pegasus-service runs as root: users' "
                    "databases and files are read by this root process, each checked to be "
                    "the user's own")
    if settings.authentication == "NoAuthentication":
        log.warning("AUTHENTICATION is NoAuthentication: no password is asked, and a client "
                    "acts as the user its URL names (or REMOTE_USER from a front end, or %s); "
                    "use it only on a single-user machine or behind an authenticating proxy",
                    me)
    log.info("ADMIN_USERS: %s may view other users' data%s", settings.admins.describe(),
             " and act on it (ADMIN_WRITE)" if settings.admin_write else "")
    if settings.em_password_login:
        log.info("EM_PASSWORD_LOGIN: users may also sign in with their pegasus-em PASSWORD")


@dataclasses.dataclass
class Service:
    """What `prepare` readied before any fork or thread, and `stop`, set to end `serve`."""

    settings: "Settings"
    sock: socket.socket
    creds: "tls.Credentials"
    ctx: "ssl.SSLContext"
    pam_lib: object  # pam.load()'s library, or None without PAM
    url: str
    stop: threading.Event = dataclasses.field(default_factory=threading.Event)

    @classmethod
    def prepare(cls, cfg, host=None, port=None):
        """Everything that can fail at start, before any fork or thread."""
        httpd.raise_descriptor_limit()  # before forking listeners: they inherit it
        settings = Settings(cfg)
        if settings.process_switching and os.geteuid() == 0:
            problem = switch.probe_worker_start()
            if problem:
                raise ConfigError("pegasus-service is installed where other users cannot run "
                                  "it (%s); each user's requests run in a process of that "
                                  "user: install it where every user can read it, e.g. "
                                  "python3 -m venv /opt/pegasus-em && /opt/pegasus-em/bin/pip "
                                  "install . (not under root's home)" % problem)
        host = host or cfg["SERVER_HOST"] or "127.0.0.1"
        port = cfg["SERVER_PORT"] if port is None else port
        pam_lib = None
        if settings.authentication == "PAMAuthentication":
            pam_lib = pam.load()
        creds = tls.credentials(cfg, config.pegasus_dir(), host)
        ctx = creds.context()
        sock = listen(host, port)
        name, bound = sock.getsockname()[:2]
        if name in ("0.0.0.0", "::"):
            name = socket.getfqdn()
        shown = "[%s]" % name if ":" in name else name
        url = "https://%s:%d%s" % (shown, bound, settings.prefix)
        settings.public_url = settings.public_url or url
        warn_about(settings)
        return cls(settings, sock, creds, ctx, pam_lib, url)

    def run(self):
        print("pegasus-service %s serving %s/ (certificate %s)" % (__version__, self.url,
                                                                    self.creds.cert),
              flush=True)
        if self.settings.max_processes is None:
            self._install_signals()
            return self.serve()
        return Arbiter(self).run()

    def _install_signals(self):
        for sig in (signal.SIGTERM, signal.SIGINT):
            signal.signal(sig, lambda *_: self.stop.set())

    def serve(self):
        """Serve in this process until `stop` is set."""
        app, backend = build_app(self.settings, self.pam_lib)
        server = SharedSocketServer(self.sock, app, self.ctx, **self.settings.server_limits)
        loops.spawn("http", server.serve_forever)
        tls.start_renewal(self.creds, self.ctx, self.stop)
        log.info("listener pid %d ready", os.getpid())
        try:
            while not self.stop.wait(3600):
                pass
        finally:
            server.shutdown()
            server.server_close()
            backend.close()
        return 0


class Arbiter:
    """MAX_PROCESSES listener processes on one socket, replaced when they die."""

    def __init__(self, service):
        self.service = service
        self.children = {}   # pid -> start time
        self.stop = threading.Event()

    def run(self):
        for sig in (signal.SIGTERM, signal.SIGINT):
            signal.signal(sig, lambda *_: self.stop.set())
        for _ in range(self.service.settings.max_processes):
            self.spawn()
        while not self.stop.wait(0.2):
            self.reap()
        for pid in list(self.children):
            _kill(pid, signal.SIGTERM)
        deadline = time.monotonic() + 10
        while self.children and time.monotonic() < deadline:
            self.reap(replace=False)
            time.sleep(0.05)
        for pid in list(self.children):
            _kill(pid, signal.SIGKILL)
        return 0

    def spawn(self):
        pid = os.fork()
        if pid == 0:
            code = 1
            try:
                signal.signal(signal.SIGINT, signal.SIG_IGN)  # the arbiter decides
                signal.signal(signal.SIGTERM, lambda *_: self.service.stop.set())
                code = self.service.serve()
            except BaseException:
                log.exception("listener %d failed", os.getpid())
            finally:
                os._exit(code)
        self.children[pid] = time.monotonic()

    def reap(self, replace=True):
        while True:
            try:
                pid, status = os.waitpid(-1, os.WNOHANG)
            except ChildProcessError:
                return
            if pid == 0:
                return
            started = self.children.pop(pid, None)
            if started is None:
                continue
            if replace and not self.stop.is_set():
                log.warning("listener %d ended (status %d); starting another", pid, status)
                if time.monotonic() - started < RESTART_BACKOFF:
                    time.sleep(RESTART_BACKOFF)
                self.spawn()


def _kill(pid, sig):
    try:
        os.kill(pid, sig)
    except ProcessLookupError:
        pass


class SharedSocketServer(httpd.Server):
    """httpd.Server on a socket bound (and perhaps shared) beforehand."""

    def __init__(self, sock, app, ssl_context, **limits):
        self._bound = sock
        super().__init__(sock.getsockname()[:2], app, ssl_context, **limits)

    def server_bind(self):
        self.socket.close()
        self.socket = self._bound
        self.server_address = self.socket.getsockname()
        self.server_name, self.server_port = self.server_address[:2]

    def server_activate(self):
        pass


def listen(host, port):
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    try:
        sock = socket.create_server((host, port), family=family, backlog=httpd.BACKLOG)
    except OSError as e:
        raise ConfigError("Cannot listen on %s:%s: %s" % (host, port, e.strerror or e))
    sock.set_inheritable(False)
    return sock


def setup_logging(debug):
    root = logging.getLogger("pegasus_em")
    if root.handlers:
        return
    root.setLevel(logging.DEBUG if debug else logging.INFO)
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(logging.Formatter(
        "%(asctime)s %(levelname)s [%(process)d] %(name)s: %(message)s"))
    root.addHandler(handler)


def wsgi_application(**overrides):
    """The WSGI callable for Apache mod_wsgi (see share/pegasus/service/pegasus-service.wsgi):
    settings from the service.py of the user mod_wsgi runs it as (never root: mod_wsgi
    refuses), the .wsgi file's on top.  Apache listens and does TLS."""
    cfg = config.load()
    setup_logging(cfg["DEBUG"])
    known = {s.name for s in config.SETTINGS}
    for warning in cfg.warnings + ["%s: unknown setting in the .wsgi file (ignored)" % name
                                   for name in sorted(set(overrides) - known)]:
        log.warning("%s", warning)
    settings = Settings(cfg, overrides)
    warn_about(settings)
    app, _backend = build_app(settings)
    return MountedAtPrefix(app) if settings.prefix else app


class MountedAtPrefix:
    """Apache may already mount the service at its prefix (`WSGIScriptAlias /pegasus`, the
    way Pegasus is put below a prefix under Apache): the prefix is then in SCRIPT_NAME
    and is not asked for a second time at the start of PATH_INFO."""

    def __init__(self, app):
        self.app = app

    def __call__(self, environ, start_response):
        prefix = self.app.prefix
        script = environ.get("SCRIPT_NAME", "").rstrip("/")
        if script.endswith(prefix):
            environ = dict(environ, SCRIPT_NAME=script[:-len(prefix)],
                           PATH_INFO=prefix + environ.get("PATH_INFO", ""))
        return self.app(environ, start_response)
