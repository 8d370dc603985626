"""The pure self-monitoring decisions (`bridge.health`): which parts are stalled, and what the fallback page does."""

from __future__ import annotations

import pytest

from bridge.health import DELIVERY, PIPELINE, Stall, find_stalls, page_actions, self_dedup_key

NOW = 1_800_000_000.0


@pytest.mark.parametrize(("job_due", "undecided", "threshold", "expected"), [
    pytest.param(None, None, 300, [], id="nothing-waits"),
    pytest.param(NOW - 10, NOW - 10, 300, [], id="young-work"),
    pytest.param(NOW - 300, None, 300, [], id="exactly-the-threshold-is-not-stalled"),
    pytest.param(NOW - 301, None, 300, [(DELIVERY, 301)], id="delivery-stalled"),
    pytest.param(None, NOW - 600, 300, [(PIPELINE, 600)], id="pipeline-stalled"),
    pytest.param(NOW - 400, NOW - 900, 300, [(DELIVERY, 400), (PIPELINE, 900)], id="both-delivery-first"),
    pytest.param(NOW + 60, None, 300, [], id="clock-behind-the-database"),
    pytest.param(NOW - 3, NOW - 1, 2, [(DELIVERY, 3)], id="short-threshold"),
])
def test_find_stalls(job_due: float | None, undecided: float | None, threshold: float,
                     expected: list[tuple[str, float]]) -> None:
    stalls = find_stalls(job_due, undecided, NOW, threshold)
    assert [(s.what, s.age) for s in stalls] == expected
    assert all(s.threshold == threshold for s in stalls)


@pytest.mark.parametrize(("stalled", "pages", "expected"), [
    pytest.param(set(), {}, [], id="healthy-never-paged"),
    pytest.param({DELIVERY}, {}, [(DELIVERY, "trigger")], id="first-stall-triggers"),
    pytest.param({DELIVERY}, {DELIVERY: "open"}, [], id="open-page-is-not-sent-again"),
    pytest.param({DELIVERY}, {DELIVERY: "resolved"}, [(DELIVERY, "trigger")], id="stall-again-after-recovery"),
    pytest.param(set(), {DELIVERY: "open"}, [(DELIVERY, "resolve")], id="recovered-resolves"),
    pytest.param(set(), {DELIVERY: "resolved", PIPELINE: "resolved"}, [], id="resolved-stays-quiet"),
    pytest.param({PIPELINE}, {DELIVERY: "open"}, [(DELIVERY, "resolve"), (PIPELINE, "trigger")],
                 id="one-part-recovers-another-stalls"),
])
def test_page_actions(stalled: set[str], pages: dict[str, str], expected: list[tuple[str, str]]) -> None:
    assert page_actions(stalled, pages) == expected


@pytest.mark.parametrize(("stall", "text"), [
    pytest.param(Stall(DELIVERY, 754.2, 300), "delivery: the oldest pending outbox job has waited 12m34s "
                                               "(threshold 5m)", id="delivery"),
    pytest.param(Stall(PIPELINE, 3600, 300), "pipeline: the oldest undecided alert was received 1h ago "
                                              "(threshold 5m)", id="pipeline"),
])
def test_reason(stall: Stall, text: str) -> None:
    assert stall.reason == text
    assert stall.as_json()["reason"] == text


def test_dedup_key_is_stable_per_part() -> None:
    assert self_dedup_key(DELIVERY) == "incident-bridge:self:delivery"
    assert self_dedup_key(PIPELINE) == "incident-bridge:self:pipeline"


@pytest.mark.parametrize(("value", "seconds"), [("", 300.0), ("90", 90.0), ("2s", 2.0), ("10m", 600.0),
                                                ("1h30m", 5400.0)])
def test_the_stall_threshold_setting(value: str, seconds: float) -> None:
    from bridge.config import Settings

    assert Settings.from_env({"BRIDGE_STALL_THRESHOLD": value}).stall_threshold_seconds == seconds


@pytest.mark.parametrize(("value", "message"), [
    ("soon", r"BRIDGE_STALL_THRESHOLD='soon': 'soon' is not a duration"),
    ("0", r"BRIDGE_STALL_THRESHOLD='0' is below 1 second"),
])
def test_a_bad_stall_threshold_is_one_line_naming_the_setting(value: str, message: str) -> None:
    from bridge.config import Settings
    from bridge.errors import ConfigError

    with pytest.raises(ConfigError, match=message):
        Settings.from_env({"BRIDGE_STALL_THRESHOLD": value})


def test_the_missed_resolve_setting() -> None:
    from bridge.config import Settings

    assert Settings.from_env({}).missed_resolve_after_seconds == 3600.0
    assert Settings.from_env({"BRIDGE_MISSED_RESOLVE_AFTER": "2h"}).missed_resolve_after_seconds == 7200.0


def test_the_fallback_key_comes_from_a_file_and_is_a_redacted_secret(tmp_path: object) -> None:
    from pathlib import Path

    from bridge.config import Settings

    key_file = Path(str(tmp_path)) / "fallback"
    key_file.write_text("fa11bac0fa11bac0fa11bac0fa11bac0\n")
    settings = Settings.from_env({"BRIDGE_FALLBACK_ROUTING_KEY_FILE": str(key_file)})
    assert settings.fallback_routing_key.reveal() == "fa11bac0fa11bac0fa11bac0fa11bac0"
    assert "fa11bac0" not in repr(settings)
    assert "fa11bac0fa11bac0fa11bac0fa11bac0" in settings.secrets()  # redacted from job errors and tracebacks


def test_a_malformed_fallback_key_is_named_before_start() -> None:
    from bridge.config import Secret, Settings
    from bridge.preflight import problems

    found = problems(Settings(fallback_routing_key=Secret("short")))
    assert [p.message for p in found] == ["BRIDGE_FALLBACK_ROUTING_KEY is 5 characters long; an Events API v2 "
                                          "integration key has 32"]
