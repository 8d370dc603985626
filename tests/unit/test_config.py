"""Settings read from the environment: BRIDGE_DB_LOCK_TIMEOUT."""

from __future__ import annotations

import pytest

from bridge.config import DEFAULT_LOCK_TIMEOUT, Settings
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

