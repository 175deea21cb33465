"""TLS of pegasus-service: the self-signed certificate (made, verified, renewed),
TLS 1.2+ only, clear start-up errors, and handshakes off the accept loop."""

import os
import shutil
import socket
import ssl
import stat
import subprocess
import threading
import time

import pytest

from pegasus_em.service import tls
from pegasus_em.errors import ConfigError
from pegasus_em.web.httpd import Server
from service_fixtures import Service, make_certificate

pytestmark = pytest.mark.skipif(shutil.which("openssl") is None, reason="needs openssl")


def hello(environ, start_response):
    start_response("200 OK", [("Content-Type", "text/plain"), ("Content-Length", "5")])
    return [b"hello"]


@pytest.fixture
def served(tmp_path):
    """An httpd.Server on loopback with a freshly generated self-signed certificate."""
    cert, key = tls.ensure_self_signed(str(tmp_path / "pegasus"), ["127.0.0.1"])
    server = Server(("127.0.0.1", 0), hello, tls.server_context(cert, key))
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield server, cert, key
    server.shutdown()
    server.server_close()


def https_get(port, ctx, host="127.0.0.1"):
    with socket.create_connection(("127.0.0.1", port), timeout=10) as raw:
        with ctx.wrap_socket(raw, server_hostname=host) as s:
            version = s.version()
            s.sendall(b"GET / HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
            data = b""
            while True:
                chunk = s.recv(65536)
                if not chunk:
                    return data, version
                data += chunk


def test_the_generated_certificate_verifies_against_itself(served):
    server, cert, key = served
    for path in (cert, key):
        assert stat.S_IMODE(os.stat(path).st_mode) == 0o600
    ctx = ssl.create_default_context(cafile=cert)
    for name in ("127.0.0.1", "localhost"):
        data, _ = https_get(server.server_port, ctx, name)
        assert data.startswith(b"HTTP/1.1 200") and data.endswith(b"hello")
    with pytest.raises(ssl.SSLCertVerificationError):
        https_get(server.server_port, ssl.create_default_context(), "127.0.0.1")


@pytest.mark.filterwarnings("ignore::DeprecationWarning")
@pytest.mark.parametrize("version", ["TLSv1", "TLSv1_1"])
def test_old_tls_versions_are_refused(served, version):
    server, cert, _ = served
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    ctx.load_verify_locations(cert)
    try:
        ctx.set_ciphers("ALL:@SECLEVEL=0")
        ctx.minimum_version = ctx.maximum_version = getattr(ssl.TLSVersion, version)
    except (ValueError, ssl.SSLError) as e:
        pytest.skip("this OpenSSL cannot even offer %s: %s" % (version, e))
    with pytest.raises(ssl.SSLError) as e:
        https_get(server.server_port, ctx)
    assert "ALERT_PROTOCOL_VERSION" in str(e.value)  # the server's refusal, not ours
    # control: the same client speaks it to a server that allows it
    _, cert, key = served
    permissive = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    permissive.load_cert_chain(cert, key)
    permissive.set_ciphers("ALL:@SECLEVEL=0")
    permissive.minimum_version = ssl.TLSVersion.TLSv1
    other = Server(("127.0.0.1", 0), hello, permissive)
    threading.Thread(target=other.serve_forever, daemon=True).start()
    try:
        assert https_get(other.server_port, ctx)[0].endswith(b"hello")
    except ssl.SSLError as e:
        pytest.skip("this OpenSSL will not speak %s at all: %s" % (version, e))
    finally:
        other.shutdown()
        other.server_close()


@pytest.mark.parametrize("version", ["TLSv1_2", "TLSv1_3"])
def test_tls_12_and_13_work(served, version):
    server, cert, _ = served
    ctx = ssl.create_default_context(cafile=cert)
    ctx.minimum_version = ctx.maximum_version = getattr(ssl.TLSVersion, version)
    data, used = https_get(server.server_port, ctx)
    assert data.endswith(b"hello") and used == version.replace("_", ".")


def test_an_idle_client_does_not_stall_the_others(served):
    server, cert, _ = served
    idle = [socket.create_connection(("127.0.0.1", server.server_port)) for _ in range(3)]
    try:
        t0 = time.monotonic()
        data, _ = https_get(server.server_port, ssl.create_default_context(cafile=cert))
        assert data.endswith(b"hello") and time.monotonic() - t0 < 2
    finally:
        for s in idle:
            s.close()


def test_a_certificate_near_its_end_is_renewed(tmp_path):
    directory = str(tmp_path / "pegasus")
    os.makedirs(directory)
    cert, key = (os.path.join(directory, n) for n in (tls.CERT_NAME, tls.KEY_NAME))
    subprocess.run(["openssl", "req", "-x509", "-newkey", "ec", "-pkeyopt",
                    "ec_paramgen_curve:prime256v1", "-nodes", "-keyout", key, "-out", cert,
                    "-days", "1", "-subj", "/CN=old"], check=True, stdout=subprocess.DEVNULL,
                   stderr=subprocess.DEVNULL)
    creds = tls.Credentials(cert, key, True)
    ctx = creds.context()
    assert tls.needs_renewal(cert)
    with open(cert, "rb") as f:
        old = f.read()
    assert creds.refresh(ctx)                 # renewed, and loaded into the live context
    with open(cert, "rb") as f:
        assert f.read() != old
    assert not tls.needs_renewal(cert)
    assert not creds.refresh(ctx)             # nothing to do now
    assert stat.S_IMODE(os.stat(key).st_mode) == 0o600


def test_configured_certificate_errors_name_the_setting(tmp_path):
    with pytest.raises(ConfigError) as e:
        tls.credentials({"CERTIFICATE": str(tmp_path / "none.pem"),
                         "PRIVATE_KEY": str(tmp_path / "none.key")}, str(tmp_path), "h").context()
    assert "CERTIFICATE" in e.value.message
    with pytest.raises(ConfigError) as e:
        tls.credentials({"CERTIFICATE": "x.pem"}, str(tmp_path), "h")
    assert "PRIVATE_KEY" in e.value.message
    garbage = tmp_path / "garbage.pem"
    garbage.write_text("not a certificate")
    with pytest.raises(ConfigError) as e:
        tls.server_context(str(garbage), str(garbage))
    assert "CERTIFICATE" in e.value.message


def test_no_openssl_is_a_clear_error(tmp_path, monkeypatch):
    monkeypatch.setenv("PATH", str(tmp_path))
    with pytest.raises(ConfigError) as e:
        tls.credentials({}, str(tmp_path / "pegasus"), "127.0.0.1")
    assert "openssl" in e.value.message
    assert "CERTIFICATE" in e.value.message and "PRIVATE_KEY" in e.value.message
    assert not os.path.exists(tmp_path / "pegasus")


def test_subject_names_cover_the_listening_host():
    names = tls.subject_names(["10.1.2.3", "0.0.0.0", "svc.example"])
    assert "IP:10.1.2.3" in names and "DNS:svc.example" in names
    assert "IP:0.0.0.0" not in names and "DNS:localhost" in names


# --------------------------------------------------------------------------- real process

def test_service_as_a_user_makes_its_own_certificate(sandbox, user):
    """Not root: it warns, serves only its own user, and generates its certificate."""
    svc = Service(sandbox, "AUTHENTICATION = 'NoAuthentication'\n", run_as=user).start()
    try:
        assert svc.cafile == os.path.join(user.pegasus_dir, tls.CERT_NAME)
        for path in (svc.cafile, os.path.join(user.pegasus_dir, tls.KEY_NAME)):
            st = os.stat(path)
            assert (st.st_uid, stat.S_IMODE(st.st_mode)) == (user.uid, 0o600)
        client = svc.client()                 # verifies against the generated certificate
        status, _, body = client.request("GET", "/u/%s/" % user.name,
                                         headers={"Accept": "text/html"})
        assert status == 200 and user.name in body
        status, _, body = client.request("GET", "/api/v1/user/daemon/root")
        assert status == 403 and "PROCESS_SWITCHING" in body["message"]
        assert "PROCESS_SWITCHING is True but" in svc.errors()
    finally:
        svc.stop()


@pytest.mark.parametrize("settings, words", [
    ("CERTIFICATE = '/nonexistent/c.pem'\nPRIVATE_KEY = '/nonexistent/k.pem'\n",
     ["CERTIFICATE", "/nonexistent/c.pem"]),
    ("AUTHENTICATION = 'Kerberos'\n", ["AUTHENTICATION"]),
    ("ADMIN_USERS = True\n", ["ADMIN_USERS"]),
    ("MAX_PROCESSES = 0\n", ["MAX_PROCESSES"]),
])
def test_start_up_errors(sandbox, user, settings, words):
    svc = Service(sandbox, settings, run_as=user)
    result = subprocess.run(svc.command(), env=svc.environment(), user=user.uid, group=user.gid,
                            extra_groups=[], stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                            text=True, timeout=60, cwd=svc.dir)
    assert result.returncode == 2, result.stderr
    for word in words:
        assert word in result.stderr
    assert "Traceback" not in result.stderr


def test_start_up_errors_without_openssl_or_a_free_port(sandbox, user):
    empty = os.path.join(sandbox.base, "empty-bin")
    os.makedirs(empty, exist_ok=True)
    svc = Service(sandbox, "", run_as=user, env={"PATH": empty})
    result = subprocess.run(svc.command(), env=svc.environment(), user=user.uid, group=user.gid,
                            extra_groups=[], stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                            text=True, timeout=60, cwd=svc.dir)
    assert result.returncode == 2
    assert "openssl" in result.stderr and "CERTIFICATE" in result.stderr
    cert, key = make_certificate(svc.dir)
    for path in (cert, key):
        os.chown(path, user.uid, user.gid)
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen(1)
        port = taken.getsockname()[1]
        svc = Service(sandbox, "CERTIFICATE = %r\nPRIVATE_KEY = %r\n" % (cert, key), run_as=user)
        argv = svc.command()[:-1] + [str(port)]
        result = subprocess.run(argv, env=svc.environment(), user=user.uid, group=user.gid,
                                extra_groups=[], stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                                text=True, timeout=60, cwd=svc.dir)
    assert result.returncode == 2 and "Cannot listen" in result.stderr
