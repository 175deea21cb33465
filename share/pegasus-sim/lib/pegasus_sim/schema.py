"""Pegasus's whole database schema and version row, for the master and STAMPEDE DBs alike.

Pegasus's tools (analyzer, statistics, db-admin check, submitdir) refuse a DB that
lacks any of its tables or its `dbversion` row; `schema.sql` holds the DDL that
`pegasus-db-admin create` (5.1.3) emits.  A file made by an older simulator gets
its missing tables added, never rebuilt: its rows stay.
"""

import os
import time

VERSION = 14
_SQL = os.path.join(os.path.dirname(os.path.abspath(__file__)), "schema.sql")


def statements():
    """The CREATE statements, in db-admin's order (`IF NOT EXISTS`, which SQLite drops when it stores them)."""
    with open(_SQL, encoding="utf-8") as f:
        text = "".join(line for line in f if not line.startswith("--"))
    return [s.strip().replace("CREATE TABLE ", "CREATE TABLE IF NOT EXISTS ", 1)
            .replace("CREATE INDEX ", "CREATE INDEX IF NOT EXISTS ", 1)
            for s in text.split(";\n") if s.strip()]


def tables():
    return [s.split()[5].strip('"') for s in statements() if s.startswith("CREATE TABLE")]


def complete(conn):
    """Every table there and a version row: nothing to do."""
    have = {r[0] for r in conn.execute("SELECT name FROM sqlite_master WHERE type = 'table'")}
    return set(tables()) <= have and conn.execute("SELECT 1 FROM dbversion LIMIT 1").fetchone() is not None


def create(conn):
    """Add what is missing, inside the caller's transaction."""
    for statement in statements():
        conn.execute(statement)
    if not conn.execute("SELECT 1 FROM dbversion LIMIT 1").fetchone():
        conn.execute("INSERT INTO dbversion (version_number, version, version_timestamp) VALUES (?, ?, ?)",
                     (VERSION, str(VERSION), int(time.time())))
