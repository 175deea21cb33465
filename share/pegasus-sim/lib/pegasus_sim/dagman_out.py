"""The `<dag>.dagman.out` format: writing condor_dagman's lines and reading them back.

Line shapes follow real HTCondor 10 output (pegasus-facts.md 2.3); the regexes
are the ones pegasus-monitord and pegasus-remove use.
"""

import re
import time

STATUS_NAMES = {0: "DAG_STATUS_OK", 1: "DAG_STATUS_ERROR", 2: "DAG_STATUS_NODE_FAILED",
                3: "DAG_STATUS_ABORT", 4: "DAG_STATUS_RM", 5: "DAG_STATUS_CYCLE",
                6: "DAG_STATUS_HALTED"}
COLUMNS = ("Done", "Pre", "Queued", "Post", "Ready", "Un-Ready", "Failed", "Futile")

STARTING_UP = re.compile(r"\*\* condor_scheduniv_exec\.([0-9\.]+) \(CONDOR_DAGMAN\) STARTING UP")
EXITING = re.compile(r"\(condor_DAGMAN\)[\w\s]+EXITING WITH STATUS (\d+)$")
PID = re.compile(r"\*\* PID = (\d+)$")
DAG_STATUS = re.compile(r"DAG status: (\d+) \((\w+)\)")
NODES_TOTAL = re.compile(r"Of (\d+) nodes total:")
HELD = re.compile(r"(\d+) job proc\(s\) currently held")


def stamp(t=None):
    return time.strftime("%m/%d/%y %H:%M:%S", time.localtime(t))


def lines(*texts, t=None):
    """Timestamp each text line the way condor_dagman's debug log does."""
    s = stamp(t)
    return "".join("%s %s\n" % (s, text) for text in texts)


def progress(status, counts, held=0, t=None):
    """The `DAG status` / `Of N nodes total:` block DAGMan writes after each event."""
    total = sum(counts.get(c, 0) for c in COLUMNS)
    return lines(
        "DAG status: %d (%s)" % (status, STATUS_NAMES[status]),
        "Of %d nodes total:" % total,
        " Done     Pre   Queued    Post   Ready   Un-Ready   Failed   Futile",
        "  ===     ===      ===     ===     ===        ===      ===      ===",
        "%5d%8d%9d%8d%8d%11d%9d%9d" % tuple(counts.get(c, 0) for c in COLUMNS),
        "%d job proc(s) currently held" % held,
        t=t)


def blocks(text):
    """Split a dagman.out into one text per DAGMan run (re-submits append runs)."""
    found, current = [], None
    for line in text.splitlines():
        if STARTING_UP.search(line):
            current = []
            found.append(current)
        if current is not None:
            current.append(line)
    return ["\n".join(b) for b in found]


def summarize(block):
    """What one run's text says: DAGMan id, pid, exit, last status, counts, held."""
    info = {"id": None, "pid": None, "exit": None, "dag_status": None,
            "total": None, "counts": None, "held": 0, "removed": False}
    expect_counts = False
    for line in block.splitlines():
        text = line[18:] if len(line) > 18 else line
        if expect_counts and text.strip() and text.strip()[0].isdigit():
            info["counts"] = dict(zip(COLUMNS, (int(x) for x in text.split())))
            expect_counts = False
        m = STARTING_UP.search(line)
        if m:
            info["id"] = m.group(1)
        for regex, key in ((PID, "pid"), (EXITING, "exit"), (DAG_STATUS, "dag_status"),
                           (NODES_TOTAL, "total"), (HELD, "held")):
            m = regex.search(line)
            if m:
                info[key] = int(m.group(1))
        if "===" in text:
            expect_counts = True
        if "Received SIGUSR1" in line:
            info["removed"] = True
    return info


def last_run(text):
    """summarize() of the last run in a dagman.out text, or None if it has none."""
    b = blocks(text)
    return summarize(b[-1]) if b else None
