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
from .io import OutputError, atomic_write

CHECKPOINT = "checkpoint.pt"


class CheckpointError(ValueError):
    """A checkpoint that cannot be resumed from: unreadable, foreign, or from other settings."""


# Config fields that do not decide the matching state: what happens after matching (pruning's
# selection, the prefix order, evaluation) and the preset's name (its values are in the tree).
# Identity is everything else, so a setting added later is part of it unless listed here.
NOT_IDENTITY = ("preset", "prune", "prefix_order", "eval")


def identity(cfg: CondenseConfig, over_budget: float) -> dict:
    """What decides the matching state: the resolved config tree less NOT_IDENTITY, plus the
    instance-memory surplus pruning condenses over (`over_budget`)."""
    d = cfg.to_dict()
    for key in NOT_IDENTITY:
        *parents, leaf = key.split(".")
        node = d
        for part in parents:
            node = node[part]
        node.pop(leaf)
    return {**d, "over_budget": over_budget}


def _changed(saved: dict, now: dict) -> list[str]:
    out = []
    for key in sorted(set(saved) | set(now)):
        a, b = saved.get(key), now.get(key)
        if isinstance(a, dict) and isinstance(b, dict):
            out += [f"{key}.{k}" for k in _changed(a, b)]
        elif a != b:
            out.append(key)
    return out


_MISSING = object()


def _lookup(tree: dict, dotted: str):
    for part in dotted.split("."):
        if not isinstance(tree, dict) or part not in tree:
            return _MISSING
        tree = tree[part]
    return tree


def differences(saved: dict, now: dict) -> list[str]:
    """Dotted keys whose values differ (a multisize-off run ignores MDC's interval). A setting
    added to edgecond after the checkpoint was written, at the default that keeps the old
    behaviour, is no difference (config.settings_digest's rule)."""
    default = CondenseConfig().to_dict()
    out = [k for k in _changed(saved, now)
           if not (_lookup(saved, k) is _MISSING and _lookup(now, k) == _lookup(default, k))]
    if not now["match"]["multisize"] and not saved.get("match", {}).get("multisize", False):
        out = [k for k in out if k != "match.mls_interval"]
    return out


def save(path: Path, state: dict) -> Path:
    def write(tmp):
        try:
            torch.save(state, tmp)
        except RuntimeError as e:  # torch reports a short write (a full disk, a file size limit) this way
            raise OutputError(f"cannot write checkpoint {path}: the write stopped short, is the disk full? "
                              f"({str(e).splitlines()[0][:80]})") from None
    atomic_write(path, write)
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

