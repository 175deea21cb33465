"""Strict HTTP parsing in httpd, the one server of the daemon and pegasus-service:
Content-Length is digits only, control characters and bare CRs in a request
line or header are a 400, and a request cut short never reaches the app."""

import base64
import inspect
import io
import json
import os
import socket
import ssl
import threading

import pytest

from conftest import Daemon
from service_fixtures import Service, make_certificate
from stack import PASSWORD as STACK_PASSWORD
from stack import USER as STACK_USER
from stack import Stack

from pegasus_em.core import store
from pegasus_em.web.httpd import Server


def echo(environ, start_response):
    body = environ["wsgi.input"].read()
    data = json.dumps({"length": environ["CONTENT_LENGTH"], "body": body.decode("latin-1"),
                       "x": environ.get("HTTP_X_A")}).encode()
    start_response("200 OK", [("Content-Type", "application/json"),
                              ("Content-Length", str(len(data)))])
    return [data]


@pytest.fixture(scope="module")
def port():
    calls = []

    def app(environ, start_response):
        calls.append(environ["PATH_INFO"])
        return echo(environ, start_response)

    server = Server(("127.0.0.1", 0), app)
    thread = threading.Thread(target=server.serve_forever, args=(0.02,), daemon=True)
    thread.start()
    yield server.server_port
    server.shutdown()
    server.server_close()


def exchange(port, data, wrap=None):
    """Send raw bytes, read until the server closes; -> (status, body bytes)."""
    with socket.create_connection(("127.0.0.1", port), timeout=10) as raw:
        s = wrap(raw) if wrap else raw
        s.sendall(data)
        with s.makefile("rb") as f:
            reply = f.read()
    if not reply:
        return None, b""
    head, _, body = reply.partition(b"\r\n\r\n")
    return int(head.split()[1]), body


def post(headers, body=b"0123456789"):
    return (b"POST /x HTTP/1.1\r\nHost: h\r\nConnection: close\r\n" + headers +
            b"\r\n" + body)


@pytest.mark.parametrize("value", [b"1_0", b"+10", b"-1", b"0x10", b"1 0", b"10.0", b"1e1",
                                   b"\xa010", b"\xb9\xb0", b"", b"10, 11", b"99" * 3000])
def test_content_length_is_digits_only(port, value):
    status, body = exchange(port, post(b"Content-Length: " + value + b"\r\n"))
    assert status == 400 and b"Invalid Content-Length" in body


def test_a_repeated_content_length_must_repeat_the_same_value(port):
    status, _ = exchange(port, post(b"Content-Length: 10\r\nContent-Length: 9\r\n"))
    assert status == 400
    status, body = exchange(port, post(b"Content-Length: 10\r\nContent-Length: 10\r\n"))
    assert status == 200 and json.loads(body) == {"length": "10", "body": "0123456789",
                                                  "x": None}


@pytest.mark.parametrize("value", [b"10", b"010", b" \t10 "])
def test_valid_content_lengths_work(port, value):
    status, body = exchange(port, post(b"Content-Length: " + value + b"\r\n"))
    assert status == 200 and json.loads(body)["body"] == "0123456789"


@pytest.mark.parametrize("line", [
    b"X-A: a\rb", b"X-A: a\x00b", b"X-A: \x01", b"X-A: a\x7f", b"X-A: a\x0bb", b"X-A: a\r",
    b"X-\x00A: b", b"X A: b", b"X-A : b", b" X-A: b", b"(X): b"])
def test_control_characters_and_bad_names_in_headers_are_400(port, line):
    status, body = exchange(port, post(line + b"\r\nContent-Length: 10\r\n"))
    assert status == 400 and json.loads(body)["message"]


@pytest.mark.parametrize("value,seen", [(b"a\tb", "a\tb"), (b"caf\xe9", "caf\xe9"),
                                        (b"  spaced  ", "spaced")])
def test_tabs_and_high_bytes_in_header_values_still_work(port, value, seen):
    status, body = exchange(port, post(b"X-A: " + value + b"\r\nContent-Length: 10\r\n"))
    assert status == 200 and json.loads(body)["x"] == seen


@pytest.mark.parametrize("line", [b"GET /x\x00y HTTP/1.1", b"GET\t/x HTTP/1.1",
                                  b"GET /x HTTP/1.1\r", b"GET  /x HTTP/1.1",
                                  b"GET /x\ry HTTP/1.1"])
def test_control_characters_in_the_request_line_are_400(port, line):
    status, _ = exchange(port, line + b"\r\nHost: h\r\nConnection: close\r\n\r\n")
    assert status == 400


def test_a_request_cut_short_never_reaches_the_app(port):
    for data in (b"GET /cut HTTP/1.1\r\nHost: h\r\n",                       # no blank line
                 b"GET /cut HTTP/1.1\r\nHost: h",                            # mid-header
                 b"POST /cut HTTP/1.1\r\nContent-Length: 10\r\n\r\n01234"):  # short body
        with socket.create_connection(("127.0.0.1", port), timeout=10) as s:
            s.sendall(data)
            s.shutdown(socket.SHUT_WR)
            assert s.recv(100) == b""
    assert exchange(port, b"GET /fine HTTP/1.1\r\nConnection: close\r\n\r\n")[0] == 200


# ---- the real servers ----------------------------------------------------------

def test_the_daemon_refuses_lax_content_length_and_bare_cr(daemon):
    host, port = daemon.url.split("//", 1)[1].rsplit(":", 1)
    for headers in (b"Content-Length: +10\r\n", b"Content-Length: 1_0\r\n",
                    b"Content-Length: 10\r\nX-A: a\rb\r\n"):
        status, body = exchange(int(port), b"POST /ensembles HTTP/1.1\r\nHost: h\r\n"
                                b"Connection: close\r\n" + headers + b"\r\nname=abcde")
        assert status == 400, body
    assert daemon.request("GET", "/ensembles")[2] == []  # nothing was created


def test_pegasus_service_refuses_a_bare_cr_it_would_forward_and_lax_content_length(sandbox,
                                                                                    user):
    user.configure()
    d = Daemon(user).start()
    cert, key = make_certificate(user.home)
    for path in (cert, key):
        os.chown(path, user.uid, user.gid)
    svc = Service(sandbox, "CERTIFICATE = %r\nPRIVATE_KEY = %r\nAUTHENTICATION = "
                  "'NoAuthentication'\n" % (cert, key), run_as=user).start()
    try:
        ctx = ssl.create_default_context(cafile=svc.cafile)
        port = int(svc.url.rsplit(":", 1)[1].split("/")[0])
        wrap = lambda raw: ctx.wrap_socket(raw, server_hostname="localhost")  # noqa: E731
        for accept in (b"application/json\rX-Evil: 1", b"application/json\x00"):
            status, body = exchange(port, b"GET /ensembles HTTP/1.1\r\nHost: h\r\nAccept: " +
                                    accept + b"\r\nConnection: close\r\n\r\n", wrap)
            assert status == 400, body  # was a 500: http.client refused to forward it
        status, body = exchange(port, b"POST /ensembles HTTP/1.1\r\nHost: h\r\nContent-Length:"
                                b" +10\r\nConnection: close\r\n\r\nname=abcde", wrap)
        assert status == 400, body
        status, body = exchange(port, b"GET /ensembles HTTP/1.1\r\nHost: h\r\nAccept: "
                                b"application/json\r\nConnection: close\r\n\r\n", wrap)
        assert status == 200 and body == b"[]", body  # nothing was created
    finally:
        svc.stop()
        d.kill()
    assert "Traceback" not in svc.errors(), svc.errors()


def test_a_client_that_stops_reading_a_long_reply_is_let_go():
    """Plain sockets block now (a timeout on each read and write cost a poll() before
    every recv() and send()): a client that asks for a long reply and never reads it
    must still let go of its worker once no byte has left for the backstop's time."""
    closed = threading.Event()
    chunk = b"x" * (1 << 20)

    def app(environ, start_response):
        start_response("200 OK", [("Content-Length", str(len(chunk) * 256))])

        def body():
            try:
                for _ in range(256):
                    yield chunk
            finally:
                closed.set()  # run_app closes the reply once it gives up
        return body()

    server = Server(("127.0.0.1", 0), app, idle_timeout=1, request_timeout=1)
    thread = threading.Thread(target=server.serve_forever, args=(0.02,), daemon=True)
    thread.start()
    try:
        with socket.create_connection(("127.0.0.1", server.server_port), timeout=10) as s:
            s.sendall(b"GET /big HTTP/1.1\r\nHost: h\r\n\r\n")
            assert closed.wait(30), "the worker still waits for a client that does not read"
    finally:
        server.shutdown()
        server.server_close()


def test_a_long_listing_is_streamed_with_its_exact_length(tmp_path):
    """GET of an ensemble's workflows was one string made by SQLite, then its bytes,
    then the response with its head: 100,000 workflows took 75 MB.  Now the app
    hands over pieces of a few hundred workflows with the length counted first, in
    one read transaction that ends when the pieces are consumed or closed."""
    s = Stack(tmp_path)
    try:
        s.ensemble("big")
        with s.db.write() as conn:
            e, now = store.get_ensemble(conn, "big"), s.ops.now()
            for i in range(1200):
                store.insert_workflow(conn, e, "w%04d" % i, i % 5, "/tmp/\u00e9t\u00e9", "x",
                                      "READY", now)
        got = {}
        body = s.app(_get("/ensembles/big/workflows"), lambda st, h: got.update(h))
        pieces = list(body)
        body.close()
        assert not isinstance(body, list) and len(pieces) > 3
        assert max(len(p) for p in pieces) < 256 << 10
        whole = b"".join(pieces)
        assert int(got["Content-Length"]) == len(whole)
        assert [w["name"] for w in json.loads(whole)] == ["w%04d" % i for i in range(1200)]
        assert json.loads(whole) == s.get("/ensembles/big/workflows")  # and over HTTP
        half = s.app(_get("/ensembles/big/workflows"), lambda st, h: None)
        next(iter(half))
        half.close()  # the client went away: the transaction behind the pieces ends
        assert inspect.getgeneratorstate(half.pieces) == inspect.GEN_CLOSED
    finally:
        s.close()


def _get(path):
    token = base64.b64encode(("%s:%s" % (STACK_USER, STACK_PASSWORD)).encode()).decode()
    return {"REQUEST_METHOD": "GET", "PATH_INFO": path, "QUERY_STRING": "",
            "wsgi.input": io.BytesIO(), "HTTP_AUTHORIZATION": "Basic " + token}
