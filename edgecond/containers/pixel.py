"""Containers that store pixels: real coresets (random, herding), IDC-I and IDC multi-formation."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from .base import Container


class PixelContainer(Container):
    """One stored image per instance, (classes, n, C, H, W), in the normalised space.

    Serves the real coresets (`random`, `herding`: frozen real images) and `pixel`
    (IDC-I: images optimised as parameters, initialised from real ones).
    """

    kind = "pixel"

    def __init__(self, num_classes: int, image_shape, instances: int, kind: str = "pixel"):
        super().__init__(num_classes, image_shape)
        self.kind = kind
        self.pixels = nn.Parameter(torch.zeros(num_classes, instances, *self.image_shape))

    @property
    def instances_per_class(self) -> int:
        return self.pixels.shape[1]

    def image_like(self, name: str) -> bool:
        return name == "pixels"

    def _generate(self, classes, instances):
        n = self.instances_per_class
        return self.pixels.flatten(0, 1).index_select(0, classes * n + instances)

    def config(self) -> dict:
        return {"num_classes": self.num_classes, "image_shape": list(self.image_shape),
                "instances": self.instances_per_class, "kind": self.kind}

    PARTS = ("pixels",)

    def part_of(self, name: str) -> str:
        return "pixels"

    def frozen_slices(self, n):
        return [(self.pixels, slice(0, n))]

    def select_instances(self, keep):
        self.pixels = nn.Parameter(torch.stack([self.pixels.data[c, keep[c]] for c in range(self.num_classes)]))


class IDCContainer(Container):
    """IDC multi-formation: each stored image is cut into factor x factor crops, each upsampled
    bilinearly to full size, so one stored image yields factor^2 training images.

    Instance order is crop-position-major, as IDC's code: instance i of a class is crop
    i // n of stored image i % n (n stored images per class), so a k-prefix spreads over
    stored images before it reuses one.
    """

    kind = "idc"

    def __init__(self, num_classes: int, image_shape, stored: int, factor: int = 2):
        super().__init__(num_classes, image_shape)
        c, h, w = self.image_shape
        if h % factor or w % factor:
            raise ValueError(f"image size {h}x{w} is not divisible by the formation factor {factor}")
        self.factor = factor
        self.pixels = nn.Parameter(torch.zeros(num_classes, stored, c, h, w))

    @property
    def instances_per_class(self) -> int:
        return self.pixels.shape[1] * self.factor ** 2

    def image_like(self, name: str) -> bool:
        return name == "pixels"

    def _generate(self, classes, instances):
        n, f = self.pixels.shape[1], self.factor
        c, h, w = self.image_shape
        stored = self.pixels.flatten(0, 1).index_select(0, classes * n + instances % n)  # (N, C, H, W)
        # tiles in row-major crop order: (N, C, f, h/f, f, w/f) -> (N * f*f, C, h/f, w/f)
        tiles = stored.reshape(-1, c, f, h // f, f, w // f).permute(0, 2, 4, 1, 3, 5).reshape(-1, c, h // f, w // f)
        pick = torch.arange(stored.shape[0], device=stored.device) * (f * f) + instances // n
        crop = tiles.index_select(0, pick)
        return F.interpolate(crop, size=(h, w), mode="bilinear", align_corners=False)

    def config(self) -> dict:
        return {"num_classes": self.num_classes, "image_shape": list(self.image_shape),
                "stored": self.pixels.shape[1], "factor": self.factor}

    PARTS = ("pixels",)

    def part_of(self, name: str) -> str:
        return "pixels"

    def frozen_slices(self, n):
        return [(self.pixels, slice(0, min(n, self.pixels.shape[1])))]  # the stored images holding them
