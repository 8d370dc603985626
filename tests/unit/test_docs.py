"""The documentation is self-contained: nothing a user reads points outside the repository, every command is in
the README, and the files and links the docs name exist.

`../shared/` (captured payloads, reference notes and the process this project started from) sits beside our own
clone only; a user has none of it. The README says so in one sentence (the testing part), and tests/README.md
may name it: those are the only places allowed.
"""

from __future__ import annotations

import re
from pathlib import Path

import click
import pytest

from bridge.cli import main
from tests.support.shared import REPO

# Names of things only our own clone has: `../shared/` and what lives in it.
OUTSIDE = re.compile(r"\.\./shared|incident-management-process\.md|\bseed/|\breference/(?:cloud-cost|datadog|"
                     r"pagerduty)\.md|\bfixtures/")
# Build and environment folders; tests/ is the project's own (its README may name ../shared).
SKIP_DIRS = {"tests", "build", "dist", "node_modules", "signed-examples"}


def user_docs() -> list[Path]:
    """Every file of the repository a user reads: Markdown, the rule files (comments and the schema's
    descriptions, which editors show) and the post-mortem template."""
    def kept(path: Path) -> bool:
        parts = path.relative_to(REPO).parts
        return not any(p.startswith(".") or p in SKIP_DIRS or p.endswith(".egg-info") for p in parts[:-1])

    files = [p for p in REPO.rglob("*.md") if kept(p)]
    files += [p for p in (REPO / "rules").rglob("*.yaml") if kept(p)]
    files += [REPO / "rules" / "schema.json", *sorted((REPO / "bridge" / "templates").glob("*"))]
    files += [REPO / "scripts" / "sign-example"]
    return sorted(set(files))


def test_the_scan_covers_the_docs() -> None:
    names = {str(p.relative_to(REPO)) for p in user_docs()}
    for expected in ("README.md", "docs/incident-process.md", "rules/README.md", "rules/roles.yaml",
                     "webhooks/aws-sns/README.md", "webhooks/generic/README.md"):
        assert expected in names
    assert "tests/README.md" not in names


@pytest.mark.parametrize("doc", user_docs(), ids=lambda p: str(p.relative_to(REPO)))
def test_no_doc_points_outside_the_repository(doc: Path) -> None:
    lines = doc.read_text(encoding="utf-8").splitlines()
    found = [(n, line) for n, line in enumerate(lines, 1) if OUTSIDE.search(line)]
    if doc == REPO / "README.md":
        # The one sentence that says ../shared is for the project's own tests (it spans two lines).
        text = " ".join(lines)
        times = text.count("../shared")
        assert times == 1, f"README.md names ../shared {times} times; only the sentence on the project's own tests may"
        assert re.search(r"`\.\./shared/`[^.]*project's own tests only", text), "the sentence on ../shared moved"
        found = [(n, line) for n, line in found if OUTSIDE.search(line.replace("../shared", ""))]
    assert not found, "\n".join(f"{doc.relative_to(REPO)}:{n}: {line.strip()}" for n, line in found)


def test_the_cli_help_points_nowhere_outside() -> None:
    def walk(command: click.Command, path: str) -> list[str]:
        texts = [f"{path}: {command.help or ''}"]
        texts += [f"{path} {p.name}: {getattr(p, 'help', '') or ''}" for p in command.params]
        if isinstance(command, click.Group):
            for name, sub in command.commands.items():
                texts += walk(sub, f"{path} {name}")
        return texts

    bad = [t for t in walk(main, "incident-bridge") if OUTSIDE.search(t)]
    assert not bad, bad


def cli_commands() -> list[str]:
    """Every command and subcommand of the CLI, as typed: `incident-bridge rules test`."""
    out: list[str] = []

    def walk(command: click.Command, path: str) -> None:
        if isinstance(command, click.Group):
            for name, sub in command.commands.items():
                walk(sub, f"{path} {name}")
        else:
            out.append(path)

    walk(main, "incident-bridge")
    return sorted(out)


def readme_section(title: str) -> str:
    text = (REPO / "README.md").read_text(encoding="utf-8")
    start = text.index(f"\n## {title}\n")
    end = text.find("\n## ", start + 1)
    return text[start:end if end != -1 else None]


@pytest.mark.parametrize("command", cli_commands())
def test_every_command_is_in_the_readme(command: str) -> None:
    assert f"`{command}" in readme_section("Commands"), f"README's Commands section lacks `{command} ...`"


def test_the_process_is_in_the_repository_and_the_readme_points_at_it() -> None:
    process = (REPO / "docs" / "incident-process.md").read_text(encoding="utf-8")
    for part in ("## 1. Severities", "## 2. Roles", "escalation", "## 4. Communication duties",
                 "## 6. The post-mortem template", "rules/severity.yaml", "rules/roles.yaml", "rules/routing.yaml"):
        assert part in process
    assert "(docs/incident-process.md)" in (REPO / "README.md").read_text(encoding="utf-8")


LINK = re.compile(r"\]\(([^)\s]+)\)")


@pytest.mark.parametrize("doc", [p for p in user_docs() if p.suffix == ".md"], ids=lambda p: str(p.relative_to(REPO)))
def test_relative_links_and_named_example_files_exist(doc: Path) -> None:
    text = doc.read_text(encoding="utf-8")
    missing: list[str] = []
    for target in LINK.findall(text):
        if re.match(r"[a-z]+:", target) or target.startswith("#"):
            continue
        if not (doc.parent / target.split("#", 1)[0]).exists():
            missing.append(target)
    # Example payloads named in prose or commands: from the repository root, or from the source's folder.
    for name in re.findall(r"\bwebhooks/[\w./-]+?\.json\b", text):
        if not (REPO / name).exists():
            missing.append(name)
    for name in re.findall(r"`(examples/[\w.-]+\.json)`", text):
        if not (doc.parent / name).exists():
            missing.append(name)
    assert not missing, f"{doc.relative_to(REPO)} names files that do not exist: {missing}"
