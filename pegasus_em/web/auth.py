"""Who is asking: HTTP Basic credentials checked in constant time (pegasus-em), or by
PAM with a short-lived cache of successful logins (pegasus-service)."""

import base64
import hmac
import logging
import os
import pwd
import stat
import threading
import time

from .. import config
from ..errors import BadRequest, ConfigError, TooManyRequests, Unauthorized

log = logging.getLogger(__name__)


def parse_basic(header):
    """(user, password) from an Authorization header; None when absent."""
    if not header:
        return None
    scheme, _, token = header.partition(" ")
    if scheme.lower() != "basic" or not token.strip():
        raise Unauthorized("Authorization must use the Basic scheme")
    try:
        decoded = base64.b64decode(token.strip(), validate=True).decode("utf-8")
    except (ValueError, UnicodeDecodeError):  # binascii.Error, or 8-bit bytes
        raise BadRequest("Malformed Authorization header")
    user, sep, password = decoded.partition(":")
    if not sep:
        raise BadRequest("Malformed Authorization header")
    return user, password


class BasicAuth:
    """The daemon owner's USERNAME with the PASSWORD from service.py (what a Pegasus
    5.x client sends) or with this run's token from the 0600 endpoint file (what our
    client sends when it found the daemon there, so a squatter on a port we left
    learns nothing that works later)."""

    realm = "pegasus-em"

    def __init__(self, username, password, token=None):
        self._user = username.encode("utf-8")
        self._secrets = [s.encode("utf-8") for s in (password, token) if s]

    def authenticate(self, header):
        credentials = parse_basic(header)
        if credentials is None:
            raise Unauthorized("Authentication required")
        user_ok = hmac.compare_digest(credentials[0].encode("utf-8"), self._user)
        given = credentials[1].encode("utf-8")
        secret_ok = [hmac.compare_digest(given, s) for s in self._secrets]  # all, always
        if not (user_ok and any(secret_ok)):
            raise Unauthorized("Invalid username or password")
        return credentials[0]


# --------------------------------------------------------------------------- pegasus-service

FAIL_DELAY = 1.0     # seconds every failed login takes, whatever failed (no timing oracle)
CACHE_TTL = 60.0     # seconds a successful PAM login is remembered
CACHE_SIZE = 4096
FREE_FAILURES = 5    # failures per user name before delays
FREE_ADDRESS_FAILURES = 20   # failures per client address (people share addresses)
FAILURE_WINDOW = 900.0   # seconds without a failure that clear a record
MAX_LOCKOUT = 300.0  # seconds: the longest wait a run of failures imposes


class LoginCache:
    """Recently successful logins, keyed by an HMAC of user and password under a
    per-process random key: no password is kept, and a changed password misses."""

    def __init__(self, ttl=CACHE_TTL, size=CACHE_SIZE, clock=time.monotonic):
        self.ttl = ttl
        self.size = size
        self._clock = clock
        self._salt = os.urandom(32)
        self._entries = {}
        self._lock = threading.Lock()

    def _key(self, user, password):
        return hmac.new(self._salt, b"%s\0%s" % (user.encode("utf-8"), password.encode("utf-8")),
                        "sha256").digest()

    def get(self, user, password):
        key = self._key(user, password)
        with self._lock:
            expires = self._entries.get(key)
            if expires is None:
                return False
            if expires < self._clock():
                del self._entries[key]
                return False
            return True

    def put(self, user, password):
        key = self._key(user, password)
        now = self._clock()
        with self._lock:
            if len(self._entries) >= self.size:
                self._entries = {k: t for k, t in self._entries.items() if t >= now}
                while len(self._entries) >= self.size:
                    del self._entries[next(iter(self._entries))]
            self._entries[key] = now + self.ttl


class FailureBudget:
    """Failed logins counted per user name and per client address: FREE_FAILURES (per
    address FREE_ADDRESS_FAILURES) are free, then each further failure closes that
    name (or address) for twice as long as the one before, up to MAX_LOCKOUT;
    FAILURE_WINDOW without failures forgets.
    While closed, attempts are refused without asking PAM, so guessing is slow
    however many connections a guesser opens.  A password that worked recently
    (the login cache) still gets in, which keeps a guesser from locking the owner
    out for long."""

    def __init__(self, free=FREE_FAILURES, window=FAILURE_WINDOW, cap=MAX_LOCKOUT,
                 size=CACHE_SIZE, clock=time.monotonic, free_per_address=FREE_ADDRESS_FAILURES):
        self.free, self.window, self.cap, self.size = free, window, cap, size
        self.free_per_address = free_per_address
        self._clock = clock
        self._records = {}   # key -> [failures, closed_until, last_failure]
        self._lock = threading.Lock()

    def check(self, *keys):
        """Raise TooManyRequests while any of `keys` is closed."""
        now = self._clock()
        with self._lock:
            wait = max([r[1] - now for r in map(self._records.get, keys) if r] + [0])
        if wait > 0:
            raise TooManyRequests("Too many failed logins for this user or from this "
                                  "address; try again in %d s" % (wait + 0.999), wait)

    def failed(self, *keys):
        now = self._clock()
        with self._lock:
            self._prune(now)
            for key in keys:
                record = self._records.get(key)
                if record is None or now - record[2] > self.window:
                    record = self._records[key] = [0, 0.0, now]
                record[0] += 1
                record[2] = now
                free = self.free_per_address if key.startswith("addr:") else self.free
                if record[0] > free:
                    record[1] = now + min(self.cap, 2.0 ** (record[0] - free))

    def succeeded(self, *keys):
        with self._lock:
            for key in keys:
                self._records.pop(key, None)

    def _prune(self, now):
        if len(self._records) < self.size:
            return
        self._records = {k: r for k, r in self._records.items()
                         if now - r[2] <= self.window or r[1] > now}
        while len(self._records) >= self.size:
            del self._records[next(iter(self._records))]


class PamAuthentication:
    """HTTP Basic checked by PAM (pam_authenticate + pam_acct_mgmt), root refused.

    `authenticate(header, remote_addr)` returns the user name or raises Unauthorized
    FAIL_DELAY seconds after the attempt began, whatever failed (unknown account,
    wrong password), slept in the asking request's own thread so other clients are
    not held up; or TooManyRequests at once while the FailureBudget is spent."""

    name = "PAMAuthentication"
    realm = "Pegasus Service"

    def __init__(self, pam, cache=None, fail_delay=FAIL_DELAY, sleep=time.sleep,
                 fallback=None, budget=None, clock=time.monotonic):
        self.pam = pam
        self.cache = cache if cache is not None else LoginCache()
        self.budget = budget if budget is not None else FailureBudget(clock=clock)
        self.fail_delay = fail_delay
        self._sleep = sleep
        self._clock = clock
        # fallback(user, password) -> bool: another way in (EmPasswordLogin), or None
        self.fallback = fallback

    def authenticate(self, header, remote_addr=None):
        credentials = parse_basic(header)
        if credentials is None:
            raise Unauthorized("Authentication required")
        user, password = credentials
        if self.cache.get(user, password):
            return user
        keys = ("user:" + user[:256], "addr:%s" % (remote_addr or "-"))
        self.budget.check(*keys)
        started = self._clock()
        if self._check(user, password, remote_addr):
            self.budget.succeeded(keys[0])
            self.cache.put(user, password)
            return user
        self.budget.failed(*keys)
        log.info("failed login for %r from %s", user[:64], remote_addr or "-")
        self._sleep(max(0.0, self.fail_delay - (self._clock() - started)))
        raise Unauthorized("Invalid username or password")

    def _check(self, user, password, remote_addr):
        if not (password and _login_allowed(user)):
            return False
        if self.pam.authenticate(user, password, remote_addr):
            return True
        return bool(self.fallback and self.fallback(user, password))


class EmPasswordLogin:
    """EM_PASSWORD_LOGIN: a user's pegasus-em USERNAME/PASSWORD also signs them in,
    so `pegasus-em --url https://service...` works with the credentials it already
    has.  Checked without starting anything as the user, or running their code: the
    literal strings of their own service.py, read by this process; and the account
    must pass PAM account management and have a password that is not locked, as a
    PAM login would."""

    def __init__(self, pam, home_of, shadow="/etc/shadow"):
        self.pam = pam
        self.home_of = home_of
        self.shadow = shadow

    def __call__(self, user, password):
        try:
            entry = pwd.getpwnam(user)
        except KeyError:
            return False
        settings = _own_literal_settings(os.path.join(self.home_of(user), ".pegasus",
                                                      "service.py"), entry.pw_uid)
        expected = (settings.get("USERNAME"), settings.get("PASSWORD"))
        if not all(isinstance(v, str) and v for v in expected):
            return False
        same = hmac.compare_digest(("%s\0%s" % (user, password)).encode("utf-8"),
                                   ("%s\0%s" % expected).encode("utf-8"))
        return same and not password_locked(user, self.shadow) and self.pam.account_ok(user)


def _own_literal_settings(path, uid):
    """Literal settings of a service.py that belongs to `uid` (not followed through a
    symlink, at most 64 KiB); {} otherwise."""
    try:
        fd = os.open(path, os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK | os.O_CLOEXEC)
    except OSError:
        return {}
    with os.fdopen(fd, "rb") as f:
        st = os.fstat(f.fileno())
        if not stat.S_ISREG(st.st_mode) or st.st_uid != uid or st.st_size > 65536:
            return {}
        return config.literal_settings(f.read(65536))


def password_locked(user, shadow="/etc/shadow"):
    """True when the shadow entry refuses password logins ('!' locked by usermod -L,
    '*' no password): pam_acct_mgmt does not look at that.  False when unreadable."""
    try:
        with open(shadow, encoding="utf-8", errors="replace") as f:
            for line in f:
                fields = line.split(":")
                if fields[0] == user and len(fields) > 1:
                    return fields[1].startswith(("!", "*"))
    except OSError:
        pass
    return False


class NoAuthentication:
    """No password is asked (Pegasus's NoAuthentication): the caller is whoever the
    front end authenticated (REMOTE_USER), else the user the URL names, else the
    user running the service; decided by the service app, so this returns None."""

    name = "NoAuthentication"
    realm = "Pegasus Service"

    def authenticate(self, header, remote_addr=None):
        return None


def _login_allowed(user):
    """Only real, non-root accounts go to PAM (no password oracle for root)."""
    if not user or len(user) > 256 or any(c in user for c in "\0:/\n"):
        return False
    try:
        return pwd.getpwnam(user).pw_uid != 0
    except KeyError:
        return False


class AdminUsers:
    """ADMIN_USERS as the Pegasus documentation defines it: None, False or '' -> nobody
    may view another user's data; '*' -> everybody may; a set or list -> those users.
    A string other than '*' is read as names separated by commas or spaces."""

    def __init__(self, setting):
        self.everyone = False
        self.names = frozenset()
        if setting is None or setting is False or setting == "":
            return
        if setting is True:
            raise ConfigError("ADMIN_USERS must be None, False, '', '*' or a set or list of "
                              "user names, not True")
        if isinstance(setting, str):
            if setting.strip() == "*":
                self.everyone = True
                return
            setting = setting.replace(",", " ").split()
        names = list(setting)
        if not all(isinstance(n, str) for n in names):
            raise ConfigError("ADMIN_USERS must hold user names (strings): %r" % (setting,))
        self.names = frozenset(names)

    def __contains__(self, user):
        return self.everyone or user in self.names

    def describe(self):
        if self.everyone:
            return "everyone"
        return ", ".join(sorted(self.names)) or "nobody"
