"""Pegasus's own pegasus-monitord, started by the simulated DAGMan as pegasus-dagman starts it.

With Pegasus installed, the real monitord turns the simulated dagman.out into
jobstate.log, monitord.*, the STAMPEDE DB and the master DB; the simulator's
own writer (record.py) then stays out of the way.  Which monitord:
PEGASUS_SIM_MONITORD (a command line; empty: always the simulator's writer),
else `pegasus-monitord` on PATH.
"""

import os
import shlex
import shutil
import subprocess

LOG = "monitord.log"


def command(environ=None):
    """The monitord command line to run, or None for the simulator's own writer."""
    environ = os.environ if environ is None else environ
    if "PEGASUS_SIM_MONITORD" in environ:
        return shlex.split(environ["PEGASUS_SIM_MONITORD"]) or None
    found = shutil.which("pegasus-monitord", path=environ.get("PATH"))
    return [found] if found else None


def start(argv, dagman_out):
    """`pegasus-monitord -N <dagman.out>` in the submit dir, output to monitord.log (pegasus-dagman's way)."""
    with open(LOG, "ab") as log:
        return subprocess.Popen(argv + ["-N", os.path.basename(dagman_out)], stdin=subprocess.DEVNULL,
                                stdout=log, stderr=subprocess.STDOUT, close_fds=True)


def wait(proc):
    """pegasus-dagman exits only after monitord has read DAGMan's last line."""
    if proc is not None:
        proc.wait()
