"""Post-mortem drafts: the process's "Post-Mortem Template", pre-filled from what the bridge recorded.

The process (docs/incident-process.md, "The post-mortem template") asks for a post-mortem for every P0 and
P1 incident, and for P2 when the root cause is unclear or cross-team (`needs_postmortem`). The bridge already
knows most of the facts (timeline, impact figures, related incidents), so `render_postmortem` turns an
`IncidentFacts` into a Markdown draft that keeps every section, heading and table of the template in the same
order, fills in what the records can tell, and leaves what only humans know (containment, root cause,
resolution, improvements, action items) as the template's own prompts, marked "To be written".

Everything here is pure: no clock, store, network or environment reads. `now` (the drafting time) is a
parameter, and the store builds `IncidentFacts` from its records.

Modules: `model` (the facts, `needs_postmortem`), `formatting`, `templates` (the shipped template and a team's
own), `render` (facts in, Markdown out); the two that read the store are `facts` (`postmortem_facts`: the records
as `IncidentFacts`) and `drafts` (`draft`: the one path from a stored incident to its draft, used by the CLI, the
API and the post-mortem follow-up).

Custom templates
----------------
A team can replace the default template (`bridge/templates/postmortem.md.j2`) with its own Jinja2 source:
`render_postmortem(facts, template=load_template(path), template_name=str(path), now=now)`; the rules setting
`settings.postmortem_template` is read through `custom_template`, which accepts only a file inside the rules
directory (`template_path`: symlinks followed, no absolute path, no `..`). Templates render with
`autoescape=False` (the output is Markdown, not HTML), `StrictUndefined` (a misspelt variable is an error, not a
silently empty section), `trim_blocks` and `lstrip_blocks`, in Jinja2's sandbox. Errors are `ConfigError`s that
name the template and its line.

Context variables (all strings are plain text unless marked "Markdown"; `None` when unknown):

- `facts`: the `IncidentFacts` itself (raw values, datetimes in UTC).
- `key`, `title`, `status`, `service` (or None), `source`: from the facts.
- `severity`: the current severity ("P1"); `highest_severity`: the most severe reached ("P0");
  `severity_changed`: True when they differ.
- `pagerduty`: `{"id": ..., "url": ...}` (either may be None), or None when no PagerDuty incident is known.
- `drafted_at`, `opened_at`: "YYYY-MM-DD HH:MM:SS UTC"; `resolved_at`: the same, or None while open.
- `is_open`: True while the incident has no resolution time.
- `duration`: "47 min" (first alert to resolution, or to `now` while open); `duration_text`: Markdown sentence
  fragment, "47 min (first alert ... to resolution ...)" or "still open (...)".
- `description`: Markdown paragraph drafted from the facts (what, where, how long, severity, impact).
- `rules`: list of rule names; `categories`: sorted list of categories; `dimensions`: dict dimension -> max value.
- `platform_categories`: the sorted categories that make Platform Engineering the owner of the follow-up action
  items (infrastructure, deployment, observability, cloud cost: the process's "infrastructure or observability
  gaps"); empty when none applies.
- `roles`: list of `{"role": ..., "holder": ...}` in the facts' order.
- `timeline`: list of rows sorted by time, each a dict of table-safe cells (Markdown, `|` and newlines escaped):
  `date` ("YYYY-MM-DD"), `time` ("HH:MM:SS UTC"), `kind`, `kind_label`, `description` (with the kind label in
  bold), `text` (the description alone), `personnel`, `actions`; and `event`, the raw `TimelineEvent`.
- `impact`: `{"confidentiality": cell, "integrity": cell, "availability": cell}`, each cell a dict with
  `affected` ("Yes", or "Yes / No" when left for humans), `details` (table-safe Markdown) and `known` (bool).
- `blast_radius`: dict of Markdown fragments `users`, `customers`, `revenue`, `duration`.
- `cost`: None, or a dict with `actual`, `expected` ("USD 1,234.50" or None), `currency`, `increase_pct`
  ("142%" or None), `new_spend`, `forecast`, `period`, and `text` (one-line summary).
- `related`: None when the bridge did not look related incidents up; otherwise a list (maybe empty) of rows,
  each a dict of table-safe cells `incident` (Markdown link when there is one), `date`, `similarity`, plus
  `item`, the raw `RelatedIncident`.

Filters: `cell` (escape for a Markdown table cell), `oneline` (newlines to spaces), `code` (inline code span),
`md_url` (link destination safe for Markdown), `utc` (datetime to "YYYY-MM-DD HH:MM:SS UTC").
"""

from bridge.postmortem.drafts import draft
from bridge.postmortem.facts import postmortem_facts
from bridge.postmortem.formatting import (
    format_amount,
    format_datetime,
    format_duration,
    format_pct,
    md_cell,
    md_code,
    md_oneline,
    md_url,
)
from bridge.postmortem.model import TIMELINE_KINDS, IncidentFacts, RelatedIncident, TimelineEvent, needs_postmortem
from bridge.postmortem.render import build_context, render_postmortem
from bridge.postmortem.templates import (
    DEFAULT_TEMPLATE_LABEL,
    DEFAULT_TEMPLATE_NAME,
    custom_template,
    default_template,
    load_template,
    template_path,
)

__all__ = [
    "DEFAULT_TEMPLATE_LABEL", "DEFAULT_TEMPLATE_NAME", "TIMELINE_KINDS", "IncidentFacts", "RelatedIncident",
    "TimelineEvent", "build_context", "custom_template", "default_template", "draft", "format_amount",
    "format_datetime", "format_duration", "format_pct", "load_template", "md_cell", "md_code", "md_oneline", "md_url",
    "needs_postmortem", "postmortem_facts", "render_postmortem", "template_path",
]
