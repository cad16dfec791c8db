"""Real-image coresets: `random` and `herding`, the baselines every container must beat.

Both store real training images, ipc per class, so their budget is exactly
ipc x classes x C x H x W floats. Herding (Welling 2009, as iCaRL uses it) greedily picks the
image that brings the running mean of the selected features closest to the class mean, in
the feature space of a ConvNet briefly trained on the train split; its selection order is a
natural prefix order (the first k images are the best k-subset herding knows).
"""

from __future__ import annotations

import torch

from .containers import PixelContainer
from .data import Dataset
from .config import EvalConfig
from .evaluation import train_classifier


def _check_ipc(data: Dataset, ipc: int) -> None:
    counts = torch.bincount(data.y_train, minlength=data.num_classes)
    if ipc < 1:
        raise ValueError(f"ipc must be >= 1 for a real-image coreset, got {ipc}")
    if int(counts.min()) < ipc:
        c = int(counts.argmin())
        raise ValueError(f"class {data.classes[c]!r} has only {int(counts[c])} training images; cannot pick {ipc}")


def _container(data: Dataset, picks: list[torch.Tensor], kind: str) -> tuple[PixelContainer, list[list[int]]]:
    ipc = len(picks[0])
    cont = PixelContainer(data.num_classes, data.image_shape, ipc, kind=kind)
    order = []
    with torch.no_grad():
        for c, idx in enumerate(picks):
            cont.pixels[c] = data.class_images(c)[idx]
            order.append(idx.tolist())
    cont.pixels.requires_grad_(False)
    return cont, order


def random_coreset(data: Dataset, ipc: int, seed: int = 0):
    """ipc random training images per class; returns (container, per-class train indices)."""
    _check_ipc(data, ipc)
    g = torch.Generator().manual_seed(seed)
    picks = [torch.randperm(int((data.y_train == c).sum()), generator=g)[:ipc] for c in range(data.num_classes)]
    return _container(data, picks, "random")


def herding_order(features: torch.Tensor, k: int, target: torch.Tensor | None = None, start: int = 0) -> torch.Tensor:
    """Indices of k rows of `features` chosen by herding, in selection order.

    Herding approaches `target` (default: the rows' own mean). The first `start` rows are
    taken first, as they are, and herding continues from their mean.
    """
    mu = features.mean(0) if target is None else target
    chosen: list[int] = list(range(start))
    running = features[:start].mean(0) if start else torch.zeros_like(mu)
    available = torch.ones(len(features), dtype=torch.bool)
    available[:start] = False
    for t in range(start + 1, k + 1):
        # candidate mean after adding each row: (running*(t-1) + f) / t
        dist = ((running * (t - 1) + features) / t - mu).norm(dim=1)
        dist[~available] = float("inf")
        j = int(dist.argmin())
        chosen.append(j)
        available[j] = False
        running = (running * (t - 1) + features[j]) / t
    return torch.tensor(chosen, dtype=torch.long)


def feature_net(data: Dataset, steps: int = 300, seed: int = 0, device: str = "cpu", progress: bool = True,
                desc: str = "herding features"):
    """A ConvNet trained `steps` steps on the train split: the feature space herding works in."""
    return train_classifier(data.x_train, data.y_train, data.image_shape, data.num_classes,
                            EvalConfig(steps=steps), seed=seed, flip=data.flip, device=device,
                            progress=progress, desc=desc)


@torch.no_grad()
def embed_normalised(net, x: torch.Tensor, device: str = "cpu") -> torch.Tensor:
    """L2-normalised features of images `x` (in batches of 512), on the CPU."""
    f = torch.cat([net.embed(b.to(device)).cpu() for b in x.split(512)])
    return torch.nn.functional.normalize(f, dim=1)


def herding_coreset(data: Dataset, ipc: int, seed: int = 0, feature_steps: int = 300, device: str = "cpu",
                    progress: bool = True):
    """Herding in the (L2-normalised) features of a ConvNet trained `feature_steps` on train."""
    _check_ipc(data, ipc)
    net = feature_net(data, feature_steps, seed, device, progress)
    picks = [herding_order(embed_normalised(net, data.class_images(c), device), ipc) for c in range(data.num_classes)]
    return _container(data, picks, "herding")
