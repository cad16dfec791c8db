"""Checkpoints of a matching run: one file, `<out>/checkpoint.pt`, written atomically.

It holds tensors and plain values only (loaded with torch.load(weights_only=True): no code
runs), the settings that decide the matching state (kind, budget, seed, container shape,
schedule), and each add-on term's state. A checkpoint written under other settings is refused
with the settings that differ, so --resume never silently mixes two runs.
"""

from __future__ import annotations

import json
from pathlib import Path

import torch

from .config import CondenseConfig
from .io import atomic_write

CHECKPOINT = "checkpoint.pt"


class CheckpointError(ValueError):
    """A checkpoint that cannot be resumed from: unreadable, foreign, or from other settings."""


def settings(cfg: CondenseConfig, over_budget: float) -> dict:
    """What decides the matching state: everything but post-processing and evaluation."""
    d = cfg.to_dict()
    return {"kind": d["kind"], "ipc": d["ipc"], "seed": d["seed"], "container": d["container"],
            "match": d["match"], "over_budget": over_budget}


def _changed(saved: dict, now: dict) -> list[str]:
    out = []
    for key in sorted(set(saved) | set(now)):
        a, b = saved.get(key), now.get(key)
        if isinstance(a, dict) and isinstance(b, dict):
            out += [f"{key}.{k}" for k in _changed(a, b)]
        elif a != b:
            out.append(key)
    return out


def differences(saved: dict, now: dict) -> list[str]:
    """Dotted keys whose values differ (a multisize-off run ignores MDC's interval)."""
    out = _changed(saved, now)
    if not now["match"]["multisize"] and not saved.get("match", {}).get("multisize", False):
        out = [k for k in out if k != "match.mls_interval"]
    return out


def save(path: Path, state: dict) -> Path:
    atomic_write(path, lambda tmp: torch.save(state, tmp))
    return path


def load(path: Path, now: dict, device: str = "cpu") -> dict | None:
    """The checkpoint's state, or None if there is none; ValueError if it was written under other settings."""
    if not path.is_file():
        return None
    way_out = "delete it, or run without --resume"
    try:
        st = torch.load(path, map_location=device, weights_only=True)  # tensors only, no code
    except Exception as e:  # noqa: BLE001 - truncated, corrupt or not a torch file: all unreadable
        why = "truncated or damaged" if isinstance(e, (RuntimeError, EOFError)) else type(e).__name__
        raise CheckpointError(f"cannot read checkpoint {path} ({why}); {way_out}") from None
    if not isinstance(st, dict) or not {"outer", "container", "optimizer", "settings"} <= set(st):
        raise CheckpointError(f"{path} is not an edgecond checkpoint; {way_out}")
    saved = json.loads(st["settings"])
    differ = differences(saved, now) if saved else ["(a checkpoint of an older edgecond)"]
    if differ:
        raise CheckpointError(f"{path} was written by a run with other settings ({', '.join(differ)}); "
                              f"run with those settings, or {way_out}")
    return st

