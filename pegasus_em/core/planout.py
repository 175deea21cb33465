"""What planning produced: the submit directory named in the planner's output,
and the braindump.yml it holds (pegasus-facts.md §1, §2.1).

Pass only the output of the plan attempt at hand (the workflow log is appended
across re-plans): every rule below takes the *last* match in the text.
"""

import json
import os
import re
import shlex

from ..errors import EMError

RUN_LINE = re.compile(r"^pegasus-run\s")
STATUS_LINE = re.compile(r"pegasus-(?:remove|status -l)\s+(\S+)\s*$")
BRAINDUMP = "braindump.yml"


class PlanOutputError(EMError):
    """Planning produced no usable submit directory; `message` says why, for the user."""


def submit_dir_from_output(text):
    """The submit dir the planner output names (normalised), or None.

    In order: `submit_dir` of a `--json` object; the last token of the last
    `pegasus-run ...` line (the dir is always last, after `--json` or forwarded
    options); the dir of a `pegasus-status -l` / `pegasus-remove` line (`--submit`).
    """
    for rule in (_from_json, _from_run_line, _from_status_line):
        found = rule(text)
        if found:
            return os.path.normpath(_unquote(found))
    return None


def _from_json(text):
    """`submit_dir` of the last JSON object that starts a line (it may span many lines)."""
    decoder, found = json.JSONDecoder(), None
    for match in re.finditer(r"^\{", text, re.MULTILINE):
        try:
            value, _ = decoder.raw_decode(text, match.start())
        except ValueError:
            continue
        if isinstance(value, dict) and isinstance(value.get("submit_dir"), str):
            found = value["submit_dir"]
    return found


def _from_run_line(text):
    found = None
    for line in text.splitlines():
        if RUN_LINE.match(line) and len(line.split()) > 1:
            found = _last_token(line)
    return found


def _last_token(line):
    """Last word; a quoted last word (written by a wrapper script) may hold spaces."""
    line = line.rstrip()
    if line[-1] in "'\"":
        try:
            return shlex.split(line)[-1]
        except ValueError:
            pass
    return line.split()[-1]


def _from_status_line(text):
    found = None
    for line in text.splitlines():
        match = STATUS_LINE.search(line)
        if match:
            found = match.group(1)
    return found


def _unquote(token):
    if len(token) >= 2 and token[0] == token[-1] and token[0] in "'\"":
        return token[1:-1]
    return token


def read_braindump(submit_dir):
    """Parse `<submit_dir>/braindump.yml` -> dict.  Raises PlanOutputError."""
    path = os.path.join(submit_dir, BRAINDUMP)
    try:
        with open(path, encoding="utf-8", errors="replace") as f:
            text = f.read()
    except FileNotFoundError:
        raise PlanOutputError("%s is not a submit directory: no %s" % (submit_dir, BRAINDUMP))
    except OSError as e:
        raise PlanOutputError("cannot read %s: %s" % (path, e.strerror))
    braindump = parse_braindump(text)
    _check(braindump, submit_dir)
    return braindump


def parse_braindump(text):
    """One `key: value` per line, values JSON-compatible (Jackson YAML, quoted strings)."""
    braindump = {}
    for line in text.splitlines():
        if not line.strip() or line.startswith(("#", "---")):
            continue
        if ": " in line:
            key, value = line.split(": ", 1)
            braindump[key.strip()] = _value(value.strip())
        elif line.rstrip().endswith(":"):
            braindump[line.rstrip()[:-1].strip()] = None
    return braindump


def _value(text):
    try:
        return json.loads(text)  # "null" -> None
    except ValueError:
        return text


def _check(braindump, submit_dir):
    if not braindump.get("wf_uuid"):
        raise PlanOutputError("%s in %s has no wf_uuid" % (BRAINDUMP, submit_dir))
    if braindump.get("type", "dag") == "dag" and not braindump.get("dag"):
        raise PlanOutputError("%s in %s has no dag" % (BRAINDUMP, submit_dir))


def find_submit_dir(log_text, basedir=None):
    """(submit_dir, braindump) from the planner's output.  Raises PlanOutputError.

    A relative dir is taken relative to `basedir` (the plan command's cwd).
    """
    submit_dir = submit_dir_from_output(log_text)
    if submit_dir is None:
        raise PlanOutputError("planner output names no submit directory "
                              "(no `pegasus-run <dir>` line)")
    if basedir and not os.path.isabs(submit_dir):
        submit_dir = os.path.normpath(os.path.join(basedir, submit_dir))
    if not os.path.isdir(submit_dir):
        raise PlanOutputError("submit directory %s named by the planner output does not exist"
                              % submit_dir)
    return submit_dir, read_braindump(submit_dir)
