"""man/pegasus-em.1 is a tested artifact: it names everything the parser accepts,
every setting, and renders without warnings."""

import argparse
import os
import re
import shutil
import subprocess

import pytest

from conftest import REPO
from pegasus_em import config
from pegasus_em.em import cli

MANPAGE = os.path.join(REPO, "man", "pegasus-em.1")
SECTIONS = ("NAME", "SYNOPSIS", "DESCRIPTION", "OPTIONS", "COMMANDS", "CONFIGURATION",
            "FILES", "ENVIRONMENT", "EXIT STATUS", "EXAMPLES", "SEE ALSO")


def _source():
    with open(MANPAGE, encoding="utf-8") as f:
        return f.read()


def _plain():
    """The roff source with escapes undone, so `\\-\\-max\\-planning` reads --max-planning."""
    text = re.sub(r"\\f[BIRP]", "", _source())
    text = text.replace("\\-", "-").replace("\\(aq", "'").replace("\\(rs", "\\")
    return text


def _subparsers(parser):
    action = next(a for a in parser._actions if isinstance(a, argparse._SubParsersAction))
    return action.choices


def _words():
    """Every verb, alias and option string build_parser() defines."""
    parser = cli.build_parser()
    words = set()
    for action in parser._actions:
        words.update(action.option_strings)
    for name, sub in _subparsers(parser).items():
        words.add(name)
        for action in sub._actions:
            words.update(action.option_strings)
    return sorted(words)


@pytest.mark.parametrize("word", _words())
def test_every_verb_alias_and_option_is_documented(word):
    pattern = r"(?<![\w-])%s(?![\w-])" % re.escape(word)
    assert re.search(pattern, _plain()), "%s is not in %s" % (word, MANPAGE)


@pytest.mark.parametrize("name", [s.name for s in config.SETTINGS])
def test_every_setting_is_documented(name):
    assert re.search(r"^\.B %s$" % name, _source(), re.M), name


@pytest.mark.parametrize("name", ["PEGASUS_ENV", "PEGASUS_EM_URL", "PEGASUS_EM_CAFILE"])
def test_environment_is_documented(name):
    assert re.search(r"^\.B %s$" % name, _source(), re.M), name


@pytest.mark.parametrize("section", SECTIONS)
def test_sections(section):
    assert re.search(r'^\.SH "?%s"?$' % section, _source(), re.M), section


def test_renders_with_man_without_warnings():
    if shutil.which("man") is None:
        pytest.skip("man is not installed")
    env = dict(os.environ, MANPAGER="cat", PAGER="cat", MANWIDTH="80", LANG="C.UTF-8")
    env.pop("MANOPT", None)
    result = subprocess.run(["man", "--warnings", "-l", MANPAGE], env=env,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                            timeout=60)
    assert result.returncode == 0, result.stderr
    assert result.stderr == ""
    assert "file-pattern-trigger" in result.stdout
    assert "EXIT STATUS" in result.stdout


def test_pegasus_service_manpage_names_every_option():
    from pegasus_em.service import pservice
    with open(os.path.join(REPO, "man", "pegasus-service.1"), encoding="utf-8") as f:
        text = f.read().replace("\\-", "-")
    for action in pservice.build_parser()._actions:
        for option in action.option_strings:
            assert option in text, option


@pytest.mark.parametrize("name", [s.name for s in config.SETTINGS if s.env])
def test_settings_read_from_the_environment_are_listed_there(name):
    with open(os.path.join(REPO, "man", "pegasus-service.1"), encoding="utf-8") as f:
        environment = f.read().split(".SH ENVIRONMENT", 1)[1].split(".SH ", 1)[0]
    assert re.search(r"^\.B %s$" % name, environment, re.M), name
