"""The console's silence form as the API's JSON body (pure: the form's text in, the body out).

Matchers are typed one per line as `name=value` (or `!=`, `=~`, `!~`), as `incident-bridge silence add` takes
them; a line may also hold several separated by commas when none of them is a regex (a regex may contain commas).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from bridge.errors import BadPayload


def silence_body(form: Mapping[str, str]) -> dict[str, Any]:
    """The API body for the form's matchers, owner, reason and end time; BadPayload naming the empty field."""
    for name, label in (("matchers", "Matchers"), ("owner", "Owner"), ("reason", "Reason"), ("ends_at", "Ends")):
        if not form.get(name, "").strip():
            raise BadPayload(f"{label} is required", code="invalid_silence")
    return {"matchers": split_matchers(form["matchers"]), "owner": form["owner"].strip(),
            "reason": form["reason"].strip(), "ends_at": form["ends_at"].strip()}


def split_matchers(text: str) -> list[str]:
    """`service=checkout\\nseverity=P2, tag:env=prod` -> the three matchers; a regex line stays whole."""
    out: list[str] = []
    for line in text.splitlines():
        line = line.strip()
        if not line:
            continue
        if "=~" in line or "!~" in line:
            out.append(line)
        else:
            out.extend(part.strip() for part in line.split(",") if part.strip())
    return out


def matcher_lines(silence: Mapping[str, Any]) -> str:
    """A stored silence's matchers as the form shows them, one per line."""
    return "\n".join(str(m) for m in silence.get("matchers") or [])
