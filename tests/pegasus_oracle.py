"""Pegasus 5.x's own monitoring API as an oracle, for test_monitoring_oracle.py.

Runs under a Python that has pegasus-wms 5.1.3 and its dependencies (pegasus-facts §8),
never under the test suite's: `python pegasus_oracle.py HOME` reads request paths
(below /api/v1/user/<user>, with their query strings) one per line on stdin and
prints one JSON line per path: {"path", "status", "body"}.  Pegasus's blueprint is
served by Flask's test client over HOME/.pegasus/workflow.db, without its cache and
without authentication (the blueprint does not authenticate; the service does).
"""

import json
import os
import sys

import flask

from Pegasus.service import cache
from Pegasus.service._encoder import PegasusJsonEncoder


def make_app(home):
    app = flask.Flask("oracle")
    app.config.from_object("Pegasus.service.defaults")
    app.config["CACHE_TYPE"] = "flask_caching.backends.NullCache"
    cache.init_app(app)
    app.json_encoder = PegasusJsonEncoder

    @app.before_request
    def context():
        flask.g.master_db_url = "sqlite:///" + os.path.join(home, ".pegasus", "workflow.db")
        flask.request.is_xhr = False  # what the service's lifecycle hook sets

    from Pegasus.service.monitoring import monitoring
    app.register_blueprint(monitoring, url_prefix="/api/v1/user/<string:username>")
    return app


def main():
    client = make_app(sys.argv[1]).test_client()
    for line in sys.stdin:
        path = line.strip()
        if path:
            reply = client.get("/api/v1/user/oracle" + path)
            text = reply.get_data(as_text=True)
            body = json.loads(text) if text.strip() else None
            print(json.dumps({"path": path, "status": reply.status_code, "body": body}))


if __name__ == "__main__":
    main()
