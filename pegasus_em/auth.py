"""Who is asking: HTTP Basic credentials checked in constant time (pegasus-em), or by
PAM with a short-lived cache of successful logins (pegasus-service)."""

import base64
import binascii
import hmac
import logging
import os
import pwd
import threading
import time

from .errors import BadRequest, ConfigError, Unauthorized

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
    except (binascii.Error, UnicodeDecodeError):
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

FAIL_DELAY = 1.0     # seconds a failed login waits before its 401 (in its own thread)
CACHE_TTL = 60.0     # seconds a successful PAM login is remembered
CACHE_SIZE = 4096


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


class PamAuthentication:
    """HTTP Basic checked by PAM (pam_authenticate + pam_acct_mgmt), root refused.

    `authenticate(header, remote_addr)` returns the user name or raises
    Unauthorized after FAIL_DELAY seconds, slept in the asking request's own
    thread so other clients are not held up."""

    name = "PAMAuthentication"
    realm = "Pegasus Service"

    def __init__(self, pam, cache=None, fail_delay=FAIL_DELAY, sleep=time.sleep,
                 fallback=None):
        self.pam = pam
        self.cache = cache if cache is not None else LoginCache()
        self.fail_delay = fail_delay
        self._sleep = sleep
        # fallback(user, password) -> bool: the user's pegasus-em PASSWORD also works
        self.fallback = fallback

    def authenticate(self, header, remote_addr=None):
        credentials = parse_basic(header)
        if credentials is None:
            raise Unauthorized("Authentication required")
        user, password = credentials
        if self.cache.get(user, password):
            return user
        if self._check(user, password, remote_addr):
            self.cache.put(user, password)
            return user
        log.info("failed login for %r from %s", user[:64], remote_addr or "-")
        self._sleep(self.fail_delay)
        raise Unauthorized("Invalid username or password")

    def _check(self, user, password, remote_addr):
        if not (password and _login_allowed(user)):
            return False
        if self.pam.authenticate(user, password, remote_addr):
            return True
        return bool(self.fallback and self.fallback(user, password))


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
