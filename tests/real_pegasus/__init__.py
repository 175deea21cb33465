"""Tests against Pegasus 5.1.3's own tools (a package, so its conftest does not shadow tests/conftest.py)."""
