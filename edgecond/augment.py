"""Differentiable augmentation (DSA-style) and CutMix.

Gradient matching needs augmentations that gradients flow through (the synthetic images are
the parameters) and that can be *shared*: a real batch and a synthetic batch must see the
same draw, or their gradients are not comparable (DSA's siamese augmentation). With
``shared=True`` one draw is broadcast to every image of the batch; otherwise every image
gets its own draw (what training on condensed data uses).

Defaults follow IDC's code: colour (brightness +-0.5, saturation x0..2, contrast x0.5..1.5),
horizontal flip where the data allow it, one of crop (translate +-12.5%) / scale (1/1.2..1.2)
/ rotate (+-15 deg), then cutout of half the side.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
import torch.nn.functional as F


@dataclass
class Augment:
    flip: bool = True
    brightness: float = 0.5
    saturation: float = 1.0
    contrast: float = 0.5
    translate: float = 0.125
    scale: float = 1.2
    rotate_deg: float = 15.0
    cutout: float = 0.5

    def __call__(self, x: torch.Tensor, generator: torch.Generator | None = None,
                 shared: bool = False) -> torch.Tensor:
        n = 1 if shared else x.shape[0]

        def rand(*shape: int) -> torch.Tensor:
            r = torch.rand(n, *shape, generator=generator, device="cpu").to(x.device)
            return r.expand(x.shape[0], *shape) if shared else r

        x = self._colour(x, rand)
        x = self._geometry(x, rand, generator)
        return self._cutout(x, rand)

    def _colour(self, x, rand):
        x = x + (rand(1, 1, 1) - 0.5) * 2 * self.brightness
        if x.shape[1] == 3:  # saturation: scale the distance to the grey value
            m = x.mean(dim=1, keepdim=True)
            x = (x - m) * (rand(1, 1, 1) * 2 * self.saturation) + m
        m = x.mean(dim=(1, 2, 3), keepdim=True)
        return (x - m) * (1 - self.contrast + rand(1, 1, 1) * 2 * self.contrast) + m

    def _geometry(self, x, rand, generator):
        b = x.shape[0]
        theta = torch.zeros(b, 2, 3, device=x.device)
        theta[:, 0, 0] = theta[:, 1, 1] = 1.0
        which = int(torch.randint(3, (1,), generator=generator))  # one op per draw, as IDC
        if which == 0:  # crop = translate
            theta[:, :, 2] = (rand(2) - 0.5) * 4 * self.translate
        elif which == 1:  # scale
            lo, hi = 1 / self.scale, self.scale
            s = lo + rand(2) * (hi - lo)
            theta[:, 0, 0], theta[:, 1, 1] = s[:, 0], s[:, 1]
        else:  # rotate
            a = (rand(1)[:, 0] - 0.5) * 2 * math.radians(self.rotate_deg)
            theta[:, 0, 0], theta[:, 0, 1] = torch.cos(a), -torch.sin(a)
            theta[:, 1, 0], theta[:, 1, 1] = torch.sin(a), torch.cos(a)
        if self.flip:
            sign = torch.where(rand(1)[:, 0] < 0.5, -1.0, 1.0)
            theta[:, :, 0] = theta[:, :, 0] * sign[:, None]
        grid = F.affine_grid(theta, list(x.shape), align_corners=False)
        return F.grid_sample(x, grid, align_corners=False, padding_mode="zeros")

    def _cutout(self, x, rand):
        if self.cutout <= 0:
            return x
        b, _, h, w = x.shape
        ch, cw = max(1, int(h * self.cutout / 2)), max(1, int(w * self.cutout / 2))  # half-extent
        centre = rand(2)
        dy = torch.arange(h, device=x.device).view(1, h, 1) - (centre[:, 0] * h).long().view(b, 1, 1)
        dx = torch.arange(w, device=x.device).view(1, 1, w) - (centre[:, 1] * w).long().view(b, 1, 1)
        hole = (dy >= -ch) & (dy < ch) & (dx >= -cw) & (dx < cw)
        return x * (~hole).unsqueeze(1).to(x.dtype)


def cutmix(x: torch.Tensor, y: torch.Tensor, generator: torch.Generator | None = None,
           prob: float = 0.5):
    """CutMix (Yun et al.) with lambda ~ Beta(1, 1) = U(0, 1), as IDC uses it.

    Returns (x, y_a, y_b, lam); the loss is lam*CE(y_a) + (1-lam)*CE(y_b).
    """
    if prob <= 0 or float(torch.rand(1, generator=generator)) >= prob:
        return x, y, y, 1.0
    lam = float(torch.rand(1, generator=generator))
    perm = torch.randperm(x.shape[0], generator=generator).to(x.device)
    h, w = x.shape[2:]
    rh, rw = int(h * math.sqrt(1 - lam)), int(w * math.sqrt(1 - lam))
    cy, cx = int(torch.randint(h, (1,), generator=generator)), int(torch.randint(w, (1,), generator=generator))
    y0, y1 = max(cy - rh // 2, 0), min(cy + rh // 2, h)
    x0, x1 = max(cx - rw // 2, 0), min(cx + rw // 2, w)
    x = x.clone()
    x[:, :, y0:y1, x0:x1] = x[perm, :, y0:y1, x0:x1]
    lam = 1 - (y1 - y0) * (x1 - x0) / (h * w)
    return x, y, y[perm], lam

