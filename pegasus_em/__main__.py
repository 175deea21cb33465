"""`python -m pegasus_em` runs the pegasus-em command line."""

import sys

from .em import cli

sys.exit(cli.main())
