"""The REST API of a real daemon over real sockets: what the in-process tests of
tests/unit/test_api.py cannot show (the HTTP server, credentials on the wire, the
daemon's own address in links)."""

import base64
import http.client
import json
import socket
import urllib.parse

import pytest

from conftest import unique


# ---- the 5.x client's requests, replayed byte for byte -----------------------

def test_create_ensemble_answers_201_with_location_and_shows_in_list(shared_daemon):
    name = unique("ens")
    st, headers, body = shared_daemon.request("POST", "/ensembles",
                                              {"name": name, "max_planning": "1",
                                               "max_running": "1"})
    assert st == 201
    assert body == {"message": "created"}
    assert headers["Location"] == "%s/ensembles/%s" % (shared_daemon.url, name)
    st, _, listing = shared_daemon.request("GET", "/ensembles")
    (e,) = [x for x in listing if x["name"] == name]
    assert set(e) == {"id", "name", "created", "updated", "state", "max_running",
                      "max_planning", "workflows", "href"}
    assert e["state"] == "ACTIVE" and e["max_planning"] == 1 and e["max_running"] == 1
    assert isinstance(e["created"], float) and e["created"] == e["updated"]
    assert e["href"] == headers["Location"]
    assert e["workflows"] == headers["Location"] + "/workflows"


def test_missing_or_wrong_credentials_are_401(shared_daemon):
    st, headers, body = shared_daemon.request("GET", "/ensembles", auth=False)
    assert st == 401 and headers["WWW-Authenticate"].startswith("Basic")
    wrong = "Basic " + base64.b64encode(b"someone:else").decode()
    st, headers, body = shared_daemon.request("GET", "/ensembles",
                                              headers={"Authorization": wrong})
    assert st == 401 and "Invalid username or password" in body["message"]
    st, _, body = shared_daemon.request("POST", "/ensembles", {"name": unique("x")}, auth=False)
    assert st == 401


@pytest.mark.parametrize("header", [
    b"Basic \xe9\xff", b"B\xe4sic dTpw", b"Basic " + base64.b64encode(b"\xff\xfe:pw"),
    b"Basic " + base64.b64encode(b"u:\xff"), b"Basic " + base64.b64encode("\u00e9:pw".encode()),
], ids=["raw", "scheme", "user", "password", "utf8-user"])
def test_8bit_authorization_is_refused_not_a_500(shared_daemon, header):
    """Raw bytes >= 0x80 in the header, or credentials that are not UTF-8: 400/401."""
    reply = _raw(shared_daemon, b"GET /ensembles HTTP/1.1\r\nHost: x\r\nAuthorization: " +
                 header + b"\r\nConnection: close\r\n\r\n")
    assert reply.split(b" ", 2)[1] in (b"400", b"401"), reply[:200]
    assert b'{"message"' in reply


def test_oversized_body_is_413(shared_daemon):
    body = b"name=" + b"x" * (2 << 20)
    st, _, reply = shared_daemon.request("POST", "/ensembles", raw_body=body,
                                         headers={"Content-Type":
                                                  "application/x-www-form-urlencoded"})
    assert st == 413 and "too large" in reply["message"]


def test_the_host_header_does_not_reach_links(shared_daemon):
    name = unique("host")
    st, headers, _ = shared_daemon.request("POST", "/ensembles", {"name": name},
                                           headers={"Host": "evil.example.com"})
    assert st == 201 and headers["Location"] == "%s/ensembles/%s" % (shared_daemon.url, name)
    _, _, e = shared_daemon.request("GET", "/ensembles/" + name, headers={"Host": "evil.example"})
    assert e["href"].startswith(shared_daemon.url + "/")


def _raw(d, data):
    host, port = urllib.parse.urlsplit(d.url).netloc.rsplit(":", 1)
    with socket.create_connection((host, int(port)), timeout=10) as s:
        s.sendall(data)
        chunks = []
        while True:
            chunk = s.recv(65536)
            if not chunk:
                break
            chunks.append(chunk)
    return b"".join(chunks)


def test_garbage_request_line_gets_json_400_not_html(shared_daemon):
    reply = _raw(shared_daemon, b"THIS IS NOT HTTP\r\n\r\n")
    assert reply.startswith(b"HTTP/1.1 400")
    assert b'{"message"' in reply and b"<html" not in reply.lower()


def test_keep_alive_serves_many_requests_on_one_connection(shared_daemon):
    host, port = urllib.parse.urlsplit(shared_daemon.url).netloc.rsplit(":", 1)
    conn = http.client.HTTPConnection(host, int(port), timeout=10)
    token = base64.b64encode(("%s:%s" % (shared_daemon.user.name,
                                         shared_daemon.user.password)).encode()).decode()
    for _ in range(20):
        conn.request("GET", "/ensembles", headers={"Authorization": "Basic " + token})
        resp = conn.getresponse()
        assert resp.status == 200
        json.loads(resp.read())
    # A 401 that never read the body must not poison the connection.
    conn.request("POST", "/ensembles", body="name=zz", headers={
        "Content-Type": "application/x-www-form-urlencoded"})
    resp = conn.getresponse()
    assert resp.status == 401
    resp.read()
    conn.request("GET", "/ensembles", headers={"Authorization": "Basic " + token})
    assert conn.getresponse().status == 200
    conn.close()
