"""Access to `../shared/` (fixtures, reference schemas) beside the repository, and to the repository's own files.

Someone else's clone may not have it: tests that need it skip with a clear reason. In CI (`CI=true`) a missing
`../shared/` is an error, so a broken checkout can never pass by skipping.
"""

from __future__ import annotations

import json
import os
import shutil
from pathlib import Path
from typing import Any

import pytest

REPO = Path(__file__).resolve().parents[2]
SHARED = REPO.parent / "shared"


def copy_shipped_rules(target: Path) -> Path:
    """A copy of the shipped rules (`rules/`) at `target`, free to edit: without the package marker, the rules'
    test cases and caches."""
    shutil.copytree(REPO / "rules", target, ignore=shutil.ignore_patterns("__init__.py", "cases", "__pycache__"))
    return target


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
