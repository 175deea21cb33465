"""Fixtures for running Pegasus's own tools (pegasus-wms 5.1.3) against the simulator's runs.

The tools live in a cached venv (pegasus_venv.py).  When it cannot be built (no
package index), every test here is skipped with pip's reason, never silently.
Tools run as a throwaway user: they find the master DB in $HOME/.pegasus.
"""

import os
import sys

import pytest

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

import pegasus_venv  # noqa: E402

_SETUP = {}


class Pegasus:
    """The installed tools: `argv(tool, ...)` is the command line of `pegasus-<tool>`."""

    def __init__(self, venv):
        self.venv = venv
        self.bin = pegasus_venv.tools_dir(venv)
        self.python = os.path.join(venv, "bin", "python")
        self.site = pegasus_venv.site_packages(venv)

    def argv(self, tool, *args):
        return [os.path.join(self.bin, "pegasus-" + tool)] + [str(a) for a in args]

    def env(self, user, home=None, real_first=False, **extra):
        """The user's environment; `real_first` puts the real tools before the simulator's on PATH
        (pegasus-run, pegasus-remove, pegasus-monitord ... real; pegasus-plan, condor_* simulated)."""
        env = user.env(**extra)
        env["HOME"] = home or user.home
        if real_first:
            env["PATH"] = self.bin + os.pathsep + env["PATH"]
        return env

    def run(self, user, tool, *args, home=None, cwd=None, timeout=120):
        return user.run(self.argv(tool, *args), cwd=cwd, env=self.env(user, home), timeout=timeout)


@pytest.fixture(scope="session")
def pegasus():
    """The real tools, or a skip that says why they could not be installed."""
    if "venv" not in _SETUP:
        _SETUP["venv"] = pegasus_venv.ensure()
    venv, why = _SETUP["venv"]
    if venv is None:
        pytest.skip("Pegasus's own tools are not available: %s" % why)
    return Pegasus(venv)


def pytest_terminal_summary(terminalreporter):
    """Say so at the end of the run when the oracle was missing (a bare `s` is easy to miss)."""
    venv, why = _SETUP.get("venv", (True, None))
    if venv is None:
        terminalreporter.write_line("tests/real_pegasus skipped: %s" % why, yellow=True)
