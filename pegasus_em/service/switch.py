"""Process switching: each user's requests run in a worker process of that user.

The listening process (root) never touches user data.  For user U it starts,
once, `python -I -c "...worker_main()"` through subprocess with U's uid, gid
and supplementary groups (initgroups semantics: os.getgrouplist), U's home as
working directory and umask 077; the worker refuses to run as root.  Workers
stay up for reuse and are stopped after IDLE_TIMEOUT seconds without a
request; a worker that dies is started again by the next request.

Wire: a control socketpair per worker carries new channels (one end of a fresh
socketpair, passed with SCM_RIGHTS); on each channel a request (one frame) and
its reply alternate.  A frame is `>II` (length of a JSON meta object, length
of the body), the meta, the body.  A reply is a frame whose meta says
`status`, `headers` and the body's whole `length`, then as many body frames
as that length takes.  A listener thread holds a channel for the whole of one
request, so a slow request never blocks another.

The worker runs as the user and executes the user's own service.py, so the
listener treats what it sends as hostile: frames are bounded (MAX_META,
MAX_CHUNK) and memory is taken only as bytes arrive; a reply longer than
MAX_HELD is streamed to the client rather than held; what the worker writes to
stderr reaches the listener's log through a pipe, line by line, marked as the
user's, bounded and rate-limited (it never gets a descriptor of the listener's).
"""

import json
import logging
import os
import pwd
import re
import shutil
import socket
import stat
import struct
import subprocess
import sys
import threading
import time

from .. import loops
from ..web import web
from ..errors import EMError
from .userapp import UserApp, json_reply

log = logging.getLogger(__name__)

IDLE_TIMEOUT = 300     # seconds a worker may sit unused
START_TIMEOUT = 20     # seconds a new worker has to say it is ready
REPLY_TIMEOUT = 900    # seconds a request may take (analyze runs pegasus-analyzer)
HEADER = struct.Struct(">II")
MAX_META = 64 << 10    # a frame's JSON meta
MAX_CHUNK = 1 << 20    # a frame's body: a longer request or reply takes several frames
MAX_HELD = 8 << 20     # a reply up to this size is held whole; a longer one is streamed
# The folder that holds pegasus_em/, put first on a worker's sys.path.
PACKAGE_PARENT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
LOG_LINE = 2000        # characters of one line a worker logs
LOG_BURST = 200        # lines a worker may log per LOG_WINDOW seconds
LOG_WINDOW = 10.0
READY = b"R"
_SAFE_TO_REPEAT = ("GET", "HEAD")


class WorkerError(EMError):
    status = 502


class Lost(Exception):
    """The worker went away; `sent` says whether it may have seen the request."""

    def __init__(self, sent):
        super().__init__("worker lost")
        self.sent = sent


# --------------------------------------------------------------------------- framing

def send_frame(sock, meta, body=b""):
    head = json.dumps(meta, separators=(",", ":")).encode("utf-8")
    prefix = HEADER.pack(len(head), len(body)) + head
    if len(body) < 65536:
        sock.sendall(prefix + body)
    else:
        sock.sendall(prefix)
        sock.sendall(body)


def recv_frame(sock, max_body=MAX_CHUNK):
    """(meta, body), or None when the peer closed between frames; ValueError for a
    frame over the bounds or a meta that is not a JSON object."""
    header = _recv_exact(sock, HEADER.size, eof_ok=True)
    if header is None:
        return None
    meta_len, body_len = HEADER.unpack(header)
    if meta_len > MAX_META or body_len > max_body:
        raise ValueError("frame too large: %d + %d bytes" % (meta_len, body_len))
    meta = json.loads(_recv_exact(sock, meta_len).decode("utf-8"))
    if not isinstance(meta, dict):
        raise ValueError("frame meta is not an object")
    return meta, _recv_exact(sock, body_len) if body_len else b""


def _recv_exact(sock, size, eof_ok=False):
    """Exactly `size` bytes, taking memory only as they arrive (a peer that announces
    a megabyte and sends a byte costs a byte)."""
    parts, got = [], 0
    while got < size:
        part = sock.recv(min(size - got, 256 << 10))
        if not part:
            if eof_ok and got == 0:
                return None
            raise ConnectionError("peer closed the channel mid-frame")
        parts.append(part)
        got += len(part)
    return b"".join(parts)


def send_reply(sock, reply):
    """A reply as a meta frame (with the first chunk) and as many body frames as it
    takes; the body may be bytes or an iterable of bytes of a known `length`."""
    body = reply.body
    if isinstance(body, (bytes, bytearray)):
        length, chunks = len(body), _chunks(body)
    else:
        length, chunks = reply.length, iter(body)
    send_frame(sock, {"status": reply.status, "headers": reply.headers, "length": length},
               b"")
    sent = 0
    for chunk in chunks:
        for piece in _chunks(chunk):
            sent += len(piece)
            if sent > length:
                raise ValueError("the reply is longer than announced")
            send_frame(sock, {}, piece)
    if sent != length:
        raise ValueError("the reply is shorter than announced")


def _chunks(data):
    return (data[i:i + MAX_CHUNK] for i in range(0, len(data), MAX_CHUNK))


def recv_reply(sock, release):
    """The worker's reply: held whole up to MAX_HELD, else streamed (`release(sock)` is
    called once the whole body has been read, or the socket closed on any problem)."""
    frame = recv_frame(sock)
    if frame is None:
        raise ConnectionError("worker closed the channel")
    meta, _ = frame
    length = meta.get("length")
    if not isinstance(length, int) or isinstance(length, bool) or length < 0:
        raise ValueError("reply without a valid length")
    headers = [tuple(h) for h in meta.get("headers") or []]
    if length <= MAX_HELD:
        body = b"".join(_body_frames(sock, length))
        release(sock)
        return web.Response(meta.get("status"), headers, body)
    return web.Response(meta.get("status"), headers, StreamedBody(sock, length, release))


def _body_frames(sock, length):
    got = 0
    while got < length:
        frame = recv_frame(sock)
        if frame is None:
            raise ConnectionError("worker closed the channel mid-reply")
        got += len(frame[1])
        if got > length or not frame[1]:
            raise ValueError("reply body frames do not add up to its length")
        yield frame[1]


class StreamedBody:
    """A long reply read from the worker as the client takes it (a WSGI iterable with
    a length); the channel goes back to the worker only when all of it was read."""

    def __init__(self, sock, length, release):
        self.sock, self.length, self._release = sock, length, release
        self._frames = _body_frames(sock, length)
        self._done = False

    def __len__(self):
        return self.length

    def __iter__(self):
        try:
            for chunk in self._frames:
                yield chunk
        except ValueError as e:  # the worker broke the protocol: as if it hung up
            raise ConnectionError("worker reply: %s" % e) from e
        self._done = True

    def close(self):
        if self._release is not None:
            release, self._release = self._release, None
            if self._done:
                release(self.sock)
            else:
                self.sock.close()
                release(None)


# --------------------------------------------------------------------------- listener side

class Worker:
    """One user's worker process, seen from the listener."""

    def __init__(self, user, proc, ctl):
        self.user = user
        self.proc = proc
        self.ctl = ctl
        self.lock = threading.Lock()
        self.idle = []
        self.busy = 0
        self.last_used = time.monotonic()
        self.closed = False

    @classmethod
    def start(cls, pw, python=None):
        parent, child = socket.socketpair(socket.AF_UNIX, socket.SOCK_STREAM)
        try:
            proc = subprocess.Popen(
                worker_argv(python) + [str(child.fileno()), str(pw.pw_uid)],
                pass_fds=[child.fileno()], user=pw.pw_uid, group=pw.pw_gid,
                extra_groups=os.getgrouplist(pw.pw_name, pw.pw_gid), env=worker_env(pw),
                cwd=pw.pw_dir if os.path.isdir(pw.pw_dir) else "/", umask=0o077,
                start_new_session=True, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
                stderr=subprocess.PIPE)
        except OSError as e:
            parent.close()
            log.warning("cannot start a worker for user %s: %s", pw.pw_name, e)
            raise WorkerError("cannot start a process for user %s: %s"
                              % (pw.pw_name, e.strerror or e))
        finally:
            child.close()
        relay_log(proc.stderr, "%s[%d]" % (pw.pw_name, proc.pid))
        worker = cls(pw.pw_name, proc, parent)
        worker._await_ready()
        log.info("started worker pid %d for user %s", proc.pid, pw.pw_name)
        return worker

    def _await_ready(self):
        self.ctl.settimeout(START_TIMEOUT)
        try:
            ready = self.ctl.recv(1)
        except OSError:
            ready = b""
        self.ctl.settimeout(None)
        if ready != READY:
            self.close()
            raise WorkerError("the process for user %s did not start (exit status %s); see "
                              "the service log" % (self.user, self.proc.poll()))

    def call(self, call):
        """Send one request and read its reply on a channel held for the whole exchange
        (for a streamed reply, until its body is read); Lost if the worker went away or
        broke the protocol."""
        channel = self._acquire()
        sent = False
        try:
            channel.settimeout(REPLY_TIMEOUT)
            send_frame(channel, call.meta(), call.body)
            sent = True
            return recv_reply(channel, self._release)
        except (OSError, ValueError) as e:
            log.warning("worker pid %d of user %s: %s", self.proc.pid, self.user, e)
            channel.close()
            self._release(None)
            raise Lost(sent)

    def _acquire(self):
        with self.lock:
            if self.closed:
                raise Lost(False)
            self.busy += 1
            self.last_used = time.monotonic()
            if self.idle:
                return self.idle.pop()
            ours, theirs = socket.socketpair(socket.AF_UNIX, socket.SOCK_STREAM)
            try:
                socket.send_fds(self.ctl, [b"C"], [theirs.fileno()])
            except OSError:
                ours.close()
                self.busy -= 1
                raise Lost(False)
            finally:
                theirs.close()
            return ours

    def _release(self, channel):
        with self.lock:
            self.busy -= 1
            self.last_used = time.monotonic()
            if channel is not None:
                if self.closed:
                    channel.close()
                else:
                    self.idle.append(channel)

    def retire_if_idle(self, now, idle_timeout):
        """Mark the worker closed if it has served nothing for `idle_timeout` seconds; a
        request arriving after this finds it closed and starts another (never one
        cut off mid-way)."""
        with self.lock:
            if self.closed or (not self.busy and now - self.last_used > idle_timeout):
                self.closed = True
                return True
            return False

    def alive(self):
        return not self.closed and self.proc.poll() is None

    def close(self, wait=5.0):
        """Closing the control socket tells the worker to exit; it is killed if it does not."""
        with self.lock:
            self.closed = True
            channels, self.idle = self.idle, []
        for ch in channels:
            ch.close()
        self.ctl.close()
        try:
            self.proc.wait(wait)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()


class WorkerPool:
    """The listener's per-user workers: `handle(call) -> web.Response` for any user but
    root."""

    def __init__(self, idle_timeout=IDLE_TIMEOUT, python=None):
        self.idle_timeout = idle_timeout
        self.python = python
        self._workers = {}
        self._starting = {}   # user -> lock held while that user's worker starts
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._reaper = None

    def handle(self, call):
        for attempt in (0, 1):
            worker = self._worker(call.user)
            try:
                return worker.call(call)
            except Lost as lost:
                self._discard(worker)
                status = worker.proc.poll()
                if status is not None:
                    log.warning("worker pid %d of user %s ended (status %s)", worker.proc.pid,
                                worker.user, status)
                if attempt or (lost.sent and call.method not in _SAFE_TO_REPEAT):
                    raise WorkerError("the process serving user %s ended during the request "
                                      "(exit status %s)" % (call.user, status))
        raise AssertionError("unreachable")

    def _worker(self, user):
        with self._lock:
            worker = self._workers.get(user)
            if worker is not None and worker.alive():
                return worker
            starting = self._starting.setdefault(user, threading.Lock())
        with starting:
            with self._lock:
                worker = self._workers.get(user)
                if worker is not None and worker.alive():
                    return worker
            pw = pwd.getpwnam(user)
            if pw.pw_uid == 0:
                raise WorkerError("refusing to start a worker for a uid 0 account")
            worker = Worker.start(pw, self.python)
            with self._lock:
                self._workers[user] = worker
                self._start_reaper()
            return worker

    def _discard(self, worker):
        with self._lock:
            if self._workers.get(worker.user) is worker:
                del self._workers[worker.user]
        loops.spawn("worker-close", worker.close)

    def _start_reaper(self):
        if self._reaper is None:
            self._reaper = loops.start("worker-reaper", self._reap, self._stop.wait,
                                       self._stop, log,
                                       first_wait=min(10.0, self.idle_timeout / 4))

    def _reap(self):
        """One look for workers that ended or sat idle; -> seconds until the next."""
        now = time.monotonic()
        with self._lock:
            stale = [w for w in self._workers.values() if w.proc.poll() is not None
                     or w.retire_if_idle(now, self.idle_timeout)]
            for w in stale:
                del self._workers[w.user]
        for w in stale:
            log.info("stopping worker pid %d of user %s (%s)", w.proc.pid, w.user,
                     "idle" if w.proc.poll() is None else "exited %s" % w.proc.poll())
            w.close()
        return min(10.0, self.idle_timeout / 4)

    def pids(self):
        with self._lock:
            return {u: w.proc.pid for u, w in self._workers.items()}

    def close(self):
        self._stop.set()
        with self._lock:
            workers, self._workers = list(self._workers.values()), {}
        for w in workers:
            w.close()


def relay_log(stream, who):
    """Log what a worker writes to stderr, in a thread that ends with the worker."""
    loops.spawn("worker-log", _relay, stream, who)


_CONTROL = re.compile(r"[\x00-\x08\x0a-\x1f\x7f-\x9f]")


def _relay(stream, who):
    """Each line as one log record marked as the worker's (control characters escaped,
    so a line cannot pose as another record), at most LOG_BURST per LOG_WINDOW."""
    window, lines, dropped = time.monotonic(), 0, 0
    with stream:
        while True:
            try:
                raw = stream.readline(LOG_LINE)
            except (OSError, ValueError):
                return
            if not raw:
                return
            now = time.monotonic()
            if now - window > LOG_WINDOW:
                if dropped:
                    log.warning("worker %s: %d more lines not logged", who, dropped)
                window, lines, dropped = now, 0, 0
            lines += 1
            if lines > LOG_BURST:
                dropped += 1
                continue
            text = raw.decode("utf-8", "replace").rstrip("\n")
            log.info("worker %s: %s", who, _CONTROL.sub(lambda m: "\\x%02x" % ord(m.group()),
                                                         text))


def worker_argv(python=None):
    """Run this package, isolated from the caller's environment (-I), with an
    interpreter every user may run: the service's own if it is (mod_wsgi's
    sys.executable may be httpd itself; a root-only pyenv is not), else python3."""
    python = python or _shared_python()
    code = ("import sys; sys.path.insert(0, %r); from %s import worker_main; "
            "sys.exit(worker_main(sys.argv[1:]))" % (PACKAGE_PARENT, __name__))
    return [python, "-I", "-c", code]


PROBE_UID = 65534  # nobody: can an account with no rights of its own run a worker?


def probe_worker_start(python=None, uid=PROBE_UID, timeout=START_TIMEOUT):
    """None if a process of an unprivileged account can start this package as workers
    start it, else why not (one line): a service installed under root's home (a pyenv
    there, a venv whose interpreter links into it) starts, and then serves nobody."""
    argv = worker_argv(python)
    argv[-1] = argv[-1].split("; from ")[0] + "; import " + __name__
    try:
        result = subprocess.run(argv, user=uid, group=uid, extra_groups=[], cwd="/",
                                env={"PATH": "/usr/bin:/bin", "LANG": "C.UTF-8"},
                                stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
                                stderr=subprocess.PIPE, timeout=timeout)
    except (OSError, subprocess.SubprocessError) as e:
        return "%s cannot be run by other users: %s" % (argv[0], e)
    if result.returncode == 0:
        return None
    lines = result.stderr.decode("utf-8", "replace").strip().splitlines() or ["exit status %d"
                                                                          % result.returncode]
    return "%s cannot import pegasus_em from %s as another user: %s" % (
        argv[0], PACKAGE_PARENT, lines[-1])


def _shared_python():
    candidates = [sys.executable, shutil.which("python3"), "/usr/bin/python3"]
    for path in candidates:
        if path and os.path.basename(path).startswith("python") and _everyone_can_run(path):
            return path
    return sys.executable


def _everyone_can_run(path):
    """Executable by others, through directories others may enter."""
    try:
        if not os.stat(path).st_mode & stat.S_IXOTH:
            return False
        parent = os.path.dirname(os.path.abspath(path))
        while True:
            if not os.stat(parent).st_mode & stat.S_IXOTH:
                return False
            if parent == "/":
                return True
            parent = os.path.dirname(parent)
    except OSError:
        return False


def worker_env(pw):
    env = {"HOME": pw.pw_dir, "USER": pw.pw_name, "LOGNAME": pw.pw_name,
           "SHELL": pw.pw_shell or "/bin/sh",
           "PATH": os.environ.get("PATH") or "/usr/local/bin:/usr/bin:/bin",
           "LANG": os.environ.get("LANG") or "C.UTF-8"}
    if os.environ.get("TZ"):
        env["TZ"] = os.environ["TZ"]
    return env


# --------------------------------------------------------------------------- worker side

def worker_main(argv):
    """Entry point of a worker process: serve channels until the control socket closes."""
    fd, expected_uid = int(argv[0]), int(argv[1])
    if os.getuid() == 0 or os.geteuid() == 0 or os.getuid() != expected_uid:
        print("pegasus-service worker: refusing to run as uid %d/%d (expected %d)"
              % (os.getuid(), os.geteuid(), expected_uid), file=sys.stderr)
        return 3
    me = pwd.getpwuid(os.getuid()).pw_name
    logging.basicConfig(level=logging.INFO, stream=sys.stderr,
                        format="%%(asctime)s %%(levelname)s worker[%s] %%(name)s: %%(message)s"
                        % me)
    ctl = socket.socket(fileno=fd)
    app = UserApp()
    ctl.sendall(READY)
    while True:
        try:
            msg, fds, _flags, _addr = socket.recv_fds(ctl, 16, 8)
        except OSError:
            msg, fds = b"", []
        if not msg:
            os._exit(0)  # the listener is gone or let us go; nothing is half done
        for channel_fd in fds:
            channel = socket.socket(fileno=channel_fd)
            loops.spawn("channel", serve_channel, channel, app, me)


def serve_channel(channel, app, me):
    try:
        while True:
            frame = recv_frame(channel, MAX_HELD)
            if frame is None:
                return
            meta, body = frame
            call = web.Request.from_meta(meta, body)
            if call.user != me:
                reply = json_reply(403, {"message": "this process serves %s only" % me})
            else:
                reply = app.handle(call)
            send_reply(channel, reply)
    except (OSError, ValueError) as e:
        log.warning("channel closed: %s", e)
    finally:
        channel.close()
