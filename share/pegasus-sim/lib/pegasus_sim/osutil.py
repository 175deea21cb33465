"""Small OS helpers shared by every tool: paths, atomic files, liveness, time."""

import errno
import os
import pwd
import socket
import sys
import time

# share/pegasus-sim/bin, found from this file so symlinked scripts still work.
BINDIR = os.path.realpath(os.path.join(os.path.dirname(__file__), "..", "..", "bin"))


def home():
    """The passwd home, not $HOME: Pegasus finds ~/.pegasus this way."""
    return pwd.getpwuid(os.getuid()).pw_dir


def user():
    return pwd.getpwuid(os.getuid()).pw_name


def hostname():
    return socket.gethostname()


def tool(name):
    return os.path.join(BINDIR, name)


def write_atomic(path, text, mode=0o644):
    """Readers never see a half-written file: write aside, then rename."""
    tmp = "%s.tmp.%d" % (path, os.getpid())
    with open(tmp, "w", encoding="utf-8") as f:
        f.write(text)
    os.chmod(tmp, mode)
    os.replace(tmp, path)


def append(path, text):
    """One O_APPEND write per call, so concurrent appenders do not interleave lines."""
    fd = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
    try:
        os.write(fd, text.encode("utf-8"))
    finally:
        os.close(fd)


def read_text(path, default=""):
    try:
        with open(path, encoding="utf-8", errors="replace") as f:
            return f.read()
    except OSError:
        return default


def remove(path):
    try:
        os.unlink(path)
    except FileNotFoundError:
        pass


def pid_alive(pid):
    """kill(pid, 0), but an unreaped zombie counts as dead (PID 1 may not reap)."""
    try:
        os.kill(pid, 0)
    except OSError as e:
        if e.errno != errno.EPERM:
            return False
    return proc_state(pid) != "Z"


def proc_state(pid):
    """One-letter state from /proc/<pid>/stat ('R', 'S', 'T', 'Z'...), '' if unknown."""
    text = read_text("/proc/%d/stat" % pid)
    return text.rsplit(")", 1)[-1].split()[0] if ")" in text else ""


def process_age():
    """Seconds since this process started, interpreter start-up included.

    The duration knobs are wall time as the caller sees it: a "1 s plan" ends 1 s
    after pegasus-plan was started, however long Python took to start.
    """
    try:
        with open("/proc/self/stat", "rb") as f:
            start_ticks = int(f.read().rpartition(b")")[2].split()[19])
        with open("/proc/uptime", "rb") as f:
            uptime = float(f.read().split()[0])
    except (OSError, ValueError, IndexError):
        return 0.0
    return max(0.0, uptime - start_ticks / os.sysconf("SC_CLK_TCK"))


def iso_now(t=None):
    """monitord's timestamps, e.g. 2023-03-03T22:25:01-0800."""
    return time.strftime("%Y-%m-%dT%H:%M:%S%z", time.localtime(t))


def utf8_stdio():
    """The real tools print a sparkle; do not die on an ASCII terminal."""
    for stream in (sys.stdout, sys.stderr):
        try:
            stream.reconfigure(encoding="utf-8", errors="replace")
        except (AttributeError, ValueError):
            pass


def run_cli(main):
    """Entry point of every script: UTF-8 output, exit code, 130 on Ctrl-C."""
    utf8_stdio()
    try:
        code = main(sys.argv[1:])
    except KeyboardInterrupt:
        code = 130
    sys.stdout.flush()
    sys.exit(code)
