"""pegasus_sim: a stand-in for the Pegasus planner/run tools and HTCondor.

It writes the files and master-DB rows the real tools write (formats in
pegasus-facts.md sections 1-3), so code that parses them can be exercised on a
machine without Pegasus or HTCondor.
"""

PEGASUS_VERSION = "5.0.5"
PEGASUS_BUILD = "20230217201750Z"
CONDOR_VERSION = "$CondorVersion: 10.2.5 2023-02-27 BuildID: 631644 PackageID: 10.2.5-1 $"
