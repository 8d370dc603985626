"""Creating, listing and expiring silences: the thin layer the API and the CLI share (every change audited)."""

from __future__ import annotations

from dataclasses import replace
from datetime import datetime
from typing import Any

from bridge.errors import NotFound
from bridge.pipeline.silences.apply import load_silence
from bridge.pipeline.silences.model import expire, silence_from_json, silence_to_json
from bridge.store import Store


def create_silence(store: Store, body: Any, now: datetime, *, actor: str) -> dict[str, Any]:
    """Validate an API/CLI body and store the silence, audited as done by `actor`; returns its JSON form (raises
    BadPayload when invalid)."""
    silence = silence_from_json(body, now)
    spec = silence_to_json(silence, now)
    silence_id = store.add_silence(spec, silence.owner, silence.reason, silence.effective_end.timestamp(),
                                   now.timestamp(), actor=actor)
    stored = replace(silence, id=silence_id)
    spec = silence_to_json(stored, now)
    store.update_silence_spec(silence_id, spec)
    return spec


def list_silences(store: Store, now: datetime, *, include_expired: bool = False) -> list[dict[str, Any]]:
    """Silences as JSON, with their status and next window."""
    return [silence_to_json(load_silence(r), now)
            for r in store.list_silences(include_expired=include_expired, now=now.timestamp())]


def expire_silence(store: Store, silence_id: int, now: datetime, *, actor: str) -> dict[str, Any]:
    """End a silence now, audited as done by `actor`; raises NotFound when there is no such silence."""
    records = [r for r in store.list_silences(include_expired=True) if r["id"] == silence_id]
    if not records:
        raise NotFound(f"no silence {silence_id}")
    ended = expire(load_silence(records[0]), now)
    store.expire_silence(silence_id, now.timestamp(), actor=actor)
    spec = silence_to_json(ended, now)
    store.update_silence_spec(silence_id, spec)
    return spec
