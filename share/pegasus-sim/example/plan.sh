#!/bin/sh
# Example plan script for the ensemble manager:
#     pegasus-em submit myruns.run1 ./plan.sh
# Plans workflow.yml (next to this script) into ./submit under the current
# directory (the ensemble workflow's base dir).  Do not redirect the output:
# the ensemble manager reads the submit dir from it.  Extra arguments are passed
# to pegasus-plan, e.g. ./plan.sh -Dpegasus.sim.run.fail=true
here=$(cd "$(dirname "$0")" && pwd)
# Use the simulator next to this script when no pegasus-plan is on PATH.
command -v pegasus-plan >/dev/null 2>&1 || PATH="$here/../bin:$PATH"
exec pegasus-plan --dir submit --sites condorpool --output-sites local "$@" "$here/workflow.yml"
