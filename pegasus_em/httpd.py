"""A small threaded WSGI server on top of http.server.

Why not wsgiref: it is single-threaded, writes headers and body in separate
sends (with Nagle's algorithm on, every keep-alive request then stalls ~40 ms
on delayed ACK) and answers unknown methods with an HTML 501.  Here every
method goes to the app, each response leaves in one send with TCP_NODELAY,
and a TLS handshake happens in the connection's own thread, never in the
accept loop.
"""

import email.utils
import http.server
import json
import logging
import socket
import socketserver
import sys
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


class Handler(http.server.BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    server_version = "pegasus-em"
    timeout = IDLE_TIMEOUT

    def setup(self):
        super().setup()
        try:
            self.connection.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        except OSError:
            pass

    def handle_one_request(self):
        try:
            self.raw_requestline = self.rfile.readline(MAX_REQUEST_LINE + 1)
        except (socket.timeout, ConnectionError, OSError):
            self.close_connection = True
            return
        if len(self.raw_requestline) > MAX_REQUEST_LINE:
            self.requestline = ""
            self.request_version = "HTTP/1.1"
            self.send_error(414, "Request line too long")
            return
        if not self.raw_requestline:
            self.close_connection = True
            return
        if not self.parse_request():
            return
        try:
            self.run_app()
        except (ConnectionError, socket.timeout):
            self.close_connection = True

    def run_app(self):
        length = self._content_length()
        if length is None:
            return
        if self.headers.get("Transfer-Encoding"):
            self.close_connection = True  # we cannot find where a chunked body ends
        body = _Body(self.rfile, length)
        environ = self.environ(body)
        response = []

        def start_response(status, headers, exc_info=None):
            response[:] = [status, headers]
            return lambda data: None

        chunks = self.server.app(environ, start_response)
        try:
            payload = b"".join(chunks)
        finally:
            if hasattr(chunks, "close"):
                chunks.close()
        self._finish_body(body)
        self._send(response[0], response[1], payload)

    def _content_length(self):
        raw = self.headers.get("Content-Length")
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
            path = "/" + path.split("/", 3)[-1] if path.count("/") >= 3 else "/"
        server = self.server
        env = {
            "REQUEST_METHOD": self.command,
            "SCRIPT_NAME": "",
            "PATH_INFO": urllib.parse.unquote(path, "latin-1"),
            "QUERY_STRING": query,
            "SERVER_NAME": server.server_name,
            "SERVER_PORT": str(server.server_port),
            "SERVER_PROTOCOL": self.request_version,
            "REMOTE_ADDR": self.client_address[0] if self.client_address else "",
            "CONTENT_TYPE": self.headers.get("Content-Type", ""),
            "CONTENT_LENGTH": self.headers.get("Content-Length", ""),
            "wsgi.version": (1, 0),
            "wsgi.url_scheme": "https" if server.ssl_context else "http",
            "wsgi.input": body,
            "wsgi.errors": sys.stderr,
            "wsgi.multithread": True,
            "wsgi.multiprocess": False,
            "wsgi.run_once": False,
            "pegasus.connection": self.connection,
        }
        for key, value in self.headers.items():
            name = "HTTP_" + key.upper().replace("-", "_")
            if name not in ("HTTP_CONTENT_TYPE", "HTTP_CONTENT_LENGTH"):
                env[name] = value if name not in env else env[name] + "," + value
        return env

    def _send(self, status, headers, payload):
        lines = ["%s %s" % (self.protocol_version, status),
                 "Server: %s" % self.server_version, "Date: %s" % _http_date()]
        lines.extend("%s: %s" % h for h in headers)
        if self.close_connection:
            lines.append("Connection: close")
        head = ("\r\n".join(lines) + "\r\n\r\n").encode("latin-1")
        if self.command == "HEAD":
            payload = b""
        self.wfile.write(head + payload)
        self.log_request(status.split(" ", 1)[0], len(payload))

    def send_error(self, code, message=None, explain=None):
        """Protocol errors found by http.server, answered in JSON, not HTML."""
        self.close_connection = True
        body = ('{"message": %s}' % _json_string(message or "Bad request")).encode("utf-8")
        if not getattr(self, "command", None):
            self.command = ""
        self._send("%d %s" % (code, self.responses.get(code, ("Error",))[0]),
                   [("Content-Type", "application/json"), ("Content-Length", str(len(body)))],
                   body)

    def log_request(self, code="-", size="-"):
        log.debug('%s "%s" %s %s', self.client_address[0] if self.client_address else "-",
                  self.requestline, code, size)

    def log_message(self, format, *args):
        log.info("%s %s", self.client_address[0] if self.client_address else "-",
                 format % args)


def _json_string(text):
    return json.dumps(str(text))


class Server(socketserver.ThreadingMixIn, http.server.HTTPServer):
    daemon_threads = True
    allow_reuse_address = True
    request_queue_size = 256

    def __init__(self, address, app, ssl_context=None, handler=Handler):
        if ":" in address[0]:
            self.address_family = socket.AF_INET6
        self.app = app
        self.ssl_context = ssl_context
        super().__init__(address, handler)

    def server_bind(self):
        # HTTPServer.server_bind calls getfqdn(), which can block on DNS.
        socketserver.TCPServer.server_bind(self)
        self.server_name, self.server_port = self.server_address[:2]

    def process_request_thread(self, request, client_address):
        if self.ssl_context is not None:
            try:
                request.settimeout(IDLE_TIMEOUT)
                request = self.ssl_context.wrap_socket(request, server_side=True)
            except (OSError, ValueError) as e:
                log.info("TLS handshake with %s failed: %s", client_address[0], e)
                self.shutdown_request(request)
                return
        super().process_request_thread(request, client_address)

    def handle_error(self, request, client_address):
        log.exception("error while serving %s", client_address)

    @property
    def url(self):
        host = self.server_name
        if ":" in host:
            host = "[%s]" % host
        scheme = "https" if self.ssl_context else "http"
        return "%s://%s:%d" % (scheme, host, self.server_port)
