"""`pegasus-service`: the multi-user HTTPS face (TLS, PAM, process switching).

Only the command line exists so far; serving is the next step of the project
(its issue tracks it), so the command says so instead of pretending.
"""

import argparse
import sys

from . import __version__, config
from .errors import ConfigError


def build_parser():
    p = argparse.ArgumentParser(prog="pegasus-service",
                                description="Pegasus Service: dashboard and REST API over HTTPS")
    p.add_argument("--version", action="version", version="pegasus-service " + __version__)
    p.add_argument("--host", help="address to listen on (default: SERVER_HOST, 127.0.0.1)")
    p.add_argument("--port", type=int, help="port to listen on (default: SERVER_PORT, 5000)")
    p.add_argument("-d", "--debug", action="store_true", help="log debugging output to stderr")
    return p


def main(argv=None):
    build_parser().parse_args(argv)
    try:
        config.load()
    except ConfigError as e:
        print("ERROR: %s" % e.message, file=sys.stderr)
        return e.exit_code
    print("ERROR: pegasus-service cannot serve yet in pegasus-em %s; use `pegasus-em server` "
          "for the ensemble manager API" % __version__, file=sys.stderr)
    return 1
