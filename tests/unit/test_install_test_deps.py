"""scripts/install_test_deps.py: scripts/test never changes how incident-bridge is installed (issue 18). Only a
missing install, or an editable one of this very checkout, is (re)installed editable; any other install is left
as it is and gets the test requirements alone."""

from __future__ import annotations

import importlib.util
import tomllib
from pathlib import Path
from types import ModuleType
from typing import Any

import pytest

from tests.support.server import REPO


def load_script() -> ModuleType:
    spec = importlib.util.spec_from_file_location("install_test_deps", REPO / "scripts" / "install_test_deps.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


script = load_script()
PYPROJECT = tomllib.loads((REPO / "pyproject.toml").read_text())
OTHER = Path("/srv/other-checkout")


def editable(path: Path) -> dict[str, Any]:
    return {"url": path.as_uri(), "dir_info": {"editable": True}}


@pytest.mark.parametrize(("installed", "direct_url", "says", "editable_install"), [
    pytest.param(False, None, "not installed here", True, id="not installed: editable from here"),
    pytest.param(True, editable(REPO), "installed editable from this checkout", True,
                 id="editable from this checkout: the same again"),
    pytest.param(True, editable(OTHER), f"installed editable from {OTHER}: left as it is", False,
                 id="editable from another checkout: left"),
    pytest.param(True, {"url": REPO.as_uri(), "dir_info": {}}, f"installed from {REPO}: left as it is", False,
                 id="pip install . of this checkout: left"),
    pytest.param(True, {"url": "file:///tmp/incident_bridge-0.1.0-py3-none-any.whl", "archive_info": {}},
                 "installed from /tmp/incident_bridge-0.1.0-py3-none-any.whl: left as it is", False,
                 id="a wheel: left"),
    pytest.param(True, None, "installed from a package index: left as it is", False, id="from an index: left"),
])
def test_only_a_missing_or_this_checkouts_editable_install_is_installed_editable(
        installed: bool, direct_url: dict[str, Any] | None, says: str, editable_install: bool) -> None:
    what, args = script.plan(installed, direct_url, REPO, PYPROJECT)
    assert says in what
    if editable_install:
        assert args == ["-e", ".[test]"]
    else:
        assert "-e" not in args and not any(a.startswith((".", "/", "incident")) for a in args), args
        assert args == script.requirements(PYPROJECT)


def test_the_requirements_are_the_dependencies_and_the_test_extra_with_its_own_extras_expanded() -> None:
    pyproject = {"project": {
        "name": "incident-bridge", "dependencies": ["flask>=3.0", "pyyaml>=6.0"],
        "optional-dependencies": {"postgres": ["psycopg[binary]>=3.1"],
                                  "test": ["Incident_Bridge[postgres]", "pytest>=8"]}}}
    assert sorted(script.requirements(pyproject)) == ["flask>=3.0", "psycopg[binary]>=3.1", "pytest>=8", "pyyaml>=6.0"]


def test_the_shipped_test_extra_needs_no_install_of_the_project() -> None:
    required = script.requirements(PYPROJECT)
    assert not [r for r in required if script.normalized(r.split("[")[0].split(">")[0]) == "incident-bridge"]
    assert {"pytest>=8", "psycopg[binary]>=3.1", "flask>=3.0"} <= set(required)
