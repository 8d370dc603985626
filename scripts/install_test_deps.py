#!/usr/bin/env python3
"""Install what the tests need into the running Python's environment, without changing how incident-bridge is
installed there (scripts/test runs it with the virtual environment's Python).

- Not installed: this checkout, editable, with its test extra (`pip install -e '.[test]'`): a new venv's set-up.
- Installed editable from this checkout: the same again (new dependencies of the checkout come in).
- Installed any other way (from a wheel or `pip install .`, or editable from another checkout): left as it is;
  only the requirements are installed (the checkout's dependencies and its test extra, read from pyproject.toml),
  so nothing switches it to editable or to this checkout. The tests import this checkout anyway: pytest puts the
  checkout first on sys.path (tests/ is a package under it), the bridges the tests start run `python -m bridge`
  from it, and scripts/test exports PYTHONPATH for everything else.

Prints one line saying which it did.
"""

from __future__ import annotations

import json
import re
import subprocess
import sys
import tomllib
from importlib import metadata
from pathlib import Path
from typing import Any
from urllib.parse import unquote, urlsplit

CHECKOUT = Path(__file__).resolve().parents[1]
PROJECT = "incident-bridge"


def normalized(name: str) -> str:
    """A distribution name as pip compares them (PEP 503)."""
    return re.sub(r"[-_.]+", "-", name).lower()


def requirements(pyproject: dict[str, Any], extra: str = "test") -> list[str]:
    """The project's dependencies and those of `extra`, its references to the project's own extras
    (`incident-bridge[postgres]`) replaced by what they require."""
    project = pyproject["project"]
    extras = project.get("optional-dependencies", {})
    out = list(project.get("dependencies", []))
    todo, seen = [extra], set()
    while todo:
        name = todo.pop()
        if name in seen:
            continue
        seen.add(name)
        for requirement in extras[name]:
            own = re.fullmatch(r"\s*([A-Za-z0-9_.-]+)\s*\[([^\]]+)\]\s*", requirement)
            if own and normalized(own.group(1)) == normalized(project["name"]):
                todo.extend(e.strip() for e in own.group(2).split(","))
            else:
                out.append(requirement)
    return out


def source_of(direct_url: dict[str, Any] | None) -> tuple[Path | None, bool]:
    """Where an installed distribution came from (a local directory, or None) and whether it is editable, from its
    `direct_url.json` (PEP 610; None when installed from an index)."""
    if not direct_url or not direct_url.get("url", "").startswith("file:"):
        return None, False
    editable = bool(direct_url.get("dir_info", {}).get("editable"))
    return Path(unquote(urlsplit(direct_url["url"]).path)), editable


def plan(installed: bool, direct_url: dict[str, Any] | None, checkout: Path,
         pyproject: dict[str, Any]) -> tuple[str, list[str]]:
    """What to say and the `pip install` arguments."""
    if not installed:
        return "not installed here: installing this checkout, editable, with its test extra", ["-e", ".[test]"]
    where, editable = source_of(direct_url)
    if editable and where is not None and where.resolve() == checkout.resolve():
        return "installed editable from this checkout: refreshing it with its test extra", ["-e", ".[test]"]
    if editable:
        how = f"installed editable from {where}"
        caveat = (f"; the package data it maps (the shipped rules and examples) still come from {where}: "
                  "for those, test in a virtual environment of this checkout's own")
    else:
        how = f"installed from {where}" if where is not None else "installed from a package index"
        caveat = ""
    return (f"{how}: left as it is, installing the test requirements only; the tests import this checkout"
            + caveat), requirements(pyproject)


def main() -> int:
    pyproject = tomllib.loads((CHECKOUT / "pyproject.toml").read_text(encoding="utf-8"))
    try:
        dist = metadata.distribution(PROJECT)
    except metadata.PackageNotFoundError:
        installed, direct_url = False, None
    else:
        installed = True
        text = dist.read_text("direct_url.json")
        direct_url = json.loads(text) if text else None
    what, args = plan(installed, direct_url, CHECKOUT, pyproject)
    print(f"scripts/test: {PROJECT} {what}", file=sys.stderr)
    return subprocess.call([sys.executable, "-m", "pip", "install", "--quiet", "--disable-pip-version-check", *args],
                           cwd=CHECKOUT)


if __name__ == "__main__":
    sys.exit(main())
