"""HaBa's factorised container (Liu et al., "Dataset Distillation via Factorization").

Per-class *bases* and a few *hallucinators* shared by all classes; an image is a
(basis, hallucinator) pair:

    x = up(b) + D_h( sigma_h * E_h(b) + mu_h )

with E_h a 3x3 conv (C -> m channels), sigma_h / mu_h a per-pixel scale and shift, and D_h a
transposed conv back to C channels (the residual keeps an untrained hallucinator an identity
map; D_h starts at zero). Unlike HaBa's released scripts, the hallucinators count against the
budget. At budgets where not even one full-resolution basis per class fits beside them
(e.g. 1 IPC), the bases are stored at half resolution and D_h upsamples (stride 2).

Order: instance i of a class is basis i % n_bases through hallucinator i // n_bases, so a
prefix spreads over the bases before it reuses one; all pairs are enumerated, so generation
is deterministic and exportable.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from .base import Container


class HaBa(Container):
    kind = "haba"

    def __init__(self, num_classes: int, image_shape, bases: int, hallucinators: int = 5, channels: int = 2,
                 base_factor: int = 1):
        super().__init__(num_classes, image_shape)
        c, h, w = self.image_shape
        if base_factor not in (1, 2) or h % base_factor or w % base_factor:
            raise ValueError(f"base_factor must be 1 or 2 and divide the image size, got {base_factor}")
        hb, wb = h // base_factor, w // base_factor
        self.n_bases, self.n_hall, self.channels, self.base_factor = bases, hallucinators, channels, base_factor
        self.bases = nn.Parameter(torch.zeros(num_classes, bases, c, hb, wb))
        self.enc_weight = nn.Parameter(torch.zeros(hallucinators, channels, c, 3, 3))
        self.enc_bias = nn.Parameter(torch.zeros(hallucinators, channels))
        self.scale = nn.Parameter(torch.ones(hallucinators, channels, hb, wb))
        self.shift = nn.Parameter(torch.zeros(hallucinators, channels, hb, wb))
        k = 3 if base_factor == 1 else 4
        self.dec_weight = nn.Parameter(torch.zeros(hallucinators, channels, c, k, k))
        self.dec_bias = nn.Parameter(torch.zeros(hallucinators, c))

    @property
    def instances_per_class(self) -> int:
        return self.n_bases * self.n_hall

    def image_like(self, name: str) -> bool:
        return name == "bases"

    def stored_per_slice(self, name: str) -> bool:
        """Each hallucinator's tensors are separate in the exported graph (the loop below unrolls)."""
        return name != "bases"

    def _generate(self, classes, instances):
        nb = self.n_bases
        b = self.bases.flatten(0, 1).index_select(0, classes * nb + instances % nb)  # (N, C, hb, wb)
        hall = instances // nb
        out = []
        # one hallucinator at a time over the images it serves: a fixed loop of n_hall (exportable)
        result = F.interpolate(b, scale_factor=self.base_factor, mode="nearest") if self.base_factor > 1 else b
        for j in range(self.n_hall):
            z = F.conv2d(b, self.enc_weight[j], self.enc_bias[j], padding=1)
            z = z * self.scale[j] + self.shift[j]
            if self.base_factor == 1:
                d = F.conv_transpose2d(z, self.dec_weight[j], self.dec_bias[j], padding=1)
            else:
                d = F.conv_transpose2d(z, self.dec_weight[j], self.dec_bias[j], stride=2, padding=1)
            mask = (hall == j).to(d.dtype).view(-1, 1, 1, 1)
            out.append(d * mask)
        return result + torch.stack(out).sum(0)

    def config(self) -> dict:
        return {"num_classes": self.num_classes, "image_shape": list(self.image_shape), "bases": self.n_bases,
                "hallucinators": self.n_hall, "channels": self.channels, "base_factor": self.base_factor}

    PARTS = ("bases", "hallucinators")

    def part_of(self, name: str) -> str:
        return "bases" if name == "bases" else "hallucinators"

    def frozen_slices(self, n):
        return [(self.bases, slice(0, min(n, self.n_bases)))]


def hallucinator_floats(image_shape, hallucinators: int, channels: int, base_factor: int) -> int:
    c, h, w = image_shape
    hb, wb = h // base_factor, w // base_factor
    k = 3 if base_factor == 1 else 4
    per = channels * c * 9 + channels + 2 * channels * hb * wb + channels * c * k * k + c
    return hallucinators * per


def solve_haba(image_shape, num_classes: int, ipc: float, hallucinators: int = 5, channels: int = 2) -> dict:
    """Bases per class within the budget, hallucinators counted; half-resolution bases if needed."""
    c, h, w = image_shape
    budget = ipc * c * h * w * num_classes
    for factor in (1, 2):
        for nh in range(hallucinators, 0, -1):
            rest = budget - hallucinator_floats(image_shape, nh, channels, factor)
            nb = int(rest // (num_classes * c * (h // factor) * (w // factor)))
            if nb >= 1:
                return {"num_classes": num_classes, "image_shape": list(image_shape), "bases": nb,
                        "hallucinators": nh, "channels": channels, "base_factor": factor}
    raise ValueError(f"no HaBa container fits {ipc:g} IPC for {num_classes} classes of {c}x{h}x{w}")
