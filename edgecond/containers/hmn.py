"""The Hierarchical Memory Network container (Zheng et al., Eq. 1).

    x_{c,i} = D( [ f_c(m_D) ⊕ m_c ⊕ m_{c,i} ] )

* ``m_D``  one dataset-level memory (Cd, s, s), shared by every image;
* ``m_c``  one class-level memory (Cc, s, s) per class;
* ``m_ci`` one instance-level memory (Ci, s, s) per generated image;
* ``f_c``  a per-class feature extractor on m_D: identity at small budgets, otherwise a
  1x1 transposed convolution to `fc_channels` (stored as a per-class matrix + bias);
* ``D``    one shared decoder: [ConvTranspose(k4, s2, p1) -> norm -> ReLU] x (L-1) ->
  ConvTranspose(k4, s2, p1) to the image channels; each layer doubles the resolution.

Normalisation. The paper's decoder uses BatchNorm, whose batch statistics would make an
image depend on the other images in its batch. edgecond's invariant (docs/architecture.md, Invariants) is that
image (c, i) depends on (c, i) alone -- in a batch, alone, in a prefix, in torch and in
ONNX -- so the decoder normalises each image by its own statistics (instance norm, i.e.
GroupNorm with one group per channel, affine). Nothing batch-dependent is stored or used.
"""

from __future__ import annotations

import torch
from torch import nn

from .base import Container


class HMN(Container):
    kind = "hmn"

    def __init__(self, num_classes: int, image_shape, instances: int, memory_size: int,
                 dataset_channels: int, class_channels: int, instance_channels: int,
                 fc_channels: int | None, hidden: list[int], norm: str = "instance"):
        super().__init__(num_classes, image_shape)
        c_img, h, w = self.image_shape
        layers = len(hidden) + 1
        if memory_size * 2 ** layers != h or h != w:
            raise ValueError(f"memory {memory_size}x{memory_size} with {layers} decoder layers makes "
                             f"{memory_size * 2 ** layers}px images, not {h}x{w}")
        if norm not in ("instance", "none"):
            raise ValueError(f"norm must be 'instance' or 'none', got {norm!r}")
        s = memory_size
        self.memory_size, self.norm = s, norm
        self.dataset_channels, self.class_channels = dataset_channels, class_channels
        self.instance_channels, self.fc_channels, self.hidden = instance_channels, fc_channels, list(hidden)
        self.dataset_memory = nn.Parameter(torch.zeros(1, dataset_channels, s, s))
        self.class_memory = nn.Parameter(torch.zeros(num_classes, class_channels, s, s))
        self.instance_memory = nn.Parameter(torch.zeros(num_classes, instances, instance_channels, s, s))
        if fc_channels:
            self.fc_weight = nn.Parameter(torch.zeros(num_classes, dataset_channels, fc_channels))
            self.fc_bias = nn.Parameter(torch.zeros(num_classes, fc_channels))
        feat = fc_channels or dataset_channels
        chans = [feat + class_channels + instance_channels, *hidden, c_img]
        mods: list[nn.Module] = []
        for j, (a, b) in enumerate(zip(chans[:-1], chans[1:])):
            normed = j < len(chans) - 2 and norm == "instance"
            # a bias right before a normalisation is cancelled by it: not stored (and its zero
            # gradient would only feed Adam numerical noise)
            mods.append(nn.ConvTranspose2d(a, b, kernel_size=4, stride=2, padding=1, bias=not normed))
            if j < len(chans) - 2:
                if norm == "instance":
                    mods.append(nn.GroupNorm(b, b, affine=True))
                mods.append(nn.ReLU())
        self.decoder = nn.Sequential(*mods)

    # ------------------------------------------------------------------ container API
    @property
    def instances_per_class(self) -> int:
        return self.instance_memory.shape[1]

    def features(self, classes: torch.Tensor) -> torch.Tensor:
        """f_c(m_D) for each class in `classes`: (N, F, s, s)."""
        md = self.dataset_memory.expand(classes.shape[0], -1, -1, -1)
        if not self.fc_channels:
            return md
        w = self.fc_weight.index_select(0, classes)  # (N, Cd, F)
        b = self.fc_bias.index_select(0, classes)
        return torch.einsum("ndhw,ndf->nfhw", md, w) + b[:, :, None, None]

    def code(self, classes: torch.Tensor, instances: torch.Tensor, shared_grad: bool = True) -> torch.Tensor:
        """The decoder's input [f_c(m_D) ⊕ m_c ⊕ m_ci] for each pair (shared_grad=False: f_c(m_D), m_c detached)."""
        n = self.instances_per_class
        feat, mc = self.features(classes), self.class_memory.index_select(0, classes)
        if not shared_grad:
            feat, mc = feat.detach(), mc.detach()
        mi = self.instance_memory.flatten(0, 1).index_select(0, classes * n + instances)
        return torch.cat([feat, mc, mi], dim=1)

    def _generate(self, classes: torch.Tensor, instances: torch.Tensor) -> torch.Tensor:
        return self.decoder(self.code(classes, instances))

    def _generate_own(self, classes: torch.Tensor, instances: torch.Tensor) -> torch.Tensor:
        """Images whose gradients reach their instance memories only: the dataset memory, f_c,
        the class memories and the decoder enter detached (they serve every other image too)."""
        frozen = {k: v.detach() for k, v in self.decoder.named_parameters()}
        return torch.func.functional_call(self.decoder, frozen, (self.code(classes, instances, shared_grad=False),))

    def config(self) -> dict:
        return {"num_classes": self.num_classes, "image_shape": list(self.image_shape),
                "instances": self.instances_per_class, "memory_size": self.memory_size,
                "dataset_channels": self.dataset_channels, "class_channels": self.class_channels,
                "instance_channels": self.instance_channels, "fc_channels": self.fc_channels,
                "hidden": self.hidden, "norm": self.norm}

    PARTS = ("dataset_memory", "class_memory", "instance_memory", "feature_extractors", "decoder")

    def part_of(self, name: str) -> str:
        if name.startswith("decoder."):
            return "decoder"
        return "feature_extractors" if name.startswith("fc_") else name

    def storage_axis(self, name: str) -> int:
        # (classes, instances, channels, h, w): the graph gathers from its (classes*instances, ...) view
        return 2 if name == "instance_memory" else 1

    def frozen_slices(self, n: int):
        return [(self.instance_memory, slice(0, n))]

    def select_instances(self, keep: torch.Tensor) -> None:
        data = self.instance_memory.data
        self.instance_memory = nn.Parameter(torch.stack([data[c, keep[c]] for c in range(self.num_classes)]))

    @torch.no_grad()
    def init_memories(self, generator: torch.Generator, std: float = 0.5) -> None:
        """Memories ~ N(0, std^2); f_c starts as an identity-like map; decoder keeps torch's init."""
        for p in (self.dataset_memory, self.class_memory, self.instance_memory):
            p.copy_(torch.randn(p.shape, generator=generator) * std)
        if self.fc_channels:
            w = torch.randn(self.fc_weight.shape, generator=generator) / self.dataset_channels ** 0.5
            self.fc_weight.copy_(w)
            self.fc_bias.zero_()
        for m in self.decoder:
            if isinstance(m, nn.ConvTranspose2d):
                nn.init.kaiming_uniform_(m.weight, a=5 ** 0.5, generator=generator)
                if m.bias is not None:
                    bound = 1 / (m.weight.shape[1] * 16) ** 0.5
                    nn.init.uniform_(m.bias, -bound, bound, generator=generator)

