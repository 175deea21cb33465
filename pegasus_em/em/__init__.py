"""pegasus-em: the per-user daemon with its REST API, and its clients: the command line,
and the proxy through which the dashboard and pegasus-service reach a user's daemon."""
