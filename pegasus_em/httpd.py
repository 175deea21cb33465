"""A small threaded WSGI server on top of socketserver.

Why not wsgiref: it is single-threaded, writes headers and body in separate
sends (with Nagle's algorithm on, every keep-alive request then stalls ~40 ms
on delayed ACK) and answers unknown methods with an HTML 501.  Here every
method goes to the app, each response leaves in one send with TCP_NODELAY,
and a TLS handshake happens in the connection's own thread, never in the
accept loop.
"""

import email.utils
import http
import http.server
import json
import logging
import queue
import socket
import socketserver
import sys
import threading
import time
import urllib.parse

log = logging.getLogger(__name__)

MAX_REQUEST_LINE = 8192
IDLE_TIMEOUT = 75  # seconds a keep-alive connection may sit idle
_DRAIN_LIMIT = 16 << 20  # unread body bytes we discard to keep a connection open


class _Body:
    """wsgi.input limited to Content-Length, remembering what is left unread."""

    __slots__ = ("_rfile", "remaining")

    def __init__(self, rfile, length):
        self._rfile = rfile
        self.remaining = length

    def read(self, size=-1):
        if size is None or size < 0 or size > self.remaining:
            size = self.remaining
        data = self._rfile.read(size) if size else b""
        self.remaining -= len(data)
        return data

    def readline(self, size=-1):
        if size is None or size < 0 or size > self.remaining:
            size = self.remaining
        data = self._rfile.readline(size) if size else b""
        self.remaining -= len(data)
        return data


_date_cache = [0, ""]


def _http_date():
    now = int(time.time())
    if _date_cache[0] != now:
        _date_cache[:] = [now, email.utils.formatdate(now, usegmt=True)]
    return _date_cache[1]


class BadRequest(Exception):
    def __init__(self, status, message):
        super().__init__(message)
        self.status = status
        self.message = message


class Handler(socketserver.StreamRequestHandler):
    """HTTP/1.1 with keep-alive; parses the request itself (http.server's email
    based header parser costs more than the rest of a request together)."""

    timeout = IDLE_TIMEOUT
    server_version = "pegasus-em"
    max_headers = 100

    def setup(self):
        super().setup()
        try:
            self.connection.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        except OSError:
            pass

    def handle(self):
        self.close_connection = False
        while not self.close_connection:
            try:
                self.handle_one_request()
            except (socket.timeout, ConnectionError, OSError):
                return

    def handle_one_request(self):
        self.command = ""
        line = self.rfile.readline(MAX_REQUEST_LINE + 1)
        if not line:
            self.close_connection = True
            return
        try:
            self.parse(line)
        except BadRequest as e:
            self.send_error(e.status, e.message)
            return
        if self.headers.get("expect", "").lower() == "100-continue":
            self.wfile.write(b"HTTP/1.1 100 Continue\r\n\r\n")
        self.run_app()

    def parse(self, line):
        if len(line) > MAX_REQUEST_LINE:
            raise BadRequest(414, "Request line too long")
        self.requestline = line.decode("latin-1").rstrip("\r\n")
        parts = self.requestline.split()
        if len(parts) != 3 or not parts[2].startswith("HTTP/"):
            raise BadRequest(400, "Bad request line: %r" % self.requestline[:100])
        self.command, self.path, self.request_version = parts
        if self.request_version not in ("HTTP/1.1", "HTTP/1.0"):
            raise BadRequest(505, "HTTP version not supported: %s" % self.request_version)
        self.headers = self.read_headers()
        connection = self.headers.get("connection", "").lower()
        if self.request_version == "HTTP/1.1":
            self.close_connection = "close" in connection
        else:
            self.close_connection = "keep-alive" not in connection

    def read_headers(self):
        headers = {}
        for _ in range(self.max_headers + 1):
            raw = self.rfile.readline(MAX_REQUEST_LINE + 1)
            if raw in (b"\r\n", b"\n", b""):
                return headers
            if len(raw) > MAX_REQUEST_LINE:
                raise BadRequest(431, "Header line too long")
            name, sep, value = raw.decode("latin-1").partition(":")
            if not sep or not name or name != name.strip():
                raise BadRequest(400, "Malformed header line")
            key = name.lower()
            value = value.strip()
            headers[key] = headers[key] + ", " + value if key in headers else value
        raise BadRequest(431, "Too many headers")

    def run_app(self):
        length = self._content_length()
        if length is None:
            return
        if "transfer-encoding" in self.headers:
            self.close_connection = True  # we cannot find where a chunked body ends
        body = _Body(self.rfile, length)
        response = []

        def start_response(status, headers, exc_info=None):
            response[:] = [status, headers]
            return lambda data: None

        chunks = self.server.app(self.environ(body), start_response)
        try:
            payload = b"".join(chunks)
        finally:
            if hasattr(chunks, "close"):
                chunks.close()
        self._finish_body(body)
        self._send(response[0], response[1], payload)

    def _content_length(self):
        raw = self.headers.get("content-length")
        if raw is None:
            return 0
        try:
            length = int(raw)
            if length < 0:
                raise ValueError
        except ValueError:
            self.send_error(400, "Invalid Content-Length")
            return None
        return length

    def _finish_body(self, body):
        """Keep the connection usable when the app did not read the whole body."""
        if body.remaining > _DRAIN_LIMIT:
            self.close_connection = True
        elif body.remaining:
            body.read()

    def environ(self, body):
        path, _, query = self.path.partition("?")
        if path.startswith(("http://", "https://")):
            path = "/" + path.split("/", 3)[3] if path.count("/") >= 3 else "/"
        server = self.server
        headers = self.headers
        env = {
            "REQUEST_METHOD": self.command,
            "SCRIPT_NAME": "",
            "PATH_INFO": urllib.parse.unquote(path, "latin-1"),
            "QUERY_STRING": query,
            "SERVER_NAME": server.server_name,
            "SERVER_PORT": str(server.server_port),
            "SERVER_PROTOCOL": self.request_version,
            "REMOTE_ADDR": self.client_address[0] if self.client_address else "",
            "CONTENT_TYPE": headers.get("content-type", ""),
            "CONTENT_LENGTH": headers.get("content-length", ""),
            "wsgi.version": (1, 0),
            "wsgi.url_scheme": "https" if server.ssl_context else "http",
            "wsgi.input": body,
            "wsgi.errors": sys.stderr,
            "wsgi.multithread": True,
            "wsgi.multiprocess": False,
            "wsgi.run_once": False,
            "pegasus.connection": self.connection,
        }
        for key, value in headers.items():
            if key not in ("content-type", "content-length"):
                env["HTTP_" + key.upper().replace("-", "_")] = value
        return env

    def _send(self, status, headers, payload):
        lines = ["HTTP/1.1 %s" % status, "Server: %s" % self.server_version,
                 "Date: %s" % _http_date()]
        lines.extend("%s: %s" % h for h in headers)
        if self.close_connection:
            lines.append("Connection: close")
        head = ("\r\n".join(lines) + "\r\n\r\n").encode("latin-1")
        if self.command == "HEAD":
            payload = b""
        self.wfile.write(head + payload)
        log.debug('%s "%s" %s %d', self.client_address[0] if self.client_address else "-",
                  getattr(self, "requestline", ""), status.split(" ", 1)[0], len(payload))

    def send_error(self, code, message):
        """Protocol errors, answered in JSON like every other error."""
        self.close_connection = True
        body = json.dumps({"message": message}).encode("utf-8")
        self._send("%d %s" % (code, http.HTTPStatus(code).phrase),
                   [("Content-Type", "application/json"), ("Content-Length", str(len(body)))],
                   body)


class Server(http.server.HTTPServer):
    """Connections are served by reusable worker threads.

    Starting a thread per connection costs more than a whole request when
    every request brings a new connection, as the 5.x client's do; so idle
    workers wait for the next connection, and a new worker is started only
    when none is idle (a slow or idle client never blocks the others).
    """

    allow_reuse_address = True
    request_queue_size = 256
    max_idle_workers = 16

    def __init__(self, address, app, ssl_context=None, handler=Handler):
        if ":" in address[0]:
            self.address_family = socket.AF_INET6
        self.app = app
        self.ssl_context = ssl_context
        self._connections = queue.SimpleQueue()
        self._idle_lock = threading.Lock()
        self._idle = 0
        super().__init__(address, handler)

    def server_bind(self):
        # HTTPServer.server_bind calls getfqdn(), which can block on DNS.
        socketserver.TCPServer.server_bind(self)
        self.server_name, self.server_port = self.server_address[:2]

    def process_request(self, request, client_address):
        with self._idle_lock:
            hand_over = self._idle > 0
            if hand_over:
                self._idle -= 1
        if hand_over:
            self._connections.put((request, client_address))
        else:
            threading.Thread(target=self._work, args=(request, client_address),
                             name="http-worker", daemon=True).start()

    def _work(self, request, client_address):
        while request is not None:
            self._serve_connection(request, client_address)
            with self._idle_lock:
                if self._idle >= self.max_idle_workers:
                    return
                self._idle += 1
            request, client_address = self._connections.get()

    def _serve_connection(self, request, client_address):
        if self.ssl_context is not None:
            try:
                request.settimeout(IDLE_TIMEOUT)
                request = self.ssl_context.wrap_socket(request, server_side=True)
            except (OSError, ValueError) as e:
                log.info("TLS handshake with %s failed: %s", client_address[0], e)
                self.shutdown_request(request)
                return
        try:
            self.finish_request(request, client_address)
        except Exception:
            self.handle_error(request, client_address)
        finally:
            self.shutdown_request(request)

    def server_close(self):
        super().server_close()
        with self._idle_lock:
            idle, self._idle = self._idle, 0
        for _ in range(idle):
            self._connections.put((None, None))

    def handle_error(self, request, client_address):
        log.exception("error while serving %s", client_address)

    @property
    def url(self):
        host = self.server_name
        if ":" in host:
            host = "[%s]" % host
        scheme = "https" if self.ssl_context else "http"
        return "%s://%s:%d" % (scheme, host, self.server_port)
