"""`pegasus-em import`: what it refuses (the takeover itself is in
tests/integration/test_beyond_engine.py)."""

from beyond_fixtures import run_cli, stack  # noqa: F401


def test_import_errors(stack, run_cli, tmp_path):
    code, _, err = run_cli("import", "--db", str(tmp_path / "none.db"))
    assert code == 1 and "No Pegasus database at" in err
    other = tmp_path / "other.db"
    import sqlite3
    sqlite3.connect(str(other)).execute("CREATE TABLE t (x)").connection.close()
    code, _, err = run_cli("import", "--db", str(other))
    assert code == 1 and "not a Pegasus 5.x workflow.db" in err
    status, _, body = stack.request("POST", "/import", json_body={"ensembles": "x"})
    assert status == 400 and "must be a JSON list" in body["message"]
