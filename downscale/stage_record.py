"""What a pipeline stage records beside its output: the configuration that decides the output and the
fingerprints of the inputs it was made from, so that a rerun can tell whether the output still answers
the configuration — and say what changed when it does not.

The record of the output at ``<path>`` is ``<path>.stage.json``, written once the output is complete::

    {"stage": "train", "config": {"train.max_steps": 240, "train.network.preset": "demo", …},
     "inputs": {"prepare": "3f2a…"}, "fingerprint": "9c1e…"}

``config`` is the stage's settings flattened to dotted keys (so a change reads ``train.max_steps
changed 240→300``); ``fingerprint`` is the SHA-256 of ``config`` and ``inputs``.
"""

from __future__ import annotations

import hashlib
import json
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from pydantic import BaseModel

RECORD_SUFFIX = ".stage.json"
_MISSING = object()


def flatten(prefix: str, value: Any) -> dict[str, Any]:
    """``value`` (a pydantic model, a mapping or a JSON value) as ``{dotted key: JSON value}``: nested mappings
    are walked, everything else (lists included) is a leaf."""
    if isinstance(value, BaseModel):
        value = value.model_dump(mode="json")
    if isinstance(value, dict):
        out: dict[str, Any] = {}
        for key, item in value.items():
            out.update(flatten(f"{prefix}.{key}" if prefix else str(key), item))
        return out
    return {prefix: value}


def _short(value: Any) -> str:
    text = json.dumps(value, sort_keys=True) if not isinstance(value, str) else value
    return text if len(text) <= 40 else text[:37] + "…"


@dataclass(frozen=True)
class StageRecord:
    """One stage's configuration (dotted keys → JSON values) and its inputs' fingerprints (name → id)."""

    stage: str
    config: dict[str, Any]
    inputs: dict[str, str] = field(default_factory=dict)

    @property
    def fingerprint(self) -> str:
        """SHA-256 of the configuration and the inputs."""
        text = json.dumps({"config": self.config, "inputs": self.inputs}, sort_keys=True)
        return hashlib.sha256(text.encode()).hexdigest()

    def changes_from(self, old: StageRecord) -> list[str]:
        """What differs from ``old``, one phrase each: ``train.max_steps changed 240→300``, ``input train
        changed (3f2a…→9c1e…)``; sorted by key."""
        out = []
        for key in sorted(set(self.config) | set(old.config)):
            before, now = old.config.get(key, _MISSING), self.config.get(key, _MISSING)
            if before is _MISSING:
                out.append(f"{key} added ({_short(now)})")
            elif now is _MISSING:
                out.append(f"{key} removed (was {_short(before)})")
            elif before != now:
                out.append(f"{key} changed {_short(before)}→{_short(now)}")
        for name in sorted(set(self.inputs) | set(old.inputs)):
            before, now = old.inputs.get(name, "none"), self.inputs.get(name, "none")
            if before != now:
                out.append(f"input {name} changed ({before[:12]}→{now[:12]})")
        return out

    def write(self, output: str | os.PathLike[str]) -> Path:
        """Write the record beside ``output`` (atomically: a temporary file, then a rename); returns its path."""
        path = record_path(output)
        tmp = path.with_name(path.name + ".tmp")
        tmp.write_text(json.dumps({"stage": self.stage, "config": self.config, "inputs": self.inputs,
                                   "fingerprint": self.fingerprint}, indent=1, sort_keys=True))
        os.replace(tmp, path)
        return path

    @classmethod
    def read(cls, output: str | os.PathLike[str]) -> StageRecord | None:
        """The record beside ``output``; None if there is none (or it is unreadable: treated as none)."""
        try:
            doc = json.loads(record_path(output).read_text())
            return cls(doc["stage"], doc["config"], doc.get("inputs", {}))
        except (FileNotFoundError, json.JSONDecodeError, KeyError, TypeError):
            return None


def record_path(output: str | os.PathLike[str]) -> Path:
    """Where the record of the output at ``output`` lives: ``<output>.stage.json`` beside it."""
    output = Path(output)
    return output.with_name(output.name + RECORD_SUFFIX)
