"""Shortcuts the tests share: settings resolved as the library resolves them, containers built by their kind."""

from __future__ import annotations

import torch

from edgecond.config import resolve_config
from edgecond.kinds import get, sized_config

# a schedule that runs in a second on digits
TINY = {"match.outer": 2, "match.inner": 2, "match.net_steps": 1, "match.real_batch": 16, "match.syn_batch": 16,
        "match.net_width": 16, "match.checkpoint_every": 1}


def cfg_for(kind: str, image_shape=(1, 8, 8), num_classes: int = 10, ipc: float = 5, preset: str = "quick",
            settings: dict | None = None):
    return resolve_config(get(kind), ipc, image_shape=image_shape, num_classes=num_classes, preset=preset,
                          overrides=settings)


def tiny(kind: str, data, ipc: float = 5, **settings):
    """The quick settings of `kind` on `data` with the TINY schedule; `settings` use '__' for '.'."""
    more = {k.replace("__", "."): v for k, v in settings.items()}
    return cfg_for(kind, data.image_shape, data.num_classes, ipc, settings={**TINY, **more})


def build(kind: str, data, ipc: float = 5, seed: int = 0, over_budget: float = 0.0, cfg=None):
    """A `kind` container at its initial point, as condense builds it."""
    cfg = cfg or cfg_for(kind, data.image_shape, data.num_classes, ipc, settings={"seed": seed})
    return get(kind).build(data, sized_config(get(kind), data, cfg), torch.Generator().manual_seed(seed),
                           over_budget=over_budget)
