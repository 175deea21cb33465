"""Run-after times: the values the API and the command line take."""

import time

import pytest

from pegasus_em.core import model
from pegasus_em.em import cli
from pegasus_em.errors import BadRequest


@pytest.mark.parametrize("value, expected", [
    ("2h", 1000 + 7200), ("30m", 1000 + 1800), ("1h30m", 1000 + 5400), ("+90s", 1090),
    ("1d", 1000 + 86400), ("2030-01-31T18:00:00+00:00", 1896112800),
    ("2030-01-31T18:00Z", 1896112800), ("1700000000", 1700000000),
])
def test_run_after_values(value, expected):
    assert model.run_after(value, 1000) == expected


@pytest.mark.parametrize("value", ["tomorrow", "2h30", "", "nan", "1e20"])
def test_bad_run_after_is_400(value):
    with pytest.raises(BadRequest):
        model.run_after(value, 1000)


def test_cli_sends_iso_times_as_epoch_and_durations_as_typed(monkeypatch):
    monkeypatch.setenv("TZ", "UTC")
    time.tzset()
    try:
        assert cli.run_after("2030-01-31T18:00") == "1896112800.000"
        assert cli.run_after("2030-01-31T19:00+01:00") == "1896112800.000"
        assert cli.run_after("2h") == "2h"
        with pytest.raises(cli.UsageError):
            cli.run_after("soon")
    finally:
        monkeypatch.delenv("TZ")
        time.tzset()
