"""Settings read from the environment: BRIDGE_MAX_ALERTS_PER_REQUEST, a count of at least 1."""

from __future__ import annotations

import pytest

from bridge.config import DEFAULT_MAX_ALERTS, Settings
from bridge.errors import ConfigError


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
