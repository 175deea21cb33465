"""planout: the submit dir named by planner output, and braindump.yml."""

import os

import pytest

from pegasus_em.core import planout
from pegasus_em.errors import EMError

PREAMBLE = ("2023.03.03 22:23:33.120 PST:   \n\n\n"
            "I have concretized your abstract workflow. The workflow has been entered \n"
            "into the workflow database with a state of \"planned\". The next step is \n"
            "to start or execute your workflow. The invocation required is\n\n\n")
TAIL = "\n\n2023.03.03 22:23:33.121 PST:   Time taken to execute is 4.295 seconds\n"
SUB = "/home/mzalam/run0001/00/00/./blackdiamond_diamond_subworkflow.000"

JSON_OUT = """2023.03.03 22:23:33.100 PST: [WARNING]  something on stderr
{
  "user" : "mzalam",
  "submit_dir" : "/home/u/submit/u/pegasus/process/run0007",
  "message" : "I have concretized your abstract workflow.",
  "pegasus-run" : "pegasus-run --json  /home/u/submit/u/pegasus/process/run0007"
}
2023.03.03 22:23:33.121 PST:   Time taken to execute is 4.295 seconds
"""

CASES = [
    ("two spaces", PREAMBLE + "pegasus-run  /home/u/submit/run0001" + TAIL,
     "/home/u/submit/run0001"),
    ("json object", JSON_OUT, "/home/u/submit/u/pegasus/process/run0007"),
    ("forwarded options", PREAMBLE + "pegasus-run --conf x  --grid  /home/u/run0002" + TAIL,
     "/home/u/run0002"),
    ("json flag in the run line", "pegasus-run --json  /home/u/run0003\n", "/home/u/run0003"),
    ("sub-workflow /./", PREAMBLE + "pegasus-run  " + SUB + TAIL,
     "/home/mzalam/run0001/00/00/blackdiamond_diamond_subworkflow.000"),
    ("python API one space", "some log\npegasus-run /home/u/py/run0001\n", "/home/u/py/run0001"),
    ("--submit status line",
     "2023.03.03 22:23:40.000 PST:   pegasus-status -l /home/u/s/run0004\n"
     "2023.03.03 22:23:40.000 PST:   pegasus-remove /home/u/s/run0004\n", "/home/u/s/run0004"),
    ("trailing log lines after the run line",
     PREAMBLE + "pegasus-run  /home/u/run0005" + TAIL + "[INFO] cleanup done\nmore output\n",
     "/home/u/run0005"),
    ("last run line wins", "pegasus-run  /a/run0001\npegasus-run  /a/run0002\n", "/a/run0002"),
    ("quoted dir", "pegasus-run  '/home/u/q dir/../run0006'\n", "/home/u/run0006"),
    ("CRLF line ends", "pegasus-run  /home/u/run0008\r\n", "/home/u/run0008"),
    ("trailing slash", "pegasus-run  /home/u/run0009/\n", "/home/u/run0009"),
    ("no line at all", "2023.03.03 [FATAL ERROR] planning failed\n", None),
    ("indented mention is not a run line", "  see pegasus-run  /x/run1 docs\n", None),
    ("bare pegasus-run", "pegasus-run\n", None),
    ("empty", "", None),
]


@pytest.mark.parametrize("text, want", [c[1:] for c in CASES], ids=[c[0] for c in CASES])
def test_submit_dir_from_output(text, want):
    assert planout.submit_dir_from_output(text) == want


def test_json_wins_over_a_run_line():
    text = "pegasus-run  /other/run0001\n" + JSON_OUT
    assert planout.submit_dir_from_output(text) == "/home/u/submit/u/pegasus/process/run0007"


def test_broken_json_falls_back_to_the_run_line():
    text = "{\n  \"submit_dir\": \"/x\",\n" + "pegasus-run  /home/u/run0010\n"
    assert planout.submit_dir_from_output(text) == "/home/u/run0010"


# Real example of facts §2.1 (T/process_wf_success/braindump.yml), verbatim.
BRAINDUMP = r'''user: "mzalam"
grid_dn: null
submit_hostname: "workflow.isi.edu"
root_wf_uuid: "f00c0056-abd4-4e8e-b793-24eb760dda1f"
wf_uuid: "f00c0056-abd4-4e8e-b793-24eb760dda1f"
dax: "/home/mzalam/processwf/workflow.yml"
dax_label: "process"
dax_index: "0"
dax_version: "5.0.4"
pegasus_wf_name: "process-0"
timestamp: "20230303T222333-0800"
basedir: "/home/mzalam/processwf/submit"
submit_dir: "/home/mzalam/processwf/submit/mzalam/pegasus/process/run0001"
planner: "/home/mzalam/pegasus-5.0.5/bin/pegasus-plan"
planner_version: "5.0.5"
pegasus_build: "20230217201750Z"
planner_arguments: "\"--conf pegasus.properties --dir submit --sites condorpool ... workflow.yml \""
jsd: "jobstate.log"
rundir: "run0001"
bindir: "/home/mzalam/pegasus-5.0.5/bin"
vogroup: "pegasus"
uses_pmc: "false"
properties: "pegasus.5327005374169176428.properties"
condor_log: "process-0.log"
dag: "process-0.dag"
type: "dag"
notify: "process-0.notify"
'''


def write(directory, text):
    os.makedirs(str(directory), exist_ok=True)
    with open(os.path.join(str(directory), "braindump.yml"), "w") as f:
        f.write(text)
    return str(directory)


def test_read_braindump_real_example(tmp_path):
    bd = planout.read_braindump(write(tmp_path, BRAINDUMP))
    assert len(bd) == 27
    assert bd["grid_dn"] is None
    assert bd["wf_uuid"] == "f00c0056-abd4-4e8e-b793-24eb760dda1f"
    assert bd["dag"] == "process-0.dag" and bd["type"] == "dag"
    assert bd["dax_index"] == "0" and bd["uses_pmc"] == "false"  # quoted: stay strings
    assert bd["planner_arguments"] == ('"--conf pegasus.properties --dir submit --sites '
                                       'condorpool ... workflow.yml "')
    assert bd["submit_dir"].endswith("/process/run0001")


def test_parse_braindump_odd_lines():
    bd = planout.parse_braindump("---\n# comment\n\nkey: unquoted value\nempty:\n"
                                 "num: 5\nurl: \"a: b\"\nyaml: 'single'\n")
    assert bd == {"key": "unquoted value", "empty": None, "num": 5, "url": "a: b",
                  "yaml": "'single'"}


@pytest.mark.parametrize("text, message", [
    (None, "is not a submit directory: no braindump.yml"),
    ('user: "u"\ndag: "x.dag"\n', "braindump.yml in .* has no wf_uuid"),
    ('wf_uuid: "u-1"\ntype: "dag"\n', "has no dag"),
])
def test_read_braindump_errors(tmp_path, text, message):
    directory = write(tmp_path, text) if text is not None else str(tmp_path)
    with pytest.raises(planout.PlanOutputError, match=message) as info:
        planout.read_braindump(directory)
    assert isinstance(info.value, EMError) and str(tmp_path) in info.value.message


def test_shell_braindump_needs_no_dag(tmp_path):
    bd = planout.read_braindump(write(tmp_path, 'wf_uuid: "u-2"\ntype: "shell"\n'
                                                'script: "run.sh"\n'))
    assert bd["type"] == "shell"


def test_unreadable_braindump(tmp_path):
    os.makedirs(str(tmp_path / "braindump.yml"))  # a directory: EISDIR
    with pytest.raises(planout.PlanOutputError, match="cannot read"):
        planout.read_braindump(str(tmp_path))


def test_find_submit_dir_errors(tmp_path):
    with pytest.raises(planout.PlanOutputError, match=r"no `pegasus-run <dir>` line"):
        planout.find_submit_dir("[FATAL ERROR] boom\n")
    with pytest.raises(planout.PlanOutputError, match="does not exist"):
        planout.find_submit_dir("pegasus-run  %s/nowhere\n" % tmp_path)
    os.makedirs(str(tmp_path / "run0001"))  # a failed plan leaves an empty run dir
    with pytest.raises(planout.PlanOutputError, match="no braindump.yml"):
        planout.find_submit_dir("pegasus-run  %s/run0001\n" % tmp_path)


def test_find_submit_dir_relative_to_basedir(tmp_path):
    write(tmp_path / "submit" / "run0001", BRAINDUMP)
    d, bd = planout.find_submit_dir("pegasus-run  submit/./run0001\n", basedir=str(tmp_path))
    assert d == str(tmp_path / "submit" / "run0001") and bd["dag"] == "process-0.dag"
