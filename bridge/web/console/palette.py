"""The colour pairs of the console's stylesheet that carry text or meaning, for the contrast check (WCAG 2.x)."""

from __future__ import annotations

# (foreground, background, what, the least ratio WCAG AA asks for it)
CONTRAST_PAIRS: tuple[tuple[str, str, str, float], ...] = (
    ("#1b1b1f", "#ffffff", "body text", 4.5),
    ("#4b5563", "#ffffff", "muted text (captions, hints, axis labels)", 4.5),
    ("#4b5563", "#f4f6f8", "muted text on a striped row", 4.5),
    ("#0b57d0", "#ffffff", "links", 4.5),
    ("#0b57d0", "#f4f6f8", "links on a striped row", 4.5),
    ("#ffffff", "#1f2937", "header text", 4.5),
    ("#b3261e", "#fdecea", "error messages", 4.5),
    ("#0d5a27", "#e6f4ea", "confirmations", 4.5),
    ("#ffffff", "#0b57d0", "buttons", 4.5),
    ("#ffffff", "#b3261e", "danger buttons", 4.5),
    ("#c25400", "#ffffff", "the focus ring (non-text)", 3.0),
    ("#4b5563", "#ffffff", "input borders (non-text)", 3.0),
)


def relative_luminance(colour: str) -> float:
    """WCAG's relative luminance of `#rrggbb`."""
    channels = [int(colour[i:i + 2], 16) / 255 for i in (1, 3, 5)]
    r, g, b = (c / 12.92 if c <= 0.03928 else ((c + 0.055) / 1.055) ** 2.4 for c in channels)
    return 0.2126 * r + 0.7152 * g + 0.0722 * b


def contrast_ratio(foreground: str, background: str) -> float:
    """WCAG's contrast ratio (1 to 21) of two `#rrggbb` colours."""
    a, b = sorted((relative_luminance(foreground), relative_luminance(background)), reverse=True)
    return (a + 0.05) / (b + 0.05)
