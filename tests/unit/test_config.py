"""service.py loading: defaults, validation, warnings, the port formula."""

import os

import pytest

from pegasus_em import config
from pegasus_em.errors import ConfigError


def write(tmp_path, text, mode=0o600):
    path = tmp_path / "service.py"
    path.write_text(text)
    path.chmod(mode)
    return str(path)


def test_missing_file_gives_defaults(tmp_path):
    cfg = config.load(str(tmp_path / "absent.py"))
    assert cfg == config.DEFAULTS and cfg.warnings == [] and cfg.path is None
    assert cfg["SERVER_PORT"] == 5000 and cfg["AUTHENTICATION"] == "PAMAuthentication"
    assert cfg["PROCESS_SWITCHING"] is True and cfg["EM_INTERVAL"] == 5


def test_every_pegasus_service_property_is_known():
    for name in ("SERVER_HOST", "SERVER_PORT", "CERTIFICATE", "PRIVATE_KEY", "AUTHENTICATION",
                 "ADMIN_USERS", "PROCESS_SWITCHING", "MAX_PROCESSES",
                 "PEGASUS_SERVICE_URL_PREFIX", "USERNAME", "PASSWORD", "EM_INTERVAL",
                 "PEGASUS_HOME", "CONDOR_HOME"):
        assert name in config.DEFAULTS


def test_values_override_defaults_and_python_works(tmp_path):
    cfg = config.load(write(tmp_path, "USERNAME = 'u'\nPASSWORD = 'p' * 3\n"
                                      "ADMIN_USERS = {'a', 'b'}\nlowercase = 1\n"))
    assert cfg["USERNAME"] == "u" and cfg["PASSWORD"] == "ppp"
    assert cfg["ADMIN_USERS"] == {"a", "b"} and "lowercase" not in cfg
    assert cfg.warnings == []


def test_unknown_names_are_warned_about_by_name(tmp_path):
    cfg = config.load(write(tmp_path, "SERVR_PORT = 1\n"))
    assert len(cfg.warnings) == 1 and "SERVR_PORT" in cfg.warnings[0]


def test_syntax_error_names_file_and_line(tmp_path):
    path = write(tmp_path, "USERNAME = 'u'\n\nPASSWORD = = 2\n")
    with pytest.raises(ConfigError) as e:
        config.load(path)
    assert "%s, line 3" % path in e.value.message


def test_runtime_error_names_file(tmp_path):
    with pytest.raises(ConfigError, match="NameError"):
        config.load(write(tmp_path, "USERNAME = undefined_name\n"))


@pytest.mark.parametrize("text", ["SERVER_PORT = '5000'\n", "EM_INTERVAL = 'often'\n",
                                  "PROCESS_SWITCHING = 'yes'\n", "SERVER_PORT = True\n"])
def test_wrong_types_are_errors(tmp_path, text):
    with pytest.raises(ConfigError, match=text.split()[0]):
        config.load(write(tmp_path, text))


def test_password_readable_by_others_is_warned_about(tmp_path):
    cfg = config.load(write(tmp_path, "PASSWORD = 'x'\n", mode=0o644))
    assert any("other users can read it" in w for w in cfg.warnings)
    cfg = config.load(write(tmp_path, "PASSWORD = 'x'\n", mode=0o600))
    assert cfg.warnings == []


def test_pegasus_env_names_another_file(tmp_path):
    path = write(tmp_path, "USERNAME = 'other'\n")
    assert config.config_path({"PEGASUS_ENV": path}) == path
    assert config.load(env={"PEGASUS_ENV": path})["USERNAME"] == "other"


def test_a_missing_pegasus_env_file_is_an_error_naming_it(tmp_path):
    missing = str(tmp_path / "gone.py")
    with pytest.raises(ConfigError, match="PEGASUS_ENV names %s, which does not exist" % missing):
        config.load(env={"PEGASUS_ENV": missing})


def test_url_prefix_from_the_environment_wins_as_in_5x(tmp_path):
    path = write(tmp_path, "PEGASUS_SERVICE_URL_PREFIX = '/file'\nSMTP_HOST = 'mail'\n")
    env = {"PEGASUS_ENV": path, "PEGASUS_SERVICE_URL_PREFIX": "/env", "SMTP_HOST": "other"}
    cfg = config.load(env=env)
    assert (cfg["PEGASUS_SERVICE_URL_PREFIX"], cfg["SMTP_HOST"]) == ("/env", "mail")
    assert config.load(env=dict(env, PEGASUS_SERVICE_URL_PREFIX=""))[
        "PEGASUS_SERVICE_URL_PREFIX"] == ""
    assert config.load(path, env=env)["PEGASUS_SERVICE_URL_PREFIX"] == "/file"  # that file alone


def test_home_comes_from_the_password_database_not_home(monkeypatch):
    monkeypatch.setenv("HOME", "/nonexistent")
    import pwd
    assert config.pegasus_dir() == os.path.join(pwd.getpwuid(os.getuid()).pw_dir, ".pegasus")
    assert config.config_path({}) == os.path.join(config.pegasus_dir(), "service.py")


@pytest.mark.parametrize("uid,port", [(0, 7919), (1000, 8919), (57616, 7919), (57617, 7920)])
def test_em_port_formula(uid, port):
    assert config.em_port(uid) == port


def test_sample_config_is_valid_python_listing_every_setting(tmp_path):
    text = config.sample()
    for s in config.SETTINGS:
        assert "# %s = " % s.name in text
    assert config.load(write(tmp_path, text)) == config.DEFAULTS
