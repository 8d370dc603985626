"""Cost arithmetic shared by the cloud-cost receivers: amounts, percentages, formatting."""

from __future__ import annotations

from decimal import Decimal

import pytest
from hypothesis import given
from hypothesis import strategies as st

from bridge.model import CLOUD_COST_INCREASE_PCT, CostFacts
from bridge.receivers.cost import (
    cost_dimensions,
    cost_fields,
    currency_of,
    format_money,
    format_pct,
    increase_pct,
    is_new_spend,
    parse_amount,
    pct_of,
    plain,
)


@pytest.mark.parametrize(("given_value", "expected"), [
    pytest.param("$11,111.00", Decimal("11111.00"), id="azure-currency-formatted"),
    pytest.param("$1111.11", Decimal("1111.11"), id="no-thousands-separator"),
    pytest.param("1111.32", Decimal("1111.32"), id="plain-string"),
    pytest.param("8000.0", Decimal("8000.0"), id="legacy-threshold"),
    pytest.param("0.8", Decimal("0.8"), id="fraction"),
    pytest.param(100.01, Decimal("100.01"), id="json-float-via-str"),
    pytest.param(1001, Decimal("1001"), id="json-int"),
    pytest.param("USD 5.00", Decimal("5.00"), id="code-prefix"),
    pytest.param("-3.5", Decimal("-3.5"), id="negative"),
    pytest.param("($5.00)", Decimal("-5.00"), id="accounting-negative"),
    pytest.param("1.234,56 €", Decimal("1234.56"), id="decimal-comma-with-thousands-dot"),
    pytest.param("12,50", Decimal("12.50"), id="decimal-comma"),
    pytest.param("11,111", Decimal("11111"), id="thousands-comma-only"),
    pytest.param("1,234,567.89", Decimal("1234567.89"), id="two-thousands-groups"),
    pytest.param(None, None, id="none"),
    pytest.param("", None, id="empty"),
])
def test_parse_amount(given_value: object, expected: Decimal | None) -> None:
    assert parse_amount(given_value) == expected


@pytest.mark.parametrize("bad", ["n/a", "$", "1.2.3", True, "NaN", "inf"], ids=str)
def test_parse_amount_rejects_non_numbers(bad: object) -> None:
    with pytest.raises(ValueError):
        parse_amount(bad)


# cloud-cost.md §7 "Worked numbers": every fixture's calculation, in Decimal, rounded to 0.01.
@pytest.mark.parametrize(("actual", "baseline", "expected"), [
    pytest.param("1301", "300", "333.67", id="cad-current"),
    pytest.param("0.95", "0.02", "4650.00", id="budgets-forecasted-2026"),
    pytest.param("1.70", "0.75", "126.67", id="budgets-daily-vs-threshold"),
    pytest.param("1.70", "5.00", "-66.00", id="budgets-daily-vs-budgeted-amount"),
    pytest.param("36.69", "30.00", "22.30", id="budgets-monthly-2019"),
    pytest.param("18.86", "50.00", "-62.28", id="budgets-monthly-2026-02"),
    pytest.param("100.01", "100.00", "0.01", id="gcp-listen-sample"),
    pytest.param("140.321", "152.557", "-8.02", id="gcp-notification-format"),
    pytest.param("100", "50", "100.00", id="azure-legacy-tutorial"),
    pytest.param("1111.32", "10000", "-88.89", id="azure-legacy-test-action"),
    pytest.param("11111.00", "50.00", "22122.00", id="azure-costalerts-actual"),
    pytest.param("1111.11", "50.00", "2122.22", id="azure-costalerts-forecasted"),
    pytest.param("100", "100", "0.00", id="flat-is-zero-not-100"),
])
def test_increase_pct_worked_numbers(actual: str, baseline: str, expected: str) -> None:
    assert increase_pct(Decimal(actual), Decimal(baseline)) == Decimal(expected)


@pytest.mark.parametrize(("actual", "baseline"), [
    pytest.param(Decimal("5"), Decimal("0"), id="zero-baseline-is-new-spend-not-0"),
    pytest.param(None, Decimal("5"), id="actual-unknown"),
    pytest.param(Decimal("5"), None, id="baseline-unknown"),
    pytest.param(Decimal("5"), Decimal("-1"), id="negative-baseline"),
])
def test_increase_pct_is_none_when_undefined(actual: Decimal | None, baseline: Decimal | None) -> None:
    assert increase_pct(actual, baseline) is None


def test_new_spend_only_for_zero_baseline_and_positive_spend() -> None:
    assert is_new_spend(Decimal("1"), Decimal("0"))
    assert not is_new_spend(Decimal("0"), Decimal("0"))
    assert not is_new_spend(Decimal("1"), Decimal("1"))
    assert not is_new_spend(None, Decimal("0"))


def test_decimal_avoids_float_error() -> None:
    # With floats (0.95 - 0.02) / 0.02 * 100 gives 4649.999999999999 (cloud-cost.md §7).
    assert (0.95 - 0.02) / 0.02 * 100 != 4650
    assert increase_pct(parse_amount(0.95), parse_amount(0.02)) == Decimal("4650")


@pytest.mark.parametrize(("amount", "currency", "text"), [
    pytest.param(Decimal("1001"), "USD", "$1,001.00", id="usd"),
    pytest.param(Decimal("0.954"), "USD", "$0.95", id="usd-rounded"),
    pytest.param(Decimal("-31.14"), "USD", "-$31.14", id="usd-negative"),
    pytest.param(Decimal("10.1"), "GBP", "10.10 GBP", id="other-currency"),
    pytest.param(None, "USD", "?", id="unknown"),
])
def test_format_money(amount: Decimal | None, currency: str, text: str) -> None:
    assert format_money(amount, currency) == text


@pytest.mark.parametrize(("pct", "text"), [
    pytest.param(Decimal("333.67"), "+333.67 %", id="positive"),
    pytest.param(Decimal("4650.00"), "+4,650 %", id="whole"),
    pytest.param(Decimal("-62.28"), "-62.28 %", id="negative"),
    pytest.param(None, "n/a", id="unknown"),
])
def test_format_pct(pct: Decimal | None, text: str) -> None:
    assert format_pct(pct) == text


def test_dimensions_omit_unknown_percentage() -> None:
    assert cost_dimensions(None) == {}
    assert cost_dimensions(Decimal("333.67")) == {CLOUD_COST_INCREASE_PCT: 333.67}
    assert cost_dimensions(Decimal("-8.02")) == {CLOUD_COST_INCREASE_PCT: -8.02}


def test_plain_and_pct_of() -> None:
    assert plain(Decimal("1001.00")) == "1001"
    assert plain(Decimal("0.950")) == "0.95"
    assert plain(Decimal("1E+3")) == "1000"
    assert plain(None) == ""
    assert pct_of(Decimal("24"), Decimal("30")) == Decimal("80.00")
    assert pct_of(Decimal("1"), Decimal("0")) is None


def test_cost_fields_are_strings_and_impact_is_signed() -> None:
    cost = CostFacts(actual=Decimal("18.86"), expected=Decimal("50"), impact=Decimal("-31.14"),
                     increase_pct=Decimal("-62.28"), period="monthly")
    fields = cost_fields(cost, provider="aws", kind="budget", extra={"budget_name": "b", "skipped": None})
    assert fields["impact"] == "-31.14"  # an absolute-floor rule must not read an underspend as an overrun
    assert fields["forecast"] == "false" and fields["new_spend"] == "false"
    assert "skipped" not in fields
    assert all(isinstance(v, str) for v in fields.values())


def test_currency_of() -> None:
    assert currency_of("$11,111.00") == "USD"
    assert currency_of("EUR 5,00") == "EUR"
    assert currency_of("5.00", default="GBP") == "GBP"


@given(st.decimals(min_value=Decimal("0.01"), max_value=Decimal("1000000"), places=2))
def test_money_round_trips(amount: Decimal) -> None:
    assert parse_amount(format_money(amount)) == amount


@given(baseline=st.decimals(min_value=Decimal("1"), max_value=Decimal("100000"), places=2),
       pct=st.decimals(min_value=Decimal("-100"), max_value=Decimal("10000"), places=2))
def test_increase_pct_inverts_growth(baseline: Decimal, pct: Decimal) -> None:
    actual = baseline * (1 + pct / 100)
    assert abs(increase_pct(actual, baseline) - pct) <= Decimal("0.01")  # type: ignore[operator]
