"""The active ruleset of a process, swapped atomically on reload.

A reload (SIGHUP, `POST /-/reload`) validates the rule files completely; only a clean ruleset replaces the
active one, and its exact files are recorded in the store. Every process (web workers, the delivery worker,
other replicas) adopts the newest recorded snapshot within a second, so all of them decide by the same rules.
A request reads `holder.current` once: an alert is decided by exactly one complete ruleset, never a mix.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any, Protocol

from bridge.errors import ConfigError, ConfigErrors
from bridge.rules.loader import LoadResult, compile_sources, read_sources
from bridge.rules.model import Ruleset

log = logging.getLogger(__name__)


class RulesetRecords(Protocol):
    """Where the holder records loads and finds the newest snapshot (the bridge's `Store`). A protocol, so the
    rules language imports nothing above the model."""

    def record_ruleset(self, *, ok: bool, now: float, hash_: str | None = None, error: str | None = None,
                       files: list[tuple[str, str]] | None = None, base_dir: str = "") -> int: ...

    def record_audit(self, actor: str, action: str, target: str, details: dict[str, Any], now: float) -> None: ...

    def latest_ruleset_id(self) -> int: ...

    def latest_ruleset(self) -> dict[str, Any] | None: ...


class RulesetHolder:
    """Holds the current Ruleset and keeps it in step with the store's newest snapshot."""

    def __init__(self, path: Path, store: RulesetRecords | None, *, clock: Callable[[], float] = time.time,
                 check_interval: float = 1.0) -> None:
        self.path = path
        self.store = store
        self.clock = clock
        self.check_interval = check_interval
        self._lock = threading.Lock()
        self._current: Ruleset | None = None
        self._snapshot_id = 0
        self._next_check = 0.0

    @property
    def current(self) -> Ruleset:
        """The active ruleset (adopting a newer snapshot recorded by another process first)."""
        self._maybe_adopt()
        assert self._current is not None, "RulesetHolder used before load()"
        return self._current

    @property
    def generation(self) -> int:
        """Changes with every successful (re)load, also when the rule files did not change."""
        _ = self.current
        return self._snapshot_id

    def load(self) -> LoadResult:
        """Load from disk at start; raises ConfigErrors when the files are invalid."""
        return self.reload()

    def ensure(self) -> None:
        """Adopt the newest recorded ruleset, or load from disk when none was recorded yet (a lone worker)."""
        self._maybe_adopt()
        if self._current is None:
            self.load()

    def reload(self, *, actor: str = "") -> LoadResult:
        """Re-read the rule files. On any error (raised as ConfigErrors) the active ruleset stays active and
        the error is recorded for metrics and the API. With `actor` (who asked: an admin credential, a signal),
        the reload, failed or not, is written to the audit log."""
        base = self.path if self.path.is_dir() else self.path.parent
        before = self._current.hash if self._current is not None else None
        try:
            sources = read_sources(self.path)
            result = compile_sources(sources, base)
            self._refuse_losing_every_rule(result)
        except ConfigErrors as exc:
            log.error("rules reload failed; the previous ruleset stays active:\n%s", exc)
            if self.store is not None:
                self.store.record_ruleset(ok=False, now=self.clock(), error=str(exc))
                if actor:
                    self.store.record_audit(actor, "rules.reload", str(self.path),
                                            {"ok": False, "errors": len(exc.errors), "active_ruleset": before},
                                            self.clock())
            raise
        snapshot = 0
        if self.store is not None:
            snapshot = self.store.record_ruleset(ok=True, now=self.clock(), hash_=result.ruleset.hash,
                                                 files=sources, base_dir=str(base))
            if actor:
                self.store.record_audit(actor, "rules.reload", str(self.path),
                                        {"ok": True, "from": before, "to": result.ruleset.hash}, self.clock())
        with self._lock:
            self._current = result.ruleset
            self._snapshot_id = snapshot
        log.info("rules loaded: %d rules from %s (hash %s)", len(result.ruleset.rules), self.path,
                 result.ruleset.hash)
        for warning in result.warnings:
            log.warning("rules: %s", warning)
        return result

    def _refuse_losing_every_rule(self, result: LoadResult) -> None:
        """A reload that would leave no rule where rules were active is refused: it is a file caught half-written
        or a routing file missing (a checkout mid-update), never an edit anyone means; with it every alert would
        be recorded and none paged. (A bridge may start with no rules: that is a choice made before any page.)"""
        if self._current is None or not self._current.rules or result.ruleset.rules:
            return
        raise ConfigErrors([ConfigError(
            f"the new rules have no rule, where the active ruleset has {len(self._current.rules)}: every alert "
            "would be recorded and none paged", path=str(self.path),
            hint="a rule file is missing or was caught half-written; write rule files elsewhere and rename them "
                 "into place, then reload")])

    def _maybe_adopt(self) -> None:
        if self.store is None:
            return
        now = self.clock()
        if now < self._next_check and self._current is not None:
            return
        self._next_check = now + self.check_interval
        try:
            latest = self.store.latest_ruleset_id()
        except Exception:  # the store is down: keep deciding with the rules we have
            log.exception("cannot check for a newer ruleset")
            return
        if latest <= self._snapshot_id:
            return
        snap = self.store.latest_ruleset()
        if snap is None:
            return
        try:
            result = compile_sources(snap["files"], Path(snap["base_dir"] or "."))
        except ConfigErrors as exc:  # cannot happen for a snapshot that validated, unless versions differ
            log.error("cannot adopt ruleset snapshot %s: %s", snap["id"], exc)
            self._snapshot_id = snap["id"]
            return
        with self._lock:
            if snap["id"] > self._snapshot_id:
                self._current = result.ruleset
                self._snapshot_id = snap["id"]
                log.info("adopted ruleset %s (snapshot %s)", result.ruleset.hash, snap["id"])
