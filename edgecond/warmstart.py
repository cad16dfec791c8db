"""Warm start: fit a generator container to real images before gradient matching.

Pixel, IDC and HaBa containers start from real images (their papers' initialisation); an
HMN starts from random memories (the HMN paper's), which its 200,000 matching steps per
class turn into images. With the `quick` preset's ~200 steps per class an HMN does not get
that far: on cifar10_mini at 10 IPC it ended at random-coreset accuracy (docs/results.md).

The warm start gives every generated image a real target -- instance i of class c is
assigned the i-th of a seeded permutation of that class's training images -- and fits all of
the container's parameters (memories, feature extractors, decoder) to reproduce its targets
by mean squared error in the normalised pixel space. It is first-order and batched over
all classes, so it costs a few per cent of the matching that follows; gradient matching
then starts from a blurred copy of a real coreset instead of noise. `--set match.warm_start=0`
restores the paper's random initialisation.

Which coreset: `match.warm_targets=random` (the default) fits a seeded random one;
`herding` fits the herding coreset (coreset.py: a ConvNet trained briefly on the train split,
then per class the images whose running feature mean stays nearest the class mean, in that
order). Real-image coresets of herding beat random ones by ~5 points at 40 uint8 images per
class on cifar10_mini (docs/results.md), and an HMN that reproduces one inherits some of it;
the feature network costs about as much as 2,000 bf16 warm-start steps on a CPU.
"""

from __future__ import annotations

import math
import time

import torch

from .config import CHOICES
from .containers import Container
from .coreset import embed_normalised, feature_net, herding_order
from .data import Dataset
from .progress import Progress
from .resources import compute_precision


def real_targets(data: Dataset, instances: int, gen: torch.Generator) -> torch.Tensor:
    """(classes, instances, C, H, W): a seeded permutation of each class's train images, cycled if short."""
    out = []
    for c in range(data.num_classes):
        x = data.class_images(c)
        reps = math.ceil(instances / len(x))
        idx = torch.cat([torch.randperm(len(x), generator=gen) for _ in range(reps)])[:instances]
        out.append(x[idx])
    return torch.stack(out)


def herding_targets(data: Dataset, instances: int, *, seed: int = 0, device: str = "cpu",
                    feature_steps: int = 300) -> torch.Tensor:
    """(classes, instances, C, H, W): each class's images in herding order (coreset.herding_order in
    the features of coreset.feature_net), the order cycled if the class has fewer images."""
    net = feature_net(data, feature_steps, seed, device, progress=False)
    out = []
    for c in range(data.num_classes):
        x = data.class_images(c)
        order = herding_order(embed_normalised(net, x, device), min(instances, len(x)))
        out.append(x[order.repeat(math.ceil(instances / len(order)))[:instances]])
    return torch.stack(out)


def _generator(seed: int) -> torch.Generator:
    return torch.Generator().manual_seed(seed * 1_000_003 + 7919)


def warm_start_targets(data: Dataset, instances: int, seed: int = 0) -> torch.Tensor:
    """The real images `warm_start(..., seed=seed)` fits a container with `instances` per class to."""
    return real_targets(data, instances, _generator(seed))


def warm_start(container: Container, data: Dataset, steps: int, *, seed: int = 0, device: str = "cpu",
               batch: int = 256, lr: float = 0.01, compute_dtype: str = "fp32", targets: str = "random",
               lr_schedule: str = "constant", progress: bool = False) -> dict:
    """Fit `container` to real targets (`targets`: random or herding, see the module's docstring)
    for `steps` Adam steps on random batches of (class, instance) pairs, at a held rate or one
    annealed to 0 (`lr_schedule`: constant or cosine).

    Deterministic for a given seed. Returns the report section: steps, seconds and the mean
    squared error of the first and the last 10 % of steps.
    """
    if steps < 0:
        raise ValueError(f"match.warm_start must be >= 0 steps, got {steps}")
    if steps == 0:
        return {"steps": 0}
    for key, value in (("match.warm_lr_schedule", lr_schedule), ("match.warm_targets", targets)):
        if value not in CHOICES[key]:  # the config checks them too; this is for callers of the API
            raise ValueError(f"{key} must be {' or '.join(CHOICES[key])}, got {value!r}")
    t0 = time.time()
    gen = _generator(seed)
    k, n = data.num_classes, container.instances_per_class
    target = (real_targets(data, n, gen) if targets == "random" else
              herding_targets(data, n, seed=seed, device=device)).flatten(0, 1).to(device)
    targets_seconds = time.time() - t0
    classes = torch.arange(k, device=device).repeat_interleave(n)
    instances = torch.arange(n, device=device).repeat(k)
    params = [p for p in container.parameters() if p.requires_grad]
    opt = torch.optim.Adam(params, lr=lr, betas=(0.9, 0.99))
    # cosine: a regression's last steps at a small rate settle the fit instead of jittering around it
    sched = torch.optim.lr_scheduler.CosineAnnealingLR(opt, steps) if lr_schedule == "cosine" else None
    losses = []
    container.train()
    # the quick preset's herding schedule is a warm start alone: minutes a user should see pass
    bar = Progress("warm start", steps, enabled=progress, unit="steps")
    for _ in range(steps):
        idx = torch.randint(k * n, (min(batch, k * n),), generator=gen).to(device)
        with compute_precision(compute_dtype, device):  # the generator's passes; the loss in fp32
            images = container.generate(classes[idx], instances[idx])
        loss = ((images.float() - target[idx]) ** 2).mean()
        if not torch.isfinite(loss):
            raise FloatingPointError(f"warm start diverged (loss {loss.item()}); lower its learning rate")
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        if sched is not None:
            sched.step()
        losses.append(loss.item())
        bar.update(mse=f"{losses[-1]:.4f}")
    bar.close()
    tail = max(1, steps // 10)
    return {"steps": steps, "lr": lr, "lr_schedule": lr_schedule, "batch": batch, "targets": targets,
            "seconds": round(time.time() - t0, 2),
            "targets_seconds": round(targets_seconds, 2),
            "mse_first": sum(losses[:tail]) / tail, "mse_last": sum(losses[-tail:]) / tail}
