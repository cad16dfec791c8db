"""The real-image coreset kinds, selected rather than condensed: `random` and `herding`."""

from __future__ import annotations

from ..containers import PixelContainer
from ..coreset import herding_coreset, random_coreset
from ..data import Dataset
from . import Kind, SizedConfig, register, whole_ipc

def select_random(data: Dataset, cfg: SizedConfig, device: str = "cpu", progress: bool = True):
    return random_coreset(data, whole_ipc("random", cfg.values_ipc), seed=cfg.seed)


def select_herding(data: Dataset, cfg: SizedConfig, device: str = "cpu", progress: bool = True):
    return herding_coreset(data, whole_ipc("herding", cfg.values_ipc), seed=cfg.seed, device=device, progress=progress)


register(Kind(name="random", cls=PixelContainer, build=select_random, matched=False,
              description="real training images chosen at random (baseline)"))
register(Kind(name="herding", cls=PixelContainer, build=select_herding, matched=False,
              description="real training images chosen by herding toward the class mean (baseline)"))
