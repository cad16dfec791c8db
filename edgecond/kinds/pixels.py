"""The pixel kinds: IDC-I's images as parameters (`pixel`), IDC's multi-formation (`idc`) and
HaBa's bases x hallucinators (`haba`), each initialised from real images, and their registrations."""

from __future__ import annotations

import torch
import torch.nn.functional as F

from ..config import ConfigError
from ..containers import IDCContainer, PixelContainer
from ..containers.haba import HaBa, solve_haba
from ..data import Dataset
from . import Kind, SizedConfig, clamp_pixels, real_images, register, whole_ipc

def build_pixel(data: Dataset, cfg: SizedConfig, gen: torch.Generator, over_budget: float = 0.0):
    ipc = whole_ipc("pixel", cfg.values_ipc)
    cont = PixelContainer(data.num_classes, data.image_shape, ipc, kind="pixel")
    with torch.no_grad():
        cont.pixels.copy_(real_images(data, ipc, gen))
    return cont


def build_idc(data: Dataset, cfg: SizedConfig, gen: torch.Generator, over_budget: float = 0.0):
    """IDC's "mix" init: each stored image tiles 4 real images downsized by 2."""
    ipc = whole_ipc("idc", cfg.values_ipc)
    cont = IDCContainer(data.num_classes, data.image_shape, ipc, factor=2)
    real = real_images(data, 4 * ipc, gen)  # (K, 4n, C, H, W)
    k, _, c, h, w = real.shape
    small = F.interpolate(real.flatten(0, 1), scale_factor=0.5, mode="bilinear", align_corners=False)
    small = small.view(k, 2, 2, ipc, c, h // 2, w // 2)  # (K, row, col, n, C, h, w)
    tiled = small.permute(0, 3, 4, 1, 5, 2, 6).reshape(k, ipc, c, h, w)
    with torch.no_grad():
        cont.pixels.copy_(tiled)
    return cont


def build_haba(data: Dataset, cfg: SizedConfig, gen: torch.Generator, over_budget: float = 0.0):
    try:
        cont = HaBa(**solve_haba(data.image_shape, data.num_classes, cfg.values_ipc))
    except ValueError as e:
        raise ConfigError(str(e)) from e
    real = real_images(data, cont.n_bases, gen)
    if cont.base_factor > 1:
        k, n = real.shape[:2]
        real = F.avg_pool2d(real.flatten(0, 1), cont.base_factor).view(k, n, *cont.bases.shape[2:])
    with torch.no_grad():
        cont.bases.copy_(real)
        cont.enc_weight.copy_(torch.randn(cont.enc_weight.shape, generator=gen) * 0.1)
    return cont


# IDC's schedule (2000 x 100, SGD momentum 0.5, lr 5e-3) for the image-storing kinds
IDC_PAPER = {"match.outer": 2000, "match.inner": 100, "match.optimizer": "sgd", "match.lr": 5e-3,
             "match.checkpoint_every": 20}

register(Kind(name="pixel", cls=PixelContainer, build=build_pixel, description="IDC-I: images as parameters",
              multisize=True, reorderable=True, project=clamp_pixels, presets={"paper": IDC_PAPER}))
register(Kind(name="idc", cls=IDCContainer, build=build_idc,
              description="IDC multi-formation: each stored image yields 4 crops",
              multisize=True, project=clamp_pixels, presets={"paper": IDC_PAPER}))
register(Kind(name="haba", cls=HaBa, build=build_haba,
              description="HaBa: bases x hallucinators (hallucinators counted in the budget)",
              multisize=True, contrast=True, presets={"paper": IDC_PAPER}))
