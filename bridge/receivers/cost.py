"""Cost arithmetic shared by the cloud-cost receivers (AWS SNS, Google Cloud Pub/Sub, Azure).

Everything here is pure and uses `Decimal`: binary floats turn 4650 % into 4649.999... (cloud-cost.md §7).
Two rules from cloud-cost.md §7 ("Pitfalls") shape the API:

- **Missing is not zero.** `increase_pct` returns None when the baseline is missing or zero; callers mark the
  zero-baseline case as *new spend* and never turn it into 0 %, which would suppress a page.
- **A ratio is not an increase.** The percentage is (actual - baseline) / baseline x 100, so "flat" is 0 %.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from decimal import ROUND_HALF_UP, Decimal, InvalidOperation
from typing import Any

from bridge.model import CLOUD_COST_INCREASE_PCT, CostFacts

# Percentages are kept to two decimals (AWS prints totalImpactPercentage as 333.67), rounded half-up so that
# 126.666... becomes 126.67, as a reader would round it.
PCT_QUANTUM = Decimal("0.01")
# No budget or bill reaches 10^15 in any currency; past that a figure is hostile or broken, and a ratio of two
# such figures would overflow the decimal context when rounded.
MAX_AMOUNT_EXPONENT = 15

_CURRENCY_SYMBOLS = {"$": "USD", "€": "EUR", "£": "GBP", "¥": "JPY", "₹": "INR"}
_NUMBER_CHARS = re.compile(r"[^0-9.,\-]")
_THOUSANDS_ONLY = re.compile(r"^-?\d{1,3}(,\d{3})+$")


def parse_amount(value: Any) -> Decimal | None:
    """Parse a money amount into a Decimal; None for None or an empty string.

    Accepts JSON numbers (converted through `str`, so 100.01 stays 100.01 and never 100.0100000000000051...)
    and formatted strings such as "$11,111.00", "1111.32", "USD 5.00", "-3.5", "1.234,56".

    Separators, because Azure formats amounts by currency and locale (cloud-cost.md §5.1 "Amount parsing"):
    with both "," and "." present the last one is the decimal point; a lone "," is a thousands separator only
    when every group after it has exactly three digits ("11,111"), otherwise it is a decimal comma ("12,50").

    Raises ValueError when the text holds no number.
    """
    if value is None:
        return None
    if isinstance(value, bool):
        raise ValueError(f"not an amount: {value!r}")
    if isinstance(value, Decimal):
        return value
    if isinstance(value, int | float):
        number = Decimal(str(value))
        if not number.is_finite() or number.adjusted() > MAX_AMOUNT_EXPONENT:
            raise ValueError(f"not an amount: {str(value)[:40]!r}")
        return number
    if not isinstance(value, str):
        # A JSON array or object: its text ("[1, 2]") would otherwise be read as the amount 1.2.
        raise ValueError(f"not an amount: a {type(value).__name__}, not a number or a text")
    text = value.strip()
    if not text:
        return None
    negative = text.startswith("(") and text.endswith(")")  # accounting notation "($5.00)"
    digits = _NUMBER_CHARS.sub("", text)
    if "," in digits and "." in digits:
        if digits.rfind(",") > digits.rfind("."):
            digits = digits.replace(".", "").replace(",", ".")
        else:
            digits = digits.replace(",", "")
    elif "," in digits:
        digits = digits.replace(",", "") if _THOUSANDS_ONLY.match(digits) else digits.replace(",", ".")
    try:
        amount = Decimal(digits)
    except InvalidOperation:
        raise ValueError(f"not an amount: {text!r}") from None
    if not amount.is_finite() or amount.adjusted() > MAX_AMOUNT_EXPONENT:
        raise ValueError(f"not an amount: {text[:40]!r}")
    return -amount if negative else amount


def currency_of(text: str, default: str = "USD") -> str:
    """The ISO currency code a formatted amount carries ("$5.00" -> USD, "EUR 5" -> EUR), else `default`."""
    text = text.strip()
    for symbol, code in _CURRENCY_SYMBOLS.items():
        if symbol in text:
            return code
    m = re.search(r"\b([A-Z]{3})\b", text)
    return m.group(1) if m else default


def increase_pct(actual: Decimal | None, baseline: Decimal | None) -> Decimal | None:
    """(actual - baseline) / baseline x 100, rounded to 0.01; None when either is unknown or baseline <= 0.

    A negative result is kept: a budget alert can fire while spend is still below budget (cloud-cost.md §7
    pitfall 3), and the rules decide what that means.
    """
    if actual is None or baseline is None or baseline <= 0:
        return None
    return _rounded_pct((actual - baseline) / baseline * 100)


def is_new_spend(actual: Decimal | None, baseline: Decimal | None) -> bool:
    """True when something is spent against a baseline of exactly zero (AWS omits the percentage then)."""
    return actual is not None and baseline is not None and baseline == 0 and actual > 0


def pct_of(part: Decimal | None, whole: Decimal | None) -> Decimal | None:
    """part / whole x 100 rounded to 0.01 (a threshold as a percentage of the budget); None if unknown."""
    if part is None or whole is None or whole <= 0:
        return None
    return _rounded_pct(part / whole * 100)


def _rounded_pct(value: Decimal) -> Decimal | None:
    """A percentage rounded to 0.01; None when it is too large to hold (a baseline of 0.000001 against
    millions): an unknown percentage, which the rules treat as such, rather than a crash."""
    try:
        return value.quantize(PCT_QUANTUM, rounding=ROUND_HALF_UP)
    except InvalidOperation:
        return None


def plain(amount: Decimal | None) -> str:
    """A Decimal as a plain string for `Alert.fields` ("1001", "0.95", "-62.28"): no exponent, no padding."""
    if amount is None:
        return ""
    text = format(amount, "f")
    if "." in text:
        text = text.rstrip("0").rstrip(".")
    return "0" if text in ("-0", "") else text


def format_money(amount: Decimal | None, currency: str = "USD") -> str:
    """Human form for titles: "$1,001.00" for USD, "1,001.00 GBP" otherwise, "?" when unknown."""
    if amount is None:
        return "?"
    sign = "-" if amount < 0 else ""
    body = f"{abs(amount).quantize(PCT_QUANTUM, rounding=ROUND_HALF_UP):,}"
    if currency.upper() == "USD":
        return f"{sign}${body}"
    return f"{sign}{body} {currency.upper()}"


def format_pct(pct: Decimal | None) -> str:
    """Signed percentage for titles: "+333.67 %", "-62.28 %", "+4,650 %"; "n/a" when unknown."""
    if pct is None:
        return "n/a"
    sign = "+" if pct >= 0 else "-"
    body = f"{abs(pct):,.2f}"
    if body.endswith(".00"):
        body = body[:-3]
    return f"{sign}{body} %"


def cost_dimensions(pct: Decimal | None) -> dict[str, float]:
    """The `Alert.dimensions` of a cost alert: the increase percentage when known, nothing otherwise.

    Omitting the key (rather than writing 0) is what lets a rule tell "new spend" or "unknown" from "flat".
    """
    return {} if pct is None else {CLOUD_COST_INCREASE_PCT: float(pct)}


def cost_fields(cost: CostFacts, *, provider: str, kind: str, extra: Mapping[str, str | None]) -> dict[str, str]:
    """The string `Alert.fields` every cost alert carries, plus `extra` (None and "" values are dropped).

    Rule matchers compare strings, so flags are "true"/"false" and amounts are plain decimals.
    """
    out: dict[str, str] = {
        "provider": provider,
        "kind": kind,
        "forecast": "true" if cost.forecast else "false",
        "new_spend": "true" if cost.new_spend else "false",
        "currency": cost.currency,
    }
    if cost.actual is not None:
        out["amount"] = plain(cost.actual)
    if cost.impact is not None:
        # Signed dollars, not a percentage: a budget alert under budget has a negative impact, and an absolute
        # floor rule ("impact >= 100") must not read it as an overrun.
        out["impact"] = plain(cost.impact)
    if cost.expected is not None:
        out["expected"] = plain(cost.expected)
    if cost.budget is not None:
        out["budget"] = plain(cost.budget)
    if cost.threshold is not None:
        out["threshold"] = plain(cost.threshold)
    if cost.increase_pct is not None:
        out["increase_pct"] = plain(cost.increase_pct)
    if cost.period:
        out["period"] = cost.period
    for key, value in extra.items():
        if value is not None and value != "":
            out[key] = value
    return out
