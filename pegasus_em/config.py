"""Settings: `~/.pegasus/service.py` over built-in defaults, each declared once.

The file is Python, as in Pegasus: UPPERCASE assignments are settings; the file
PEGASUS_ENV names is read over it, as 5.x does.  The home directory comes from
the password database, never from $HOME, so a daemon started through sudo or by
pegasus-service finds the right user's files.
"""

import ast
import os
import pwd
import stat
from dataclasses import dataclass

from .errors import ConfigError

# pegasus-em listens on 7919 + uid % (65535 - 7919), as Pegasus 5.x does.
EM_BASE_PORT = 7919
EM_PORT_SPAN = 65535 - EM_BASE_PORT


@dataclass(frozen=True)
class Setting:
    name: str
    default: object
    help: str
    kinds: tuple = ()          # accepted Python types; empty means anything
    env: bool = False          # an environment variable of the same name wins (as in 5.x)


def _setting(name, default, help, *kinds, env=False):
    return Setting(name, default, help, kinds, env)


_OPT_STR = (str, type(None))
_OPT_INT = (int, type(None))

SETTINGS = (
    _setting("SERVER_HOST", "127.0.0.1", "pegasus-service listening address", *_OPT_STR),
    _setting("SERVER_PORT", 5000, "pegasus-service listening port", int),
    _setting("CERTIFICATE", None, "TLS certificate file for pegasus-service", *_OPT_STR),
    _setting("PRIVATE_KEY", None, "TLS private key file for pegasus-service", *_OPT_STR),
    _setting("DEBUG", False, "verbose logging", bool),
    _setting("SECRET_KEY", None, "secret for signed tokens (CSRF); random if unset", *_OPT_STR),
    _setting("AUTHENTICATION", "PAMAuthentication",
             "PAMAuthentication or NoAuthentication", str),
    _setting("PROCESS_SWITCHING", True, "serve each user in a process running as that user", bool),
    _setting("ADMIN_USERS", None, "None, '*', or a set/list of users who may view others",
             str, set, list, tuple, frozenset, type(None), bool),
    _setting("ADMIN_WRITE", False, "ADMIN_USERS may also act on others' ensembles "
             "(submit, replan, abort, ...), not only view their data", bool),
    _setting("EM_PASSWORD_LOGIN", False, "pegasus-service also accepts a user's pegasus-em "
             "USERNAME/PASSWORD (literal strings in their service.py) as their login; the "
             "account must still pass PAM account management", bool),
    _setting("PUBLIC_URL", None, "the URL users reach pegasus-service at "
             "(https://host:port[/prefix]): absolute links in API answers start with it, "
             "and pages it serves may post to it", *_OPT_STR),
    _setting("MAX_PROCESSES", None, "pegasus-service worker processes", *_OPT_INT),
    _setting("PEGASUS_SERVICE_URL_PREFIX", None, "prefix for every pegasus-service route "
             "(the environment variable of that name wins)", *_OPT_STR, env=True),
    _setting("STORAGE_DIRECTORY", None, "pegasus-service storage directory", *_OPT_STR),
    _setting("USERNAME", None, "user name for the ensemble manager's HTTP Basic auth", *_OPT_STR),
    _setting("PASSWORD", None, "password for the ensemble manager's HTTP Basic auth", *_OPT_STR),
    _setting("EM_INTERVAL", 5, "longest wait in seconds between looks at a running workflow; "
             "exits of local planners and DAGMans are seen at once (Pegasus: 60)", int, float),
    _setting("EM_PLAN_TIMEOUT", None, "seconds a plan command may run before it is stopped "
             "and the workflow fails (None: no limit)", int, float, type(None)),
    _setting("TRIGGER_MAX_FAILURES", None, "failed firings in a row after which a trigger "
             "becomes FAILED (None: a failing trigger keeps trying at each interval)",
             *_OPT_INT),
    _setting("TRIGGER_FAILURE_TIMEOUT", None, "seconds a trigger may keep failing, from the "
             "first failed firing in a row, before it becomes FAILED (None: no limit)",
             int, float, type(None)),
    _setting("RETAIN_DAYS", 90, "days finished workflows (with their events and logs), "
             "ensemble and trigger events and given-up notifications are kept "
             "(None: for ever)", int, float, type(None)),
    _setting("RETAIN_SENT_DAYS", 7, "days delivered notifications are kept (None: for ever)",
             int, float, type(None)),
    _setting("LOG_MAX_BYTES", 10 * 1024 * 1024, "size at which em-server.log is rotated "
             "(0: never)", int),
    _setting("LOG_BACKUPS", 5, "rotated logs kept (em-server.log.1 is the newest)", int),
    _setting("EM_PORT", None, "pegasus-em server port (default 7919 + uid % 57616)", *_OPT_INT),
    _setting("PEGASUS_HOME", None, "Pegasus installation whose bin/ holds pegasus-plan", *_OPT_STR),
    _setting("CONDOR_HOME", None, "HTCondor installation whose bin/ holds condor_submit_dag",
             *_OPT_STR),
    _setting("MAX_PLANNING_TOTAL", None, "most workflows planning at once across all "
             "ensembles (None: only each ensemble's max_planning)", *_OPT_INT),
    _setting("MAX_RUNNING_TOTAL", None, "most workflows running at once across all "
             "ensembles (None: only each ensemble's max_running)", *_OPT_INT),
    _setting("NOTIFY_EMAIL", None, "address (or list) to e-mail when a workflow ends, an "
             "ensemble is auto-held or a trigger fails", str, list, tuple, type(None)),
    _setting("NOTIFY_WEBHOOK", None, "URL (or list) to POST a JSON event to on the same "
             "occasions", str, list, tuple, type(None)),
    _setting("SMTP_HOST", "localhost", "mail server for NOTIFY_EMAIL", str),
    _setting("SMTP_PORT", 25, "its port", int),
    _setting("NOTIFY_FROM", None, "sender of notification e-mails (default user@host)",
             *_OPT_STR),
    _setting("MAX_CONNECTIONS", 512, "most connections a server (pegasus-em server, each "
             "pegasus-service listener) holds at once, at most half its descriptor limit; "
             "beyond it the connection waiting longest for a request is closed", int),
    _setting("REQUEST_TIMEOUT", 30, "seconds a request (line, headers and body) may take to "
             "arrive from its first byte; a slower client is disconnected", int, float),
)

DEFAULTS = {s.name: s.default for s in SETTINGS}
_BY_NAME = {s.name: s for s in SETTINGS}


class Config(dict):
    """Settings by name, plus the warnings found while loading them."""

    def __init__(self, values, path=None, warnings=()):
        super().__init__(values)
        self.path = path
        self.warnings = list(warnings)


def user_home(uid=None):
    return pwd.getpwuid(os.getuid() if uid is None else uid).pw_dir


def pegasus_dir(uid=None):
    return os.path.join(user_home(uid), ".pegasus")


def config_path(env=None, uid=None):
    """The file read last, where settings go: the one PEGASUS_ENV names, else
    ~/.pegasus/service.py."""
    return config_paths(env, uid)[-1]


def config_paths(env=None, uid=None):
    """~/.pegasus/service.py, then the file PEGASUS_ENV names, read over it."""
    env = os.environ if env is None else env
    own = os.path.join(pegasus_dir(uid), "service.py")
    return [own] + ([env["PEGASUS_ENV"]] if env.get("PEGASUS_ENV") else [])


def em_port(uid=None):
    uid = os.getuid() if uid is None else uid
    return EM_BASE_PORT + uid % EM_PORT_SPAN


def load(path=None, env=None, uid=None):
    """Defaults, then ~/.pegasus/service.py (a missing one means all defaults), then
    the file PEGASUS_ENV names (it must exist, as in 5.x), then the environment;
    given a `path`, that file alone."""
    env = os.environ if env is None else env
    values = dict(DEFAULTS)
    warnings = []
    read = []
    for i, name in enumerate([path] if path else config_paths(env, uid)):
        source = _source(name, required=i > 0)
        if source is not None:
            _overlay(values, warnings, name, source)
            read.append(name)
    if path is None:
        values.update((s.name, env[s.name]) for s in SETTINGS if s.env and s.name in env)
    return Config(values, read[-1] if read else None, warnings)


def _source(path, required):
    """The file's bytes; None when it does not exist and need not."""
    try:
        with open(path, "rb") as f:
            return f.read()
    except FileNotFoundError:
        if required:
            raise ConfigError("PEGASUS_ENV names %s, which does not exist" % path)
        return None
    except OSError as e:
        raise ConfigError("Cannot read %s: %s" % (path, e.strerror))


def _overlay(values, warnings, path, source):
    """Put the settings of one file over `values`."""
    found = _execute(path, source)
    for name, value in found.items():
        if name not in _BY_NAME:
            warnings.append("%s: unknown setting %s (ignored)" % (path, name))
            continue
        _check_kind(path, _BY_NAME[name], value)
        values[name] = value
    if found.get("PASSWORD") and _readable_by_others(path):
        warnings.append("%s holds PASSWORD but other users can read it; "
                        "run: chmod 600 %s" % (path, path))


def _execute(path, source):
    scope = {"__file__": path, "__builtins__": __builtins__}
    try:
        code = compile(source, path, "exec")
    except SyntaxError as e:
        raise ConfigError("%s, line %s: syntax error: %s" % (path, e.lineno, e.msg))
    try:
        exec(code, scope)
    except Exception as e:  # the file is user code: report any failure as config
        raise ConfigError("%s: %s: %s" % (path, type(e).__name__, e))
    return {k: v for k, v in scope.items() if k.isupper() and not k.startswith("_")}


def literal_settings(source):
    """UPPERCASE names assigned a literal at the top level of a service.py, found
    without running it (for a process that must not run another user's code)."""
    try:
        tree = ast.parse(source)
    except (SyntaxError, ValueError):
        return {}
    found = {}
    for node in tree.body:
        if isinstance(node, ast.Assign) and len(node.targets) == 1 and \
                isinstance(node.targets[0], ast.Name) and node.targets[0].id.isupper():
            try:
                found[node.targets[0].id] = ast.literal_eval(node.value)
            except ValueError:
                found.pop(node.targets[0].id, None)  # computed: unknown to us
    return found


def _check_kind(path, setting, value):
    if setting.kinds and not isinstance(value, setting.kinds):
        raise ConfigError("%s: %s must be %s, not %r" % (
            path, setting.name, " or ".join(k.__name__ for k in setting.kinds), value))
    if setting.kinds and isinstance(value, bool) and bool not in setting.kinds:
        raise ConfigError("%s: %s must be a number, not %r" % (path, setting.name, value))


def _readable_by_others(path):
    try:
        return bool(os.stat(path).st_mode & (stat.S_IRGRP | stat.S_IROTH))
    except OSError:
        return False


def sample():
    """An annotated service.py with every setting at its default."""
    lines = ["# ~/.pegasus/service.py: settings for pegasus-em and pegasus-service.",
             "# Python syntax; UPPERCASE names only.  chmod 600 if it holds PASSWORD.", ""]
    for s in SETTINGS:
        lines.append("# %s" % s.help)
        lines.append("# %s = %r" % (s.name, s.default))
    return "\n".join(lines) + "\n"


def init_file(path=None, uid=None):
    """Create service.py with the login name and a random PASSWORD (0600).

    Returns (path, created).  An existing file is never touched; it only
    counts as done when it already holds USERNAME and PASSWORD.
    """
    import secrets

    path = path or config_path(uid=uid)
    if os.path.exists(path):
        cfg = load(path)
        if not (cfg["USERNAME"] and cfg["PASSWORD"]):
            raise ConfigError("%s exists but lacks USERNAME or PASSWORD; add them by hand" % path)
        return path, False
    os.makedirs(os.path.dirname(path), mode=0o700, exist_ok=True)
    user = pwd.getpwuid(os.getuid() if uid is None else uid).pw_name
    text = ("USERNAME = %r\nPASSWORD = %r\n\n" % (user, secrets.token_urlsafe(18))) + sample()
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "w") as f:
        f.write(text)
    return path, True
