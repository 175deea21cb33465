"""TLS for pegasus-service: server contexts, and a self-signed certificate when
none is configured.

The certificate comes from CERTIFICATE + PRIVATE_KEY when both are set;
otherwise a self-signed one (ECDSA P-256: the cheapest handshake, which matters
when every request brings a new connection) is generated once with the
`openssl` command into ~/.pegasus/ of the user running the service, 0600,
and generated again when it is about to expire.  Only TLS 1.2 and newer are
accepted.
"""

import fcntl
import logging
import os
import shutil
import socket
import ssl
import subprocess
import tempfile
import time

from .. import loops
from ..errors import ConfigError

log = logging.getLogger(__name__)

CERT_NAME = "pegasus-service.crt"
KEY_NAME = "pegasus-service.key"
LOCK_NAME = "pegasus-service-cert.lock"
VALID_DAYS = 365
RENEW_BEFORE = 7 * 86400      # seconds of validity left when a new one is made
CHECK_EVERY = 6 * 3600        # how often a running service looks
RETRY_RENEWAL = 60            # seconds after a failed renewal (doubling up to CHECK_EVERY)
_WILDCARDS = ("", "0.0.0.0", "::", "*")


def server_context(cert, key):
    """A server context for this pair; ConfigError naming the setting if it is unusable."""
    for setting, path in (("CERTIFICATE", cert), ("PRIVATE_KEY", key)):
        try:
            with open(path, "rb"):
                pass
        except OSError as e:
            raise ConfigError("%s %s cannot be read: %s" % (setting, path, e.strerror or e))
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    ctx.minimum_version = ssl.TLSVersion.TLSv1_2
    ctx.options |= ssl.OP_NO_COMPRESSION | ssl.OP_CIPHER_SERVER_PREFERENCE
    try:
        ctx.load_cert_chain(cert, key)
    except (ssl.SSLError, OSError) as e:
        raise ConfigError("CERTIFICATE %s and PRIVATE_KEY %s are not a usable certificate and "
                          "key: %s" % (cert, key, getattr(e, "reason", None) or e))
    return ctx


class Credentials:
    """Where the certificate and key are, and whether we made (and renew) them."""

    def __init__(self, cert, key, self_signed):
        self.cert = cert
        self.key = key
        self.self_signed = self_signed
        self.loaded_mtime = None

    def context(self):
        ctx = server_context(self.cert, self.key)
        self.loaded_mtime = _mtime(self.cert)
        return ctx

    def refresh(self, ctx, openssl=None):
        """Renew a self-signed certificate near its end and load a renewed one into
        `ctx` (new handshakes use it; open connections keep theirs)."""
        if not self.self_signed:
            return False
        ensure_self_signed(os.path.dirname(self.cert), (), openssl)
        if _mtime(self.cert) == self.loaded_mtime:
            return False
        ctx.load_cert_chain(self.cert, self.key)
        self.loaded_mtime = _mtime(self.cert)
        log.info("loaded the renewed certificate %s", self.cert)
        return True


def credentials(cfg, pegasus_dir, host, openssl=None):
    """CERTIFICATE + PRIVATE_KEY from the settings, else our self-signed pair."""
    cert, key = cfg.get("CERTIFICATE"), cfg.get("PRIVATE_KEY")
    if cert or key:
        if not (cert and key):
            raise ConfigError("Set both CERTIFICATE and PRIVATE_KEY, or neither (then a "
                              "self-signed certificate is generated in %s)" % pegasus_dir)
        return Credentials(os.path.expanduser(cert), os.path.expanduser(key), False)
    cert, key = ensure_self_signed(pegasus_dir, [host], openssl)
    return Credentials(cert, key, True)


def ensure_self_signed(directory, hosts, openssl=None):
    """(cert, key) in `directory`, generated if missing or about to expire.

    An flock makes concurrent services (or pre-forked listeners) generate it once.
    """
    cert, key = os.path.join(directory, CERT_NAME), os.path.join(directory, KEY_NAME)
    if not (os.path.exists(cert) and os.path.exists(key)):
        openssl = find_openssl(openssl)  # say so before creating anything
    os.makedirs(directory, mode=0o700, exist_ok=True)
    lock = os.open(os.path.join(directory, LOCK_NAME), os.O_RDWR | os.O_CREAT | os.O_CLOEXEC,
                   0o600)
    try:
        fcntl.flock(lock, fcntl.LOCK_EX)
        if not (os.path.exists(cert) and os.path.exists(key)) or \
                needs_renewal(cert, RENEW_BEFORE, openssl):
            generate(cert, key, hosts, openssl)
    finally:
        os.close(lock)
    return cert, key


def find_openssl(openssl=None):
    found = openssl or shutil.which("openssl")
    if not found:
        raise ConfigError("No CERTIFICATE and PRIVATE_KEY are set, and the openssl command, "
                          "which generates the self-signed certificate used instead, is not "
                          "on PATH: install openssl, or set CERTIFICATE and PRIVATE_KEY")
    return found


def needs_renewal(cert, seconds=RENEW_BEFORE, openssl=None):
    """True if `cert` expires within `seconds` (or cannot be read)."""
    tool = openssl or shutil.which("openssl")
    if tool is None:  # cannot look inside: trust our own validity period
        age = time.time() - _mtime(cert, 0)
        return age > VALID_DAYS * 86400 - seconds
    result = subprocess.run([tool, "x509", "-checkend", str(int(seconds)), "-noout", "-in", cert],
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    return result.returncode != 0


def subject_names(hosts):
    names = ["localhost", "127.0.0.1", "::1", socket.gethostname()]
    names += [h for h in hosts if h and h not in _WILDCARDS]
    out = []
    for name in names:
        entry = ("IP:%s" if _is_ip(name) else "DNS:%s") % name
        if entry not in out:
            out.append(entry)
    return out


def generate(cert, key, hosts, openssl=None):
    """A new self-signed ECDSA certificate and key, both 0600, replaced atomically."""
    tool = find_openssl(openssl)
    directory = os.path.dirname(cert)
    tmp = tempfile.mkdtemp(prefix=".pegasus-service-cert.", dir=directory)
    try:
        new_cert, new_key = os.path.join(tmp, "crt"), os.path.join(tmp, "key")
        names = subject_names(hosts)
        argv = [tool, "req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1",
                "-nodes", "-keyout", new_key, "-out", new_cert, "-days", str(VALID_DAYS),
                "-subj", "/O=Pegasus Service/CN=%s" % (socket.gethostname()[:64] or "localhost"),
                "-addext", "subjectAltName=" + ",".join(names),
                "-addext", "extendedKeyUsage=serverAuth"]
        old_umask = os.umask(0o077)
        try:
            result = subprocess.run(argv, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                                    stdin=subprocess.DEVNULL)
        finally:
            os.umask(old_umask)
        if result.returncode != 0:
            raise ConfigError("openssl could not generate a self-signed certificate: %s"
                              % result.stdout.decode("utf-8", "replace").strip()[-500:])
        for path in (new_cert, new_key):
            os.chmod(path, 0o600)
        os.replace(new_key, key)
        os.replace(new_cert, cert)
        log.info("generated a self-signed certificate %s (valid %d days)", cert, VALID_DAYS)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


def start_renewal(creds, ctx, stop, every=CHECK_EVERY):
    """A supervised thread renewing a self-signed certificate before it expires (a
    failure keeps the old one in use, is logged, and is tried again)."""
    if not creds.self_signed:
        return None

    def renew():
        creds.refresh(ctx)
        return every

    return loops.start("tls-renewal", renew, stop.wait, stop, log, first_wait=every,
                       first_pause=RETRY_RENEWAL, max_pause=every)


def _mtime(path, default=None):
    try:
        return os.stat(path).st_mtime_ns
    except OSError:
        return default


def _is_ip(name):
    for family in (socket.AF_INET, socket.AF_INET6):
        try:
            socket.inet_pton(family, name)
            return True
        except OSError:
            continue
    return False
