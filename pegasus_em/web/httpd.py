"""A small threaded WSGI server on top of socketserver: the one HTTP server of
both `pegasus-em server` and pegasus-service (which adds TLS).

Why not wsgiref: it is single-threaded, writes headers and body in separate
sends (with Nagle's algorithm on, every keep-alive request then stalls ~40 ms
on delayed ACK) and answers unknown methods with an HTML 501.  Here every
method goes to the app, each response leaves in one send with TCP_NODELAY,
and a TLS handshake happens in the connection's own thread, never in the
accept loop.

Floods.  A local user may slow a neighbour's server, never stop it:
- At most `max_connections` connections at once (MAX_CONNECTIONS, and never
  more than half the descriptors the process may open: `connection_cap`).  A
  connection beyond the cap sheds, at once, the one that has waited longest
  for a request: idle between keep-alive requests, still in its TLS handshake
  or still sending its request; never one whose request is being executed.
  The accepting thread shuts its socket down, which ends the blocked read of
  its thread.  Only when every connection is executing a request is the new
  one refused (closed at once).  So a client that sends its request promptly
  gets in however many idle connections an attacker holds.
- Deadlines, enforced by the accepting thread (a slowloris sending a byte a
  second is cut off like a silent client): a TLS handshake within
  `handshake_timeout`; a request, from its first byte (or from the accept) to
  the end of its body, within `request_timeout` (REQUEST_TIMEOUT); the next
  request on a keep-alive connection must begin within `idle_timeout`.
- accept() failing for want of descriptors (EMFILE, ENFILE) would leave the
  listening socket readable forever and spin the loop: instead the longest
  waiting connection is shed and the loop waits for a descriptor to come
  back, at most 10 ms doubling to 1 s; logged once per episode.
- Strict parsing: Content-Length is digits only (a repeated header must
  repeat the same value); a control character (other than tab) in the
  request line or a header, a bare CR, or a header name that is not a token
  is a 400.
"""

import collections
import email.utils
import errno
import http.server
import io
import json
import logging
import queue
import re
import resource
import select
import selectors
import socket
import socketserver
import sys
import threading
import time
import urllib.parse

from .. import loops
from . import web
from ..errors import ConfigError

log = logging.getLogger(__name__)

MAX_REQUEST_LINE = 8192
MAX_CONNECTIONS = 512
# Connections the kernel queues for accept() (capped by net.core.somaxconn).  A full
# queue drops a new client's SYN, and its retry comes a second later: a flood of a
# few thousand connections must fit, so a legitimate client never waits for that.
BACKLOG = 4096
REQUEST_TIMEOUT = 30.0  # seconds a request may take to arrive, from its first byte
HANDSHAKE_TIMEOUT = 10.0
IDLE_TIMEOUT = 75  # seconds a keep-alive connection may sit idle
PRELOAD_LIMIT = 1 << 20  # bodies up to this size are read before the app runs
_DRAIN_LIMIT = 16 << 20  # unread body bytes we discard to keep a connection open
_HOUSEKEEPING_EVERY = 0.5  # seconds between looks for connections past their deadline
_FIRST_BACKOFF, _MAX_BACKOFF = 0.01, 1.0  # after accept() ran out of descriptors
EPISODE_QUIET = 10.0  # seconds without shedding that end an episode in the log
_OUT_OF_DESCRIPTORS = (errno.EMFILE, errno.ENFILE, errno.ENOBUFS, errno.ENOMEM)
_NOTHING_TO_ACCEPT = (errno.EAGAIN, errno.EWOULDBLOCK, errno.ECONNABORTED, errno.EINTR,
                      errno.EPROTO)  # another listener was faster, or the client left

_DIGITS = re.compile(r"[0-9]+\Z")
_TOKEN = re.compile(r"[!#$%&'*+.^_`|~0-9A-Za-z-]+\Z")
# A whole header line in one match: a token, a colon, a value free of control
# characters but tab, and LF or CRLF (anything else: `_header_error` says what).
_HEADER_LINE = re.compile(r"([!#$%&'*+.^_`|~0-9A-Za-z-]+):[ \t]*"
                          r"([^\x00-\x08\x0a-\x1f\x7f]*)\r?\n\Z")
_CONTROL = re.compile(r"[\x00-\x1f\x7f]")


def raise_descriptor_limit():
    """Raise the soft RLIMIT_NOFILE to the hard limit; -> the limit now in force."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft < hard != resource.RLIM_INFINITY:
        try:
            resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
            soft = hard
        except (ValueError, OSError) as e:
            log.warning("cannot raise the descriptor limit from %d to %d: %s", soft, hard, e)
    log.info("descriptor limit (RLIMIT_NOFILE): %d", soft)
    return soft


def connection_cap(setting):
    """MAX_CONNECTIONS, but never more than half the descriptors we may open: the
    engine, the database and the planners keep the other half."""
    soft = resource.getrlimit(resource.RLIMIT_NOFILE)[0]
    if soft == resource.RLIM_INFINITY:
        return setting
    return max(1, min(setting, soft // 2))


def limits(cfg):
    """Server keyword arguments from the MAX_CONNECTIONS and REQUEST_TIMEOUT settings;
    call it after raise_descriptor_limit."""
    if cfg["MAX_CONNECTIONS"] < 1:
        raise ConfigError("MAX_CONNECTIONS must be at least 1, not %d" % cfg["MAX_CONNECTIONS"])
    if cfg["REQUEST_TIMEOUT"] <= 0:
        raise ConfigError("REQUEST_TIMEOUT must be more than 0 seconds, not %r"
                          % cfg["REQUEST_TIMEOUT"])
    return {"max_connections": connection_cap(cfg["MAX_CONNECTIONS"]),
            "request_timeout": float(cfg["REQUEST_TIMEOUT"])}


class _Body:
    """wsgi.input for a body too large to read before the app runs: limited to
    Content-Length, remembering what is left unread, each read under `guard`
    (the request's deadline).

    A body that ends before its Content-Length raises ConnectionError: the app
    must never act on a request cut short."""

    __slots__ = ("_rfile", "remaining", "_guard")

    def __init__(self, rfile, length, guard):
        self._rfile = rfile
        self.remaining = length
        self._guard = guard

    def read(self, size=-1):
        size = self._clamp(size)
        data = self._call(self._rfile.read, size) if size else b""
        return self._took(data, size)

    def readline(self, size=-1):
        size = self._clamp(size)
        data = self._call(self._rfile.readline, size) if size else b""
        return self._took(data, size and 1)

    def _clamp(self, size):
        if size is None or size < 0 or size > self.remaining:
            return self.remaining
        return size

    def _call(self, read, size):
        with self._guard():
            return read(size)

    def _took(self, data, wanted):
        self.remaining -= len(data)
        if len(data) < wanted:
            raise ConnectionError("the request body ended before its Content-Length")
        return data


class _Writer(io.BufferedIOBase):
    """wfile of a plain, blocking socket: each write is tried at once (MSG_DONTWAIT)
    and waits, with poll(), only while the socket's buffer is full, at most `timeout`
    seconds each time for room: a client that stops reading is cut off."""

    def __init__(self, sock, timeout):
        self._sock = sock
        self._timeout_ms = int(timeout * 1000)

    def writable(self):
        return True

    def write(self, data):
        with memoryview(data) as view, view.cast("B") as octets:
            sent = 0
            while sent < len(octets):
                try:
                    sent += self._sock.send(octets[sent:], socket.MSG_DONTWAIT)
                except BlockingIOError:
                    self._wait_for_room()
            return sent

    def _wait_for_room(self):
        poller = select.poll()
        poller.register(self._sock, select.POLLOUT)
        if not poller.poll(self._timeout_ms):
            raise socket.timeout("the client has not read for %d s" % (self._timeout_ms // 1000))

    def fileno(self):
        return self._sock.fileno()


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

    timeout = IDLE_TIMEOUT  # per read; the server's deadlines bound the whole
    server_version = "pegasus-em"
    max_headers = 100

    def __init__(self, request, client_address, server, conn=None):
        self.conn = conn
        super().__init__(request, client_address, server)

    def setup(self):
        backstop = max(self.server.idle_timeout, self.server.request_timeout)
        # A TLS socket keeps a timeout on every read and write, as a backstop.  A plain
        # one blocks: its reads are bounded by the server's deadlines (an expired one
        # shuts the socket down), and a timeout would cost a poll() before every
        # recv() and send(), and the GIL handed over twice more per request.
        self.timeout = backstop if self.server.ssl_context else None
        super().setup()
        if self.server.ssl_context is None:
            self.wfile = _Writer(self.connection, backstop)
        try:
            self.connection.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        except OSError:
            pass

    def handle(self):
        self.close_connection = False
        first = True
        while not self.close_connection:
            try:
                if not (first or self._next_request_begins()):
                    return
                first = False
                self.handle_one_request()
            except (socket.timeout, ConnectionError, OSError):
                return

    def _next_request_begins(self):
        """Idle until the first byte of the next request; then its deadline runs."""
        server = self.server
        if not server.waiting(self.conn, server.idle_timeout, fresh=True):
            return False
        if not self.rfile.peek(1):
            return False
        # No lock: housekeeping reads one value or the other, and a shed connection
        # reads EOF from here on.
        self.conn.deadline = time.monotonic() + server.request_timeout
        return True

    def handle_one_request(self):
        self.command = ""
        line = self.rfile.readline(MAX_REQUEST_LINE + 1)
        if not line:
            self.close_connection = True
            return
        try:
            self.parse(line)
            body = self.read_body()
        except BadRequest as e:
            self.send_error(e.status, e.message)
            return
        if self.server.busy(self.conn):
            self.run_app(body)

    def parse(self, line):
        if len(line) > MAX_REQUEST_LINE:
            raise BadRequest(414, "Request line too long")
        self.requestline = _line(line).decode("latin-1")
        if _CONTROL.search(self.requestline):
            raise BadRequest(400, "Control character in the request line")
        parts = self.requestline.split(" ")
        if len(parts) != 3 or not all(parts) or not parts[2].startswith("HTTP/"):
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
            if len(raw) > MAX_REQUEST_LINE:
                raise BadRequest(431, "Header line too long")
            if raw in (b"\r\n", b"\n"):
                return headers
            text = raw.decode("latin-1")
            match = _HEADER_LINE.match(text)
            if match is None:
                raise _header_error(raw)
            key, value = match.group(1).lower(), match.group(2).rstrip(" \t")
            headers[key] = headers[key] + ", " + value if key in headers else value
        raise BadRequest(431, "Too many headers")

    def read_body(self):
        """The body, read now (up to PRELOAD_LIMIT: it counts in the request's
        deadline, and the app gets it whole) or streamed to the app."""
        length = self.content_length = _content_length(self.headers.get("content-length"))
        if self.headers.get("expect", "").lower() == "100-continue":
            self.wfile.write(b"HTTP/1.1 100 Continue\r\n\r\n")
        if length > PRELOAD_LIMIT:
            return _Body(self.rfile, length, lambda: self.server.reading(self.conn))
        data = self.rfile.read(length) if length else b""
        if len(data) < length:
            raise ConnectionError("the request body ended before its Content-Length")
        return io.BytesIO(data)

    def run_app(self, body):
        if "transfer-encoding" in self.headers:
            self.close_connection = True  # we cannot find where a chunked body ends
        response = []

        def start_response(status, headers, exc_info=None):
            response[:] = [status, headers]
            return lambda data: None

        chunks = self.server.app(self.environ(body), start_response)
        try:
            if isinstance(chunks, (list, tuple)) or not _has_length(response[1]):
                payload = b"".join(chunks)
                self._finish_body(body)
                self._send(response[0], response[1], payload)
            else:  # a long reply the app hands over as it comes: never held whole
                self._finish_body(body)
                self._send(response[0], response[1], b"")
                for chunk in chunks:
                    if self.command != "HEAD":
                        self.wfile.write(chunk)
        finally:
            if hasattr(chunks, "close"):
                chunks.close()

    def _finish_body(self, body):
        """Keep the connection usable when the app did not read the whole body."""
        if not isinstance(body, _Body):
            return  # read before the app ran
        if body.remaining > _DRAIN_LIMIT:
            self.close_connection = True
            return
        try:
            body.read()
        except OSError:
            self.close_connection = True

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
            "CONTENT_LENGTH": str(self.content_length) if "content-length" in headers else "",
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
        self._send(web.status_line(code),
                   [("Content-Type", "application/json"), ("Content-Length", str(len(body)))],
                   body)


def _has_length(headers):
    return any(name.lower() == "content-length" for name, _ in headers)


def _line(raw):
    """A request or header line without its LF or CRLF; a line the client never ended
    (it closed the connection mid-request) ends the connection."""
    if raw.endswith(b"\r\n"):
        return raw[:-2]
    if raw.endswith(b"\n"):
        return raw[:-1]
    raise ConnectionError("the connection ended in the middle of a request")


def _header_error(raw):
    """What is wrong with a header line that is not one; ConnectionError if unended."""
    name, sep, _ = _line(raw).decode("latin-1").partition(":")
    if not sep or not _TOKEN.match(name):
        return BadRequest(400, "Malformed header line")
    return BadRequest(400, "Control character in header %s" % name)


def _content_length(raw):
    """Digits only; a repeated header (joined with ", ") must repeat the same value."""
    if raw is None:
        return 0
    values = {v.strip(" \t") for v in raw.split(",")}
    value = values.pop()
    if values or not _DIGITS.match(value):
        raise BadRequest(400, "Invalid Content-Length")
    try:
        return int(value)
    except ValueError:  # more digits than int() takes
        raise BadRequest(400, "Invalid Content-Length")


class _Conn:
    """What the server knows of one connection; changed only under Server._lock."""

    __slots__ = ("fd", "deadline", "request_ends", "shed")

    def __init__(self, fd, deadline):
        self.fd = fd               # the descriptor stays the same across the TLS wrap
        self.deadline = deadline   # monotonic; None while its request is executed
        self.request_ends = None   # the deadline of the request being executed
        self.shed = False


class _Episode:
    """A condition logged when it begins and when it has not recurred for
    EPISODE_QUIET seconds, not at every occurrence."""

    def __init__(self, begins, ends):
        self.begins, self.ends = begins, ends
        self.count = 0
        self.last = 0.0

    def occurred(self, *args):
        if not self.count:
            log.warning(self.begins, *args)
        self.count += 1
        self.last = time.monotonic()

    def end_if_quiet(self, now):
        if self.count and now - self.last > EPISODE_QUIET:
            log.info(self.ends, self.count)
            self.count = 0


class Server(http.server.HTTPServer):
    """Connections are served by reusable worker threads.

    Starting a thread per connection costs more than a whole request when
    every request brings a new connection, as the 5.x client's do; so idle
    workers wait for the next connection, and a new worker is started only
    when none is idle (a slow or idle client never blocks the others).
    """

    allow_reuse_address = True
    request_queue_size = BACKLOG
    max_idle_workers = 16

    def __init__(self, address, app, ssl_context=None, handler=Handler,
                 max_connections=MAX_CONNECTIONS, request_timeout=REQUEST_TIMEOUT,
                 idle_timeout=IDLE_TIMEOUT, handshake_timeout=HANDSHAKE_TIMEOUT):
        if ":" in address[0]:
            self.address_family = socket.AF_INET6
        self.app = app
        self.ssl_context = ssl_context
        self.max_connections = max_connections
        self.request_timeout = request_timeout
        self.idle_timeout = idle_timeout
        self.handshake_timeout = min(handshake_timeout, request_timeout)
        self._connections = queue.SimpleQueue()
        self._idle_lock = threading.Lock()
        self._idle = 0
        self._lock = threading.Lock()
        self._closed = threading.Condition(self._lock)  # a connection ended
        self._live = set()
        self._waiting = collections.OrderedDict()  # longest waiting for a request first
        self._stopping = threading.Event()
        self._stopped = threading.Event()
        self._next_housekeeping = 0.0
        self._backoff = _FIRST_BACKOFF
        self._at_cap = _Episode("at the connection cap (%d): shedding the connections "
                                "waiting longest for a request", "below the connection cap "
                                "again; %d connections were shed or refused")
        self._starving = _Episode("accept() failed: %s; shedding idle connections and "
                                  "accepting more slowly", "accept() works again, after "
                                  "%d failures")
        super().__init__(address, handler)

    def server_bind(self):
        # HTTPServer.server_bind calls getfqdn(), which can block on DNS.
        socketserver.TCPServer.server_bind(self)
        self.server_name, self.server_port = self.server_address[:2]

    # ---- the accepting thread ------------------------------------------------

    def serve_forever(self, poll_interval=_HOUSEKEEPING_EVERY):
        """Accept until shutdown(); every turn is supervised (loops.run_forever)."""
        self._stopped.clear()
        try:
            with selectors.PollSelector() as sel:  # poll needs no descriptor of its own
                sel.register(self.socket, selectors.EVENT_READ)
                loops.run_forever(lambda: self._turn(sel, poll_interval), None,
                                  self._stopping, "http accept loop", log)
        finally:
            self._stopping.clear()
            self._stopped.set()

    def shutdown(self):
        self._stopping.set()
        self._stopped.wait()

    def _turn(self, sel, poll_interval):
        if sel.select(min(poll_interval, _HOUSEKEEPING_EVERY)) and \
                not self._stopping.is_set():
            self._accept()
        now = time.monotonic()
        if now >= self._next_housekeeping:
            self._next_housekeeping = now + _HOUSEKEEPING_EVERY
            self._housekeeping(now)

    def _accept(self):
        try:
            request, client_address = self.socket.accept()
        except OSError as e:
            if e.errno not in _NOTHING_TO_ACCEPT:
                self._accept_failed(e)
            return
        self._backoff = _FIRST_BACKOFF
        try:
            self.process_request(request, client_address)
        except Exception:
            log.exception("cannot serve a connection from %s", client_address)
            self.shutdown_request(request)

    def _accept_failed(self, error):
        """The listening socket stays readable: wait instead of spinning, and when
        descriptors ran out, free one (and wake when it is closed)."""
        self._starving.occurred(error)
        with self._lock:
            if error.errno in _OUT_OF_DESCRIPTORS:
                self._shed_oldest()
            self._closed.wait(self._backoff)
        self._backoff = min(_MAX_BACKOFF, self._backoff * 2)

    def _housekeeping(self, now):
        with self._lock:
            for conn in [c for c in self._live if c.deadline is not None and c.deadline < now]:
                log.debug("closing a connection past its deadline")
                self._shed(conn)
        self._at_cap.end_if_quiet(now)
        self._starving.end_if_quiet(now)

    def process_request(self, request, client_address):
        conn = _Conn(request.fileno(), time.monotonic() + (
            self.handshake_timeout if self.ssl_context else self.request_timeout))
        if not self._admit(conn):
            self.shutdown_request(request)
            return
        with self._idle_lock:
            hand_over = self._idle > 0
            if hand_over:
                self._idle -= 1
        if hand_over:
            self._connections.put((request, client_address, conn))
        else:
            try:
                loops.spawn("http-worker", self._work, request, client_address, conn)
            except Exception:
                self._forget(conn)
                raise

    # ---- the connections (under self._lock) ----------------------------------

    def _admit(self, conn):
        """Register a new connection, shedding the longest waiting one at the cap;
        False when every connection is busy with a request (refuse the new one)."""
        with self._lock:
            if len(self._live) >= self.max_connections:
                self._at_cap.occurred(self.max_connections)
                if not self._shed_oldest():
                    return False
            self._live.add(conn)
            self._waiting[conn] = None
            return True

    def _shed_oldest(self):
        oldest = next(iter(self._waiting), None)
        if oldest is not None:
            self._shed(oldest)
        return oldest is not None

    def _shed(self, conn):
        conn.shed = True
        self._live.discard(conn)
        self._waiting.pop(conn, None)
        # Its thread still owns (and will close) the descriptor: shutting the socket
        # down ends that thread's blocked read at once.
        try:
            sock = socket.socket(fileno=conn.fd)
        except OSError:
            return
        try:
            sock.shutdown(socket.SHUT_RDWR)
        except OSError:
            pass
        finally:
            sock.detach()

    def waiting(self, conn, seconds, fresh=False):
        """The connection waits for (more of) a request, for at most `seconds`; `fresh`:
        it starts waiting now (after a response).  False if it was shed meanwhile."""
        with self._lock:
            if conn.shed:
                return False
            conn.deadline = time.monotonic() + seconds
            if fresh:
                self._waiting.pop(conn, None)
            self._waiting[conn] = None
            return True

    def busy(self, conn):
        """Its request has arrived and is executed: never shed, no deadline."""
        with self._lock:
            if conn.shed:
                return False
            self._waiting.pop(conn, None)
            conn.request_ends, conn.deadline = conn.deadline, None
            return True

    def reading(self, conn):
        """A context manager: while the app reads a large body, the request's
        deadline applies again."""
        return _Reading(self, conn)

    def _forget(self, conn):
        with self._lock:
            self._live.discard(conn)
            self._waiting.pop(conn, None)
            conn.shed = True  # never shut down after this: the descriptor is closed next
            self._closed.notify_all()

    # ---- the worker threads --------------------------------------------------

    def _work(self, request, client_address, conn):
        while request is not None:
            self._serve_connection(request, client_address, conn)
            with self._idle_lock:
                if self._idle >= self.max_idle_workers:
                    return
                self._idle += 1
            request, client_address, conn = self._connections.get()

    def _serve_connection(self, sock, client_address, conn):
        try:
            if self.ssl_context is not None:
                sock = self.ssl_context.wrap_socket(sock, server_side=True,
                                                    do_handshake_on_connect=False)
                if not self._handshake(sock, client_address, conn):
                    return
            self.finish_request(sock, client_address, conn)
        except Exception:
            self.handle_error(sock, client_address)
        finally:
            self._forget(conn)  # before the descriptor is closed: see _shed
            self.shutdown_request(sock)

    def _handshake(self, tls, client_address, conn):
        """True when done in time and the connection was not shed meanwhile."""
        try:
            tls.settimeout(self.handshake_timeout)
            tls.do_handshake()
        except (OSError, ValueError) as e:
            if not conn.shed:
                log.info("TLS handshake with %s failed: %s", client_address[0], e)
            return False
        return self.waiting(conn, self.request_timeout)

    def finish_request(self, request, client_address, conn):
        self.RequestHandlerClass(request, client_address, self, conn)

    def server_close(self):
        super().server_close()
        with self._idle_lock:
            idle, self._idle = self._idle, 0
        for _ in range(idle):
            self._connections.put((None, None, None))

    def handle_error(self, request, client_address):
        log.exception("error while serving %s", client_address)

    @property
    def url(self):
        host = self.server_name
        if ":" in host:
            host = "[%s]" % host
        scheme = "https" if self.ssl_context else "http"
        return "%s://%s:%d" % (scheme, host, self.server_port)


class _Reading:
    """Server.reading(): the request deadline holds while a streamed body is read."""

    def __init__(self, server, conn):
        self.server, self.conn = server, conn

    def __enter__(self):
        with self.server._lock:
            if self.conn.shed:
                raise ConnectionError("the connection was closed")
            self.conn.deadline = self.conn.request_ends

    def __exit__(self, *exc):
        with self.server._lock:
            self.conn.deadline = None
