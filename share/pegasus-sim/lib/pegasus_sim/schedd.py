"""A fake HTCondor schedd: a directory with one JSON job ad per cluster.

Layout: <dir>/.next_id (counter), <dir>/.lock (flock), <dir>/<id>.json (the ad),
<dir>/spool/condor_scheduniv_exec.<id>.0 (symlink to the executable, so the
running process's command line names its cluster as with real HTCondor).
Jobs run as detached processes; a job whose process is gone leaves the queue.
"""

import fcntl
import json
import os
import re
import shlex
import signal
import subprocess
import sys
import time
from contextlib import contextmanager

from . import osutil

IDLE, RUNNING, REMOVED, COMPLETED, HELD = 1, 2, 3, 4, 5
ACTIVE = (IDLE, RUNNING, HELD)
DAGMAN = "pegasus-sim-dagman"


def directory(environ=None):
    environ = os.environ if environ is None else environ
    return environ.get("PEGASUS_SIM_SCHEDD") or os.path.join(osutil.home(), ".pegasus-sim", "schedd")


def parse_submit(path):
    """(commands, attrs) of a submit description: `key = value` and `+Attr = value` lines."""
    commands, attrs = {}, {}
    for line in osutil.read_text(path).splitlines():
        line = line.strip()
        if not line or line.startswith("#") or "=" not in line:
            continue
        key, _, value = line.partition("=")
        key, value = key.strip(), value.strip()
        if key.startswith("+"):
            attrs[key[1:]] = classad_value(value)
        else:
            commands[key.lower()] = value
    return commands, attrs


def classad_value(text):
    if len(text) >= 2 and text[0] == text[-1] == '"':
        return text[1:-1]
    for kind in (int, float):
        try:
            return kind(text)
        except ValueError:
            pass
    return {"true": True, "false": False}.get(text.lower(), text)


def unquote(text):
    return text[1:-1] if len(text) >= 2 and text[0] == text[-1] == '"' else text


def environment(text):
    """`environment = "A=1 B=2"` (new syntax) as a dict."""
    return dict(item.partition("=")[::2] for item in shlex.split(unquote(text)) if "=" in item)


class Schedd:
    def __init__(self, path=None):
        self.dir = path or directory()
        os.makedirs(os.path.join(self.dir, "spool"), exist_ok=True)

    @contextmanager
    def lock(self):
        """One flock for the whole queue: ids and read-modify-write of ads."""
        fd = os.open(os.path.join(self.dir, ".lock"), os.O_RDWR | os.O_CREAT, 0o644)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX)
            yield
        finally:
            os.close(fd)

    def new_cluster(self):
        """Atomically allocate the next cluster id (concurrent submits never share one)."""
        with self.lock():
            path = os.path.join(self.dir, ".next_id")
            n = int(osutil.read_text(path, "1").strip() or 1)
            osutil.write_atomic(path, "%d\n" % (n + 1))
            return n

    def ad_path(self, cluster):
        return os.path.join(self.dir, "%d.json" % cluster)

    def get(self, cluster):
        try:
            return json.loads(osutil.read_text(self.ad_path(cluster)))
        except ValueError:
            return None

    def update(self, cluster, **changes):
        """Merge `changes` into a job ad under the lock; returns the new ad (None if unknown)."""
        with self.lock():
            ad = self.get(cluster)
            if ad is None:
                return None
            if "JobStatus" in changes and changes["JobStatus"] != ad.get("JobStatus"):
                changes.setdefault("EnteredCurrentStatus", int(time.time()))
            ad.update(changes)
            osutil.write_atomic(self.ad_path(cluster), json.dumps(ad, indent=1, sort_keys=True))
            return ad

    def ads(self):
        found = []
        for name in os.listdir(self.dir):
            if re.match(r"^\d+\.json$", name):
                ad = self.get(int(name[:-5]))
                if ad:
                    found.append(ad)
        return sorted(found, key=lambda ad: ad["ClusterId"])

    def active(self):
        """Jobs still in the queue, after dropping those whose process has gone."""
        live = []
        for ad in self.ads():
            if ad.get("JobStatus") in ACTIVE and not self._gone(ad):
                live.append(ad)
            elif ad.get("JobStatus") in ACTIVE:
                self.update(ad["ClusterId"], JobStatus=COMPLETED)
        return live

    def _gone(self, ad):
        pid = ad.get("pid")
        if pid is None:  # still being submitted; give the submitter a minute
            return time.time() - ad.get("QDate", 0) > 60
        return not osutil.pid_alive(pid)

    def submit(self, subfile, cwd=None):
        """condor_submit: record the ad, start the executable detached; returns the cluster."""
        cwd = os.path.abspath(cwd or os.getcwd())
        commands, attrs = parse_submit(subfile)
        executable = os.path.join(cwd, commands.get("executable", ""))
        if not os.access(executable, os.X_OK) or os.path.isdir(executable):
            raise OSError("executable %s is missing or not executable" % executable)
        cluster = self.new_cluster()
        is_dagman = os.path.basename(os.path.realpath(executable)) == DAGMAN
        ad = dict(attrs, ClusterId=cluster, ProcId=0, Owner=osutil.user(), Iwd=cwd,
                  Cmd=executable, Args=unquote(commands.get("arguments", "")),
                  JobUniverse=7 if commands.get("universe") == "scheduler" else 5,
                  JobStatus=IDLE if is_dagman else RUNNING, QDate=int(time.time()),
                  EnteredCurrentStatus=int(time.time()), pid=None,
                  UserLog=os.path.join(cwd, commands.get("log", "")) if commands.get("log") else None,
                  Out=commands.get("output"), Err=commands.get("error"))
        osutil.write_atomic(self.ad_path(cluster), json.dumps(ad, indent=1, sort_keys=True))
        self.log_event(ad, "000", "Job submitted from host: <127.0.0.1:9618?sim>")
        pid = self._launch(ad, executable, commands)
        self.update(cluster, pid=pid)
        return cluster

    def _launch(self, ad, executable, commands):
        link = os.path.join(self.dir, "spool", "condor_scheduniv_exec.%d.0" % ad["ClusterId"])
        osutil.remove(link)
        os.symlink(os.path.realpath(executable), link)
        # Our own scripts need only the stdlib: -S skips site-packages start-up cost.
        argv = ([sys.executable, "-S"] if os.path.dirname(os.path.realpath(executable)) == osutil.BINDIR
                else []) + [link] + shlex.split(ad["Args"])
        env = dict(os.environ, **environment(commands.get("environment", "")))
        env.update(_CONDOR_JOB_AD=self.ad_path(ad["ClusterId"]), CONDOR_ID="%d.0" % ad["ClusterId"],
                   PEGASUS_SIM_SCHEDD=self.dir)
        out = self._open(ad["Iwd"], commands.get("output"))
        err = self._open(ad["Iwd"], commands.get("error"))
        try:
            proc = subprocess.Popen(argv, cwd=ad["Iwd"], env=env, stdin=subprocess.DEVNULL,
                                    stdout=out, stderr=err, close_fds=True, start_new_session=True)
        finally:
            out.close()
            err.close()
        return proc.pid

    @staticmethod
    def _open(cwd, name):
        return open(os.path.join(cwd, name) if name else os.devnull, "ab")

    def log_event(self, ad, code, text):
        """Append an event to the job's user log (`log =`), e.g. 000 submitted, 005 terminated."""
        if ad.get("UserLog"):
            osutil.append(ad["UserLog"], "%s (%03d.000.000) %s %s\n...\n" % (
                code, ad["ClusterId"], time.strftime("%Y-%m-%d %H:%M:%S"), text))

    def remove(self, cluster):
        """condor_rm: the job leaves the queue; a DAGMan gets SIGUSR1 (remove_kill_sig)."""
        ad = self._active(cluster)
        if ad is None:
            return False
        self.update(cluster, JobStatus=REMOVED)
        self.log_event(ad, "009", "Job was aborted.\n\tvia condor_rm (by user %s)" % osutil.user())
        _signal(ad["pid"], signal.SIGUSR1)
        _signal(ad["pid"], signal.SIGCONT)  # a held (stopped) DAGMan must see it
        return True

    def hold(self, cluster):
        """condor_hold: mark held; the DAGMan logs held jobs on SIGUSR2 and stops itself."""
        ad = self._active(cluster)
        if ad is None or ad["JobStatus"] == HELD:
            return ad is not None
        self.update(cluster, JobStatus=HELD, HoldReason="via condor_hold (by user %s)" % osutil.user(),
                    StatusBeforeHold=ad["JobStatus"])
        self.log_event(ad, "012", "Job was held.\n\tvia condor_hold (by user %s)" % osutil.user())
        _signal(ad["pid"], signal.SIGUSR2)
        _wait_stopped(ad["pid"])
        return True

    def release(self, cluster):
        ad = self._active(cluster)
        if ad is None or ad["JobStatus"] != HELD:
            return ad is not None
        self.update(cluster, JobStatus=ad.get("StatusBeforeHold", RUNNING), HoldReason=None)
        self.log_event(ad, "013", "Job was released.\n\tvia condor_release (by user %s)" % osutil.user())
        for _ in range(20):  # the DAGMan may stop itself just after our SIGCONT
            _signal(ad["pid"], signal.SIGCONT)
            time.sleep(0.01)
            if osutil.proc_state(ad["pid"]) != "T":
                break
        return True

    def _active(self, cluster):
        ad = self.get(cluster)
        if ad is None or ad.get("JobStatus") not in ACTIVE or ad.get("pid") is None or self._gone(ad):
            return None
        return ad


def _signal(pid, sig):
    try:
        os.kill(pid, sig)
    except OSError:
        pass


def _wait_stopped(pid, timeout=1.0):
    """Give the DAGMan time to log its held jobs and stop itself, else stop it."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if osutil.proc_state(pid) in ("T", "t", "Z", ""):
            return
        time.sleep(0.01)
    _signal(pid, signal.SIGSTOP)


CLAUSE = re.compile(r'^\s*\(?\s*(\w+)\s*(==|!=|=\?=|=!=)\s*("(?:[^"\\]|\\.)*"|[^\s()]+)\s*\)?\s*$')


def matches(ad, constraint):
    """Minimal ClassAd constraints: clauses `Attr op value` joined by &&, op in == != =?= =!=."""
    if not constraint or constraint.strip().lower() == "true":
        return True
    lowered = {k.lower(): v for k, v in ad.items()}
    for clause in constraint.split("&&"):
        m = CLAUSE.match(clause)
        if not m:
            raise ValueError("unsupported constraint: %s" % clause.strip())
        attr, op, literal = m.groups()
        have, want = lowered.get(attr.lower()), classad_value(literal)
        if op in ("==", "!="):  # == compares strings case-insensitively in ClassAds
            same = (str(have).lower() == str(want).lower()) if isinstance(want, str) else have == want
        else:
            same = have == want and type(have) is type(want)
        if same != (op in ("==", "=?=")):
            return False
    return True
