"""`pegasus-em watch` as a process of its own on a pseudo-terminal: it finds it is on
one and redraws.  In process: tests/unit/test_watch.py.
"""

import os
import time

from beyond_fixtures import stack  # noqa: F401
from pegasus_em.em import cli


def test_watch_detects_a_terminal_through_a_pty(stack):
    import pty
    import select
    import signal
    import subprocess
    import sys
    stack.ensemble("t")
    stack.submit("t", "a")
    master, slave = pty.openpty()
    env = dict(os.environ, PEGASUS_ENV=stack.config_file(),
               PYTHONPATH=os.path.dirname(os.path.dirname(cli.__file__)))
    proc = subprocess.Popen([sys.executable, "-m", "pegasus_em", "--url", stack.url, "watch",
                             "t", "-n", "0.1"], stdin=slave, stdout=slave, stderr=slave,
                            env=env, close_fds=True)
    os.close(slave)
    seen = b""
    try:
        deadline = time.monotonic() + 15
        while seen.count(b"\x1b[H\x1b[2J") < 2 and time.monotonic() < deadline:
            if select.select([master], [], [], 0.5)[0]:
                seen += os.read(master, 65536)
        proc.send_signal(signal.SIGINT)
        assert proc.wait(10) == 0
    finally:
        if proc.poll() is None:
            proc.kill()
        try:
            while select.select([master], [], [], 0.2)[0]:
                seen += os.read(master, 65536)
        except OSError:
            pass
        os.close(master)
    text = seen.decode("utf-8", "replace")
    assert "pegasus-em watch t" in text and "READY" in text
    assert text.count("\x1b[H\x1b[2J") >= 2 and "\x1b[?25h" in text
