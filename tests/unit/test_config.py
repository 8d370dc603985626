"""Settings read from the environment: BRIDGE_DB_LOCK_TIMEOUT (positive seconds) and BRIDGE_MAX_ALERTS_PER_REQUEST
(a count of at least 1)."""

from __future__ import annotations

import pytest

from bridge.config import DEFAULT_LOCK_TIMEOUT, DEFAULT_MAX_ALERTS, Settings
from bridge.errors import ConfigError


@pytest.mark.parametrize(("raw", "seconds"), [
    pytest.param(None, DEFAULT_LOCK_TIMEOUT, id="unset"),
    pytest.param("", DEFAULT_LOCK_TIMEOUT, id="empty"),
    pytest.param("1", 1.0, id="whole"),
    pytest.param(" 0.25 ", 0.25, id="fraction"),
])
def test_the_lock_timeout_is_read_in_seconds(raw: str | None, seconds: float) -> None:
    environ = {} if raw is None else {"BRIDGE_DB_LOCK_TIMEOUT": raw}
    assert Settings.from_env(environ).db_lock_timeout_seconds == seconds


@pytest.mark.parametrize("raw", ["0", "-1", "nan", "inf", "five"])
def test_a_lock_timeout_that_is_not_positive_seconds_is_one_line_naming_it(raw: str) -> None:
    with pytest.raises(ConfigError) as raised:
        Settings.from_env({"BRIDGE_DB_LOCK_TIMEOUT": raw})
    assert str(raised.value).startswith(f"BRIDGE_DB_LOCK_TIMEOUT={raw!r} is not ")

@pytest.mark.parametrize(("raw", "expected"), [
    ("", DEFAULT_MAX_ALERTS), (" ", DEFAULT_MAX_ALERTS), ("1", 1), ("250", 250), (" 20000 ", 20_000),
], ids=["unset", "blank", "one", "small", "spaces"])
def test_max_alerts_per_request(raw: str, expected: int) -> None:
    assert Settings.from_env({"BRIDGE_MAX_ALERTS_PER_REQUEST": raw}).max_alerts_per_request == expected


@pytest.mark.parametrize("raw", ["0", "-5", "1.5", "1e4", "ten", "١٢٣"],
                         ids=["zero", "negative", "fraction", "exponent", "word", "arabic-digits"])
def test_max_alerts_per_request_refuses_what_is_not_a_count(raw: str) -> None:
    with pytest.raises(ConfigError) as refused:
        Settings.from_env({"BRIDGE_MAX_ALERTS_PER_REQUEST": raw})
    assert str(refused.value) == (f"BRIDGE_MAX_ALERTS_PER_REQUEST={raw!r} is not a whole number of at least 1 "
                                  "(fix: set BRIDGE_MAX_ALERTS_PER_REQUEST to a count such as 10000, or unset it "
                                  "for 10000)")


def test_the_default_is_ten_thousand() -> None:
    assert Settings().max_alerts_per_request == Settings.from_env({}).max_alerts_per_request == 10_000
