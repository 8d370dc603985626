"""Every module of the package imports, and every third-party module it imports is a declared requirement.

A fresh install (`pip install .`) has only what pyproject.toml declares: a module importing anything else works
on the machine where it was written and fails on the next. `test_module_imports` imports every module (CI runs it
in a fresh virtual environment, see .ci/run); `test_every_third_party_import_is_declared` reads every import
statement, so it also catches an undeclared module that happens to be installed (pulled in by another package, or
installed by hand) and imports inside functions, which only fail when their code path runs.
"""

from __future__ import annotations

import ast
import importlib
import pkgutil
import re
import sys
import tomllib
from collections.abc import Mapping
from importlib.metadata import packages_distributions
from pathlib import Path
from typing import Any

import pytest

import bridge

ROOT = Path(__file__).resolve().parents[2]
PACKAGE = "bridge"


def package_modules() -> list[str]:
    """Every module and subpackage of `bridge`, found by pkgutil (which imports packages to walk them)."""
    # A package that fails to import is still listed (walk_packages yields it before importing it), so its test
    # fails with the real error; onerror keeps the walk going instead of failing collection.
    found = pkgutil.walk_packages(bridge.__path__, f"{PACKAGE}.", onerror=lambda _name: None)
    # `python -m bridge` runs the CLI when imported; bridge.cli, which it imports, is tested on its own.
    return sorted({PACKAGE} | {m.name for m in found if not m.name.endswith(".__main__")})


MODULES = package_modules()


def test_the_walk_finds_the_package() -> None:
    """Guard against a walk that finds nothing, which would make the import test pass vacuously."""
    for name in ("bridge.cli", "bridge.store", "bridge.related.score", "bridge.receivers.datadog",
                 "bridge.delivery.worker", "bridge.rules.engine"):
        assert name in MODULES
    assert len(MODULES) > 30


@pytest.mark.parametrize("name", MODULES)
def test_module_imports(name: str) -> None:
    importlib.import_module(name)


def normalize(name: str) -> str:
    """A distribution name as PEP 503 compares them: `PyYAML`, `pyyaml` and `py_yaml` are one project."""
    return re.sub(r"[-_.]+", "-", name).lower()


def requirement_name(requirement: str) -> str:
    """The project name of a PEP 508 requirement (`psycopg[binary]>=3.1` -> `psycopg`)."""
    # A regex rather than `packaging`: the runtime code must not depend on it, and neither should this test.
    match = re.match(r"\s*([A-Za-z0-9][A-Za-z0-9._-]*)", requirement)
    assert match, f"cannot read a project name in the requirement {requirement!r}"
    return normalize(match.group(1))


def declared_requirements(pyproject: Mapping[str, Any]) -> set[str]:
    """The projects `pip install .` installs: [project] dependencies, not extras.

    Extras do not count: a module importing an extra's package at import time breaks a plain install. Import
    such a package lazily, where the feature needs it (as SQLAlchemy does with psycopg for postgresql+psycopg://).
    """
    return {requirement_name(r) for r in pyproject["project"].get("dependencies", [])}


def third_party_imports(sources: Mapping[str, str], own: str = PACKAGE) -> dict[str, list[str]]:
    """Top-level names of the modules imported by `sources` ({where: code}) that are neither ours nor the
    standard library, each with where it is imported (`file:line`). Imports anywhere count, in functions too."""
    found: dict[str, list[str]] = {}
    for where, code in sources.items():
        for node in ast.walk(ast.parse(code, where)):
            if isinstance(node, ast.Import):
                names = [alias.name for alias in node.names]
            elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
                names = [node.module]
            else:
                continue  # relative imports are ours
            for name in names:
                top = name.partition(".")[0]
                if top != own and top not in sys.stdlib_module_names:
                    found.setdefault(top, []).append(f"{where}:{node.lineno}")
    return found


def undeclared(imports: Mapping[str, list[str]], declared: set[str],
               distributions: Mapping[str, list[str]]) -> list[str]:
    """One line per imported module that no declared requirement provides, naming where it is imported."""
    problems = []
    for module, places in sorted(imports.items()):
        providers = distributions.get(module, [])
        if any(normalize(d) in declared for d in providers):
            continue
        source = f"installed here by {', '.join(sorted(set(providers)))}" if providers else "not installed here"
        problems.append(f"{module} ({source}) is imported at {', '.join(places[:3])} but not declared in "
                        "pyproject.toml [project] dependencies")
    return problems


def test_every_third_party_import_is_declared() -> None:
    pyproject = tomllib.loads((ROOT / "pyproject.toml").read_text(encoding="utf-8"))
    sources = {str(p.relative_to(ROOT)): p.read_text(encoding="utf-8")
               for p in sorted((ROOT / PACKAGE).rglob("*.py"))}
    assert sources, f"no Python files under {ROOT / PACKAGE}"
    problems = undeclared(third_party_imports(sources), declared_requirements(pyproject), packages_distributions())
    assert not problems, "\n".join(problems)


REQUIREMENT_CASES = [
    ("plain", "flask>=3.0", "flask"),
    ("extra_and_version", "psycopg[binary]>=3.1", "psycopg"),
    ("case_and_separators", "Datadog_API.Client >= 2.30", "datadog-api-client"),
    ("marker", "tomli; python_version < '3.11'", "tomli"),
]


@pytest.mark.parametrize(("requirement", "expected"), [c[1:] for c in REQUIREMENT_CASES],
                         ids=[c[0] for c in REQUIREMENT_CASES])
def test_requirement_name(requirement: str, expected: str) -> None:
    assert requirement_name(requirement) == expected


# (id, code, declared projects, installed import name -> distributions, modules reported)
CHECK_CASES: list[tuple[str, str, set[str], dict[str, list[str]], list[str]]] = [
    ("declared_under_another_name", "import yaml\n", {"pyyaml"}, {"yaml": ["PyYAML"]}, []),
    ("undeclared_but_installed", "import numpy as np\n", {"flask"}, {"numpy": ["numpy"]}, ["numpy"]),
    ("undeclared_inside_a_function", "def f():\n    import numpy\n", set(), {"numpy": ["numpy"]}, ["numpy"]),
    ("only_a_dependency_of_a_declared_one", "from werkzeug.exceptions import HTTPException\n", {"flask"},
     {"werkzeug": ["Werkzeug"], "flask": ["Flask"]}, ["werkzeug"]),
    ("not_installed_at_all", "import nosuchmodule\n", {"flask"}, {}, ["nosuchmodule"]),
    ("namespace_package_any_provider", "from google.oauth2 import id_token\n", {"google-auth"},
     {"google": ["protobuf", "google-auth"]}, []),
    ("stdlib_own_and_relative", "from __future__ import annotations\nimport os.path\nfrom bridge import x\n"
     "from . import y\n", set(), {}, []),
]


@pytest.mark.parametrize(("code", "declared", "distributions", "reported"), [c[1:] for c in CHECK_CASES],
                         ids=[c[0] for c in CHECK_CASES])
def test_the_check_reports_undeclared_imports(code: str, declared: set[str], distributions: dict[str, list[str]],
                                              reported: list[str]) -> None:
    problems = undeclared(third_party_imports({"bridge/example.py": code}), declared, distributions)
    assert [p.split(" ")[0] for p in problems] == reported
    assert all("bridge/example.py:" in p for p in problems)


def test_every_package_is_shipped() -> None:
    """A non-editable install (the README's `pip install .`) ships only the packages pyproject.toml lists; a
    package left out imports fine from a checkout and breaks for every user."""
    pyproject = tomllib.loads((ROOT / "pyproject.toml").read_text(encoding="utf-8"))
    listed = set(pyproject["tool"]["setuptools"]["packages"])
    on_disk = {".".join(p.parent.relative_to(ROOT).parts) for p in (ROOT / PACKAGE).rglob("__init__.py")}
    assert on_disk, f"no packages under {ROOT / PACKAGE}"
    missing = sorted(on_disk - listed)
    assert not missing, f"add {', '.join(missing)} to [tool.setuptools] packages in pyproject.toml"
