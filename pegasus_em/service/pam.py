"""Check a password with libpam through ctypes (no third-party binding).

`authenticate(user, password)` runs pam_authenticate and then pam_acct_mgmt
(expired or locked accounts fail too) for the PAM service "login", as Pegasus
does through pamela.  The caller must be root for pam_unix to read
/etc/shadow.  PAM's own failure delay (pam_faildelay, pam_unix) is replaced by
a no-op through PAM_FAIL_DELAY: the caller slows failed logins down itself,
in the failing request's own thread, so one client's typo stalls nobody else.
"""

import ctypes
import ctypes.util

from ..errors import ConfigError

SERVICE = "login"

PAM_SUCCESS = 0
PAM_BUF_ERR = 5
PAM_CONV_ERR = 19
PAM_PROMPT_ECHO_OFF = 1
PAM_PROMPT_ECHO_ON = 2
PAM_RHOST = 4
PAM_FAIL_DELAY = 10
PAM_DISALLOW_NULL_AUTHTOK = 0x1
PAM_SILENT = 0x8000

LIBRARY_NAMES = ("libpam.so.0", "libpam.so")


class PamMessage(ctypes.Structure):
    _fields_ = [("msg_style", ctypes.c_int), ("msg", ctypes.c_char_p)]


class PamResponse(ctypes.Structure):
    # resp is malloc'ed by us and freed by libpam, so it stays a raw pointer.
    _fields_ = [("resp", ctypes.c_void_p), ("resp_retcode", ctypes.c_int)]


CONV_FUNC = ctypes.CFUNCTYPE(ctypes.c_int, ctypes.c_int,
                             ctypes.POINTER(ctypes.POINTER(PamMessage)),
                             ctypes.POINTER(ctypes.POINTER(PamResponse)), ctypes.c_void_p)
DELAY_FUNC = ctypes.CFUNCTYPE(None, ctypes.c_int, ctypes.c_uint, ctypes.c_void_p)


class PamConv(ctypes.Structure):
    _fields_ = [("conv", CONV_FUNC), ("appdata_ptr", ctypes.c_void_p)]


class Pam:
    """The loaded library; one object serves every thread (each call has its own handle)."""

    def __init__(self, lib, libc, service=SERVICE):
        self.service = service.encode("utf-8")
        self._libc = libc
        self._calloc = libc.calloc
        self._calloc.restype = ctypes.c_void_p
        self._calloc.argtypes = [ctypes.c_size_t, ctypes.c_size_t]
        self._strdup = libc.strdup
        self._strdup.restype = ctypes.c_void_p
        self._strdup.argtypes = [ctypes.c_char_p]
        self._start = lib.pam_start
        self._start.restype = ctypes.c_int
        self._start.argtypes = [ctypes.c_char_p, ctypes.c_char_p, ctypes.POINTER(PamConv),
                                ctypes.POINTER(ctypes.c_void_p)]
        self._end = lib.pam_end
        self._end.argtypes = [ctypes.c_void_p, ctypes.c_int]
        self._set_item = lib.pam_set_item
        self._set_item.argtypes = [ctypes.c_void_p, ctypes.c_int, ctypes.c_void_p]
        self._authenticate = lib.pam_authenticate
        self._authenticate.argtypes = [ctypes.c_void_p, ctypes.c_int]
        self._acct_mgmt = lib.pam_acct_mgmt
        self._acct_mgmt.argtypes = [ctypes.c_void_p, ctypes.c_int]
        self._strerror = lib.pam_strerror
        self._strerror.restype = ctypes.c_char_p
        self._strerror.argtypes = [ctypes.c_void_p, ctypes.c_int]

    def authenticate(self, user, password, rhost=None):
        """True when PAM accepts the password and the account may log in now."""
        no_delay = DELAY_FUNC(lambda retval, usec, data: None)

        def steps(handle):
            self._set_item(handle, PAM_FAIL_DELAY, ctypes.cast(no_delay, ctypes.c_void_p))
            if rhost:
                self._set_item(handle, PAM_RHOST, ctypes.c_char_p(rhost.encode("utf-8")))
            rc = self._authenticate(handle, PAM_SILENT | PAM_DISALLOW_NULL_AUTHTOK)
            if rc == PAM_SUCCESS:
                rc = self._acct_mgmt(handle, PAM_SILENT | PAM_DISALLOW_NULL_AUTHTOK)
            return rc

        return self._transaction(user, password.encode("utf-8"), steps)

    def account_ok(self, user):
        """pam_acct_mgmt alone: may this account log in now (not expired, not refused
        by an account module)?  For a login whose password PAM did not check."""
        return self._transaction(user, b"", lambda handle: self._acct_mgmt(handle, PAM_SILENT))

    def _transaction(self, user, secret, steps):
        """pam_start, `steps(handle) -> rc`, pam_end; True when rc is PAM_SUCCESS."""
        conv = CONV_FUNC(self._conversation(secret))
        handle = ctypes.c_void_p()
        rc = self._start(self.service, user.encode("utf-8"), ctypes.byref(PamConv(conv, None)),
                         ctypes.byref(handle))
        if rc != PAM_SUCCESS:
            return False
        try:
            rc = steps(handle)
            return rc == PAM_SUCCESS
        finally:
            self._end(handle, rc)

    def _conversation(self, secret):
        """Answer every prompt with the password (as pamela does); messages get no answer."""

        def conv(count, messages, responses, _data):
            if count <= 0:
                return PAM_CONV_ERR
            block = self._calloc(count, ctypes.sizeof(PamResponse))
            if not block:
                return PAM_BUF_ERR
            answers = ctypes.cast(block, ctypes.POINTER(PamResponse))
            for i in range(count):
                if messages[i].contents.msg_style in (PAM_PROMPT_ECHO_OFF, PAM_PROMPT_ECHO_ON):
                    answers[i].resp = self._strdup(secret)
            responses[0] = answers
            return PAM_SUCCESS

        return conv


def load(service=SERVICE):
    """The libpam binding, or ConfigError saying what is missing."""
    names = list(LIBRARY_NAMES)
    found = ctypes.util.find_library("pam")
    if found and found not in names:
        names.append(found)
    errors = []
    for name in names:
        try:
            lib = ctypes.CDLL(name, use_errno=True)
            break
        except OSError as e:
            errors.append(str(e))
    else:
        raise ConfigError("AUTHENTICATION = 'PAMAuthentication' needs libpam, which cannot be "
                          "loaded (%s); install it (Debian/Ubuntu: libpam0g; RHEL: pam) or set "
                          "AUTHENTICATION = 'NoAuthentication'" % "; ".join(errors[:2]))
    libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6")
    return Pam(lib, libc, service)
