"""The submit directory found in the real output of the simulated pegasus-plan (a
process), as the wrapper logs it.  On recorded outputs: tests/unit/test_planout.py.
"""

import json
import os
import subprocess

import pytest

from conftest import REPO, SIM_BIN
from pegasus_em.core import planout


@pytest.mark.parametrize("extra", [[], ["--json"], ["--submit"]])
def test_real_simulated_planner_output(tmp_path, extra):
    """Merged stdout+stderr of the simulated pegasus-plan, as the wrapper logs it."""
    env = dict(os.environ, PATH=SIM_BIN + os.pathsep + os.environ["PATH"],
               PEGASUS_SIM_SCHEDD=str(tmp_path / "schedd"),
               PEGASUS_SIM_MASTER_DB=str(tmp_path / "workflow.db"),
               PEGASUS_SIM_RUN_SECONDS="0")
    plan = os.path.join(REPO, "share", "pegasus-sim", "example", "plan.sh")
    out = subprocess.run([plan] + extra, cwd=str(tmp_path), env=env, stdout=subprocess.PIPE,
                         stderr=subprocess.STDOUT, universal_newlines=True, timeout=60).stdout
    d, bd = planout.find_submit_dir(out)
    assert d.startswith(str(tmp_path / "submit")) and d.endswith("run0001")
    assert bd["submit_dir"] == d and bd["dag"] == "workflow-0.dag"
    if extra == ["--json"]:
        assert json.loads(out[out.index("{"):out.rindex("}") + 1])["submit_dir"] == d
