"""braindump.yml and pegasus.<n>.properties, in the planner's exact formats.

braindump.yml is Jackson YAML: one `key: value` per line, strings double-quoted
(JSON-compatible), `null` for missing, no `---` (pegasus-facts.md 2.1).
"""

import json
import os

from . import osutil

FILE = "braindump.yml"


def dumps(data):
    return "".join("%s: %s\n" % (k, "null" if v is None else json.dumps(str(v)))
                   for k, v in data.items())


def loads(text):
    data = {}
    for line in text.splitlines():
        key, sep, value = line.partition(": ")
        if not sep:
            continue
        try:
            data[key.strip()] = json.loads(value)
        except ValueError:
            data[key.strip()] = value.strip()
    return data


def read(submit_dir):
    """The braindump of a submit dir, or None when there is none (not a submit dir)."""
    path = os.path.join(submit_dir, FILE)
    if not os.path.isfile(path):
        return None
    return loads(osutil.read_text(path)) or None


def write(submit_dir, data):
    osutil.write_atomic(os.path.join(submit_dir, FILE), dumps(data))


def read_properties(path):
    """Java-style `key=value` (or `key: value`) lines; # and ! start comments."""
    props = {}
    for line in osutil.read_text(path).splitlines():
        line = line.strip()
        if not line or line[0] in "#!":
            continue
        sep = min((i for i in (line.find("="), line.find(":")) if i > 0), default=-1)
        if sep > 0:
            props[line[:sep].strip()] = line[sep + 1:].strip()
    return props


def write_properties(path, props):
    lines = ["# Pegasus properties recorded by pegasus-plan (pegasus-sim)"]
    lines += ["%s=%s" % kv for kv in sorted(props.items())]
    osutil.write_atomic(path, "\n".join(lines) + "\n")


def properties_of(submit_dir, bd):
    """The properties the planner recorded for this submit dir ({} if none)."""
    name = (bd or {}).get("properties")
    return read_properties(os.path.join(submit_dir, name)) if name else {}
