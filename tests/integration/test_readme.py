"""The README's first command works literally, for an ordinary user, on a fresh clone,
in a fresh login shell: it leaves a daemon that answers `pegasus-em`."""

import os
import re
import shutil
import signal
import subprocess

import pytest

from conftest import REPO, throwaway_user, wait_until


def first_commands():
    """The two commands the README opens with (its first sh block), comments removed."""
    with open(os.path.join(REPO, "README.md"), encoding="utf-8") as f:
        block = re.search(r"```sh\n(.*?)```", f.read(), re.S).group(1)
    lines = [line.split("  #")[0].strip() for line in block.splitlines() if line.strip()]
    return lines[:2]


def test_the_readme_opens_with_an_install_and_a_test_command():
    start, test = first_commands()
    assert "pegasus-em server" in start
    with open(os.path.join(REPO, ".ci", "run"), encoding="utf-8") as f:
        assert test in f.read()  # CI runs exactly what the README says


def test_the_first_command_starts_a_daemon_for_an_ordinary_user(sandbox, tmp_path):
    if shutil.which("git") is None or shutil.which("runuser") is None:
        pytest.skip("needs git and runuser")
    if subprocess.run(["git", "-C", REPO, "rev-parse", "HEAD"], stdout=subprocess.DEVNULL,
                      stderr=subprocess.DEVNULL).returncode != 0:
        pytest.skip("not a git checkout: no fresh clone to make")
    start = first_commands()[0]
    with throwaway_user(sandbox) as u:
        clone = os.path.join(u.home, "pegasus-em")
        subprocess.run(["git", "clone", "-q", REPO, clone], check=True)
        subprocess.run(["chown", "-R", "%d:%d" % (u.uid, u.gid), clone], check=True)
        log = open(str(tmp_path / "daemon.log"), "w+")
        # A login shell of the user's own, as after `ssh user@host`: nothing of ours in it.
        daemon = subprocess.Popen(["runuser", "-l", u.name, "-c", "cd %s && %s" % (clone, start)],
                                  stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
        try:
            ask = ["runuser", "-l", u.name, "-c",
                   "cd %s && export PATH=$PWD/bin:$PATH && pegasus-em ensembles" % clone]
            answered = wait_until(lambda: daemon.poll() is not None or subprocess.run(
                ask, stdout=subprocess.PIPE, stderr=subprocess.STDOUT).returncode == 0, 60,
                interval=0.2, message="the daemon to answer")
            log.seek(0)
            assert daemon.poll() is None and answered, log.read()
        finally:
            os.killpg(daemon.pid, signal.SIGTERM)
            daemon.wait(30)
