"""Post-mortem templates: the shipped one, a team's own (`settings.postmortem_template`, only from inside the
rules directory), and the Jinja2 sandbox they render in. Reads template files; no other I/O."""

from __future__ import annotations

from importlib import resources
from pathlib import Path
from typing import Any

import jinja2
from jinja2.sandbox import SandboxedEnvironment

from bridge.errors import ConfigError
from bridge.postmortem.formatting import format_datetime, md_cell, md_code, md_oneline, md_url

DEFAULT_TEMPLATE_NAME = "postmortem.md.j2"


def _environment() -> jinja2.Environment:
    # Markdown, not HTML: autoescape would turn "&" and "<br>" into entities. StrictUndefined so a misspelt
    # variable in a team's template fails loudly instead of leaving a section silently empty. The sandbox keeps
    # a template from reaching Python internals through `facts`.
    env = SandboxedEnvironment(autoescape=False, undefined=jinja2.StrictUndefined, trim_blocks=True,
                               lstrip_blocks=True, keep_trailing_newline=True)
    env.filters.update({"cell": md_cell, "oneline": md_oneline, "code": md_code, "md_url": md_url,
                        "utc": format_datetime})
    return env


def default_template() -> str:
    """The source of the shipped template, `bridge/templates/postmortem.md.j2`."""
    return resources.files("bridge").joinpath("templates", DEFAULT_TEMPLATE_NAME).read_text(encoding="utf-8")


def _syntax_error(exc: jinja2.TemplateSyntaxError, name: str) -> ConfigError:
    return ConfigError(f"post-mortem template syntax error: {exc.message}", path=name, line=exc.lineno or 0,
                       hint="check the Jinja2 tags on that line")


DEFAULT_TEMPLATE_LABEL = "<default template>"
_TEMPLATE_HINT = ("put the template in the rules directory and name it relative to that directory, e.g. "
                  "postmortem_template: postmortem.md.j2")


def template_path(rules_dir: str | Path, name: Any) -> Path:
    """The file `settings.postmortem_template: <name>` names: resolved (symlinks followed) and inside `rules_dir`.

    A draft is served by the API and posted to PagerDuty, so a template outside the rules directory
    (`/proc/self/environ`, `../../etc/...`, or a symlink pointing out) would publish that file. Raises ConfigError
    (message and hint, no position: the rules loader adds the file, line and column of the setting) when `name`
    is absolute, leaves the directory through `..` or a symlink, or is not an existing regular file. The message
    names only `name`, never the resolved path, so it reads the same on every machine.
    """
    if not isinstance(name, str) or not name.strip():
        raise ConfigError("postmortem_template must name a file", hint=_TEMPLATE_HINT)
    if "\0" in name:
        raise ConfigError("postmortem_template contains a NUL character", hint=_TEMPLATE_HINT)
    relative = Path(name)
    if relative.is_absolute() or relative.drive:
        raise ConfigError(f"postmortem_template {name!r} is an absolute path: the template must be a file inside "
                          "the rules directory", hint=_TEMPLATE_HINT)
    root = Path(rules_dir).resolve()
    try:
        resolved = (root / relative).resolve()
    except (OSError, RuntimeError):  # RuntimeError: a symlink loop (Python 3.11)
        raise ConfigError(f"postmortem_template {name!r} cannot be resolved (a symlink loop or an unreadable "
                          "directory)", hint=_TEMPLATE_HINT) from None
    if not resolved.is_relative_to(root):
        how = "goes up out of it with '..'" if ".." in relative.parts else "is a symlink that points out of it"
        raise ConfigError(f"postmortem_template {name!r} is outside the rules directory: it {how}",
                          hint=_TEMPLATE_HINT)
    if not resolved.is_file():
        what = "is not a regular file" if resolved.exists() else "does not exist"
        raise ConfigError(f"postmortem_template {name!r} {what} in the rules directory",
                          hint="create the template there, or remove the setting to use the shipped template")
    return resolved


def custom_template(rules_path: str | Path, setting: Any) -> tuple[str | None, str]:
    """The post-mortem template to render with: `(source, name)`; `(None, "<default template>")` when `setting`
    (`settings.postmortem_template` of the active ruleset) is empty.

    `rules_path` is the rules directory or one rule file (BRIDGE_RULES). The place is checked again here, at
    use time (`template_path`), not only when the rules load, so a ruleset that somehow holds an outside path
    (adopted from another process's snapshot, a symlink swapped after loading) still cannot publish another
    file. Raises ConfigError.
    """
    if not setting:
        return None, DEFAULT_TEMPLATE_LABEL
    base = Path(rules_path)
    path = template_path(base if base.is_dir() else base.parent, setting)
    return load_template(path), str(path)


def load_template(path: str | Path) -> str:
    """Read a custom post-mortem template and check its Jinja2 syntax.

    Raises ConfigError naming the file (and the line, for a syntax error), so a broken template is rejected when
    the rules are loaded, not when the first post-mortem is due.
    """
    try:
        source = Path(path).read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        raise ConfigError(f"cannot read post-mortem template: {exc}", path=str(path)) from exc
    try:
        _environment().parse(source, name=str(path), filename=str(path))
    except jinja2.TemplateSyntaxError as exc:
        raise _syntax_error(exc, str(path)) from exc
    return source
