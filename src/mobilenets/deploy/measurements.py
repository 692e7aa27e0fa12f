"""This machine's measurements in one JSON cache: per-model latencies (``mobilenets choose``,
``sweep``) and ``auto``'s runtime choices, each section keyed by everything a timing depends on
(CPU, threads, library versions, runtime, batch: :func:`~mobilenets.deploy.runtime_choice.machine_key`).
Writes are atomic, so an interrupted run never leaves a half-written cache."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from ..utils.fsutil import atomic_write_text
from ..weights.published import cache_dir

SECTIONS = ("latency", "runtime")


class Measurements:
    """``read(section, key)`` and ``write(section, key, entry)`` on one JSON file (by default
    ``measurements.json`` in the cache folder)."""

    def __init__(self, path: str | Path | None = None) -> None:
        self.path = Path(path) if path is not None else cache_dir() / "measurements.json"

    def _load(self) -> dict[str, dict[str, dict[str, Any]]]:
        return json.loads(self.path.read_text()) if self.path.is_file() else {}

    def read(self, section: str, key: str) -> dict[str, Any]:
        _check(section)
        return dict(self._load().get(section, {}).get(key, {}))

    def write(self, section: str, key: str, entry: dict[str, Any]) -> None:
        _check(section)
        data = self._load()
        data.setdefault(section, {})[key] = entry
        self.path.parent.mkdir(parents=True, exist_ok=True)
        atomic_write_text(self.path, json.dumps(data, indent=1))


def _check(section: str) -> None:
    if section not in SECTIONS:
        raise ValueError(f"unknown measurement section {section!r}; valid: {', '.join(SECTIONS)}")
