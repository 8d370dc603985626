"""Readers of the deploy files (deploy/), for the tests that check them and the tests that run what they run.

Each reads only what the tests look at: a Dockerfile's instructions, a systemd unit's keys, the Kubernetes
manifests and the rules' kustomization, and the shell commands the READMEs document.
"""

from __future__ import annotations

import json
import re
import shlex
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

from tests.support.server import REPO

DEPLOY = REPO / "deploy"
DOCKERFILE = DEPLOY / "Dockerfile"
UNIT = DEPLOY / "systemd" / "incident-bridge.service"
# The two Kubernetes shapes (issue 14): one pod on SQLite, and web + worker on PostgreSQL.
SINGLE_NODE = DEPLOY / "kubernetes" / "single-node"
HA = DEPLOY / "kubernetes" / "ha"
SHAPES = (SINGLE_NODE, HA)
MANIFEST = SINGLE_NODE / "incident-bridge.yaml"
KUSTOMIZATION = SINGLE_NODE / "kustomization.yaml"
HA_MANIFEST = HA / "incident-bridge.yaml"
RULES = REPO / "rules"
RULES_KUSTOMIZATION = RULES / "Kustomization"
# Where the deploy steps are documented: the README's and deploy/'s own.
DOCS = (REPO / "README.md", DEPLOY / "README.md")
# Files of rules/ that are not rules: Python packaging (the shipped rules are a package) and the kustomization.
NOT_RULES = {"__init__.py", "Kustomization"}


# -- Dockerfile ---------------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Instruction:
    keyword: str  # upper case: RUN, USER, HEALTHCHECK, ...
    args: str  # the rest, continuation lines joined


def dockerfile(path: Path = DOCKERFILE) -> list[Instruction]:
    """The instructions in order (comments dropped, `\\` continuations joined)."""
    out: list[Instruction] = []
    pending = ""
    for raw in path.read_text().splitlines():
        line = raw.strip()
        if not pending and (not line or line.startswith("#")):
            continue
        if pending and line.startswith("#"):
            continue  # a comment inside a continued instruction
        if line.endswith("\\"):
            pending += line[:-1].strip() + " "
            continue
        text = pending + line
        pending = ""
        keyword, _, args = text.partition(" ")
        out.append(Instruction(keyword.upper(), args.strip()))
    return out


def exec_form(args: str) -> list[str]:
    """A JSON-array argument (`["a", "b"]`), as Docker reads it."""
    value = json.loads(args)
    assert isinstance(value, list) and all(isinstance(v, str) for v in value), args
    return value


def healthcheck_command(instructions: list[Instruction]) -> tuple[dict[str, str], list[str]]:
    """The HEALTHCHECK's options (`--interval=30s` -> {"interval": "30s"}) and its CMD in exec form."""
    [check] = [i for i in instructions if i.keyword == "HEALTHCHECK"]
    options, _, command = check.args.partition("CMD ")
    parsed = dict(o[2:].split("=", 1) for o in options.split())
    return parsed, exec_form(command)


def option(argv: list[str], name: str) -> str:
    """The value after `name` in an argument vector (`--port 8080`)."""
    return argv[argv.index(name) + 1]


# -- systemd ----------------------------------------------------------------------------------------------------


def unit(path: Path = UNIT) -> dict[str, list[tuple[str, str]]]:
    """Each section's (key, value) pairs in order; a key may repeat (Environment=)."""
    sections: dict[str, list[tuple[str, str]]] = {}
    current = ""
    for raw in path.read_text().splitlines():
        line = raw.strip()
        if not line or line.startswith(("#", ";")):
            continue
        if line.startswith("["):
            current = line.strip("[]")
            sections.setdefault(current, [])
            continue
        key, _, value = line.partition("=")
        sections[current].append((key.strip(), value.strip()))
    return sections


def unit_value(sections: dict[str, list[tuple[str, str]]], section: str, key: str) -> str:
    [value] = [v for k, v in sections[section] if k == key]
    return value


def unit_environment(sections: dict[str, list[tuple[str, str]]]) -> dict[str, str]:
    """The Environment= assignments of [Service]."""
    out = {}
    for key, value in sections["Service"]:
        if key == "Environment":
            name, _, val = value.partition("=")
            out[name] = val
    return out


# -- Kubernetes -------------------------------------------------------------------------------------------------


def manifests(text: str) -> list[dict[str, Any]]:
    return [doc for doc in yaml.safe_load_all(text) if doc]


def of_kind(docs: list[dict[str, Any]], kind: str) -> list[dict[str, Any]]:
    return [d for d in docs if d.get("kind") == kind]


def rule_files() -> dict[str, Path]:
    """Every file of rules/, by its path relative to rules/ (what the bridge may read there)."""
    return {p.relative_to(RULES).as_posix(): p for p in sorted(RULES.rglob("*"))
            if p.is_file() and p.name not in NOT_RULES and "__pycache__" not in p.parts}


def generated_configmaps() -> dict[str, dict[str, Path]]:
    """What rules/Kustomization's configMapGenerator makes, as kustomize does: each ConfigMap's keys (a file's
    name, or the `key=` before its path) and the files they hold."""
    spec = yaml.safe_load(RULES_KUSTOMIZATION.read_text())
    out: dict[str, dict[str, Path]] = {}
    for generator in spec["configMapGenerator"]:
        data: dict[str, Path] = {}
        for entry in generator.get("files", []):
            key, _, path = entry.rpartition("=")
            data[key or Path(path).name] = RULES / path
        out[generator["name"]] = data
    return out


def projected(volume: dict[str, Any], data: dict[str, dict[str, str]]) -> dict[str, str]:
    """The files a projected (or configMap) volume shows, by path in the mount: each ConfigMap's keys, or its
    `items` at their paths. `data` is each ConfigMap's content by name."""
    sources = volume["projected"]["sources"] if "projected" in volume else [{"configMap": volume["configMap"]}]
    out: dict[str, str] = {}
    for source in sources:
        ref = source["configMap"]
        content = data[ref["name"]]
        items = ref.get("items") or [{"key": k, "path": k} for k in content]
        for item in items:
            assert item["path"] not in out, f"two files at {item['path']}"
            out[item["path"]] = content[item["key"]]
    return out


# -- the documented commands ------------------------------------------------------------------------------------


def shell_lines(text: str) -> list[str]:
    """The lines of the Markdown's ```sh blocks, `\\` continuations joined."""
    out: list[str] = []
    for block in re.findall(r"```sh\n(.*?)```", text, flags=re.S):
        joined = re.sub(r"\\\n\s*", " ", block)
        out.extend(line.strip() for line in joined.splitlines() if line.strip())
    return out


def secret_commands() -> dict[Path, list[set[str]]]:
    """Each document's `kubectl create secret generic incident-bridge ...` commands, as the set of keys each sets."""
    out: dict[Path, list[set[str]]] = {}
    for doc in DOCS:
        if not doc.exists():
            continue
        for line in shell_lines(doc.read_text()):
            if line.startswith("kubectl create secret generic incident-bridge"):
                words = shlex.split(line.split("#", 1)[0], posix=True)
                keys = {w.split("=", 2)[1] for w in words if w.startswith("--from-literal=")}
                keys |= {w.split("=", 2)[1] for w in words if w.startswith("--from-file=") and w.count("=") >= 2}
                out.setdefault(doc, []).append(keys)
    return out
