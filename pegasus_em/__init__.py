"""pegasus_em: the Pegasus ensemble manager and Pegasus Service, standard library only."""

__version__ = "0.1.0"

# Bumped whenever the REST API changes shape; the client checks it on connect.
API_VERSION = 1
