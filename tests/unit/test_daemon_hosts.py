"""Which addresses the daemon listens on without --allow-remote (the name service
is not asked).  Refusals of a real daemon: tests/integration/test_daemon.py.
"""

import socket

import pytest

from pegasus_em.em import daemon as daemon_mod
from pegasus_em.errors import ConfigError


@pytest.mark.parametrize("host", ["127.0.0.1", "127.0.0.5", "::1", "localhost"])
def test_loopback_hosts_need_no_flag(host):
    assert daemon_mod.check_host(host, False) is None


@pytest.mark.parametrize("host,resolves_to", [
    ("0.0.0.0", None), ("::", None), ("192.0.2.10", None), ("lan-name", ["192.0.2.10"]),
    ("mixed-name", ["127.0.0.1", "192.0.2.10"]), ("unresolvable", [])])
def test_other_hosts_need_allow_remote(monkeypatch, host, resolves_to):
    def getaddrinfo(name, *args, **kwargs):  # no name service queried
        assert name == host
        if not resolves_to:
            raise socket.gaierror(socket.EAI_NONAME, "Name or service not known")
        return [(socket.AF_INET, socket.SOCK_STREAM, 6, "", (a, 0)) for a in resolves_to]
    monkeypatch.setattr(socket, "getaddrinfo", getaddrinfo)
    with pytest.raises(ConfigError, match="--allow-remote"):
        daemon_mod.check_host(host, False)
    assert "clear text" in daemon_mod.check_host(host, True)
