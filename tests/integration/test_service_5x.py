"""pegasus-service started and reached as Pegasus 5.x documents it: `-p/--port`,
`-v`, `-d`/`-nd`, PEGASUS_SERVICE_URL_PREFIX from the environment, PEGASUS_ENV over
~/.pegasus/service.py, and Authorization headers with raw 8-bit bytes."""

import base64
import os

import pytest

from service_fixtures import Service, make_certificate

EIGHT_BIT = [b"Basic \xe9\xff", b"B\xe4sic dTpw", b"Basic " + base64.b64encode(b"\xff\xfe:pw"),
             b"Basic " + base64.b64encode(b"u:\xff")]


class Started(Service):
    """A real pegasus-service started with the flags given, not our --port 0."""

    def command(self):
        return [self.python, "-c", "import sys; from pegasus_em.service.pservice import main; "
                                   "sys.exit(main())"] + self.args


@pytest.fixture(scope="module")
def service(sandbox):
    cert, key = make_certificate(sandbox.base)
    svc = Started(sandbox, "CERTIFICATE = %r\nPRIVATE_KEY = %r\n"
                  "PEGASUS_SERVICE_URL_PREFIX = '/from-file'\n" % (cert, key),
                  args=["-p", "0", "-v", "-nd"], env={"PEGASUS_SERVICE_URL_PREFIX": "/from-env"})
    yield svc.start()
    svc.stop()


def test_started_with_p_and_v_under_the_prefix_the_environment_names(service):
    """5.x reads PEGASUS_SERVICE_URL_PREFIX from the environment first, then service.py."""
    assert service.url.endswith(":%d/from-env" % service.client().port)
    client = service.client()
    assert client.request("GET", "/ensembles")[0] == 401
    assert client.request("GET", "/from-file/ensembles", prefix=False)[0] == 404


@pytest.mark.parametrize("header", EIGHT_BIT, ids=["raw", "scheme", "user", "password"])
def test_8bit_authorization_is_refused_not_a_500(service, header):
    status, _, body = service.client().request("GET", "/ensembles",
                                               headers={"Authorization": header})
    assert status in (400, 401), body
    assert "message" in body


def test_pegasus_env_overlays_service_py_for_the_service(sandbox, user):
    """The user's own service.py sets the port; the file PEGASUS_ENV names adds the
    prefix: both apply (5.x loads one, then the other over it)."""
    cert, key = make_certificate(user.home)
    for path in (cert, key):
        os.chown(path, user.uid, user.gid)
    user.write(".pegasus/service.py", "SERVER_PORT = 0\nCERTIFICATE = %r\nPRIVATE_KEY = %r\n"
               % (cert, key))
    svc = Started(sandbox, "PEGASUS_SERVICE_URL_PREFIX = '/over'\n", run_as=user)
    try:
        svc.start()
        assert svc.url.endswith("/over") and not svc.url.endswith(":5000/over")
    finally:
        svc.stop()
