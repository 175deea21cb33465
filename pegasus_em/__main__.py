"""`python -m pegasus_em` runs the pegasus-em command line."""

import sys

from . import cli

sys.exit(cli.main())
