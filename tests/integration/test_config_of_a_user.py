"""service.py of a real local user (its home from the password database), with the
file PEGASUS_ENV names over it.
"""

from pegasus_em import config


def test_pegasus_env_overlays_service_py(user, tmp_path):
    """5.x loads ~/.pegasus/service.py, then the file PEGASUS_ENV names over it."""
    user.write(".pegasus/service.py", "USERNAME = 'own'\nPASSWORD = 'p1'\nEM_INTERVAL = 7\n")
    other = tmp_path / "other.py"
    other.write_text("PASSWORD = 'p2'\nSMTP_PORT = 2525\n")
    other.chmod(0o600)
    cfg = config.load(env={"PEGASUS_ENV": str(other)}, uid=user.uid)
    assert (cfg["USERNAME"], cfg["PASSWORD"], cfg["EM_INTERVAL"], cfg["SMTP_PORT"]) == \
        ("own", "p2", 7, 2525)
    assert cfg.path == str(other) == config.config_path({"PEGASUS_ENV": str(other)}, user.uid)
    assert config.load(env={}, uid=user.uid)["PASSWORD"] == "p1"
