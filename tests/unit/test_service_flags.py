"""pegasus-service's command line takes Pegasus 5.x's flags (`-p/--port`, `-v`,
`-d`/`-nd`); the service started with them: tests/integration/test_service_5x.py.
"""

import pytest

from pegasus_em.service import pservice


@pytest.mark.parametrize("argv,port,debug,verbose", [
    (["-p", "5001"], 5001, False, 0), (["--port", "5002", "-v"], 5002, False, 1),
    (["-d"], None, True, 0), (["-d", "-nd"], None, False, 0), (["--no-debug", "-vv"], None, False, 2),
])
def test_pegasus_flags_parse(argv, port, debug, verbose):
    args = pservice.build_parser().parse_args(argv)
    assert (args.port, args.debug, args.verbose) == (port, debug, verbose)
