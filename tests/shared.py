"""Access to `../shared/` (fixtures, reference schemas) beside the repository.

Someone else's clone may not have it: tests that need it skip with a clear reason. In CI (`CI=true`) a missing
`../shared/` is an error, so a broken checkout can never pass by skipping.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

import pytest

REPO = Path(__file__).resolve().parent.parent
SHARED = REPO.parent / "shared"


def shared_path(relative: str) -> Path:
    """Path of `../shared/<relative>`; skips the test (fails it in CI) when it is absent."""
    path = SHARED / relative
    if not path.exists():
        message = f"../shared/{relative} is not present beside the repository ({SHARED})"
        if os.environ.get("CI", "").lower() == "true":
            pytest.fail(f"{message}; CI must run with ../shared beside the clone")
        pytest.skip(message)
    return path


def shared_json(relative: str) -> Any:
    """The parsed JSON of `../shared/<relative>`."""
    return json.loads(shared_path(relative).read_text(encoding="utf-8"))


def shared_text(relative: str) -> str:
    """The text of `../shared/<relative>`."""
    return shared_path(relative).read_text(encoding="utf-8")
