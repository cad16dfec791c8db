"""The papers' ConvNet-D: [3x3 conv -> instance norm -> ReLU -> 2x2 avg-pool] x D -> linear.

Used both as the matching network during condensation and as the evaluation network.
Instance norm is GroupNorm with one group per channel (as in IDC's code), so a sample's
output never depends on the rest of its batch.
"""

from __future__ import annotations

import math

import torch
from torch import nn


def default_depth(height: int) -> int:
    """Depth from resolution: 3 for 28-32 px (ConvNet-3), 4 for 64, 5 for 128; at least 2."""
    return max(2, round(math.log2(height)) - 2)


class ConvNet(nn.Module):
    def __init__(self, in_channels: int, num_classes: int, image_size: int | tuple[int, int],
                 width: int = 128, depth: int | None = None):
        super().__init__()
        h, w = (image_size, image_size) if isinstance(image_size, int) else image_size
        depth = depth or default_depth(min(h, w))
        if h >> depth < 1 or w >> depth < 1:
            raise ValueError(f"a depth-{depth} ConvNet halves {h}x{w} images to nothing; use a smaller depth")
        layers: list[nn.Module] = []
        c = in_channels
        for _ in range(depth):
            layers += [nn.Conv2d(c, width, 3, padding=1), nn.GroupNorm(width, width, affine=True),
                       nn.ReLU(inplace=True), nn.AvgPool2d(2)]
            c, h, w = width, h // 2, w // 2
        self.features = nn.Sequential(*layers)
        self.flatten = nn.Flatten()  # a named layer, so hooks (e.g. herding) get flat features
        self.feature_dim = width * h * w
        self.classifier = nn.Linear(self.feature_dim, num_classes)

    def embed(self, x: torch.Tensor) -> torch.Tensor:
        return self.flatten(self.features(x))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.classifier(self.embed(x))

    def conv_weights(self) -> list[torch.Tensor]:
        """The parameters gradient matching compares (IDC: conv weights only)."""
        return [m.weight for m in self.features if isinstance(m, nn.Conv2d)]


def build_convnet(image_shape: tuple[int, int, int], num_classes: int, width: int = 128,
                  depth: int | None = None) -> ConvNet:
    c, h, w = image_shape
    return ConvNet(c, num_classes, (h, w), width=width, depth=depth)
